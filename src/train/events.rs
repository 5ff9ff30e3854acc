//! What training and `compare` report as they go. The library never prints: it hands these
//! events to the caller's [`Observer`], and the command line turns them into progress bars
//! and lines (a GUI, a notebook or a test may do otherwise, or nothing).

use std::sync::Arc;

use crate::model::torchvision::InitReport;
use crate::report::EpochRow;

/// One thing that happened during a session.
#[derive(Debug)]
pub enum Event<'a> {
    /// The pre-training check skipped unreadable images (`--skip-bad`).
    SkippedImages {
        /// How many.
        count: usize,
        /// Counts by kind of problem, as text.
        by_kind: String,
    },
    /// The model starts from a torchvision state dict (`--init`).
    Initialised(&'a InitReport),
    /// An epoch's training starts over `images` images.
    EpochStarted {
        /// Epoch number, from 1.
        epoch: usize,
        /// Epochs of the run.
        epochs: usize,
        /// Training images this epoch.
        images: usize,
    },
    /// A training batch finished.
    BatchDone {
        /// Images in the batch.
        images: usize,
        /// Mean training loss of the epoch so far.
        mean_loss: f64,
    },
    /// An epoch ended, validation included; its row is in `metrics.csv`.
    EpochEnded {
        /// The epoch's figures.
        row: &'a EpochRow,
        /// Epochs of the run.
        epochs: usize,
    },
    /// The run stops before its last epoch (early stopping, time budget).
    Stopping {
        /// Why, in words.
        reason: &'a str,
    },
    /// `compare` starts training an architecture.
    ArchStarted {
        /// Its name.
        arch: &'a str,
    },
    /// `compare` found an architecture finished by an earlier session.
    ArchAlreadyDone {
        /// Its name.
        arch: &'a str,
    },
}

/// The function an [`Observer`] calls.
type Callback = dyn Fn(&Event) + Send + Sync;

/// Receives the events of a session; the default ignores them.
#[derive(Clone, Default)]
pub struct Observer(Option<Arc<Callback>>);

impl Observer {
    /// An observer that calls `f` with every event.
    pub fn new(f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    /// Hands `event` to the observer, if any.
    pub fn emit(&self, event: &Event) {
        if let Some(f) = &self.0 {
            f(event);
        }
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Observer(set)"
        } else {
            "Observer(none)"
        })
    }
}
