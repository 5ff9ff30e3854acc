//! One training run of the `bench/loss-curve.sh` setting through the library's trainer, for
//! A/B runs from a debug build (which `cargo run --example` gives without compiling burn a
//! second time for the release profile): MobileNetV2 0.5 at 128x96, batch 32, Adam 2e-3
//! cosine, augmented, on the split file given.
//!
//! Usage: `loss_ab DATA SPLIT OUT SEED EPOCHS`; `DERMCLASS_FAST_KERNELS=0` runs burn's ops.
//! `bench/loss-ab.sh` runs it for several seeds with the kernels on and off.

use anyhow::{Context, Result, bail};
use dermclass::train::{SessionOptions, TrainConfig, train};

fn main() -> Result<()> {
    dermclass::memory::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, split, out, seed, epochs] = &args[..] else {
        bail!("usage: loss_ab DATA SPLIT OUT SEED EPOCHS");
    };
    let config = TrainConfig {
        data: data.into(),
        split: Some(split.into()),
        arch: "mobilenet_v2:0.5".into(),
        width: 128,
        height: 96,
        epochs: epochs.parse().context("EPOCHS")?,
        batch: 32,
        lr: 0.002,
        seed: seed.parse().context("SEED")?,
        workers: 1,
        ..TrainConfig::default()
    };
    train(&config, out.as_ref(), &SessionOptions::default())?;
    Ok(())
}
