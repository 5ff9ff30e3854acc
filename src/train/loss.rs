//! Cross-entropy with optional class weights, label smoothing and mixed (mixup, cutmix)
//! targets.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use super::mix::{MixedLabel, unmixed};

/// Mean cross-entropy of `logits` (`[n, k]`) against `labels`.
///
/// With label smoothing `eps` the target is `(1 - eps) * onehot + eps / k`. With class
/// weights each sample counts `weights[label]` times and the mean divides by the summed
/// weights (PyTorch's `CrossEntropyLoss(weight=...)` convention).
pub fn cross_entropy(
    logits: Tensor<2>,
    labels: &[usize],
    class_weights: Option<&[f32]>,
    label_smoothing: f64,
) -> Tensor<1> {
    mixed_cross_entropy(logits, &unmixed(labels), class_weights, label_smoothing)
}

/// Cross-entropy against mixed targets (mixup, cutmix): `lam` of class `a` and `1 - lam`
/// of class `b`, smoothed as in [`cross_entropy`]. A sample's class weight is mixed the
/// same way.
pub fn mixed_cross_entropy(
    logits: Tensor<2>,
    targets: &[MixedLabel],
    class_weights: Option<&[f32]>,
    label_smoothing: f64,
) -> Tensor<1> {
    let [n, k] = logits.dims();
    let device = logits.device();
    let eps = label_smoothing as f32;
    let mut target_probs = vec![eps / k as f32; n * k];
    let mut sample_weights = vec![1.0f32; n];
    for (i, t) in targets.iter().enumerate() {
        target_probs[i * k + t.a] += (1.0 - eps) * t.lam;
        target_probs[i * k + t.b] += (1.0 - eps) * (1.0 - t.lam);
        if let Some(weights) = class_weights {
            sample_weights[i] = t.lam * weights[t.a] + (1.0 - t.lam) * weights[t.b];
        }
    }
    let total_weight: f32 = sample_weights.iter().sum();
    let target_probs = Tensor::<2>::from_data(TensorData::new(target_probs, [n, k]), &device);
    let sample_weights = Tensor::<2>::from_data(TensorData::new(sample_weights, [n, 1]), &device);
    let per_sample = (log_softmax(logits, 1) * target_probs).sum_dim(1).neg();
    (per_sample * sample_weights)
        .sum()
        .div_scalar(total_weight)
        .reshape([1])
}

/// Logit-adjusted cross-entropy (Menon et al. 2021, eq. 10): cross-entropy of
/// `logits + tau * log(prior)`. Rare classes need a larger margin to win during training,
/// so the raw logits come out tuned for balanced error.
pub fn logit_adjusted_cross_entropy(
    logits: Tensor<2>,
    targets: &[MixedLabel],
    class_weights: Option<&[f32]>,
    label_smoothing: f64,
    prior: &[f64],
    tau: f64,
) -> Tensor<1> {
    let [_, k] = logits.dims();
    assert_eq!(prior.len(), k, "one prior per class");
    let offsets: Vec<f32> = prior
        .iter()
        .map(|p| (tau * p.max(1e-12).ln()) as f32)
        .collect();
    let offsets = Tensor::<1>::from_data(TensorData::new(offsets, [k]), &logits.device());
    let shifted = logits + offsets.reshape([1, k]);
    mixed_cross_entropy(shifted, targets, class_weights, label_smoothing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn matches_hand_computed_values() {
        let device = Device::default();
        let logits = Tensor::<2>::from_data([[0.0f32, 0.0], [2.0, 0.0]], &device);
        // Row 1: -ln(1/2); row 2 label 1: -ln(1/(1+e^2)).
        let l1 = 2f32.ln();
        let l2 = (1.0 + 2f32.exp()).ln();
        let plain = value(cross_entropy(logits.clone(), &[0, 1], None, 0.0));
        assert!((plain - (l1 + l2) / 2.0).abs() < 1e-5, "{plain}");
        let weighted = value(cross_entropy(
            logits.clone(),
            &[0, 1],
            Some(&[1.0, 3.0]),
            0.0,
        ));
        assert!(
            (weighted - (l1 + 3.0 * l2) / 4.0).abs() < 1e-5,
            "{weighted}"
        );
        // Smoothing 0.2 on row 2: targets (0.1, 0.9).
        let lp0 = 2.0 - (1.0 + 2f32.exp()).ln();
        let lp1 = -(1.0 + 2f32.exp()).ln();
        let smooth = value(cross_entropy(logits.narrow(0, 1, 1), &[1], None, 0.2));
        assert!((smooth + 0.1 * lp0 + 0.9 * lp1).abs() < 1e-5, "{smooth}");
    }

    #[test]
    fn logit_adjusted_loss_is_cross_entropy_of_shifted_logits() {
        let device = Device::default();
        let logits = Tensor::<2>::from_data([[1.0f32, 0.5], [0.0, 2.0]], &device);
        let prior = [0.75, 0.25];
        let la = value(logit_adjusted_cross_entropy(
            logits.clone(),
            &[MixedLabel::pure(1), MixedLabel::pure(0)],
            None,
            0.0,
            &prior,
            1.0,
        ));
        // By hand: shifted rows (1 + ln .75, .5 + ln .25) and (ln .75, 2 + ln .25).
        let (a, b) = (1.0 + 0.75f32.ln(), 0.5 + 0.25f32.ln());
        let row1 = -(b - (a.exp() + b.exp()).ln());
        let (c, d) = (0.75f32.ln(), 2.0 + 0.25f32.ln());
        let row2 = -(c - (c.exp() + d.exp()).ln());
        assert!((la - (row1 + row2) / 2.0).abs() < 1e-5, "{la}");
        // A rare true class costs more than under plain cross-entropy.
        let first = logits.narrow(0, 0, 1);
        let plain = value(cross_entropy(first.clone(), &[1], None, 0.0));
        let rare = value(logit_adjusted_cross_entropy(
            first,
            &[MixedLabel::pure(1)],
            None,
            0.0,
            &prior,
            1.0,
        ));
        assert!(rare > plain + 0.5, "{rare} vs {plain}");
    }

    #[test]
    fn mixed_targets_weigh_the_two_labels_losses() {
        let device = Device::default();
        let logits = Tensor::<2>::from_data([[1.0f32, -0.5, 0.25]], &device);
        let loss_of = |label| value(cross_entropy(logits.clone(), &[label], None, 0.0));
        let mixed = MixedLabel {
            a: 0,
            b: 2,
            lam: 0.3,
        };
        let got = value(mixed_cross_entropy(logits.clone(), &[mixed], None, 0.0));
        let expected = 0.3 * loss_of(0) + 0.7 * loss_of(2);
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        // A pure target is plain cross-entropy; class weights mix like the labels.
        let pure = value(mixed_cross_entropy(
            logits.clone(),
            &[MixedLabel::pure(1)],
            None,
            0.1,
        ));
        assert!((pure - value(cross_entropy(logits.clone(), &[1], None, 0.1))).abs() < 1e-6);
        let weights = [2.0f32, 1.0, 4.0];
        let two = Tensor::<2>::from_data([[1.0f32, -0.5, 0.25], [1.0, -0.5, 0.25]], &device);
        let weighted = value(mixed_cross_entropy(
            two,
            &[mixed, MixedLabel::pure(1)],
            Some(&weights),
            0.0,
        ));
        let w_mixed = 0.3 * 2.0 + 0.7 * 4.0;
        let expected = (w_mixed * expected + 1.0 * loss_of(1)) / (w_mixed + 1.0);
        assert!(
            (weighted - expected).abs() < 1e-5,
            "{weighted} vs {expected}"
        );
    }
}
