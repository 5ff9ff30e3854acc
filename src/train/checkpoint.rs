//! Checkpoints: one file holding the run state (JSON), the model weights, the weights being
//! trained when they differ (with an EMA the model is the average) and the optimizer state,
//! written atomically (temporary file + rename) so a crash never leaves a torn file.
//!
//! Version 1 files (before the EMA) hold no training weights; they still load.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use super::adjust::LogitAdjustment;
use super::config::TrainConfig;
use crate::model::{Classifier, ModelSpec};
use crate::report::{EpochRow, write_atomic};

const MAGIC: &[u8; 12] = b"DERMCLASS-CK";
/// 3: MobileNetV2 has its identity shortcuts; earlier files load as `mobilenet_v2:*:noskip`.
const VERSION: u32 = 3;

/// What a run has done so far, enough to resume it exactly or to use its model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    /// The resolved settings of the run.
    pub config: TrainConfig,
    /// Canonical architecture name.
    pub arch: String,
    /// Class names in output order.
    pub classes: Vec<String>,
    /// Epochs completed.
    pub epochs_done: usize,
    /// Optimisation steps completed.
    pub steps_done: usize,
    /// Best validation balanced accuracy so far (-1 before the first epoch).
    pub best_balanced_accuracy: f64,
    /// Epoch of the best validation balanced accuracy (0 = none yet).
    pub best_epoch: usize,
    /// Per-epoch history.
    pub history: Vec<EpochRow>,
    /// Seconds spent training and validating, over all sessions of the run.
    pub seconds: f64,
    /// The decision rule applied to the model's probabilities (logit adjustment).
    #[serde(default)]
    pub adjustment: LogitAdjustment,
    /// EMA updates done so far (the EMA's warm-up position).
    #[serde(default)]
    pub ema_updates: u64,
}

impl RunState {
    /// The model specification the state describes.
    pub fn model_spec(&self) -> Result<ModelSpec> {
        let mut spec = ModelSpec::parse(&self.arch, self.classes.len())?;
        if let Some(dropout) = self.config.dropout {
            spec = spec.with_dropout(dropout)?;
        }
        Ok(spec)
    }
}

/// A loaded checkpoint.
pub struct Checkpoint {
    /// Run state.
    pub state: RunState,
    /// Serialized model record: the model to use (the average when the run has an EMA).
    pub model: Vec<u8>,
    /// Serialized record of the weights being trained, when they differ from `model`
    /// (empty otherwise).
    pub train_model: Vec<u8>,
    /// Serialized optimizer record (empty for weights-only files).
    pub optimizer: Vec<u8>,
}

fn put(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u64).to_le_bytes());
    out.extend_from_slice(part);
}

fn take<'a>(bytes: &mut &'a [u8], path: &Path) -> Result<&'a [u8]> {
    let truncated = || anyhow::anyhow!("checkpoint {} is truncated", path.display());
    if bytes.len() < 8 {
        return Err(truncated());
    }
    let (len, rest) = bytes.split_at(8);
    let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
    if rest.len() < len {
        return Err(truncated());
    }
    let (part, rest) = rest.split_at(len);
    *bytes = rest;
    Ok(part)
}

fn model_bytes(model: &Classifier) -> Result<Vec<u8>> {
    Ok(model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialize the model: {e}"))?
        .to_vec())
}

/// Writes a checkpoint of `model` (the one to use), the weights being trained when they
/// differ (`train_model`, with an EMA) and `optimizer`, with `state`, to `path`, atomically.
pub fn save(
    path: &Path,
    state: &RunState,
    model: &Classifier,
    train_model: Option<&Classifier>,
    optimizer: Option<&ModuleOptimizer>,
) -> Result<()> {
    let model = model_bytes(model)?;
    let train_model = match train_model {
        Some(m) => model_bytes(m)?,
        None => Vec::new(),
    };
    let optimizer = match optimizer {
        Some(o) => o
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("cannot serialize the optimizer: {e}"))?
            .to_vec(),
        None => Vec::new(),
    };
    Checkpoint {
        state: state.clone(),
        model,
        train_model,
        optimizer,
    }
    .save(path)
}

/// The architecture a checkpoint written before version 3 was trained as: dermclass then
/// built MobileNetV2 without its identity shortcuts (a bug), so those weights load into the
/// `noskip` variant, which computes what they were trained with.
fn without_shortcuts(arch: &str) -> String {
    if arch.starts_with("mobilenet_v2") && !arch.ends_with(":noskip") {
        format!("{arch}:noskip")
    } else {
        arch.to_string()
    }
}

/// Reads a checkpoint file.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if data.len() < MAGIC.len() + 4 || &data[..MAGIC.len()] != MAGIC {
        bail!("{} is not a dermclass checkpoint", path.display());
    }
    let version = u32::from_le_bytes(data[MAGIC.len()..MAGIC.len() + 4].try_into()?);
    if !(1..=VERSION).contains(&version) {
        bail!(
            "{} is checkpoint version {version}; this dermclass reads versions 1 to {VERSION}",
            path.display()
        );
    }
    let mut rest = &data[MAGIC.len() + 4..];
    let mut state: RunState = serde_json::from_slice(take(&mut rest, path)?)
        .with_context(|| format!("bad run state in {}", path.display()))?;
    if version < 3 {
        state.arch = without_shortcuts(&state.arch);
        state.config.arch = without_shortcuts(&state.config.arch);
    }
    let model = take(&mut rest, path)?.to_vec();
    let train_model = if version >= 2 {
        take(&mut rest, path)?.to_vec()
    } else {
        Vec::new()
    };
    let optimizer = take(&mut rest, path)?.to_vec();
    Ok(Checkpoint {
        state,
        model,
        train_model,
        optimizer,
    })
}

impl Checkpoint {
    /// Writes the checkpoint to `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        put(&mut out, &serde_json::to_vec(&self.state)?);
        put(&mut out, &self.model);
        put(&mut out, &self.train_model);
        put(&mut out, &self.optimizer);
        write_atomic(path, &out).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Builds the model to use on `device` and loads the saved weights into it.
    pub fn model(&self, device: &Device) -> Result<Classifier> {
        self.build_with(&self.model, device)
    }

    /// Builds the weights being trained (the same as [`Checkpoint::model`] without an EMA).
    pub fn train_model(&self, device: &Device) -> Result<Classifier> {
        if self.train_model.is_empty() {
            return self.model(device);
        }
        self.build_with(&self.train_model, device)
    }

    fn build_with(&self, bytes: &[u8], device: &Device) -> Result<Classifier> {
        let model = self.state.model_spec()?.build(device)?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
            .map_err(|e| anyhow::anyhow!("bad model record: {e}"))?;
        model
            .try_load_record(record)
            .map_err(|e| anyhow::anyhow!("the saved weights do not fit {}: {e}", self.state.arch))
    }

    /// A copy with only the model to use: no training weights, no optimizer state. It
    /// predicts and evaluates like the original but cannot resume; about a third of the size
    /// with Adam and an EMA.
    pub fn weights_only(&self) -> Checkpoint {
        Checkpoint {
            state: self.state.clone(),
            model: self.model.clone(),
            train_model: Vec::new(),
            optimizer: Vec::new(),
        }
    }

    /// Restores the optimizer state into `optimizer`.
    pub fn restore_optimizer(&self, optimizer: ModuleOptimizer) -> Result<ModuleOptimizer> {
        if self.optimizer.is_empty() {
            bail!("this checkpoint holds no optimizer state");
        }
        optimizer
            .from_bytes(Bytes::from_bytes_vec(self.optimizer.clone()))
            .map_err(|e| anyhow::anyhow!("bad optimizer record: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{ModuleMapper, Param};
    use burn::tensor::Distribution;

    /// Random values everywhere (running statistics included), so nothing matches by
    /// accident of initialisation.
    struct Scramble;

    impl ModuleMapper for Scramble {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| {
                let device = t.device();
                Tensor::random(t.shape(), Distribution::Uniform(0.5, 1.5), &device)
            })
        }
    }

    fn state(arch: &str) -> RunState {
        RunState {
            config: TrainConfig::default(),
            arch: arch.to_string(),
            classes: (0..3).map(|c| format!("C{c}")).collect(),
            epochs_done: 1,
            steps_done: 10,
            best_balanced_accuracy: 0.5,
            best_epoch: 1,
            history: Vec::new(),
            seconds: 1.0,
            adjustment: LogitAdjustment::default(),
            ema_updates: 0,
        }
    }

    /// `state`'s model with every weight drawn at random (not its initialisation).
    fn scrambled(state: &RunState, device: &Device) -> Classifier {
        let spec = state.model_spec().unwrap();
        spec.build(device).unwrap().map(&mut Scramble)
    }

    #[test]
    fn a_saved_model_loads_back_and_gives_identical_logits() {
        let device = Device::default();
        let dir = tempfile::tempdir().unwrap();
        for arch in ["mobilenet_v2:0.35", "shufflenet_v2:0.5", "tiny_cnn:0.5"] {
            let state = state(arch);
            let model = scrambled(&state, &device);
            let path = dir.path().join("m.ckpt");
            save(&path, &state, &model, None, None).unwrap();
            let loaded = load(&path).unwrap().model(&device).unwrap();
            let x = Tensor::<4>::random([2, 3, 40, 32], Distribution::Normal(0.0, 1.0), &device);
            let want: Vec<f32> = model.forward(x.clone()).into_data().iter::<f32>().collect();
            let got: Vec<f32> = loaded.forward(x).into_data().iter::<f32>().collect();
            assert_eq!(got, want, "{arch}");
        }
    }

    #[test]
    fn a_version_2_mobilenet_v2_loads_without_shortcuts_as_it_was_trained() {
        let device = Device::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.ckpt");
        let mut old = state("mobilenet_v2:0.35:noskip");
        old.config.arch = old.arch.clone();
        let model = scrambled(&old, &device);
        old.arch = "mobilenet_v2:0.35".into();
        old.config.arch = old.arch.clone();
        save(&path, &old, &model, None, None).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&2u32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let checkpoint = load(&path).unwrap();
        assert_eq!(checkpoint.state.arch, "mobilenet_v2:0.35:noskip");
        assert_eq!(checkpoint.state.config.arch, "mobilenet_v2:0.35:noskip");
        let x = Tensor::<4>::random([1, 3, 40, 32], Distribution::Normal(0.0, 1.0), &device);
        let want: Vec<f32> = model.forward(x.clone()).into_data().iter::<f32>().collect();
        let got: Vec<f32> = checkpoint
            .model(&device)
            .unwrap()
            .forward(x)
            .into_data()
            .iter::<f32>()
            .collect();
        assert_eq!(got, want);
        // Written again, it is version 3 and keeps the variant.
        checkpoint.save(&path).unwrap();
        assert_eq!(load(&path).unwrap().state.arch, "mobilenet_v2:0.35:noskip");
    }

    #[test]
    fn weights_of_another_architecture_are_refused_by_name() {
        let device = Device::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.ckpt");
        let mobilenet = state("mobilenet_v2:0.35");
        let model = mobilenet.model_spec().unwrap().build(&device).unwrap();
        save(&path, &mobilenet, &model, None, None).unwrap();
        let mut checkpoint = load(&path).unwrap();
        checkpoint.state.arch = "shufflenet_v2:0.5".into();
        let err = checkpoint.model(&device).unwrap_err().to_string();
        assert!(err.contains("do not fit shufflenet_v2:0.5"), "{err}");
    }
}
