//! Forward kernels on AVX-512 that read the input planes where they lie, without the padded
//! copy the other kernels make first (whose stores, read back at once, cost more than the
//! arithmetic on small planes; at stride 2 the polyphase copy touched every input value for a
//! quarter of the outputs). Both go down the plane in column chunks of 16 outputs, holding
//! the three input rows under the current output row, so each input row is loaded once for
//! the three output rows it feeds:
//!
//! - stride 1 ([`stride1`]): an input row is three masked loads, at columns `c - 1`, `c` and
//!   `c + 1` (the masks zero the padding beyond the row's ends);
//! - stride 2 ([`stride2`]): an input row is two vectors split by permutes into its even
//!   columns, its odd columns and the odd columns one lane later (the left taps).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Finish, LANES};

static OFF: AtomicBool = AtomicBool::new(false);

/// Turns these kernels off (the padded-plane ones then run) or back on: A/B benchmarks.
pub fn set_enabled(on: bool) {
    OFF.store(!on, Ordering::Relaxed);
}

/// Whether these kernels run (on CPUs with AVX-512).
pub(super) fn enabled() -> bool {
    !OFF.load(Ordering::Relaxed)
}

/// Output rows `rows` of one plane at `stride` (1 or 2) of the `h x w` input plane `x`, zero
/// padding of 1, into `y` (those rows, row-major); `FIN` applies `fin` (bias and clamp).
///
/// # Safety
/// The CPU has AVX-512F; `x` holds `h * w` readable floats, `rows` lie inside the output
/// plane and `y` holds their `rows.len() * wo` writable floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn plane<const FIN: bool>(
    (stride, rows): (usize, Range<usize>),
    hw: (usize, usize),
    x: *const f32,
    wt: &[f32; 9],
    fin: Finish,
    y: *mut f32,
) {
    // SAFETY: the caller's contract.
    unsafe {
        match stride {
            1 => stride1::<FIN>(hw, rows, x, (wt, fin), y),
            _ => stride2::<FIN>(hw, rows, x, (wt, fin), y),
        }
    }
}

/// The low `n` (at most 16) lanes.
fn low_lanes(n: usize) -> u16 {
    ((1u32 << n.min(LANES)) - 1) as u16
}

/// One input row under a chunk of 16 outputs: the columns under the left, centre and right
/// taps (`c - 1`, `c`, `c + 1` for output column `c` at stride 1; `2c - 1`, `2c`, `2c + 1`
/// at stride 2).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Split {
    left: __m512,
    centre: __m512,
    right: __m512,
}

#[cfg(target_arch = "x86_64")]
impl Split {
    /// Columns `2 c0 - 1 ..` of `row` (`w` floats), the chunk of outputs from `c0`; `before`
    /// is the input column `2 c0 - 1` (`pad` at the left edge), and columns past the row's
    /// end are `pad` too (0 for a convolution, -inf for a max pool).
    #[target_feature(enable = "avx512f")]
    unsafe fn of(row: *const f32, w: usize, c0: usize, (before, pad): (f32, f32)) -> Split {
        let first = 2 * c0;
        let fill = _mm512_set1_ps(pad);
        // SAFETY: the masks keep columns below w, which the caller's row holds.
        let (a, b) = unsafe {
            (
                _mm512_mask_loadu_ps(fill, low_lanes(w.saturating_sub(first)), row.add(first)),
                _mm512_mask_loadu_ps(
                    fill,
                    low_lanes(w.saturating_sub(first + LANES)),
                    row.wrapping_add(first + LANES),
                ),
            )
        };
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let centre = _mm512_permutex2var_ps(a, even, b);
        let right = _mm512_permutex2var_ps(a, odd, b);
        // Lane 0 from `before`, lanes 1.. the right taps' columns 2c - 1.
        let shifted = _mm512_permutexvar_ps(
            _mm512_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14),
            right,
        );
        let left = _mm512_mask_mov_ps(shifted, 1, _mm512_set1_ps(before));
        Split {
            left,
            centre,
            right,
        }
    }

    /// A row outside the plane (padding).
    #[target_feature(enable = "avx512f")]
    fn zero() -> Split {
        Split::filled(0.0)
    }

    /// A row of padding `pad`.
    #[target_feature(enable = "avx512f")]
    fn filled(pad: f32) -> Split {
        let v = _mm512_set1_ps(pad);
        Split {
            left: v,
            centre: v,
            right: v,
        }
    }
}

/// A plane's nine weights and its epilogue as vectors.
#[cfg(target_arch = "x86_64")]
struct Taps {
    weights: [__m512; 9],
    start: __m512,
    lo: __m512,
    hi: __m512,
}

#[cfg(target_arch = "x86_64")]
impl Taps {
    /// The accumulator starts at the bias when `FIN`, else at 0.
    #[target_feature(enable = "avx512f")]
    fn new<const FIN: bool>(wt: &[f32; 9], fin: Finish) -> Taps {
        Taps {
            weights: std::array::from_fn(|t| _mm512_set1_ps(wt[t])),
            start: _mm512_set1_ps(if FIN { fin.bias } else { 0.0 }),
            lo: _mm512_set1_ps(fin.lo),
            hi: _mm512_set1_ps(fin.hi),
        }
    }

    /// The outputs over the three input rows' taps (above, middle, below), clamped when
    /// `FIN` (two partial sums halve the chain of dependent FMAs).
    #[target_feature(enable = "avx512f")]
    fn apply<const FIN: bool>(&self, rows: [Split; 3]) -> __m512 {
        let w = &self.weights;
        let (mut a, mut b) = (self.start, _mm512_setzero_ps());
        for (kh, s) in rows.iter().enumerate() {
            a = _mm512_fmadd_ps(w[kh * 3], s.left, a);
            b = _mm512_fmadd_ps(w[kh * 3 + 1], s.centre, b);
            a = _mm512_fmadd_ps(w[kh * 3 + 2], s.right, a);
        }
        let acc = _mm512_add_ps(a, b);
        if FIN {
            _mm512_min_ps(_mm512_max_ps(acc, self.lo), self.hi)
        } else {
            acc
        }
    }
}

/// Row `r` of the `w`-wide plane `x` split for the stride-2 chunk of outputs from `c0`,
/// `pad` outside the row.
///
/// # Safety
/// The CPU has AVX-512F; row `r` of `x` holds `w` readable floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_row(x: *const f32, w: usize, (r, c0): (usize, usize), pad: f32) -> Split {
    // SAFETY: the caller's contract; column 2 c0 - 1 < w when c0 > 0 is an output column.
    unsafe {
        let row = x.add(r * w);
        let before = if c0 == 0 { pad } else { *row.add(2 * c0 - 1) };
        Split::of(row, w, c0, (before, pad))
    }
}

/// One output plane of a stride-2 convolution over the `h x w` input plane `x` (zero
/// padding of 1), into `y` (`ho x wo`, row-major); `FIN` applies `fin`.
///
/// # Safety
/// The CPU has AVX-512F; `x` holds `h * w` readable floats and `y` `ho * wo` writable ones
/// (`ho`, `wo` = `super::out_size` of `h`, `w` at stride 2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn stride2<const FIN: bool>(
    (h, w): (usize, usize),
    rows: Range<usize>,
    x: *const f32,
    (wt, fin): (&[f32; 9], Finish),
    y: *mut f32,
) {
    let wo = super::out_size(w, 2);
    let taps = Taps::new::<FIN>(wt, fin);
    // SAFETY (the closure's calls): rows below h of the plane.
    let row_split = |r: usize, c0: usize| unsafe { split_row(x, w, (r, c0), 0.0) };
    for c0 in (0..wo).step_by(LANES) {
        let store = low_lanes(wo - c0);
        // Input row 2r - 1 of output row r: the previous output row's last row.
        let mut above = if rows.start > 0 {
            row_split(2 * rows.start - 1, c0)
        } else {
            Split::zero()
        };
        for r in rows.clone() {
            let middle = row_split(2 * r, c0);
            let below = if 2 * r + 1 < h {
                row_split(2 * r + 1, c0)
            } else {
                Split::zero()
            };
            let acc = taps.apply::<FIN>([above, middle, below]);
            // SAFETY: outputs c0 .. c0 + min(wo - c0, 16) of row r.
            unsafe { _mm512_mask_storeu_ps(y.add((r - rows.start) * wo + c0), store, acc) };
            above = below;
        }
    }
}

/// One input row under a 16-output chunk at stride 1: the columns under the left, centre
/// and right taps (`c - 1`, `c`, `c + 1`), each one masked load.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn taps_of_row(row: *const f32, w: usize, c0: usize) -> Split {
    let lanes = |cols: usize| low_lanes(cols);
    // Left taps read column c0 - 1 + l: at the left edge lane 0 is padding.
    let left_mask = lanes(w + 1 - c0) & if c0 == 0 { !1 } else { !0 };
    // SAFETY: each mask keeps the columns inside 0..w of the caller's row; masked-off lanes
    // are neither read nor faulted on.
    unsafe {
        Split {
            left: _mm512_maskz_loadu_ps(left_mask, row.wrapping_add(c0).wrapping_sub(1)),
            centre: _mm512_maskz_loadu_ps(lanes(w - c0), row.add(c0)),
            right: _mm512_maskz_loadu_ps(lanes(w.saturating_sub(c0 + 1)), row.wrapping_add(c0 + 1)),
        }
    }
}

/// One output plane of a stride-1 convolution over the `h x w` plane `x` (zero padding of 1)
/// into `y` (`h x w`), by column chunks of 16 and then down the rows, each input row loaded
/// once (three masked loads) for the three output rows it feeds; `FIN` applies `fin`.
///
/// # Safety
/// The CPU has AVX-512F; `x` holds `h * w` readable floats and `y` as many writable ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn stride1<const FIN: bool>(
    (h, w): (usize, usize),
    rows: Range<usize>,
    x: *const f32,
    (wt, fin): (&[f32; 9], Finish),
    y: *mut f32,
) {
    let taps = Taps::new::<FIN>(wt, fin);
    // SAFETY (the closure's calls): row r < h holds w floats.
    let row_taps = |r: usize, c0: usize| unsafe { taps_of_row(x.add(r * w), w, c0) };
    for c0 in (0..w).step_by(LANES) {
        let store = low_lanes(w - c0);
        let mut above = if rows.start > 0 {
            row_taps(rows.start - 1, c0)
        } else {
            Split::zero()
        };
        let mut middle = row_taps(rows.start, c0);
        for r in rows.clone() {
            let below = if r + 1 < h {
                row_taps(r + 1, c0)
            } else {
                Split::zero()
            };
            let acc = taps.apply::<FIN>([above, middle, below]);
            // SAFETY: outputs c0 .. c0 + min(w - c0, 16) of row r.
            unsafe { _mm512_mask_storeu_ps(y.add((r - rows.start) * w + c0), store, acc) };
            above = middle;
            middle = below;
        }
    }
}

/// 3x3 stride-2 pooling with padding 1 of one `h x w` plane into `y` (`ho x wo`): the
/// maximum (`MAX`; the padding never wins) or the mean with the padding counted as zeros
/// (always over nine), the rows split as [`stride2`]'s are.
///
/// # Safety
/// The CPU has AVX-512F; `x` holds `h * w` readable floats and `y` `ho * wo` writable ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn pool_3x3_s2<const MAX: bool>(
    (h, w): (usize, usize),
    x: *const f32,
    y: *mut f32,
) {
    let (ho, wo) = (super::out_size(h, 2), super::out_size(w, 2));
    let pad = if MAX { f32::NEG_INFINITY } else { 0.0 };
    let nine = _mm512_set1_ps(9.0);
    // SAFETY (the closure's calls): rows below h of the plane.
    let row_split = |r: usize, c0: usize| unsafe { split_row(x, w, (r, c0), pad) };
    let join = |a: __m512, b: __m512| {
        if MAX {
            _mm512_max_ps(a, b)
        } else {
            _mm512_add_ps(a, b)
        }
    };
    for c0 in (0..wo).step_by(LANES) {
        let store = low_lanes(wo - c0);
        let mut above = Split::filled(pad);
        for r in 0..ho {
            let middle = row_split(2 * r, c0);
            let below = if 2 * r + 1 < h {
                row_split(2 * r + 1, c0)
            } else {
                Split::filled(pad)
            };
            let mut acc = middle.centre;
            for s in [above, middle, below] {
                acc = join(acc, join(s.left, s.right));
            }
            acc = join(acc, above.centre);
            acc = join(acc, below.centre);
            if !MAX {
                acc = _mm512_div_ps(acc, nine);
            }
            // SAFETY: outputs c0 .. c0 + min(wo - c0, 16) of row r.
            unsafe { _mm512_mask_storeu_ps(y.add(r * wo + c0), store, acc) };
            above = below;
        }
    }
}
