//! `dermclass export`: a trained model as an ONNX file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use clap::Args;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::train::{resolve_checkpoint, shipped_model};
use dermclass::data::Dataset;
use dermclass::data::loader::Loader;
use dermclass::data::source::Sample;
use dermclass::data::split::read_split_csv;
use dermclass::export::{ExportInfo, OPSET, to_onnx, to_onnx_int8, web};
use dermclass::report::write_atomic;
use dermclass::train::checkpoint;
use dermclass::train::trainer::eval_loader_config;

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
    /// Quantize to int8 (QDQ: per-channel int8 weights, uint8 activations calibrated on
    /// `--calibration` images).
    #[arg(long, requires = "calibration")]
    pub int8: bool,
    /// Labelled data to calibrate int8 activation ranges on. When the model is a run folder
    /// with a split.csv, only its training images are used.
    #[arg(long, value_name = "DATA_ROOT", requires = "int8")]
    pub calibration: Option<PathBuf>,
    /// How many calibration images (drawn at random, seed 0).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub calibration_images: u64,
}

/// The calibration images: `count` drawn at random from `root`, from the training side of
/// the run's `split.csv` when there is one beside the checkpoint.
fn calibration_samples(root: &Path, checkpoint: &Path, count: usize) -> Result<Vec<Sample>> {
    let dataset = Dataset::open(root, None)?;
    let split_file = checkpoint.with_file_name("split.csv");
    let mut pool: Vec<usize> = if split_file.is_file() {
        read_split_csv(&split_file, &dataset)?.train
    } else {
        (0..dataset.samples.len()).collect()
    };
    if pool.is_empty() {
        bail!("{} has no images to calibrate on", root.display());
    }
    pool.shuffle(&mut ChaCha8Rng::seed_from_u64(0));
    pool.truncate(count);
    Ok(pool.iter().map(|&i| dataset.samples[i].clone()).collect())
}

/// Runs `dermclass export`.
pub fn run_export(args: ExportArgs) -> Result<()> {
    let path = match &args.model {
        Some(model) => resolve_checkpoint(model)?,
        None => shipped_model()?,
    };
    let checkpoint = checkpoint::load(&path)?;
    let device = Device::flex();
    let model = checkpoint.model(&device)?;
    let info = ExportInfo::for_checkpoint(&checkpoint);
    let bytes = match &args.calibration {
        Some(root) if args.int8 => {
            let samples = calibration_samples(root, &path, args.calibration_images as usize)?;
            let count = samples.len();
            let loader = Loader::new(samples, eval_loader_config(&checkpoint.state.config))?;
            let mut batches = Vec::new();
            for batch in loader.epoch(0) {
                let batch = batch?;
                batches.push(Tensor::<4>::from_data(
                    TensorData::new(batch.images, batch.shape),
                    &device,
                ));
            }
            println!(
                "calibrating int8 ranges on {count} images of {}",
                root.display()
            );
            to_onnx_int8(&model, &info, batches)?
        }
        _ => to_onnx(&model, &info)?,
    };
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        }
        // Atomic: an interrupted export never leaves a truncated model behind.
        write_atomic(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
        println!(
            "wrote {} ({:.1} MB, ONNX opset {OPSET}, {}): {} from {}, input `image` Nx3x{}x{}, \
             outputs `logits` and `probabilities`",
            out.display(),
            bytes.len() as f64 / 1e6,
            if args.int8 { "int8" } else { "fp32" },
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
