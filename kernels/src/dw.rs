//! Depthwise 3x3 convolution with padding 1 and stride 1 or 2, no bias: forward and backward.
//!
//! Semantics are those of PyTorch/burn `conv2d(x, weight, stride, padding = 1, groups = c)`
//! with `weight` of shape `[c, 1, 3, 3]` (cross-correlation, zero padding).
//!
//! # Design
//! Every plane is first copied into a small zero-padded scratch buffer, so the inner loops
//! have no border branches, and the convolution is computed on the *flattened* padded plane:
//! an output at flat index `q = oh * R + ow` (`R` being the padded row length) reads its nine
//! taps at `q + offset[tap]`, constant offsets, so one long vector loop over `q` covers the
//! whole plane whatever its width (the few junk columns between rows are dropped when the
//! result is copied out). Output rows of at least `DIRECT_COLS` pixels are instead computed
//! row by row straight into the output (the row tail with a masked store), which saves the
//! copy; at stride 1 four rows at a time, each input vector loaded once for the three output
//! rows it feeds. The outputs are never zero-filled first, since every element is written
//! once. An inference epilogue without a residual (bias, clamp) is applied to the
//! accumulators before the store. The padded buffers are kept per thread between calls.
//! All inner loops use 16-lane vectors (`Simd`: AVX-512, AVX2 + FMA, or portable arrays),
//! chosen once at run time. On AVX-512 the forward reads the planes in place instead, with
//! masked loads for the padding ([`direct`]; 1.25-2.4x faster per layer at batch 1); the
//! padded kernels below serve the other instruction sets and the backward pass.
//!
//! - Stride 1: the padded plane is `(h + 2) x (w + 2)`, tap `(kh, kw)` is at `kh * R + kw`.
//! - Stride 2: the padded plane is split into its four polyphase components
//!   `Q[ph][pw][a][b] = P[2a + ph][2b + pw]`, each `(ho + 1) x (wo + 1)`; every tap then
//!   reads one component at a constant offset, contiguously.
//! - Backward (one pass per channel, rayon over channels, batch loop inside, so each task
//!   owns `d_weight[c]`): the weight gradient is nine dot products of the (zero-padded)
//!   flat `dy` with the shifted input buffers; `dx` is the full correlation of `dy` with the
//!   flipped kernel (stride 1), or per polyphase component of the padded `dx` a 4-, 2-, 2- or
//!   1-tap correlation of `dy` that is then interleaved back (stride 2).

use rayon::prelude::*;

use crate::cpu::{Isa, isa, output_buffer};
use crate::fused::Epilogue;
use std::mem::MaybeUninit;

mod direct;
pub use direct::set_enabled as set_direct_enabled;

/// Vector width (f32 lanes) the inner loops are written for: one AVX-512 register.
const LANES: usize = 16;
/// Zero tail after every scratch buffer, so rounded-up vector loops never read past it.
const SLACK: usize = 2 * LANES + 8;
/// Rough number of outputs one forward rayon task should own.
const TASK_OUTPUTS: usize = 8192;

/// Output height or width of a 3x3, padding-1 convolution with `stride` over `size` pixels.
pub fn out_size(size: usize, stride: usize) -> usize {
    assert!(size >= 1, "dw::out_size: size must be at least 1");
    assert!(stride >= 1, "dw::out_size: stride must be at least 1");
    (size - 1) / stride + 1
}

/// Shape of a depthwise 3x3 convolution (padding 1): input `[n, c, h, w]`, stride 1 or 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwShape {
    /// Images.
    pub n: usize,
    /// Channels (one filter each).
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Stride, 1 or 2.
    pub stride: usize,
}

/// Depthwise 3x3 convolution with padding 1 and stride 1 or 2, no bias.
/// `x` is [n, c, h, w], `weight` is [c, 1, 3, 3]; returns y [n, c, out_size(h), out_size(w)].
pub fn forward(x: &[f32], weight: &[f32], s: DwShape) -> Vec<f32> {
    forward_isa(isa(), x, weight, s.n, s.c, s.h, s.w, s.stride)
}

/// [`forward`] into `y` (inference): each output plane gets `epilogue` (bias, activation,
/// residual) as soon as it is computed, while it is still in cache.
pub fn forward_fused(x: &[f32], weight: &[f32], s: DwShape, epilogue: &Epilogue, y: &mut [f32]) {
    let g = Geom::new(s.h, s.w, s.stride);
    assert_eq!(
        y.len(),
        s.n * s.c * g.ho * g.wo,
        "dw::forward_fused: y length"
    );
    epilogue.check(s.c, y.len());
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the kernel only stores
    // initialised values through the view.
    let y = unsafe { &mut *(std::ptr::from_mut(y) as *mut [MaybeUninit<f32>]) };
    forward_into(isa(), x, weight, s, y, (Some(epilogue), direct::enabled()));
}

/// The padded-plane buffers of [`forward_fused_serial`] for one plane size, kept by a caller
/// that convolves many planes of that size.
#[derive(Default)]
pub(crate) struct PlaneScratch {
    key: (usize, usize, usize),
    geom: Option<(Geom, Scratch)>,
}

impl PlaneScratch {
    fn get(&mut self, h: usize, w: usize, stride: usize) -> &mut (Geom, Scratch) {
        if self.key != (h, w, stride) || self.geom.is_none() {
            let g = Geom::new(h, w, stride);
            let scratch = match self.geom.take() {
                // The padding of the new geometry must be zero: refill, keeping the memory.
                Some((_, mut old)) => {
                    old.zero_for(&g);
                    old
                }
                None => Scratch::new(&g, false),
            };
            self.key = (h, w, stride);
            self.geom = Some((g, scratch));
        }
        self.geom.as_mut().expect("just set")
    }
}

/// [`forward_fused`] on the calling thread, for callers that split the work themselves
/// (the banded inverted-residual block, [`crate::block`]), of output rows `rows` of every
/// plane only (`y` holds `rows.len()` rows per plane; the epilogue has no residual).
///
/// The input planes lie `x_stride` floats apart (`h * w` for a tensor; a band of rows cut
/// from each plane of an image is read in place, with the image's plane size).
pub(crate) fn forward_fused_serial(
    (x, x_stride): (&[f32], usize),
    weight: &[f32],
    (s, rows): (DwShape, std::ops::Range<usize>),
    epilogue: &Epilogue,
    y: &mut [f32],
    planes: &mut PlaneScratch,
) {
    let (g, scratch) = planes.get(s.h, s.w, s.stride);
    let (planes_in, pin) = (s.n * s.c, s.h * s.w);
    assert!(x_stride >= pin, "dw::forward: planes overlap");
    assert!(
        planes_in == 0 || x.len() >= (planes_in - 1) * x_stride + pin,
        "dw::forward: x length"
    );
    assert_eq!(weight.len(), s.c * 9, "dw::forward: weight length");
    assert!(
        rows.start <= rows.end && rows.end <= g.ho,
        "dw::forward: rows"
    );
    assert_eq!(
        y.len(),
        planes_in * rows.len() * g.wo,
        "dw::forward: y length"
    );
    assert!(
        epilogue.residual.is_none(),
        "dw::forward: rows with a residual"
    );
    epilogue.check(s.c, planes_in * g.ho * g.wo);
    // SAFETY: as in `forward_fused`.
    let y = unsafe { &mut *(std::ptr::from_mut(y) as *mut [MaybeUninit<f32>]) };
    let job = ForwardJob {
        weight,
        c: s.c,
        p0: 0,
        epilogue: Some(epilogue),
        x_stride,
        direct: direct::enabled(),
        rows,
    };
    forward_task(isa(), g, x, y, &job, scratch);
}

/// 3x3 stride-2 pooling with padding 1 of the `[planes, h, w]` tensor `x` into `y`
/// ([`crate::pool::pool2d`]'s semantics) through the in-place kernels, or `false` (nothing
/// done) where they do not run: no AVX-512, or turned off.
pub(crate) fn pool_3x3_s2(x: &[f32], (h, w): (usize, usize), max: bool, y: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx512 && direct::enabled() {
        let (pin, pout) = (h * w, out_size(h, 2) * out_size(w, 2));
        assert_eq!(x.len() % pin, 0, "pool: input length");
        assert_eq!(y.len(), x.len() / pin * pout, "pool: output length");
        let per_task = (TASK_OUTPUTS / pin).max(1);
        y.par_chunks_mut(per_task * pout)
            .zip(x.par_chunks(per_task * pin))
            .for_each(|(yc, xc)| {
                for (yp, xp) in yc.chunks_exact_mut(pout).zip(xc.chunks_exact(pin)) {
                    // SAFETY: AVX-512 is present; each plane holds h * w inputs and ho * wo
                    // outputs (asserted).
                    unsafe {
                        if max {
                            direct::pool_3x3_s2::<true>((h, w), xp.as_ptr(), yp.as_mut_ptr());
                        } else {
                            direct::pool_3x3_s2::<false>((h, w), xp.as_ptr(), yp.as_mut_ptr());
                        }
                    }
                }
            });
        return true;
    }
    let _ = (x, h, w, max, y);
    false
}

/// Gradients of [`forward`] given `dy` [n, c, ho, wo]: (dx [n, c, h, w] when `need_input`,
/// d_weight [c, 1, 3, 3] when `need_weight`). Work not asked for is not done.
pub fn backward(
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    s: DwShape,
    need_input: bool,
    need_weight: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    backward_isa(
        isa(),
        x,
        weight,
        dy,
        s.n,
        s.c,
        s.h,
        s.w,
        s.stride,
        need_input,
        need_weight,
    )
}

// ---------------------------------------------------------------------------------------
// Instruction-set dispatch
// ---------------------------------------------------------------------------------------

/// One `LANES`-wide f32 vector and the few operations the kernels need. The generic
/// bodies are `#[inline(always)]` and instantiated inside `#[target_feature]` functions, so
/// the intrinsics below are only ever executed on CPUs that have them.
trait Simd {
    type V: Copy;
    /// Whether this is the AVX-512 instance (which may take [`direct`]'s path).
    const AVX512: bool = false;
    /// Reads `LANES` floats at `p` (unaligned).
    ///
    /// # Safety
    /// `p .. p + LANES` must be readable.
    unsafe fn load(p: *const f32) -> Self::V;
    /// Writes `LANES` floats at `p` (unaligned).
    ///
    /// # Safety
    /// `p .. p + LANES` must be writable.
    unsafe fn store(p: *mut f32, v: Self::V);
    fn splat(v: f32) -> Self::V;
    /// `a * b + c`.
    fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Sum of the lanes.
    fn reduce(v: Self::V) -> f32;
    /// `v` clamped to `[lo, hi]` lane by lane (max, then min, as the GEMM epilogue does).
    fn clamp(v: Self::V, lo: Self::V, hi: Self::V) -> Self::V;
    /// Reads `len < LANES` floats at `p` into the first lanes (the others are zero).
    ///
    /// # Safety
    /// `p .. p + len` must be readable.
    #[inline(always)]
    unsafe fn load_part(p: *const f32, len: usize) -> Self::V {
        let mut a = [0.0f32; LANES];
        // SAFETY: `len < LANES` floats readable by the caller's contract; `a` holds LANES.
        unsafe {
            std::ptr::copy_nonoverlapping(p, a.as_mut_ptr(), len.min(LANES));
            Self::load(a.as_ptr())
        }
    }
    /// Writes the first `len < LANES` lanes of `v` at `p`.
    ///
    /// # Safety
    /// `p .. p + len` must be writable.
    #[inline(always)]
    unsafe fn store_part(p: *mut f32, v: Self::V, len: usize) {
        let mut a = [0.0f32; LANES];
        // SAFETY: `a` holds LANES floats; `len < LANES` writable at `p` by contract.
        unsafe {
            Self::store(a.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(a.as_ptr(), p, len.min(LANES));
        }
    }
    /// `even[k] = src[2k]`, `odd[k] = src[2k + 1]` for `k < LANES`.
    ///
    /// # Safety
    /// `src` must hold `2 * LANES` readable floats, `even` and `odd` `LANES` writable ones.
    #[inline(always)]
    unsafe fn deinterleave(src: *const f32, even: *mut f32, odd: *mut f32) {
        // SAFETY: the caller's contract.
        unsafe { Self::deinterleave_part(src, even, odd, LANES) }
    }
    /// [`Simd::deinterleave`] of the first `pairs <= LANES` pairs only (a row's tail).
    ///
    /// # Safety
    /// `src` must hold `2 * pairs` readable floats, `even` and `odd` `pairs` writable ones.
    #[inline(always)]
    unsafe fn deinterleave_part(src: *const f32, even: *mut f32, odd: *mut f32, pairs: usize) {
        for k in 0..pairs.min(LANES) {
            // SAFETY: in bounds by the caller's contract.
            unsafe {
                *even.add(k) = *src.add(2 * k);
                *odd.add(k) = *src.add(2 * k + 1);
            }
        }
    }
    /// `dst[2k] = even[k]`, `dst[2k + 1] = odd[k]` for `k < LANES`.
    ///
    /// # Safety
    /// `even` and `odd` must hold `LANES` readable floats, `dst` `2 * LANES` writable ones.
    #[inline(always)]
    unsafe fn interleave(even: *const f32, odd: *const f32, dst: *mut f32) {
        for k in 0..LANES {
            // SAFETY: in bounds by the caller's contract.
            unsafe {
                *dst.add(2 * k) = *even.add(k);
                *dst.add(2 * k + 1) = *odd.add(k);
            }
        }
    }
}

/// Copies `len` floats from `src` to `dst` with vector moves (rows are short, so this beats
/// a `memmove` call).
///
/// # Safety
/// `src .. src + len` readable, `dst .. dst + len` writable, not overlapping.
#[inline(always)]
unsafe fn copy_raw<S: Simd>(src: *const f32, dst: *mut f32, len: usize) {
    let mut k = 0;
    // SAFETY (whole body): every access is below `len` on both sides.
    unsafe {
        while k + LANES <= len {
            S::store(dst.add(k), S::load(src.add(k)));
            k += LANES;
        }
        if k < len {
            S::store_part(dst.add(k), S::load_part(src.add(k), len - k), len - k);
        }
    }
}

/// Copies `dst.len()` floats of `src` into `dst`.
#[inline(always)]
fn copy<S: Simd>(src: &[f32], dst: &mut [f32]) {
    assert!(src.len() >= dst.len());
    // SAFETY: both ranges in bounds (asserted), distinct borrows cannot overlap.
    unsafe { copy_raw::<S>(src.as_ptr(), dst.as_mut_ptr(), dst.len()) }
}

/// Copies `dst.len()` floats of `src` into the (possibly uninitialised) `dst`.
#[inline(always)]
fn copy_out<S: Simd>(src: &[f32], dst: &mut [MaybeUninit<f32>]) {
    assert!(src.len() >= dst.len());
    // SAFETY: both ranges in bounds (asserted), distinct borrows cannot overlap; writing
    // f32s into MaybeUninit<f32> storage is always allowed.
    unsafe { copy_raw::<S>(src.as_ptr(), dst.as_mut_ptr().cast::<f32>(), dst.len()) }
}

/// AVX-512 vectors (`__m512`).
#[cfg(target_arch = "x86_64")]
struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Simd for Avx512 {
    type V = std::arch::x86_64::__m512;
    const AVX512: bool = true;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        // SAFETY: readable by the caller's contract; avx512f is enabled where this runs.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        // SAFETY: writable by the caller's contract; avx512f is enabled where this runs.
        unsafe { std::arch::x86_64::_mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    fn splat(v: f32) -> Self::V {
        // SAFETY: avx512f is enabled where this runs (see `Simd`).
        unsafe { std::arch::x86_64::_mm512_set1_ps(v) }
    }
    #[inline(always)]
    fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        // SAFETY: as in `splat`.
        unsafe { std::arch::x86_64::_mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn reduce(v: Self::V) -> f32 {
        // SAFETY: as in `splat`.
        unsafe { std::arch::x86_64::_mm512_reduce_add_ps(v) }
    }
    #[inline(always)]
    fn clamp(v: Self::V, lo: Self::V, hi: Self::V) -> Self::V {
        use std::arch::x86_64::*;
        // SAFETY: as in `splat`.
        unsafe { _mm512_min_ps(_mm512_max_ps(v, lo), hi) }
    }
    #[inline(always)]
    unsafe fn load_part(p: *const f32, len: usize) -> Self::V {
        let mask = ((1u32 << len.min(LANES)) - 1) as u16;
        // SAFETY: masked-off lanes are not accessed; the others are readable by contract.
        unsafe { std::arch::x86_64::_mm512_maskz_loadu_ps(mask, p) }
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f32, v: Self::V, len: usize) {
        let mask = ((1u32 << len.min(LANES)) - 1) as u16;
        // SAFETY: masked-off lanes are not accessed; the others are writable by contract.
        unsafe { std::arch::x86_64::_mm512_mask_storeu_ps(p, mask, v) }
    }
    #[inline(always)]
    unsafe fn deinterleave_part(src: *const f32, even: *mut f32, odd: *mut f32, pairs: usize) {
        use std::arch::x86_64::*;
        let mask = |len: usize| ((1u32 << len.min(LANES)) - 1) as u16;
        let (m_out, m_lo, m_hi) = (
            mask(pairs),
            mask(2 * pairs),
            mask((2 * pairs).saturating_sub(LANES)),
        );
        // SAFETY: the masks touch only the 2 * pairs inputs and pairs outputs the caller's
        // contract makes readable and writable; avx512f enabled.
        unsafe {
            let a = _mm512_maskz_loadu_ps(m_lo, src);
            let b = _mm512_maskz_loadu_ps(m_hi, src.add(LANES));
            let ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            _mm512_mask_storeu_ps(even, m_out, _mm512_permutex2var_ps(a, ie, b));
            _mm512_mask_storeu_ps(odd, m_out, _mm512_permutex2var_ps(a, io, b));
        }
    }
    #[inline(always)]
    unsafe fn interleave(even: *const f32, odd: *const f32, dst: *mut f32) {
        use std::arch::x86_64::*;
        // SAFETY: pointers in bounds by the caller's contract; avx512f enabled.
        unsafe {
            let e = _mm512_loadu_ps(even);
            let o = _mm512_loadu_ps(odd);
            let il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let ih =
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            _mm512_storeu_ps(dst, _mm512_permutex2var_ps(e, il, o));
            _mm512_storeu_ps(dst.add(LANES), _mm512_permutex2var_ps(e, ih, o));
        }
    }
}

/// AVX2 + FMA vectors (two `__m256`).
#[cfg(target_arch = "x86_64")]
struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Simd for Avx2 {
    type V = [std::arch::x86_64::__m256; 2];
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        use std::arch::x86_64::*;
        // SAFETY: readable by the caller's contract; avx2 is enabled where this runs.
        unsafe { [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))] }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        use std::arch::x86_64::*;
        // SAFETY: writable by the caller's contract; avx2 is enabled where this runs.
        unsafe {
            _mm256_storeu_ps(p, v[0]);
            _mm256_storeu_ps(p.add(8), v[1]);
        }
    }
    #[inline(always)]
    fn splat(v: f32) -> Self::V {
        // SAFETY: avx2 is enabled where this runs (see `Simd`).
        let s = unsafe { std::arch::x86_64::_mm256_set1_ps(v) };
        [s, s]
    }
    #[inline(always)]
    fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        use std::arch::x86_64::*;
        // SAFETY: avx2 and fma are enabled where this runs.
        unsafe {
            [
                _mm256_fmadd_ps(a[0], b[0], c[0]),
                _mm256_fmadd_ps(a[1], b[1], c[1]),
            ]
        }
    }
    #[inline(always)]
    fn reduce(v: Self::V) -> f32 {
        use std::arch::x86_64::*;
        let mut lanes = [0.0f32; 8];
        // SAFETY: avx2 enabled; `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(v[0], v[1])) };
        lanes.iter().sum()
    }
    #[inline(always)]
    fn clamp(v: Self::V, lo: Self::V, hi: Self::V) -> Self::V {
        use std::arch::x86_64::*;
        // SAFETY: avx2 is enabled where this runs.
        unsafe {
            [
                _mm256_min_ps(_mm256_max_ps(v[0], lo[0]), hi[0]),
                _mm256_min_ps(_mm256_max_ps(v[1], lo[1]), hi[1]),
            ]
        }
    }
}

/// Portable vectors: plain arrays, separate multiply and add.
struct Portable;

impl Simd for Portable {
    type V = [f32; LANES];
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        // SAFETY: readable by the caller's contract.
        unsafe { p.cast::<[f32; LANES]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        // SAFETY: writable by the caller's contract.
        unsafe { p.cast::<[f32; LANES]>().write_unaligned(v) }
    }
    #[inline(always)]
    fn splat(v: f32) -> Self::V {
        [v; LANES]
    }
    #[inline(always)]
    fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] * b[l] + c[l])
    }
    #[inline(always)]
    fn reduce(v: Self::V) -> f32 {
        v.iter().sum()
    }
    #[inline(always)]
    fn clamp(v: Self::V, lo: Self::V, hi: Self::V) -> Self::V {
        std::array::from_fn(|l| {
            let x = if v[l] > lo[l] { v[l] } else { lo[l] };
            if x < hi[l] { x } else { hi[l] }
        })
    }
}

/// Generates a dispatcher `$name` for the generic `#[inline(always)]` body `$body::<S>`:
/// AVX-512 and AVX2+FMA instances compiled with `#[target_feature]`, plus the portable one.
macro_rules! dispatch {
    ($name:ident, $body:ident, $avx512:ident, $avx2:ident, ($($arg:ident : $ty:ty),*) -> $ret:ty) => {
        #[allow(clippy::too_many_arguments)]
        fn $name(isa: Isa, $($arg: $ty),*) -> $ret {
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Isa::Avx512` is only produced when the CPU reports avx512f, avx2
                // and fma (see `isa`, and `available_isas` in the tests).
                Isa::Avx512 => unsafe { $avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Isa::Avx2` is only produced when the CPU reports avx2 and fma.
                Isa::Avx2 => unsafe { $avx2($($arg),*) },
                Isa::Portable => $body::<Portable>($($arg),*),
            }
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        fn $avx512($($arg: $ty),*) -> $ret {
            $body::<Avx512>($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        fn $avx2($($arg: $ty),*) -> $ret {
            $body::<Avx2>($($arg),*)
        }
    };
}

dispatch!(
    forward_task,
    forward_task_body,
    forward_task_avx512,
    forward_task_avx2,
    (g: &Geom, x: &[f32], y: &mut [MaybeUninit<f32>], job: &ForwardJob<'_>, scr: &mut Scratch) -> ()
);

dispatch!(
    backward_channel,
    backward_channel_body,
    backward_channel_avx512,
    backward_channel_avx2,
    (g: &Geom, job: &BackwardJob<'_>, ch: usize, scr: &mut Scratch) -> [f32; 9]
);

// ---------------------------------------------------------------------------------------
// Geometry of the flat padded layouts
// ---------------------------------------------------------------------------------------

/// Sizes and tap offsets of the flat padded layouts for one plane shape and stride.
#[derive(Clone, Debug)]
struct Geom {
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    stride: usize,
    /// Row length `R` of the flat layouts (`w + 2` for stride 1, `wo + 1` for stride 2).
    row: usize,
    /// Stride 2: size of one polyphase component, `(ho + 1) * R`.
    phase: usize,
    /// `phase` rounded up to whole vectors (plane stride of the `dx` components in `tmp`).
    phase_r: usize,
    /// Flat forward output length `ho * R`, rounded up to whole vectors.
    out_r: usize,
    /// Offset of tap `kh * 3 + kw` in the padded input buffer, relative to `q`.
    offs: [usize; 9],
    /// Length of the padded input buffer (`P` or the four `Q`), slack included.
    pad_len: usize,
    /// Length of the padded `dy` buffer, slack included.
    dpad_len: usize,
    /// Length of the output scratch.
    tmp_len: usize,
}

fn round_up(v: usize) -> usize {
    v.div_ceil(LANES) * LANES
}

/// Stride-2 polyphase position of kernel index `k`: (phase, shift in the component).
fn kphase(k: usize) -> (usize, usize) {
    match k {
        0 => (0, 0),
        1 => (1, 0),
        _ => (0, 1),
    }
}

impl Geom {
    fn new(h: usize, w: usize, stride: usize) -> Self {
        assert!(
            stride == 1 || stride == 2,
            "dw: only stride 1 or 2 is supported, got {stride}"
        );
        assert!(h >= 1 && w >= 1, "dw: h and w must be at least 1");
        let (ho, wo) = (out_size(h, stride), out_size(w, stride));
        let mut offs = [0usize; 9];
        if stride == 1 {
            let row = w + 2;
            for kh in 0..3 {
                for kw in 0..3 {
                    offs[kh * 3 + kw] = kh * row + kw;
                }
            }
            let out_r = round_up(ho * row);
            let plane = (h + 2) * row + SLACK;
            Geom {
                h,
                w,
                ho,
                wo,
                stride,
                row,
                phase: 0,
                phase_r: 0,
                out_r,
                offs,
                pad_len: plane,
                dpad_len: plane,
                tmp_len: out_r,
            }
        } else {
            let row = wo + 1;
            let phase = (ho + 1) * row;
            for kh in 0..3 {
                for kw in 0..3 {
                    let (ph, dr) = kphase(kh);
                    let (pw, dc) = kphase(kw);
                    offs[kh * 3 + kw] = (ph * 2 + pw) * phase + dr * row + dc;
                }
            }
            let out_r = round_up(ho * row);
            let phase_r = round_up(phase);
            Geom {
                h,
                w,
                ho,
                wo,
                stride,
                row,
                phase,
                phase_r,
                out_r,
                offs,
                pad_len: 4 * phase + SLACK,
                dpad_len: (ho + 2) * row + SLACK,
                tmp_len: out_r.max(4 * phase_r),
            }
        }
    }

    /// Copies one input plane into the padded buffer (padding positions are never written,
    /// so they stay zero from the buffer's allocation).
    #[inline(always)]
    fn fill_input<S: Simd>(&self, xp: &[f32], pad: &mut [f32]) {
        let (w, row) = (self.w, self.row);
        if self.stride == 1 {
            for (i, src) in xp.chunks_exact(w).enumerate() {
                copy::<S>(src, &mut pad[(i + 1) * row + 1..][..w]);
            }
        } else {
            // x[i][j] = P[i + 1][j + 1] = Q[(i+1)&1][(j+1)&1][(i+1)>>1][(j+1)>>1]:
            // x[i][2m] -> Q[ph][1][a][m], x[i][2m + 1] -> Q[ph][0][a][m + 1].
            let half = w / 2;
            for (i, src) in xp.chunks_exact(w).enumerate() {
                let (ph, a) = ((i + 1) & 1, (i + 1) >> 1);
                let even = (ph * 2) * self.phase + a * row;
                let odd = (ph * 2 + 1) * self.phase + a * row;
                let (lo, hi) = pad.split_at_mut(odd);
                let q0 = &mut lo[even + 1..][..half];
                let q1 = &mut hi[..w.div_ceil(2)];
                let mut m = 0;
                while m + LANES <= half {
                    // SAFETY: 2m + 2 LANES <= 2 half <= w = src.len(), and
                    // m + LANES <= half <= q0.len(), q1.len().
                    unsafe {
                        S::deinterleave(
                            src.as_ptr().add(2 * m),
                            q1.as_mut_ptr().add(m),
                            q0.as_mut_ptr().add(m),
                        )
                    };
                    m += LANES;
                }
                if m < half {
                    // SAFETY: the last half - m < LANES pairs: 2 half <= w values of src,
                    // half entries of q0 and q1.
                    unsafe {
                        S::deinterleave_part(
                            src.as_ptr().add(2 * m),
                            q1.as_mut_ptr().add(m),
                            q0.as_mut_ptr().add(m),
                            half - m,
                        )
                    };
                }
                if w % 2 == 1 {
                    q1[half] = src[w - 1];
                }
            }
        }
    }

    /// Copies one `dy` plane into the padded `dy` buffer: `dy[oh][ow]` goes to
    /// `(oh + 1) * R + ow + 1`, every other position stays zero.
    #[inline(always)]
    fn fill_grad<S: Simd>(&self, dyp: &[f32], dpad: &mut [f32]) {
        let (wo, row) = (self.wo, self.row);
        for (oh, src) in dyp.chunks_exact(wo).enumerate() {
            copy::<S>(src, &mut dpad[(oh + 1) * row + 1..][..wo]);
        }
    }

    /// Copies the valid columns of a flat result (`rows` rows of length `R`) out.
    #[inline(always)]
    fn copy_rows<S: Simd>(&self, flat: &[f32], dst: &mut [MaybeUninit<f32>], cols: usize) {
        for (r, d) in dst.chunks_exact_mut(cols).enumerate() {
            copy_out::<S>(&flat[r * self.row..][..cols], d);
        }
    }

    /// Stride 2: interleaves the four polyphase components of the padded `dx` (in `tmp`,
    /// component `ph * 2 + pw` at `(ph * 2 + pw) * phase_r`) back into the `dx` plane.
    #[inline(always)]
    fn interleave_dx<S: Simd>(&self, tmp: &[f32], dxp: &mut [MaybeUninit<f32>]) {
        let (w, row) = (self.w, self.row);
        let half = w / 2;
        for (i, dst) in dxp.chunks_exact_mut(w).enumerate() {
            let (ph, a) = ((i + 1) & 1, (i + 1) >> 1);
            let q0 = &tmp[(ph * 2) * self.phase_r + a * row + 1..][..half];
            let q1 = &tmp[(ph * 2 + 1) * self.phase_r + a * row..][..w.div_ceil(2)];
            let mut m = 0;
            while m + LANES <= half {
                // SAFETY: m + LANES <= half <= q0.len(), q1.len(), and
                // 2m + 2 LANES <= 2 half <= w = dst.len().
                unsafe {
                    S::interleave(
                        q1.as_ptr().add(m),
                        q0.as_ptr().add(m),
                        dst.as_mut_ptr().add(2 * m).cast::<f32>(),
                    )
                };
                m += LANES;
            }
            for m in m..half {
                dst[2 * m].write(q1[m]);
                dst[2 * m + 1].write(q0[m]);
            }
            if w % 2 == 1 {
                dst[w - 1].write(q1[half]);
            }
        }
    }
}

/// Scratch buffers of a backward task or a forward thread (zeroed once per geometry; only the
/// positions that hold data are rewritten, so all padding stays zero across planes).
struct Scratch {
    pad: Vec<f32>,
    dpad: Vec<f32>,
    tmp: Vec<f32>,
}

impl Scratch {
    /// Forward buffers for `g`, all zero, reusing this one's memory.
    fn zero_for(&mut self, g: &Geom) {
        for (buf, len) in [(&mut self.pad, g.pad_len), (&mut self.tmp, g.tmp_len)] {
            buf.clear();
            buf.resize(len, 0.0);
        }
    }

    fn new(g: &Geom, with_dpad: bool) -> Self {
        Scratch {
            pad: vec![0.0; g.pad_len],
            dpad: if with_dpad {
                vec![0.0; g.dpad_len]
            } else {
                Vec::new()
            },
            tmp: vec![0.0; g.tmp_len],
        }
    }
}

// ---------------------------------------------------------------------------------------
// Vector kernels
// ---------------------------------------------------------------------------------------

/// What a forward kernel does to each sum before storing it: adds `bias` and clamps to
/// `[lo, hi]` (an inference epilogue without a residual, applied in registers so the plane
/// is not read back).
#[derive(Clone, Copy)]
struct Finish {
    bias: f32,
    lo: f32,
    hi: f32,
}

impl Finish {
    /// The sum as it is (kernels instantiated with `FIN = false` ignore it anyway).
    const NONE: Finish = Finish {
        bias: 0.0,
        lo: f32::NEG_INFINITY,
        hi: f32::INFINITY,
    };

    /// The epilogue of `channel` when it has no residual (which needs the flat output index).
    fn of(epilogue: &Epilogue, channel: usize) -> Option<Finish> {
        if epilogue.residual.is_some() {
            return None;
        }
        let (lo, hi) = crate::fused::bounds(epilogue.act);
        Some(Finish {
            bias: epilogue.bias[channel],
            lo,
            hi,
        })
    }

    /// The accumulator's start and the clamp bounds as vectors.
    #[inline(always)]
    fn vectors<S: Simd, const FIN: bool>(&self) -> (S::V, S::V, S::V) {
        let start = if FIN { self.bias } else { 0.0 };
        (S::splat(start), S::splat(self.lo), S::splat(self.hi))
    }
}

/// `out[q] = sum_t wts[t] * src[q + offs[t]]` for every `q` of `out` (a whole number of
/// vectors), finished by `fin` when `FIN`.
#[inline(always)]
fn conv<S: Simd, const N: usize, const FIN: bool>(
    src: &[f32],
    offs: &[usize; N],
    wts: &[f32; N],
    fin: Finish,
    out: &mut [f32],
) {
    assert!(out.len().is_multiple_of(LANES));
    let max_off = offs.iter().copied().max().unwrap_or(0);
    assert!(src.len() >= out.len() + max_off);
    let wv: [S::V; N] = std::array::from_fn(|t| S::splat(wts[t]));
    let (start, lo, hi) = fin.vectors::<S, FIN>();
    let sp = src.as_ptr();
    let op = out.as_mut_ptr();
    for q in (0..out.len()).step_by(LANES) {
        let mut acc = start;
        for t in 0..N {
            // SAFETY: q + LANES <= out.len() and offs[t] <= max_off, so the read ends at
            // most at out.len() + max_off <= src.len() (asserted above).
            acc = S::fmadd(wv[t], unsafe { S::load(sp.add(q + offs[t])) }, acc);
        }
        if FIN {
            acc = S::clamp(acc, lo, hi);
        }
        // SAFETY: q + LANES <= out.len().
        unsafe { S::store(op.add(q), acc) };
    }
}

/// Row-wise `conv` written straight into the output: row `r` of `dst` (`cols` wide) gets
/// `sum_t wts[t] * src[r * row + k + offs[t]]` for `k < cols`, finished by `fin` when `FIN`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn conv_rows<S: Simd, const N: usize, const FIN: bool>(
    src: &[f32],
    offs: &[usize; N],
    wts: &[f32; N],
    fin: Finish,
    row: usize,
    dst: &mut [MaybeUninit<f32>],
    cols: usize,
) {
    let rows = dst.len() / cols;
    assert_eq!(rows * cols, dst.len());
    if rows == 0 {
        return;
    }
    let max_off = offs.iter().copied().max().unwrap_or(0);
    // The last (partial) vector of a row reads whole vectors, up to round_up(cols) columns.
    assert!(src.len() >= (rows - 1) * row + round_up(cols) + max_off);
    let done = if N == 9 && *offs == stride1_offsets(row) {
        // SAFETY: `offs` is the stride-1 pattern, whose reads the assertion above bounds.
        unsafe { conv_row_blocks::<S, FIN>(src, wts[..].try_into().unwrap(), fin, row, dst, cols) }
    } else {
        0
    };
    let wv: [S::V; N] = std::array::from_fn(|t| S::splat(wts[t]));
    let (start, lo, hi) = fin.vectors::<S, FIN>();
    let sp = src.as_ptr();
    for (r, d) in dst.chunks_exact_mut(cols).enumerate().skip(done) {
        let dp = d.as_mut_ptr().cast::<f32>();
        let base = r * row;
        let mut k = 0;
        while k < cols {
            let mut acc = start;
            for t in 0..N {
                // SAFETY: base + k + offs[t] + LANES <= (rows - 1) row + round_up(cols)
                // + max_off <= src.len() (asserted above).
                acc = S::fmadd(wv[t], unsafe { S::load(sp.add(base + k + offs[t])) }, acc);
            }
            if FIN {
                acc = S::clamp(acc, lo, hi);
            }
            // SAFETY: k < cols = d.len(); the stores stay below cols.
            unsafe {
                if k + LANES <= cols {
                    S::store(dp.add(k), acc);
                } else {
                    S::store_part(dp.add(k), acc, cols - k);
                }
            }
            k += LANES;
        }
    }
}

/// The taps' offsets of a stride-1 3x3 convolution over padded rows of `row` floats.
fn stride1_offsets<const N: usize>(row: usize) -> [usize; N] {
    std::array::from_fn(|t| (t / 3) * row + t % 3)
}

/// Output rows [`conv_row_blocks`] computes together.
const ROW_BLOCK: usize = 4;

/// [`conv_rows`] for the stride-1 taps, [`ROW_BLOCK`] output rows at a time: each input
/// vector is loaded once for the up to three output rows it feeds (0.5 loads per FMA
/// instead of 1). Returns how many leading rows of `dst` it wrote (whole blocks only).
///
/// # Safety
/// `src` must hold `(rows - 1) * row + round_up(cols) + 2 * row + 2` floats, where `rows`
/// is `dst.len() / cols` (what [`conv_rows`] asserts).
#[inline(always)]
unsafe fn conv_row_blocks<S: Simd, const FIN: bool>(
    src: &[f32],
    wts: &[f32; 9],
    fin: Finish,
    row: usize,
    dst: &mut [MaybeUninit<f32>],
    cols: usize,
) -> usize {
    let blocks = dst.len() / cols / ROW_BLOCK;
    let wv: [S::V; 9] = std::array::from_fn(|t| S::splat(wts[t]));
    let (start, lo, hi) = fin.vectors::<S, FIN>();
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr().cast::<f32>());
    for r0 in (0..blocks * ROW_BLOCK).step_by(ROW_BLOCK) {
        let mut k = 0;
        while k < cols {
            let mut acc = [start; ROW_BLOCK];
            for i in 0..ROW_BLOCK + 2 {
                // SAFETY: the last read ends at (r0 + ROW_BLOCK + 1) row + k + 2 + LANES
                // <= (rows - 1) row + 2 row + round_up(cols) + 2 (the caller's bound).
                let v: [S::V; 3] =
                    std::array::from_fn(|kw| unsafe { S::load(sp.add((r0 + i) * row + k + kw)) });
                // Input row r0 + i feeds output row r0 + j through kernel row i - j.
                for (j, acc_j) in acc.iter_mut().enumerate() {
                    if i >= j && i - j < 3 {
                        for (kw, &vk) in v.iter().enumerate() {
                            *acc_j = S::fmadd(wv[(i - j) * 3 + kw], vk, *acc_j);
                        }
                    }
                }
            }
            for (j, &a) in acc.iter().enumerate() {
                let a = if FIN { S::clamp(a, lo, hi) } else { a };
                // SAFETY: row r0 + j < rows of `dst`; the stores stay below cols.
                unsafe {
                    let out = dp.add((r0 + j) * cols + k);
                    if k + LANES <= cols {
                        S::store(out, a);
                    } else {
                        S::store_part(out, a, cols - k);
                    }
                }
            }
            k += LANES;
        }
    }
    blocks * ROW_BLOCK
}

/// Output rows at least this wide are computed row by row straight into the output;
/// narrower ones on the flat plane and then copied out.
const DIRECT_COLS: usize = 14;

/// `[sum_q d[q] * src[q + offs[t]] for t in 0..9]` over all of `d` (a whole number of
/// vectors), accumulated in per-lane f32 sums reduced at the end.
#[inline(always)]
fn dots9<S: Simd>(d: &[f32], src: &[f32], offs: &[usize; 9]) -> [f32; 9] {
    assert!(d.len().is_multiple_of(LANES));
    let max_off = offs.iter().copied().max().unwrap_or(0);
    assert!(src.len() >= d.len() + max_off);
    let sp = src.as_ptr();
    let dp = d.as_ptr();
    let mut acc = [S::splat(0.0); 9];
    for q in (0..d.len()).step_by(LANES) {
        // SAFETY: q + LANES <= d.len().
        let dv = unsafe { S::load(dp.add(q)) };
        for t in 0..9 {
            // SAFETY: as in `conv`: q + offs[t] + LANES <= d.len() + max_off <= src.len().
            acc[t] = S::fmadd(dv, unsafe { S::load(sp.add(q + offs[t])) }, acc[t]);
        }
    }
    acc.map(S::reduce)
}

// ---------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn forward_isa(
    isa: Isa,
    x: &[f32],
    weight: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    stride: usize,
) -> Vec<f32> {
    let len = n * c * out_size(h, stride) * out_size(w, stride);
    let mut y = output_buffer(len);
    let s = DwShape { n, c, h, w, stride };
    let y_all = &mut y.spare_capacity_mut()[..len];
    forward_into(isa, x, weight, s, y_all, (None, direct::enabled()));
    // SAFETY: `forward_into` wrote every plane of y whole (each output row is stored
    // whole), and capacity >= len.
    unsafe { y.set_len(len) };
    y
}

/// The forward pass into `y` (`n * c` output planes), with an optional per-plane epilogue,
/// through the in-place kernels ([`direct`]) when `direct` and the ISA has them.
fn forward_into(
    isa: Isa,
    x: &[f32],
    weight: &[f32],
    s: DwShape,
    y: &mut [MaybeUninit<f32>],
    (epilogue, direct): (Option<&Epilogue>, bool),
) {
    let g = Geom::new(s.h, s.w, s.stride);
    assert_eq!(x.len(), s.n * s.c * s.h * s.w, "dw::forward: x length");
    assert_eq!(weight.len(), s.c * 9, "dw::forward: weight length");
    let (pin, pout) = (s.h * s.w, g.ho * g.wo);
    assert_eq!(y.len(), s.n * s.c * pout, "dw::forward: y length");
    let ppt = (TASK_OUTPUTS / pout.max(pin)).max(1);
    y.par_chunks_mut(ppt * pout)
        .zip(x.par_chunks(ppt * pin))
        .enumerate()
        .for_each(|(ti, (yc, xc))| {
            let job = ForwardJob {
                weight,
                c: s.c,
                p0: ti * ppt,
                epilogue,
                x_stride: pin,
                direct,
                rows: 0..g.ho,
            };
            let mut planes = FORWARD_PLANES.take();
            let (_, scr) = planes.get(s.h, s.w, s.stride);
            forward_task(isa, &g, xc, yc, &job, scr);
            FORWARD_PLANES.set(planes);
        });
}

thread_local! {
    /// Each thread's padded-plane buffers for [`forward_into`], kept between calls (a
    /// network's many small depthwise layers would otherwise allocate and zero them per task).
    static FORWARD_PLANES: std::cell::Cell<PlaneScratch> = std::cell::Cell::new(PlaneScratch::default());
}

/// What a forward task needs besides its planes: the filters, the channel count, the index
/// of its first plane in the batch, and the epilogue of each finished plane.
struct ForwardJob<'a> {
    weight: &'a [f32],
    c: usize,
    p0: usize,
    epilogue: Option<&'a Epilogue<'a>>,
    /// Floats between the starts of consecutive input planes.
    x_stride: usize,
    /// Whether the AVX-512 instance takes the in-place kernels ([`direct`]).
    direct: bool,
    /// The output rows of each plane computed (and stored, one after the other, in `y`).
    rows: std::ops::Range<usize>,
}

/// Output rows `rows` of one plane from its padded input plane `pad`: row by row straight
/// into `yp` when rows are wide, else flat into `tmp` (every row) and copied out.
#[inline(always)]
fn forward_plane<S: Simd, const FIN: bool>(
    (g, rows): (&Geom, &std::ops::Range<usize>),
    pad: &[f32],
    wt: &[f32; 9],
    fin: Finish,
    tmp: &mut [f32],
    yp: &mut [MaybeUninit<f32>],
) {
    // The taps of output row r start r * row floats into `pad` (both layouts).
    let from = rows.start * g.row;
    if g.wo >= DIRECT_COLS {
        conv_rows::<S, 9, FIN>(&pad[from..], &g.offs, wt, fin, g.row, yp, g.wo);
    } else {
        let out = &mut tmp[..g.out_r];
        conv::<S, 9, FIN>(pad, &g.offs, wt, fin, out);
        g.copy_rows::<S>(&out[from..], yp, g.wo);
    }
}

/// Forward of the consecutive planes `x` -> `y`, the first one being plane `job.p0` of the
/// batch (its channel is `p0 % c`).
#[inline(always)]
fn forward_task_body<S: Simd>(
    g: &Geom,
    x: &[f32],
    y: &mut [MaybeUninit<f32>],
    job: &ForwardJob<'_>,
    scr: &mut Scratch,
) {
    let (pin, pout) = (g.h * g.w, job.rows.len() * g.wo);
    let direct = S::AVX512 && job.direct;
    for (k, yp) in y.chunks_exact_mut(pout).enumerate() {
        let xp = &x[k * job.x_stride..][..pin];
        let ch = (job.p0 + k) % job.c;
        let wt: &[f32; 9] = job.weight[ch * 9..ch * 9 + 9].try_into().unwrap();
        let finish = job.epilogue.and_then(|e| Finish::of(e, ch));
        if direct {
            #[cfg(target_arch = "x86_64")]
            {
                let (st, hw) = ((g.stride, job.rows.clone()), (g.h, g.w));
                let (xp, yp) = (xp.as_ptr(), yp.as_mut_ptr().cast::<f32>());
                // SAFETY: `direct` holds only in the AVX-512 instance; the plane holds h * w
                // readable floats and `yp` ho * wo writable ones.
                unsafe {
                    match finish {
                        Some(fin) => direct::plane::<true>(st, hw, xp, wt, fin, yp),
                        None => direct::plane::<false>(st, hw, xp, wt, Finish::NONE, yp),
                    }
                }
            }
        } else {
            g.fill_input::<S>(xp, &mut scr.pad);
            match finish {
                Some(fin) => {
                    forward_plane::<S, true>((g, &job.rows), &scr.pad, wt, fin, &mut scr.tmp, yp)
                }
                None => {
                    let (gr, tmp) = ((g, &job.rows), &mut scr.tmp);
                    forward_plane::<S, false>(gr, &scr.pad, wt, Finish::NONE, tmp, yp)
                }
            }
        }
        if let (Some(epilogue), None) = (job.epilogue, finish) {
            // SAFETY: the plane was written whole just above.
            let plane = unsafe { &mut *(std::ptr::from_mut(yp) as *mut [f32]) };
            epilogue.apply(ch, (job.p0 + k) * pout, plane);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------

/// Raw `dx` pointer shared by the channel tasks, which write disjoint planes.
#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);

// SAFETY: the pointer is only used to build slices of disjoint planes, one task per
// channel (see `backward_channel_body`), while the owning Vec outlives the parallel loop.
unsafe impl Send for SyncPtr {}
// SAFETY: as above.
unsafe impl Sync for SyncPtr {}

/// Everything a backward channel task reads.
struct BackwardJob<'a> {
    x: &'a [f32],
    weight: &'a [f32],
    dy: &'a [f32],
    n: usize,
    c: usize,
    dx: Option<SyncPtr>,
    need_weight: bool,
}

#[allow(clippy::too_many_arguments)]
fn backward_isa(
    isa: Isa,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    stride: usize,
    need_input: bool,
    need_weight: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let g = Geom::new(h, w, stride);
    assert_eq!(x.len(), n * c * h * w, "dw::backward: x length");
    assert_eq!(weight.len(), c * 9, "dw::backward: weight length");
    assert_eq!(dy.len(), n * c * g.ho * g.wo, "dw::backward: dy length");
    if !need_input && !need_weight {
        return (None, None);
    }
    let len = n * c * h * w;
    let mut dx = need_input.then(|| output_buffer(len));
    let job = BackwardJob {
        x,
        weight,
        dy,
        n,
        c,
        dx: dx
            .as_mut()
            .map(|v| SyncPtr(v.spare_capacity_mut().as_mut_ptr().cast::<f32>())),
        need_weight,
    };
    let dws: Vec<[f32; 9]> = (0..c)
        .into_par_iter()
        .map_init(
            || Scratch::new(&g, true),
            |scr, ch| backward_channel(isa, &g, &job, ch, scr),
        )
        .collect();
    if let Some(v) = dx.as_mut() {
        // SAFETY: the channel tasks have fully written every plane of dx (each row is
        // stored whole), and capacity >= len.
        unsafe { v.set_len(len) };
    }
    let dw = need_weight.then(|| dws.concat());
    (dx, dw)
}

/// Backward of channel `ch` over the whole batch: writes its `dx` planes (when asked) and
/// returns its weight gradient (zeros when not asked).
#[inline(always)]
fn backward_channel_body<S: Simd>(
    g: &Geom,
    job: &BackwardJob<'_>,
    ch: usize,
    scr: &mut Scratch,
) -> [f32; 9] {
    let (pin, pout) = (g.h * g.w, g.ho * g.wo);
    let wt: [f32; 9] = job.weight[ch * 9..ch * 9 + 9].try_into().unwrap();
    let mut wrev = wt;
    wrev.reverse();
    let row = g.row;
    let mut dw = [0.0f64; 9];
    for b in 0..job.n {
        let p = b * job.c + ch;
        let dyp = &job.dy[p * pout..][..pout];
        g.fill_grad::<S>(dyp, &mut scr.dpad);
        if job.need_weight {
            let xp = &job.x[p * pin..][..pin];
            g.fill_input::<S>(xp, &mut scr.pad);
            // Flat dy with zero junk columns: d[q] = dpad[q + R + 1].
            let d = &scr.dpad[row + 1..][..g.out_r];
            let part = dots9::<S>(d, &scr.pad, &g.offs);
            for t in 0..9 {
                dw[t] += f64::from(part[t]);
            }
        }
        if let Some(ptr) = job.dx {
            // SAFETY: plane p = b * c + ch lies inside the n * c * h * w dx buffer, which
            // outlives the parallel loop; only the task of channel ch touches it.
            // The slice is of MaybeUninit, so building it over unwritten memory is fine.
            let dxp = unsafe {
                std::slice::from_raw_parts_mut(ptr.0.add(p * pin).cast::<MaybeUninit<f32>>(), pin)
            };
            if g.stride == 1 {
                // dx[i][j] = sum w[kh][kw] * dpad[q + (2 - kh) R + (2 - kw)], q = i R + j.
                if g.w >= DIRECT_COLS {
                    conv_rows::<S, 9, false>(
                        &scr.dpad,
                        &g.offs,
                        &wrev,
                        Finish::NONE,
                        row,
                        dxp,
                        g.w,
                    );
                } else {
                    let out = &mut scr.tmp[..g.out_r];
                    conv::<S, 9, false>(&scr.dpad, &g.offs, &wrev, Finish::NONE, out);
                    g.copy_rows::<S>(out, dxp, g.w);
                }
            } else {
                // Polyphase component (ph, pw) of the padded dx, at a = (q / R, b = q % R):
                // sum over taps of that phase of w * dy[a - dr][b - dc]
                // = w * dpad[q + (1 - dr) R + (1 - dc)].
                let (r1, r0) = (row + 1, row);
                let pr = g.phase_r;
                let (t00, rest) = scr.tmp.split_at_mut(pr);
                let (t01, rest) = rest.split_at_mut(pr);
                let (t10, rest) = rest.split_at_mut(pr);
                let t11 = &mut rest[..pr];
                let (dp, none) = (&scr.dpad, Finish::NONE);
                conv::<S, 4, false>(
                    dp,
                    &[r1, r0, 1, 0],
                    &[wt[0], wt[2], wt[6], wt[8]],
                    none,
                    t00,
                );
                conv::<S, 2, false>(dp, &[r1, 1], &[wt[1], wt[7]], none, t01);
                conv::<S, 2, false>(dp, &[r1, r0], &[wt[3], wt[5]], none, t10);
                conv::<S, 1, false>(dp, &[r1], &[wt[4]], none, t11);
                g.interleave_dx::<S>(&scr.tmp, dxp);
            }
        }
    }
    dw.map(|v| v as f32)
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Code paths this CPU can run (all of them are checked against the reference).
    fn available_isas() -> Vec<Isa> {
        crate::cpu::available()
    }

    fn rand_vec(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// Calls `tap(y_index, x_index, weight_index)` for every in-bounds tap of a 3x3
    /// depthwise convolution with padding 1 and stride `s` over `[n, c, h, w]`.
    fn for_each_tap(
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        s: usize,
        mut tap: impl FnMut(usize, usize, usize),
    ) {
        let (ho, wo) = ((h - 1) / s + 1, (w - 1) / s + 1);
        for b in 0..n {
            for ch in 0..c {
                for oh in 0..ho {
                    for ow in 0..wo {
                        for kh in 0..3 {
                            for kw in 0..3 {
                                let ih = (oh * s + kh) as isize - 1;
                                let iw = (ow * s + kw) as isize - 1;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                    continue;
                                }
                                let xi = ((b * c + ch) * h + ih as usize) * w + iw as usize;
                                let yi = ((b * c + ch) * ho + oh) * wo + ow;
                                tap(yi, xi, ch * 9 + kh * 3 + kw);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Naive forward, f64 accumulation.
    #[allow(clippy::too_many_arguments)]
    fn ref_forward(
        x: &[f32],
        wt: &[f32],
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        s: usize,
    ) -> Vec<f64> {
        let (ho, wo) = ((h - 1) / s + 1, (w - 1) / s + 1);
        let mut y = vec![0.0f64; n * c * ho * wo];
        for_each_tap(n, c, h, w, s, |yi, xi, k| {
            y[yi] += f64::from(wt[k]) * f64::from(x[xi]);
        });
        y
    }

    /// Naive backward by scattering every output's gradient: (dx, d_weight, sum |terms| of
    /// each d_weight entry).
    #[allow(clippy::too_many_arguments)]
    fn ref_backward(
        x: &[f32],
        wt: &[f32],
        dy: &[f32],
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        s: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut dx = vec![0.0f64; n * c * h * w];
        let mut dw = vec![0.0f64; c * 9];
        let mut dw_abs = vec![0.0f64; c * 9];
        for_each_tap(n, c, h, w, s, |yi, xi, k| {
            let g = f64::from(dy[yi]);
            dx[xi] += f64::from(wt[k]) * g;
            dw[k] += f64::from(x[xi]) * g;
            dw_abs[k] += (f64::from(x[xi]) * g).abs();
        });
        (dx, dw, dw_abs)
    }

    /// Tolerance for y and dx: |a - b| <= 1e-5 + 1e-4 * max |ref|. Returns the first
    /// violation, if any.
    fn check_dense(got: &[f32], want: &[f64]) -> Result<(), String> {
        if got.len() != want.len() {
            return Err(format!("length {} != {}", got.len(), want.len()));
        }
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let tol = 1e-5 + 1e-4 * scale;
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            if (f64::from(a) - b).abs() > tol || !a.is_finite() {
                return Err(format!("index {i}: got {a}, want {b} (tol {tol})"));
            }
        }
        Ok(())
    }

    /// Tolerance for d_weight: |a - b| <= 1e-6 + 1e-4 * sum |terms| of that entry.
    fn check_dw(got: &[f32], want: &[f64], abs: &[f64]) -> Result<(), String> {
        if got.len() != want.len() {
            return Err(format!("length {} != {}", got.len(), want.len()));
        }
        for (i, ((&a, &b), &s)) in got.iter().zip(want).zip(abs).enumerate() {
            let tol = 1e-6 + 1e-4 * s;
            if (f64::from(a) - b).abs() > tol || !a.is_finite() {
                return Err(format!("d_weight {i}: got {a}, want {b} (tol {tol})"));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn check_case(rng: &mut ChaCha8Rng, n: usize, c: usize, h: usize, w: usize, s: usize) {
        let (ho, wo) = (out_size(h, s), out_size(w, s));
        let x = rand_vec(rng, n * c * h * w);
        let wt = rand_vec(rng, c * 9);
        let dy = rand_vec(rng, n * c * ho * wo);
        let y_ref = ref_forward(&x, &wt, n, c, h, w, s);
        let (dx_ref, dw_ref, dw_abs) = ref_backward(&x, &wt, &dy, n, c, h, w, s);
        let case = format!("n={n} c={c} h={h} w={w} stride={s}");
        for isa in available_isas() {
            let y = forward_isa(isa, &x, &wt, n, c, h, w, s);
            check_dense(&y, &y_ref).unwrap_or_else(|e| panic!("{case} {isa:?} y: {e}"));
            let (dx, dw) = backward_isa(isa, &x, &wt, &dy, n, c, h, w, s, true, true);
            check_dense(&dx.unwrap(), &dx_ref).unwrap_or_else(|e| panic!("{case} {isa:?} dx: {e}"));
            check_dw(&dw.unwrap(), &dw_ref, &dw_abs)
                .unwrap_or_else(|e| panic!("{case} {isa:?} dw: {e}"));
        }
    }

    /// The in-place kernels (and, for comparison, the padded ones) with the inference
    /// epilogue finished in registers (bias, ReLU6) against the reference, on widths around
    /// the 16-output chunks and both row parities.
    #[test]
    fn fused_forward_matches_reference_both_kernels() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x1D);
        for (k, &w) in [1usize, 2, 3, 7, 14, 15, 16, 17, 31, 32, 33, 34, 56, 57]
            .iter()
            .enumerate()
        {
            let (n, c, h) = (1 + k % 2, 3, [1, 2, 5, 8][k % 4]);
            for s in [1, 2] {
                let (ho, wo) = (out_size(h, s), out_size(w, s));
                let x = rand_vec(&mut rng, n * c * h * w);
                let wt = rand_vec(&mut rng, c * 9);
                let bias = rand_vec(&mut rng, c);
                let want: Vec<f64> = ref_forward(&x, &wt, n, c, h, w, s)
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v + f64::from(bias[(i / (ho * wo)) % c])).clamp(0.0, 6.0))
                    .collect();
                let epilogue = Epilogue::new(&bias, crate::bn::Act::Relu6);
                for direct in [true, false] {
                    let mut y = vec![0.0f32; n * c * ho * wo];
                    // SAFETY: as in `forward_fused`.
                    let view = unsafe {
                        &mut *(std::ptr::from_mut(&mut y[..]) as *mut [MaybeUninit<f32>])
                    };
                    let shape = DwShape {
                        n,
                        c,
                        h,
                        w,
                        stride: s,
                    };
                    forward_into(isa(), &x, &wt, shape, view, (Some(&epilogue), direct));
                    check_dense(&y, &want)
                        .unwrap_or_else(|e| panic!("{h}x{w} stride {s} direct {direct}: {e}"));
                }
            }
        }
    }

    /// Output rows cut from the planes (what a band of an inverted-residual block asks
    /// for), by every instruction set, through both kernels, against the whole planes.
    #[test]
    fn row_ranges_are_the_rows_of_the_whole_plane() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x2A);
        for (h, w, s) in [(9, 7, 1), (9, 7, 2), (12, 20, 1), (13, 33, 2), (5, 16, 1)] {
            let (c, (ho, wo)) = (3, (out_size(h, s), out_size(w, s)));
            let x = rand_vec(&mut rng, c * h * w);
            let wt = rand_vec(&mut rng, c * 9);
            let bias = rand_vec(&mut rng, c);
            let whole: Vec<f64> = ref_forward(&x, &wt, 1, c, h, w, s)
                .iter()
                .enumerate()
                .map(|(i, v)| (v + f64::from(bias[i / (ho * wo)])).clamp(0.0, 6.0))
                .collect();
            let epilogue = Epilogue::new(&bias, crate::bn::Act::Relu6);
            let g = Geom::new(h, w, s);
            for rows in [0..ho, 1..ho, 0..ho - 1, 2..3] {
                let want: Vec<f64> = (0..c)
                    .flat_map(|ch| {
                        whole[(ch * ho + rows.start) * wo..(ch * ho + rows.end) * wo].to_vec()
                    })
                    .collect();
                for (isa, direct) in available_isas()
                    .into_iter()
                    .flat_map(|i| [(i, true), (i, false)])
                {
                    let job = ForwardJob {
                        weight: &wt,
                        c,
                        p0: 0,
                        epilogue: Some(&epilogue),
                        x_stride: h * w,
                        direct,
                        rows: rows.clone(),
                    };
                    let mut y = vec![MaybeUninit::new(f32::NAN); want.len()];
                    forward_task(isa, &g, &x, &mut y, &job, &mut Scratch::new(&g, false));
                    // SAFETY: initialised above (and overwritten by the kernel).
                    let y: Vec<f32> = y.iter().map(|v| unsafe { v.assume_init() }).collect();
                    check_dense(&y, &want).unwrap_or_else(|e| {
                        panic!("{h}x{w} stride {s} rows {rows:?} {isa:?} direct {direct}: {e}")
                    });
                }
            }
        }
    }

    #[test]
    fn out_size_matches_formula() {
        assert_eq!(out_size(1, 1), 1);
        assert_eq!(out_size(1, 2), 1);
        assert_eq!(out_size(2, 2), 1);
        assert_eq!(out_size(3, 2), 2);
        assert_eq!(out_size(112, 2), 56);
        assert_eq!(out_size(7, 2), 4);
        assert_eq!(out_size(14, 1), 14);
    }

    #[test]
    fn small_shapes_match_reference() {
        let sizes = [1usize, 2, 3, 7, 8, 13, 14, 15];
        let cs = [1usize, 3, 17];
        let ns = [1usize, 3];
        let mut rng = ChaCha8Rng::seed_from_u64(0xD3);
        let mut k = 0;
        for &h in &sizes {
            for &w in &sizes {
                for s in [1, 2] {
                    check_case(&mut rng, ns[(k / 3) % 2], cs[k % 3], h, w, s);
                    k += 1;
                }
            }
        }
    }

    #[test]
    fn large_shapes_match_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x56);
        for (n, c, h, w) in [
            (3, 17, 56, 56),
            (1, 3, 56, 13),
            (3, 1, 7, 56),
            (1, 17, 15, 56),
            (1, 3, 56, 2),
            (3, 3, 1, 56),
        ] {
            for s in [1, 2] {
                check_case(&mut rng, n, c, h, w, s);
            }
        }
    }

    #[test]
    fn need_flags_skip_work_and_agree() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (n, c, h, w, s) in [(3, 17, 13, 14, 1), (3, 17, 15, 8, 2), (1, 3, 56, 56, 2)] {
            let shape = DwShape {
                n,
                c,
                h,
                w,
                stride: s,
            };
            let (ho, wo) = (out_size(h, s), out_size(w, s));
            let x = rand_vec(&mut rng, n * c * h * w);
            let wt = rand_vec(&mut rng, c * 9);
            let dy = rand_vec(&mut rng, n * c * ho * wo);
            let (dx_both, dw_both) = backward(&x, &wt, &dy, shape, true, true);
            let (dx_only, none_w) = backward(&x, &wt, &dy, shape, true, false);
            let (none_x, dw_only) = backward(&x, &wt, &dy, shape, false, true);
            let (nx, nw) = backward(&x, &wt, &dy, shape, false, false);
            assert!(none_w.is_none() && none_x.is_none() && nx.is_none() && nw.is_none());
            assert_eq!(dx_only.unwrap(), dx_both.unwrap());
            assert_eq!(dw_only.unwrap(), dw_both.unwrap());
        }
    }

    /// The tolerances are tight enough to catch plausible kernel bugs.
    #[test]
    fn checks_reject_wrong_kernels() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (n, c, h, w, s) = (1, 3, 14, 13, 1);
        let shape = DwShape {
            n,
            c,
            h,
            w,
            stride: s,
        };
        let x = rand_vec(&mut rng, n * c * h * w);
        let wt = rand_vec(&mut rng, c * 9);
        let y_ref = ref_forward(&x, &wt, n, c, h, w, s);
        // Transposed kernel (kh <-> kw), i.e. a wrong tap order.
        let mut wt_t = wt.clone();
        for ch in 0..c {
            for kh in 0..3 {
                for kw in 0..3 {
                    wt_t[ch * 9 + kh * 3 + kw] = wt[ch * 9 + kw * 3 + kh];
                }
            }
        }
        assert!(
            check_dense(
                &forward(
                    &x,
                    &wt_t,
                    DwShape {
                        n,
                        c,
                        h,
                        w,
                        stride: s
                    }
                ),
                &y_ref
            )
            .is_err()
        );
        // One output off by 1e-3 of the scale.
        let mut y = forward(&x, &wt, shape);
        assert!(check_dense(&y, &y_ref).is_ok());
        let scale = y_ref.iter().fold(0.0f64, |m, v| m.max(v.abs())) as f32;
        y[37] += 1e-3 * scale;
        assert!(check_dense(&y, &y_ref).is_err());
        // d_weight missing one term (the largest centre-tap term of channel 0).
        let dy = rand_vec(&mut rng, n * c * h * w);
        let (_, dw_ref, dw_abs) = ref_backward(&x, &wt, &dy, n, c, h, w, s);
        let (_, dw) = backward(&x, &wt, &dy, shape, false, true);
        let mut dw = dw.unwrap();
        assert!(check_dw(&dw, &dw_ref, &dw_abs).is_ok());
        let big = (0..h * w)
            .map(|i| x[i] * dy[i])
            .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        dw[4] -= big;
        assert!(check_dw(&dw, &dw_ref, &dw_abs).is_err());
        // Stride mix-up: stride-1 output has the wrong shape and values for stride 2.
        let y2_ref = ref_forward(&x, &wt, n, c, h, w, 2);
        assert!(
            check_dense(
                &forward(
                    &x,
                    &wt,
                    DwShape {
                        n,
                        c,
                        h,
                        w,
                        stride: 1
                    }
                ),
                &y2_ref
            )
            .is_err()
        );
    }

    #[test]
    #[should_panic(expected = "stride")]
    fn stride_three_panics() {
        let _ = forward(
            &[0.0; 9],
            &[0.0; 9],
            DwShape {
                n: 1,
                c: 1,
                h: 3,
                w: 3,
                stride: 3,
            },
        );
    }
}
