//! The Keras study's results table made real: train several architectures with the same split,
//! seed, budget and augmentation, then tabulate cost, time, accuracy and latency per trick.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::checkpoint;
use super::config::TrainConfig;
use super::events::{Event, Observer};
use super::trainer::{RunPaths, SessionOptions, train};
use super::vary::{self, Variation};
use crate::data::{Dataset, split_train_val, write_split_csv};
use crate::device::parse_device;
use crate::infer::InferenceModel;
use crate::memory::{peak_resident_mb, start_peak_window};
use crate::model::ModelSpec;
use crate::report::EpochRow;
use crate::report::markdown::{format_duration_hms, markdown_table};
use crate::report::plots::{LATENCY_AXIS, MADDS_AXIS, plot_accuracy_vs_cost};
use crate::report::write_atomic;

/// One row of `results.csv` / `results.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompareRow {
    /// The trick the architecture demonstrates.
    pub trick: String,
    /// Canonical architecture name.
    pub arch: String,
    /// Batch, learning rate, epochs run and input size.
    pub settings: String,
    /// Trainable parameters.
    pub params: usize,
    /// Multiply-adds per image at the input size.
    pub madds: u64,
    /// Training time, h:mm:ss.
    pub training_time: String,
    /// Training time in seconds.
    pub training_seconds: f64,
    /// Validation accuracy of the best checkpoint.
    pub val_accuracy: f64,
    /// Validation balanced multiclass accuracy of the best checkpoint.
    pub val_balanced_accuracy: f64,
    /// Validation macro one-vs-rest AUC (NaN when undefined).
    pub val_macro_auc: f64,
    /// Median batch-1 inference latency, milliseconds per image.
    pub latency_ms: f64,
    /// Weights at fp32, megabytes.
    pub weights_mb: f64,
    /// Median training throughput over the run's epochs, images per second (absent in
    /// results written before it was recorded).
    #[serde(default)]
    pub train_images_per_s: Option<f64>,
    /// Peak resident memory of the process while it trained this run, MB (the last session
    /// of a resumed run; absent where the system cannot measure it).
    #[serde(default)]
    pub peak_train_memory_mb: Option<f64>,
    /// Classes the model tells apart (chance balanced accuracy is one over it; absent in
    /// results written before it was recorded).
    #[serde(default)]
    pub classes: Option<usize>,
}

/// Median wall-clock milliseconds of a batch-1 forward pass at `width` x `height` as
/// `predict` runs it (the compiled plan on the CPU), after 3 unmeasured runs, over `runs`
/// measured ones.
pub fn batch1_latency_ms(
    model: &InferenceModel,
    width: usize,
    height: usize,
    device: &Device,
    runs: usize,
) -> f64 {
    let x = Tensor::<4>::zeros([1, 3, height, width], device);
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 3 {
        let started = Instant::now();
        let logits = model.forward(x.clone());
        let _ = logits.into_data();
        if i >= 3 {
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn run_dir_name(arch: &str) -> String {
    arch.replace([':', '.'], "_")
}

/// Trains every architecture of `arches`, under every combination of `variations`, with
/// `base` settings under `out`, then writes `results.csv`, `results.md` and
/// the two accuracy-vs-cost plots. Finished runs (with a `result.json`) are not retrained;
/// interrupted ones resume from their last checkpoint.
pub fn compare(
    base: &TrainConfig,
    arches: &[String],
    variations: &[Variation],
    out: &Path,
    observer: &Observer,
) -> Result<Vec<CompareRow>> {
    if arches.is_empty() {
        bail!("--arches lists no architecture");
    }
    for arch in arches {
        ModelSpec::parse(arch, 2)?;
    }
    let combos = vary::combinations(variations);
    // Every combination is checked before anything trains.
    for overrides in &combos {
        vary::apply(base, overrides)?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let _lock = super::lock::RunLock::acquire(out)?;
    let split_path = out.join("split.csv");
    let mut base = base.clone();
    if base.split.is_none() {
        if !split_path.exists() {
            let dataset = Dataset::open(&base.data, None)?;
            let split = split_train_val(&dataset, base.val_fraction, base.seed);
            write_split_csv(&split_path, &dataset, &split)?;
        }
        base.split = Some(split_path);
    }
    let device = parse_device(&base.device)?;
    let mut rows = Vec::new();
    let jobs = arches
        .iter()
        .flat_map(|arch| combos.iter().map(move |overrides| (arch, overrides)));
    for (arch, overrides) in jobs {
        let run = run_folder(out, arch).with_file_name(format!(
            "{}{}",
            run_dir_name(arch),
            vary::dir_suffix(overrides)
        ));
        let result_path = run.join("result.json");
        if result_path.exists() {
            let text = std::fs::read_to_string(&result_path)?;
            let row: CompareRow = serde_json::from_str(&text)
                .with_context(|| format!("bad {}", result_path.display()))?;
            observer.emit(&Event::ArchAlreadyDone { arch });
            rows.push(row);
            continue;
        }
        observer.emit(&Event::ArchStarted { arch });
        let config = TrainConfig {
            arch: arch.clone(),
            ..vary::apply(&base, overrides)?
        };
        let options = SessionOptions {
            resume: RunPaths::new(&run).last().exists(),
            observer: observer.clone(),
            ..SessionOptions::default()
        };
        let measures_memory = start_peak_window();
        let summary = train(&config, &run, &options)?;
        let peak_memory = peak_resident_mb().filter(|_| measures_memory);
        let best = checkpoint::load(&RunPaths::new(&run).best())?;
        let spec = best.state.model_spec()?;
        let model = InferenceModel::new(best.model(&device)?, &device)?;
        let latency = batch1_latency_ms(&model, config.width, config.height, &device, 20);
        let m = summary
            .best_metrics
            .as_ref()
            .context("compare needs a validation split (val_fraction > 0)")?;
        let row = CompareRow {
            trick: spec.arch.family().trick().to_string(),
            arch: spec.arch.to_string(),
            settings: settings_text(&config, summary.state.epochs_done, overrides),
            params: summary.params,
            madds: summary.madds,
            training_time: format_duration_hms(summary.state.seconds),
            training_seconds: summary.state.seconds,
            val_accuracy: m.accuracy,
            val_balanced_accuracy: m.balanced_accuracy,
            val_macro_auc: m.macro_auc.unwrap_or(f64::NAN),
            latency_ms: latency,
            weights_mb: summary.params as f64 * 4.0 / 1e6,
            train_images_per_s: median_images_per_second(&summary.state.history),
            peak_train_memory_mb: peak_memory,
            classes: Some(spec.classes),
        };
        write_atomic(&result_path, serde_json::to_string_pretty(&row)?.as_bytes())?;
        rows.push(row);
        // The table grows with each finished run, so a comparison that spans sessions shows
        // what it has so far.
        write_results(&rows, out)?;
    }
    write_results(&rows, out)?;
    Ok(rows)
}

/// The median of the epochs' training throughput (robust to an epoch slowed by other work).
fn median_images_per_second(history: &[EpochRow]) -> Option<f64> {
    let mut rates: Vec<f64> = history
        .iter()
        .map(|row| row.images_per_second)
        .filter(|r| r.is_finite() && *r > 0.0)
        .collect();
    if rates.is_empty() {
        return None;
    }
    rates.sort_by(f64::total_cmp);
    let mid = rates.len() / 2;
    Some(if rates.len() % 2 == 1 {
        rates[mid]
    } else {
        (rates[mid - 1] + rates[mid]) / 2.0
    })
}

/// `batch 32, lr 0.002, 8 epochs, 128x96`, then any other varied setting.
fn settings_text(config: &TrainConfig, epochs: usize, overrides: &vary::Overrides) -> String {
    let mut text = format!(
        "batch {}, lr {}, {epochs} epochs, {}x{}",
        config.batch, config.lr, config.width, config.height
    );
    let others: vary::Overrides = overrides
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "batch" | "lr" | "width" | "height"))
        .cloned()
        .collect();
    if !others.is_empty() {
        text += &format!(", {}", vary::label(&others));
    }
    text
}

/// Writes `results.csv`, `results.md`, `accuracy_vs_madds.png` and `accuracy_vs_latency.png`
/// for `rows` into `out`.
pub fn write_results(rows: &[CompareRow], out: &Path) -> Result<()> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    for row in rows {
        csv.serialize(row)?;
    }
    write_atomic(out.join("results.csv"), &csv.into_inner()?)?;
    let headers = [
        "trick",
        "arch",
        "settings",
        "params",
        "MAdds",
        "training time",
        "train img/s",
        "peak train memory (MB)",
        "val acc",
        "val BACC",
        "val macro AUC",
        "latency b1 (ms/img)",
        "weights (MB)",
    ];
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.trick.clone(),
                format!("`{}`", r.arch),
                r.settings.clone(),
                format!("{:.2}M", r.params as f64 / 1e6),
                format!("{:.1}M", r.madds as f64 / 1e6),
                r.training_time.clone(),
                optional(r.train_images_per_s, 1),
                optional(r.peak_train_memory_mb, 0),
                format!("{:.4}", r.val_accuracy),
                format!("{:.4}", r.val_balanced_accuracy),
                format!("{:.4}", r.val_macro_auc),
                format!("{:.2}", r.latency_ms),
                format!("{:.2}", r.weights_mb),
            ]
        })
        .collect();
    let against = baseline_table(rows).unwrap_or_default();
    let efficiency = efficiency_table(rows).unwrap_or_default();
    let text = format!(
        "# Results per trick\n\nSame split, seed, budget and augmentation for every architecture; \
         validation figures are those of each run's best checkpoint. Training throughput is the \
         median over epochs; peak memory is the whole process's while it trained the run; \
         latency is a batch-1 forward pass as `predict` runs it.\n\n{}\n\
         ![accuracy vs MAdds](accuracy_vs_madds.png)\n![accuracy vs latency](accuracy_vs_latency.png)\n{against}{efficiency}",
        markdown_table(&headers, &table)
    );
    write_atomic(out.join("results.md"), text.as_bytes())?;
    let points = |cost: fn(&CompareRow) -> f64| -> Vec<(String, f64, f64)> {
        rows.iter()
            .map(|r| (r.arch.clone(), cost(r), r.val_balanced_accuracy))
            .collect()
    };
    plot_accuracy_vs_cost(
        out.join("accuracy_vs_madds.png"),
        MADDS_AXIS,
        &points(|r| r.madds as f64),
    )?;
    plot_accuracy_vs_cost(
        out.join("accuracy_vs_latency.png"),
        LATENCY_AXIS,
        &points(|r| r.latency_ms),
    )?;
    Ok(())
}

/// What each row buys against the baseline (the plain twin when it is in the table, else
/// the first row): how many times fewer multiply-adds and parameters, how many times the
/// training throughput and the batch-1 speed, and the balanced accuracy gained, in points.
/// `None` with fewer than two rows.
fn baseline_table(rows: &[CompareRow]) -> Option<String> {
    if rows.len() < 2 {
        return None;
    }
    let base = rows
        .iter()
        .find(|r| r.arch.starts_with("plain_v1"))
        .unwrap_or(&rows[0]);
    let times = |x: f64| format!("{x:.2}x");
    let table: Vec<Vec<String>> = rows
        .iter()
        .filter(|r| !std::ptr::eq(*r, base))
        .map(|r| {
            let throughput = r
                .train_images_per_s
                .zip(base.train_images_per_s)
                .map_or_else(|| "—".to_string(), |(a, b)| times(a / b));
            vec![
                format!("`{}` ({})", r.arch, r.settings),
                times(base.madds as f64 / r.madds.max(1) as f64),
                times(base.params as f64 / r.params.max(1) as f64),
                throughput,
                times(base.latency_ms / r.latency_ms),
                format!(
                    "{:+.1}",
                    100.0 * (r.val_balanced_accuracy - base.val_balanced_accuracy)
                ),
            ]
        })
        .collect();
    let headers = [
        "arch",
        "fewer MAdds",
        "fewer parameters",
        "training images/s",
        "batch-1 speed",
        "BACC (points)",
    ];
    Some(format!(
        "\n## Against `{}` ({})\n\nEach row's cost and accuracy as multiples of the baseline's \
         (BACC as the difference in percentage points).\n\n{}",
        base.arch,
        base.settings,
        markdown_table(&headers, &table)
    ))
}

/// What each row's accuracy costs: its balanced accuracy above chance (one over the number
/// of classes), in percentage points, per unit of each cost the table lists (GMAdds,
/// millions of parameters, hours of training, milliseconds of batch-1 latency). `None` when
/// no row knows its number of classes.
fn efficiency_table(rows: &[CompareRow]) -> Option<String> {
    let table: Vec<Vec<String>> = rows
        .iter()
        .filter_map(|r| {
            let points = 100.0 * (r.val_balanced_accuracy - 1.0 / r.classes? as f64);
            let per = |cost: f64| {
                if cost > 0.0 {
                    format!("{:.1}", points / cost)
                } else {
                    "—".to_string()
                }
            };
            Some(vec![
                format!("`{}` ({})", r.arch, r.settings),
                format!("{points:.1}"),
                per(r.madds as f64 / 1e9),
                per(r.params as f64 / 1e6),
                per(r.training_seconds / 3600.0),
                per(r.latency_ms),
            ])
        })
        .collect();
    if table.is_empty() {
        return None;
    }
    let headers = [
        "arch",
        "BACC above chance (points)",
        "per GMAdd",
        "per M parameters",
        "per training hour",
        "per ms of latency",
    ];
    Some(format!(
        "\n## What the accuracy costs\n\nBalanced accuracy above chance (one over the number of \
         classes), in percentage points, per unit of each cost: the more, the more each unit \
         buys. Training hours are wall time, so a run that shared its machine looks dearer.\n\n{}",
        markdown_table(&headers, &table)
    ))
}

/// A measured value to `decimals` places, or a dash where it was not measured.
fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "—".to_string(), |v| format!("{v:.decimals$}"))
}

/// Where `compare` keeps the run of `arch` under `out`.
pub fn run_folder(out: &Path, arch: &str) -> PathBuf {
    out.join("runs").join(run_dir_name(arch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        arch: &str,
        madds: u64,
        params: usize,
        rate: f64,
        latency: f64,
        bacc: f64,
    ) -> CompareRow {
        CompareRow {
            trick: "t".into(),
            arch: arch.into(),
            settings: "s".into(),
            params,
            madds,
            training_time: "0:01:00".into(),
            training_seconds: 60.0,
            val_accuracy: 0.5,
            val_balanced_accuracy: bacc,
            val_macro_auc: 0.8,
            latency_ms: latency,
            weights_mb: params as f64 * 4e-6,
            train_images_per_s: Some(rate),
            peak_train_memory_mb: Some(500.0),
            classes: Some(5),
        }
    }

    /// The five figures after the arch cell of `arch`'s line in a markdown table.
    fn figures_of(text: &str, arch: &str) -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("`{arch}`")))
            .unwrap_or_else(|| panic!("no line for {arch} in {text}"));
        let cells: Vec<String> = line.split('|').map(|c| c.trim().to_string()).collect();
        cells[2..7].to_vec()
    }

    #[test]
    fn efficiency_is_accuracy_above_chance_per_unit_of_cost() {
        // 5 classes: chance 0.2, so BACC 0.6 is 40 points above it.
        let mut fast = row("mobilenet_v1:1.0", 500_000_000, 4_000_000, 40.0, 8.0, 0.60);
        fast.training_seconds = 1800.0;
        let text = efficiency_table(std::slice::from_ref(&fast)).unwrap();
        // 40 points; per 0.5 GMAdd, 4M parameters, half an hour, 8 ms.
        assert_eq!(
            figures_of(&text, "mobilenet_v1:1.0"),
            ["40.0", "80.0", "10.0", "80.0", "5.0"],
            "{text}"
        );
        // Rows written before the class count was recorded are left out.
        let mut old = fast.clone();
        old.classes = None;
        assert_eq!(efficiency_table(&[old.clone()]), None);
        let text = efficiency_table(&[old, fast]).unwrap();
        assert_eq!(text.matches("`mobilenet_v1:1.0`").count(), 1, "{text}");
    }

    #[test]
    fn rows_are_set_against_the_plain_twin_wherever_it_stands() {
        let rows = [
            row("mobilenet_v1:1.0", 100, 3_000_000, 40.0, 5.0, 0.60),
            row("plain_v1:1.0", 1000, 30_000_000, 10.0, 50.0, 0.55),
        ];
        let text = baseline_table(&rows).unwrap();
        assert!(text.contains("Against `plain_v1:1.0`"), "{text}");
        assert_eq!(
            figures_of(&text, "mobilenet_v1:1.0"),
            ["10.00x", "10.00x", "4.00x", "10.00x", "+5.0"],
            "{text}"
        );
        assert!(
            !text.contains("| `plain_v1"),
            "the baseline has no row of its own"
        );
        assert_eq!(baseline_table(&rows[..1]), None);
        // Without the plain twin the first row is the baseline.
        let text = baseline_table(&[rows[0].clone(), rows[0].clone()]).unwrap();
        assert!(text.contains("Against `mobilenet_v1:1.0`"), "{text}");
    }
}
