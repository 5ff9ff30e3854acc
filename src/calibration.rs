//! Are the probabilities honest, and where should a clinic set its threshold?
//!
//! - Expected calibration error (Guo et al., 2017): the top-class confidence against the
//!   accuracy in equal-width confidence bins, weighted by bin size; the bins are the
//!   reliability diagram.
//! - Temperature scaling: one scalar `T` that divides the (adjusted) logits, fitted by
//!   minimising the negative log-likelihood on held-out images; it changes confidence, never
//!   the decision.
//! - Operating points: the sensitivity for one class (melanoma) at a fixed specificity,
//!   with the score threshold that gives it.

use serde::{Deserialize, Serialize};

/// One bin of a reliability diagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// Lower confidence edge (the upper edge is the next bin's lower one, 1 for the last).
    pub lower: f64,
    /// Images whose top-class confidence falls in the bin.
    pub count: usize,
    /// Their mean confidence (0 when empty).
    pub confidence: f64,
    /// Their accuracy (0 when empty).
    pub accuracy: f64,
}

/// Calibration of a set of predictions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Expected calibration error: `sum_b |accuracy_b - confidence_b| * n_b / n`.
    pub ece: f64,
    /// Mean negative log-likelihood of the true class.
    pub nll: f64,
    /// The equal-width bins over [0, 1].
    pub bins: Vec<Bin>,
}

/// Calibration of flat row-major `[n, k]` probabilities against `labels`, over `bins`
/// equal-width confidence bins (15 is the usual choice).
pub fn calibration(labels: &[usize], probs: &[f32], k: usize, bins: usize) -> Calibration {
    let mut sums = vec![(0usize, 0.0f64, 0.0f64); bins];
    let mut nll = 0.0;
    for (row, &label) in probs.chunks_exact(k).zip(labels) {
        let top = crate::metrics::argmax(row);
        let confidence = row[top] as f64;
        let b = ((confidence * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += confidence;
        sums[b].2 += f64::from(u8::from(top == label));
        nll -= (row[label].max(1e-12) as f64).ln();
    }
    let n = labels.len().max(1) as f64;
    let bins: Vec<Bin> = sums
        .iter()
        .enumerate()
        .map(|(i, &(count, conf, correct))| {
            let mean = |s: f64| if count > 0 { s / count as f64 } else { 0.0 };
            Bin {
                lower: i as f64 / sums.len() as f64,
                count,
                confidence: mean(conf),
                accuracy: mean(correct),
            }
        })
        .collect();
    let ece = bins
        .iter()
        .map(|b| (b.accuracy - b.confidence).abs() * b.count as f64 / n)
        .sum();
    Calibration {
        ece,
        nll: nll / n,
        bins,
    }
}

/// Mean negative log-likelihood of `labels` under `softmax((logits + offsets) / temperature)`
/// (`offsets` empty: none; the model's logit adjustment otherwise).
pub fn nll_at(
    labels: &[usize],
    logits: &[f32],
    k: usize,
    temperature: f64,
    offsets: &[f32],
) -> f64 {
    let mut total = 0.0;
    let offset = |c: usize| offsets.get(c).map_or(0.0, |&o| o as f64);
    for (row, &label) in logits.chunks_exact(k).zip(labels) {
        let scaled: Vec<f64> = row
            .iter()
            .enumerate()
            .map(|(c, &z)| (z as f64 + offset(c)) / temperature)
            .collect();
        let peak = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_sum = peak + scaled.iter().map(|z| (z - peak).exp()).sum::<f64>().ln();
        total += log_sum - scaled[label];
    }
    total / labels.len().max(1) as f64
}

/// The temperature in [0.05, 20] that minimises [`nll_at`]. The NLL is convex in `1 / T`,
/// so a golden-section search over `1 / T` finds the minimum.
pub fn fit_temperature(labels: &[usize], logits: &[f32], k: usize, offsets: &[f32]) -> f64 {
    let f = |beta: f64| nll_at(labels, logits, k, 1.0 / beta, offsets);
    let (mut lo, mut hi) = (0.05f64, 20.0f64);
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let mut a = hi - ratio * (hi - lo);
    let mut b = lo + ratio * (hi - lo);
    let (mut fa, mut fb) = (f(a), f(b));
    for _ in 0..80 {
        if fa <= fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - ratio * (hi - lo);
            fa = f(a);
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + ratio * (hi - lo);
            fb = f(b);
        }
    }
    1.0 / ((lo + hi) / 2.0)
}

/// The sensitivity one class reaches at a required specificity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// The specificity asked for.
    pub target_specificity: f64,
    /// Call the class when its score is at least this.
    pub threshold: f64,
    /// Specificity reached at that threshold (>= the target).
    pub specificity: f64,
    /// Sensitivity at that threshold.
    pub sensitivity: f64,
}

/// The lowest threshold on `scores` whose specificity (among the `!positive` images) is at
/// least `target`, with the sensitivity it gives; `None` without positives or negatives.
pub fn operating_point(scores: &[f32], positive: &[bool], target: f64) -> Option<OperatingPoint> {
    let mut negatives: Vec<f32> = scores
        .iter()
        .zip(positive)
        .filter(|(_, p)| !**p)
        .map(|(s, _)| *s)
        .collect();
    let positives: Vec<f32> = scores
        .iter()
        .zip(positive)
        .filter(|(_, p)| **p)
        .map(|(s, _)| *s)
        .collect();
    if negatives.is_empty() || positives.is_empty() {
        return None;
    }
    negatives.sort_by(|a, b| b.total_cmp(a));
    let n = negatives.len();
    // At most this many negatives may score at or above the threshold.
    let allowed = ((1.0 - target) * n as f64 + 1e-9).floor() as usize;
    // Just above the (allowed + 1)-th highest negative score: ties stay below.
    let threshold = match negatives.get(allowed) {
        Some(&s) => next_up(s),
        None => f32::NEG_INFINITY,
    };
    let false_pos = negatives.iter().filter(|&&s| s >= threshold).count();
    let true_pos = positives.iter().filter(|&&s| s >= threshold).count();
    Some(OperatingPoint {
        target_specificity: target,
        threshold: threshold as f64,
        specificity: 1.0 - false_pos as f64 / n as f64,
        sensitivity: true_pos as f64 / positives.len() as f64,
    })
}

/// Calibration and the melanoma operating points of one prediction set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    /// ECE, NLL and the reliability bins (15).
    pub calibration: Calibration,
    /// Melanoma (`MEL`) sensitivity at 80% and 90% specificity; empty without a MEL class
    /// or without melanomas and non-melanomas among the images.
    pub melanoma: Vec<OperatingPoint>,
}

impl CalibrationReport {
    /// Computes it from labels and flat row-major probabilities over `classes`.
    pub fn compute<S: AsRef<str>>(labels: &[usize], probs: &[f32], classes: &[S]) -> Self {
        let k = classes.len();
        let melanoma = classes
            .iter()
            .position(|c| c.as_ref() == "MEL")
            .map(|mel| {
                let scores: Vec<f32> = probs.chunks_exact(k).map(|r| r[mel]).collect();
                let positive: Vec<bool> = labels.iter().map(|&l| l == mel).collect();
                [0.8, 0.9]
                    .iter()
                    .filter_map(|&t| operating_point(&scores, &positive, t))
                    .collect()
            })
            .unwrap_or_default();
        CalibrationReport {
            calibration: calibration(labels, probs, k, 15),
            melanoma,
        }
    }

    /// Plain-text lines for the CLI and the run report.
    pub fn render(&self) -> String {
        let mut out = format!(
            "calibration        ECE {:.4} (15 bins), NLL {:.4}\n",
            self.calibration.ece, self.calibration.nll
        );
        for p in &self.melanoma {
            out.push_str(&format!(
                "melanoma           sensitivity {:.4} at specificity >= {:.0}% (reached {:.4}; call MEL when its probability >= {:.4})\n",
                p.sensitivity,
                100.0 * p.target_specificity,
                p.specificity,
                p.threshold
            ));
        }
        out
    }
}

/// The smallest f32 above `x`.
fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let bits = x.to_bits();
    f32::from_bits(if x > 0.0 { bits + 1 } else { bits - 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_matches_a_hand_computed_case() {
        // Two classes, four images, two bins. Every top confidence (0.9, 0.8, 0.6, 0.7)
        // lies in the upper bin: mean 0.75. The tops are classes 0, 1, 1, 1 against labels
        // 0, 0, 1, 1, so 3 of 4 are right: accuracy 0.75, and the ECE is 0.
        let probs = [0.9f32, 0.1, 0.2, 0.8, 0.4, 0.6, 0.3, 0.7];
        let labels = [0usize, 0, 1, 1];
        let c = calibration(&labels, &probs, 2, 2);
        assert_eq!(c.bins[0].count, 0);
        assert_eq!(c.bins[1].count, 4);
        assert!((c.bins[1].confidence - 0.75).abs() < 1e-6);
        assert!((c.bins[1].accuracy - 0.75).abs() < 1e-12);
        assert!(c.ece.abs() < 1e-6);
        let nll = -(0.9f64.ln() + 0.2f64.ln() + 0.6f64.ln() + 0.7f64.ln()) / 4.0;
        assert!((c.nll - nll).abs() < 1e-6);
        // Overconfident: every top at 1.0 with half of them wrong gives ECE 0.5.
        let sure = [1.0f32, 0.0, 1.0, 0.0];
        let c = calibration(&[0, 1], &sure, 2, 10);
        assert!((c.ece - 0.5).abs() < 1e-12);
    }

    #[test]
    fn temperature_scaling_finds_the_temperature_that_generated_the_labels() {
        // Logits z, labels drawn as if the true probabilities were softmax(z / 2):
        // with many copies in those proportions, the fitted T is 2.
        let rows = [[2.0f32, 0.0, -1.0], [0.5, 1.5, 0.0], [-1.0, 0.0, 3.0]];
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for row in rows {
            let e: Vec<f64> = row.iter().map(|&z| (z as f64 / 2.0).exp()).collect();
            let total: f64 = e.iter().sum();
            for (class, p) in e.iter().enumerate() {
                for _ in 0..(p / total * 10_000.0).round() as usize {
                    logits.extend_from_slice(&row);
                    labels.push(class);
                }
            }
        }
        let t = fit_temperature(&labels, &logits, 3, &[]);
        assert!((t - 2.0).abs() < 0.01, "{t}");
        assert!(nll_at(&labels, &logits, 3, t, &[]) < nll_at(&labels, &logits, 3, 1.0, &[]));
        // Offsets shift the logits before the scaling: logits z - o with offsets o fit the
        // same data at the same T.
        let offsets = [0.5f32, -0.25, 0.0];
        let shifted: Vec<f32> = logits
            .chunks_exact(3)
            .flat_map(|r| (0..3).map(move |c| r[c] - offsets[c]))
            .collect();
        let t2 = fit_temperature(&labels, &shifted, 3, &offsets);
        assert!((t2 - 2.0).abs() < 0.01, "{t2}");
    }

    #[test]
    fn operating_point_matches_a_hand_computed_case() {
        // 10 negatives scoring 0.0..0.9, 4 positives. 80% specificity allows 2 negatives at
        // or above the threshold: just above 0.7, so 0.8 and 0.9 pass. Positives 0.95,
        // 0.85, 0.75, 0.5: the first three pass -> sensitivity 0.75.
        let mut scores: Vec<f32> = (0..10).map(|i| i as f32 / 10.0).collect();
        scores.extend([0.95, 0.85, 0.75, 0.5]);
        let positive: Vec<bool> = (0..14).map(|i| i >= 10).collect();
        let p = operating_point(&scores, &positive, 0.8).unwrap();
        assert!((p.specificity - 0.8).abs() < 1e-12);
        assert!((p.sensitivity - 0.75).abs() < 1e-12);
        assert!(p.threshold > 0.7 && p.threshold < 0.7001);
        // 90%: one negative may pass, so the threshold is just above 0.8; positives 0.95
        // and 0.85 pass: sensitivity 2/4.
        let p = operating_point(&scores, &positive, 0.9).unwrap();
        assert!((p.specificity - 0.9).abs() < 1e-12);
        assert!((p.sensitivity - 0.5).abs() < 1e-12);
        assert!(operating_point(&scores[..10], &positive[..10], 0.9).is_none());
    }
}
