//! Training commands: `train`, `evaluate`, `predict`, `demo`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::Outcome;
use super::model::InputSize;
use super::skip::screen_or_skip;
use dermclass::calibration::{CalibrationReport, fit_temperature, nll_at};
use dermclass::data::screen::{BadInput, skipped_sidecar, write_skipped_csv};
use dermclass::data::{
    self, Dataset, ISIC_CLASSES, Loader, Sample, source::is_image_path, split::read_split_rows,
};
use dermclass::device::parse_device;
use dermclass::metrics::Metrics;
use dermclass::model::{Classifier, ModelSpec};
use dermclass::report::plots::plot_reliability;
use dermclass::report::submission::write_submission;
use dermclass::train::adjust::LogitAdjustment;
use dermclass::train::config::{
    LossKind, Normalization, OptimizerKind, Sampler, ScheduleKind, TrainConfig, WeightingKind,
};
use dermclass::train::evaluate::{Predictions, Tta, predict_loader};
use dermclass::train::trainer::eval_loader_config;
use dermclass::train::{Checkpoint, RunPaths, SessionOptions, checkpoint, train};

/// Arguments of `dermclass train`. Every setting flag overrides `--config`.
#[derive(Args, Debug, Default)]
pub struct TrainArgs {
    /// Data root: ISIC 2018 layout, HAM10000 layout or one folder per class.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run folder for checkpoints, metrics and reports.
    #[arg(long)]
    pub out: PathBuf,
    /// TOML file with settings (keys as in the run's config.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Architecture, e.g. mobilenet_v2:1.0 (see `dermclass models`).
    #[arg(long)]
    pub arch: Option<String>,
    /// Input size: 224 or WxH.
    #[arg(long)]
    pub input: Option<InputSize>,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Optimizer.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// SGD with Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Learning-rate schedule.
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleKind>,
    /// Linear warm-up in epochs.
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// Step schedule: epochs between decays.
    #[arg(long)]
    pub step_epochs: Option<usize>,
    /// Step schedule: decay factor.
    #[arg(long)]
    pub step_gamma: Option<f64>,
    /// Label smoothing epsilon.
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// Class weights in the loss.
    #[arg(long, value_enum)]
    pub class_weights: Option<WeightingKind>,
    /// Beta of the effective-number class weights.
    #[arg(long)]
    pub effective_beta: Option<f64>,
    /// Sampler.
    #[arg(long, value_enum)]
    pub sampler: Option<Sampler>,
    /// Turn augmentation off.
    #[arg(long)]
    pub no_augment: bool,
    /// Add random vertical flips.
    #[arg(long)]
    pub vflip: bool,
    /// Turn random horizontal flips off.
    #[arg(long)]
    pub no_hflip: bool,
    /// Rotation range in degrees (seed: 30).
    #[arg(long)]
    pub rotation: Option<f32>,
    /// Zoom range (seed: 0.3).
    #[arg(long)]
    pub zoom: Option<f32>,
    /// Width/height shift as a fraction of the size (seed: 0.3).
    #[arg(long)]
    pub shift: Option<f32>,
    /// Brightness jitter (0 = off).
    #[arg(long)]
    pub brightness: Option<f32>,
    /// Contrast jitter (0 = off).
    #[arg(long)]
    pub contrast: Option<f32>,
    /// Pixel normalisation.
    #[arg(long, value_enum)]
    pub normalization: Option<Normalization>,
    /// Classifier dropout.
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Validation fraction of the lesion-grouped split.
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Official ISIC layout: train on this subset (training, validation or test; default
    /// training).
    #[arg(long)]
    pub subset: Option<String>,
    /// Use this split file (image,split) instead of making one; with --fold, a fold file
    /// from `dermclass split --folds K`.
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Validate on this fold of the --split fold file and train on the others.
    #[arg(long, requires = "split")]
    pub fold: Option<usize>,
    /// Start from a torchvision state dict (.pth: ImageNet weights, say) for mobilenet_v2,
    /// shufflenet_v2 or resnet50; the classifier is kept fresh unless the file has the
    /// data's class count. Implies --normalization imagenet unless that flag is given.
    #[arg(long, conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Device: cpu, cuda:N or wgpu.
    #[arg(long)]
    pub device: Option<String>,
    /// Stop after N epochs without a better validation balanced accuracy.
    #[arg(long)]
    pub early_stop: Option<usize>,
    /// Loader worker threads (0 = all cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Folder for the preprocessed image cache.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Stop after this many minutes (checked after each epoch).
    #[arg(long)]
    pub budget_minutes: Option<f64>,
    /// Continue the run in --out from its last checkpoint, with its own settings.
    #[arg(long)]
    pub resume: bool,
    /// Skip unreadable images (reported) instead of failing before training.
    #[arg(long)]
    pub skip_bad: bool,
    /// Training loss: ce or logit-adjusted.
    #[arg(long, value_enum)]
    pub loss: Option<LossKind>,
    /// Logit adjustment strength: in the logit-adjusted loss, or post hoc after ce (0 = off).
    #[arg(long)]
    pub tau: Option<f64>,
    /// Keep an exponential moving average of the weights with this decay (e.g. 0.999).
    #[arg(long)]
    pub ema: Option<f64>,
    /// No weight decay on batch-norm and bias parameters (default for sgd and adamw).
    #[arg(long)]
    pub no_decay_norm_bias: bool,
    /// Shades-of-Gray colour constancy with this norm (6 is usual), in training and use.
    #[arg(long)]
    pub shades_of_gray: Option<f32>,
    /// Augment with all 8 dihedral views (flips and quarter turns; square inputs).
    #[arg(long)]
    pub dihedral: bool,
    /// Random-resized crop with this area range, e.g. 0.35,1.0 (replaces zoom and shift).
    #[arg(long, value_parser = parse_range)]
    pub crop_scale: Option<[f32; 2]>,
    /// Saturation jitter (0 = off), e.g. 0.2.
    #[arg(long)]
    pub saturation: Option<f32>,
    /// Hue jitter in turns (0 = off), e.g. 0.02.
    #[arg(long)]
    pub hue: Option<f32>,
    /// Augment each training image from a copy this many times the input size (1 = from
    /// the input size; 1.5 lets crops keep the image's detail).
    #[arg(long)]
    pub source_scale: Option<f32>,
    /// Mixup: blend training images in pairs, Beta concentration (0 = off), e.g. 0.2.
    #[arg(long)]
    pub mixup: Option<f32>,
    /// CutMix: paste a rectangle of one training image into another, Beta concentration
    /// (0 = off), e.g. 1.0. With --mixup too, each batch takes one of them.
    #[arg(long)]
    pub cutmix: Option<f32>,
    /// The chance that a batch is mixed when --mixup or --cutmix is on.
    #[arg(long)]
    pub mix_prob: Option<f32>,
}

/// Parses `MIN,MAX`.
fn parse_range(text: &str) -> Result<[f32; 2], String> {
    let parts: Vec<&str> = text.split(',').collect();
    let [lo, hi] = parts.as_slice() else {
        return Err(format!("expected MIN,MAX, got `{text}`"));
    };
    let parse = |v: &str| {
        v.trim()
            .parse::<f32>()
            .map_err(|_| format!("`{v}` is not a number"))
    };
    Ok([parse(lo)?, parse(hi)?])
}

macro_rules! override_fields {
    ($args:expr, $config:expr, $($field:ident),* $(,)?) => {
        $(if let Some(value) = $args.$field.clone() { $config.$field = value.into(); })*
    };
}

impl TrainArgs {
    /// The settings: defaults, then `--config`, then flags. With `--resume`: the run's
    /// stored settings, then flags (the library refuses changes that would alter the run).
    pub fn resolve(&self) -> Result<TrainConfig> {
        let mut config = if self.resume {
            if self.config.is_some() {
                bail!("--config cannot be combined with --resume: the run keeps its settings");
            }
            let last = RunPaths::new(&self.out).last();
            if last.exists() {
                checkpoint::load(&last)?.state.config
            } else {
                // `train` says there is nothing to resume, after checking the run's lock.
                TrainConfig::default()
            }
        } else {
            match &self.config {
                Some(path) => TrainConfig::from_toml_file(path)?,
                None => TrainConfig::default(),
            }
        };
        override_fields!(
            self,
            config,
            data,
            arch,
            epochs,
            batch,
            optimizer,
            lr,
            momentum,
            weight_decay,
            schedule,
            warmup_epochs,
            step_epochs,
            step_gamma,
            label_smoothing,
            class_weights,
            effective_beta,
            sampler,
            normalization,
            val_fraction,
            seed,
            device,
            workers,
            loss,
            tau,
        );
        if self.ema.is_some() {
            config.ema = self.ema;
        }
        if self.no_decay_norm_bias {
            config.no_decay_norm_bias = Some(true);
        }
        if self.shades_of_gray.is_some() {
            config.shades_of_gray = self.shades_of_gray;
        }
        if let Some(input) = self.input {
            config.width = input.width;
            config.height = input.height;
        }
        config.nesterov |= self.nesterov;
        for (flag, slot) in [
            (self.dropout, &mut config.dropout),
            (self.budget_minutes, &mut config.budget_minutes),
        ] {
            if flag.is_some() {
                *slot = flag;
            }
        }
        if self.split.is_some() {
            config.split = self.split.clone();
            config.fold = self.fold;
        }
        if self.subset.is_some() {
            config.subset = self.subset.clone();
        }
        if self.init.is_some() {
            config.init = self.init.clone();
            // torchvision's weights expect its input statistics.
            config.normalization = self.normalization.unwrap_or(Normalization::ImageNet);
        }
        if self.early_stop.is_some() {
            config.early_stop = self.early_stop;
        }
        if self.cache.is_some() {
            config.cache = self.cache.clone();
        }
        let augment = &mut config.augment;
        augment.enabled &= !self.no_augment;
        augment.vertical_flip |= self.vflip;
        augment.horizontal_flip &= !self.no_hflip;
        override_fields!(
            self,
            augment,
            rotation,
            zoom,
            shift,
            brightness,
            contrast,
            saturation,
            hue,
            source_scale,
            mixup,
            cutmix,
            mix_prob
        );
        augment.dihedral |= self.dihedral;
        if self.crop_scale.is_some() {
            augment.crop_scale = self.crop_scale;
        }
        if config.data.as_os_str().is_empty() && !self.resume {
            bail!("--data is required (or `data = ...` in --config)");
        }
        Ok(config)
    }
}

/// The settings a run gets where neither a flag nor `--config` sets them, for the end of
/// `train --help`: generated from the defaults themselves, so the two cannot drift.
pub fn defaults_help() -> String {
    let table = match toml::Table::try_from(TrainConfig::default()) {
        Ok(table) => table,
        Err(e) => return format!("(cannot show the defaults: {e})"),
    };
    let mut lines = vec![
        "Defaults where neither a flag nor --config sets a value (as --config keys; a flag \
         --foo-bar sets foo_bar):"
            .to_string(),
    ];
    for (key, value) in &table {
        match value {
            toml::Value::Table(inner) => {
                for (k, v) in inner {
                    lines.push(format!("  {key}.{k} = {}", short_value(v)));
                }
            }
            other => lines.push(format!("  {key} = {}", short_value(other))),
        }
    }
    lines.join("\n")
}

/// A TOML value as written in a config, with f32 settings shown at f32 precision (0.3, not
/// 0.30000001192092896).
fn short_value(value: &toml::Value) -> String {
    match value {
        toml::Value::Float(f) if (*f as f32) as f64 == *f => format!("{:?}", *f as f32),
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(short_value).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Runs `dermclass train`.
pub fn run_train(args: TrainArgs) -> Result<()> {
    let config = args.resolve()?;
    let options = SessionOptions {
        resume: args.resume,
        skip_bad: args.skip_bad,
        observer: super::progress::terminal(true),
        max_epochs_this_session: None,
    };
    let summary = train(&config, &args.out, &options)?;
    println!();
    if let Some(metrics) = &summary.best_metrics {
        println!("{}", metrics.render_table());
    }
    if let Some(calibration) = &summary.best_calibration {
        print!("{}", calibration.render());
    }
    println!(
        "best epoch {} of {}; report: {}",
        summary.state.best_epoch,
        summary.state.epochs_done,
        args.out.join("report.md").display()
    );
    Ok(())
}

/// Finds the checkpoint named by `--model`: a run folder (its best.ckpt) or a file.
pub fn resolve_checkpoint(model: &Path) -> Result<PathBuf> {
    if model.is_dir() {
        let best = RunPaths::new(model).best();
        if !best.exists() {
            bail!(
                "{} holds no best.ckpt (has the run finished an epoch?)",
                model.display()
            );
        }
        return Ok(best);
    }
    if !model.exists() {
        bail!("model {} does not exist", model.display());
    }
    Ok(model.to_path_buf())
}

/// Loads the model named by `--model`, or the shipped one; says which on stdout.
pub fn load_model(model: Option<&Path>) -> Result<(PathBuf, Checkpoint)> {
    let path = match model {
        Some(model) => resolve_checkpoint(model)?,
        None => shipped_model()?,
    };
    let checkpoint = checkpoint::load(&path)?;
    println!(
        "model: {} ({}, {} classes, input {}x{})",
        path.display(),
        checkpoint.state.arch,
        checkpoint.state.classes.len(),
        checkpoint.state.config.width,
        checkpoint.state.config.height
    );
    Ok((path, checkpoint))
}

/// The shipped model: `$DERMCLASS_MODEL` when set, else `models/` of this checkout.
pub fn shipped_model() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("DERMCLASS_MODEL") {
        return Ok(PathBuf::from(path));
    }
    let path = dermclass::train::shipped_model_file();
    if !path.is_file() {
        bail!(
            "the shipped model {} is missing; pass --model RUN_OR_CKPT or set DERMCLASS_MODEL",
            path.display()
        );
    }
    Ok(path)
}

/// Arguments of `dermclass evaluate`.
#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// A run folder or a checkpoint file. Given more than once, the models score as an
    /// ensemble: the mean of their probabilities, each under its own input size and
    /// decision rule.
    #[arg(long, required = true)]
    pub model: Vec<PathBuf>,
    /// Data root with labels.
    #[arg(long)]
    pub data: PathBuf,
    /// Official ISIC layout: score this subset (training, validation or test; default
    /// training). `validation` is the official validation set, never seen in training.
    #[arg(long)]
    pub subset: Option<String>,
    /// Only images listed in this split file (image,split)...
    #[arg(long)]
    pub split_file: Option<PathBuf>,
    /// ...with this value in the split column.
    #[arg(long, default_value = "val")]
    pub split: String,
    /// Test-time augmentation: 1 (none), 2 (+ mirror), 8 (all dihedral views).
    #[arg(long, value_enum, default_value = "1")]
    pub tta: Tta,
    /// Score at this input size (224 or WxH) instead of the one each model trained at.
    /// Random-resized crops show lesions larger in training than a whole image does at the
    /// same size, so a somewhat larger test size can match them (Touvron et al., FixRes).
    #[arg(long)]
    pub input: Option<InputSize>,
    /// Logit adjustment strength (default: the model's own).
    #[arg(long)]
    pub tau: Option<f64>,
    /// Print balanced accuracy against tau (0 to 2) instead of the metric table.
    #[arg(long)]
    pub sweep_tau: bool,
    /// Use the weights being trained instead of their moving average (runs with an EMA).
    #[arg(long)]
    pub trained_weights: bool,
    /// Device: cpu, cuda:N or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Leave out unreadable images (listed on stderr; exit code 3) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Score images of the run's own training split too (refused by default: it overstates
    /// accuracy).
    #[arg(long)]
    pub allow_train_images: bool,
    /// Fit temperature scaling on these images (use the validation split) and store it in
    /// the checkpoint; evaluate, predict, serve and export then apply it.
    #[arg(long)]
    pub fit_temperature: bool,
    /// Also draw the reliability diagram of the probabilities to this PNG.
    #[arg(long, value_name = "PNG")]
    pub reliability: Option<PathBuf>,
}

fn eval_loader(checkpoint: &Checkpoint, samples: Vec<Sample>) -> Result<Loader> {
    let config = eval_loader_config(&checkpoint.state.config);
    Ok(Loader::new(samples, config)?)
}

/// The model's stored decision rule, with `tau` overriding its strength.
fn decision_rule(checkpoint: &Checkpoint, tau: Option<f64>) -> LogitAdjustment {
    let stored = &checkpoint.state.adjustment;
    match tau {
        Some(tau) => stored.with_tau(tau),
        None => stored.clone(),
    }
}

/// Runs `dermclass evaluate`.
pub fn run_evaluate(args: EvaluateArgs) -> Result<Outcome> {
    check_evaluate_args(&args)?;
    let model_paths = args
        .model
        .iter()
        .map(|m| resolve_checkpoint(m))
        .collect::<Result<Vec<_>>>()?;
    let mut checkpoints = model_paths
        .iter()
        .map(|p| checkpoint::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(input) = args.input {
        for (path, checkpoint) in model_paths.iter().zip(&mut checkpoints) {
            set_input_size(checkpoint, input)
                .with_context(|| format!("--input {input} for the model {}", path.display()))?;
        }
    }
    let options = data::OpenOptions {
        skip_bad: args.skip_bad,
        isic_subset: args.subset.clone(),
        ..Default::default()
    };
    let dataset = Dataset::open_with(&args.data, &options)?;
    let mut skipped_at_open: Vec<BadInput> =
        dataset.skipped.iter().map(BadInput::from_skipped).collect();
    for (path, checkpoint) in model_paths.iter().zip(&checkpoints) {
        if dataset.classes != checkpoint.state.classes {
            bail!(
                "the data's classes {:?} differ from the classes {:?} of the model {}",
                dataset.classes,
                checkpoint.state.classes,
                path.display()
            );
        }
    }
    let samples: Vec<Sample> = match &args.split_file {
        Some(file) => {
            let keep = split_side(file, &args.split)?;
            skipped_at_open.retain(|b| keep.contains(&b.image));
            dataset
                .samples
                .into_iter()
                .filter(|s| keep.contains(&s.id))
                .collect()
        }
        None => dataset.samples,
    };
    say_what_is_scored(&samples, &args);
    for path in &model_paths {
        refuse_training_images(path, &samples, &args)?;
    }
    let (samples, skipped) = screen_or_skip(samples, skipped_at_open, args.skip_bad)?;
    let device = parse_device(&args.device)?;
    let predictions = match (model_paths.as_slice(), checkpoints.as_slice()) {
        ([path], [checkpoint]) => {
            match one_model_predictions(&args, path, checkpoint, samples, &device)? {
                Some(predictions) => predictions,
                None => return Ok(outcome_of(&skipped)),
            }
        }
        _ => ensemble_predictions(&args, &checkpoints, samples, &device)?,
    };
    let classes = &checkpoints[0].state.classes;
    let metrics = Metrics::compute(&predictions.labels, &predictions.probs, classes)?;
    let calibration = CalibrationReport::compute(&predictions.labels, &predictions.probs, classes);
    if args.json {
        println!("{}", metrics.to_json());
    } else {
        println!("{}", metrics.render_table());
        print!("{}", calibration.render());
    }
    if let Some(png) = &args.reliability {
        plot_reliability(png, &calibration.calibration)?;
        println!("wrote the reliability diagram to {}", png.display());
    }
    Ok(outcome_of(&skipped))
}

/// Makes `checkpoint` preprocess and score images at `input`, once its network is known to
/// accept that size.
fn set_input_size(checkpoint: &mut Checkpoint, input: InputSize) -> Result<()> {
    let classes = checkpoint.state.classes.len();
    let config = &mut checkpoint.state.config;
    ModelSpec::parse(&config.arch, classes)?.cost(input.height, input.width)?;
    (config.width, config.height) = (input.width, input.height);
    Ok(())
}

/// Refuses combinations of `evaluate` options before any work starts.
fn check_evaluate_args(args: &EvaluateArgs) -> Result<()> {
    if args.fit_temperature
        && (args.tau.is_some() || args.trained_weights || args.sweep_tau || args.input.is_some())
    {
        bail!(
            "--fit-temperature fits the stored model under its stored rule and input size; \
             drop --tau, --trained-weights, --sweep-tau and --input"
        );
    }
    if args.model.len() > 1 && (args.fit_temperature || args.sweep_tau || args.trained_weights) {
        bail!(
            "--fit-temperature, --sweep-tau and --trained-weights work on one model; \
             {} were given with --model",
            args.model.len()
        );
    }
    Ok(())
}

/// The ids of the images on the `side` of a split file.
fn split_side(file: &Path, side: &str) -> Result<std::collections::HashSet<String>> {
    let keep: std::collections::HashSet<String> = read_split_rows(file)?
        .into_iter()
        .filter(|(_, split)| split == side)
        .map(|(image, _)| image)
        .collect();
    if keep.is_empty() {
        bail!("{} lists no image with split `{side}`", file.display());
    }
    Ok(keep)
}

/// One model's predictions under its stored rule (or `--tau`, `--fit-temperature`). With
/// `--sweep-tau` it prints the sweep instead and returns nothing.
fn one_model_predictions(
    args: &EvaluateArgs,
    path: &Path,
    checkpoint: &Checkpoint,
    samples: Vec<Sample>,
    device: &burn::prelude::Device,
) -> Result<Option<Predictions>> {
    let model = if args.trained_weights {
        if checkpoint.train_model.is_empty() {
            bail!("this checkpoint has no separate trained weights (no EMA, or weights only)");
        }
        checkpoint.train_model(device)?
    } else {
        checkpoint.model(device)?
    };
    let loader = eval_loader(checkpoint, samples)?;
    let rule = decision_rule(checkpoint, args.tau);
    if args.sweep_tau {
        print_tau_sweep(
            &model,
            &loader,
            device,
            args.tta,
            &rule,
            &checkpoint.state.classes,
        )?;
        return Ok(None);
    }
    let rule = if args.fit_temperature {
        fit_and_store_temperature(path, &model, &loader, device, &rule)?
    } else {
        rule
    };
    Ok(Some(predict_loader(
        &model, &loader, device, args.tta, &rule,
    )?))
}

/// Prints balanced accuracy and accuracy for tau from 0 to 2 in steps of 0.25.
fn print_tau_sweep(
    model: &Classifier,
    loader: &Loader,
    device: &burn::prelude::Device,
    tta: Tta,
    rule: &LogitAdjustment,
    classes: &[String],
) -> Result<()> {
    let raw = predict_loader(model, loader, device, tta, &LogitAdjustment::default())?;
    println!("tau   balanced_accuracy   accuracy");
    for step in 0..=8 {
        let tau = step as f64 * 0.25;
        let mut probs = raw.probs.clone();
        rule.with_tau(tau).apply(&mut probs);
        let m = Metrics::compute(&raw.labels, &probs, classes)?;
        println!("{tau:<5.2} {:<19.4} {:.4}", m.balanced_accuracy, m.accuracy);
    }
    Ok(())
}

/// The mean of several models' probabilities, each model with its own preprocessing,
/// input size and decision rule (`--tau` overrides every model's strength).
fn ensemble_predictions(
    args: &EvaluateArgs,
    checkpoints: &[Checkpoint],
    samples: Vec<Sample>,
    device: &burn::prelude::Device,
) -> Result<Predictions> {
    let names: Vec<String> = args.model.iter().map(|m| m.display().to_string()).collect();
    eprintln!(
        "an ensemble of {} models: {}",
        names.len(),
        names.join(", ")
    );
    let members = checkpoints
        .iter()
        .map(|checkpoint| {
            let model = checkpoint.model(device)?;
            let loader = eval_loader(checkpoint, samples.clone())?;
            let rule = decision_rule(checkpoint, args.tau);
            predict_loader(&model, &loader, device, args.tta, &rule)
        })
        .collect::<Result<Vec<_>>>()?;
    Predictions::mean(members)
}

/// Says on stderr which images are scored and how many.
fn say_what_is_scored(samples: &[Sample], args: &EvaluateArgs) {
    let scored = match &args.split_file {
        Some(file) => format!("the `{}` side of {}", args.split, file.display()),
        None => match &args.subset {
            Some(subset) => format!("the {subset} subset of {}", args.data.display()),
            None => format!("every labelled image of {}", args.data.display()),
        },
    };
    let size = match args.input {
        Some(input) => format!(" at input {input}"),
        None => String::new(),
    };
    eprintln!("scoring {} images{size}: {scored}", samples.len());
}

/// Scoring a model on the images it trained on overstates it: when the checkpoint sits in
/// a run folder with a `split.csv`, refuse samples from its training side unless
/// `--allow-train-images`.
fn refuse_training_images(model: &Path, samples: &[Sample], args: &EvaluateArgs) -> Result<()> {
    let split = model.with_file_name("split.csv");
    if args.allow_train_images || !split.is_file() {
        return Ok(());
    }
    let trained: std::collections::HashSet<String> = read_split_rows(&split)?
        .into_iter()
        .filter(|(_, side)| side == "train")
        .map(|(image, _)| image)
        .collect();
    let overlap = samples.iter().filter(|s| trained.contains(&s.id)).count();
    if overlap > 0 {
        bail!(
            "{overlap} of the {} images to score are on the training side of the run's split \
             ({}), which overstates accuracy; pass --split-file {} to score its validation \
             images, or --allow-train-images",
            samples.len(),
            split.display(),
            split.display()
        );
    }
    Ok(())
}

/// Fits the temperature on `loader`'s images (one view each) under `rule`'s logit
/// adjustment, stores it in the checkpoint at `path`, and returns the rule with it.
fn fit_and_store_temperature(
    path: &Path,
    model: &Classifier,
    loader: &Loader,
    device: &burn::prelude::Device,
    rule: &LogitAdjustment,
) -> Result<LogitAdjustment> {
    let raw = predict_loader(model, loader, device, Tta::One, &LogitAdjustment::default())?;
    // Log-probabilities are the logits up to a per-image constant, which the softmax ignores.
    let logits: Vec<f32> = raw.probs.iter().map(|p| p.max(1e-30).ln()).collect();
    let k = raw.probs.len() / raw.labels.len().max(1);
    let offsets = rule.logit_offsets();
    let before = nll_at(&raw.labels, &logits, k, rule.temperature, &offsets);
    let temperature = fit_temperature(&raw.labels, &logits, k, &offsets);
    let after = nll_at(&raw.labels, &logits, k, temperature, &offsets);
    let mut checkpoint = checkpoint::load(path)?;
    checkpoint.state.adjustment = checkpoint.state.adjustment.with_temperature(temperature, k);
    checkpoint.save(path)?;
    println!(
        "temperature scaling on {} images: T = {temperature:.4} (NLL {before:.4} -> {after:.4}); stored in {}",
        raw.labels.len(),
        path.display()
    );
    Ok(rule.with_temperature(temperature, k))
}

fn outcome_of(skipped: &[BadInput]) -> Outcome {
    if skipped.is_empty() {
        Outcome::Complete
    } else {
        eprintln!(
            "{} inputs were skipped (exit code {})",
            skipped.len(),
            crate::cli::EXIT_SKIPPED
        );
        Outcome::Skipped
    }
}

/// Arguments of `dermclass predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A run folder or a checkpoint file (default: the model that ships with dermclass).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Image files or folders of images; with --subset, official ISIC data roots.
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Official ISIC layout: predict the images of this subset of each --input root
    /// (`ISIC2018_Task3_<Subset>_Input`), e.g. `test` for a leaderboard submission.
    #[arg(long)]
    pub subset: Option<String>,
    /// Output CSV (ISIC 2018 Task 3 submission format).
    #[arg(long)]
    pub out: PathBuf,
    /// Test-time augmentation: 1 (none), 2 (+ mirror), 8 (all dihedral views).
    #[arg(long, value_enum, default_value = "1")]
    pub tta: Tta,
    /// Logit adjustment strength (default: the model's own).
    #[arg(long)]
    pub tau: Option<f64>,
    /// Device: cpu, cuda:N or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Predict every readable image; list the others on stderr and in OUT's
    /// `.skipped.csv` sidecar (exit code 3) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
}

/// With a subset, each input root becomes its `ISIC2018_Task3_<Subset>_Input` folder.
fn subset_inputs(inputs: &[PathBuf], subset: Option<&str>) -> Result<Vec<PathBuf>> {
    let Some(subset) = subset else {
        return Ok(inputs.to_vec());
    };
    let name = data::source::isic_subset_name(subset)?;
    inputs
        .iter()
        .map(|root| {
            let folder = root.join(format!("ISIC2018_Task3_{name}_Input"));
            if !folder.is_dir() {
                bail!(
                    "{} has no {name} images ({} is missing; `dermclass fetch-data --set {}` downloads them)",
                    root.display(),
                    folder.display(),
                    name.to_ascii_lowercase()
                );
            }
            Ok(folder)
        })
        .collect()
}

/// Image files named by `inputs` (folders are listed, sorted), as unlabeled samples.
fn collect_images(inputs: &[PathBuf]) -> Result<Vec<Sample>> {
    let mut paths = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("cannot list {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image_path(p))
                .collect();
            found.sort();
            paths.extend(found);
        } else if input.is_file() {
            paths.push(input.clone());
        } else {
            bail!("input {} does not exist", input.display());
        }
    }
    if paths.is_empty() {
        bail!("no images found in {:?}", inputs);
    }
    let mut seen = std::collections::HashSet::new();
    paths
        .into_iter()
        .map(|path| {
            let id = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !seen.insert(id.clone()) {
                bail!("two input images share the id `{id}` ({})", path.display());
            }
            Ok(Sample {
                id,
                path,
                label: 0,
                lesion_id: None,
            })
        })
        .collect()
}

/// Runs `dermclass predict`.
pub fn run_predict(args: PredictArgs) -> Result<Outcome> {
    let (_, checkpoint) = load_model(args.model.as_deref())?;
    let samples = collect_images(&subset_inputs(&args.input, args.subset.as_deref())?)?;
    let (samples, skipped) = screen_or_skip(samples, Vec::new(), args.skip_bad)?;
    let device = parse_device(&args.device)?;
    let model = checkpoint.model(&device)?;
    let loader = eval_loader(&checkpoint, samples)?;
    let started = Instant::now();
    let rule = decision_rule(&checkpoint, args.tau);
    let predictions = predict_loader(&model, &loader, &device, args.tta, &rule)?;
    write_submission(
        &args.out,
        &checkpoint.state.classes,
        &predictions.ids,
        &predictions.probs,
    )?;
    println!(
        "wrote {} predictions to {} in {:.1}s",
        predictions.ids.len(),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    let sidecar = skipped_sidecar(&args.out);
    write_skipped_csv(&sidecar, &skipped)?;
    if !skipped.is_empty() {
        println!(
            "listed {} skipped inputs in {}",
            skipped.len(),
            sidecar.display()
        );
    }
    Ok(outcome_of(&skipped))
}

/// Arguments of `dermclass strip`.
#[derive(Args, Debug)]
pub struct StripArgs {
    /// A run folder (its best.ckpt) or a checkpoint file.
    #[arg(long)]
    pub model: PathBuf,
    /// The weights-only checkpoint to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Store the temperature of this checkpoint (or run folder) instead: for a final fit,
    /// which has no validation images to fit one, the temperature `evaluate
    /// --fit-temperature` fitted on a validation run of the same recipe.
    #[arg(long)]
    pub temperature_from: Option<PathBuf>,
    /// Store this temperature instead (as `evaluate --fit-temperature` printed it), for when
    /// the validation run's checkpoint is gone but its fitted value is on record.
    #[arg(
        long,
        conflicts_with = "temperature_from",
        allow_negative_numbers = true
    )]
    pub temperature: Option<f64>,
}

/// Runs `dermclass strip`.
pub fn run_strip(args: StripArgs) -> Result<()> {
    let source = resolve_checkpoint(&args.model)?;
    let mut stripped = checkpoint::load(&source)?.weights_only();
    if let Some((temperature, origin)) = carried_temperature(&args, &stripped)? {
        let k = stripped.state.classes.len();
        stripped.state.adjustment = stripped.state.adjustment.with_temperature(temperature, k);
        println!("temperature {temperature:.4} {origin}");
    }
    stripped.save(&args.out)?;
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(0.0)
    };
    println!(
        "wrote {} ({:.1} MB; {} was {:.1} MB)",
        args.out.display(),
        size(&args.out),
        source.display(),
        size(&source)
    );
    Ok(())
}

/// The temperature `strip` stores instead of the model's own (from `--temperature` or
/// `--temperature-from`), with where it came from.
fn carried_temperature(args: &StripArgs, stripped: &Checkpoint) -> Result<Option<(f64, String)>> {
    if let Some(temperature) = args.temperature {
        if !(temperature.is_finite() && temperature > 0.0) {
            bail!("--temperature {temperature}: a temperature must be a positive number");
        }
        return Ok(Some((temperature, "as given".into())));
    }
    let Some(from) = &args.temperature_from else {
        return Ok(None);
    };
    let other = checkpoint::load(&resolve_checkpoint(from)?)?;
    if other.state.classes != stripped.state.classes || other.state.arch != stripped.state.arch {
        bail!(
            "--temperature-from {}: its model ({}, classes {:?}) is not this one's ({}, {:?})",
            from.display(),
            other.state.arch,
            other.state.classes,
            stripped.state.arch,
            stripped.state.classes
        );
    }
    let temperature = other.state.adjustment.temperature;
    Ok(Some((
        temperature,
        format!("taken from {}", from.display()),
    )))
}

/// Arguments of `dermclass demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the synthetic data and the run.
    #[arg(long, default_value = "demo")]
    pub out: PathBuf,
    /// Synthetic images per class.
    #[arg(long, default_value_t = 60)]
    pub per_class: usize,
    /// Epochs.
    #[arg(long, default_value_t = 15)]
    pub epochs: usize,
    /// Architecture (default: shufflenet_v2:0.5).
    #[arg(long)]
    pub arch: Option<String>,
}

/// The real demo images bundled in `assets/demo` (one per class, with `labels.csv`).
fn demo_images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join("demo")
}

/// Reads `labels.csv` (`image,class`) of the demo images.
fn read_demo_labels(dir: &Path) -> Result<Vec<(String, String)>> {
    let path = dir.join("labels.csv");
    let mut reader =
        csv::Reader::from_path(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("bad row in {}", path.display()))?;
        match (record.get(0), record.get(1)) {
            (Some(image), Some(class)) => rows.push((image.to_string(), class.to_string())),
            _ => bail!("{}: each row needs image,class", path.display()),
        }
    }
    Ok(rows)
}

/// The demo's first part: the shipped model's answers on the bundled real images.
fn classify_demo_images() -> Result<()> {
    let model_path = match shipped_model() {
        Ok(path) => path,
        Err(err) => {
            println!("(skipping the real images: {err:#})\n");
            return Ok(());
        }
    };
    let dir = demo_images_dir();
    let labels = read_demo_labels(&dir)?;
    let checkpoint = checkpoint::load(&model_path)?;
    let device = parse_device("cpu")?;
    let model = checkpoint.model(&device)?;
    let samples: Vec<Sample> = labels
        .iter()
        .map(|(image, _)| Sample {
            id: image.clone(),
            path: dir.join(format!("{image}.jpg")),
            label: 0,
            lesion_id: None,
        })
        .collect();
    let loader = eval_loader(&checkpoint, samples)?;
    let rule = checkpoint.state.adjustment.clone();
    let predictions = predict_loader(&model, &loader, &device, Tta::Eight, &rule)?;
    let classes = &checkpoint.state.classes;
    println!(
        "0/3 the shipped model ({}, {}) on {} real dermoscopic images \
         (HAM10000, CC BY-NC 4.0; see assets/demo/README.md):",
        model_path.display(),
        checkpoint.state.arch,
        labels.len()
    );
    println!("  {:<14} {:<6} {:<6} probability", "image", "true", "model");
    let k = classes.len();
    let mut right = 0;
    for (i, (image, truth)) in labels.iter().enumerate() {
        let row = &predictions.probs[i * k..(i + 1) * k];
        let best = (0..k)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap_or(0);
        right += usize::from(classes[best] == *truth);
        println!(
            "  {:<14} {:<6} {:<6} {:.2}",
            image, truth, classes[best], row[best]
        );
    }
    println!("  {right} of {} right\n", labels.len());
    Ok(())
}

/// Runs `dermclass demo`: synthetic data, a short training run, the evaluation.
pub fn run_demo(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let data_dir = args.out.join("data");
    let run_dir = args.out.join("run");
    if run_dir.join("last.ckpt").exists() {
        bail!(
            "{} already holds a demo run; remove it or pass another --out",
            args.out.display()
        );
    }
    classify_demo_images()?;
    println!(
        "1/3 generating {} synthetic images per class ({}) in {}",
        args.per_class,
        ISIC_CLASSES.join(", "),
        data_dir.display()
    );
    data::synth::generate(&data_dir, args.per_class, 96, 72, 7)?;
    let mut config = TrainConfig::demo(&data_dir, args.epochs);
    if let Some(arch) = args.arch {
        config.arch = arch;
    }
    println!(
        "2/3 training {} for {} epochs at {}x{}",
        config.arch, config.epochs, config.width, config.height
    );
    let options = SessionOptions {
        observer: super::progress::terminal(true),
        ..SessionOptions::default()
    };
    let summary = train(&config, &run_dir, &options)?;
    let metrics = summary
        .best_metrics
        .context("the demo run has a validation split")?;
    println!("3/3 best checkpoint on the held-out lesions:\n");
    println!("{}", metrics.render_table());
    println!(
        "chance balanced accuracy is {:.3}; this run: {:.3}",
        1.0 / summary.state.classes.len() as f64,
        metrics.balanced_accuracy
    );
    println!(
        "done in {:.0}s. Run folder: {} (report.md, curves.png, confusion.png, best.ckpt)",
        started.elapsed().as_secs_f64(),
        run_dir.display()
    );
    Ok(())
}

/// Arguments of `dermclass compare`: the training flags apply to every architecture.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Comma-separated architectures.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "plain_v1:1.0,mobilenet_v1:1.0,mobilenet_v2:1.0,shufflenet_v1:g3,shufflenet_v2:1.0,resnet50"
    )]
    pub arches: Vec<String>,
    /// Also vary a setting: `--vary batch=16,32,64 --vary lr=1e-3,3e-3` trains every
    /// architecture under every combination (any config.toml key; `augment.zoom` for nested).
    #[arg(long, value_name = "KEY=V1,V2,...")]
    pub vary: Vec<dermclass::train::vary::Variation>,
    /// The shared training settings (`--out` is the results folder).
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Runs `dermclass compare`.
pub fn run_compare(args: CompareArgs) -> Result<()> {
    let config = args.train.resolve()?;
    let rows = dermclass::train::compare::compare(
        &config,
        &args.arches,
        &args.vary,
        &args.train.out,
        &super::progress::terminal(true),
    )?;
    println!();
    for row in &rows {
        println!(
            "{:<22} {} params {:>6.2}M MAdds {:>8.1}M time {} ({:.1} img/s, peak {:.0} MB) \
             BACC {:.4} latency {:.2} ms",
            row.arch,
            row.settings,
            row.params as f64 / 1e6,
            row.madds as f64 / 1e6,
            row.training_time,
            row.train_images_per_s.unwrap_or(f64::NAN),
            row.peak_train_memory_mb.unwrap_or(f64::NAN),
            row.val_balanced_accuracy,
            row.latency_ms
        );
    }
    println!("results: {}", args.train.out.join("results.md").display());
    Ok(())
}

/// Arguments of `dermclass bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Architecture to measure (7 classes).
    #[arg(long, default_value = "mobilenet_v2:1.0")]
    pub arch: String,
    /// Unmeasured warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Measured steps (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Device: cpu, cuda:N or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// JSON-lines file of peer measurements (written by bench/peers.py) to compare with.
    #[arg(long)]
    pub peers: Option<PathBuf>,
    /// Print this run's measurements as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Instead of the speed table, split training steps (or `--inference` passes) at
    /// `--size`/`--batch` into the fast kernels (per op and phase) and everything else.
    #[arg(long)]
    pub profile: bool,
    /// Inference only: the table's inference columns, not the training ones (with
    /// `--profile`: inference passes instead of training steps).
    #[arg(long)]
    pub inference: bool,
    /// Input size for `--profile`.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Batch size for `--profile`.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
}

/// Runs `dermclass bench`.
pub fn run_bench(args: BenchArgs) -> Result<()> {
    use dermclass::train::speed::{SpeedReport, measure, render_table};
    let device = parse_device(&args.device)?;
    if args.profile {
        use dermclass::train::speed::{profile_steps, render_profile};
        let p = profile_steps(
            &args.arch,
            &device,
            !args.inference,
            args.size,
            args.batch,
            args.warmup,
            args.steps.max(1),
        )?;
        print!("{}", render_profile(&p));
        return Ok(());
    }
    let steps = (args.warmup, args.steps.max(1));
    let ours = measure(&args.arch, &device, steps, !args.inference)?;
    if args.json {
        println!("{}", serde_json::to_string(&ours)?);
        return Ok(());
    }
    let mut peers = Vec::new();
    if let Some(path) = &args.peers {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read peer results {}", path.display()))?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let report: SpeedReport = serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not a peer result", path.display(), i + 1))?;
            peers.push(report);
        }
    }
    println!(
        "{} (7 classes), median of {} steps after {} warm-up",
        args.arch, args.steps, args.warmup
    );
    print!("{}", render_table(&ours, &peers));
    Ok(())
}
