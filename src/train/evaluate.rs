//! Running a trained model over images: class probabilities for evaluation and prediction.

use anyhow::Result;
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::data::{Batch, Loader};
use crate::model::Classifier;

/// Class probabilities (softmax) of a batch, flat row-major `[n, classes]`.
///
/// `model` must be in inference mode (`model.valid()`); `tta` also averages the
/// horizontally, vertically and doubly flipped images.
pub fn batch_probabilities(
    model: &Classifier,
    batch: &Batch,
    device: &Device,
    tta: bool,
) -> Vec<f32> {
    let x = Tensor::<4>::from_data(TensorData::new(batch.images.clone(), batch.shape), device);
    let mut probs = softmax(model.forward(x.clone()), 1);
    if tta {
        let views = [x.clone().flip([3]), x.clone().flip([2]), x.flip([2, 3])];
        for view in views {
            probs = probs + softmax(model.forward(view), 1);
        }
        probs = probs.div_scalar(4.0);
    }
    probs
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 probabilities")
}

/// Labels, ids and probabilities of every image a loader yields for epoch 0.
pub struct Predictions {
    /// Image ids in loader order.
    pub ids: Vec<String>,
    /// True labels in loader order.
    pub labels: Vec<usize>,
    /// Flat row-major probabilities.
    pub probs: Vec<f32>,
}

impl Predictions {
    /// Mean negative log-likelihood of the true labels.
    pub fn loss(&self) -> f64 {
        let k = self.probs.len() / self.labels.len().max(1);
        let total: f64 = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, &label)| -(self.probs[i * k + label].max(1e-12) as f64).ln())
            .sum();
        total / self.labels.len().max(1) as f64
    }
}

/// Runs `model` (any mode; switched to inference here) over every batch of `loader`.
pub fn predict_loader(
    model: &Classifier,
    loader: &Loader,
    device: &Device,
    tta: bool,
) -> Result<Predictions> {
    let model = model.valid();
    let mut out = Predictions {
        ids: Vec::new(),
        labels: Vec::new(),
        probs: Vec::new(),
    };
    for batch in loader.epoch(0) {
        let batch = batch?;
        out.probs
            .extend(batch_probabilities(&model, &batch, device, tta));
        out.labels.extend_from_slice(&batch.labels);
        out.ids.extend(batch.ids);
    }
    Ok(out)
}
