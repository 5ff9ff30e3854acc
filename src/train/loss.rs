//! Cross-entropy with optional class weights and label smoothing.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

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
    let [n, k] = logits.dims();
    let device = logits.device();
    let eps = label_smoothing as f32;
    let mut targets = vec![eps / k as f32; n * k];
    let mut sample_weights = vec![1.0f32; n];
    for (i, &label) in labels.iter().enumerate() {
        targets[i * k + label] += 1.0 - eps;
        if let Some(weights) = class_weights {
            sample_weights[i] = weights[label];
        }
    }
    let total_weight: f32 = sample_weights.iter().sum();
    let targets = Tensor::<2>::from_data(TensorData::new(targets, [n, k]), &device);
    let sample_weights = Tensor::<2>::from_data(TensorData::new(sample_weights, [n, 1]), &device);
    let per_sample = (log_softmax(logits, 1) * targets).sum_dim(1).neg();
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
    labels: &[usize],
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
    cross_entropy(shifted, labels, class_weights, label_smoothing)
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
            &[1, 0],
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
            &[1],
            None,
            0.0,
            &prior,
            1.0,
        ));
        assert!(rare > plain + 0.5, "{rare} vs {plain}");
    }
}
