//! Helpers shared by the integration tests.

use std::path::Path;

use dermclass::train::SessionOptions;
use dermclass::train::config::TrainConfig;

/// Small, fast settings on `data`: a 0.5x ShuffleNet v2 at 32x32, with dropout.
pub fn tiny_config(data: &Path, epochs: usize) -> TrainConfig {
    TrainConfig {
        data: data.to_path_buf(),
        arch: "shufflenet_v2:0.5".into(),
        width: 32,
        height: 32,
        epochs,
        batch: 8,
        lr: 3e-3,
        warmup_epochs: 0.0,
        dropout: Some(0.2),
        workers: 2,
        ..TrainConfig::default()
    }
}

/// No progress bars.
pub fn quiet() -> SessionOptions {
    SessionOptions::default()
}
