//! Writes a freshly initialised model as ONNX at a square input size, for the ONNX Runtime
//! peer of `bench/speed.sh` (the same network `dermclass bench` measures, in another
//! runtime).
//!
//! usage: cargo run --release --example bench_onnx -- OUT.onnx [ARCH] [SIZE]

use anyhow::{Context, Result};
use burn::prelude::*;
use dermclass::export::{ExportInfo, to_onnx};
use dermclass::model::ModelSpec;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args
        .first()
        .context("usage: bench_onnx OUT.onnx [ARCH] [SIZE]")?;
    let arch = args.get(1).map_or("mobilenet_v2:1.0", String::as_str);
    let size: usize = args.get(2).map_or(Ok(224), |s| s.parse())?;
    let model = ModelSpec::parse(arch, 7)?.build(&Device::default())?;
    let info = ExportInfo {
        arch: arch.to_string(),
        classes: (0..7).map(|c| format!("C{c}")).collect(),
        width: size,
        height: size,
        normalization: ([1.0; 3], [0.0; 3]),
        shades_of_gray: None,
        logit_offsets: Vec::new(),
        temperature: 1.0,
        extra: Vec::new(),
    };
    std::fs::write(out, to_onnx(&model, &info)?).with_context(|| format!("cannot write {out}"))?;
    Ok(())
}
