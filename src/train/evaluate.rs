//! Running a trained model over images: class probabilities for evaluation and prediction.

use anyhow::{Result, bail};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::adjust::LogitAdjustment;
use crate::data::{Batch, Loader};
use crate::infer::InferenceModel;
use crate::model::Classifier;

/// Test-time augmentation: how many views of each image are averaged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Tta {
    /// The image as it is.
    #[default]
    #[value(name = "1")]
    One,
    /// The image and its mirror image (horizontal flip).
    #[value(name = "2")]
    Two,
    /// All 8 dihedral views: flips and quarter turns (transposes). A non-square input
    /// gives transposed views of the other shape, which every model accepts.
    #[value(name = "8")]
    Eight,
}

impl Tta {
    /// The views of an NCHW batch.
    pub fn views(self, x: Tensor<4>) -> Vec<Tensor<4>> {
        match self {
            Tta::One => vec![x],
            Tta::Two => vec![x.clone(), x.flip([3])],
            Tta::Eight => {
                let t = x.clone().swap_dims(2, 3);
                let mut views = Vec::with_capacity(8);
                for base in [x, t] {
                    views.push(base.clone().flip([3]));
                    views.push(base.clone().flip([2]));
                    views.push(base.clone().flip([2, 3]));
                    views.push(base);
                }
                views
            }
        }
    }

    /// Number of views.
    pub fn count(self) -> usize {
        match self {
            Tta::One => 1,
            Tta::Two => 2,
            Tta::Eight => 8,
        }
    }
}

/// Class probabilities of a batch, flat row-major `[n, classes]`: the softmax averaged over
/// the `tta` views, then the logit adjustment.
///
pub fn batch_probabilities(
    model: &InferenceModel,
    batch: &Batch,
    device: &Device,
    tta: Tta,
    adjustment: &LogitAdjustment,
) -> Vec<f32> {
    let x = Tensor::<4>::from_data(TensorData::new(batch.images.clone(), batch.shape), device);
    let mut probs: Option<Tensor<2>> = None;
    for view in tta.views(x) {
        let p = softmax(model.forward(view), 1);
        probs = Some(match probs {
            Some(sum) => sum + p,
            None => p,
        });
    }
    let probs = probs
        .expect("at least one view")
        .div_scalar(tta.count() as f64);
    let mut probs = probs
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 probabilities");
    adjustment.apply(&mut probs);
    probs
}

/// Labels, ids and probabilities of every image a loader yields for epoch 0.
#[derive(Debug)]
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

    /// An ensemble's predictions: the mean of its members' probabilities, each already
    /// under its own decision rule. The members must have scored the same images in the
    /// same order.
    pub fn mean(members: Vec<Predictions>) -> Result<Predictions> {
        let mut members = members.into_iter();
        let Some(mut sum) = members.next() else {
            bail!("an ensemble needs at least one member");
        };
        let mut count = 1usize;
        for member in members {
            count += 1;
            if member.ids != sum.ids || member.probs.len() != sum.probs.len() {
                bail!(
                    "ensemble member {count} scored other images or classes than the first \
                     ({} images, {} values against {} and {})",
                    member.ids.len(),
                    member.probs.len(),
                    sum.ids.len(),
                    sum.probs.len()
                );
            }
            for (total, p) in sum.probs.iter_mut().zip(&member.probs) {
                *total += p;
            }
        }
        let scale = 1.0 / count as f32;
        sum.probs.iter_mut().for_each(|p| *p *= scale);
        Ok(sum)
    }
}

/// Runs `model` (any mode; switched to inference here) over every batch of `loader`.
pub fn predict_loader(
    model: &Classifier,
    loader: &Loader,
    device: &Device,
    tta: Tta,
    adjustment: &LogitAdjustment,
) -> Result<Predictions> {
    let model = InferenceModel::new(model.clone(), device)?;
    let mut out = Predictions {
        ids: Vec::new(),
        labels: Vec::new(),
        probs: Vec::new(),
    };
    for batch in loader.epoch(0) {
        let batch = batch?;
        out.probs
            .extend(batch_probabilities(&model, &batch, device, tta, adjustment));
        out.labels.extend_from_slice(&batch.labels);
        out.ids.extend(batch.ids);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_of(image: Vec<f32>, n: usize) -> Batch {
        Batch {
            images: image,
            labels: vec![0],
            ids: vec!["x".into()],
            shape: [1, 3, n, n],
        }
    }

    fn predictions(ids: &[&str], probs: &[f32]) -> Predictions {
        Predictions {
            ids: ids.iter().map(|i| i.to_string()).collect(),
            labels: vec![0; ids.len()],
            probs: probs.to_vec(),
        }
    }

    #[test]
    fn an_ensemble_averages_its_members_and_refuses_mismatched_images() {
        let a = predictions(&["x", "y"], &[0.8, 0.2, 0.4, 0.6]);
        let b = predictions(&["x", "y"], &[0.2, 0.8, 0.0, 1.0]);
        let mean = Predictions::mean(vec![a, b]).unwrap();
        let want = [0.5, 0.5, 0.2, 0.8];
        assert_eq!(mean.probs.len(), want.len());
        assert!(
            mean.probs
                .iter()
                .zip(want)
                .all(|(p, w)| (p - w).abs() < 1e-6)
        );
        assert_eq!(mean.ids, ["x", "y"]);
        let same = predictions(&["x"], &[0.3, 0.7]);
        let alone = Predictions::mean(vec![same]).unwrap();
        assert_eq!(alone.probs, [0.3, 0.7]);
        let swapped = Predictions::mean(vec![
            predictions(&["x", "y"], &[0.5; 4]),
            predictions(&["y", "x"], &[0.5; 4]),
        ]);
        assert!(swapped.unwrap_err().to_string().contains("member 2"));
        assert!(Predictions::mean(Vec::new()).is_err());
    }

    #[test]
    fn eight_views_are_distinct_and_cover_the_dihedral_group() {
        let device = Device::default();
        let n = 3;
        let values: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(values, [1, 1, n, n]), &device);
        let views: Vec<Vec<f32>> = Tta::Eight
            .views(x)
            .into_iter()
            .map(|v| v.into_data().convert::<f32>().try_to_vec::<f32>().unwrap())
            .collect();
        assert_eq!(views.len(), 8);
        for (i, a) in views.iter().enumerate() {
            let mut sorted = a.clone();
            sorted.sort_by(f32::total_cmp);
            assert_eq!(sorted, (0..9).map(|v| v as f32).collect::<Vec<_>>());
            for b in &views[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The centre stays; the corners stay corners.
        assert!(views.iter().all(|v| v[4] == 4.0));
        assert!(views.iter().all(|v| [0.0, 2.0, 6.0, 8.0].contains(&v[0])));
    }

    #[test]
    fn tta_of_a_symmetric_image_equals_one_view() {
        let device = Device::default();
        let model = crate::model::tests::built("shufflenet_v2:0.5", 7, &device);
        let model = InferenceModel::new(model, &device).unwrap();
        // Symmetric under every flip and quarter turn: a function of the sorted distances
        // to the centre.
        let n = 33;
        let c = 16i32;
        let mut image = Vec::new();
        for ch in 0..3 {
            for y in 0..n as i32 {
                for x in 0..n as i32 {
                    let (a, b) = ((x - c).abs(), (y - c).abs());
                    let (lo, hi) = (a.min(b), a.max(b));
                    image.push(((lo * 3 + hi * 7 + ch * 5) % 17) as f32 / 17.0);
                }
            }
        }
        let batch = batch_of(image, n);
        let none = LogitAdjustment::default();
        let one = batch_probabilities(&model, &batch, &device, Tta::One, &none);
        let eight = batch_probabilities(&model, &batch, &device, Tta::Eight, &none);
        for (a, b) in one.iter().zip(&eight) {
            assert!((a - b).abs() < 1e-6, "{one:?} vs {eight:?}");
        }
        // An asymmetric image gives a different average.
        let mut skew = batch.images.clone();
        skew[0] += 5.0;
        skew[40] -= 3.0;
        let skewed = batch_of(skew, n);
        let a = batch_probabilities(&model, &skewed, &device, Tta::One, &none);
        let b = batch_probabilities(&model, &skewed, &device, Tta::Eight, &none);
        assert!(a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-6));
    }
}
