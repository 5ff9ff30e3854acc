//! Training settings: one serialisable struct, read from TOML (`--config train.toml`) with
//! command-line flags on top, and written back as the run's resolved `config.toml`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::mix::BatchMix;
use crate::data::{AugmentConfig, ClassWeighting, FillMode};
/// The data module's own types serve as settings (one type per thing).
pub use crate::data::{Normalization, Sampler};

/// Optimizer choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam with L2 weight decay added to the gradient.
    Adam,
    /// AdamW: decoupled weight decay.
    Adamw,
    /// Stochastic gradient descent with momentum (optionally Nesterov).
    Sgd,
}

/// Learning-rate schedule after the linear warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Constant learning rate.
    Constant,
    /// Cosine decay to zero over the run.
    Cosine,
    /// Multiply by `step_gamma` every `step_epochs` epochs.
    Step,
    /// One-cycle (Smith 2018, PyTorch's `OneCycleLR`): a cosine rise from `lr / 25` to `lr`
    /// over the warm-up (30% of the run when `warmup_epochs` is 0), then a cosine fall to
    /// `lr / 25e4`.
    Onecycle,
}

/// Training loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Cross-entropy (with the class weights and label smoothing set).
    Ce,
    /// Logit-adjusted cross-entropy (Menon et al. 2021): cross-entropy of the logits plus
    /// `tau * log(prior)`, the prior being the class frequencies the training batches show.
    /// The model's raw logits then target balanced error, so no post-hoc adjustment follows.
    LogitAdjusted,
}

/// Class weighting in the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WeightingKind {
    /// Every class weighs 1.
    None,
    /// Inverse class frequency.
    Inverse,
    /// Effective number of samples (Cui et al. 2019) with `effective_beta`.
    Effective,
}

/// Writes an `f32` setting as its shortest decimal (`zoom = 0.3`, not the `f64` widening
/// `0.30000001192092896`), so a run's `config.toml` reads as it was written; reading it
/// back gives the same `f32`.
fn shortest_decimal<T: ShortestDecimal, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    value.widened().serialize(serializer)
}

/// `f32` settings widened to the `f64` that prints like the `f32` does.
trait ShortestDecimal {
    type Wide: Serialize;
    fn widened(&self) -> Self::Wide;
}

impl ShortestDecimal for f32 {
    type Wide = f64;
    fn widened(&self) -> f64 {
        // `Display` gives the shortest decimal that reads back as this f32.
        self.to_string().parse().unwrap_or(*self as f64)
    }
}

impl ShortestDecimal for [f32; 2] {
    type Wide = [f64; 2];
    fn widened(&self) -> [f64; 2] {
        self.map(|v| v.widened())
    }
}

impl<T: ShortestDecimal> ShortestDecimal for Option<T> {
    type Wide = Option<T::Wide>;
    fn widened(&self) -> Self::Wide {
        self.as_ref().map(ShortestDecimal::widened)
    }
}

/// Augmentation settings (Keras `ImageDataGenerator` names, the Keras study's values by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentSettings {
    /// Master switch.
    pub enabled: bool,
    /// Random horizontal flips.
    pub horizontal_flip: bool,
    /// Random vertical flips (dermoscopy has no up or down).
    pub vertical_flip: bool,
    /// Rotation range in degrees.
    #[serde(serialize_with = "shortest_decimal")]
    pub rotation: f32,
    /// Zoom range: factors in `[1 - zoom, 1 + zoom]`.
    #[serde(serialize_with = "shortest_decimal")]
    pub zoom: f32,
    /// Width and height shift, fraction of the size.
    #[serde(serialize_with = "shortest_decimal")]
    pub shift: f32,
    /// Brightness jitter (0 = off).
    #[serde(serialize_with = "shortest_decimal")]
    pub brightness: f32,
    /// Contrast jitter (0 = off).
    #[serde(serialize_with = "shortest_decimal")]
    pub contrast: f32,
    /// All 8 dihedral views: random horizontal and vertical flips and quarter turns
    /// (dermoscopy has no up or down). Needs a square input.
    pub dihedral: bool,
    /// Random-resized crop: area fraction range `[min, max]` of the crop (replaces `zoom`
    /// and `shift` when set), e.g. `[0.35, 1.0]`.
    #[serde(serialize_with = "shortest_decimal")]
    pub crop_scale: Option<[f32; 2]>,
    /// Random-resized crop: aspect-ratio range of the crop.
    #[serde(serialize_with = "shortest_decimal")]
    pub crop_ratio: [f32; 2],
    /// Saturation jitter: factor drawn from `[1 - s, 1 + s]` (0 = off).
    #[serde(serialize_with = "shortest_decimal")]
    pub saturation: f32,
    /// Hue jitter: rotation drawn from `[-h, h]` turns (torchvision's `hue`; 0 = off).
    #[serde(serialize_with = "shortest_decimal")]
    pub hue: f32,
    /// Training images are resized to this multiple of the input size and augmented from
    /// there, so a crop keeps their detail (1 = augment the image at the input size, as
    /// Keras does).
    #[serde(serialize_with = "shortest_decimal")]
    pub source_scale: f32,
    /// Mixup's Beta concentration: training images are blended in pairs and their targets
    /// mixed alike (0 = off; 0.2-1.0 is usual).
    #[serde(serialize_with = "shortest_decimal")]
    pub mixup: f32,
    /// CutMix's Beta concentration: a rectangle of one training image is pasted into another
    /// and the targets mixed by area (0 = off; 1.0 is usual). With mixup on too, each batch
    /// takes one of the two with even odds.
    #[serde(serialize_with = "shortest_decimal")]
    pub cutmix: f32,
    /// The chance that a training batch is mixed when mixup or cutmix is on.
    #[serde(serialize_with = "shortest_decimal")]
    pub mix_prob: f32,
}

impl Default for AugmentSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            horizontal_flip: true,
            vertical_flip: false,
            rotation: 30.0,
            zoom: 0.3,
            shift: 0.3,
            brightness: 0.0,
            contrast: 0.0,
            dihedral: false,
            crop_scale: None,
            crop_ratio: [0.75, 4.0 / 3.0],
            saturation: 0.0,
            hue: 0.0,
            source_scale: 1.0,
            mixup: 0.0,
            cutmix: 0.0,
            mix_prob: 1.0,
        }
    }
}

impl AugmentSettings {
    /// Checks the ranges for an input of `width x height`.
    pub fn validate(&self, width: usize, height: usize) -> Result<()> {
        if self.dihedral && self.enabled && width != height {
            bail!(
                "augment.dihedral needs a square input (quarter turns of a {width}x{height} \
                 image leave corners empty); use e.g. --input {} or turn dihedral off",
                width.min(height)
            );
        }
        if let Some([lo, hi]) = self.crop_scale
            && !(0.0 < lo && lo <= hi && hi <= 1.0)
        {
            bail!("augment.crop_scale must satisfy 0 < min <= max <= 1, got [{lo}, {hi}]");
        }
        let [lo, hi] = self.crop_ratio;
        if !(0.0 < lo && lo <= hi && hi.is_finite()) {
            bail!("augment.crop_ratio must satisfy 0 < min <= max, got [{lo}, {hi}]");
        }
        if !(0.0..=1.0).contains(&self.saturation) {
            bail!(
                "augment.saturation must be in [0, 1], got {}",
                self.saturation
            );
        }
        if !(0.0..=0.5).contains(&self.hue) {
            bail!("augment.hue must be in [0, 0.5] turns, got {}", self.hue);
        }
        if !(1.0..=4.0).contains(&self.source_scale) {
            bail!(
                "augment.source_scale must be in [1, 4] (a multiple of the input size), got {}",
                self.source_scale
            );
        }
        for (name, alpha) in [("mixup", self.mixup), ("cutmix", self.cutmix)] {
            if !(alpha.is_finite() && alpha >= 0.0) {
                bail!("augment.{name} must be a Beta concentration >= 0 (0 = off), got {alpha}");
            }
        }
        if !(0.0..=1.0).contains(&self.mix_prob) {
            bail!("augment.mix_prob must be in [0, 1], got {}", self.mix_prob);
        }
        Ok(())
    }

    /// The batch mixing the trainer applies, if any.
    pub fn batch_mix(&self) -> Option<BatchMix> {
        let on = self.enabled && (self.mixup > 0.0 || self.cutmix > 0.0) && self.mix_prob > 0.0;
        on.then_some(BatchMix {
            mixup_alpha: self.mixup,
            cutmix_alpha: self.cutmix,
            prob: self.mix_prob,
        })
    }

    /// The loader's augmentation ranges.
    pub fn to_config(&self) -> AugmentConfig {
        if !self.enabled {
            return AugmentConfig::none();
        }
        AugmentConfig {
            horizontal_flip: self.horizontal_flip,
            vertical_flip: self.vertical_flip,
            rotation_range: self.rotation,
            width_shift_range: self.shift,
            height_shift_range: self.shift,
            zoom_range: self.zoom,
            zoom_keep_aspect: false,
            fill_mode: FillMode::Nearest,
            brightness_range: self.brightness,
            contrast_range: self.contrast,
            dihedral: self.dihedral,
            crop_scale: self.crop_scale,
            crop_ratio: self.crop_ratio,
            saturation_range: self.saturation,
            hue_range: self.hue,
        }
    }
}

/// Everything a training run needs. Field names are the TOML keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Data root (ISIC layout, HAM10000 layout or one folder per class).
    pub data: PathBuf,
    /// Architecture name, e.g. `mobilenet_v2:1.0`.
    pub arch: String,
    /// Network input width.
    pub width: usize,
    /// Network input height.
    pub height: usize,
    /// Epochs to train.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// Weight decay (L2 for adam/sgd, decoupled for adamw).
    pub weight_decay: f64,
    /// Learning-rate schedule.
    pub schedule: ScheduleKind,
    /// Linear warm-up length in epochs.
    pub warmup_epochs: f64,
    /// Step schedule: epochs between decays.
    pub step_epochs: usize,
    /// Step schedule: decay factor.
    pub step_gamma: f64,
    /// Label smoothing epsilon.
    pub label_smoothing: f64,
    /// Training loss.
    pub loss: LossKind,
    /// Strength of the logit adjustment: in the loss (`loss = "logit-adjusted"`), or
    /// post hoc (`loss = "ce"`: `tau * log(prior)` is subtracted from the logits at
    /// validation, evaluation and prediction; 0 turns it off).
    pub tau: f64,
    /// Exponential moving average of the weights with this decay (e.g. 0.999); validation,
    /// checkpoints and prediction then use the averaged model.
    pub ema: Option<f64>,
    /// No weight decay on batch-norm and bias parameters (default: on for SGD and AdamW,
    /// off for Adam).
    pub no_decay_norm_bias: Option<bool>,
    /// Shades-of-Gray colour constancy with this Minkowski norm (e.g. 6), applied to every
    /// image in training, evaluation and prediction alike.
    #[serde(serialize_with = "shortest_decimal")]
    pub shades_of_gray: Option<f32>,
    /// Class weights in the loss.
    pub class_weights: WeightingKind,
    /// Beta of the effective-number weights.
    pub effective_beta: f64,
    /// Sampler.
    pub sampler: Sampler,
    /// Augmentation.
    pub augment: AugmentSettings,
    /// Pixel normalisation.
    pub normalization: Normalization,
    /// Classifier dropout (family default when absent).
    pub dropout: Option<f64>,
    /// Validation fraction of the lesion-grouped split (ignored with `split`).
    pub val_fraction: f64,
    /// For the official ISIC layout: which subset trains (`training` when absent).
    pub subset: Option<String>,
    /// Use this split file (`image,split`) instead of making one.
    pub split: Option<PathBuf>,
    /// Start from the weights of this torchvision state-dict file (`.pth`) instead of a
    /// fresh initialisation; the classifier too when its class count matches.
    pub init: Option<PathBuf>,
    /// With `split` a fold file (`dermclass split --folds K`): validate on this fold and
    /// train on the others.
    pub fold: Option<usize>,
    /// Seed of the split, initialisation, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Device: `cpu`, `cuda:N` or `wgpu`.
    pub device: String,
    /// Stop after this many epochs without a better validation balanced accuracy.
    pub early_stop: Option<usize>,
    /// Loader worker threads (0 = all cores).
    pub workers: usize,
    /// Folder of the preprocessed image cache (none: decode every epoch).
    pub cache: Option<PathBuf>,
    /// Stop after this many minutes of training (checked after each epoch).
    pub budget_minutes: Option<f64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::new(),
            arch: "mobilenet_v2:1.0".into(),
            width: 224,
            height: 224,
            epochs: 30,
            batch: 32,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            schedule: ScheduleKind::Cosine,
            warmup_epochs: 1.0,
            step_epochs: 10,
            step_gamma: 0.1,
            label_smoothing: 0.0,
            loss: LossKind::Ce,
            tau: 0.0,
            ema: None,
            no_decay_norm_bias: None,
            shades_of_gray: None,
            class_weights: WeightingKind::None,
            effective_beta: 0.999,
            sampler: Sampler::Uniform,
            augment: AugmentSettings::default(),
            normalization: Normalization::Keras,
            dropout: None,
            val_fraction: 0.3,
            subset: None,
            split: None,
            init: None,
            fold: None,
            seed: 1,
            device: "cpu".into(),
            early_stop: None,
            workers: 0,
            cache: None,
            budget_minutes: None,
        }
    }
}

impl TrainConfig {
    /// The demo's settings on `data`: ShuffleNet v2 0.5x at 64x64, batch 16, Adam 3e-3,
    /// ImageNet normalisation, lighter shifts and zooms (0.1) than the Keras study's, plus vertical
    /// flips. Learns the synthetic classes in a few epochs on two CPU cores.
    pub fn demo(data: &Path, epochs: usize) -> Self {
        let mut config = TrainConfig {
            data: data.to_path_buf(),
            arch: "shufflenet_v2:0.5".into(),
            width: 64,
            height: 64,
            epochs,
            batch: 16,
            lr: 3e-3,
            warmup_epochs: 0.5,
            normalization: Normalization::ImageNet,
            ..TrainConfig::default()
        };
        config.augment.vertical_flip = true;
        config.augment.zoom = 0.1;
        config.augment.shift = 0.1;
        config
    }

    /// Reads a TOML file; missing keys keep their defaults, unknown keys are an error.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("bad config {}", path.display()))
    }

    /// The settings a resumed run takes from `given` (where and how long it runs, not what
    /// it computes: `budget_minutes`, `device`, `workers`, `cache`, `early_stop`); any other
    /// difference from these, the run's stored settings, is refused by name.
    pub fn for_resume(&self, given: &TrainConfig) -> Result<TrainConfig> {
        const MAY_CHANGE: [&str; 5] =
            ["budget_minutes", "device", "workers", "cache", "early_stop"];
        let table = |c: &TrainConfig| -> Result<toml::Table> { Ok(toml::Table::try_from(c)?) };
        let (stored, asked) = (table(self)?, table(given)?);
        let mut keys: Vec<&String> = stored.keys().chain(asked.keys()).collect();
        keys.sort();
        keys.dedup();
        let changed: Vec<String> = keys
            .into_iter()
            .filter(|k| !MAY_CHANGE.contains(&k.as_str()) && stored.get(*k) != asked.get(*k))
            .map(|k| {
                let show = |t: &toml::Table| t.get(k).map_or("(none)".into(), |v| v.to_string());
                format!("{k} (run: {}, asked: {})", show(&stored), show(&asked))
            })
            .collect();
        if !changed.is_empty() {
            bail!(
                "--resume continues the run with its own settings, and these differ: {}. \
                 Only {} may change on resume; start a new run (another --out) to change the rest",
                changed.join("; "),
                MAY_CHANGE.join(", ")
            );
        }
        Ok(TrainConfig {
            budget_minutes: given.budget_minutes,
            device: given.device.clone(),
            workers: given.workers,
            cache: given.cache.clone(),
            early_stop: given.early_stop,
            ..self.clone()
        })
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Checks ranges, so that a bad value fails before any work starts.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            bail!("epochs must be at least 1");
        }
        if self.batch == 0 {
            bail!("batch must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("lr must be a positive number, got {}", self.lr);
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            bail!(
                "label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            );
        }
        if !(0.0..1.0).contains(&self.val_fraction) && self.split.is_none() {
            bail!(
                "val_fraction must be in [0, 1) (0 trains on every image), got {}",
                self.val_fraction
            );
        }
        if let Some(subset) = &self.subset {
            crate::data::source::isic_subset_name(subset)?;
        }
        if self.fold.is_some() && self.split.is_none() {
            bail!("fold needs a fold file as split (dermclass split --folds K --out folds.csv)");
        }
        if !(self.tau.is_finite() && self.tau >= 0.0) {
            bail!("tau must be a number >= 0, got {}", self.tau);
        }
        if let Some(decay) = self.ema
            && !(0.0..1.0).contains(&decay)
        {
            bail!("ema must be a decay in [0, 1), e.g. 0.999; got {decay}");
        }
        if let Some(p) = self.shades_of_gray
            && !(p.is_finite() && p >= 1.0)
        {
            bail!("shades_of_gray must be a norm >= 1 (6 is usual), got {p}");
        }
        self.augment.validate(self.width, self.height)?;
        if self.weight_decay < 0.0 || self.warmup_epochs < 0.0 {
            bail!("weight_decay and warmup_epochs must not be negative");
        }
        if !(0.0..1.0).contains(&self.effective_beta) {
            bail!(
                "effective_beta must be in [0, 1), got {}",
                self.effective_beta
            );
        }
        Ok(())
    }

    /// Whether batch-norm and bias parameters are exempt from weight decay.
    pub fn exempt_norm_bias(&self) -> bool {
        self.no_decay_norm_bias
            .unwrap_or(self.optimizer != OptimizerKind::Adam)
    }

    /// Class weighting for the data module.
    pub fn weighting(&self) -> ClassWeighting {
        match self.class_weights {
            WeightingKind::None => ClassWeighting::None,
            WeightingKind::Inverse => ClassWeighting::Inverse,
            WeightingKind::Effective => ClassWeighting::Effective {
                beta: self.effective_beta,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_keeps_every_field() {
        let mut config = TrainConfig {
            arch: "shufflenet_v2:0.5".into(),
            lr: 0.05,
            split: Some("split.csv".into()),
            early_stop: Some(3),
            ..TrainConfig::default()
        };
        config.augment.vertical_flip = true;
        config.augment.crop_scale = Some([0.35, 1.0]);
        config.augment.mixup = 0.2;
        config.shades_of_gray = Some(6.0);
        let text = config.to_toml().unwrap();
        let back: TrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
        // Single-precision settings read as written, not as their f64 widening.
        for line in ["zoom = 0.3", "mixup = 0.2", "shades_of_gray = 6.0", "0.35,"] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(!text.contains("0000000"), "{text}");
    }

    #[test]
    fn partial_toml_keeps_defaults_and_unknown_keys_fail() {
        let config: TrainConfig = toml::from_str("epochs = 3\n[augment]\nzoom = 0.1\n").unwrap();
        assert_eq!(config.epochs, 3);
        assert_eq!(config.augment.zoom, 0.1);
        assert_eq!(config.augment.rotation, 30.0);
        assert!(toml::from_str::<TrainConfig>("epoch = 3\n").is_err());
    }

    #[test]
    fn bad_values_are_rejected() {
        let bad = [
            TrainConfig {
                epochs: 0,
                ..TrainConfig::default()
            },
            TrainConfig {
                lr: -1.0,
                ..TrainConfig::default()
            },
            TrainConfig {
                label_smoothing: 1.0,
                ..TrainConfig::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
        assert!(TrainConfig::default().validate().is_ok());
        for (scale, ok) in [(0.5, false), (1.0, true), (1.5, true), (4.5, false)] {
            let mut config = TrainConfig::default();
            config.augment.source_scale = scale;
            let result = config.validate();
            assert_eq!(result.is_ok(), ok, "source_scale {scale}: {result:?}");
        }
        let mut mixing = TrainConfig::default();
        assert_eq!(mixing.augment.batch_mix(), None);
        mixing.augment.cutmix = 1.0;
        assert!(mixing.validate().is_ok());
        assert_eq!(
            mixing.augment.batch_mix().map(|m| m.cutmix_alpha),
            Some(1.0)
        );
        mixing.augment.enabled = false;
        assert_eq!(
            mixing.augment.batch_mix(),
            None,
            "no augmentation, no mixing"
        );
        for (mixup, prob) in [(-0.2, 1.0), (f32::NAN, 1.0), (0.2, 1.5)] {
            let mut config = TrainConfig::default();
            (config.augment.mixup, config.augment.mix_prob) = (mixup, prob);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("augment.mix"), "{err}");
        }
    }

    #[test]
    fn a_resumed_run_takes_only_where_and_how_long_it_runs() {
        let stored = TrainConfig {
            epochs: 48,
            budget_minutes: Some(165.0),
            ..TrainConfig::default()
        };
        let longer = TrainConfig {
            budget_minutes: Some(400.0),
            workers: 1,
            ..stored.clone()
        };
        let resumed = stored.for_resume(&longer).unwrap();
        assert_eq!(resumed.budget_minutes, Some(400.0));
        assert_eq!(resumed.workers, 1);
        assert_eq!(resumed.epochs, 48);
        let changed = TrainConfig {
            epochs: 60,
            lr: 0.1,
            ..stored.clone()
        };
        let err = stored.for_resume(&changed).unwrap_err().to_string();
        assert!(err.contains("epochs (run: 48, asked: 60)"), "{err}");
        assert!(err.contains("lr (run: "), "{err}");
        assert!(!err.contains("budget_minutes ("), "{err}");
        let mut augment = stored.clone();
        augment.augment.rotation = 5.0;
        let err = stored.for_resume(&augment).unwrap_err().to_string();
        assert!(err.contains("augment ("), "{err}");
    }
}
