//! The residual add followed by a ReLU (ResNet's bottleneck, ShuffleNet v1's stride-1 unit)
//! as one pass each way. burn runs the add, the ReLU and the ReLU's backward as separate
//! passes over the whole tensor.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::cpu::output_buffer;

/// Values one rayon task handles.
const TASK: usize = 32 * 1024;

/// `out[i] = f(a[i], b[i])` over equal-length slices, in parallel.
fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "residual: operand lengths");
    let mut out = output_buffer(a.len());
    out.spare_capacity_mut()[..a.len()]
        .par_chunks_mut(TASK)
        .zip(a.par_chunks(TASK).zip(b.par_chunks(TASK)))
        .for_each(|(out, (a, b))| {
            for (o, (&a, &b)) in out.iter_mut().zip(a.iter().zip(b)) {
                *o = MaybeUninit::new(f(a, b));
            }
        });
    // SAFETY: the chunks cover the first `a.len()` values and each loop writes its chunk.
    unsafe { out.set_len(a.len()) };
    out
}

/// `max(a + b, 0)`.
pub fn add_relu(a: &[f32], b: &[f32]) -> Vec<f32> {
    zip_map(a, b, |a, b| {
        let z = a + b;
        if z > 0.0 { z } else { 0.0 }
    })
}

/// Gradient of [`add_relu`] with respect to either operand, from its output `z` and the
/// output's gradient `dz`: `dz` where `z > 0`, else 0 (the ReLU's gradient at 0 is 0, as in
/// burn and PyTorch).
pub fn add_relu_backward(z: &[f32], dz: &[f32]) -> Vec<f32> {
    zip_map(z, dz, |z, dz| if z > 0.0 { dz } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::random;

    #[test]
    fn add_relu_and_its_gradient_match_their_definitions() {
        let len = 3 * TASK + 17;
        let (a, b, dz) = (random(len, 1), random(len, 2), random(len, 3));
        let z = add_relu(&a, &b);
        let dx = add_relu_backward(&z, &dz);
        for i in 0..len {
            let sum = a[i] + b[i];
            assert_eq!(z[i], sum.max(0.0), "value {i}");
            assert_eq!(dx[i], if sum > 0.0 { dz[i] } else { 0.0 }, "gradient {i}");
        }
        assert!(z.contains(&0.0) && z.iter().any(|&v| v > 0.0));
    }
}
