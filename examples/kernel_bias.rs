//! Is a training step with the fast CPU kernels biased? Measures, on real batches of the
//! `bench/loss-curve.sh` setting (MobileNetV2 0.5, 128x96, batch 32, augmented), how far the
//! loss, the parameter gradients and the batch-norm running statistics of one step are from an
//! `f64` reference (burn's own ops on `f64` tensors), with the kernels on and with burn's `f32`
//! ops, at several points of a training run (trained with the kernels on).
//!
//! A systematic error shows as: a loss offset of one sign, a gradient error that projects onto
//! the gradient with one sign (`proj`: the gradient is scaled by `1 + proj`), or a gradient
//! error that keeps its direction from batch to batch (`persist`: `|sum_b e_b|^2 /
//! sum_b |e_b|^2`, about 1 for errors that are independent between batches, up to the number
//! of batches for a fixed error). Rounding noise shows as errors of the same size for both f32
//! paths, with `proj` of either sign and `persist` near 1.
//!
//! Run with `bench/kernel-bias.sh` (settings there).

use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Gradients};
use dermclass::data::{AugmentConfig, Batch, Dataset, Loader, LoaderConfig, read_split_csv};
use dermclass::fast_ops;
use dermclass::model::{Classifier, ModelSpec};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Converts every float tensor of a module to `f64` (gradients required as before).
struct ToF64 {
    device: Device,
}

impl ModuleMapper for ToF64 {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let device = self.device.clone();
        param.map(|t| {
            let grad = t.is_require_grad();
            let data = t.into_data().convert::<f64>();
            let t = Tensor::<D>::from_data(data, (&device, DType::F64));
            if grad { t.require_grad() } else { t }
        })
    }
}

fn f64s<const D: usize>(t: &Tensor<D>) -> Vec<f64> {
    t.clone()
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap()
}

/// Every float tensor of a module in visiting order: (name, value, gradient if any).
struct Collect<'a> {
    grads: Option<&'a Gradients>,
    path: Vec<String>,
    out: Vec<Tensor64>,
}

/// A module's float tensor: name, value, gradient (if computed), and whether it is trained.
struct Tensor64 {
    name: String,
    value: Vec<f64>,
    grad: Option<Vec<f64>>,
    trained: bool,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let grad = self.grads.and_then(|g| value.grad(g)).map(|g| f64s(&g));
        self.out.push(Tensor64 {
            name: self.path.join("."),
            value: f64s(&value),
            grad,
            trained: value.is_require_grad(),
        });
    }
}

fn collect(model: &Classifier, grads: Option<&Gradients>) -> Vec<Tensor64> {
    let mut c = Collect {
        grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut c);
    c.out
}

/// Mean cross-entropy in the logits' own dtype.
fn cross_entropy(logits: Tensor<2>, labels: &[usize]) -> Tensor<1> {
    let [n, k] = logits.dims();
    let (device, dtype) = (logits.device(), logits.dtype());
    let mut onehot = vec![0f64; n * k];
    for (i, &l) in labels.iter().enumerate() {
        onehot[i * k + l] = 1.0;
    }
    let targets = Tensor::<2>::from_data(TensorData::new(onehot, [n, k]), (&device, dtype));
    (log_softmax(logits, 1) * targets)
        .sum()
        .neg()
        .div_scalar(n as f64)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Fast,
    Burn32,
    Burn64,
}

struct Measured {
    loss: f64,
    /// Gradient of every trainable tensor, in visiting order.
    grads: Vec<Vec<f64>>,
    /// Running statistics before and after the step, in visiting order.
    running_before: Vec<Vec<f64>>,
    running: Vec<Vec<f64>>,
}

/// One forward and backward of a fresh copy of `model` (its own running statistics).
fn measure(spec: &ModelSpec, model: &Classifier, batch: &Batch, mode: Mode) -> Measured {
    let device = Device::flex().autodiff();
    fast_ops::set_enabled(mode == Mode::Fast);
    let mut copy = spec
        .build(&device)
        .unwrap()
        .load_record(model.clone().into_record());
    let dtype = if mode == Mode::Burn64 {
        copy = copy.map(&mut ToF64 {
            device: device.clone(),
        });
        DType::F64
    } else {
        DType::F32
    };
    let before = collect(&copy, None);
    let x = Tensor::<4>::from_data(
        TensorData::new(batch.images.clone(), batch.shape),
        (&device, dtype),
    );
    let loss = cross_entropy(copy.forward(x), &batch.labels);
    let value = f64s(&loss)[0];
    let grads = loss.backward();
    let tensors = collect(&copy, Some(&grads));
    // Running statistics are updated per thread; `valid()` merges the updates.
    let after = collect(&copy.valid(), None);
    fast_ops::set_enabled(true);
    let (mut g, mut r0, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for ((t, b), a) in tensors.into_iter().zip(before).zip(after) {
        if t.trained {
            g.push(t.grad.expect("every trained tensor has a gradient"));
        } else {
            r0.push(b.value);
            r.push(a.value);
        }
    }
    Measured {
        loss: value,
        grads: g,
        running_before: r0,
        running: r,
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sub(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, (var / n).sqrt())
}

/// Error statistics of one f32 path against the f64 reference over several batches.
struct PathStats {
    loss_err: Vec<f64>,
    /// Per batch: |e| / |g| of the whole gradient.
    rel: Vec<f64>,
    /// Per batch: <e, g> / |g|^2 of the whole gradient.
    proj: Vec<f64>,
    /// Per batch: fraction of coordinates whose sign differs from the reference's.
    flips: Vec<f64>,
    /// Per batch: RMS over coordinates of the error of Adam's first step `g / (|g| + eps)`
    /// (eps = 1e-5, burn's default), the step where rounding noise in near-zero gradients
    /// weighs most.
    adam: Vec<f64>,
    /// Per tensor: sum over batches of e, sum of |e|^2, sum of |g|^2, sum of <e, g>.
    per_tensor: Vec<(Vec<f64>, f64, f64, Vec<f64>)>,
    /// Per running-statistics tensor: sum over batches of |r - r64|^2 and |r64 - r0|^2.
    running: Vec<(f64, f64)>,
}

impl PathStats {
    fn new() -> Self {
        Self {
            loss_err: Vec::new(),
            rel: Vec::new(),
            proj: Vec::new(),
            flips: Vec::new(),
            adam: Vec::new(),
            per_tensor: Vec::new(),
            running: Vec::new(),
        }
    }

    fn add(&mut self, got: &Measured, reference: &Measured) {
        let before = &reference.running_before;
        self.loss_err.push(got.loss - reference.loss);
        let (mut ee, mut eg, mut gg, mut flips, mut count) = (0.0, 0.0, 0.0, 0usize, 0usize);
        let mut adam = 0.0;
        let step = |g: f64| g / (g.abs() + 1e-5);
        if self.per_tensor.is_empty() {
            self.per_tensor = reference
                .grads
                .iter()
                .map(|g| (vec![0.0; g.len()], 0.0, 0.0, Vec::new()))
                .collect();
            self.running = vec![(0.0, 0.0); reference.running.len()];
        }
        for (i, (a, g)) in got.grads.iter().zip(&reference.grads).enumerate() {
            let e = sub(a, g);
            let t = &mut self.per_tensor[i];
            for (s, v) in t.0.iter_mut().zip(&e) {
                *s += v;
            }
            t.1 += dot(&e, &e);
            t.2 += dot(g, g);
            t.3.push(dot(&e, g) / dot(g, g).max(f64::MIN_POSITIVE));
            ee += dot(&e, &e);
            eg += dot(&e, g);
            gg += dot(g, g);
            flips += a
                .iter()
                .zip(g)
                .filter(|(x, y)| (**x > 0.0) != (**y > 0.0))
                .count();
            adam += a
                .iter()
                .zip(g)
                .map(|(x, y)| (step(*x) - step(*y)).powi(2))
                .sum::<f64>();
            count += g.len();
        }
        self.rel.push((ee / gg).sqrt());
        self.proj.push(eg / gg);
        self.flips.push(flips as f64 / count as f64);
        self.adam.push((adam / count as f64).sqrt());
        for (i, ((r, r64), r0)) in got
            .running
            .iter()
            .zip(&reference.running)
            .zip(before)
            .enumerate()
        {
            let e = sub(r, r64);
            let u = sub(r64, r0);
            self.running[i].0 += dot(&e, &e);
            self.running[i].1 += dot(&u, &u);
        }
    }

    /// |sum_b e_b|^2 / sum_b |e_b|^2 over all coordinates.
    fn persistence(&self) -> f64 {
        let s: f64 = self.per_tensor.iter().map(|t| dot(&t.0, &t.0)).sum();
        let q: f64 = self.per_tensor.iter().map(|t| t.1).sum();
        s / q
    }
}

fn report(names: &[String], fast: &PathStats, burn: &PathStats, batches: usize) {
    for (label, s) in [("fast kernels", fast), ("burn f32", burn)] {
        let (lm, lse) = mean_se(&s.loss_err);
        let (rm, _) = mean_se(&s.rel);
        let (pm, pse) = mean_se(&s.proj);
        let (fm, _) = mean_se(&s.flips);
        let (am, _) = mean_se(&s.adam);
        let run_rel = (s.running.iter().map(|r| r.0).sum::<f64>()
            / s.running.iter().map(|r| r.1).sum::<f64>())
        .sqrt();
        println!(
            "  {label:12}: loss - loss64 {lm:+.3e} (se {lse:.1e}) | grad |e|/|g| {rm:.3e} | \
             proj {pm:+.3e} (se {pse:.1e}) | persist {:.2} of {batches} | sign flips {:.4} | \
             Adam step RMS error {am:.2e} | running stats |e|/|update| {run_rel:.2e}",
            s.persistence(),
            fm
        );
    }
    // Tensors where the fast path's error is largest relative to burn's.
    let mut rows: Vec<(f64, usize)> = fast
        .per_tensor
        .iter()
        .zip(&burn.per_tensor)
        .enumerate()
        .map(|(i, (f, b))| ((f.1 / f.2).sqrt() / (b.1 / b.2).sqrt().max(1e-300), i))
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!(
        "  tensors with the largest fast/burn error ratio (rel error fast, burn; proj mean fast, burn):"
    );
    for (ratio, i) in rows.iter().take(5) {
        let (f, b) = (&fast.per_tensor[*i], &burn.per_tensor[*i]);
        println!(
            "    {:40} ratio {ratio:6.2}  rel {:.2e} {:.2e}  proj {:+.1e} {:+.1e}",
            names[*i],
            (f.1 / f.2).sqrt(),
            (b.1 / b.2).sqrt(),
            mean_se(&f.3).0,
            mean_se(&b.3).0
        );
    }
    // The same by kind of tensor (the name without layer numbers), which separates the
    // kernels: pointwise, depthwise and stem convolution weights, batch-norm scale and shift.
    let kind = |name: &str| {
        name.split('.')
            .filter(|part| !part.chars().all(|c| c.is_ascii_digit()))
            .collect::<Vec<_>>()
            .join(".")
    };
    let mut kinds: Vec<String> = names.iter().map(|n| kind(n)).collect();
    kinds.sort();
    kinds.dedup();
    println!(
        "  by kind: tensors, relative error fast / burn, proj fast / burn (mean and se over tensors and batches):"
    );
    for k in kinds {
        let members: Vec<usize> = (0..names.len()).filter(|&i| kind(&names[i]) == k).collect();
        let rel = |s: &PathStats| {
            let e: f64 = members.iter().map(|&i| s.per_tensor[i].1).sum();
            let g: f64 = members.iter().map(|&i| s.per_tensor[i].2).sum();
            (e / g).sqrt()
        };
        let proj = |s: &PathStats| {
            let v: Vec<f64> = members
                .iter()
                .flat_map(|&i| s.per_tensor[i].3.iter().copied())
                .collect();
            mean_se(&v)
        };
        let ((pf, pfse), (pb, pbse)) = (proj(fast), proj(burn));
        println!(
            "    {k:45} {:3}  {:.2e} / {:.2e}  {pf:+.1e} ({pfse:.0e}) / {pb:+.1e} ({pbse:.0e})",
            members.len(),
            rel(fast),
            rel(burn)
        );
    }
    let ratios: Vec<f64> = rows.iter().map(|r| r.0.ln()).collect();
    let (m, se) = mean_se(&ratios);
    println!(
        "  over {} tensors: mean log(fast error / burn error) {m:+.3} (se {se:.3})",
        ratios.len()
    );
}

fn main() -> Result<()> {
    let data = std::env::var("DATA").unwrap_or("../shared/data/isic2018-task3-200x150".into());
    let split = std::env::var("SPLIT").unwrap_or("results/fast-kernels-loss/split.csv".into());
    let arch = std::env::var("ARCH").unwrap_or("mobilenet_v2:0.5".into());
    let points: Vec<usize> = std::env::var("POINTS")
        .unwrap_or("0 50 150".into())
        .split_whitespace()
        .map(|v| v.parse().context("POINTS: step numbers"))
        .collect::<Result<_>>()?;
    let batches: usize = env("BATCHES", 6);
    let seed: u64 = env("SEED", 1);
    let lr: f64 = env("LR", 2e-3);

    let dataset = Dataset::open(data.as_ref(), None)?;
    let split = read_split_csv(split.as_ref(), &dataset)?;
    let samples = |idx: &[usize]| idx.iter().map(|&i| dataset.samples[i].clone()).collect();
    let config = LoaderConfig {
        width: 128,
        height: 96,
        batch_size: 32,
        shuffle: true,
        augment: AugmentConfig::default(),
        drop_last: true,
        workers: 1,
        seed,
        ..LoaderConfig::default()
    };
    let train = Loader::new(samples(&split.train), config.clone())?;
    // Measurement batches: a second, independently shuffled stream of the training images.
    let probe = Loader::new(
        samples(&split.train),
        LoaderConfig {
            seed: seed + 1000,
            ..config
        },
    )?;

    let device = Device::flex().autodiff();
    device.seed(seed);
    let spec = ModelSpec::parse(&arch, dataset.classes.len())?.with_dropout(0.0)?;
    let mut model = spec.build(&device)?;
    let mut optimizer = AdamConfig::new().init();
    let per_epoch = train.len_batches();
    println!(
        "{arch}, 128x96, batch 32, Adam lr {lr}, trained with the fast kernels; \
         {batches} probe batches per point"
    );
    let tensors = collect(&model, None);
    let names: Vec<String> = tensors
        .iter()
        .filter(|t| t.trained)
        .map(|t| t.name.clone())
        .collect();
    println!(
        "{} trained tensors, {} running statistics",
        names.len(),
        tensors.len() - names.len()
    );
    let mut step = 0;
    let last = points.iter().copied().max().unwrap_or(0);
    while step <= last {
        if points.contains(&step) {
            let started = Instant::now();
            let (mut fast, mut burn) = (PathStats::new(), PathStats::new());
            let mut loss64 = Vec::new();
            for b in 0..batches {
                let batch = probe.batch(1 + step, b)?;
                let reference = measure(&spec, &model, &batch, Mode::Burn64);
                loss64.push(reference.loss);
                fast.add(&measure(&spec, &model, &batch, Mode::Fast), &reference);
                burn.add(&measure(&spec, &model, &batch, Mode::Burn32), &reference);
            }
            println!(
                "step {step} (mean f64 loss of the probe batches {:.4}; {:.0} s):",
                mean_se(&loss64).0,
                started.elapsed().as_secs_f64()
            );
            report(&names, &fast, &burn, batches);
        }
        if step == last {
            break;
        }
        let batch = train.batch(1 + step / per_epoch, step % per_epoch)?;
        let x = Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), &device);
        let loss = cross_entropy(model.forward(x), &batch.labels);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(lr, model, grads);
        step += 1;
    }
    Ok(())
}
