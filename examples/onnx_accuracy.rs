//! Balanced accuracy of exported ONNX files on a run's validation split, run in tract: how
//! much int8 quantization costs, measured the way `dermclass evaluate` measures.
//!
//! cargo run --release --example onnx_accuracy -- RUN_DIR DATA_ROOT MODEL.onnx [MODEL2.onnx ...]
//!
//! RUN_DIR holds the checkpoint (for the preprocessing) and split.csv; each file's BACC,
//! accuracy, per-class sensitivity and its top-1 agreement with the first file are printed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dermclass::data::loader::Loader;
use dermclass::data::split::read_split_csv;
use dermclass::data::{Batch, Dataset};
use dermclass::metrics::Metrics;
use dermclass::train::checkpoint;
use dermclass::train::trainer::eval_loader_config;

mod tract {
    use tract_onnx::prelude::*;

    pub type Plan = std::sync::Arc<TypedRunnableModel>;

    pub fn load(path: &std::path::Path, shape: [usize; 4]) -> TractResult<Plan> {
        tract_onnx::onnx()
            .model_for_path(path)?
            .with_input_fact(0, f32::fact(shape).into())?
            .into_optimized()?
            .into_runnable()
    }

    pub fn probabilities(plan: &Plan, input: Vec<f32>, shape: [usize; 4]) -> TractResult<Vec<f32>> {
        let x = tract_ndarray::Array4::from_shape_vec(shape, input)?;
        let out = plan.run(tvec!(x.into_tensor().into()))?;
        Ok(out[1]
            .to_plain_array_view::<f32>()?
            .iter()
            .copied()
            .collect())
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        bail!("usage: onnx_accuracy RUN_DIR DATA_ROOT MODEL.onnx [MODEL2.onnx ...]");
    }
    let run = Path::new(&args[0]);
    let checkpoint = checkpoint::load(&run.join("best.ckpt"))?;
    let dataset = Dataset::open(Path::new(&args[1]), None)?;
    let split = read_split_csv(&run.join("split.csv"), &dataset)?;
    let samples: Vec<_> = split
        .val
        .iter()
        .map(|&i| dataset.samples[i].clone())
        .collect();
    let labels: Vec<usize> = samples.iter().map(|s| s.label).collect();
    let mut config = eval_loader_config(&checkpoint.state.config);
    config.batch_size = 1;
    let batches: Vec<Batch> = Loader::new(samples, config)?
        .epoch(0)
        .collect::<Result<_, _>>()?;
    let models: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
    let mut first: Option<Vec<usize>> = None;
    for model in &models {
        let shape = batches[0].shape;
        let plan = tract::load(model, shape)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("cannot load {}", model.display()))?;
        let started = std::time::Instant::now();
        let mut probs = Vec::new();
        for batch in &batches {
            let p = tract::probabilities(&plan, batch.images.clone(), batch.shape)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            probs.extend(p);
        }
        let ms = started.elapsed().as_secs_f64() * 1e3 / batches.len() as f64;
        let metrics = Metrics::compute(&labels, &probs, &checkpoint.state.classes)?;
        let top1: Vec<usize> = probs
            .chunks(checkpoint.state.classes.len())
            .map(|row| {
                (0..row.len())
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .unwrap()
            })
            .collect();
        let agreement = first
            .as_ref()
            .map(|f| f.iter().zip(&top1).filter(|(a, b)| a == b).count() as f64 / f.len() as f64);
        let size = std::fs::metadata(model)?.len() as f64 / 1e6;
        println!(
            "{}: {:.1} MB, BACC {:.4}, accuracy {:.4}, {:.1} ms/image in tract (batch 1, one thread){}",
            model.display(),
            size,
            metrics.balanced_accuracy,
            metrics.accuracy,
            ms,
            agreement.map_or(String::new(), |a| format!(
                ", top-1 agreement with the first {:.4}",
                a
            ))
        );
        let sens: Vec<String> = metrics
            .class_names
            .iter()
            .zip(&metrics.per_class)
            .map(|(c, m)| format!("{c} {:.2}", m.sensitivity))
            .collect();
        println!("  sensitivity: {}", sens.join(", "));
        first.get_or_insert(top1);
    }
    Ok(())
}
