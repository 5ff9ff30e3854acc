//! Dense convolution (one group, square kernel, any stride and padding) through per-image
//! im2col + GEMM: forward, input gradient and weight gradient. It serves the stems of the
//! mobile networks (3x3, 3 input channels), ResNet's 7x7 stem, 3x3 convolutions and strided
//! 1x1 projections, and the plain twin's 3x3 convolutions.
//!
//! Per image, `col` is the `[c_in*k*k, ho*wo]` matrix of input taps (zero outside the
//! image), so `Y = W · col`, `dW = Σ_b dY_b · col_bᵀ` and `dX = col2im(Wᵀ · dY)`. `col` is
//! rebuilt in the backward pass instead of kept.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::gemm::{matmul, sum_in_one_buffer, sum_over_images};

/// Shape of a dense convolution over NCHW data.
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
    /// Kernel height and width.
    pub kernel: usize,
    /// Stride (both directions).
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

impl DenseShape {
    /// A 3x3 convolution with padding 1 (the stems').
    pub fn k3(n: usize, c_in: usize, c_out: usize, (h, w): (usize, usize), stride: usize) -> Self {
        DenseShape {
            n,
            c_in,
            c_out,
            h,
            w,
            kernel: 3,
            stride,
            pad: 1,
        }
    }

    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        let out = |len: usize| (len + 2 * self.pad - self.kernel) / self.stride + 1;
        (out(self.h), out(self.w))
    }

    /// Rows of `col`: taps per output value.
    fn taps(&self) -> usize {
        self.c_in * self.kernel * self.kernel
    }

    fn check(&self, x_len: usize, w_len: usize) {
        assert!(self.stride > 0, "dense conv: stride 0");
        assert!(
            self.kernel > 0
                && self.h + 2 * self.pad >= self.kernel
                && self.w + 2 * self.pad >= self.kernel,
            "dense conv: a {k}x{k} kernel does not fit a padded {}x{} input",
            self.h,
            self.w,
            k = self.kernel
        );
        assert_eq!(
            x_len,
            self.n * self.c_in * self.h * self.w,
            "dense conv: input length"
        );
        assert_eq!(w_len, self.c_out * self.taps(), "dense conv: weight length");
    }

    /// For output row `o` and kernel offset `k`: the input row or column it reads, or None
    /// in the padding.
    fn source(&self, o: usize, k: usize, len: usize) -> Option<usize> {
        let i = (o * self.stride + k).checked_sub(self.pad)?;
        (i < len).then_some(i)
    }

    /// Output columns `[lo, hi)` whose tap at kernel column `kw` is inside the image.
    fn inside_columns(&self, kw: usize, wo: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(kw).div_ceil(self.stride).min(wo);
        // The last ow with ow * stride + kw - pad < w.
        let hi = if self.w + self.pad > kw {
            ((self.w + self.pad - kw - 1) / self.stride + 1).min(wo)
        } else {
            0
        };
        (lo, hi.max(lo))
    }
}

/// Floats of im2col per chunk of images: images are taken together, so that the GEMMs
/// span them, until their taps would pass this (late layers have few pixels per image,
/// and one image's GEMM would be thin).
const COL_BUDGET: usize = 1 << 21;

/// GEMM columns a chunk aims for: images with fewer output pixels are taken together up
/// to this, while one image with more stays alone (its im2col then stays in cache).
const MIN_COLUMNS: usize = 512;

/// Images per chunk for `s`: enough for [`MIN_COLUMNS`], within `budget` floats of im2col,
/// and no more than an equal share of the images per thread (so that the chunks keep
/// every thread busy).
fn images_per_chunk(s: DenseShape, budget: usize) -> usize {
    let (ho, wo) = s.out_hw();
    let pixels = (ho * wo).max(1);
    let share = s.n.div_ceil(rayon::current_num_threads());
    let wanted = MIN_COLUMNS.div_ceil(pixels);
    wanted
        .min(budget / (s.taps() * pixels))
        .clamp(1, share.max(1))
}

/// A chunk's matrix of `rows` rows of `per_image` values for each of its images, side by
/// side: image `j` of the chunk occupies columns `j * per_image ..`.
#[derive(Clone, Copy)]
struct Wide {
    /// Row stride: images in the chunk times `per_image`.
    stride: usize,
    /// Values per image in a row (`ho * wo`).
    per_image: usize,
}

impl Wide {
    fn new(images: usize, per_image: usize) -> Self {
        Wide {
            stride: images * per_image,
            per_image,
        }
    }

    fn row(self, r: usize, j: usize) -> std::ops::Range<usize> {
        let start = r * self.stride + j * self.per_image;
        start..start + self.per_image
    }
}

/// Writes the taps of one image `x` ([c_in, h, w]) into columns `j` of `col` ([c_in*k*k, ·]).
fn im2col(x: &[f32], s: DenseShape, col: &mut [f32], wide: Wide, j: usize) {
    let (ho, wo) = s.out_hw();
    let k = s.kernel;
    for ci in 0..s.c_in {
        let plane = &x[ci * s.h * s.w..(ci + 1) * s.h * s.w];
        for kh in 0..k {
            for kw in 0..k {
                let row = &mut col[wide.row((ci * k + kh) * k + kw, j)];
                let (lo, hi) = s.inside_columns(kw, wo);
                for oh in 0..ho {
                    let out = &mut row[oh * wo..(oh + 1) * wo];
                    let Some(ih) = s.source(oh, kh, s.h) else {
                        out.fill(0.0);
                        continue;
                    };
                    let src = &plane[ih * s.w..(ih + 1) * s.w];
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    for (ow, o) in out[lo..hi].iter_mut().enumerate() {
                        *o = src[(lo + ow) * s.stride + kw - s.pad];
                    }
                }
            }
        }
    }
}

/// Adds columns `j` of `col` back onto the image `dx` ([c_in, h, w]) they were gathered
/// from (after zeroing it): the adjoint of [`im2col`].
fn col2im(col: &[f32], s: DenseShape, wide: Wide, j: usize, dx: &mut [f32]) {
    let (ho, wo) = s.out_hw();
    let k = s.kernel;
    dx.fill(0.0);
    for ci in 0..s.c_in {
        let plane = &mut dx[ci * s.h * s.w..(ci + 1) * s.h * s.w];
        for kh in 0..k {
            for kw in 0..k {
                let row = &col[wide.row((ci * k + kh) * k + kw, j)];
                let (lo, hi) = s.inside_columns(kw, wo);
                for oh in 0..ho {
                    let Some(ih) = s.source(oh, kh, s.h) else {
                        continue;
                    };
                    let dst = &mut plane[ih * s.w..(ih + 1) * s.w];
                    for (ow, g) in row[oh * wo + lo..oh * wo + hi].iter().enumerate() {
                        dst[(lo + ow) * s.stride + kw - s.pad] += g;
                    }
                }
            }
        }
    }
}

/// Copies images' `[c, p]` planes (one after another in `planes`) into the chunk matrix
/// `wide_values` ([c, images * p]).
fn gather(planes: &[f32], wide_values: &mut [f32], c: usize, wide: Wide) {
    let p = wide.per_image;
    for (j, plane) in planes.chunks(c * p).enumerate() {
        for r in 0..c {
            wide_values[wide.row(r, j)].copy_from_slice(&plane[r * p..(r + 1) * p]);
        }
    }
}

/// The inverse of [`gather`]: the chunk matrix back into images' planes.
fn scatter(wide_values: &[f32], planes: &mut [f32], c: usize, wide: Wide) {
    let p = wide.per_image;
    for (j, plane) in planes.chunks_mut(c * p).enumerate() {
        for r in 0..c {
            plane[r * p..(r + 1) * p].copy_from_slice(&wide_values[wide.row(r, j)]);
        }
    }
}

/// `dst (m x n) [+]= lhs · rhs` for row-major slices, where `lhs` is `m x k` (or, when
/// `lhs_transposed`, the transpose of a `k x m` matrix) and `rhs` is `k x n` (or, when
/// `rhs_transposed`, the transpose of an `n x k` matrix).
fn matmul_rows(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    (lhs, rhs): (&[f32], &[f32]),
    (lhs_transposed, rhs_transposed): (bool, bool),
    parallelism: Parallelism,
) {
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= k * n);
    let lhs_strides = if lhs_transposed { (1, m) } else { (k, 1) };
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
            lhs_strides,
            rhs.as_ptr(),
            rhs_strides,
            parallelism,
        );
    }
}

/// Runs `chunk(out, first_image, parallelism)` over the chunks of `per_chunk` images of
/// `out` (`out_plane` values per image): in parallel over chunks when there are at least as
/// many as threads, otherwise one after another with parallel GEMMs.
pub(crate) fn for_each_chunk(
    out: &mut [f32],
    out_plane: usize,
    per_chunk: usize,
    chunk: impl Fn(&mut [f32], usize, Parallelism) + Sync + Send,
) {
    let threads = rayon::current_num_threads();
    let chunks = out.len().div_ceil(out_plane * per_chunk);
    if threads > 1 && chunks >= threads {
        out.par_chunks_mut(out_plane * per_chunk)
            .enumerate()
            .for_each(|(i, o)| chunk(o, i * per_chunk, Parallelism::None));
    } else {
        let parallelism = if threads > 1 {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        for (i, o) in out.chunks_mut(out_plane * per_chunk).enumerate() {
            chunk(o, i * per_chunk, parallelism);
        }
    }
}

/// Forward: `x` [n, c_in, h, w], `weight` [c_out, c_in, k, k] → y [n, c_out, ho, wo].
pub fn forward(x: &[f32], weight: &[f32], s: DenseShape) -> Vec<f32> {
    forward_in_chunks(x, weight, s, COL_BUDGET)
}

fn forward_in_chunks(x: &[f32], weight: &[f32], s: DenseShape, budget: usize) -> Vec<f32> {
    s.check(x.len(), weight.len());
    let (ho, wo) = s.out_hw();
    let p = ho * wo;
    let (plane_in, plane_out) = (s.c_in * s.h * s.w, s.c_out * p);
    let mut y = vec![0.0f32; s.n * plane_out];
    let per_chunk = images_per_chunk(s, budget);
    for_each_chunk(&mut y, plane_out, per_chunk, |y, first, parallelism| {
        let images = y.len() / plane_out;
        let wide = Wide::new(images, p);
        let mut col = vec![0.0f32; s.taps() * images * p];
        for j in 0..images {
            let b = first + j;
            im2col(&x[b * plane_in..(b + 1) * plane_in], s, &mut col, wide, j);
        }
        let shape = (s.c_out, images * p, s.taps());
        if images == 1 {
            matmul_rows(shape, y, false, (weight, &col), (false, false), parallelism);
        } else {
            let mut out = vec![0.0f32; s.c_out * images * p];
            matmul_rows(
                shape,
                &mut out,
                false,
                (weight, &col),
                (false, false),
                parallelism,
            );
            scatter(&out, y, s.c_out, wide);
        }
    });
    y
}

/// Input gradient: `dy` [n, c_out, ho, wo], `weight` [c_out, c_in, k, k] → dx [n, c_in, h, w].
pub fn backward_input(dy: &[f32], weight: &[f32], s: DenseShape) -> Vec<f32> {
    backward_input_in_chunks(dy, weight, s, COL_BUDGET)
}

fn backward_input_in_chunks(dy: &[f32], weight: &[f32], s: DenseShape, budget: usize) -> Vec<f32> {
    let (ho, wo) = s.out_hw();
    let p = ho * wo;
    let (plane_in, plane_out) = (s.c_in * s.h * s.w, s.c_out * p);
    s.check(s.n * plane_in, weight.len());
    assert_eq!(
        dy.len(),
        s.n * plane_out,
        "dense conv: output gradient length"
    );
    let mut dx = vec![0.0f32; s.n * plane_in];
    let per_chunk = images_per_chunk(s, budget);
    for_each_chunk(&mut dx, plane_in, per_chunk, |dx, first, parallelism| {
        let images = dx.len() / plane_in;
        let wide = Wide::new(images, p);
        let dy = &dy[first * plane_out..(first + images) * plane_out];
        let mut dy_wide = vec![0.0f32; s.c_out * images * p];
        gather(dy, &mut dy_wide, s.c_out, wide);
        let mut col = vec![0.0f32; s.taps() * images * p];
        let shape = (s.taps(), images * p, s.c_out);
        matmul_rows(
            shape,
            &mut col,
            false,
            (weight, &dy_wide),
            (true, false),
            parallelism,
        );
        for (j, dx) in dx.chunks_mut(plane_in).enumerate() {
            col2im(&col, s, wide, j, dx);
        }
    });
    dx
}

/// Layers with at most this many output channels compute their weight gradient transposed,
/// `dWᵀ = col · dYᵀ` (the taps as the GEMM's rows, read where im2col wrote them), then
/// transpose it once: with 64-256 output channels that ran 1.2-2.1x faster than `dY · colᵀ`,
/// with 512 slower (`cargo run --release -p dermclass-kernels --example bench_dense`, 128x128,
/// batch 32).
const TRANSPOSED_MAX_C_OUT: usize = 256;

/// Weight gradients above this many floats (the plain twin's 1024-channel 3x3 layer, 37.7 MB)
/// are summed in one buffer by parallel GEMMs: a buffer per thread ran at two thirds of the
/// speed there (and 1.2-1.7x faster at 512 -> 1024 channels, 4.7M floats, the next largest).
const ONE_BUFFER_MIN_WEIGHTS: usize = 1 << 23;

/// How the weight gradient is computed (see the two thresholds above).
#[derive(Clone, Copy, Debug)]
struct WeightGradPlan {
    transposed: bool,
    one_buffer: bool,
}

impl WeightGradPlan {
    fn for_shape(s: DenseShape) -> Self {
        WeightGradPlan {
            transposed: s.c_out <= TRANSPOSED_MAX_C_OUT,
            one_buffer: s.c_out * s.taps() > ONE_BUFFER_MIN_WEIGHTS,
        }
    }
}

/// Weight gradient: `dy` [n, c_out, ho, wo], `x` [n, c_in, h, w] → d_weight [c_out, c_in, k, k].
pub fn backward_weight(dy: &[f32], x: &[f32], s: DenseShape) -> Vec<f32> {
    let plan = WeightGradPlan::for_shape(s);
    backward_weight_in_chunks(dy, x, s, COL_BUDGET, plan)
}

fn backward_weight_in_chunks(
    dy: &[f32],
    x: &[f32],
    s: DenseShape,
    budget: usize,
    plan: WeightGradPlan,
) -> Vec<f32> {
    let w_len = s.c_out * s.taps();
    s.check(x.len(), w_len);
    let (ho, wo) = s.out_hw();
    let p = ho * wo;
    let (plane_in, plane_out) = (s.c_in * s.h * s.w, s.c_out * p);
    assert_eq!(
        dy.len(),
        s.n * plane_out,
        "dense conv: output gradient length"
    );
    let per_chunk = images_per_chunk(s, budget);
    // Adds the products of `images` into `acc`: dW [c_out, taps], or dWᵀ [taps, c_out].
    let accumulate = |acc: &mut [f32], images: std::ops::Range<usize>, parallelism| {
        let images: Vec<usize> = images.collect();
        for chunk in images.chunks(per_chunk) {
            let wide = Wide::new(chunk.len(), p);
            let mut col = vec![0.0f32; s.taps() * chunk.len() * p];
            let mut dy_wide = vec![0.0f32; s.c_out * chunk.len() * p];
            for (j, &b) in chunk.iter().enumerate() {
                im2col(&x[b * plane_in..(b + 1) * plane_in], s, &mut col, wide, j);
            }
            let first = chunk[0];
            let planes = &dy[first * plane_out..(first + chunk.len()) * plane_out];
            gather(planes, &mut dy_wide, s.c_out, wide);
            let depth = chunk.len() * p;
            let (shape, operands) = if plan.transposed {
                ((s.taps(), s.c_out, depth), (&col[..], &dy_wide[..]))
            } else {
                ((s.c_out, s.taps(), depth), (&dy_wide[..], &col[..]))
            };
            matmul_rows(shape, acc, true, operands, (false, true), parallelism);
        }
    };
    let sum = if plan.one_buffer {
        sum_in_one_buffer(s.n, w_len, accumulate)
    } else {
        sum_over_images(s.n, w_len, accumulate)
    };
    if plan.transposed {
        transpose(&sum, s.taps(), s.c_out)
    } else {
        sum
    }
}

/// The `cols x rows` transpose of the row-major `rows x cols` matrix `m`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; m.len()];
    for (c, out) in t.chunks_exact_mut(rows).enumerate() {
        for (r, v) in out.iter_mut().enumerate() {
            *v = m[r * cols + c];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::random;

    /// Naive f64 loops: (y, d_weight, dx) for `x`, `w` and the output gradient `dy`.
    fn reference(x: &[f32], w: &[f32], dy: &[f32], s: DenseShape) -> [Vec<f64>; 3] {
        let (ho, wo) = s.out_hw();
        let k = s.kernel;
        let mut y = vec![0.0f64; s.n * s.c_out * ho * wo];
        let mut dw = vec![0.0f64; w.len()];
        let mut dx = vec![0.0f64; x.len()];
        for b in 0..s.n {
            for o in 0..s.c_out {
                for ci in 0..s.c_in {
                    for kh in 0..k {
                        for kw in 0..k {
                            let wi = ((o * s.c_in + ci) * k + kh) * k + kw;
                            for oh in 0..ho {
                                for ow in 0..wo {
                                    let (Some(ih), Some(iw)) =
                                        (s.source(oh, kh, s.h), s.source(ow, kw, s.w))
                                    else {
                                        continue;
                                    };
                                    let xi = ((b * s.c_in + ci) * s.h + ih) * s.w + iw;
                                    let yi = ((b * s.c_out + o) * ho + oh) * wo + ow;
                                    y[yi] += w[wi] as f64 * x[xi] as f64;
                                    dw[wi] += dy[yi] as f64 * x[xi] as f64;
                                    dx[xi] += dy[yi] as f64 * w[wi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        [y, dw, dx]
    }

    fn shape(
        n: usize,
        c: (usize, usize),
        hw: (usize, usize),
        k: usize,
        stride: usize,
        pad: usize,
    ) -> DenseShape {
        DenseShape {
            n,
            c_in: c.0,
            c_out: c.1,
            h: hw.0,
            w: hw.1,
            kernel: k,
            stride,
            pad,
        }
    }

    #[test]
    fn forward_and_both_gradients_match_naive_loops() {
        let shapes = [
            DenseShape::k3(1, 3, 4, (7, 7), 2),
            DenseShape::k3(3, 3, 8, (13, 10), 2),
            DenseShape::k3(2, 1, 5, (1, 2), 1),
            DenseShape::k3(5, 4, 3, (16, 15), 1),
            // ResNet's stem: 7x7, stride 2, padding 3 (odd sizes too).
            shape(2, (3, 4), (17, 14), 7, 2, 3),
            // Projection shortcuts: strided 1x1 without padding.
            shape(3, (6, 5), (9, 8), 1, 2, 0),
            // Many channels, as the plain twin's 3x3 layers.
            shape(2, (24, 7), (6, 5), 3, 1, 1),
            // A kernel larger than the padded image is wide in one direction only.
            shape(1, (2, 3), (3, 9), 5, 3, 1),
        ];
        for (i, s) in shapes.into_iter().enumerate() {
            let (ho, wo) = s.out_hw();
            let x = random(s.n * s.c_in * s.h * s.w, i as u64);
            let w = random(s.c_out * s.taps(), 50 + i as u64);
            let dy = random(s.n * s.c_out * ho * wo, 90 + i as u64);
            let [y_ref, dw_ref, dx_ref] = reference(&x, &w, &dy, s);
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
            // One image per chunk, and every image in one chunk, as well as the default.
            for budget in [0, usize::MAX, COL_BUDGET] {
                let what = |pass: &str| format!("{pass} (im2col budget {budget})");
                close(&forward_in_chunks(&x, &w, s, budget), &y_ref, &what("y"));
                for transposed in [false, true] {
                    for one_buffer in [false, true] {
                        let plan = WeightGradPlan {
                            transposed,
                            one_buffer,
                        };
                        close(
                            &backward_weight_in_chunks(&dy, &x, s, budget, plan),
                            &dw_ref,
                            &what(&format!("dw ({plan:?})")),
                        );
                    }
                }
                close(
                    &backward_input_in_chunks(&dy, &w, s, budget),
                    &dx_ref,
                    &what("dx"),
                );
            }
        }
    }

    #[test]
    fn images_are_chunked_only_when_their_outputs_are_small() {
        let threads = rayon::current_num_threads();
        // A stem at 128x128: 4096 output pixels per image, one image per chunk.
        assert_eq!(
            images_per_chunk(DenseShape::k3(32, 3, 32, (128, 128), 2), COL_BUDGET),
            1
        );
        // 7x7 outputs: 49 pixels, ten or eleven images for 512 columns (as the share allows).
        let late = shape(64, (64, 64), (7, 7), 3, 1, 1);
        assert_eq!(
            images_per_chunk(late, COL_BUDGET),
            11.min(64usize.div_ceil(threads))
        );
        // A tight budget still takes one image.
        assert_eq!(images_per_chunk(late, 0), 1);
    }

    #[test]
    fn output_sizes_follow_the_convolution_arithmetic() {
        assert_eq!(shape(1, (3, 64), (224, 224), 7, 2, 3).out_hw(), (112, 112));
        assert_eq!(DenseShape::k3(1, 3, 32, (225, 150), 2).out_hw(), (113, 75));
        assert_eq!(shape(1, (256, 512), (56, 56), 1, 2, 0).out_hw(), (28, 28));
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_kernel_larger_than_the_padded_input_is_rejected() {
        forward(&[0.0; 4], &[0.0; 25], shape(1, (1, 1), (2, 2), 5, 1, 1));
    }
}
