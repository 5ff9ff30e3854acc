//! Pooling over NCHW planes: the 3x3 stride-2 windows of the ShuffleNet and ResNet stems and
//! ShuffleNet v1's shortcuts through the depthwise convolution's in-place stride-2 kernel
//! (AVX-512) or as separable passes, any other window directly, and the gradients for
//! training.

use rayon::prelude::*;

use crate::fused::gather;

/// Pooling window shape: square `kernel`, `stride`, symmetric zero `pad`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    /// Planes (`n * c`).
    pub planes: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding on every side.
    pub pad: usize,
}

impl PoolShape {
    /// The input rows (or columns) inside a `size`-long side that output `o`'s window covers.
    fn window(&self, o: usize, size: usize) -> std::ops::Range<usize> {
        let start = (o * self.stride).saturating_sub(self.pad);
        start
            ..(o * self.stride + self.kernel)
                .saturating_sub(self.pad)
                .min(size)
    }

    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        let out = |size: usize| (size + 2 * self.pad - self.kernel) / self.stride + 1;
        (out(self.h), out(self.w))
    }
}

/// Max pooling (padding never wins) or average pooling that counts the padding as zeros
/// (burn's and PyTorch's default), into `y` (`[planes, ho, wo]`).
pub fn pool2d(x: &[f32], s: PoolShape, max: bool, y: &mut [f32]) {
    let (ho, wo) = s.out_hw();
    assert_eq!(x.len(), s.planes * s.h * s.w, "pool: input length");
    assert_eq!(y.len(), s.planes * ho * wo, "pool: output length");
    let area = (s.kernel * s.kernel) as f32;
    if s.kernel == 3 && s.stride == 2 && s.pad == 1 {
        // The depthwise convolution's in-place stride-2 kernel where it runs (AVX-512).
        if !crate::dw::pool_3x3_s2(x, (s.h, s.w), max, y) {
            separable_3x3_s2(x, s, max, y);
        }
        return;
    }
    y.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(s.h * s.w))
        .for_each(|(out, src)| {
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
                    for i in 0..s.kernel {
                        let ih = (oh * s.stride + i).wrapping_sub(s.pad);
                        if ih >= s.h {
                            continue;
                        }
                        for j in 0..s.kernel {
                            let iw = (ow * s.stride + j).wrapping_sub(s.pad);
                            if iw < s.w {
                                let v = src[ih * s.w + iw];
                                acc = if max { acc.max(v) } else { acc + v };
                            }
                        }
                    }
                    out[oh * wo + ow] = if max { acc } else { acc / area };
                }
            }
        });
}

/// [`pool2d`]'s 3x3 stride-2 windows (padding 1) as separable passes, row by row.
fn separable_3x3_s2(x: &[f32], s: PoolShape, max: bool, y: &mut [f32]) {
    let (ho, wo) = s.out_hw();
    y.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(s.h * s.w))
        .for_each_init(PoolRows::default, |rows, (out, src)| {
            if max {
                rows.pool_3x3_s2::<true>(src, s.h, s.w, out);
            } else {
                rows.pool_3x3_s2::<false>(src, s.h, s.w, out);
            }
        });
}

/// Gradient of [`pool2d`] with respect to its input `x`, given its output `y` and the
/// output's gradient `dy`. Max: each output's gradient goes to the first position of its
/// window (row by row, padding excluded) that holds the maximum, found again by comparing
/// with `y` instead of keeping indices (PyTorch's rule for ties). Average: a `1/kernel²`
/// share to every position of the window inside the plane (the padding counted as zeros,
/// as in the forward).
pub fn pool2d_backward(x: &[f32], y: &[f32], dy: &[f32], s: PoolShape, max: bool) -> Vec<f32> {
    let (ho, wo) = s.out_hw();
    assert_eq!(x.len(), s.planes * s.h * s.w, "pool backward: input length");
    assert_eq!(y.len(), s.planes * ho * wo, "pool backward: output length");
    assert_eq!(dy.len(), y.len(), "pool backward: gradient length");
    let mut dx = vec![0.0f32; x.len()];
    let plane = s.h * s.w;
    let separable = !max && (s.kernel, s.stride, s.pad) == (3, 2, 1);
    dx.par_chunks_mut(plane)
        .zip(x.par_chunks(plane))
        .zip(y.par_chunks(ho * wo).zip(dy.par_chunks(ho * wo)))
        .for_each_init(Vec::new, |spread, ((dx, x), (y, dy))| {
            if separable {
                mean_3x3_s2_backward(dy, s.h, s.w, spread, dx);
            } else {
                window_backward(x, y, dy, s, max, dx);
            }
        });
    dx
}

/// [`pool2d_backward`] of one plane, window by window.
fn window_backward(x: &[f32], y: &[f32], dy: &[f32], s: PoolShape, max: bool, dx: &mut [f32]) {
    let (ho, wo) = s.out_hw();
    let share = 1.0 / (s.kernel * s.kernel) as f32;
    for oh in 0..ho {
        let rows = s.window(oh, s.h);
        for ow in 0..wo {
            let (cols, top, g) = (s.window(ow, s.w), y[oh * wo + ow], dy[oh * wo + ow]);
            for ih in rows.clone() {
                let row = &mut dx[ih * s.w..][cols.clone()];
                if !max {
                    row.iter_mut().for_each(|d| *d += g * share);
                } else if let Some(j) = x[ih * s.w..][cols.clone()].iter().position(|&v| v == top) {
                    row[j] += g;
                    break;
                }
            }
        }
    }
}

/// The mean's backward of a 3x3, stride-2, padding-1 window over one `h x w` plane, as
/// two separable passes: each output row's gradient spread over the input columns (an even
/// column lies in one window, an odd one in two), then added to the (up to) three input rows
/// the row's windows cover.
fn mean_3x3_s2_backward(dy: &[f32], h: usize, w: usize, spread: &mut Vec<f32>, dx: &mut [f32]) {
    let wo = (w - 1) / 2 + 1;
    spread.resize(w, 0.0);
    for (oh, d) in dy.chunks_exact(wo).enumerate() {
        for (iw, t) in spread.iter_mut().enumerate() {
            let right = if iw % 2 == 1 {
                d.get(iw / 2 + 1).copied().unwrap_or(0.0)
            } else {
                0.0
            };
            *t = (d[iw / 2] + right) / 9.0;
        }
        for ih in (2 * oh).saturating_sub(1)..(2 * oh + 2).min(h) {
            dx[ih * w..][..w]
                .iter_mut()
                .zip(spread.iter())
                .for_each(|(d, t)| *d += t);
        }
    }
}

/// Per-thread rows of a separable 3x3, stride-2, padding-1 pool (the stems of ShuffleNet and
/// ResNet, ShuffleNet v1's shortcuts): each input row's even and odd values, then the
/// reduction of each row window.
#[derive(Default)]
struct PoolRows {
    even: Vec<f32>,
    odd: Vec<f32>,
    across: Vec<f32>,
}

impl PoolRows {
    /// Pools one `h x w` plane into `out` (`ho x wo`), the maximum (`MAX`) or the mean with
    /// the padding counted as zeros: each row window's three values first (as even/odd
    /// halves, so the loop vectorizes), then three rows.
    fn pool_3x3_s2<const MAX: bool>(&mut self, src: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let join = |a: f32, b: f32| if MAX { max(a, b) } else { a + b };
        let padding = if MAX { f32::NEG_INFINITY } else { 0.0 };
        let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        self.even.resize(wo, 0.0);
        self.odd.clear();
        self.odd.resize(wo, padding);
        self.across.resize(h * wo, 0.0);
        let odd_len = w / 2;
        for (row, across) in src.chunks_exact(w).zip(self.across.chunks_exact_mut(wo)) {
            gather(row, 2, &mut self.even[..wo]);
            gather(&row[1.min(w - 1)..], 2, &mut self.odd[..odd_len]);
            // Window ow covers 2ow-1, 2ow, 2ow+1: odd[ow-1], even[ow], odd[ow] (the odd
            // value past an odd-width row stays the padding).
            across[0] = join(self.even[0], self.odd[0]);
            let windows = self.odd.windows(2).zip(&self.even[1..wo]);
            for (a, (odd, even)) in across[1..].iter_mut().zip(windows) {
                *a = join(join(odd[0], *even), odd[1]);
            }
        }
        for (oh, dst) in out.chunks_exact_mut(wo).enumerate().take(ho) {
            let centre = &self.across[2 * oh * wo..][..wo];
            dst.copy_from_slice(centre);
            for other in [2 * oh as isize - 1, 2 * oh as isize + 1] {
                if (0..h as isize).contains(&other) {
                    let row = &self.across[other as usize * wo..][..wo];
                    dst.iter_mut().zip(row).for_each(|(d, v)| *d = join(*d, *v));
                }
            }
            if !MAX {
                dst.iter_mut().for_each(|v| *v /= 9.0);
            }
        }
    }
}

/// The larger of two values as one instruction (pooled values are never NaN).
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::random;

    #[test]
    fn the_separable_pools_equal_the_window_maximum_and_mean() {
        for (h, w) in [
            (1, 1),
            (1, 2),
            (2, 1),
            (2, 2),
            (3, 3),
            (7, 9),
            (8, 8),
            (9, 40),
            (40, 33),
        ] {
            let x = random(3 * h * w, (h * 100 + w) as u64);
            let s = PoolShape {
                planes: 3,
                h,
                w,
                kernel: 3,
                stride: 2,
                pad: 1,
            };
            let (ho, wo) = s.out_hw();
            let (mut max, mut mean) = (vec![f32::NAN; 3 * ho * wo], vec![f32::NAN; 3 * ho * wo]);
            pool2d(&x, s, true, &mut max);
            pool2d(&x, s, false, &mut mean);
            // The separable passes (where the in-place kernel does not run) give the same.
            let (mut max2, mut mean2) = (vec![f32::NAN; 3 * ho * wo], vec![f32::NAN; 3 * ho * wo]);
            separable_3x3_s2(&x, s, true, &mut max2);
            separable_3x3_s2(&x, s, false, &mut mean2);
            assert_eq!(max, max2, "max {h}x{w}: the two kernels");
            for (a, b) in mean.iter().zip(&mean2) {
                assert!(
                    (a - b).abs() < 1e-6,
                    "mean {h}x{w}: the two kernels, {a} against {b}"
                );
            }
            for p in 0..3 {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let x = &x;
                        let window: Vec<f32> = ((2 * oh).saturating_sub(1)..(2 * oh + 2).min(h))
                            .flat_map(|ih| {
                                ((2 * ow).saturating_sub(1)..(2 * ow + 2).min(w))
                                    .map(move |iw| x[(p * h + ih) * w + iw])
                            })
                            .collect();
                        let at = (p * ho + oh) * wo + ow;
                        let top = window.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        assert_eq!(max[at], top, "max {h}x{w} at {p},{oh},{ow}");
                        // The padding counts as zeros: always nine values.
                        let want = window.iter().sum::<f32>() / 9.0;
                        assert!(
                            (mean[at] - want).abs() < 1e-6,
                            "mean {h}x{w} at {p},{oh},{ow}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn pools_match_their_definitions() {
        let x = random(2 * 7 * 9, 5);
        let s = PoolShape {
            planes: 2,
            h: 7,
            w: 9,
            kernel: 3,
            stride: 2,
            pad: 1,
        };
        let (ho, wo) = s.out_hw();
        assert_eq!((ho, wo), (4, 5));
        let (mut max, mut avg) = (vec![0.0; 2 * ho * wo], vec![0.0; 2 * ho * wo]);
        pool2d(&x, s, true, &mut max);
        pool2d(&x, s, false, &mut avg);
        // Output (1, 1) of plane 1 covers rows 1..4 and columns 1..4, all inside.
        let window: Vec<f32> = (1..4)
            .flat_map(|r| (1..4).map(move |c| (r, c)))
            .map(|(r, c)| x[63 + r * 9 + c])
            .collect();
        assert_eq!(
            max[ho * wo + wo + 1],
            window.iter().copied().fold(f32::MIN, f32::max)
        );
        let mean = window.iter().sum::<f32>() / 9.0;
        assert!((avg[ho * wo + wo + 1] - mean).abs() < 1e-6);
        // Output (0, 0) of plane 0 sees 4 pixels and 5 zeros of padding.
        let corner = x[0] + x[1] + x[9] + x[10];
        assert!((avg[0] - corner / 9.0).abs() < 1e-6);
        assert_eq!(max[0], x[0].max(x[1]).max(x[9]).max(x[10]));
    }

    /// Max pooling picks one input per output and average pooling is linear, so for both
    /// `<pool(x), dy> = <x, pool_backward(dy)>`; the windows' maxima are distinct here.
    #[test]
    fn pool_gradients_are_the_adjoint_of_the_forward() {
        for (h, w, kernel, stride, pad) in [
            (7, 9, 3, 2, 1),
            (8, 8, 3, 2, 1),
            (5, 6, 2, 2, 0),
            (6, 5, 3, 1, 1),
        ] {
            let s = PoolShape {
                planes: 3,
                h,
                w,
                kernel,
                stride,
                pad,
            };
            let x = random(3 * h * w, (h * w) as u64);
            let (ho, wo) = s.out_hw();
            let dy = random(3 * ho * wo, 7);
            for max in [true, false] {
                let mut y = vec![0.0; 3 * ho * wo];
                pool2d(&x, s, max, &mut y);
                let dx = pool2d_backward(&x, &y, &dy, s, max);
                let dot = |a: &[f32], b: &[f32]| {
                    a.iter().zip(b).map(|(a, b)| (a * b) as f64).sum::<f64>()
                };
                let (forward, backward) = (dot(&y, &dy), dot(&x, &dx));
                assert!(
                    (forward - backward).abs() < 1e-4,
                    "{s:?} max={max}: {forward} vs {backward}"
                );
                if max {
                    let hit = dx.iter().filter(|&&d| d != 0.0).count();
                    assert!(
                        hit > 0 && hit <= 3 * ho * wo,
                        "{s:?}: {hit} inputs got a gradient"
                    );
                }
            }
        }
    }

    /// With ties (a ReLU's zeros before the stem's pool), the first maximum of each window
    /// takes the whole gradient.
    #[test]
    fn a_tied_max_window_sends_its_gradient_to_the_first_maximum() {
        let s = PoolShape {
            planes: 1,
            h: 4,
            w: 4,
            kernel: 3,
            stride: 2,
            pad: 1,
        };
        let x = vec![0.0; 16];
        let y = vec![0.0; 4];
        let dy = vec![1.0, 2.0, 3.0, 4.0];
        let dx = pool2d_backward(&x, &y, &dy, s, true);
        // Windows start at rows/columns 0, 1, 1 (output 0 -> 0, output 1 -> 1).
        let mut want = vec![0.0; 16];
        want[0] = 1.0;
        want[1] = 2.0;
        want[4] = 3.0;
        want[5] = 4.0;
        assert_eq!(dx, want);
    }
}
