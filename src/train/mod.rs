//! Training, evaluation and prediction: settings, loss, schedules, the loop, checkpoints.

pub mod adjust;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod ema;
pub mod evaluate;
pub mod events;
pub mod fused_adam;
pub mod lock;
pub mod loss;
pub mod schedule;
pub mod speed;
pub mod trainer;
pub mod vary;

pub use checkpoint::{Checkpoint, RunState};
pub use config::TrainConfig;
pub use events::{Event, Observer};
pub use trainer::{RunPaths, RunSummary, SessionOptions, train};
