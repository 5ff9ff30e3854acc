//! The training and inference speed benchmark (`dermclass bench`): one model, fixed random
//! inputs, the same measurements the Python peers in `bench/peers.py` make.

use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::fused_adam::FusedAdam;
use super::loss::cross_entropy;
use crate::data::bench::proc_status_kb;
use crate::fast_ops::profile;
use crate::infer::InferenceModel;
use crate::model::ModelSpec;

/// What one framework measured. Throughputs are images per second; `None` = not measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeedReport {
    /// Framework name.
    pub framework: String,
    /// Training images/s at 224x224, batch 16 (forward, cross-entropy, backward, Adam step).
    pub train_224_b16: Option<f64>,
    /// Training images/s at 128x128, batch 32.
    pub train_128_b32: Option<f64>,
    /// Inference images/s at 224x224, batch 1.
    pub infer_224_b1: Option<f64>,
    /// Inference images/s at 224x224, batch 16.
    pub infer_224_b16: Option<f64>,
    /// Peak resident memory of the process, MB.
    pub peak_rss_mb: Option<f64>,
    /// Resident memory right after the framework was loaded, before any model was built, MB:
    /// what the process holds for its libraries alone (PyTorch's CUDA build maps hundreds of
    /// MB of them), so the peak net of it compares frameworks like with like.
    #[serde(default)]
    pub framework_rss_mb: Option<f64>,
}

impl SpeedReport {
    /// Peak resident memory net of what the loaded framework held before any work, MB.
    pub fn net_peak_rss_mb(&self) -> Option<f64> {
        Some(self.peak_rss_mb? - self.framework_rss_mb?)
    }
}

/// The columns of a [`SpeedReport`] with their labels, in table order.
pub fn columns(r: &SpeedReport) -> [(&'static str, Option<f64>); 6] {
    [
        ("train 224 b16 (img/s)", r.train_224_b16),
        ("train 128 b32 (img/s)", r.train_128_b32),
        ("infer 224 b1 (img/s)", r.infer_224_b1),
        ("infer 224 b16 (img/s)", r.infer_224_b16),
        ("peak RSS (MB)", r.peak_rss_mb),
        ("peak RSS net (MB)", r.net_peak_rss_mb()),
    ]
}

/// One measurement: square input size, batch, and untimed and timed step counts.
#[derive(Clone, Copy, Debug)]
struct Run {
    size: usize,
    batch: usize,
    warmup: usize,
    steps: usize,
}

impl Run {
    /// A fixed random input batch.
    fn input(self, device: &Device) -> Tensor<4> {
        let shape = [self.batch, 3, self.size, self.size];
        Tensor::random(shape, burn::tensor::Distribution::Default, device)
    }

    /// Median images/s of `step` over the timed calls after the untimed ones. The kernel
    /// profile (when recording) is reset after the warm-up.
    fn median_rate(self, mut step: impl FnMut()) -> f64 {
        let mut rates = Vec::with_capacity(self.steps);
        for i in 0..self.warmup + self.steps {
            if i == self.warmup {
                profile::reset();
            }
            let started = Instant::now();
            step();
            if i >= self.warmup {
                rates.push(self.batch as f64 / started.elapsed().as_secs_f64());
            }
        }
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    }
}

/// Median training throughput (forward, cross-entropy, backward, Adam step).
fn train_speed(spec: &ModelSpec, device: &Device, run: Run) -> Result<f64> {
    let ad = device.clone().autodiff();
    let mut model = spec.build(&ad)?;
    let mut optimizer = FusedAdam::new(0.0).init();
    let x = run.input(&ad);
    let labels: Vec<usize> = (0..run.batch).map(|i| i % spec.classes).collect();
    Ok(run.median_rate(|| {
        let loss = cross_entropy(model.forward(x.clone()), &labels, None, 0.0);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-4, model.clone(), grads);
        // Wait for the work to finish (lazy or asynchronous backends).
        let _ = model.clone().into_record();
    }))
}

/// Median inference throughput (forward passes of the model as `InferenceModel` runs it).
fn infer_speed(spec: &ModelSpec, device: &Device, run: Run) -> Result<f64> {
    let model = InferenceModel::new(spec.build(device)?, device)?;
    let x = run.input(device);
    Ok(run.median_rate(|| {
        let _ = model.forward(x.clone()).into_data();
    }))
}

/// Runs every measurement of `arch` (7 classes) on `device`, or only the inference ones
/// when `train` is false.
pub fn measure(
    arch: &str,
    device: &Device,
    (warmup, steps): (usize, usize),
    train: bool,
) -> Result<SpeedReport> {
    // dermclass's framework is linked in: what the process holds before the first model is
    // built is its baseline.
    let framework_rss_mb = proc_status_kb("VmRSS").map(|kb| kb as f64 / 1024.0);
    let spec = ModelSpec::parse(arch, 7)?;
    let run = |size, batch| Run {
        size,
        batch,
        warmup,
        steps,
    };
    // Single images are quick and noisier: more of them.
    let batch_1 = Run {
        warmup: warmup * 2,
        steps: steps * 4,
        ..run(224, 1)
    };
    Ok(SpeedReport {
        framework: "dermclass (burn flex)".into(),
        train_224_b16: train
            .then(|| train_speed(&spec, device, run(224, 16)))
            .transpose()?,
        train_128_b32: train
            .then(|| train_speed(&spec, device, run(128, 32)))
            .transpose()?,
        infer_224_b1: Some(infer_speed(&spec, device, batch_1)?),
        infer_224_b16: Some(infer_speed(&spec, device, run(224, 16))?),
        peak_rss_mb: proc_status_kb("VmHWM").map(|kb| kb as f64 / 1024.0),
        framework_rss_mb,
    })
}

/// Where a training step's time goes: the fast kernels per phase, and the rest.
#[derive(Clone, Debug)]
pub struct StepProfile {
    /// Architecture measured.
    pub arch: String,
    /// Training steps (true) or inference passes (false).
    pub training: bool,
    /// Input size (square) and batch.
    pub size: usize,
    /// Images per step.
    pub batch: usize,
    /// Median step time, ms.
    pub step_ms: f64,
    /// Inference on the compiled plan (its steps are the parts) rather than burn's modules
    /// with the fast kernels (the kernel phases are).
    pub compiled: bool,
    /// Per part: label, calls per step and ms per step (mean over the measured steps).
    pub phases: Vec<(String, f64, f64)>,
}

/// Runs training steps (or, with `training` false, inference passes) of `arch` at
/// `size`x`size`, batch `batch`, recording the fast kernels' time per phase.
pub fn profile_steps(
    arch: &str,
    device: &Device,
    training: bool,
    size: usize,
    batch: usize,
    warmup: usize,
    steps: usize,
) -> Result<StepProfile> {
    let spec = ModelSpec::parse(arch, 7)?;
    let run = Run {
        size,
        batch,
        warmup,
        steps,
    };
    if !training {
        let model = InferenceModel::new(spec.build(device)?, device)?;
        if let Some(plan) = model.compiled() {
            let x = run.input(device);
            let images: Vec<f32> = x.to_data().iter::<f32>().collect();
            let rate = run.median_rate(|| {
                let _ = model.forward(x.clone()).into_data();
            });
            let phases = plan
                .profile(&images, [batch, 3, size, size], steps)?
                .into_iter()
                .map(|(kind, total, calls)| {
                    let per = steps as f64;
                    (kind.to_string(), calls as f64 / per, total * 1e3 / per)
                })
                .collect();
            return Ok(StepProfile {
                arch: arch.to_string(),
                training,
                size,
                batch,
                step_ms: batch as f64 / rate * 1e3,
                compiled: true,
                phases,
            });
        }
    }
    profile::set_enabled(true);
    let rate = if training {
        train_speed(&spec, device, run)
    } else {
        infer_speed(&spec, device, run)
    };
    profile::set_enabled(false);
    let rate = rate?;
    let phases = profile::snapshot()
        .into_iter()
        .filter(|(_, calls, _)| *calls > 0)
        .map(|(phase, calls, total)| {
            (
                phase.label().to_string(),
                calls as f64 / steps as f64,
                total.as_secs_f64() * 1e3 / steps as f64,
            )
        })
        .collect();
    Ok(StepProfile {
        arch: arch.to_string(),
        training,
        size,
        batch,
        step_ms: batch as f64 / rate * 1e3,
        compiled: false,
        phases,
    })
}

/// The profile as a table: one row per kernel phase (per kind of step of a compiled plan),
/// then everything else (burn's own ops: the stem and other convolutions, residual adds,
/// pooling, loss, optimizer, autodiff; for a plan, moving the images in and out).
/// The step time is the median, the phases are means, so "everything else" is approximate.
pub fn render_profile(p: &StepProfile) -> String {
    let mut out = format!(
        "{} {} at {}x{}, batch {}: {:.1} ms ({:.2} img/s)\n",
        p.arch,
        match (p.training, p.compiled) {
            (true, _) => "training step",
            (false, true) => "inference pass (compiled plan)",
            (false, false) => "inference pass",
        },
        p.size,
        p.size,
        p.batch,
        p.step_ms,
        p.batch as f64 / p.step_ms * 1e3
    );
    out += &format!(
        "{:<28} {:>8} {:>10} {:>7}\n",
        "part", "calls", "ms/step", "share"
    );
    let mut kernels = 0.0;
    for (phase, calls, ms) in &p.phases {
        kernels += ms;
        out += &format!(
            "{:<28} {:>8.0} {:>10.1} {:>6.1}%\n",
            phase,
            calls,
            ms,
            100.0 * ms / p.step_ms
        );
    }
    let rest = (p.step_ms - kernels).max(0.0);
    out += &format!(
        "{:<28} {:>8} {:>10.1} {:>6.1}%\n",
        if p.compiled {
            "everything else (copies)"
        } else {
            "everything else (burn)"
        },
        "",
        rest,
        100.0 * rest / p.step_ms
    );
    out
}

/// The comparison table: one row per framework, then `dermclass / best peer` per column
/// (for memory, lower is better, so the ratio is best peer / dermclass).
pub fn render_table(ours: &SpeedReport, peers: &[SpeedReport]) -> String {
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let mut text = format!("{:<28}", "framework");
    for (label, _) in columns(ours) {
        text += &format!(" {label:>22}");
    }
    text.push('\n');
    for report in std::iter::once(ours).chain(peers) {
        text += &format!("{:<28}", report.framework);
        for (_, value) in columns(report) {
            text += &format!(" {:>22}", fmt(value));
        }
        text.push('\n');
    }
    if peers.is_empty() {
        text += "(no Python peers measured: run bench/setup-peers.sh first)\n";
        return text;
    }
    text += &format!("{:<28}", "dermclass / best peer");
    for (i, (label, ours_value)) in columns(ours).into_iter().enumerate() {
        let lower_is_better = label.starts_with("peak");
        let best = peers
            .iter()
            .filter_map(|p| columns(p)[i].1)
            .reduce(|a, b| if lower_is_better { a.min(b) } else { a.max(b) });
        let ratio = match (ours_value, best) {
            (Some(o), Some(b)) if lower_is_better => Some(b / o),
            (Some(o), Some(b)) => Some(o / b),
            _ => None,
        };
        text += &format!(" {:>22}", ratio.map_or("-".into(), |r| format!("{r:.2}x")));
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_ratios_against_the_best_peer() {
        let ours = SpeedReport {
            framework: "dermclass".into(),
            train_224_b16: Some(10.0),
            peak_rss_mb: Some(500.0),
            framework_rss_mb: Some(100.0),
            ..SpeedReport::default()
        };
        let peers = [
            SpeedReport {
                framework: "pytorch".into(),
                train_224_b16: Some(20.0),
                peak_rss_mb: Some(1000.0),
                framework_rss_mb: Some(700.0),
                ..SpeedReport::default()
            },
            SpeedReport {
                framework: "keras".into(),
                train_224_b16: Some(5.0),
                peak_rss_mb: Some(800.0),
                ..SpeedReport::default()
            },
        ];
        let table = render_table(&ours, &peers);
        let last = table.lines().last().unwrap();
        assert!(last.contains("0.50x"), "{table}");
        assert!(last.contains("1.60x"), "{table}");
        // Net of the frameworks' own 100 and 700 MB: keras (no baseline) has no net figure,
        // so the best peer is pytorch's 300 MB against our 400.
        assert!(last.contains("0.75x"), "{table}");
        assert!(render_table(&ours, &[]).contains("no Python peers"));
    }

    #[test]
    fn a_tiny_model_measures_every_column() {
        let report = measure("mobilenet_v1:0.25", &Device::default(), (0, 1), true).unwrap();
        for (label, value) in columns(&report) {
            let v = value.unwrap_or_else(|| panic!("{label} missing"));
            // Other tests in this process move its resident memory (one resets the peak), so
            // the net figure is only known to exist here.
            let positive = label.contains("net") || v > 0.0;
            assert!(v.is_finite() && positive, "{label}: {v}");
        }
        // Inference only: no training columns, both inference ones.
        let report = measure("mobilenet_v1:0.25", &Device::default(), (0, 1), false).unwrap();
        assert!(report.train_224_b16.is_none() && report.train_128_b32.is_none());
        assert!(report.infer_224_b1.is_some_and(|v| v > 0.0));
        assert!(report.infer_224_b16.is_some_and(|v| v > 0.0));
    }
}
