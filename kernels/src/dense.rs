//! Dense 3x3 convolution with padding 1 and stride 1 or 2 for few input channels (the stem
//! of every mobile network): forward and weight gradient through per-image im2col + GEMM.
//!
//! Per image, `col` is the `[c_in*9, ho*wo]` matrix of input taps (zero outside the image),
//! so `Y = W · col` and `dW = Σ_b dY_b · col_bᵀ`. With 3 input channels `col` is 27 rows: a
//! few MB per image, rebuilt in the backward pass instead of kept.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::gemm::{matmul, sum_over_images};

/// Shape of a dense 3x3, padding-1 convolution over NCHW data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseShape {
    /// Images.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Stride, 1 or 2.
    pub stride: usize,
}

impl DenseShape {
    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h - 1) / self.stride + 1,
            (self.w - 1) / self.stride + 1,
        )
    }

    fn check(&self, x_len: usize, w_len: usize) {
        assert!(
            self.stride == 1 || self.stride == 2,
            "dense 3x3: stride {} (1 or 2 supported)",
            self.stride
        );
        assert_eq!(
            x_len,
            self.n * self.c_in * self.h * self.w,
            "dense 3x3: input length"
        );
        assert_eq!(
            w_len,
            self.c_out * self.c_in * 9,
            "dense 3x3: weight length"
        );
    }
}

/// Fills `col` ([c_in*9, ho*wo]) with the taps of one image `x` ([c_in, h, w]).
fn im2col(x: &[f32], s: DenseShape, col: &mut [f32]) {
    let (ho, wo) = s.out_hw();
    for ci in 0..s.c_in {
        let plane = &x[ci * s.h * s.w..(ci + 1) * s.h * s.w];
        for kh in 0..3 {
            for kw in 0..3 {
                let row = &mut col[((ci * 9) + kh * 3 + kw) * ho * wo..][..ho * wo];
                for oh in 0..ho {
                    let out = &mut row[oh * wo..(oh + 1) * wo];
                    let ih = (oh * s.stride + kh) as isize - 1;
                    if ih < 0 || ih >= s.h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[ih as usize * s.w..(ih as usize + 1) * s.w];
                    for (ow, o) in out.iter_mut().enumerate() {
                        let iw = (ow * s.stride + kw) as isize - 1;
                        *o = if iw < 0 || iw >= s.w as isize {
                            0.0
                        } else {
                            src[iw as usize]
                        };
                    }
                }
            }
        }
    }
}

/// `dst (m x n) [+]= lhs (m x k) · rhs` for row-major slices, where `rhs` is `k x n`
/// (`rhs_transposed` false) or the transpose of an `n x k` matrix (true).
fn matmul_rows(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    (lhs, rhs): (&[f32], &[f32]),
    rhs_transposed: bool,
    parallelism: Parallelism,
) {
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= k * n);
    let rhs_strides = if rhs_transposed { (1, k) } else { (n, 1) };
    // SAFETY: the lengths were checked above for these row-major strides, and `dst` is a
    // distinct mutable slice.
    unsafe {
        matmul(
            (m, n, k),
            dst.as_mut_ptr(),
            n,
            accumulate,
            lhs.as_ptr(),
            (k, 1),
            rhs.as_ptr(),
            rhs_strides,
            parallelism,
        );
    }
}

/// Forward: `x` [n, c_in, h, w], `weight` [c_out, c_in, 3, 3] → y [n, c_out, ho, wo].
pub fn forward(x: &[f32], weight: &[f32], s: DenseShape) -> Vec<f32> {
    s.check(x.len(), weight.len());
    let (ho, wo) = s.out_hw();
    let (plane_in, plane_out) = (s.c_in * s.h * s.w, s.c_out * ho * wo);
    let mut y = vec![0.0f32; s.n * plane_out];
    y.par_chunks_mut(plane_out)
        .zip(x.par_chunks(plane_in))
        .for_each_init(
            || vec![0.0f32; s.c_in * 9 * ho * wo],
            |col, (y, x)| {
                im2col(x, s, col);
                let shape = (s.c_out, ho * wo, s.c_in * 9);
                matmul_rows(shape, y, false, (weight, col), false, Parallelism::None);
            },
        );
    y
}

/// Weight gradient: `dy` [n, c_out, ho, wo], `x` [n, c_in, h, w] → d_weight [c_out, c_in, 3, 3].
pub fn backward_weight(dy: &[f32], x: &[f32], s: DenseShape) -> Vec<f32> {
    let w_len = s.c_out * s.c_in * 9;
    s.check(x.len(), w_len);
    let (ho, wo) = s.out_hw();
    let (plane_in, plane_out) = (s.c_in * s.h * s.w, s.c_out * ho * wo);
    assert_eq!(
        dy.len(),
        s.n * plane_out,
        "dense 3x3: output gradient length"
    );
    sum_over_images(s.n, w_len, |acc, images, parallelism| {
        let mut col = vec![0.0f32; s.c_in * 9 * ho * wo];
        for b in images {
            im2col(&x[b * plane_in..(b + 1) * plane_in], s, &mut col);
            let dy_b = &dy[b * plane_out..(b + 1) * plane_out];
            let shape = (s.c_out, s.c_in * 9, ho * wo);
            matmul_rows(shape, acc, true, (dy_b, &col), true, parallelism);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::random;

    /// The input tap of output (oh, ow) at kernel (kh, kw), or None outside the image.
    fn tap(s: DenseShape, oh: usize, ow: usize, kh: usize, kw: usize) -> Option<usize> {
        let ih = (oh * s.stride + kh) as isize - 1;
        let iw = (ow * s.stride + kw) as isize - 1;
        (ih >= 0 && iw >= 0 && (ih as usize) < s.h && (iw as usize) < s.w)
            .then(|| ih as usize * s.w + iw as usize)
    }

    #[test]
    fn forward_and_weight_gradient_match_naive_loops() {
        let shapes = [
            DenseShape {
                n: 1,
                c_in: 3,
                c_out: 4,
                h: 7,
                w: 7,
                stride: 2,
            },
            DenseShape {
                n: 3,
                c_in: 3,
                c_out: 8,
                h: 13,
                w: 10,
                stride: 2,
            },
            DenseShape {
                n: 2,
                c_in: 1,
                c_out: 5,
                h: 1,
                w: 2,
                stride: 1,
            },
            DenseShape {
                n: 5,
                c_in: 4,
                c_out: 3,
                h: 16,
                w: 15,
                stride: 1,
            },
        ];
        for (i, s) in shapes.into_iter().enumerate() {
            let (ho, wo) = s.out_hw();
            let x = random(s.n * s.c_in * s.h * s.w, i as u64);
            let w = random(s.c_out * s.c_in * 9, 50 + i as u64);
            let dy = random(s.n * s.c_out * ho * wo, 90 + i as u64);
            let mut y_ref = vec![0.0f64; s.n * s.c_out * ho * wo];
            let mut dw_ref = vec![0.0f64; w.len()];
            for b in 0..s.n {
                for o in 0..s.c_out {
                    for ci in 0..s.c_in {
                        for kh in 0..3 {
                            for kw in 0..3 {
                                let wi = ((o * s.c_in + ci) * 3 + kh) * 3 + kw;
                                for oh in 0..ho {
                                    for ow in 0..wo {
                                        let Some(t) = tap(s, oh, ow, kh, kw) else {
                                            continue;
                                        };
                                        let xv = x[(b * s.c_in + ci) * s.h * s.w + t] as f64;
                                        let yi = ((b * s.c_out + o) * ho + oh) * wo + ow;
                                        y_ref[yi] += w[wi] as f64 * xv;
                                        dw_ref[wi] += dy[yi] as f64 * xv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            // Sums of at most a few hundred terms of size <= 1: 1e-5 of the scale is ample
            // for f32 rounding and far below any indexing mistake.
            let close = |got: &[f32], want: &[f64], what: &str| {
                assert_eq!(got.len(), want.len(), "{what}: length in {s:?}");
                let scale = 1.0 + want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                for (j, (g, r)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (*g as f64 - r).abs() <= 1e-5 * scale,
                        "{what}[{j}] {g} vs {r} in {s:?}"
                    );
                }
            };
            close(&forward(&x, &w, s), &y_ref, "y");
            close(&backward_weight(&dy, &x, s), &dw_ref, "dw");
        }
    }

    #[test]
    #[should_panic(expected = "stride 3")]
    fn other_strides_are_rejected() {
        let s = DenseShape {
            n: 1,
            c_in: 1,
            c_out: 1,
            h: 3,
            w: 3,
            stride: 3,
        };
        forward(&[0.0; 9], &[0.0; 9], s);
    }
}
