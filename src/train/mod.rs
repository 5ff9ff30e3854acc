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
pub mod mix;
pub mod schedule;
pub mod speed;
pub mod trainer;
pub mod vary;

pub use checkpoint::{Checkpoint, RunState};
pub use config::TrainConfig;
pub use events::{Event, Observer};
pub use trainer::{RunPaths, RunSummary, SessionOptions, train};

use std::path::PathBuf;

/// Name of the trained model that ships with dermclass, as `serve` and `predict` call it.
pub const SHIPPED_MODEL_NAME: &str = "isic2018-shufflenet_v1";

/// The shipped model's file in this checkout (`models/<name>.ckpt`); it may be absent.
pub fn shipped_model_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(format!("{SHIPPED_MODEL_NAME}.ckpt"))
}
