//! An AVX-512 micro-kernel for the inference GEMM of a convolution, `Y = W · X` with the
//! epilogue applied in registers: `X` is read where it lies (NCHW rows of pixels, or a tile's
//! im2col rows), so nothing is packed per call, and `W` is packed once, when the model is
//! compiled, in blocks of [`ROWS`] output channels laid out `[k][ROWS]`, so the kernel
//! broadcasts consecutive floats.
//!
//! Register tile: [`ROWS`] output channels by up to three 16-pixel vectors, 24 accumulators.
//! Per input channel it loads three vectors of `X` and issues 24 FMAs with broadcast weights,
//! which keeps it bound by the FMA units rather than by loads.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use crate::cpu::{Isa, isa};
use crate::fused::Epilogue;

/// Output channels per register tile.
pub const ROWS: usize = 8;
/// Pixels per register tile (three AVX-512 vectors).
pub const COLS: usize = 48;

/// Weights `[groups * m, depth]` packed per group in blocks of [`ROWS`] rows as
/// `[block][depth][ROWS]`, zero rows padding the last block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Packed {
    data: Vec<f32>,
    m: usize,
    depth: usize,
}

impl Packed {
    /// Packs `weight` (`groups * m` rows of `depth`), or returns `None` when this CPU has no
    /// AVX-512 (the GEMM path then reads the weights as they are).
    pub fn new(weight: &[f32], groups: usize, m: usize, depth: usize) -> Option<Packed> {
        if !available() {
            return None;
        }
        assert_eq!(weight.len(), groups * m * depth, "packed weights: length");
        let blocks = m.div_ceil(ROWS);
        let mut data = vec![0.0f32; groups * blocks * depth * ROWS];
        for g in 0..groups {
            for row in 0..m {
                let (block, lane) = (row / ROWS, row % ROWS);
                let base = (g * blocks + block) * depth * ROWS;
                for k in 0..depth {
                    data[base + k * ROWS + lane] = weight[(g * m + row) * depth + k];
                }
            }
        }
        Some(Packed { data, m, depth })
    }

    fn block(&self, g: usize, block: usize) -> &[f32] {
        let blocks = self.m.div_ceil(ROWS);
        &self.data[(g * blocks + block) * self.depth * ROWS..][..self.depth * ROWS]
    }
}

/// Where one tile reads and writes.
#[derive(Clone, Copy)]
pub(crate) struct TileIo<'a> {
    /// First input row (input channel 0 of the group) at the tile's first pixel.
    pub x: *const f32,
    /// Floats between consecutive input rows.
    pub x_rs: usize,
    /// First output value (the tile's first channel, first pixel).
    pub y: *mut f32,
    /// Floats between consecutive output channels.
    pub y_rs: usize,
    /// Flat index of `y` in the output (where the residual is read).
    pub offset: usize,
    /// Output channel of the tile's first row (for the bias).
    pub channel: usize,
    /// The epilogue.
    pub epilogue: &'a Epilogue<'a>,
}

/// Computes output rows `rows` (within group `g`) by `width` pixels.
///
/// # Safety
/// `io` must describe buffers holding `depth` input rows of `width` pixels and `rows.len()`
/// output rows of `width` pixels at the given strides, and the residual (if any) must cover
/// the same output positions; the CPU must have AVX-512 (`packed` exists only then).
pub(crate) unsafe fn gemm_tile(
    packed: &Packed,
    g: usize,
    rows: std::ops::Range<usize>,
    width: usize,
    io: &TileIo<'_>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut row = rows.start;
        while row < rows.end {
            // Tiles split rows in multiples of ROWS, so `lane` is 0 but for odd callers,
            // who stay correct (the rows before `lane` are computed and not stored).
            let (block, lane) = (row / ROWS, row % ROWS);
            let count = (ROWS - lane).min(rows.end - row);
            let mut col = 0;
            while col < width {
                let cols = (width - col).min(COLS);
                let step = (row - rows.start) * io.y_rs + col;
                let tile = TileIo {
                    x: unsafe { io.x.add(col) },
                    y: unsafe { io.y.add(step) },
                    offset: io.offset + step,
                    channel: io.channel + row - rows.start,
                    ..*io
                };
                let w = packed.block(g, block);
                // SAFETY: the caller's bounds cover this sub-tile; AVX-512 is present.
                unsafe {
                    match cols.div_ceil(16) {
                        1 => tile_avx512::<1>(w, packed.depth, lane, count, cols, &tile),
                        2 => tile_avx512::<2>(w, packed.depth, lane, count, cols, &tile),
                        _ => tile_avx512::<3>(w, packed.depth, lane, count, cols, &tile),
                    }
                }
                col += cols;
            }
            row += count;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (packed, g, rows, width, io);
        unreachable!("packed weights exist only on AVX-512");
    }
}

/// One register tile: `count` rows starting at lane `lane` of the packed block `w`, `cols`
/// pixels (at most `16 * NV`), all `depth` input rows, then the epilogue and the store.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const NV: usize>(
    w: &[f32],
    depth: usize,
    lane: usize,
    count: usize,
    cols: usize,
    io: &TileIo<'_>,
) {
    let masks: [__mmask16; NV] = std::array::from_fn(|j| {
        let left = cols.saturating_sub(16 * j).min(16);
        if left == 16 {
            0xffff
        } else {
            ((1u32 << left) - 1) as __mmask16
        }
    });
    let mut acc = [[_mm512_setzero_ps(); NV]; ROWS];
    let wp = w.as_ptr();
    for k in 0..depth {
        // SAFETY: input row k holds `cols` pixels from io.x + k * x_rs (caller's contract);
        // the masked loads touch no more.
        let xk = unsafe { io.x.add(k * io.x_rs) };
        let xv: [__m512; NV] =
            std::array::from_fn(|j| unsafe { _mm512_maskz_loadu_ps(masks[j], xk.add(16 * j)) });
        for (r, acc_r) in acc.iter_mut().enumerate() {
            // SAFETY: the block holds depth * ROWS floats.
            let wv = _mm512_set1_ps(unsafe { *wp.add(k * ROWS + r) });
            for j in 0..NV {
                acc_r[j] = _mm512_fmadd_ps(wv, xv[j], acc_r[j]);
            }
        }
    }
    let ep = io.epilogue;
    let (lo, hi) = crate::fused::bounds(ep.act);
    let (lo2, hi2) = crate::fused::bounds(ep.post);
    let (lo, hi, lo2, hi2) = (
        _mm512_set1_ps(lo),
        _mm512_set1_ps(hi),
        _mm512_set1_ps(lo2),
        _mm512_set1_ps(hi2),
    );
    for r in 0..count {
        let bias = _mm512_set1_ps(ep.bias[io.channel + r]);
        // SAFETY: output row r holds `cols` pixels from io.y + r * y_rs.
        let yr = unsafe { io.y.add(r * io.y_rs) };
        let res = ep
            .residual
            .map(|res| unsafe { res.as_ptr().add(io.offset + r * io.y_rs) });
        for j in 0..NV {
            let mut v = _mm512_add_ps(acc[lane + r][j], bias);
            v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            if let Some(res) = res {
                // SAFETY: the residual has the output's layout and length.
                let rv = unsafe { _mm512_maskz_loadu_ps(masks[j], res.add(16 * j)) };
                v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, rv), lo2), hi2);
            }
            // SAFETY: as above; the masked store writes only the tile's pixels.
            unsafe { _mm512_mask_storeu_ps(yr.add(16 * j), masks[j], v) };
        }
    }
}

static DISABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the micro-kernel off (or back on) for weights packed from now on: A/B benchmarks
/// compile one model each way.
pub fn set_enabled(on: bool) {
    DISABLED.store(!on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the micro-kernel runs on this CPU (and is not turned off).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        isa() == Isa::Avx512 && !DISABLED.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
