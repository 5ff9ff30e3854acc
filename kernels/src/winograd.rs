//! Winograd's minimal filtering F(2x2, 3x3) for 3x3 convolutions at stride 1 with padding 1
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016): each 2x2
//! block of outputs comes from a 4x4 block of input with 16 multiplications per pair of
//! channels instead of 36. Filters (`U = G g Gᵀ`) and input blocks (`V = Bᵀ d B`) are
//! transformed into 16 coefficients; for each coefficient, the sum over input channels is one
//! GEMM (`M = U · V`, output channels by blocks); the output transform (`Aᵀ M A`) folds the
//! 16 back into the 2x2 block.
//!
//! The input gradient of such a convolution is the same convolution of the output gradient
//! with each filter turned half a turn and the channel axes swapped, so it runs the same code.

use std::sync::atomic::{AtomicBool, Ordering};

use gemm::Parallelism;
use rayon::prelude::*;

use crate::dense::{DenseShape, for_each_chunk};
use crate::gemm::matmul;

/// Transform coefficients per block (4x4).
const COEFFS: usize = 16;

/// Floats of transformed input per chunk of images (as the dense kernel's im2col budget):
/// images are taken together until their blocks would pass this.
const V_BUDGET: usize = 1 << 20;

/// GEMM columns (blocks) a chunk aims for.
const MIN_BLOCKS: usize = 256;

/// Maps of at least this many pixels per image take this kernel: on smaller ones the 16
/// transformed filters per pair of channels cost about what the multiplications save
/// (`bench_winograd` at batch 32: 0.8-1.15x the dense kernel at 4x4, 1.1-1.9x from 8x8).
const MIN_PIXELS: usize = 64;

static DISABLED: AtomicBool = AtomicBool::new(false);

/// Whether this kernel computes `s`: a 3x3 convolution at stride 1 with padding 1.
pub fn applies(s: &DenseShape) -> bool {
    s.kernel == 3 && s.stride == 1 && s.pad == 1
}

/// Whether `s` should run here rather than through im2col: it [`applies`], its maps have at
/// least [`MIN_PIXELS`] pixels, and the kernel is not turned off.
pub fn pays(s: &DenseShape) -> bool {
    applies(s) && s.h * s.w >= MIN_PIXELS && !DISABLED.load(Ordering::Relaxed)
}

/// Turns the kernel off (or back on) for [`pays`]: A/B benchmarks, and the library's
/// `DERMCLASS_WINOGRAD=0`.
pub fn set_enabled(on: bool) {
    DISABLED.store(!on, Ordering::Relaxed);
}

/// `G g Gᵀ` of one 3x3 filter `g` (row-major), with G = [[1,0,0], [½,½,½], [½,-½,½], [0,0,1]]
/// (the per-filter form of [`transformed_filters`]).
#[cfg(test)]
fn filter_transform(g: &[f32]) -> [f32; COEFFS] {
    let rows = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    let mut gg = [[0.0f32; 3]; 4];
    for j in 0..3 {
        let col = rows(g[j], g[3 + j], g[6 + j]);
        for i in 0..4 {
            gg[i][j] = col[i];
        }
    }
    let mut u = [0.0f32; COEFFS];
    for i in 0..4 {
        u[i * 4..i * 4 + 4].copy_from_slice(&rows(gg[i][0], gg[i][1], gg[i][2]));
    }
    u
}

/// `Bᵀ d B` of one 4x4 input block `d` (the per-block form of what [`transform_image`] does
/// a row of blocks at a time), with Bᵀ = [[1,0,-1,0], [0,1,1,0], [0,-1,1,0], [0,1,0,-1]].
#[cfg(test)]
fn input_transform(d: &[[f32; 4]; 4]) -> [f32; COEFFS] {
    let combine = |a: [f32; 4]| [a[0] - a[2], a[1] + a[2], a[2] - a[1], a[1] - a[3]];
    let mut bd = [[0.0f32; 4]; 4];
    for j in 0..4 {
        let col = combine([d[0][j], d[1][j], d[2][j], d[3][j]]);
        for i in 0..4 {
            bd[i][j] = col[i];
        }
    }
    let mut v = [0.0f32; COEFFS];
    for i in 0..4 {
        v[i * 4..i * 4 + 4].copy_from_slice(&combine(bd[i]));
    }
    v
}

/// `Aᵀ m A` of one block's 16 coefficients (the per-block form of [`untransform_image`]), with Aᵀ = [[1,1,1,0], [0,1,-1,-1]]: the 2x2 outputs.
#[cfg(test)]
fn output_transform(m: &[f32; COEFFS]) -> [[f32; 2]; 2] {
    let fold = |a: [f32; 4]| [a[0] + a[1] + a[2], a[1] - a[2] - a[3]];
    let mut am = [[0.0f32; 4]; 2];
    for j in 0..4 {
        let col = fold([m[j], m[4 + j], m[8 + j], m[12 + j]]);
        am[0][j] = col[0];
        am[1][j] = col[1];
    }
    [fold(am[0]), fold(am[1])]
}

/// The filters `weight` ([c_out, c_in, 3, 3]) transformed: [c_out][16][c_in], so that
/// coefficient `f`'s GEMM operand is rows `f * c_in..` with a row stride of `16 * c_in`,
/// and output channels transform in parallel. Per output channel, each of the 9 taps is
/// gathered across the input channels first, so `G g Gᵀ` runs as vector arithmetic.
fn transformed_filters(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; c_out * COEFFS * c_in];
    u.par_chunks_mut(COEFFS * c_in)
        .zip(weight.par_chunks(9 * c_in))
        .for_each(|(u, filters)| transform_filters_of_one_output(filters, c_in, u));
    u
}

/// `G g Gᵀ` of the `c_in` filters ([c_in, 3, 3]) of one output channel into `u` ([16][c_in]).
fn transform_filters_of_one_output(filters: &[f32], c_in: usize, u: &mut [f32]) {
    let mut taps = [(); 9].map(|_| vec![0.0f32; c_in]);
    for (t, tap) in taps.iter_mut().enumerate() {
        for (c, value) in tap.iter_mut().enumerate() {
            *value = filters[c * 9 + t];
        }
    }
    // G g: 4 rows by 3 columns, each a vector over the input channels.
    let mut gg = [(); 12].map(|_| vec![0.0f32; c_in]);
    for j in 0..3 {
        let (a, b, c) = (&taps[j], &taps[3 + j], &taps[6 + j]);
        for k in 0..c_in {
            gg[j][k] = a[k];
            gg[3 + j][k] = 0.5 * (a[k] + b[k] + c[k]);
            gg[6 + j][k] = 0.5 * (a[k] - b[k] + c[k]);
            gg[9 + j][k] = c[k];
        }
    }
    for (i, rows) in u.chunks_mut(4 * c_in).enumerate() {
        let (a, b, c) = (&gg[3 * i], &gg[3 * i + 1], &gg[3 * i + 2]);
        let (f0, rest) = rows.split_at_mut(c_in);
        let (f1, rest) = rest.split_at_mut(c_in);
        let (f2, f3) = rest.split_at_mut(c_in);
        for k in 0..c_in {
            f0[k] = a[k];
            f1[k] = 0.5 * (a[k] + b[k] + c[k]);
            f2[k] = 0.5 * (a[k] - b[k] + c[k]);
            f3[k] = c[k];
        }
    }
}

/// Blocks down and across an `h` x `w` map.
fn blocks(s: &DenseShape) -> (usize, usize) {
    (s.h.div_ceil(2), s.w.div_ceil(2))
}

/// Writes the transformed blocks of one image `x` ([c_in, h, w]) into columns
/// `first..first + blocks` of `v` ([16][c_in][columns]). Row by row of blocks: `Bᵀ` combines
/// four padded input rows over their whole width, then `B` combines each block's columns,
/// so both passes run along contiguous rows.
fn transform_image(x: &[f32], s: &DenseShape, v: &mut [f32], columns: usize, first: usize) {
    let (bh, bw) = blocks(s);
    // Index q + 1 of a padded row holds input column q; the rest stays zero.
    let width = 2 * bw + 2;
    let mut padded = [(); 4].map(|_| vec![0.0f32; width]);
    let mut combined = [(); 4].map(|_| vec![0.0f32; width]);
    for c in 0..s.c_in {
        let plane = &x[c * s.h * s.w..(c + 1) * s.h * s.w];
        for i in 0..bh {
            for (a, row) in padded.iter_mut().enumerate() {
                match (2 * i + a).checked_sub(1).filter(|&r| r < s.h) {
                    Some(r) => row[1..=s.w].copy_from_slice(&plane[r * s.w..(r + 1) * s.w]),
                    None => row.fill(0.0),
                }
            }
            let [p0, p1, p2, p3] = &padded;
            let [t0, t1, t2, t3] = &mut combined;
            for q in 0..width {
                t0[q] = p0[q] - p2[q];
                t1[q] = p1[q] + p2[q];
                t2[q] = p2[q] - p1[q];
                t3[q] = p1[q] - p3[q];
            }
            let column = first + i * bw;
            for (a, t) in combined.iter().enumerate() {
                let at = |b: usize| ((a * 4 + b) * s.c_in + c) * columns + column;
                for (j, o) in v[at(0)..at(0) + bw].iter_mut().enumerate() {
                    *o = t[2 * j] - t[2 * j + 2];
                }
                for (j, o) in v[at(1)..at(1) + bw].iter_mut().enumerate() {
                    *o = t[2 * j + 1] + t[2 * j + 2];
                }
                for (j, o) in v[at(2)..at(2) + bw].iter_mut().enumerate() {
                    *o = t[2 * j + 2] - t[2 * j + 1];
                }
                for (j, o) in v[at(3)..at(3) + bw].iter_mut().enumerate() {
                    *o = t[2 * j + 1] - t[2 * j + 3];
                }
            }
        }
    }
}

/// Folds columns `first..` of `m` ([16][c_out][columns]) into one image's output `y`
/// ([c_out, h, w]), a row of blocks at a time: `Aᵀ` over the coefficient rows, contiguous
/// along the blocks, then `A` into the two output rows.
fn untransform_image(m: &[f32], s: &DenseShape, columns: usize, first: usize, y: &mut [f32]) {
    let (bh, bw) = blocks(s);
    let mut folded = [(); 8].map(|_| vec![0.0f32; bw]);
    for o in 0..s.c_out {
        let plane = &mut y[o * s.h * s.w..(o + 1) * s.h * s.w];
        for i in 0..bh {
            let column = first + i * bw;
            let coeff = |f: usize| {
                let at = (f * s.c_out + o) * columns + column;
                &m[at..at + bw]
            };
            for b in 0..4 {
                let (m0, m1, m2, m3) = (coeff(b), coeff(4 + b), coeff(8 + b), coeff(12 + b));
                let (top, bottom) = folded.split_at_mut(4);
                for j in 0..bw {
                    top[b][j] = m0[j] + m1[j] + m2[j];
                    bottom[b][j] = m1[j] - m2[j] - m3[j];
                }
            }
            for (r, rows) in folded.chunks(4).enumerate() {
                let Some(out) = plane.get_mut((2 * i + r) * s.w..(2 * i + r + 1) * s.w) else {
                    continue;
                };
                for j in 0..bw {
                    let (a0, a1, a2, a3) = (rows[0][j], rows[1][j], rows[2][j], rows[3][j]);
                    out[2 * j] = a0 + a1 + a2;
                    if 2 * j + 1 < s.w {
                        out[2 * j + 1] = a1 - a2 - a3;
                    }
                }
            }
        }
    }
}

/// Images per chunk: enough for [`MIN_BLOCKS`] columns, within `budget` floats of
/// transformed input, and no more than an equal share of the images per thread.
fn images_per_chunk(s: &DenseShape, budget: usize) -> usize {
    let (bh, bw) = blocks(s);
    let per_image = (bh * bw).max(1);
    let share = s.n.div_ceil(rayon::current_num_threads());
    MIN_BLOCKS
        .div_ceil(per_image)
        .min(budget / (COEFFS * s.c_in * per_image).max(1))
        .clamp(1, share.max(1))
}

/// One chunk of images: `x` ([images, c_in, h, w]) into `y` ([images, c_out, h, w]).
fn forward_chunk(x: &[f32], u: &[f32], s: &DenseShape, y: &mut [f32], parallelism: Parallelism) {
    let (bh, bw) = blocks(s);
    let per_image = bh * bw;
    let images = y.len() / (s.c_out * s.h * s.w);
    let columns = images * per_image;
    let mut v = vec![0.0f32; COEFFS * s.c_in * columns];
    let plane_in = s.c_in * s.h * s.w;
    for j in 0..images {
        let image = &x[j * plane_in..(j + 1) * plane_in];
        transform_image(image, s, &mut v, columns, j * per_image);
    }
    let mut m = vec![0.0f32; COEFFS * s.c_out * columns];
    for f in 0..COEFFS {
        let vf = f * s.c_in * columns;
        let mf = &mut m[f * s.c_out * columns..(f + 1) * s.c_out * columns];
        // SAFETY: U_f is c_out rows of c_in values starting at f * c_in with a row stride
        // of 16 * c_in, V_f is c_in x columns and M_f is c_out x columns, row-major, each
        // inside its own buffer; M does not overlap U or V.
        unsafe {
            matmul(
                (s.c_out, columns, s.c_in),
                mf.as_mut_ptr(),
                columns,
                false,
                u[f * s.c_in..].as_ptr(),
                (COEFFS * s.c_in, 1),
                v[vf..].as_ptr(),
                (columns, 1),
                parallelism,
            );
        }
    }
    let plane_out = s.c_out * s.h * s.w;
    for (j, image) in y.chunks_mut(plane_out).enumerate() {
        untransform_image(&m, s, columns, j * per_image, image);
    }
}

fn forward_in_chunks(x: &[f32], weight: &[f32], s: DenseShape, budget: usize) -> Vec<f32> {
    assert!(
        applies(&s),
        "winograd: not a 3x3 stride-1 padding-1 convolution: {s:?}"
    );
    assert_eq!(x.len(), s.n * s.c_in * s.h * s.w, "winograd: input length");
    assert_eq!(
        weight.len(),
        s.c_out * s.c_in * 9,
        "winograd: weight length"
    );
    let u = transformed_filters(weight, s.c_out, s.c_in);
    let (plane_in, plane_out) = (s.c_in * s.h * s.w, s.c_out * s.h * s.w);
    let mut y = vec![0.0f32; s.n * plane_out];
    let per_chunk = images_per_chunk(&s, budget);
    for_each_chunk(&mut y, plane_out, per_chunk, |out, first, parallelism| {
        let images = out.len() / plane_out;
        let x = &x[first * plane_in..(first + images) * plane_in];
        forward_chunk(x, &u, &s, out, parallelism);
    });
    y
}

/// Forward: `x` [n, c_in, h, w], `weight` [c_out, c_in, 3, 3] → y [n, c_out, h, w].
pub fn forward(x: &[f32], weight: &[f32], s: DenseShape) -> Vec<f32> {
    forward_in_chunks(x, weight, s, V_BUDGET)
}

/// Input gradient: `dy` [n, c_out, h, w], `weight` [c_out, c_in, 3, 3] → dx [n, c_in, h, w]:
/// the forward of `dy` with the filters turned half a turn and the channel axes swapped.
pub fn backward_input(dy: &[f32], weight: &[f32], s: DenseShape) -> Vec<f32> {
    assert_eq!(
        weight.len(),
        s.c_out * s.c_in * 9,
        "winograd: weight length"
    );
    let mut turned = vec![0.0f32; weight.len()];
    for o in 0..s.c_out {
        for c in 0..s.c_in {
            let from = &weight[(o * s.c_in + c) * 9..(o * s.c_in + c + 1) * 9];
            let to = &mut turned[(c * s.c_out + o) * 9..(c * s.c_out + o + 1) * 9];
            for (t, f) in to.iter_mut().zip(from.iter().rev()) {
                *t = *f;
            }
        }
    }
    let swapped = DenseShape {
        c_in: s.c_out,
        c_out: s.c_in,
        ..s
    };
    forward(dy, &turned, swapped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::random;

    /// Within 1e-5 of the scale of `want` (F(2x2, 3x3) adds a few roundings per value).
    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = 1.0 + want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        for (j, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-5 * scale, "{what}[{j}]: {g} vs {w}");
        }
    }

    #[test]
    fn forward_and_input_gradient_equal_the_dense_kernel() {
        let shapes = [
            DenseShape::k3(1, 1, 1, (1, 1), 1),
            DenseShape::k3(2, 3, 5, (7, 6), 1),
            DenseShape::k3(3, 4, 2, (5, 9), 1),
            DenseShape::k3(1, 16, 8, (8, 8), 1),
            DenseShape::k3(4, 24, 7, (4, 4), 1),
            DenseShape::k3(2, 5, 3, (2, 11), 1),
        ];
        for (i, s) in shapes.into_iter().enumerate() {
            let x = random(s.n * s.c_in * s.h * s.w, i as u64);
            let w = random(s.c_out * s.c_in * 9, 40 + i as u64);
            let dy = random(s.n * s.c_out * s.h * s.w, 80 + i as u64);
            let want_y = crate::dense::forward(&x, &w, s); // im2col + GEMM
            let want_dx = crate::dense::backward_input(&dy, &w, s);
            // One image per chunk, every image in one chunk, and the default.
            for budget in [0, usize::MAX, V_BUDGET] {
                let what = format!("{s:?}, budget {budget}");
                assert_close(
                    &forward_in_chunks(&x, &w, s, budget),
                    &want_y,
                    &format!("y {what}"),
                );
            }
            assert_close(&backward_input(&dy, &w, s), &want_dx, &format!("dx {s:?}"));
        }
    }

    #[test]
    fn the_transforms_compute_a_correlation_of_one_block() {
        // A 4x4 block and one filter: the 2x2 "valid" correlation, by hand.
        let d = [
            [1.0, 2.0, 0.0, -1.0],
            [0.5, -2.0, 3.0, 1.0],
            [4.0, 0.0, 1.0, 2.0],
            [-1.0, 1.0, 2.0, 0.0],
        ];
        let g = [1.0, 0.0, -1.0, 2.0, 1.0, 0.0, 0.0, 3.0, 1.0];
        let (u, v) = (filter_transform(&g), input_transform(&d));
        let mut m = [0.0f32; COEFFS];
        for f in 0..COEFFS {
            m[f] = u[f] * v[f];
        }
        let y = output_transform(&m);
        for (r, row) in y.iter().enumerate() {
            for (q, got) in row.iter().enumerate() {
                let mut want = 0.0;
                for a in 0..3 {
                    for b in 0..3 {
                        want += g[a * 3 + b] * d[r + a][q + b];
                    }
                }
                assert!((got - want).abs() < 1e-5, "y[{r}][{q}] {got} vs {want}");
            }
        }
    }

    #[test]
    fn it_takes_3x3_stride_1_maps_of_8x8_and_up_unless_turned_off() {
        assert!(pays(&DenseShape::k3(32, 512, 512, (8, 8), 1)));
        assert!(pays(&DenseShape::k3(1, 3, 4, (16, 4), 1)));
        assert!(!pays(&DenseShape::k3(32, 1024, 1024, (4, 4), 1)));
        assert!(!pays(&DenseShape::k3(32, 64, 128, (64, 64), 2)));
        set_enabled(false);
        let off = pays(&DenseShape::k3(32, 512, 512, (8, 8), 1));
        set_enabled(true);
        assert!(!off);
    }

    #[test]
    #[should_panic(expected = "not a 3x3 stride-1")]
    fn other_convolutions_are_refused() {
        forward(&[0.0; 16], &[0.0; 9], DenseShape::k3(1, 1, 1, (4, 4), 2));
    }
}
