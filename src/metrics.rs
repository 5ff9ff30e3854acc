//! Classification metrics for the ISIC 2018 Task 3 problem (and any other multiclass task).
//!
//! Everything is computed from the true labels and the predicted class probabilities:
//!
//! * **Probabilities layout**: a *flat, row-major* `&[f32]` of length `n_samples * n_classes`
//!   (sample `i`, class `c` at index `i * n_classes + c`), which is what
//!   `tensor.into_data().to_vec::<f32>()` gives for a `[n_samples, n_classes]` tensor.
//!   [`Metrics::compute_rows`] accepts one `Vec<f32>` per sample instead.
//! * **Predicted class**: the argmax of each row; ties are broken toward the **lowest class
//!   index** (see [`argmax`]).
//! * **Confusion matrix**: `confusion[true][predicted]` (rows = truth, columns = prediction).
//! * **Balanced multiclass accuracy** (the official ISIC 2018 Task 3 metric): the mean
//!   per-class recall over the classes that are **present in the true labels**. A class with
//!   no true samples has an undefined recall and is left out of the mean (it still appears in
//!   the per-class table with recall 0 and support 0).
//! * **Undefined ratios** (sensitivity without positives, specificity without negatives,
//!   precision without predictions, F1 when precision + recall = 0) are reported as `0.0`.
//! * **ROC AUC** is one-vs-rest per class, computed exactly as the Mann-Whitney U statistic
//!   with tied scores counted as one half (identical to the trapezoidal area under the ROC
//!   curve with ties averaged). It is `None` when the class has no positives or no negatives in
//!   the truth; the macro AUC is the mean over the classes where it is defined (`None` if none).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Errors raised when the inputs of [`Metrics::compute`] are inconsistent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// No class names were given.
    #[error("no classes given")]
    NoClasses,
    /// No samples were given.
    #[error("no samples given")]
    Empty,
    /// The probability buffer does not hold `n_samples * n_classes` values.
    #[error(
        "expected {expected} probabilities ({n_samples} samples x {n_classes} classes), got {got}"
    )]
    ShapeMismatch {
        /// Number of labels.
        n_samples: usize,
        /// Number of classes.
        n_classes: usize,
        /// Expected buffer length.
        expected: usize,
        /// Actual buffer length.
        got: usize,
    },
    /// A true label is not a valid class index.
    #[error("sample {sample}: label {label} is out of range for {n_classes} classes")]
    LabelOutOfRange {
        /// Sample index.
        sample: usize,
        /// The offending label.
        label: usize,
        /// Number of classes.
        n_classes: usize,
    },
    /// A probability is NaN or infinite.
    #[error("sample {sample}, class {class}: score {value} is not finite")]
    NonFiniteScore {
        /// Sample index.
        sample: usize,
        /// Class index.
        class: usize,
        /// The offending value.
        value: f32,
    },
}

/// Index of the largest value of `row`; ties go to the lowest index. NaN never wins
/// (a row of only NaN gives 0). Returns 0 for an empty row.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    let mut best_val = f32::NEG_INFINITY;
    let mut seen = false;
    for (i, &v) in row.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if !seen || v > best_val {
            best = i;
            best_val = v;
            seen = true;
        }
    }
    best
}

/// Confusion matrix `m[true][predicted]` for `n_classes` classes.
///
/// Labels or predictions `>= n_classes` are ignored.
pub fn confusion_matrix(labels: &[usize], preds: &[usize], n_classes: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; n_classes]; n_classes];
    for (&t, &p) in labels.iter().zip(preds) {
        if t < n_classes && p < n_classes {
            m[t][p] += 1;
        }
    }
    m
}

/// Exact ROC AUC of `scores` for the binary truth `positive` (Mann-Whitney U with midranks,
/// ties count one half). `None` when there are no positives or no negatives, or the slices
/// differ in length. NaN scores are ranked below every number (callers should reject them).
pub fn roc_auc(scores: &[f32], positive: &[bool]) -> Option<f64> {
    if scores.len() != positive.len() {
        return None;
    }
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (scores[a], scores[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            // total_cmp would split -0.0 and 0.0; partial_cmp treats them as a tie.
            _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        }
    });
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let same = |a: f32, b: f32| a == b || (a.is_nan() && b.is_nan());
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && same(scores[order[j]], scores[order[i]]) {
            j += 1;
        }
        // Items i..j share the ranks i+1..=j; their average is (i + 1 + j) / 2.
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        let pos_in_group = order[i..j].iter().filter(|&&k| positive[k]).count();
        rank_sum_pos += avg_rank * pos_in_group as f64;
        i = j;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    let u = rank_sum_pos - p * (p + 1.0) / 2.0;
    Some(u / (p * n))
}

/// `num / den`, or 0 when `den` is 0.
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// One-vs-rest metrics of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class name.
    pub name: String,
    /// Number of samples whose true label is this class.
    pub support: u64,
    /// Number of samples predicted as this class.
    pub predicted: u64,
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// False negatives.
    pub fn_: u64,
    /// True negatives.
    pub tn: u64,
    /// Recall, TP / (TP + FN); 0 when the class is absent from the truth.
    pub sensitivity: f64,
    /// TN / (TN + FP); 0 when every sample belongs to this class.
    pub specificity: f64,
    /// TP / (TP + FP); 0 when the class is never predicted.
    pub precision: f64,
    /// Harmonic mean of precision and recall; 0 when both are 0.
    pub f1: f64,
    /// One-vs-rest ROC AUC; `None` without positives or without negatives.
    pub auc: Option<f64>,
}

/// All evaluation metrics of one prediction set (see the module docs for the definitions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Class names, in class-index order.
    pub class_names: Vec<String>,
    /// Number of samples.
    pub n_samples: u64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// Fraction of samples whose argmax equals the label.
    pub accuracy: f64,
    /// Mean recall over the classes present in the truth (ISIC 2018 Task 3 metric).
    pub balanced_accuracy: f64,
    /// Number of classes present in the truth (the denominator of `balanced_accuracy`).
    pub classes_present: usize,
    /// Mean F1 over the classes present in the truth.
    pub macro_f1: f64,
    /// Mean one-vs-rest AUC over the classes where it is defined; `None` if none is.
    pub macro_auc: Option<f64>,
    /// Per-class metrics, in class-index order.
    pub per_class: Vec<ClassMetrics>,
}

impl Metrics {
    /// Computes every metric from true `labels` and flat row-major `probs`
    /// (`labels.len() * class_names.len()` values; any scores work, not only probabilities).
    pub fn compute<S: AsRef<str>>(
        labels: &[usize],
        probs: &[f32],
        class_names: &[S],
    ) -> Result<Self, MetricsError> {
        let k = class_names.len();
        if k == 0 {
            return Err(MetricsError::NoClasses);
        }
        let n = labels.len();
        if n == 0 {
            return Err(MetricsError::Empty);
        }
        if probs.len() != n * k {
            return Err(MetricsError::ShapeMismatch {
                n_samples: n,
                n_classes: k,
                expected: n * k,
                got: probs.len(),
            });
        }
        for (i, &label) in labels.iter().enumerate() {
            if label >= k {
                return Err(MetricsError::LabelOutOfRange {
                    sample: i,
                    label,
                    n_classes: k,
                });
            }
        }
        if let Some(idx) = probs.iter().position(|v| !v.is_finite()) {
            return Err(MetricsError::NonFiniteScore {
                sample: idx / k,
                class: idx % k,
                value: probs[idx],
            });
        }

        let preds: Vec<usize> = probs.chunks_exact(k).map(argmax).collect();
        let confusion = confusion_matrix(labels, &preds, k);
        let correct: u64 = (0..k).map(|c| confusion[c][c]).sum();
        let total = n as u64;

        let mut per_class = Vec::with_capacity(k);
        let mut scores = vec![0f32; n];
        let mut positive = vec![false; n];
        for c in 0..k {
            let support: u64 = confusion[c].iter().sum();
            let predicted: u64 = confusion.iter().map(|row| row[c]).sum();
            let tp = confusion[c][c];
            let fp = predicted - tp;
            let fn_ = support - tp;
            let tn = total - tp - fp - fn_;
            let sensitivity = ratio(tp, tp + fn_);
            let precision = ratio(tp, tp + fp);
            let f1 = if precision + sensitivity > 0.0 {
                2.0 * precision * sensitivity / (precision + sensitivity)
            } else {
                0.0
            };
            for i in 0..n {
                scores[i] = probs[i * k + c];
                positive[i] = labels[i] == c;
            }
            per_class.push(ClassMetrics {
                name: class_names[c].as_ref().to_string(),
                support,
                predicted,
                tp,
                fp,
                fn_,
                tn,
                sensitivity,
                specificity: ratio(tn, tn + fp),
                precision,
                f1,
                auc: roc_auc(&scores, &positive),
            });
        }

        let present: Vec<&ClassMetrics> = per_class.iter().filter(|m| m.support > 0).collect();
        let classes_present = present.len();
        let mean = |xs: &mut dyn Iterator<Item = f64>| {
            let (s, c) = xs.fold((0.0, 0usize), |(s, c), x| (s + x, c + 1));
            if c == 0 { None } else { Some(s / c as f64) }
        };
        let balanced_accuracy = mean(&mut present.iter().map(|m| m.sensitivity)).unwrap_or(0.0);
        let macro_f1 = mean(&mut present.iter().map(|m| m.f1)).unwrap_or(0.0);
        let macro_auc = mean(&mut per_class.iter().filter_map(|m| m.auc));

        Ok(Self {
            class_names: class_names.iter().map(|s| s.as_ref().to_string()).collect(),
            n_samples: total,
            confusion,
            accuracy: ratio(correct, total),
            balanced_accuracy,
            classes_present,
            macro_f1,
            macro_auc,
            per_class,
        })
    }

    /// Same as [`Metrics::compute`] with one probability row per sample; every row must have
    /// `class_names.len()` entries.
    pub fn compute_rows<S: AsRef<str>>(
        labels: &[usize],
        probs: &[Vec<f32>],
        class_names: &[S],
    ) -> Result<Self, MetricsError> {
        let k = class_names.len();
        if probs.len() != labels.len() || probs.iter().any(|r| r.len() != k) {
            return Err(MetricsError::ShapeMismatch {
                n_samples: labels.len(),
                n_classes: k,
                expected: labels.len() * k,
                got: probs.iter().map(Vec::len).sum(),
            });
        }
        let flat: Vec<f32> = probs.iter().flatten().copied().collect();
        Self::compute(labels, &flat, class_names)
    }

    /// Per-class recall (sensitivity), in class order.
    pub fn recalls(&self) -> Vec<f64> {
        self.per_class.iter().map(|m| m.sensitivity).collect()
    }

    /// Pretty-printed JSON of all metrics (`null` for undefined AUCs).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("Metrics always serialises")
    }

    /// Plain-text table for the CLI: one row per class, then the summary lines.
    pub fn render_table(&self) -> String {
        let name_w = self
            .class_names
            .iter()
            .map(|s| s.chars().count())
            .chain(std::iter::once(5))
            .max()
            .unwrap_or(5);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<name_w$} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
            "class", "support", "pred", "sens", "spec", "prec", "f1", "auc"
        );
        for m in &self.per_class {
            let auc = m.auc.map_or_else(|| "-".to_string(), |a| format!("{a:.4}"));
            let _ = writeln!(
                out,
                "{:<name_w$} {:>7} {:>7} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7}",
                m.name,
                m.support,
                m.predicted,
                m.sensitivity,
                m.specificity,
                m.precision,
                m.f1,
                auc
            );
        }
        let k = self.class_names.len();
        let n_auc = self.per_class.iter().filter(|m| m.auc.is_some()).count();
        let _ = writeln!(out, "samples            {}", self.n_samples);
        let _ = writeln!(out, "accuracy           {:.4}", self.accuracy);
        let _ = writeln!(
            out,
            "balanced accuracy  {:.4}  (mean recall over {}/{} classes present)",
            self.balanced_accuracy, self.classes_present, k
        );
        let _ = writeln!(out, "macro F1           {:.4}", self.macro_f1);
        match self.macro_auc {
            Some(a) => {
                let _ = writeln!(
                    out,
                    "macro AUC          {a:.4}  (over {n_auc}/{k} classes with an AUC)"
                );
            }
            None => {
                let _ = writeln!(out, "macro AUC          -");
            }
        }
        out
    }

    /// Plain-text confusion matrix (rows = true class, columns = predicted class).
    pub fn render_confusion(&self) -> String {
        let name_w = self
            .class_names
            .iter()
            .map(|s| s.chars().count())
            .chain(std::iter::once("true\\pred".len()))
            .max()
            .unwrap_or(9);
        let max_count = self.confusion.iter().flatten().copied().max().unwrap_or(0);
        let cell_w = self
            .class_names
            .iter()
            .map(|s| s.chars().count())
            .chain(std::iter::once(max_count.to_string().len()))
            .max()
            .unwrap_or(1);
        let mut out = format!("{:<name_w$}", "true\\pred");
        for name in &self.class_names {
            let _ = write!(out, " {name:>cell_w$}");
        }
        out.push('\n');
        for (name, row) in self.class_names.iter().zip(&self.confusion) {
            let _ = write!(out, "{name:<name_w$}");
            for v in row {
                let _ = write!(out, " {v:>cell_w$}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISIC: [&str; 7] = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// One-hot-ish probability rows from predicted classes.
    fn onehot(preds: &[usize], k: usize) -> Vec<f32> {
        let mut v = vec![0.0; preds.len() * k];
        for (i, &p) in preds.iter().enumerate() {
            v[i * k + p] = 1.0;
        }
        v
    }

    #[test]
    fn argmax_ties_go_to_lowest_index() {
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[0.5, 0.5]), 0);
        assert_eq!(argmax(&[f32::NAN, 0.1, 0.3]), 2);
        assert_eq!(argmax(&[-1.0, -2.0]), 0);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn auc_hand_computed_with_ties() {
        // Positives at 0.8 and 0.4, negatives at 0.4 and 0.1.
        // Pairs: (0.8>0.4)=1, (0.8>0.1)=1, (0.4=0.4)=0.5, (0.4>0.1)=1 -> 3.5/4.
        let auc = roc_auc(&[0.8, 0.4, 0.4, 0.1], &[true, true, false, false]).unwrap();
        assert!(close(auc, 0.875));
        // All scores tied -> 0.5.
        let auc = roc_auc(&[0.3; 5], &[true, false, true, false, false]).unwrap();
        assert!(close(auc, 0.5));
        // Perfect and inverted rankings.
        assert!(close(roc_auc(&[0.9, 0.1], &[true, false]).unwrap(), 1.0));
        assert!(close(roc_auc(&[0.1, 0.9], &[true, false]).unwrap(), 0.0));
        // -0.0 and 0.0 are a tie.
        assert!(close(roc_auc(&[0.0, -0.0], &[true, false]).unwrap(), 0.5));
        // Undefined without positives or negatives.
        assert_eq!(roc_auc(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(roc_auc(&[0.1], &[true, false]), None);
    }

    #[test]
    fn auc_matches_brute_force_pair_count() {
        let scores = [0.1, 0.5, 0.5, 0.3, 0.9, 0.5, 0.1, 0.7, 0.3, 0.3];
        let pos = [
            true, false, true, true, false, true, false, true, false, false,
        ];
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for i in 0..scores.len() {
            for j in 0..scores.len() {
                if pos[i] && !pos[j] {
                    pairs += 1.0;
                    if scores[i] > scores[j] {
                        wins += 1.0;
                    } else if scores[i] == scores[j] {
                        wins += 0.5;
                    }
                }
            }
        }
        assert!(close(roc_auc(&scores, &pos).unwrap(), wins / pairs));
    }

    #[test]
    fn hand_computed_three_class_case() {
        // truth:      0 0 0 1 1 2
        // predicted:  0 0 1 1 2 2
        let labels = [0, 0, 0, 1, 1, 2];
        let preds = [0, 0, 1, 1, 2, 2];
        let m = Metrics::compute(&labels, &onehot(&preds, 3), &["a", "b", "c"]).unwrap();
        assert_eq!(
            m.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        assert!(close(m.accuracy, 4.0 / 6.0));
        // Recalls 2/3, 1/2, 1 -> mean 13/18.
        assert!(close(m.balanced_accuracy, (2.0 / 3.0 + 0.5 + 1.0) / 3.0));
        let b = &m.per_class[1];
        assert_eq!((b.tp, b.fp, b.fn_, b.tn), (1, 1, 1, 3));
        assert!(close(b.sensitivity, 0.5));
        assert!(close(b.specificity, 0.75));
        assert!(close(b.precision, 0.5));
        assert!(close(b.f1, 0.5));
        let c = &m.per_class[2];
        assert!(close(c.precision, 0.5));
        assert!(close(c.f1, 2.0 * 0.5 * 1.0 / 1.5));
        assert_eq!(m.classes_present, 3);
        // Class a: scores 1,1,0 for positives and 0,0,0 for negatives:
        // 2 positives win 3 pairs each, the third ties 3 -> (6 + 1.5) / 9.
        assert!(close(m.per_class[0].auc.unwrap(), 7.5 / 9.0));
    }

    #[test]
    fn all_nv_predictor_on_67_33_set() {
        // 67 NV, 33 MEL; always predict NV.
        let mut labels = vec![1usize; 67];
        labels.extend(std::iter::repeat_n(0usize, 33));
        let probs = onehot(&vec![1; 100], 2);
        let m = Metrics::compute(&labels, &probs, &["MEL", "NV"]).unwrap();
        assert!(close(m.accuracy, 0.67));
        assert!(close(m.balanced_accuracy, 0.5));
        // Constant scores -> AUC 0.5 for both classes.
        assert!(close(m.per_class[0].auc.unwrap(), 0.5));
        assert!(close(m.macro_auc.unwrap(), 0.5));
        // Never-predicted MEL: precision and F1 are 0 by convention.
        assert_eq!(m.per_class[0].precision, 0.0);
        assert_eq!(m.per_class[0].f1, 0.0);
        assert_eq!(m.per_class[0].predicted, 0);
    }

    #[test]
    fn all_nv_predictor_seven_classes_gives_one_over_k() {
        // 67 NV and 33 spread over the six other classes, all present; predict NV always.
        let mut labels = vec![1usize; 67];
        for i in 0..33 {
            labels.push([0, 2, 3, 4, 5, 6][i % 6]);
        }
        let probs: Vec<f32> = (0..100)
            .flat_map(|_| [0.05, 0.7, 0.05, 0.05, 0.05, 0.05, 0.05])
            .collect();
        let m = Metrics::compute(&labels, &probs, &ISIC).unwrap();
        assert!(close(m.accuracy, 0.67));
        assert!(close(m.balanced_accuracy, 1.0 / 7.0));
        assert_eq!(m.classes_present, 7);
    }

    #[test]
    fn perfect_predictor() {
        let labels = [0, 1, 2, 3, 4, 5, 6, 1, 1, 0];
        let m = Metrics::compute(&labels, &onehot(&labels, 7), &ISIC).unwrap();
        assert_eq!(m.accuracy, 1.0);
        assert_eq!(m.balanced_accuracy, 1.0);
        assert_eq!(m.macro_auc, Some(1.0));
        assert!(
            m.per_class
                .iter()
                .all(|c| c.f1 == 1.0 && c.specificity == 1.0)
        );
    }

    #[test]
    fn class_absent_from_predictions() {
        // Class 2 is in the truth but never predicted.
        let labels = [0, 1, 2, 2];
        let preds = [0, 1, 0, 1];
        let m = Metrics::compute(&labels, &onehot(&preds, 3), &["a", "b", "c"]).unwrap();
        let c = &m.per_class[2];
        assert_eq!((c.support, c.predicted, c.tp), (2, 0, 0));
        assert_eq!(c.sensitivity, 0.0);
        assert_eq!(c.precision, 0.0);
        assert_eq!(c.f1, 0.0);
        assert_eq!(c.specificity, 1.0);
        assert!(close(m.balanced_accuracy, (1.0 + 1.0 + 0.0) / 3.0));
    }

    #[test]
    fn class_absent_from_truth() {
        // Class 2 never occurs in the truth but is predicted once.
        let labels = [0, 0, 1, 1];
        let preds = [0, 2, 1, 1];
        let m = Metrics::compute(&labels, &onehot(&preds, 3), &["a", "b", "c"]).unwrap();
        assert_eq!(m.classes_present, 2);
        // Mean over present classes only: (1/2 + 1) / 2.
        assert!(close(m.balanced_accuracy, 0.75));
        let c = &m.per_class[2];
        assert_eq!((c.support, c.predicted, c.fp), (0, 1, 1));
        assert_eq!(c.sensitivity, 0.0);
        assert_eq!(c.auc, None);
        // Macro AUC averages the two defined classes only.
        let defined: Vec<f64> = m.per_class.iter().filter_map(|c| c.auc).collect();
        assert_eq!(defined.len(), 2);
        assert!(close(m.macro_auc.unwrap(), (defined[0] + defined[1]) / 2.0));
        assert!(m.render_table().contains("2/3 classes present"));
    }

    #[test]
    fn single_class_truth_has_no_auc() {
        let m = Metrics::compute(&[0, 0], &[0.9, 0.1, 0.2, 0.8], &["a", "b"]).unwrap();
        assert_eq!(m.macro_auc, None);
        assert!(close(m.balanced_accuracy, 0.5));
        assert!(m.to_json().contains("\"macro_auc\": null"));
        assert!(m.render_table().contains("macro AUC          -"));
    }

    #[test]
    fn ties_in_probabilities_use_lowest_index() {
        let m = Metrics::compute(&[1, 0], &[0.5, 0.5, 0.5, 0.5], &["a", "b"]).unwrap();
        assert_eq!(m.confusion, vec![vec![1, 0], vec![1, 0]]);
    }

    #[test]
    fn rows_and_flat_agree_and_errors() {
        let labels = [0, 1, 1];
        let rows = vec![vec![0.6, 0.4], vec![0.3, 0.7], vec![0.8, 0.2]];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let a = Metrics::compute_rows(&labels, &rows, &["a", "b"]).unwrap();
        let b = Metrics::compute(&labels, &flat, &["a", "b"]).unwrap();
        assert_eq!(a, b);

        let names = ["a", "b"];
        assert_eq!(Metrics::compute(&[], &[], &names), Err(MetricsError::Empty));
        let no: [&str; 0] = [];
        assert_eq!(
            Metrics::compute(&[0], &[], &no),
            Err(MetricsError::NoClasses)
        );
        assert!(matches!(
            Metrics::compute(&[0], &[0.1], &names),
            Err(MetricsError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            Metrics::compute(&[2], &[0.1, 0.9], &names),
            Err(MetricsError::LabelOutOfRange { label: 2, .. })
        ));
        assert!(matches!(
            Metrics::compute(&[0], &[f32::NAN, 0.9], &names),
            Err(MetricsError::NonFiniteScore {
                sample: 0,
                class: 0,
                ..
            })
        ));
        assert!(Metrics::compute_rows(&[0], &[vec![1.0]], &names).is_err());
    }

    #[test]
    fn json_round_trip_and_table() {
        let labels = [0, 1, 2, 1];
        let probs = [0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.2, 0.2, 0.6, 0.5, 0.4, 0.1];
        let m = Metrics::compute(&labels, &probs, &["MEL", "NV", "BCC"]).unwrap();
        let back: Metrics = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(back, m);
        let table = m.render_table();
        assert!(table.starts_with("class"));
        assert!(table.contains("balanced accuracy"));
        assert_eq!(table.lines().filter(|l| l.starts_with("NV ")).count(), 1);
        let conf = m.render_confusion();
        assert_eq!(conf.lines().count(), 4);
        assert!(conf.lines().nth(2).unwrap().starts_with("NV"));
        assert_eq!(m.recalls().len(), 3);
    }
}
