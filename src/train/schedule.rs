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
}
