//! `dermclass export`: a trained model as an ONNX file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::train::{resolve_checkpoint, shipped_model};
use dermclass::export::{ExportInfo, OPSET, to_onnx, web};
use dermclass::train::checkpoint;

/// Arguments of `dermclass export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A run folder (its best.ckpt) or a checkpoint file (default: the shipped model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The ONNX file to write.
    #[arg(long, required_unless_present = "web")]
    pub out: Option<PathBuf>,
    /// Also (or instead) write a static site that classifies in the browser: page, script,
    /// model. Run `npm install` in it, then serve it with any static file server.
    #[arg(long, value_name = "DIR")]
    pub web: Option<PathBuf>,
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
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        }
        std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
        println!(
            "wrote {} ({:.1} MB, ONNX opset {OPSET}): {} from {}, input `image` Nx3x{}x{}, \
             outputs `logits` and `probabilities`",
            out.display(),
            bytes.len() as f64 / 1e6,
            info.arch,
            path.display(),
            info.height,
            info.width
        );
    }
    if let Some(dir) = &args.web {
        web::write_site(dir, &bytes, &info)
            .with_context(|| format!("cannot write the site into {}", dir.display()))?;
        println!(
            "wrote a browser site for {} into {}: run `npm install` there (onnxruntime-web {}), \
             then serve the folder, e.g. `python3 -m http.server -d {}`",
            info.arch,
            dir.display(),
            web::ONNXRUNTIME_WEB,
            dir.display()
        );
    }
    Ok(())
}
