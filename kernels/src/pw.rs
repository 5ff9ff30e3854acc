//! Pointwise (1x1, stride 1, no padding) convolution with channel groups, as GEMMs.
//!
//! Per image `b` and group `g`, with `K = c_in/groups`, `M = c_out/groups` and `P = h*w`:
//! - forward: `Y[b,g] (M x P) = W[g] (M x K) · X[b,g] (K x P)`;
//! - input gradient: `dX[b,g] (K x P) = W[g]ᵀ · dY[b,g]`, reading `W` transposed in place;
//! - weight gradient: `dW[g] (M x K) = Σ_b dY[b,g] · X[b,g]ᵀ`, a real GEMM with depth `P`.
//!
//! Every matrix is read where it lies (NCHW rows of `P` pixels), so nothing is copied or
//! transposed. Work is spread over images (and groups) on rayon's pool; when there are fewer
//! of those than threads (batch-1 inference) the GEMM itself runs in parallel.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::cpu::{SendPtr, check_groups, output_buffer};
use crate::gemm::{matmul, sum_over_images};

/// Shape of a grouped pointwise convolution over NCHW data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PwShape {
    /// Images in the batch.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Pixels per channel plane (`h * w`).
    pub hw: usize,
    /// Channel groups; `c_in` and `c_out` are multiples of it.
    pub groups: usize,
}

impl PwShape {
    fn k(&self) -> usize {
        self.c_in / self.groups
    }

    fn m(&self) -> usize {
        self.c_out / self.groups
    }

    fn check(&self, x_len: usize, w_len: usize, y_len: usize) {
        check_groups("pointwise", self.c_in, self.c_out, self.groups);
        assert_eq!(
            x_len,
            self.n * self.c_in * self.hw,
            "pointwise: input length"
        );
        assert_eq!(w_len, self.c_out * self.k(), "pointwise: weight length");
        assert_eq!(
            y_len,
            self.n * self.c_out * self.hw,
            "pointwise: output length"
        );
    }
}

/// Runs `task(i, parallelism)` for `i in 0..tasks`: in parallel over tasks when there are
/// at least as many as threads, otherwise one after another with a parallel GEMM inside.
fn for_each_task(tasks: usize, task: impl Fn(usize, Parallelism) + Sync) {
    let threads = rayon::current_num_threads();
    if threads > 1 && tasks >= threads {
        (0..tasks)
            .into_par_iter()
            .for_each(|i| task(i, Parallelism::None));
    } else {
        let parallelism = if threads > 1 {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        (0..tasks).for_each(|i| task(i, parallelism));
    }
}

/// Forward: `x` [n, c_in, hw], `weight` [c_out, c_in/groups] → y [n, c_out, hw].
pub fn forward(x: &[f32], weight: &[f32], s: PwShape) -> Vec<f32> {
    s.check(x.len(), weight.len(), s.n * s.c_out * s.hw);
    per_group_gemm(s, weight, false, x)
}

/// Input gradient: `dy` [n, c_out, hw], `weight` [c_out, c_in/groups] → dx [n, c_in, hw].
pub fn backward_input(dy: &[f32], weight: &[f32], s: PwShape) -> Vec<f32> {
    s.check(s.n * s.c_in * s.hw, weight.len(), dy.len());
    per_group_gemm(s, weight, true, dy)
}

/// One GEMM per (image, group) block: `out[b, g] = W[g] · src[b, g]`, or `W[g]ᵀ · src[b, g]`
/// when `transpose` (from output channels back to input channels). Lengths are checked by
/// the caller.
fn per_group_gemm(s: PwShape, weight: &[f32], transpose: bool, src: &[f32]) -> Vec<f32> {
    let (k, m, p) = (s.k(), s.m(), s.hw);
    // (rows of a block, inner size, channels of an image of out, of src, W's strides)
    let (rows, inner, out_c, src_c, w_strides) = if transpose {
        (k, m, s.c_in, s.c_out, (1, k))
    } else {
        (m, k, s.c_out, s.c_in, (k, 1))
    };
    let len = s.n * out_c * p;
    let mut out = output_buffer(len);
    let dst = SendPtr(out.as_mut_ptr());
    for_each_task(s.n * s.groups, |task, par| {
        let (b, g) = (task / s.groups, task % s.groups);
        // SAFETY: block (b, g) of out is rows [b*out_c + g*rows, +rows) of length p; the src
        // block and W[g] (m x k at g*m*k) are in bounds by the caller's shape check.
        unsafe {
            matmul(
                (rows, p, inner),
                dst.at((b * out_c + g * rows) * p),
                p,
                false,
                weight.as_ptr().add(g * m * k),
                w_strides,
                src.as_ptr().add((b * src_c + g * inner) * p),
                (p, 1),
                par,
            );
        }
    });
    // SAFETY: the GEMMs above wrote all n * groups blocks, which tile the whole output.
    unsafe { out.set_len(len) };
    out
}

/// Weight gradient: `dy` [n, c_out, hw], `x` [n, c_in, hw] → d_weight [c_out, c_in/groups].
pub fn backward_weight(dy: &[f32], x: &[f32], s: PwShape) -> Vec<f32> {
    let (k, m, p) = (s.k(), s.m(), s.hw);
    let w_len = s.c_out * k;
    s.check(x.len(), w_len, dy.len());
    // Adds the products of images `images` into `acc` (one [c_out, k] block per group).
    let accumulate = |acc: &mut [f32], images: std::ops::Range<usize>, par: Parallelism| {
        for b in images {
            for g in 0..s.groups {
                // SAFETY: X[b,g]ᵀ is read with row stride 1 and column stride p in bounds.
                unsafe {
                    matmul(
                        (m, k, p),
                        acc.as_mut_ptr().add(g * m * k),
                        k,
                        true,
                        dy.as_ptr().add((b * s.c_out + g * m) * p),
                        (p, 1),
                        x.as_ptr().add((b * s.c_in + g * k) * p),
                        (1, p),
                        par,
                    );
                }
            }
        }
    };
    sum_over_images(s.n, w_len, accumulate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::random;

    /// Naive f64 forward: y[b, o, p] = Σ_i w[o, i] x[b, g*k + i, p] with g = o / m.
    fn reference_forward(x: &[f32], w: &[f32], s: PwShape) -> Vec<f64> {
        let (k, m, p) = (s.k(), s.m(), s.hw);
        let mut y = vec![0.0f64; s.n * s.c_out * p];
        for b in 0..s.n {
            for o in 0..s.c_out {
                let g = o / m;
                for i in 0..k {
                    let wv = w[o * k + i] as f64;
                    for q in 0..p {
                        y[(b * s.c_out + o) * p + q] +=
                            wv * x[(b * s.c_in + g * k + i) * p + q] as f64;
                    }
                }
            }
        }
        y
    }

    /// Checks `|got - want| <= tol * (1 + max|want|)` elementwise, naming what differs.
    fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = 1.0 + want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= tol * scale,
                "{what}[{i}]: {g} vs {w} (tolerance {})",
                tol * scale
            );
        }
    }

    const SHAPES: [PwShape; 6] = [
        PwShape {
            n: 1,
            c_in: 3,
            c_out: 5,
            hw: 7,
            groups: 1,
        },
        PwShape {
            n: 3,
            c_in: 16,
            c_out: 24,
            hw: 49,
            groups: 1,
        },
        PwShape {
            n: 2,
            c_in: 12,
            c_out: 6,
            hw: 13,
            groups: 3,
        },
        PwShape {
            n: 4,
            c_in: 24,
            c_out: 48,
            hw: 1,
            groups: 8,
        },
        PwShape {
            n: 1,
            c_in: 40,
            c_out: 8,
            hw: 200,
            groups: 2,
        },
        PwShape {
            n: 5,
            c_in: 17,
            c_out: 33,
            hw: 31,
            groups: 1,
        },
    ];

    // f32 sums of up to a few thousand terms of size <= 1: 1e-5 relative is ~100 ulps of
    // headroom, while any indexing mistake is off by O(1).
    const TOL: f64 = 1e-5;

    #[test]
    fn forward_matches_naive_convolution() {
        for (i, s) in SHAPES.into_iter().enumerate() {
            let x = random(s.n * s.c_in * s.hw, i as u64);
            let w = random(s.c_out * s.k(), 100 + i as u64);
            assert_close(&forward(&x, &w, s), &reference_forward(&x, &w, s), TOL, "y");
        }
    }

    #[test]
    fn gradients_match_the_adjoint_of_the_forward() {
        for (i, s) in SHAPES.into_iter().enumerate() {
            let x = random(s.n * s.c_in * s.hw, i as u64);
            let w = random(s.c_out * s.k(), 100 + i as u64);
            let dy = random(s.n * s.c_out * s.hw, 200 + i as u64);
            let (k, m, p) = (s.k(), s.m(), s.hw);
            // Naive: dx[b, g*k+i, q] = Σ_o∈g w[o,i] dy[b,o,q]; dw[o,i] = Σ_b,q dy[b,o,q] x[b,g*k+i,q].
            let mut dx = vec![0.0f64; x.len()];
            let mut dw = vec![0.0f64; w.len()];
            for b in 0..s.n {
                for o in 0..s.c_out {
                    let g = o / m;
                    for ci in 0..k {
                        let xc = (b * s.c_in + g * k + ci) * p;
                        let yc = (b * s.c_out + o) * p;
                        for q in 0..p {
                            dx[xc + q] += w[o * k + ci] as f64 * dy[yc + q] as f64;
                            dw[o * k + ci] += dy[yc + q] as f64 * x[xc + q] as f64;
                        }
                    }
                }
            }
            assert_close(&backward_input(&dy, &w, s), &dx, TOL, "dx");
            assert_close(&backward_weight(&dy, &x, s), &dw, TOL, "dw");
        }
    }

    #[test]
    fn single_threaded_and_parallel_paths_agree() {
        let s = PwShape {
            n: 3,
            c_in: 8,
            c_out: 12,
            hw: 50,
            groups: 2,
        };
        let x = random(s.n * s.c_in * s.hw, 7);
        let w = random(s.c_out * s.k(), 8);
        let dy = random(s.n * s.c_out * s.hw, 9);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let (y1, dx1, dw1) = pool.install(|| {
            (
                forward(&x, &w, s),
                backward_input(&dy, &w, s),
                backward_weight(&dy, &x, s),
            )
        });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let (y4, dx4, dw4) = pool.install(|| {
            (
                forward(&x, &w, s),
                backward_input(&dy, &w, s),
                backward_weight(&dy, &x, s),
            )
        });
        assert_eq!(y1, y4);
        assert_eq!(dx1, dx4);
        let dw1: Vec<f64> = dw1.iter().map(|v| *v as f64).collect();
        assert_close(&dw4, &dw1, 1e-6, "dw (1 vs 4 threads)");
    }

    /// The weight gradient's two parallel strategies, each forced by the pool size whatever
    /// the machine: with at least as many images as threads, per-thread partial sums over
    /// uneven runs of images (5 images on 2 threads: 3 + 2); with fewer, parallel GEMMs.
    #[test]
    fn both_weight_gradient_reductions_agree_with_the_sequential_sum() {
        let s = PwShape {
            n: 5,
            c_in: 6,
            c_out: 9,
            hw: 40,
            groups: 3,
        };
        let x = random(s.n * s.c_in * s.hw, 11);
        let dy = random(s.n * s.c_out * s.hw, 12);
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| backward_weight(&dy, &x, s))
        };
        let sequential: Vec<f64> = on(1).iter().map(|v| *v as f64).collect();
        assert_close(&on(2), &sequential, 1e-6, "dw, per-thread partial sums");
        assert_close(&on(8), &sequential, 1e-6, "dw, parallel GEMMs");
    }

    #[test]
    #[should_panic(expected = "do not split")]
    fn uneven_groups_are_rejected() {
        let s = PwShape {
            n: 1,
            c_in: 4,
            c_out: 6,
            hw: 1,
            groups: 4,
        };
        forward(&[0.0; 4], &[0.0; 6], s);
    }
}
