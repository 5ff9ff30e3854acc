//! Command-line front end: thin wrappers over the library, one file per command group.

pub mod data;
pub mod export;
pub mod model;
pub mod progress;
pub mod serve;
pub mod skip;
pub mod train;

/// Exit code of a command that failed (any error).
pub const EXIT_ERROR: i32 = 1;
/// Exit code of `predict`/`evaluate --skip-bad` when they finished but left some inputs
/// out (listed on stderr and, for `predict`, in the `.skipped.csv` sidecar). Clap uses 2
/// for usage errors.
pub const EXIT_SKIPPED: i32 = 3;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done.
    Complete,
    /// Done, but some inputs were skipped (`--skip-bad`).
    Skipped,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Complete => 0,
            Outcome::Skipped => EXIT_SKIPPED,
        }
    }
}
