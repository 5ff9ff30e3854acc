//! A MobileNet inverted-residual block (1x1 expansion, depthwise 3x3, 1x1 projection, each
//! with its folded batch norm and activation, then the shortcut) computed one band of output
//! rows at a time. On the early, wide maps the expanded tensors are the largest of the
//! network (96 channels at 112x112 is 4.8 MB per image); banded, they live only in a
//! per-thread buffer in cache instead of going to memory and coming back.
//!
//! A band of output rows `[o0, o1)` needs the input rows `[a, e)`, `a = s*o0 - s` (0 for the
//! first band) and `e = min(h, s*(o1 - 1) + 2)`: the depthwise convolution of the band alone,
//! zero-padded above and below like a whole plane, gives every wanted row exactly, since each
//! reads only rows inside the band or outside the image. `a` is a multiple of the stride, so
//! the band's output row `i` is the plane's row `a/s + i`. Bands run in strips, each strip's
//! in order on one thread, and a band takes the two expanded rows it shares with the band
//! before it from that band's buffer; only a strip's first band expands its halo rows.

use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::bn::Act;
use crate::cpu::SendPtr;
use crate::dw::{self, DwShape};
use crate::fused::{ConvWeights, Epilogue, gemm_tile};
use crate::micro::TileIo;

mod split;
pub use split::{
    depthwise_pointwise_split, inverted_residual_per_image, inverted_residual_split, output_parts,
    per_image, set_per_image_enabled, set_split_enabled, split_parts,
};

/// A 1x1 convolution (one group) of the block, with its folded bias and its activation.
#[derive(Clone, Copy, Debug)]
pub struct Pointwise<'a> {
    /// Weights `[c_out, c_in]`.
    pub weights: &'a ConvWeights,
    /// One bias per output channel.
    pub bias: &'a [f32],
    /// Activation of the biased value.
    pub act: Act,
}

/// The block's depthwise 3x3 convolution (padding 1).
#[derive(Clone, Copy, Debug)]
pub struct Depthwise<'a> {
    /// Weights `[c, 1, 3, 3]`.
    pub weight: &'a [f32],
    /// One bias per channel.
    pub bias: &'a [f32],
    /// Activation of the biased value.
    pub act: Act,
    /// 1 or 2.
    pub stride: usize,
}

/// The block's layers and shortcut.
#[derive(Clone, Copy, Debug)]
pub struct Block<'a> {
    /// The expansion (absent in blocks of expansion factor 1).
    pub expand: Option<Pointwise<'a>>,
    /// The depthwise convolution.
    pub depthwise: Depthwise<'a>,
    /// The projection.
    pub project: Pointwise<'a>,
    /// A tensor of the output's shape added after the projection's activation (the
    /// identity shortcut), then `post`.
    pub residual: Option<&'a [f32]>,
    /// Activation after the residual add.
    pub post: Act,
}

impl Block<'_> {
    /// The projection's epilogue: its bias and activation, then the shortcut and `post`.
    pub(crate) fn projection_epilogue(&self) -> Epilogue<'_> {
        Epilogue {
            bias: self.project.bias,
            act: self.project.act,
            residual: self.residual,
            post: self.post,
        }
    }
}

/// Input `[n, c_in, h, w]`, `c_mid` expanded channels, `c_out` output channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockShape {
    /// Images.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Channels of the depthwise convolution (`c_in` without an expansion).
    pub c_mid: usize,
    /// Output channels.
    pub c_out: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// The depthwise convolution's stride.
    pub stride: usize,
}

impl BlockShape {
    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            dw::out_size(self.h, self.stride),
            dw::out_size(self.w, self.stride),
        )
    }
}

/// Bytes of expanded rows one band aims at, so a band's tensors stay in L2.
const BAND_BYTES: usize = 512 * 1024;
/// An expanded plane (per image) smaller than this stays in cache unbanded.
static MIN_EXPANDED_BYTES: AtomicUsize = AtomicUsize::new(512 * 1024);
/// Maps of fewer output rows are not banded: their bands are so short that expanding the
/// halo rows again costs more than the cache saves (MobileNetV2 at 224x224, batch 1: the
/// 28-row blocks gain, the 14-row ones lose; `examples/block_ab.rs`).
const MIN_OUTPUT_ROWS: usize = 28;

/// Sets the expanded-plane size from which blocks are banded (A/B benchmarks; `usize::MAX`
/// turns banding off).
pub fn set_min_expanded_bytes(bytes: usize) {
    MIN_EXPANDED_BYTES.store(bytes, Ordering::Relaxed);
}

/// Output rows per band worth computing a block of shape `s` with, or `None` when its
/// expanded tensor per image is small enough to stay in cache (the layers then run one
/// after the other, each over every thread).
pub fn band_rows(s: &BlockShape) -> Option<usize> {
    let row_bytes = s.c_mid * s.w * 4;
    let (ho, _) = s.out_hw();
    if row_bytes.saturating_mul(s.h) < MIN_EXPANDED_BYTES.load(Ordering::Relaxed)
        || ho < MIN_OUTPUT_ROWS
    {
        return None;
    }
    let rows_in = (BAND_BYTES / row_bytes.max(1)).max(s.stride + 2);
    let rows = ((rows_in - 2) / s.stride).max(1);
    // A few bands per thread, so one image keeps every thread busy.
    let bands_wanted = (rayon::current_num_threads() * 3).div_ceil(s.n);
    Some(rows.min(ho.div_ceil(bands_wanted)).max(1))
}

fn check(x: &[f32], s: &BlockShape, block: &Block, y: &[f32]) {
    let (ho, wo) = s.out_hw();
    assert_eq!(x.len(), s.n * s.c_in * s.h * s.w, "block: input length");
    assert_eq!(y.len(), s.n * s.c_out * ho * wo, "block: output length");
    match &block.expand {
        Some(e) => {
            assert_eq!(e.weights.raw().len(), s.c_mid * s.c_in, "block: expansion");
            assert_eq!(e.bias.len(), s.c_mid, "block: expansion bias");
        }
        None => assert_eq!(s.c_mid, s.c_in, "block: no expansion, so c_mid = c_in"),
    }
    let d = &block.depthwise;
    assert_eq!(d.weight.len(), s.c_mid * 9, "block: depthwise weights");
    assert_eq!(d.bias.len(), s.c_mid, "block: depthwise bias");
    assert_eq!(d.stride, s.stride, "block: depthwise stride");
    let p = &block.project;
    assert_eq!(
        p.weights.raw().len(),
        s.c_out * s.c_mid,
        "block: projection"
    );
    assert_eq!(p.bias.len(), s.c_out, "block: projection bias");
    if let Some(r) = block.residual {
        assert_eq!(r.len(), y.len(), "block: residual length");
    }
}

/// Runs `block` on `x` into `y` (`[n, c_out, ho, wo]`), `rows` output rows per band (see
/// [`band_rows`]): each image's bands cut into as many strips as there are threads per image,
/// the strips in parallel, the bands of a strip in order.
pub fn inverted_residual(x: &[f32], s: BlockShape, block: &Block, rows: usize, y: &mut [f32]) {
    let strips = rayon::current_num_threads().div_ceil(s.n);
    inverted_residual_strips(x, s, block, (rows, strips), y);
}

/// [`inverted_residual`] with `strips` runs of whole bands per image. A band takes the
/// expanded rows it shares with the band before it in its strip (two rows) from that band
/// instead of expanding them again: with three bands per thread the halo rows had made
/// 10-40% more expansion work on MobileNetV2's banded blocks.
fn inverted_residual_strips(
    x: &[f32],
    s: BlockShape,
    block: &Block,
    (rows, strips): (usize, usize),
    y: &mut [f32],
) {
    check(x, &s, block, y);
    assert!(rows >= 1, "block: empty bands");
    let (ho, _) = s.out_hw();
    let bands = ho.div_ceil(rows);
    let per_strip = bands.div_ceil(strips.clamp(1, bands)) * rows;
    let work: Vec<(usize, usize)> = (0..s.n)
        .flat_map(|b| (0..ho).step_by(per_strip).map(move |r0| (b, r0)))
        .collect();
    let dst = SendPtr(y.as_mut_ptr());
    work.into_par_iter().for_each(|(b, r0)| {
        let mut scratch = scratch_of_this_thread();
        let mut kept = None;
        let end = (r0 + per_strip).min(ho);
        for o0 in (r0..end).step_by(rows) {
            let band = Band {
                b,
                o0,
                o1: (o0 + rows).min(end),
                rows,
            };
            // SAFETY: bands write disjoint rows of `y` (image b, rows [o0, o1) of every
            // channel), which `check` sized.
            unsafe { run_band(x, &s, block, band, (&mut scratch, &mut kept), dst) };
        }
        SCRATCH.set(Some(scratch));
    });
}

/// This thread's kept buffers (to be put back in [`SCRATCH`] when done), or new ones.
fn scratch_of_this_thread() -> Scratch {
    SCRATCH.take().unwrap_or_default()
}

thread_local! {
    /// Each thread's band buffers, kept between bands, blocks and calls (they used to be
    /// allocated and zero-filled per parallel job, every call).
    static SCRATCH: std::cell::Cell<Option<Scratch>> = const { std::cell::Cell::new(None) };
}

/// The expanded and the depthwise rows of one band (or the planes of one share of a split
/// block), kept by each thread between bands and calls.
#[derive(Default)]
struct Scratch {
    expanded: Vec<f32>,
    depthwise: Vec<f32>,
    planes: dw::PlaneScratch,
    /// A zero bias for the partial sums of split blocks.
    zeros: Vec<f32>,
}

/// Output rows `[o0, o1)` of image `b`, in a strip of bands of `rows` rows.
#[derive(Clone, Copy)]
struct Band {
    b: usize,
    o0: usize,
    o1: usize,
    rows: usize,
}

/// The input rows `[first, end)` of the image whose expansion the last band of a strip left
/// at the start of each channel's rows in the buffer.
#[derive(Clone, Copy)]
struct Kept {
    first: usize,
    end: usize,
}

/// # Safety
/// No other thread may write the band's output rows; `x`, `y` and the block are checked.
unsafe fn run_band(
    x: &[f32],
    s: &BlockShape,
    block: &Block,
    band: Band,
    (scratch, kept): (&mut Scratch, &mut Option<Kept>),
    y: SendPtr,
) {
    let (st, plane) = (s.stride, s.h * s.w);
    let (ho, wo) = s.out_hw();
    let first_in = if band.o0 == 0 { 0 } else { st * band.o0 - st };
    let end_in = (st * (band.o1 - 1) + 2).min(s.h);
    let rows_in = end_in - first_in;
    let image = &x[band.b * s.c_in * plane..][..s.c_in * plane];
    // The depthwise input: the expanded rows, or (no expansion) the band's rows of each
    // input plane, read in place.
    let mid: (&[f32], usize) = match &block.expand {
        Some(e) => {
            // Every band of the strip keeps each channel's rows at the same stride.
            let chan = (st * band.rows + 2) * s.w;
            let expanded = grown(&mut scratch.expanded, s.c_mid * chan);
            let from = take_kept(expanded, chan, (first_in, end_in), kept.take(), s.w);
            let epilogue = Epilogue::new(e.bias, e.act);
            let io = TileIo {
                x: image[from * s.w..].as_ptr(),
                x_rs: plane,
                y: expanded[(from - first_in) * s.w..].as_mut_ptr(),
                y_rs: chan,
                offset: 0,
                channel: 0,
                epilogue: &epilogue,
            };
            let width_new = (end_in - from) * s.w;
            // SAFETY: c_in input rows of `width_new` pixels from row `from` of each plane;
            // `expanded` holds c_mid rows of `chan` floats, at least the band's rows_in * w.
            unsafe { gemm_tile(e.weights, (s.c_mid, s.c_in), 0, 0..s.c_mid, width_new, &io) };
            *kept = Some(Kept {
                first: first_in,
                end: end_in,
            });
            (expanded, chan)
        }
        None => (&image[first_in * s.w..], plane),
    };
    let d = &block.depthwise;
    // The band's depthwise rows that are output rows of the plane (the first, when the band
    // starts below row 0, reads a padding row in place of the row above the band).
    let skip = band.o0 - first_in / st;
    let rows_out = band.o1 - band.o0;
    let depthwise = grown(&mut scratch.depthwise, s.c_mid * rows_out * wo);
    let shape = DwShape {
        n: 1,
        c: s.c_mid,
        h: rows_in,
        w: s.w,
        stride: st,
    };
    dw::forward_fused_serial(
        mid,
        d.weight,
        (shape, skip..skip + rows_out),
        &Epilogue::new(d.bias, d.act),
        depthwise,
        &mut scratch.planes,
    );
    let p = &block.project;
    let out_first = band.b * s.c_out * ho * wo + band.o0 * wo;
    let epilogue = block.projection_epilogue();
    let io = TileIo {
        x: depthwise.as_ptr(),
        x_rs: rows_out * wo,
        y: y.at(out_first),
        y_rs: ho * wo,
        offset: out_first,
        channel: 0,
        epilogue: &epilogue,
    };
    let width_out = rows_out * wo;
    // SAFETY: the band's depthwise rows hold `o1 - o0` rows of `wo` per channel; the
    // output rows are this band's alone (caller's contract); the residual has y's layout.
    unsafe { gemm_tile(p.weights, (s.c_out, s.c_mid), 0, 0..s.c_out, width_out, &io) };
}

/// Moves the expanded rows the band wanting input rows `[first, end)` shares with the
/// previous band (`kept`) to the start of each channel's rows (`chan` floats apart) and
/// returns the first row still to expand.
fn take_kept(
    expanded: &mut [f32],
    chan: usize,
    (first, end): (usize, usize),
    kept: Option<Kept>,
    w: usize,
) -> usize {
    let Some(k) = kept.filter(|k| k.first <= first && first < k.end && k.end <= end) else {
        return first;
    };
    let (skip, len) = ((first - k.first) * w, (k.end - first) * w);
    if skip > 0 {
        for c in expanded.chunks_exact_mut(chan) {
            c.copy_within(skip..skip + len, 0);
        }
    }
    k.end
}

/// The first `len` values of `buf`, growing it if needed.
fn grown(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::{ConvShape, conv2d};

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (v % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn conv(x: &[f32], w: &ConvWeights, s: ConvShape, ep: &Epilogue) -> Vec<f32> {
        let mut y = vec![0.0; s.out_len()];
        conv2d(x, w, s, ep, &mut y);
        y
    }

    /// The block as three separate convolutions (the reference the plan ran before).
    fn unbanded(x: &[f32], s: BlockShape, block: &Block) -> Vec<f32> {
        let one = |c_in, c_out, h, w, kernel, stride, pad, groups| ConvShape {
            n: s.n,
            c_in,
            c_out,
            h,
            w,
            kernel,
            stride,
            pad,
            groups,
        };
        let mid = match &block.expand {
            Some(e) => conv(
                x,
                e.weights,
                one(s.c_in, s.c_mid, s.h, s.w, (1, 1), 1, 0, 1),
                &Epilogue::new(e.bias, e.act),
            ),
            None => x.to_vec(),
        };
        let d = &block.depthwise;
        let dw_shape = one(s.c_mid, s.c_mid, s.h, s.w, (3, 3), s.stride, 1, s.c_mid);
        let dw_weights = ConvWeights::unpacked(d.weight.to_vec());
        let after_dw = conv(&mid, &dw_weights, dw_shape, &Epilogue::new(d.bias, d.act));
        let (ho, wo) = s.out_hw();
        let p = &block.project;
        let epilogue = block.projection_epilogue();
        conv(
            &after_dw,
            p.weights,
            one(s.c_mid, s.c_out, ho, wo, (1, 1), 1, 0, 1),
            &epilogue,
        )
    }

    fn check_bands(s: BlockShape, expand: bool, residual: bool, packed: bool) {
        let make = |raw: Vec<f32>, c_out| {
            if packed {
                ConvWeights::new(raw, c_out, 1)
            } else {
                ConvWeights::unpacked(raw)
            }
        };
        let x = values(s.n * s.c_in * s.h * s.w, 1);
        let we = make(values(s.c_mid * s.c_in, 2), s.c_mid);
        let wp = make(values(s.c_out * s.c_mid, 3), s.c_out);
        let wd = values(s.c_mid * 9, 4);
        let (be, bd, bp) = (values(s.c_mid, 5), values(s.c_mid, 6), values(s.c_out, 7));
        let (ho, wo) = s.out_hw();
        let res = values(s.n * s.c_out * ho * wo, 8);
        let block = Block {
            expand: expand.then_some(Pointwise {
                weights: &we,
                bias: &be,
                act: Act::Relu6,
            }),
            depthwise: Depthwise {
                weight: &wd,
                bias: &bd,
                act: Act::Relu6,
                stride: s.stride,
            },
            project: Pointwise {
                weights: &wp,
                bias: &bp,
                act: Act::Identity,
            },
            residual: residual.then_some(&res[..]),
            post: if residual { Act::Relu } else { Act::Identity },
        };
        let want = unbanded(&x, s, &block);
        let close = |got: &[f32], how: &str| {
            for (i, (w, g)) in want.iter().zip(got).enumerate() {
                assert!(
                    (w - g).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{s:?} {how} expand {expand} residual {residual}: value {i} is {g}, want {w}"
                );
            }
        };
        for rows in [1, 2, 3, ho] {
            for strips in [1, 2, 3] {
                let mut got = vec![f32::NAN; want.len()];
                inverted_residual_strips(&x, s, &block, (rows, strips), &mut got);
                close(&got, &format!("rows {rows} strips {strips}"));
            }
        }
        // Twice each, so the second call finds the first one's buffers.
        for parts in [1, 2, 3, 2, 3] {
            let mut got = vec![f32::NAN; want.len()];
            inverted_residual_split(&x, s, &block, parts, &mut got);
            close(&got, &format!("split in {parts}"));
        }
        let mut got = vec![f32::NAN; want.len()];
        inverted_residual_per_image(&x, s, &block, &mut got);
        close(&got, "per image");
        if !expand {
            for parts in [2, 3] {
                let mut got = vec![f32::NAN; want.len()];
                depthwise_pointwise_split(&x, s, &block, parts, &mut got);
                close(&got, &format!("outputs split in {parts}"));
            }
        }
    }

    #[test]
    fn bands_equal_the_three_convolutions_run_whole() {
        for packed in [true, false] {
            for (stride, h, w) in [(1, 9, 7), (2, 9, 7), (2, 10, 17), (1, 1, 5), (2, 2, 3)] {
                let s = BlockShape {
                    n: 2,
                    c_in: 5,
                    c_mid: 12,
                    c_out: if stride == 1 { 5 } else { 9 },
                    h,
                    w,
                    stride,
                };
                check_bands(s, true, stride == 1, packed);
                check_bands(BlockShape { c_mid: 5, ..s }, false, false, packed);
            }
            // Shares of 16 channels and more; 7x7 (the narrow tiles) and 14x14 planes.
            for (c_mid, hw, stride) in [(40, 7, 1), (64, 14, 2), (48, 7, 2), (96, 14, 1)] {
                let s = BlockShape {
                    n: 1,
                    c_in: 24,
                    c_mid,
                    c_out: if stride == 1 { 24 } else { 40 },
                    h: hw,
                    w: hw,
                    stride,
                };
                check_bands(s, true, stride == 1, packed);
                check_bands(BlockShape { c_in: c_mid, ..s }, false, false, packed);
            }
        }
    }

    #[test]
    fn only_large_expanded_planes_are_banded() {
        let s = BlockShape {
            n: 1,
            c_in: 16,
            c_mid: 96,
            c_out: 24,
            h: 112,
            w: 112,
            stride: 2,
        };
        let rows = band_rows(&s).expect("4.8 MB of expanded rows are banded");
        assert!((1..=56 / 2).contains(&rows), "{rows}");
        let small = BlockShape {
            h: 14,
            w: 14,
            c_mid: 576,
            ..s
        };
        assert_eq!(band_rows(&small), None);
    }
}
