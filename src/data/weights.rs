//! Class weights for imbalanced data.

/// How to weight classes in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ClassWeighting {
    /// All ones.
    #[default]
    None,
    /// `1 / n_c`.
    Inverse,
    /// "Effective number of samples" (Cui et al. 2019): `(1 - beta) / (1 - beta^n_c)`.
    Effective {
        /// Typically 0.9 .. 0.9999.
        beta: f64,
    },
}

impl std::str::FromStr for ClassWeighting {
    type Err = String;
    /// `none`, `inverse`, `effective` (beta 0.999) or `effective:BETA`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.to_ascii_lowercase();
        match s.as_str() {
            "none" => Ok(ClassWeighting::None),
            "inverse" | "inv" => Ok(ClassWeighting::Inverse),
            "effective" => Ok(ClassWeighting::Effective { beta: 0.999 }),
            _ => match s.strip_prefix("effective:") {
                Some(b) => b
                    .parse::<f64>()
                    .ok()
                    .filter(|b| (0.0..1.0).contains(b))
                    .map(|beta| ClassWeighting::Effective { beta })
                    .ok_or_else(|| format!("bad beta `{b}` (need 0 <= beta < 1)")),
                None => Err(format!(
                    "unknown class weighting `{s}` (none, inverse, effective[:beta])"
                )),
            },
        }
    }
}

/// Per-class weights, normalised so they average to 1 over the classes that have samples.
/// Classes with no samples get weight 0.
pub fn class_weights(counts: &[usize], kind: ClassWeighting) -> Vec<f32> {
    let raw: Vec<f64> = counts
        .iter()
        .map(|&n| {
            if n == 0 {
                return 0.0;
            }
            match kind {
                ClassWeighting::None => 1.0,
                ClassWeighting::Inverse => 1.0 / n as f64,
                ClassWeighting::Effective { beta } => {
                    if beta <= 0.0 {
                        1.0
                    } else {
                        (1.0 - beta) / (1.0 - beta.powf(n as f64))
                    }
                }
            }
        })
        .collect();
    let present = counts.iter().filter(|&&n| n > 0).count();
    let sum: f64 = raw.iter().sum();
    if present == 0 || sum <= 0.0 {
        return vec![0.0; counts.len()];
    }
    let k = present as f64 / sum;
    raw.iter().map(|w| (w * k) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_normalise() {
        assert_eq!("none".parse(), Ok(ClassWeighting::None));
        assert_eq!("inverse".parse(), Ok(ClassWeighting::Inverse));
        assert!("effective:1.5".parse::<ClassWeighting>().is_err());
        let w = class_weights(&[1, 1, 2], ClassWeighting::Inverse);
        assert!((w.iter().sum::<f32>() - 3.0).abs() < 1e-6);
        assert_eq!(
            class_weights(&[0, 0], ClassWeighting::Inverse),
            vec![0.0, 0.0]
        );
    }
}
