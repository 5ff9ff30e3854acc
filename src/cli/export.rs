//! `dermclass export`: a trained model as an ONNX file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::train::{resolve_checkpoint, shipped_model};
use dermclass::export::{ExportInfo, OPSET, to_onnx};
use dermclass::train::checkpoint;

/// Arguments of `dermclass export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A run folder (its best.ckpt) or a checkpoint file (default: the shipped model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The ONNX file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `dermclass export`.
pub fn run_export(args: ExportArgs) -> Result<()> {
    let path = match &args.model {
        Some(model) => resolve_checkpoint(model)?,
        None => shipped_model()?,
    };
    let checkpoint = checkpoint::load(&path)?;
    let model = checkpoint.model(&burn::prelude::Device::flex())?;
    let info = ExportInfo::for_checkpoint(&checkpoint);
    let bytes = to_onnx(&model, &info)?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    std::fs::write(&args.out, &bytes)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "wrote {} ({:.1} MB, ONNX opset {OPSET}): {} from {}, input `image` Nx3x{}x{}, \
         outputs `logits` and `probabilities`",
        args.out.display(),
        bytes.len() as f64 / 1e6,
        info.arch,
        path.display(),
        info.height,
        info.width
    );
    Ok(())
}
