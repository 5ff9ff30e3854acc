//! Logit adjustment for balanced accuracy (Menon et al., "Long-tail learning via logit
//! adjustment", ICLR 2021): the Bayes-optimal rule for balanced error subtracts
//! `tau * log(prior)` from the logits (`tau = 1`), where the prior is the class distribution
//! the model was trained on. That prior is the one its batches showed, after any sampler and
//! class weights, so a balancing step is never corrected twice.

use serde::{Deserialize, Serialize};

use super::config::{LossKind, Sampler, TrainConfig};

/// The class distribution a run's loss saw: training counts, times the class weights in
/// the loss, flattened by a balanced sampler, normalised to sum to 1.
pub fn effective_prior(
    train_counts: &[usize],
    sampler: Sampler,
    class_weights: Option<&[f32]>,
) -> Vec<f64> {
    let mut mass: Vec<f64> = match sampler {
        Sampler::Uniform => train_counts.iter().map(|&c| c as f64).collect(),
        Sampler::Balanced => train_counts
            .iter()
            .map(|&c| if c > 0 { 1.0 } else { 0.0 })
            .collect(),
        Sampler::Sqrt => train_counts.iter().map(|&c| (c as f64).sqrt()).collect(),
    };
    if let Some(weights) = class_weights {
        for (m, w) in mass.iter_mut().zip(weights) {
            *m *= *w as f64;
        }
    }
    let total: f64 = mass.iter().sum();
    mass.iter()
        .map(|m| m / total.max(f64::MIN_POSITIVE))
        .collect()
}

/// The post-hoc decision rule stored with a model: probabilities are multiplied by
/// `prior^-tau` and renormalised, which equals subtracting `tau * log(prior)` from the
/// logits. With test-time augmentation the views' probabilities are averaged first.
///
/// It also holds the temperature (`evaluate --fit-temperature`) that divides the adjusted
/// logits before the softmax; every path that turns logits into probabilities (evaluate,
/// predict, serve, export) applies both through [`LogitAdjustment::apply`] or, in an
/// exported graph, as `Add` then `Mul` by `1/T`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogitAdjustment {
    /// The training prior (empty: no adjustment).
    pub prior: Vec<f64>,
    /// Strength (0: none; 1: Bayes-optimal for balanced error).
    pub tau: f64,
    /// Temperature scaling: the adjusted logits are divided by it before the softmax
    /// (1: none).
    #[serde(default = "no_temperature")]
    pub temperature: f64,
}

fn no_temperature() -> f64 {
    1.0
}

impl Default for LogitAdjustment {
    fn default() -> Self {
        Self {
            prior: Vec::new(),
            tau: 0.0,
            temperature: 1.0,
        }
    }
}

impl LogitAdjustment {
    /// The rule a run trained with `config` on a loss that saw `prior` uses by default:
    /// `tau * log(prior)` post hoc after cross-entropy, nothing after the logit-adjusted
    /// loss (its logits are already adjusted).
    pub fn for_run(config: &TrainConfig, prior: Vec<f64>) -> Self {
        let tau = match config.loss {
            LossKind::Ce => config.tau,
            LossKind::LogitAdjusted => 0.0,
        };
        Self {
            prior,
            tau,
            temperature: 1.0,
        }
    }

    /// The same rule with another strength.
    pub fn with_tau(&self, tau: f64) -> Self {
        Self {
            tau,
            ..self.clone()
        }
    }

    /// The same rule with another temperature, for `classes` outputs (a rule without a
    /// prior gets a uniform one, which adjusts nothing but gives the rows their width).
    pub fn with_temperature(&self, temperature: f64, classes: usize) -> Self {
        let mut rule = self.clone();
        if rule.prior.is_empty() {
            rule.prior = vec![1.0 / classes as f64; classes];
            rule.tau = 0.0;
        }
        rule.temperature = temperature;
        rule
    }

    /// True when the prior adjustment changes nothing (the temperature aside).
    pub fn is_identity(&self) -> bool {
        self.tau == 0.0 || self.prior.is_empty()
    }

    /// Adjusts flat row-major `[n, k]` probabilities in place: the prior adjustment, then
    /// the temperature (`p^(1/T)`, renormalised). For one view this is
    /// `softmax((z + offsets) / T)`: the temperature changes confidence, never the decision.
    pub fn apply(&self, probs: &mut [f32]) {
        let k = self.prior.len();
        if k == 0 || (self.is_identity() && self.temperature == 1.0) {
            return;
        }
        let exponent = 1.0 / self.temperature;
        let tau = if self.is_identity() { 0.0 } else { self.tau };
        let factors: Vec<f64> = self.prior.iter().map(|p| p.max(1e-12).powf(-tau)).collect();
        for row in probs.chunks_exact_mut(k) {
            let mut adjusted: Vec<f64> = row
                .iter()
                .zip(&factors)
                .map(|(p, f)| (*p as f64 * f).powf(exponent))
                .collect();
            let total: f64 = adjusted.iter().sum();
            if total > 0.0 && total.is_finite() {
                adjusted.iter_mut().for_each(|v| *v /= total);
                for (out, v) in row.iter_mut().zip(adjusted) {
                    *out = v as f32;
                }
            }
        }
    }

    /// The adjustment as logit offsets (`-tau * log(prior)`), e.g. for an exported graph.
    pub fn logit_offsets(&self) -> Vec<f32> {
        if self.is_identity() {
            return Vec::new();
        }
        self.prior
            .iter()
            .map(|p| (-self.tau * p.max(1e-12).ln()) as f32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adjustment(prior: Vec<f64>, tau: f64, temperature: f64) -> LogitAdjustment {
        LogitAdjustment {
            prior,
            tau,
            temperature,
        }
    }

    #[test]
    fn matches_a_hand_computed_case() {
        // Prior (0.8, 0.2), tau 1: p' ∝ (0.6 / 0.8, 0.4 / 0.2) = (0.75, 2) -> (3/11, 8/11).
        let rule = adjustment(vec![0.8, 0.2], 1.0, 1.0);
        let mut probs = vec![0.6f32, 0.4];
        rule.apply(&mut probs);
        assert!((probs[0] - 3.0 / 11.0).abs() < 1e-6, "{probs:?}");
        assert!((probs[1] - 8.0 / 11.0).abs() < 1e-6, "{probs:?}");
        // Equal to a softmax of logits shifted by -tau * log(prior).
        let logits = [0.6f64.ln() - 0.8f64.ln(), 0.4f64.ln() - 0.2f64.ln()];
        let z: f64 = logits.iter().map(|l| l.exp()).sum();
        assert!((probs[1] as f64 - logits[1].exp() / z).abs() < 1e-6);
        let offsets = rule.logit_offsets();
        assert!((offsets[0] as f64 + 0.8f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn the_temperature_softens_after_the_adjustment_and_keeps_the_decision() {
        let rule = adjustment(vec![0.8, 0.2], 1.0, 2.0);
        let mut probs = vec![0.6f32, 0.4];
        rule.apply(&mut probs);
        // softmax((z + o) / 2) with z + o = ln(0.75), ln(2) (up to a constant).
        let (a, b) = (0.75f64.sqrt(), 2f64.sqrt());
        assert!((probs[1] as f64 - b / (a + b)).abs() < 1e-6, "{probs:?}");
        assert!(
            probs[1] > probs[0] && probs[1] < 8.0 / 11.0,
            "softer, same decision"
        );
        // A rule without a prior gets a uniform one: the temperature alone.
        let plain = LogitAdjustment::default().with_temperature(0.5, 2);
        let mut sharp = vec![0.6f32, 0.4];
        plain.apply(&mut sharp);
        assert!((sharp[0] - 0.36 / 0.52).abs() < 1e-6, "{sharp:?}");
    }

    #[test]
    fn moves_predictions_toward_rare_classes() {
        let rule = adjustment(vec![0.67, 0.11, 0.11, 0.05, 0.03, 0.02, 0.01], 1.0, 1.0);
        // The common class wins narrowly before, the rarest after.
        let mut probs = vec![0.40f32, 0.1, 0.1, 0.05, 0.0, 0.0, 0.35];
        let argmax = |p: &[f32]| (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(argmax(&probs), 0);
        rule.apply(&mut probs);
        assert_eq!(argmax(&probs), 6);
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // tau 0 is the identity.
        let mut same = vec![0.40f32, 0.6];
        adjustment(vec![0.9, 0.1], 0.0, 1.0).apply(&mut same);
        assert_eq!(same, vec![0.40, 0.6]);
    }

    #[test]
    fn effective_prior_counts_sampler_and_weights_once() {
        let counts = [60, 30, 10];
        let plain = effective_prior(&counts, Sampler::Uniform, None);
        assert_eq!(plain, vec![0.6, 0.3, 0.1]);
        let balanced = effective_prior(&counts, Sampler::Balanced, None);
        assert!(balanced.iter().all(|p| (p - 1.0 / 3.0).abs() < 1e-12));
        // The square-root sampler: roots of 64, 16, 4 are 8, 4, 2.
        let sqrt = effective_prior(&[64, 16, 4], Sampler::Sqrt, None);
        let want = [8.0 / 14.0, 4.0 / 14.0, 2.0 / 14.0];
        assert!(sqrt.iter().zip(want).all(|(p, w)| (p - w).abs() < 1e-12));
        // Inverse-frequency weights flatten the prior too.
        let inverse = [1.0 / 60.0, 1.0 / 30.0, 1.0 / 10.0];
        let weighted = effective_prior(&counts, Sampler::Uniform, Some(&inverse));
        assert!(weighted.iter().all(|p| (p - 1.0 / 3.0).abs() < 1e-6));
    }

    #[test]
    fn the_logit_adjusted_loss_needs_no_post_hoc_step() {
        let mut config = TrainConfig {
            tau: 1.0,
            ..TrainConfig::default()
        };
        assert_eq!(LogitAdjustment::for_run(&config, vec![0.5, 0.5]).tau, 1.0);
        config.loss = LossKind::LogitAdjusted;
        assert!(LogitAdjustment::for_run(&config, vec![0.9, 0.1]).is_identity());
    }
}
