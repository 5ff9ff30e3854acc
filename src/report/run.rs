//! A run's `report.md`: settings, final metrics, per-class table, time and cost.

use std::path::Path;

use crate::metrics::Metrics;

/// What a run's report shows (filled in by the trainer from its state).
#[derive(Clone, Debug)]
pub struct RunReport<'a> {
    /// Architecture name.
    pub arch: &'a str,
    /// Data root.
    pub data: &'a Path,
    /// Input width.
    pub width: usize,
    /// Input height.
    pub height: usize,
    /// Number of classes.
    pub classes: usize,
    /// Epochs run.
    pub epochs_done: usize,
    /// Epochs planned.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Optimizer name.
    pub optimizer: String,
    /// Peak learning rate.
    pub lr: f64,
    /// Schedule name.
    pub schedule: String,
    /// Seed.
    pub seed: u64,
    /// Trainable parameters.
    pub params: usize,
    /// Multiply-adds per image.
    pub madds: u64,
    /// Loss name.
    pub loss: String,
    /// Configured logit-adjustment strength.
    pub tau: f64,
    /// EMA decay, if any.
    pub ema: Option<f64>,
    /// Shades-of-Gray exponent, if any.
    pub shades_of_gray: Option<f32>,
    /// Batch mixing (mixup, CutMix) in words, or `off`.
    pub mixing: String,
    /// Strength of the stored decision rule.
    pub rule_tau: f64,
    /// Prior of the stored decision rule.
    pub prior: &'a [f64],
    /// Training time in seconds.
    pub seconds: f64,
    /// Best epoch.
    pub best_epoch: usize,
    /// Validation metrics of the best checkpoint (none for a final fit).
    pub metrics: Option<&'a Metrics>,
    /// Calibration and melanoma operating points on the same images.
    pub calibration: Option<&'a crate::calibration::CalibrationReport>,
}

fn format_prior(prior: &[f64]) -> String {
    let parts: Vec<String> = prior.iter().map(|p| format!("{p:.3}")).collect();
    format!("[{}]", parts.join(", "))
}

/// Renders `report.md`.
pub fn render(r: &RunReport) -> String {
    let mut text = format!("# dermclass run: {}\n\n", r.arch);
    text += &format!(
        "- data: `{}`; input {}x{} (width x height); {} classes\n",
        r.data.display(),
        r.width,
        r.height,
        r.classes
    );
    text += &format!(
        "- {} epochs run of {}, batch {}, {} lr {} ({} schedule), seed {}\n",
        r.epochs_done, r.epochs, r.batch, r.optimizer, r.lr, r.schedule, r.seed
    );
    text += &format!(
        "- trainable parameters {} ({:.2}M), multiply-adds {:.1}M per image\n",
        r.params,
        r.params as f64 / 1e6,
        r.madds as f64 / 1e6
    );
    text += &format!(
        "- loss {}, tau {}, EMA {}, Shades-of-Gray {}, batch mixing {}; decision rule: tau {} x log(prior {})\n",
        r.loss,
        r.tau,
        r.ema.map_or("off".into(), |d| d.to_string()),
        r.shades_of_gray
            .map_or("off".into(), |p| format!("p = {p}")),
        r.mixing,
        r.rule_tau,
        format_prior(r.prior)
    );
    text += &format!(
        "- training time {} ({:.0} s)\n\n",
        super::markdown::format_duration_hms(r.seconds),
        r.seconds
    );
    let Some(m) = r.metrics else {
        text += &format!(
            "## Final fit on every image\n\nNo validation split: the model is the last \
             epoch's ({}).\n\n![curves](curves.png)\n",
            r.epochs_done
        );
        return text;
    };
    text += &format!(
        "## Best epoch {} on the validation split ({} images)\n\n",
        r.best_epoch, m.n_samples
    );
    text += &format!(
        "- balanced multiclass accuracy (ISIC 2018 metric): **{:.4}**\n- accuracy: {:.4}\n- macro AUC: {}\n- macro F1: {:.4}\n\n",
        m.balanced_accuracy,
        m.accuracy,
        m.macro_auc.map_or("n/a".into(), |v| format!("{v:.4}")),
        m.macro_f1
    );
    let headers = [
        "class",
        "support",
        "sensitivity",
        "specificity",
        "precision",
        "F1",
        "AUC",
    ];
    let rows: Vec<Vec<String>> = m
        .per_class
        .iter()
        .map(|pc| {
            vec![
                pc.name.clone(),
                pc.support.to_string(),
                format!("{:.4}", pc.sensitivity),
                format!("{:.4}", pc.specificity),
                format!("{:.4}", pc.precision),
                format!("{:.4}", pc.f1),
                pc.auc.map_or("n/a".into(), |v| format!("{v:.4}")),
            ]
        })
        .collect();
    text += &super::markdown::markdown_table(&headers, &rows);
    if let Some(c) = r.calibration {
        text += "\nCalibration (as stored, one view per image):\n\n";
        for line in c.render().lines() {
            text += &format!(
                "- {}\n",
                line.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    }
    text += "\n![curves](curves.png)\n\n![confusion](confusion.png)\n";
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(metrics: Option<&Metrics>) -> String {
        let calibration = crate::calibration::CalibrationReport::compute(
            &[0, 1, 1],
            &[0.9, 0.1, 0.2, 0.8, 0.6, 0.4],
            &["MEL", "B"],
        );
        render(&RunReport {
            arch: "tiny_cnn:1.0",
            data: Path::new("/data"),
            width: 64,
            height: 48,
            classes: 2,
            epochs_done: 3,
            epochs: 4,
            batch: 8,
            optimizer: "Adamw".into(),
            lr: 0.002,
            schedule: "Onecycle".into(),
            seed: 1,
            params: 1_500_000,
            madds: 25_000_000,
            loss: "Ce".into(),
            tau: 1.0,
            ema: Some(0.999),
            shades_of_gray: None,
            mixing: "mixup 0.2 / CutMix 1 (a batch mixed with probability 1)".into(),
            rule_tau: 1.0,
            prior: &[0.75, 0.25],
            seconds: 3725.0,
            best_epoch: 2,
            metrics,
            calibration: metrics.map(|_| &calibration),
        })
    }

    #[test]
    fn the_report_states_settings_metrics_and_time() {
        let metrics =
            Metrics::compute(&[0, 1, 1], &[0.9, 0.1, 0.2, 0.8, 0.6, 0.4], &["A", "B"]).unwrap();
        let text = report(Some(&metrics));
        assert!(text.starts_with("# dermclass run: tiny_cnn:1.0"), "{text}");
        assert!(text.contains("input 64x48"), "{text}");
        assert!(text.contains("3 epochs run of 4, batch 8, Adamw lr 0.002 (Onecycle schedule)"));
        assert!(text.contains("1.50M"), "{text}");
        assert!(text.contains("prior [0.750, 0.250]"), "{text}");
        assert!(
            text.contains("EMA 0.999, Shades-of-Gray off, batch mixing mixup 0.2"),
            "{text}"
        );
        assert!(
            text.contains("Best epoch 2 on the validation split (3 images)"),
            "{text}"
        );
        // Recalls 1 and 1/2: balanced accuracy 0.75.
        assert!(text.contains("**0.7500**"), "{text}");
        assert!(text.contains("| A "), "{text}");
        assert!(text.contains("1:02:05"), "{text}");
        assert!(text.contains("- calibration ECE"), "{text}");
        assert!(
            text.contains("- melanoma sensitivity 1.0000 at specificity >= 80%"),
            "{text}"
        );
    }

    #[test]
    fn a_final_fit_says_there_is_no_validation() {
        let text = report(None);
        assert!(text.contains("Final fit on every image"), "{text}");
        assert!(!text.contains("confusion.png"), "{text}");
    }
}
