//! The training loop: data, model and optimizer from a [`TrainConfig`], one epoch at a time,
//! with validation, history, atomic checkpoints (`last.ckpt`, `best.ckpt`), resume, early
//! stopping, and the run's report files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::{Module, ParamGroup};
use burn::optim::{
    GradientsParams, ModuleOptimizer, SgdConfig, decay::WeightDecayConfig, momentum::MomentumConfig,
};
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::adjust::{LogitAdjustment, effective_prior};
use super::checkpoint::{self, RunState};
use super::config::{LossKind, OptimizerKind, TrainConfig, WeightingKind};
use super::ema::Ema;
use super::evaluate::{Tta, predict_loader};
use super::events::{Event, Observer};
use super::fused_adam::{FusedAdam, FusedAdamW};
use super::loss::{logit_adjusted_cross_entropy, mixed_cross_entropy};
use super::mix::{BatchMix, MixedLabel, unmixed};
use super::schedule::LrSchedule;
use crate::calibration::CalibrationReport;
use crate::data::loader::image_seed;
use crate::data::{
    Batch, Dataset, Loader, LoaderConfig, Sample, Split, check_images, class_weights,
    read_fold_csv, read_split_csv, split_train_val, write_split_csv,
};
use crate::device::parse_device;
use crate::metrics::Metrics;
use crate::model::torchvision::{InitError, load_state_dict};
use crate::model::{Classifier, ModelSpec};
use crate::report::{self, EpochRow, write_atomic};

/// Files of a run folder.
pub struct RunPaths {
    /// The folder.
    pub dir: PathBuf,
}

impl RunPaths {
    /// Paths inside `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    /// Latest checkpoint (resume point).
    pub fn last(&self) -> PathBuf {
        self.dir.join("last.ckpt")
    }
    /// Best checkpoint by validation balanced accuracy.
    pub fn best(&self) -> PathBuf {
        self.dir.join("best.ckpt")
    }
    /// Resolved settings.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    /// The split used.
    pub fn split(&self) -> PathBuf {
        self.dir.join("split.csv")
    }
    /// Per-epoch history.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.csv")
    }
}

/// Options of one training session that are not part of the run's settings.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Continue from `last.ckpt` in the run folder.
    pub resume: bool,
    /// Skip unreadable images instead of failing the pre-training check.
    pub skip_bad: bool,
    /// Receives progress events (nothing is printed by the library).
    pub observer: Observer,
    /// Stop after this many epochs in this session (for tests of interruption).
    pub max_epochs_this_session: Option<usize>,
}

/// What a finished (or stopped) run reports.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Final state (epochs, history, best epoch).
    pub state: RunState,
    /// Metrics of the best checkpoint on the validation images (none without validation).
    pub best_metrics: Option<Metrics>,
    /// Calibration and melanoma operating points of the best checkpoint on the same images.
    pub best_calibration: Option<CalibrationReport>,
    /// Trainable parameters.
    pub params: usize,
    /// Multiply-adds per image at the training input size.
    pub madds: u64,
}

/// The data side of a run: dataset, split, loaders.
struct RunData {
    classes: Vec<String>,
    train: Loader,
    /// None when every image trains (`val_fraction = 0`).
    val: Option<Loader>,
    train_counts: Vec<usize>,
}

/// Loader settings for running a model trained with `config` over images: its input size,
/// normalisation and colour constancy, no augmentation, no shuffling.
pub fn eval_loader_config(config: &TrainConfig) -> LoaderConfig {
    let mut lc = LoaderConfig::eval(config.width, config.height, config.batch.max(16));
    lc.normalization = config.normalization;
    lc.workers = config.workers;
    lc.shades_of_gray = config.shades_of_gray;
    lc
}

fn loader_config(config: &TrainConfig, train: bool) -> LoaderConfig {
    if !train {
        return LoaderConfig {
            cache_dir: config.cache.clone(),
            seed: config.seed,
            ..eval_loader_config(config)
        };
    }
    LoaderConfig {
        width: config.width,
        height: config.height,
        batch_size: config.batch,
        shuffle: true,
        augment: config.augment.to_config(),
        sampler: config.sampler,
        drop_last: true,
        normalization: config.normalization,
        workers: config.workers,
        cache_dir: config.cache.clone(),
        seed: config.seed,
        shades_of_gray: config.shades_of_gray,
        source_scale: if config.augment.enabled {
            config.augment.source_scale
        } else {
            1.0
        },
    }
}

fn choose_split(
    config: &TrainConfig,
    paths: &RunPaths,
    options: &SessionOptions,
    dataset: &Dataset,
) -> Result<Split> {
    let split = if options.resume && paths.split().exists() {
        read_split_csv(&paths.split(), dataset)?
    } else if let (Some(file), Some(fold)) = (&config.split, config.fold) {
        read_fold_csv(file, dataset, fold)?
    } else if let Some(file) = &config.split {
        read_split_csv(file, dataset)?
    } else if config.val_fraction == 0.0 {
        Split {
            train: (0..dataset.samples.len()).collect(),
            val: Vec::new(),
        }
    } else {
        split_train_val(dataset, config.val_fraction, config.seed)
    };
    let final_fit = config.val_fraction == 0.0 && config.split.is_none();
    if split.train.is_empty() || (split.val.is_empty() && !final_fit) {
        bail!(
            "the split leaves {} training and {} validation images; both need some \
             (val_fraction = 0 trains on every image without validation)",
            split.train.len(),
            split.val.len()
        );
    }
    Ok(split)
}

fn prepare_data(
    config: &TrainConfig,
    paths: &RunPaths,
    options: &SessionOptions,
) -> Result<RunData> {
    let open = crate::data::OpenOptions {
        isic_subset: config.subset.clone(),
        ..Default::default()
    };
    let mut dataset = Dataset::open_with(&config.data, &open)
        .with_context(|| format!("cannot open data set {}", config.data.display()))?;
    let report = check_images(&mut dataset, options.skip_bad)?;
    if !dataset.skipped.is_empty() {
        options.observer.emit(&Event::SkippedImages {
            count: dataset.skipped.len(),
            by_kind: format!("{:?}", report.bad_by_kind()),
        });
    }
    let split = choose_split(config, paths, options, &dataset)?;
    write_split_csv(&paths.split(), &dataset, &split)?;
    let pick = |indices: &[usize]| -> Vec<Sample> {
        indices
            .iter()
            .map(|&i| dataset.samples[i].clone())
            .collect()
    };
    let Split { train, val } = &split;
    let mut train_counts = vec![0; dataset.classes.len()];
    for &i in train {
        train_counts[dataset.samples[i].label] += 1;
    }
    if let Some(empty) = train_counts.iter().position(|&c| c == 0) {
        bail!(
            "class {} has no training images after the split",
            dataset.classes[empty]
        );
    }
    let mut train_cfg = loader_config(config, true);
    train_cfg.drop_last = train.len() > config.batch;
    let val = if val.is_empty() {
        None
    } else {
        Some(Loader::new(pick(val), loader_config(config, false))?)
    };
    Ok(RunData {
        classes: dataset.classes.clone(),
        train: Loader::new(pick(train), train_cfg)?,
        val,
        train_counts,
    })
}

fn build_optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let base = optimizer_with_decay(config, config.weight_decay);
    if config.weight_decay > 0.0 && config.exempt_norm_bias() {
        // Batch-norm scales and shifts and biases: every 1-D parameter of the zoo.
        let norm_and_bias = ParamGroup::from_any_predicates(vec!["gamma", "beta", "bias"]);
        return match config.optimizer {
            OptimizerKind::Adam => base.with_group(norm_and_bias, FusedAdam::new(0.0), None),
            OptimizerKind::Adamw => base.with_group(norm_and_bias, FusedAdamW::new(0.0), None),
            OptimizerKind::Sgd => {
                base.with_group(norm_and_bias, sgd_config(config, None).build(), None)
            }
        };
    }
    base
}

fn sgd_config(config: &TrainConfig, decay: Option<WeightDecayConfig>) -> SgdConfig {
    SgdConfig::new()
        .with_weight_decay(decay)
        .with_momentum(Some(
            MomentumConfig::new()
                .with_momentum(config.momentum)
                .with_dampening(0.0)
                .with_nesterov(config.nesterov),
        ))
}

fn optimizer_with_decay(config: &TrainConfig, weight_decay: f64) -> ModuleOptimizer {
    let decay = (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32));
    match config.optimizer {
        OptimizerKind::Adam => FusedAdam::new(weight_decay as f32).init(),
        OptimizerKind::Adamw => FusedAdamW::new(weight_decay as f32).init(),
        OptimizerKind::Sgd => sgd_config(config, decay).init(),
    }
}

/// The model, its average and the optimizer of a run in progress.
struct Learner {
    model: Classifier,
    /// The EMA of the weights (inference device), when the run has one.
    ema: Option<Classifier>,
    optimizer: ModuleOptimizer,
}

impl Learner {
    /// The model validation, checkpoints and prediction use: the average when there is one.
    fn inference_model(&self) -> Classifier {
        match &self.ema {
            Some(ema) => ema.clone(),
            None => self.model.valid(),
        }
    }
}

/// What one epoch of training gives.
struct EpochTraining {
    loss: f64,
    images: usize,
    lr: f64,
    seconds: f64,
}

/// The loss the run trains with, for one batch.
fn batch_loss(
    config: &TrainConfig,
    logits: Tensor<2>,
    targets: &[MixedLabel],
    weights: Option<&[f32]>,
    prior: &[f64],
) -> Tensor<1> {
    match config.loss {
        LossKind::Ce => mixed_cross_entropy(logits, targets, weights, config.label_smoothing),
        LossKind::LogitAdjusted => logit_adjusted_cross_entropy(
            logits,
            targets,
            weights,
            config.label_smoothing,
            prior,
            config.tau,
        ),
    }
}

/// The batch's targets, after mixing its images when the run mixes (from a random stream
/// fixed by the seed and the step, so a resumed run mixes as the uninterrupted one would).
fn batch_targets(
    config: &TrainConfig,
    mix: Option<BatchMix>,
    batch: &mut Batch,
    epoch: usize,
    step: usize,
) -> Vec<MixedLabel> {
    match mix {
        Some(mix) => {
            let seed = image_seed(config.seed ^ MIX_STREAM, epoch, step);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            mix.apply(&mut batch.images, batch.shape, &batch.labels, &mut rng)
        }
        None => unmixed(&batch.labels),
    }
}

/// Separates the mixing stream's seeds from the loader's.
const MIX_STREAM: u64 = 0x6d69_7875_7063_7574;

/// Runs one epoch of optimisation steps.
#[allow(clippy::too_many_arguments)]
fn train_one_epoch(
    config: &TrainConfig,
    data: &RunData,
    learner: &mut Learner,
    state: &mut RunState,
    schedule: &LrSchedule,
    weights: Option<&[f32]>,
    prior: &[f64],
    observer: &Observer,
    last: &Path,
) -> Result<EpochTraining> {
    let epoch = state.epochs_done + 1;
    observer.emit(&Event::EpochStarted {
        epoch,
        epochs: config.epochs,
        images: data.train.len_batches() * config.batch,
    });
    let started = Instant::now();
    let device = learner.model.devices()[0].clone();
    let ema = config.ema.map(|decay| Ema {
        decay,
        warmup: true,
    });
    let (mut loss_sum, mut seen, mut lr) = (0.0f64, 0usize, config.lr);
    let mix = config.augment.batch_mix();
    for batch in data.train.epoch(epoch) {
        let mut batch = batch?;
        lr = schedule.lr(state.steps_done);
        let targets = batch_targets(config, mix, &mut batch, epoch, state.steps_done);
        let x = Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), &device);
        let logits = learner.model.forward(x);
        let loss = batch_loss(config, logits, &targets, weights, prior);
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        if !loss_value.is_finite() {
            bail!(
                "the training loss became {loss_value} at epoch {epoch}, step {}; \
                 try a lower --lr. The last good checkpoint is {}",
                state.steps_done + 1,
                last.display()
            );
        }
        let grads = GradientsParams::from_grads(loss.backward(), &learner.model);
        learner.model = learner.optimizer.step(lr, learner.model.clone(), grads);
        if let (Some(rule), Some(average)) = (ema, learner.ema.take()) {
            learner.ema = Some(rule.update(average, &learner.model.valid(), state.ema_updates));
            state.ema_updates += 1;
        }
        state.steps_done += 1;
        loss_sum += loss_value * batch.labels.len() as f64;
        seen += batch.labels.len();
        observer.emit(&Event::BatchDone {
            images: batch.labels.len(),
            mean_loss: loss_sum / seen as f64,
        });
    }
    Ok(EpochTraining {
        loss: loss_sum / seen.max(1) as f64,
        images: seen,
        lr,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Validation metrics of `model` (with the run's decision rule) and the loss of its raw
/// probabilities.
fn validate(
    model: &Classifier,
    val: &Loader,
    classes: &[String],
    adjustment: &LogitAdjustment,
    device: &Device,
) -> Result<(Metrics, f64)> {
    let mut predictions =
        predict_loader(model, val, device, Tta::One, &LogitAdjustment::default())?;
    let loss = predictions.loss();
    adjustment.apply(&mut predictions.probs);
    let metrics = Metrics::compute(&predictions.labels, &predictions.probs, classes)?;
    Ok((metrics, loss))
}

/// Adds the epoch to the history, then writes `best` (when better, or always without a
/// validation split) and `last`, the metrics CSV and the curves.
fn record_epoch(
    paths: &RunPaths,
    state: &mut RunState,
    learner: &Learner,
    row: EpochRow,
    has_val: bool,
) -> Result<()> {
    let epoch = row.epoch;
    let bacc = row.val_balanced_accuracy;
    state.seconds += row.seconds;
    state.history.push(row);
    state.epochs_done = epoch;
    // Without validation the last (averaged) model is the one to keep.
    let improved = !has_val || bacc > state.best_balanced_accuracy;
    if improved {
        state.best_balanced_accuracy = if has_val { bacc } else { -1.0 };
        state.best_epoch = epoch;
    }
    let model = learner.inference_model();
    let train_model = learner.ema.as_ref().map(|_| learner.model.valid());
    let optimizer = Some(&learner.optimizer);
    // Best first, then last: a crash between the two leaves a consistent pair.
    if improved {
        checkpoint::save(
            &paths.best(),
            state,
            &model,
            train_model.as_ref(),
            optimizer,
        )?;
    }
    checkpoint::save(
        &paths.last(),
        state,
        &model,
        train_model.as_ref(),
        optimizer,
    )?;
    report::write_epochs_csv(paths.metrics(), &state.history)?;
    report::plots::plot_curves(paths.dir.join("curves.png"), &state.history)?;
    Ok(())
}

/// Why the run stops before its last epoch, if it does.
fn should_stop(config: &TrainConfig, state: &RunState, has_val: bool) -> Option<String> {
    let epoch = state.epochs_done;
    if let Some(patience) = config.early_stop
        && has_val
        && epoch - state.best_epoch >= patience
    {
        return Some(format!(
            "early stop: no better balanced accuracy for {patience} epochs"
        ));
    }
    if let Some(budget) = config.budget_minutes
        && state.seconds >= budget * 60.0
    {
        return Some(format!(
            "time budget of {budget} minutes used: stopping after epoch {epoch}"
        ));
    }
    None
}

/// Checks everything in `config` that needs no data: ranges, the architecture name and its
/// options, the device name.
pub fn check_settings(config: &TrainConfig) -> Result<()> {
    config.validate()?;
    let mut spec = ModelSpec::parse(&config.arch, 2)?;
    if let Some(dropout) = config.dropout {
        spec = spec.with_dropout(dropout)?;
    }
    spec.cost(config.height, config.width)?;
    parse_device(&config.device)?;
    if let Some(path) = &config.init {
        if spec.arch.torchvision_keys().is_none() {
            return Err(InitError::Unsupported {
                arch: spec.arch.to_string(),
            }
            .into());
        }
        if !path.is_file() {
            bail!("--init {}: no such file", path.display());
        }
    }
    Ok(())
}

/// A fresh model, or one that starts from `config.init`'s torchvision weights.
fn initial_model(
    spec: &ModelSpec,
    config: &TrainConfig,
    device: &Device,
    observer: &Observer,
) -> Result<Classifier> {
    let model = spec.build(device)?;
    let Some(path) = &config.init else {
        return Ok(model);
    };
    let arch = spec.arch.to_string();
    let keys = spec
        .arch
        .torchvision_keys()
        .ok_or_else(|| InitError::Unsupported { arch: arch.clone() })?;
    let (model, report) = load_state_dict(model, &arch, &keys, path)?;
    observer.emit(&Event::Initialised(&report));
    Ok(model)
}

/// Trains (or resumes) the run described by `config` in `out`.
pub fn train(config: &TrainConfig, out: &Path, options: &SessionOptions) -> Result<RunSummary> {
    let paths = RunPaths::new(out);
    if !options.resume {
        // Names and ranges are checked before any file is written or image decoded.
        check_settings(config)?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let _lock = super::lock::RunLock::acquire(out)?;

    // Settings: a resumed run keeps its own; only where and how long it runs may change.
    let resumed = if options.resume {
        if !paths.last().exists() {
            bail!(
                "nothing to resume: {} does not exist",
                paths.last().display()
            );
        }
        Some(checkpoint::load(&paths.last())?)
    } else {
        if paths.last().exists() {
            bail!(
                "{} already holds a run; pass --resume to continue it or pick another --out",
                out.display()
            );
        }
        None
    };
    let config = match &resumed {
        Some(ck) => ck.state.config.for_resume(config)?,
        None => config.clone(),
    };
    config.validate()?;
    write_atomic(paths.config(), config.to_toml()?.as_bytes())?;

    let data = prepare_data(&config, &paths, options)?;
    let mut spec = ModelSpec::parse(&config.arch, data.classes.len())?;
    if let Some(dropout) = config.dropout {
        spec = spec.with_dropout(dropout)?;
    }
    let cost = spec.cost(config.height, config.width)?;

    let device = parse_device(&config.device)?;
    device.seed(config.seed);
    let train_device = device.clone().autodiff();
    let weights = class_weights(&data.train_counts, config.weighting());
    let weights = (config.class_weights != WeightingKind::None).then_some(weights.as_slice());
    let prior = effective_prior(&data.train_counts, config.sampler, weights);
    let (mut learner, mut state) = match &resumed {
        Some(ck) => {
            let model = ck.train_model(&train_device)?;
            let ema = match config.ema {
                Some(_) => Some(ck.model(&device)?),
                None => None,
            };
            let optimizer = ck.restore_optimizer(build_optimizer(&config))?;
            (
                Learner {
                    model,
                    ema,
                    optimizer,
                },
                ck.state.clone(),
            )
        }
        None => {
            let model = initial_model(&spec, &config, &train_device, &options.observer)?;
            let ema = config.ema.map(|_| model.valid());
            let state = RunState {
                config: config.clone(),
                arch: spec.arch.to_string(),
                classes: data.classes.clone(),
                epochs_done: 0,
                steps_done: 0,
                best_balanced_accuracy: -1.0,
                best_epoch: 0,
                history: Vec::new(),
                seconds: 0.0,
                adjustment: LogitAdjustment::for_run(&config, prior.clone()),
                ema_updates: 0,
            };
            let optimizer = build_optimizer(&config);
            (
                Learner {
                    model,
                    ema,
                    optimizer,
                },
                state,
            )
        }
    };

    let steps_per_epoch = data.train.len_batches();
    let schedule = LrSchedule {
        peak: config.lr,
        kind: config.schedule,
        warmup_steps: (config.warmup_epochs * steps_per_epoch as f64).round() as usize,
        total_steps: config.epochs * steps_per_epoch,
        step_every: config.step_epochs * steps_per_epoch,
        step_gamma: config.step_gamma,
    };

    let mut session_epochs = 0;
    while state.epochs_done < config.epochs {
        if options
            .max_epochs_this_session
            .is_some_and(|max| session_epochs >= max)
        {
            break;
        }
        let epoch = state.epochs_done + 1;
        // Dropout and any other device randomness: a function of (seed, epoch), so a resumed
        // run draws what the uninterrupted one would have.
        device.seed(
            config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(epoch as u64),
        );
        let trained = train_one_epoch(
            &config,
            &data,
            &mut learner,
            &mut state,
            &schedule,
            weights,
            &prior,
            &options.observer,
            &paths.last(),
        )?;
        let started = Instant::now();
        let (metrics, val_loss) = match &data.val {
            Some(val) => {
                let (m, loss) = validate(
                    &learner.inference_model(),
                    val,
                    &data.classes,
                    &state.adjustment,
                    &device,
                )?;
                (Some(m), loss)
            }
            None => (None, f64::NAN),
        };
        let row = EpochRow {
            epoch,
            train_loss: trained.loss,
            val_loss,
            val_accuracy: metrics.as_ref().map_or(f64::NAN, |m| m.accuracy),
            val_balanced_accuracy: metrics.as_ref().map_or(f64::NAN, |m| m.balanced_accuracy),
            val_macro_auc: metrics
                .as_ref()
                .and_then(|m| m.macro_auc)
                .unwrap_or(f64::NAN),
            lr: trained.lr,
            seconds: trained.seconds + started.elapsed().as_secs_f64(),
            images_per_second: trained.images as f64 / trained.seconds.max(1e-9),
        };
        options.observer.emit(&Event::EpochEnded {
            row: &row,
            epochs: config.epochs,
        });
        record_epoch(&paths, &mut state, &learner, row, data.val.is_some())?;
        session_epochs += 1;
        if let Some(reason) = should_stop(&config, &state, data.val.is_some()) {
            options.observer.emit(&Event::Stopping { reason: &reason });
            break;
        }
    }

    finish(&paths, &data, &device, state, cost.params(), cost.madds())
}

/// Evaluates the best checkpoint and writes `confusion.png` and `report.md`.
fn finish(
    paths: &RunPaths,
    data: &RunData,
    device: &Device,
    state: RunState,
    params: usize,
    madds: u64,
) -> Result<RunSummary> {
    let (best_metrics, best_calibration) = match &data.val {
        Some(val) => {
            let best = checkpoint::load(&paths.best())?;
            let model: Classifier = best.model(device)?;
            let p = predict_loader(&model, val, device, Tta::One, &best.state.adjustment)?;
            let metrics = Metrics::compute(&p.labels, &p.probs, &data.classes)?;
            let calibration = CalibrationReport::compute(&p.labels, &p.probs, &data.classes);
            report::plots::plot_confusion(
                paths.dir.join("confusion.png"),
                &metrics.confusion,
                &data.classes,
            )?;
            (Some(metrics), Some(calibration))
        }
        None => (None, None),
    };
    let summary = RunSummary {
        state,
        best_metrics,
        best_calibration,
        params,
        madds,
    };
    write_atomic(
        paths.dir.join("report.md"),
        render_report(&summary).as_bytes(),
    )?;
    Ok(summary)
}

/// The run's `report.md`: settings, final metrics, per-class table, time and cost.
pub fn render_report(summary: &RunSummary) -> String {
    let state = &summary.state;
    let c = &state.config;
    report::run::render(&report::run::RunReport {
        arch: &state.arch,
        data: &c.data,
        width: c.width,
        height: c.height,
        classes: state.classes.len(),
        epochs_done: state.epochs_done,
        epochs: c.epochs,
        batch: c.batch,
        optimizer: format!("{:?}", c.optimizer),
        lr: c.lr,
        schedule: format!("{:?}", c.schedule),
        seed: c.seed,
        params: summary.params,
        madds: summary.madds,
        loss: format!("{:?}", c.loss),
        tau: c.tau,
        ema: c.ema,
        shades_of_gray: c.shades_of_gray,
        mixing: c
            .augment
            .batch_mix()
            .map_or("off".into(), |m| m.to_string()),
        rule_tau: state.adjustment.tau,
        prior: &state.adjustment.prior,
        seconds: state.seconds,
        best_epoch: state.best_epoch,
        metrics: summary.best_metrics.as_ref(),
        calibration: summary.best_calibration.as_ref(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_after(epochs_done: usize, best_epoch: usize, seconds: f64) -> RunState {
        RunState {
            config: TrainConfig::default(),
            arch: "tiny_cnn:1.0".into(),
            classes: vec!["A".into(), "B".into()],
            epochs_done,
            steps_done: 0,
            best_balanced_accuracy: 0.5,
            best_epoch,
            history: Vec::new(),
            seconds,
            adjustment: LogitAdjustment::default(),
            ema_updates: 0,
        }
    }

    #[test]
    fn early_stopping_waits_for_its_patience_and_needs_validation() {
        let config = TrainConfig {
            early_stop: Some(3),
            ..TrainConfig::default()
        };
        assert_eq!(should_stop(&config, &state_after(5, 3, 0.0), true), None);
        let reason = should_stop(&config, &state_after(6, 3, 0.0), true).unwrap();
        assert!(
            reason.contains("no better balanced accuracy for 3 epochs"),
            "{reason}"
        );
        // A final fit has no validation to be patient about.
        assert_eq!(should_stop(&config, &state_after(6, 6, 0.0), false), None);
        assert_eq!(should_stop(&config, &state_after(9, 3, 0.0), false), None);
        // Off by default.
        let plain = TrainConfig::default();
        assert_eq!(should_stop(&plain, &state_after(40, 1, 1e9), true), None);
    }

    #[test]
    fn the_time_budget_counts_every_session_of_the_run() {
        let config = TrainConfig {
            budget_minutes: Some(2.0),
            ..TrainConfig::default()
        };
        assert_eq!(should_stop(&config, &state_after(1, 1, 119.9), true), None);
        let reason = should_stop(&config, &state_after(2, 2, 120.0), true).unwrap();
        assert!(
            reason.contains("time budget of 2 minutes used: stopping after epoch 2"),
            "{reason}"
        );
    }
}
