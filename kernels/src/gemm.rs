//! The GEMM call and the per-thread reduction over images shared by the convolution kernels
//! that are matrix products (`pw`, `dense`).

use std::ops::Range;

use gemm::Parallelism;
use rayon::prelude::*;

/// One `dst (m x n) = [dst +] lhs (m x k) · rhs (k x n)` call with element strides
/// `(row, column)` for each operand; `dst` is row-major with row stride `dst_rs`.
///
/// # Safety
/// Every strided access (`m x n` of `dst`, `m x k` of `lhs`, `k x n` of `rhs`) must stay
/// inside its buffer, and `dst` must not overlap the inputs.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
    parallelism: Parallelism,
) {
    // SAFETY: the caller guarantees every strided access stays inside its buffer.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Sums `len`-element contributions of `n` images (weight gradients): with at least as many
/// images as threads, each thread adds a contiguous run of images into its own zeroed
/// buffer (`accumulate(acc, images, Parallelism::None)`) and the buffers are summed;
/// otherwise one buffer takes all images with the GEMMs themselves in parallel.
pub(crate) fn sum_over_images(
    n: usize,
    len: usize,
    accumulate: impl Fn(&mut [f32], Range<usize>, Parallelism) + Sync,
) -> Vec<f32> {
    let threads = rayon::current_num_threads();
    if threads > 1 && n >= threads {
        let per = n.div_ceil(threads);
        let partials: Vec<Vec<f32>> = (0..n.div_ceil(per))
            .into_par_iter()
            .map(|run| {
                let mut acc = vec![0.0f32; len];
                accumulate(
                    &mut acc,
                    run * per..((run + 1) * per).min(n),
                    Parallelism::None,
                );
                acc
            })
            .collect();
        let mut parts = partials.into_iter();
        let mut total = parts.next().unwrap_or_else(|| vec![0.0; len]);
        for part in parts {
            total.iter_mut().zip(&part).for_each(|(t, v)| *t += v);
        }
        total
    } else {
        sum_in_one_buffer(n, len, accumulate)
    }
}

/// Sums `len`-element contributions of `n` images in one buffer, the GEMMs themselves in
/// parallel (`accumulate(acc, 0..n, parallelism)`): for few images, or a buffer too large
/// to keep one per thread.
pub(crate) fn sum_in_one_buffer(
    n: usize,
    len: usize,
    accumulate: impl Fn(&mut [f32], Range<usize>, Parallelism),
) -> Vec<f32> {
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let mut acc = vec![0.0f32; len];
    accumulate(&mut acc, 0..n, parallelism);
    acc
}

/// Seeded uniform values in [-1, 1) for the kernels' tests.
#[cfg(test)]
pub(crate) fn random(len: usize, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}
