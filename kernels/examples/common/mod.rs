//! Timing shared by the kernel benchmarks.

use std::time::Instant;

/// Median of `reps` timed runs of `f` in milliseconds, after `warm` untimed runs.
pub fn median_ms(warm: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warm {
        f();
    }
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}
