//! Data commands: `prepare`, `split`, `synth`, `check`, `bench-data`, `fetch-data`.

use clap::Subcommand;

/// Commands that read, check, reshape or generate data sets.
#[derive(Subcommand, Debug)]
pub enum DataCommand {}

impl DataCommand {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {}
    }
}
