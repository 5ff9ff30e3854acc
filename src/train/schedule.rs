//! Learning-rate schedules with linear warm-up, evaluated per optimisation step.

use super::config::ScheduleKind;

/// A learning-rate schedule over a fixed number of steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    /// Peak learning rate (reached at the end of warm-up).
    pub peak: f64,
    /// Shape after warm-up.
    pub kind: ScheduleKind,
    /// Warm-up steps (linear from `peak / warmup` to `peak`).
    pub warmup_steps: usize,
    /// Total steps of the run.
    pub total_steps: usize,
    /// Step schedule: steps between decays.
    pub step_every: usize,
    /// Step schedule: decay factor.
    pub step_gamma: f64,
}

impl LrSchedule {
    /// Learning rate for 0-based optimisation step `step`.
    pub fn lr(&self, step: usize) -> f64 {
        if self.kind == ScheduleKind::Onecycle {
            return self.one_cycle(step);
        }
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let after = step - self.warmup_steps;
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        match self.kind {
            ScheduleKind::Constant => self.peak,
            ScheduleKind::Cosine => {
                let progress = (after as f64 / span as f64).min(1.0);
                0.5 * self.peak * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            ScheduleKind::Step => {
                let decays = after / self.step_every.max(1);
                self.peak * self.step_gamma.powi(decays as i32)
            }
            ScheduleKind::Onecycle => unreachable!("handled above"),
        }
    }

    /// One-cycle with PyTorch `OneCycleLR`'s defaults: from `peak / 25` up to `peak` over the
    /// warm-up (30% of the run when no warm-up is set), then down to `peak / 25e4`, both
    /// along half a cosine.
    fn one_cycle(&self, step: usize) -> f64 {
        const DIV: f64 = 25.0;
        const FINAL_DIV: f64 = 1e4;
        let total = self.total_steps.max(1);
        let rise = if self.warmup_steps > 0 {
            self.warmup_steps.min(total)
        } else {
            ((0.3 * total as f64).round() as usize).max(1)
        };
        let start = self.peak / DIV;
        let end = start / FINAL_DIV;
        let cosine = |from: f64, to: f64, progress: f64| {
            to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
        };
        if step < rise {
            cosine(start, self.peak, step as f64 / rise as f64)
        } else {
            let span = (total - rise).max(1);
            cosine(self.peak, end, (step - rise) as f64 / span as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind) -> LrSchedule {
        LrSchedule {
            peak: 0.1,
            kind,
            warmup_steps: 10,
            total_steps: 110,
            step_every: 30,
            step_gamma: 0.5,
        }
    }

    #[test]
    fn warmup_rises_linearly_to_the_peak() {
        let s = schedule(ScheduleKind::Constant);
        assert!((s.lr(0) - 0.01).abs() < 1e-12);
        assert!((s.lr(4) - 0.05).abs() < 1e-12);
        assert!((s.lr(9) - 0.1).abs() < 1e-12);
        assert_eq!(s.lr(100), 0.1);
    }

    #[test]
    fn cosine_halves_midway_and_ends_near_zero() {
        let s = schedule(ScheduleKind::Cosine);
        assert!((s.lr(10) - 0.1).abs() < 1e-12);
        assert!((s.lr(60) - 0.05).abs() < 1e-12);
        assert!(s.lr(109) < 1e-4);
    }

    #[test]
    fn step_decays_every_period() {
        let s = schedule(ScheduleKind::Step);
        assert_eq!(s.lr(39), 0.1);
        assert_eq!(s.lr(40), 0.05);
        assert_eq!(s.lr(70), 0.025);
    }

    #[test]
    fn one_cycle_rises_to_the_peak_at_30_percent_then_falls_to_peak_over_25e4() {
        let s = LrSchedule {
            warmup_steps: 0,
            total_steps: 1000,
            ..schedule(ScheduleKind::Onecycle)
        };
        assert!((s.lr(0) - 0.1 / 25.0).abs() < 1e-12);
        assert!(
            (s.lr(150) - (0.004 + 0.096 * 0.5)).abs() < 1e-9,
            "{}",
            s.lr(150)
        );
        assert!((s.lr(300) - 0.1).abs() < 1e-12);
        assert!((s.lr(650) - (0.1 + 0.1 / 25e4) / 2.0).abs() < 1e-9);
        assert!(s.lr(999) < 1e-5);
        let rising = (0..300).all(|i| s.lr(i + 1) > s.lr(i));
        let falling = (300..999).all(|i| s.lr(i + 1) < s.lr(i));
        assert!(rising && falling);
        // A set warm-up moves the peak.
        let early = LrSchedule {
            warmup_steps: 100,
            ..s
        };
        assert!((early.lr(100) - 0.1).abs() < 1e-12);
    }
}
