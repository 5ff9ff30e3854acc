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

/// `len` values in [-0.5, 0.5) from an xorshift stream seeded by `seed`.
#[allow(dead_code)] // not every benchmark that includes this module draws inputs with it
pub fn random(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}
