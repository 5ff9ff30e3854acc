//! Inference kernels for a network whose batch norms are folded into its convolutions.
//!
//! A convolution computes its output in tiles (a block of output channels by a run of
//! pixels) and, while a tile is still in cache, adds the bias, applies the activation, adds
//! a residual and applies a second activation ([`Epilogue`]), so none of those is a pass of
//! its own over memory. Tiles are the unit of parallel work, so one image (batch 1) keeps
//! every thread busy. Depthwise 3x3 convolutions run on [`crate::dw`] with the epilogue
//! applied per output plane; every other convolution (1x1 of any groups, dense kxk of any
//! stride and padding) is a GEMM, reading a 1x1 stride-1 input where it lies and gathering
//! the taps of anything else into a per-tile im2col buffer.

use std::sync::atomic::{AtomicBool, Ordering};

use gemm::Parallelism;
use rayon::prelude::*;

use crate::bn::Act;
use crate::cpu::{Isa, SendPtr, check_groups, isa};
use crate::dw::{self, DwShape};
use crate::gemm::matmul;
use crate::micro::{self, Packed, TileIo};

/// Bytes of im2col (or input) panel one tile reads: sized to stay in L2 with its output
/// (64 KiB to 1 MiB measured alike within noise on MobileNetV2; 256 KiB was best).
const PANEL_BYTES: usize = 256 * 1024;
/// Parallel tiles wanted per thread, so threads finish together (1, 2, 4 measured; 4 best at
/// batch 1).
const TILES_PER_THREAD: usize = 4;

/// What a convolution does to each output value `z` of channel `c`:
/// `post(act(z + bias[c]) + residual)` (without a residual, `act(z + bias[c])`).
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// One bias per output channel (the folded batch norm's shift).
    pub bias: &'a [f32],
    /// Activation of the biased value.
    pub act: Act,
    /// A tensor of the output's shape added after `act` (a residual connection).
    pub residual: Option<&'a [f32]>,
    /// Activation after the residual add (ResNet's ReLU after the sum).
    pub post: Act,
}

/// `(low, high)` clamp bounds that compute `act`.
pub(crate) fn bounds(act: Act) -> (f32, f32) {
    match act {
        Act::Identity => (f32::NEG_INFINITY, f32::INFINITY),
        Act::Relu => (0.0, f32::INFINITY),
        Act::Relu6 => (0.0, 6.0),
    }
}

impl Epilogue<'_> {
    /// Bias and activation only.
    pub fn new(bias: &[f32], act: Act) -> Epilogue<'_> {
        Epilogue {
            bias,
            act,
            residual: None,
            post: Act::Identity,
        }
    }

    /// Checks the bias against `channels` and the residual against `len` outputs.
    pub(crate) fn check(&self, channels: usize, len: usize) {
        assert_eq!(self.bias.len(), channels, "epilogue: one bias per channel");
        if let Some(r) = self.residual {
            assert_eq!(r.len(), len, "epilogue: residual length");
        }
    }

    /// Applies the epilogue to `out`, the outputs of `channel` starting at flat output
    /// index `offset` (where the residual is read).
    #[inline(always)]
    pub(crate) fn apply(&self, channel: usize, offset: usize, out: &mut [f32]) {
        let b = self.bias[channel];
        let (lo, hi) = bounds(self.act);
        match self.residual {
            None => out.iter_mut().for_each(|v| *v = clamp(*v + b, lo, hi)),
            Some(residual) => {
                let (lo2, hi2) = bounds(self.post);
                let r = &residual[offset..offset + out.len()];
                out.iter_mut()
                    .zip(r)
                    .for_each(|(v, r)| *v = clamp(clamp(*v + b, lo, hi) + r, lo2, hi2));
            }
        }
    }

    /// [`Epilogue::apply`] compiled for this CPU's widest vectors (the GEMM path calls it
    /// per output row, outside any `target_feature` function).
    pub(crate) fn apply_wide(&self, channel: usize, offset: usize, out: &mut [f32]) {
        match isa() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx512` is only reported when the CPU has avx512f.
            Isa::Avx512 => unsafe { self.apply_avx512(channel, offset, out) },
            _ => self.apply(channel, offset, out),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn apply_avx512(&self, channel: usize, offset: usize, out: &mut [f32]) {
        self.apply(channel, offset, out)
    }
}

/// `v` clamped to `[lo, hi]` as one max and one min instruction (a NaN `v` comes out as a
/// bound; the NaN-propagating `f32::max` costs extra instructions per value).
#[inline(always)]
fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v > lo { v } else { lo };
    if v < hi { v } else { hi }
}

/// Shape of a 2-D convolution over NCHW data with symmetric padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
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
    pub kernel: (usize, usize),
    /// Stride (both axes).
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
    /// Channel groups.
    pub groups: usize,
}

impl ConvShape {
    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        let out = |size: usize, k: usize| (size + 2 * self.pad - k) / self.stride + 1;
        (out(self.h, self.kernel.0), out(self.w, self.kernel.1))
    }

    /// Elements of the output.
    pub fn out_len(&self) -> usize {
        let (ho, wo) = self.out_hw();
        self.n * self.c_out * ho * wo
    }

    fn check(&self, x_len: usize, w_len: usize) {
        let (kh, kw) = self.kernel;
        check_groups("conv", self.c_in, self.c_out, self.groups);
        assert!(self.stride > 0, "conv: stride 0");
        assert!(
            self.h + 2 * self.pad >= kh && self.w + 2 * self.pad >= kw,
            "conv: a {kh}x{kw} kernel does not fit a padded {}x{} input",
            self.h,
            self.w
        );
        assert_eq!(
            x_len,
            self.n * self.c_in * self.h * self.w,
            "conv: input length"
        );
        assert_eq!(
            w_len,
            self.c_out * (self.c_in / self.groups) * kh * kw,
            "conv: weight length"
        );
    }

    fn is_depthwise3x3(&self) -> bool {
        self.groups == self.c_in
            && self.c_in == self.c_out
            && self.kernel == (3, 3)
            && self.pad == 1
            && (self.stride == 1 || self.stride == 2)
    }

    /// A 1x1, stride-1, unpadded convolution reads its input as the GEMM's right operand.
    fn is_direct(&self) -> bool {
        self.kernel == (1, 1) && self.stride == 1 && self.pad == 0
    }

    /// Depth of the GEMM: taps per output value.
    fn depth(&self) -> usize {
        self.c_in / self.groups * self.kernel.0 * self.kernel.1
    }
}

/// A convolution's weights `[c_out, c_in/groups, kh, kw]` (batch norm folded in), with the
/// copy the AVX-512 micro-kernel reads, packed once when the model is compiled.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvWeights {
    raw: Vec<f32>,
    packed: Option<Packed>,
}

impl ConvWeights {
    /// Weights for `c_out` output channels in `groups` groups, packed where the micro-kernel
    /// runs and the convolution is a GEMM (not one channel per group).
    pub fn new(raw: Vec<f32>, c_out: usize, groups: usize) -> Self {
        let m = c_out / groups.max(1);
        let packed = if m >= 2 && c_out > 0 && raw.len().is_multiple_of(c_out) {
            Packed::new(&raw, groups, m, raw.len() / c_out)
        } else {
            None
        };
        Self { raw, packed }
    }

    /// The weights for the portable GEMM path only (tests compare both paths).
    pub fn unpacked(raw: Vec<f32>) -> Self {
        Self { raw, packed: None }
    }

    /// The weights as given.
    pub fn raw(&self) -> &[f32] {
        &self.raw
    }

    /// Whether the micro-kernel computes this convolution.
    pub fn is_packed(&self) -> bool {
        self.packed.is_some()
    }
}

/// One unit of parallel work: image `b`, group `g`, output rows `rows` of the group,
/// output pixels `cols`.
#[derive(Clone, Debug)]
struct Tile {
    b: usize,
    g: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
}

/// Splits the output into tiles: pixel runs sized so a tile's panel stays in L2, and
/// channel blocks cut until every thread has a few tiles (late layers have few pixels).
fn tiles(s: &ConvShape) -> Vec<Tile> {
    let (ho, wo) = s.out_hw();
    let (p, m) = (ho * wo, s.c_out / s.groups);
    let wanted = rayon::current_num_threads() * TILES_PER_THREAD;
    // Only where the input is read in place: an im2col tile would be rebuilt per tile.
    let narrow = p <= micro::NARROW && s.is_direct() && NARROW_TILES.load(Ordering::Relaxed);
    let (rows, cols) = if narrow {
        narrow_tile_size(p, m, s.n * s.groups, wanted)
    } else {
        tile_size(p, m, s.depth(), s.n * s.groups, wanted, s.is_direct())
    };
    let mut out = Vec::with_capacity(s.n * s.groups * m.div_ceil(rows) * p.div_ceil(cols));
    for b in 0..s.n {
        for g in 0..s.groups {
            for r in (0..m).step_by(rows) {
                for c in (0..p).step_by(cols) {
                    out.push(Tile {
                        b,
                        g,
                        rows: r..(r + rows).min(m),
                        cols: c..(c + cols).min(p),
                    });
                }
            }
        }
    }
    out
}

/// Output rows and pixels of a tile: pixel runs sized so a tile's panel stays in L2, and
/// channel blocks cut until the `units` (images times groups) make `wanted` tiles. An
/// im2col convolution (not `direct`) cuts its pixels first, since each tile builds the
/// im2col of its own pixels (MobileNet's stem rebuilt each panel twice, once per 16-channel
/// tile).
fn tile_size(
    p: usize,
    m: usize,
    depth: usize,
    units: usize,
    wanted: usize,
    direct: bool,
) -> (usize, usize) {
    let fit = (PANEL_BYTES / 4 / depth.max(1)).max(16);
    // Whole rows of pixels when they fit; otherwise runs of whole vectors.
    let mut cols = if fit >= p { p } else { fit / 16 * 16 };
    if !direct {
        let share = p.div_ceil(wanted.div_ceil(units)).div_ceil(16) * 16;
        cols = cols.min(share);
    }
    let row_tiles = wanted
        .div_ceil(units * p.div_ceil(cols))
        .min(m.div_ceil(16))
        .max(1);
    // Whole vectors of output channels (16), where the micro-kernels' tiles start.
    (m.div_ceil(row_tiles).div_ceil(16) * 16, cols)
}

/// [`tile_size`] for 1x1 convolutions on maps of at most [`micro::NARROW`] pixels, which
/// the narrow register tile computes 48 channels by 7 pixels at a time: tiles of exactly 48
/// channels (larger ones ended in a 16- or 32-channel register tile, and 5 tiles of 32
/// channels left one of two threads idle for a fifth of a 160-channel layer), with the
/// pixels cut in runs of 7 where that makes too few tiles. Not for im2col convolutions,
/// whose tiles each rebuild their im2col (ResNet-50 got 10% slower).
fn narrow_tile_size(p: usize, m: usize, units: usize, wanted: usize) -> (usize, usize) {
    let row_tiles = m.div_ceil(micro::LANE_ROWS);
    let col_tiles = wanted
        .div_ceil(units * row_tiles)
        .min(p.div_ceil(micro::LANE_PIXELS));
    let cols = p.div_ceil(col_tiles).div_ceil(micro::LANE_PIXELS) * micro::LANE_PIXELS;
    (micro::LANE_ROWS, cols)
}

static NARROW_TILES: AtomicBool = AtomicBool::new(true);

/// Turns the tiling for narrow maps ([`narrow_tile_size`]) off or back on: A/B benchmarks.
pub fn set_narrow_tiles(on: bool) {
    NARROW_TILES.store(on, Ordering::Relaxed);
}

/// Fills `col` (`depth x cols.len()`, row-major) with the input taps of the output pixels
/// `cols` of image `b`, group `g` (zero where the window leaves the image). Works one output
/// row at a time: the taps inside the image are a strided run of one input row.
fn im2col_tile(
    x: &[f32],
    s: &ConvShape,
    b: usize,
    g: usize,
    cols: &std::ops::Range<usize>,
    col: &mut [f32],
) {
    let (kh, kw) = s.kernel;
    let (_, wo) = s.out_hw();
    let k_in = s.c_in / s.groups;
    let width = cols.len();
    let plane = s.h * s.w;
    for ci in 0..k_in {
        let src = &x[(b * s.c_in + g * k_in + ci) * plane..][..plane];
        for i in 0..kh {
            for j in 0..kw {
                let row = &mut col[((ci * kh + i) * kw + j) * width..][..width];
                // Output columns whose tap `j` lands inside the row: iw = ow*stride + j - pad.
                let first = s.pad.saturating_sub(j).div_ceil(s.stride);
                let end = ((s.w + s.pad).saturating_sub(j)).div_ceil(s.stride).min(wo);
                let mut q = cols.start;
                while q < cols.end {
                    let (oh, ow0) = (q / wo, q % wo);
                    let ow1 = wo.min(ow0 + cols.end - q);
                    let dst = &mut row[q - cols.start..][..ow1 - ow0];
                    let ih = (oh * s.stride + i).wrapping_sub(s.pad);
                    if ih >= s.h {
                        dst.fill(0.0);
                    } else {
                        let line = &src[ih * s.w..][..s.w];
                        let (lo, hi) = (
                            first.clamp(ow0, ow1),
                            end.clamp(ow0, ow1).max(first.clamp(ow0, ow1)),
                        );
                        dst[..lo - ow0].fill(0.0);
                        dst[hi - ow0..].fill(0.0);
                        let inside = &mut dst[lo - ow0..hi - ow0];
                        if !inside.is_empty() {
                            let start = lo * s.stride + j - s.pad;
                            gather(&line[start..], s.stride, inside);
                        }
                    }
                    q += ow1 - ow0;
                }
            }
        }
    }
}

/// `dst[k] = src[k * stride]` for every `k` of `dst`: a copy at stride 1, a vector
/// deinterleave at stride 2 (the stems), scalar otherwise.
pub(crate) fn gather(src: &[f32], stride: usize, dst: &mut [f32]) {
    let done = match stride {
        1 => {
            dst.copy_from_slice(&src[..dst.len()]);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f is present when `isa` says so.
        2 if isa() == Isa::Avx512 => unsafe { gather_even_avx512(src, dst) },
        _ => 0,
    };
    for (k, v) in dst.iter_mut().enumerate().skip(done) {
        *v = src[k * stride];
    }
}

/// The even-indexed values of `src` into `dst`, 16 at a time while two whole vectors of
/// `src` remain; returns how many it wrote.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn gather_even_avx512(src: &[f32], dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let mut k = 0;
    while k + 16 <= dst.len() && 2 * k + 32 <= src.len() {
        // SAFETY: 2k + 32 <= src.len() and k + 16 <= dst.len() (loop condition).
        unsafe {
            let a = _mm512_loadu_ps(src.as_ptr().add(2 * k));
            let b = _mm512_loadu_ps(src.as_ptr().add(2 * k + 16));
            _mm512_storeu_ps(dst.as_mut_ptr().add(k), _mm512_permutex2var_ps(a, even, b));
        }
        k += 16;
    }
    k
}

/// Convolution (weights `[c_out, c_in/groups, kh, kw]`, batch norm already folded in) with
/// `epilogue`, written into `y` (`[n, c_out, ho, wo]`).
pub fn conv2d(x: &[f32], weights: &ConvWeights, s: ConvShape, epilogue: &Epilogue, y: &mut [f32]) {
    let weight = weights.raw();
    s.check(x.len(), weight.len());
    assert_eq!(y.len(), s.out_len(), "conv: output length");
    epilogue.check(s.c_out, y.len());
    if s.is_depthwise3x3() {
        let shape = DwShape {
            n: s.n,
            c: s.c_in,
            h: s.h,
            w: s.w,
            stride: s.stride,
        };
        dw::forward_fused(x, weight, shape, epilogue, y);
        return;
    }
    let (ho, wo) = s.out_hw();
    let (p, m, depth) = (ho * wo, s.c_out / s.groups, s.depth());
    let dst = SendPtr(y.as_mut_ptr());
    tiles(&s).into_par_iter().for_each(|t| {
        let width = t.cols.len();
        // The GEMM's right operand: the input itself (1x1 stride 1) or the tile's im2col, in
        // a buffer each thread keeps (im2col writes every value, so it is never cleared).
        let mut col = IM2COL.take();
        let (rhs, rhs_rs) = if s.is_direct() {
            (
                x[(t.b * s.c_in + t.g * depth) * p + t.cols.start..].as_ptr(),
                p,
            )
        } else {
            if col.len() < depth * width {
                col.resize(depth * width, 0.0);
            }
            im2col_tile(x, &s, t.b, t.g, &t.cols, &mut col[..depth * width]);
            (col.as_ptr(), width)
        };
        let first = t.b * s.c_out + t.g * m + t.rows.start;
        let io = TileIo {
            x: rhs,
            x_rs: rhs_rs,
            y: dst.at(first * p + t.cols.start),
            y_rs: p,
            offset: first * p + t.cols.start,
            channel: t.g * m + t.rows.start,
            epilogue,
        };
        // SAFETY: the tile's rows of `y` ([first, +rows) with stride p, columns `cols`) are
        // inside `y` and no other tile writes them; the right operand (depth rows of
        // `width` with stride `rhs_rs`) is inside its buffer by the shape checks.
        unsafe { gemm_tile(weights, (m, depth), t.g, t.rows.clone(), width, &io) };
        IM2COL.set(col);
    });
}

thread_local! {
    /// Each thread's im2col buffer, kept between tiles and calls.
    static IM2COL: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Output rows `rows` of group `g` (`m` rows of `depth` weights per group) over `width`
/// pixels, `io` saying where the tile reads and writes: the micro-kernel on packed weights,
/// else the gemm crate followed by the epilogue row by row.
///
/// # Safety
/// `io.x` must hold the group's `depth` input rows of `width` pixels at stride `io.x_rs`,
/// `io.y` `rows.len()` output rows of `width` pixels at stride `io.y_rs` that no other
/// thread touches, and a residual (if any) must cover the outputs from `io.offset` on.
pub(crate) unsafe fn gemm_tile(
    weights: &ConvWeights,
    (m, depth): (usize, usize),
    g: usize,
    rows: std::ops::Range<usize>,
    width: usize,
    io: &TileIo<'_>,
) {
    // SAFETY: the caller's contract, over all input rows.
    unsafe { gemm_tile_k(weights, (m, depth), g, rows, 0..depth, width, io) }
}

/// [`gemm_tile`] over the input rows `k` only (`io.x` at input row `k.start`): the partial
/// sum over those rows, then the epilogue.
///
/// # Safety
/// As [`gemm_tile`], with `k.len()` input rows at `io.x`; `k` lies within `0..depth`.
pub(crate) unsafe fn gemm_tile_k(
    weights: &ConvWeights,
    (m, depth): (usize, usize),
    g: usize,
    rows: std::ops::Range<usize>,
    k: std::ops::Range<usize>,
    width: usize,
    io: &TileIo<'_>,
) {
    assert!(k.end <= depth, "gemm tile: input rows beyond the weights");
    if let Some(packed) = &weights.packed {
        // SAFETY: the caller's contract; `packed` exists only on AVX-512.
        unsafe { micro::gemm_tile(packed, g, rows, k, width, io) };
        return;
    }
    // SAFETY: the caller's contract; the weight block (rows of group g, columns k) is
    // inside `raw`.
    unsafe {
        matmul(
            (rows.len(), width, k.len()),
            io.y,
            io.y_rs,
            false,
            weights
                .raw
                .as_ptr()
                .add((g * m + rows.start) * depth + k.start),
            (depth, 1),
            io.x,
            (io.x_rs, 1),
            Parallelism::None,
        );
    }
    for r in 0..rows.len() {
        // SAFETY: as above; this row segment belongs to this tile only.
        let out = unsafe { std::slice::from_raw_parts_mut(io.y.add(r * io.y_rs), width) };
        io.epilogue
            .apply_wide(io.channel + r, io.offset + r * io.y_rs, out);
    }
}

/// Mean of each `plane`-sized run of `x` into `y`.
pub fn global_avg_pool(x: &[f32], plane: usize, y: &mut [f32]) {
    assert_eq!(x.len(), y.len() * plane, "global pool: input length");
    for (out, src) in y.iter_mut().zip(x.chunks_exact(plane)) {
        *out = src.iter().sum::<f32>() / plane as f32;
    }
}

/// `y [n, k] = x [n, c] · weight [c, k] + bias [k]`.
pub fn linear(x: &[f32], weight: &[f32], bias: &[f32], n: usize, y: &mut [f32]) {
    let k = bias.len();
    let c = weight.len() / k.max(1);
    assert_eq!(weight.len(), c * k, "linear: weight length");
    assert_eq!(x.len(), n * c, "linear: input length");
    assert_eq!(y.len(), n * k, "linear: output length");
    for (out, row) in y.chunks_exact_mut(k).zip(x.chunks_exact(c)) {
        out.copy_from_slice(bias);
        for (&v, w) in row.iter().zip(weight.chunks_exact(k)) {
            out.iter_mut().zip(w).for_each(|(o, &w)| *o += v * w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::random;

    /// Direct convolution, then the epilogue, in f64.
    fn naive(x: &[f32], weight: &[f32], s: ConvShape, ep: &Epilogue) -> Vec<f32> {
        let (ho, wo) = s.out_hw();
        let (kh, kw) = s.kernel;
        let (k_in, m) = (s.c_in / s.groups, s.c_out / s.groups);
        let act = |a: Act, v: f64| {
            let (lo, hi) = bounds(a);
            v.max(lo as f64).min(hi as f64)
        };
        let mut y = vec![0.0f32; s.out_len()];
        for b in 0..s.n {
            for co in 0..s.c_out {
                let g = co / m;
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut acc = 0.0f64;
                        for ci in 0..k_in {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let ih = (oh * s.stride + i) as isize - s.pad as isize;
                                    let iw = (ow * s.stride + j) as isize - s.pad as isize;
                                    if ih < 0 || iw < 0 || ih >= s.h as isize || iw >= s.w as isize
                                    {
                                        continue;
                                    }
                                    let xi = ((b * s.c_in + g * k_in + ci) * s.h + ih as usize)
                                        * s.w
                                        + iw as usize;
                                    let wi = ((co * k_in + ci) * kh + i) * kw + j;
                                    acc += x[xi] as f64 * weight[wi] as f64;
                                }
                            }
                        }
                        let idx = ((b * s.c_out + co) * ho + oh) * wo + ow;
                        let mut v = act(ep.act, acc + ep.bias[co] as f64);
                        if let Some(r) = ep.residual {
                            v = act(ep.post, v + r[idx] as f64);
                        }
                        y[idx] = v as f32;
                    }
                }
            }
        }
        y
    }

    fn check(s: ConvShape, act: Act, residual: bool, post: Act) {
        let x = random(s.n * s.c_in * s.h * s.w, 1);
        let weight = random(s.c_out * s.c_in / s.groups * s.kernel.0 * s.kernel.1, 2);
        let bias = random(s.c_out, 3);
        let res = random(s.out_len(), 4);
        let ep = Epilogue {
            bias: &bias,
            act,
            residual: residual.then_some(&res[..]),
            post,
        };
        let want = naive(&x, &weight, s, &ep);
        let packed = ConvWeights::new(weight.clone(), s.c_out, s.groups);
        if s.c_out / s.groups >= 2 {
            assert_eq!(packed.is_packed(), micro::available(), "{s:?}");
        }
        for weights in [packed, ConvWeights::unpacked(weight.clone())] {
            let mut got = vec![f32::NAN; s.out_len()];
            conv2d(&x, &weights, s, &ep, &mut got);
            let path = if weights.is_packed() {
                "micro-kernel"
            } else {
                "GEMM"
            };
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{path} {s:?} at {i}: {a} vs {b}"
                );
            }
        }
    }

    fn shape(
        n: usize,
        c_in: usize,
        c_out: usize,
        hw: (usize, usize),
        k: usize,
        stride: usize,
        groups: usize,
    ) -> ConvShape {
        ConvShape {
            n,
            c_in,
            c_out,
            h: hw.0,
            w: hw.1,
            kernel: (k, k),
            stride,
            pad: k / 2,
            groups,
        }
    }

    #[test]
    fn pointwise_matches_the_naive_convolution() {
        check(
            shape(1, 24, 144, (17, 13), 1, 1, 1),
            Act::Relu6,
            false,
            Act::Identity,
        );
        check(
            shape(3, 64, 40, (5, 7), 1, 1, 1),
            Act::Identity,
            true,
            Act::Identity,
        );
        check(
            shape(2, 48, 96, (9, 9), 1, 1, 3),
            Act::Relu,
            true,
            Act::Relu,
        );
        check(
            shape(1, 320, 1280, (2, 3), 1, 1, 1),
            Act::Relu6,
            false,
            Act::Identity,
        );
        // Channel counts that leave a partial register tile, per group and overall.
        check(
            shape(2, 10, 20, (7, 9), 1, 1, 1),
            Act::Relu6,
            true,
            Act::Identity,
        );
        check(
            shape(1, 15, 45, (6, 6), 1, 1, 3),
            Act::Relu,
            false,
            Act::Identity,
        );
        // 7x7 maps: output channels in the vector lanes, 7 pixels a tile, with and without a
        // residual, three vectors and a partial one.
        check(
            shape(1, 160, 960, (7, 7), 1, 1, 1),
            Act::Relu6,
            false,
            Act::Identity,
        );
        check(
            shape(2, 96, 56, (7, 7), 1, 1, 1),
            Act::Identity,
            true,
            Act::Relu,
        );
        // Too few 48-channel tiles for the threads: the pixels are cut in runs of 7.
        check(
            shape(1, 96, 160, (7, 7), 1, 1, 1),
            Act::Relu6,
            true,
            Act::Identity,
        );
    }

    #[test]
    fn tiles_cover_every_output_once() {
        for (s, on) in [
            (shape(1, 960, 160, (7, 7), 1, 1, 1), true),
            (shape(1, 960, 160, (7, 7), 1, 1, 1), false),
            (shape(2, 240, 240, (7, 7), 1, 1, 3), true),
            (shape(1, 32, 100, (4, 5), 1, 1, 1), true),
            (shape(3, 64, 40, (56, 56), 1, 1, 1), true),
            (shape(1, 512, 512, (7, 7), 3, 1, 1), true),
            (shape(1, 3, 32, (224, 224), 3, 2, 1), true),
            (shape(1, 576, 96, (14, 14), 1, 1, 1), true),
        ] {
            let (ho, wo) = s.out_hw();
            let m = s.c_out / s.groups;
            let mut seen = vec![0u8; s.n * s.c_out * ho * wo];
            set_narrow_tiles(on);
            let all = tiles(&s);
            set_narrow_tiles(true);
            for t in &all {
                assert!(t.rows.start.is_multiple_of(16), "{s:?}: {t:?}");
                for r in t.rows.clone() {
                    for c in t.cols.clone() {
                        seen[((t.b * s.groups + t.g) * m + r) * ho * wo + c] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&k| k == 1), "{s:?}: {all:?}");
            if ho * wo <= micro::NARROW && s.is_direct() && on {
                let cut = narrow_tile_size(ho * wo, m, s.n * s.groups, 8);
                assert_eq!(cut.0, micro::LANE_ROWS, "{s:?}");
                assert!(cut.1.is_multiple_of(micro::LANE_PIXELS) || cut.1 >= ho * wo);
            }
        }
        // 160 channels of 49 pixels on 2 threads: 4 channel tiles, the pixels cut 28 + 21.
        assert_eq!(narrow_tile_size(49, 160, 1, 8), (48, 28));
        assert_eq!(narrow_tile_size(49, 960, 1, 8), (48, 49));
        // MobileNet's stem: 8 runs of pixels, each im2col built once, all 32 channels a tile.
        assert_eq!(tile_size(112 * 112, 32, 27, 1, 8, false), (32, 1568));
    }

    #[test]
    fn depthwise_applies_the_epilogue_per_plane() {
        check(
            shape(2, 16, 16, (11, 15), 3, 1, 16),
            Act::Relu6,
            false,
            Act::Identity,
        );
        check(
            shape(1, 8, 8, (20, 17), 3, 2, 8),
            Act::Relu,
            true,
            Act::Relu,
        );
        // Without a residual the kernels finish each sum in registers: narrow planes
        // (computed flat, then copied out) and stride-2 rows too.
        check(
            shape(2, 5, 5, (9, 7), 3, 1, 5),
            Act::Relu6,
            false,
            Act::Identity,
        );
        check(
            shape(1, 6, 6, (20, 33), 3, 2, 6),
            Act::Relu,
            false,
            Act::Identity,
        );
    }

    #[test]
    fn dense_kernels_and_strides_match_the_naive_convolution() {
        check(
            shape(2, 3, 32, (23, 19), 3, 2, 1),
            Act::Relu6,
            false,
            Act::Identity,
        );
        check(
            shape(1, 3, 16, (30, 26), 7, 2, 1),
            Act::Relu,
            false,
            Act::Identity,
        );
        check(
            shape(2, 32, 64, (9, 11), 1, 2, 1),
            Act::Identity,
            false,
            Act::Identity,
        );
        check(
            shape(1, 24, 24, (10, 6), 3, 1, 1),
            Act::Identity,
            true,
            Act::Relu,
        );
        check(
            shape(1, 12, 12, (8, 8), 5, 1, 12),
            Act::Relu,
            false,
            Act::Identity,
        );
    }

    #[test]
    fn strided_gathers_pick_every_stride_th_value() {
        let src: Vec<f32> = (0..100).map(|i| i as f32).collect();
        for stride in [1, 2, 3] {
            for len in [0, 1, 15, 16, 17, 31, 33] {
                let mut dst = vec![-1.0; len];
                gather(&src[1..], stride, &mut dst);
                let want: Vec<f32> = (0..len).map(|k| (1 + k * stride) as f32).collect();
                assert_eq!(dst, want, "stride {stride}, {len} values");
            }
        }
        // The last value may sit at the very end of the source.
        let mut dst = [0.0; 50];
        gather(&src, 2, &mut dst[..]);
        assert_eq!(dst[49], 98.0);
    }

    #[test]
    fn linear_and_global_pool_match_their_definitions() {
        let x = random(2 * 3 * 4, 6);
        let mut pooled = vec![0.0; 6];
        global_avg_pool(&x, 4, &mut pooled);
        assert!((pooled[5] - x[20..24].iter().sum::<f32>() / 4.0).abs() < 1e-6);
        let (w, b) = (random(3 * 2, 7), vec![0.5, -0.25]);
        let mut y = vec![0.0; 4];
        linear(&pooled, &w, &b, 2, &mut y);
        let want = pooled[3] * w[1] + pooled[4] * w[3] + pooled[5] * w[5] - 0.25;
        assert!((y[3] - want).abs() < 1e-6);
    }
}
