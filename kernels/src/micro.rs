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
use std::sync::atomic::{AtomicBool, Ordering};

/// Output channels per register tile.
pub const ROWS: usize = 8;
/// Pixels per register tile (three AVX-512 vectors).
pub const COLS: usize = 48;
/// f32 lanes of an AVX-512 vector.
const LANES: usize = 16;
/// Tiles at most this many pixels wide run [`lanes_tile`]: output channels in the vector
/// lanes, so a 7x7 map (49 pixels, 3.06 vectors) wastes no lane.
pub const NARROW: usize = 64;
/// Pixels per register tile of [`lanes_tile`] (7 divides the 49 of a 7x7 map).
pub(crate) const LANE_PIXELS: usize = 7;
/// Output channels per register tile of [`lanes_tile`] (three vectors).
pub(crate) const LANE_ROWS: usize = 3 * LANES;

/// Weights `[groups * m, depth]` packed per group in blocks of [`ROWS`] rows as
/// `[block][depth][ROWS]`, zero rows padding the last block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Packed {
    data: Vec<f32>,
    /// The same weights for [`lanes_tile`]: per group, blocks of 16 rows as `[block][depth][16]`.
    lanes: Vec<f32>,
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
        let lane_blocks = m.div_ceil(LANES);
        let mut lanes = vec![0.0f32; groups * lane_blocks * depth * LANES];
        for g in 0..groups {
            for row in 0..m {
                let base = (g * lane_blocks + row / LANES) * depth * LANES + row % LANES;
                for k in 0..depth {
                    lanes[base + k * LANES] = weight[(g * m + row) * depth + k];
                }
            }
        }
        Some(Packed {
            data,
            lanes,
            m,
            depth,
        })
    }

    /// Lane blocks `first..first + count` of group `g` (consecutive in memory).
    fn lane_blocks(&self, g: usize, first: usize, count: usize) -> &[f32] {
        let blocks = self.m.div_ceil(LANES);
        &self.lanes[((g * blocks + first) * self.depth * LANES)..][..count * self.depth * LANES]
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

impl<'a> TileIo<'a> {
    /// The sub-tile `rows` output rows down and `col` pixels across.
    fn sub_tile(&self, rows: usize, col: usize) -> TileIo<'a> {
        let step = rows * self.y_rs + col;
        TileIo {
            // SAFETY: callers stay inside the tile, whose bounds their caller guarantees.
            x: unsafe { self.x.add(col) },
            y: unsafe { self.y.add(step) },
            offset: self.offset + step,
            channel: self.channel + rows,
            ..*self
        }
    }
}

/// Computes output rows `rows` (within group `g`) by `width` pixels over the input rows
/// (weight columns) `k`: `io.x` is input row `k.start`, and the tile gets `W[rows, k] ·
/// X[k]` through the epilogue (all input rows for a whole convolution, a share of them for a
/// reduction split between threads).
///
/// # Safety
/// `io` must describe buffers holding `k.len()` input rows of `width` pixels and
/// `rows.len()` output rows of `width` pixels at the given strides, and the residual (if
/// any) must cover the same output positions; the CPU must have AVX-512 (`packed` exists
/// only then).
pub(crate) unsafe fn gemm_tile(
    packed: &Packed,
    g: usize,
    rows: std::ops::Range<usize>,
    k: std::ops::Range<usize>,
    width: usize,
    io: &TileIo<'_>,
) {
    assert!(
        k.end <= packed.depth,
        "micro: input rows beyond the weights"
    );
    #[cfg(target_arch = "x86_64")]
    {
        // The narrow kernel scatters with 32-bit row offsets (up to 15 rows apart).
        if width <= NARROW
            && rows.start.is_multiple_of(LANES)
            && io.y_rs.saturating_mul(LANES) <= i32::MAX as usize
            && !NARROW_OFF.load(Ordering::Relaxed)
        {
            // SAFETY: the caller's contract.
            unsafe { lanes_tile(packed, g, rows, k, width, io) };
            return;
        }
        let mut row = rows.start;
        while row < rows.end {
            // Tiles split rows in multiples of ROWS, so `lane` is 0 but for odd callers,
            // who stay correct (the rows before `lane` are computed and not stored).
            let (block, lane) = (row / ROWS, row % ROWS);
            let count = (ROWS - lane).min(rows.end - row);
            let mut col = 0;
            while col < width {
                let cols = (width - col).min(COLS);
                let tile = io.sub_tile(row - rows.start, col);
                let w = &packed.block(g, block)[k.start * ROWS..k.end * ROWS];
                let depth = k.len();
                // SAFETY: the caller's bounds cover this sub-tile; AVX-512 is present.
                unsafe {
                    match cols.div_ceil(16) {
                        1 => tile_avx512::<1>(w, depth, lane, count, cols, &tile),
                        2 => tile_avx512::<2>(w, depth, lane, count, cols, &tile),
                        _ => tile_avx512::<3>(w, depth, lane, count, cols, &tile),
                    }
                }
                col += cols;
            }
            row += count;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (packed, g, rows, k, width, io);
        unreachable!("packed weights exist only on AVX-512");
    }
}

/// One register tile: `count` rows starting at lane `lane` of the packed block `w`, `cols`
/// pixels (at most `16 * NV`), all `depth` input rows, then the epilogue and the store.
#[cfg(target_arch = "x86_64")]
/// The epilogue's clamps (activation, then the post-residual activation) as vectors:
/// `[lo, hi, lo2, hi2]`.
#[target_feature(enable = "avx512f")]
fn clamp_vectors(ep: &Epilogue<'_>) -> [__m512; 4] {
    let (lo, hi) = crate::fused::bounds(ep.act);
    let (lo2, hi2) = crate::fused::bounds(ep.post);
    [
        _mm512_set1_ps(lo),
        _mm512_set1_ps(hi),
        _mm512_set1_ps(lo2),
        _mm512_set1_ps(hi2),
    ]
}

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
    let [lo, hi, lo2, hi2] = clamp_vectors(ep);
    let store = |row: usize, acc_row: &[__m512; NV]| {
        if row < lane || row >= lane + count {
            return;
        }
        let r = row - lane;
        let bias = _mm512_set1_ps(ep.bias[io.channel + r]);
        // SAFETY: output row r holds `cols` pixels from io.y + r * y_rs.
        let yr = unsafe { io.y.add(r * io.y_rs) };
        let res = ep
            .residual
            .map(|res| unsafe { res.as_ptr().add(io.offset + r * io.y_rs) });
        for j in 0..NV {
            let mut v = _mm512_add_ps(acc_row[j], bias);
            v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            if let Some(res) = res {
                // SAFETY: the residual has the output's layout and length.
                let rv = unsafe { _mm512_maskz_loadu_ps(masks[j], res.add(16 * j)) };
                v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, rv), lo2), hi2);
            }
            // SAFETY: as above; the masked store writes only the tile's pixels.
            unsafe { _mm512_mask_storeu_ps(yr.add(16 * j), masks[j], v) };
        }
    };
    // Each row by a literal index: a loop over the rows (or `acc[lane + r]`) left the
    // accumulators in memory, zeroed by a memset per tile and stored and reloaded around
    // the loop over the inputs.
    const { assert!(ROWS == 8) };
    store(0, &acc[0]);
    store(1, &acc[1]);
    store(2, &acc[2]);
    store(3, &acc[3]);
    store(4, &acc[4]);
    store(5, &acc[5]);
    store(6, &acc[6]);
    store(7, &acc[7]);
}

/// [`gemm_tile`] for narrow tiles: output channels in the vector lanes (up to three vectors,
/// 48 channels) by up to [`LANE_PIXELS`] pixels, each input value broadcast; the outputs are
/// scattered to their channel rows with the epilogue applied in registers.
///
/// # Safety
/// As [`gemm_tile`]; `rows.start` is a multiple of 16.
#[cfg(target_arch = "x86_64")]
unsafe fn lanes_tile(
    packed: &Packed,
    g: usize,
    rows: std::ops::Range<usize>,
    k: std::ops::Range<usize>,
    width: usize,
    io: &TileIo<'_>,
) {
    let mut row = rows.start;
    while row < rows.end {
        let count = (rows.end - row).min(LANE_ROWS);
        let blocks = packed.lane_blocks(g, row / LANES, count.div_ceil(LANES));
        let stride = packed.depth * LANES;
        let w = LaneWeights {
            w: &blocks[k.start * LANES..],
            stride,
            depth: k.len(),
            // The next 48 rows' weights (this call's or the next tile's), fetched into L2
            // while this block's first pixels are computed: a block's weights are read once
            // per 7 pixels, the first time from L3, and on 7x7 maps that cost 15-20%.
            prefetch: (row + LANE_ROWS < packed.m && !PREFETCH_OFF.load(Ordering::Relaxed)).then(
                || {
                    blocks
                        .as_ptr()
                        .wrapping_add(LANE_ROWS / LANES * stride + k.start * LANES)
                },
            ),
        };
        let mut col = 0;
        while col < width {
            let pixels = (width - col).min(LANE_PIXELS);
            let tile = io.sub_tile(row - rows.start, col);
            let w = LaneWeights {
                prefetch: w.prefetch.filter(|_| col == 0),
                ..w
            };
            // SAFETY: the caller's bounds cover this sub-tile; AVX-512 is present.
            unsafe { lanes_dispatch(count.div_ceil(LANES), pixels, &w, count, &tile) };
            col += pixels;
        }
        row += count;
    }
}

static PREFETCH_OFF: AtomicBool = AtomicBool::new(false);

/// Turns the narrow tiles' prefetch of the next block's weights off or back on: A/B
/// benchmarks.
pub fn set_prefetch_enabled(on: bool) {
    PREFETCH_OFF.store(!on, Ordering::Relaxed);
}

/// The lane blocks a narrow tile reads: block `j`'s weights for input row `k` are the 16
/// floats at `j * stride + k * 16`, for `k < depth`; `prefetch`, laid out alike, is fetched
/// into L2 as they are read (only an address, which may lie past the weights).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct LaneWeights<'a> {
    w: &'a [f32],
    stride: usize,
    depth: usize,
    prefetch: Option<*const f32>,
}

/// [`lanes_avx512`] instantiated for `vectors` (1-3) by `pixels` (1-7).
///
/// # Safety
/// As [`lanes_avx512`].
#[cfg(target_arch = "x86_64")]
unsafe fn lanes_dispatch(
    vectors: usize,
    pixels: usize,
    w: &LaneWeights<'_>,
    count: usize,
    io: &TileIo<'_>,
) {
    macro_rules! by_pixels {
        ($nv:literal) => {
            match pixels {
                1 => lanes_avx512::<$nv, 1>(w, count, io),
                2 => lanes_avx512::<$nv, 2>(w, count, io),
                3 => lanes_avx512::<$nv, 3>(w, count, io),
                4 => lanes_avx512::<$nv, 4>(w, count, io),
                5 => lanes_avx512::<$nv, 5>(w, count, io),
                6 => lanes_avx512::<$nv, 6>(w, count, io),
                _ => lanes_avx512::<$nv, 7>(w, count, io),
            }
        };
    }
    // SAFETY: the caller's contract.
    unsafe {
        match vectors {
            1 => by_pixels!(1),
            2 => by_pixels!(2),
            _ => by_pixels!(3),
        }
    }
}

/// One narrow register tile: `count` channels (at most `16 * NV`) from lane blocks `w`, by
/// `NP` pixels, `w.depth` input rows, then the epilogue and a scatter of each vector to its
/// channels' rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lanes_avx512<const NV: usize, const NP: usize>(
    w: &LaneWeights<'_>,
    count: usize,
    io: &TileIo<'_>,
) {
    let mut acc = [[_mm512_setzero_ps(); NP]; NV];
    let (wp, block) = (w.w.as_ptr(), w.stride);
    assert!(
        w.w.len() >= (NV - 1) * block + w.depth * LANES,
        "micro: lane blocks"
    );
    for k in 0..w.depth {
        // SAFETY: block j's row k ends at (NV - 1) block + depth * 16 <= w.len() (asserted);
        // input row k holds NP values.
        let wv: [__m512; NV] =
            std::array::from_fn(|j| unsafe { _mm512_loadu_ps(wp.add(j * block + k * LANES)) });
        if let Some(next) = w.prefetch {
            for j in 0..LANE_ROWS / LANES {
                let at = next.wrapping_add(j * block + k * LANES);
                _mm_prefetch::<_MM_HINT_T1>(at.cast());
            }
        }
        let xk = unsafe { io.x.add(k * io.x_rs) };
        for p in 0..NP {
            let xv = _mm512_set1_ps(unsafe { *xk.add(p) });
            for (acc_j, w_j) in acc.iter_mut().zip(&wv) {
                acc_j[p] = _mm512_fmadd_ps(*w_j, xv, acc_j[p]);
            }
        }
    }
    let ep = io.epilogue;
    let [lo, hi, lo2, hi2] = clamp_vectors(ep);
    let stride = io.y_rs as i32;
    let rows_of = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(stride),
    );
    for (j, acc_j) in acc.iter().enumerate() {
        let left = count.saturating_sub(j * LANES).min(LANES);
        let mask: __mmask16 = if left == LANES {
            0xffff
        } else {
            ((1u32 << left) - 1) as __mmask16
        };
        // SAFETY: the bias holds the tile's channels; masked lanes read nothing.
        let bias =
            unsafe { _mm512_maskz_loadu_ps(mask, ep.bias.as_ptr().add(io.channel + j * LANES)) };
        for (p, &a) in acc_j.iter().enumerate() {
            let at = j * LANES * io.y_rs + p;
            let mut v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(a, bias), lo), hi);
            if let Some(res) = ep.residual {
                // SAFETY: the residual has the output's layout; masked lanes read nothing.
                let rv = unsafe {
                    _mm512_mask_i32gather_ps::<4>(
                        _mm512_setzero_ps(),
                        mask,
                        rows_of,
                        res.as_ptr().add(io.offset + at).cast(),
                    )
                };
                v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, rv), lo2), hi2);
            }
            // SAFETY: output rows of the tile's channels hold its pixels; masked lanes
            // write nothing.
            unsafe { _mm512_mask_i32scatter_ps::<4>(io.y.add(at).cast(), mask, rows_of, v) };
        }
    }
}

static NARROW_OFF: AtomicBool = AtomicBool::new(false);

/// Turns the narrow-tile kernel (channels in the lanes) off or back on: A/B benchmarks.
pub fn set_narrow_enabled(on: bool) {
    NARROW_OFF.store(!on, Ordering::Relaxed);
}

static DISABLED: AtomicBool = AtomicBool::new(false);

/// Turns the micro-kernel off (or back on) for weights packed from now on: A/B benchmarks
/// compile one model each way.
pub fn set_enabled(on: bool) {
    DISABLED.store(!on, Ordering::Relaxed);
}

/// Whether the micro-kernel runs on this CPU (and is not turned off).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        isa() == Isa::Avx512 && !DISABLED.load(Ordering::Relaxed)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
