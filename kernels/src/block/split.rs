//! An inverted-residual block on one image with its expanded channels split between the
//! threads, for expanded tensors of up to 1 MiB (28x28 and smaller at 224x224). Run layer by
//! layer, such a block is three parallel steps, each a split and a join over a few tiles of
//! unequal size; MobileNetV2's 7x7 blocks ran 1.44x faster on two threads than on one. Here
//! each thread expands its share of the channels, convolves them and projects them into a
//! partial sum of the whole output (the projection sums over the expanded channels); the
//! caller then adds the partial sums and applies the projection's epilogue. One parallel
//! step, equal shares, and the expanded tensor of each share never leaves its thread.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::{Block, BlockShape, Scratch, check, grown, scratch_of_this_thread};
use crate::bn::Act;
use crate::cpu::SendPtr;
use crate::dw::{self, DwShape};
use crate::fused::{Epilogue, gemm_tile_k};
use crate::micro::TileIo;

/// Channels per share are a multiple of this (the micro-kernel's tiles start at whole
/// vectors of channels).
const ALIGN: usize = 16;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns split blocks off or back on: A/B benchmarks.
pub fn set_split_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// How many shares a block of shape `s` is worth splitting into, or `None`: several images
/// already keep the threads busy; too few channels to share; or partial sums too large
/// beside the work they split (their sum runs on one thread). MobileNetV2's blocks expand
/// 6x and project back to a third or less (12-24% faster split, `examples/block_ab.rs`);
/// MobileNetV1's keep or double their channels (512 -> 1024 at 7x7: 7% slower split).
///
/// Blocks whose expanded tensor exceeds [`MAX_EXPANDED_BYTES`] are not split (they are
/// banded, [`super::band_rows`]): a share's expanded planes would not stay in its thread's
/// L2 cache.
pub fn split_parts(s: &BlockShape) -> Option<usize> {
    let parts = rayon::current_num_threads().min(s.c_mid / ALIGN);
    let small_sums = 2 * s.c_out <= s.c_mid;
    let fits = s.c_mid * s.h * s.w * 4 <= MAX_EXPANDED_BYTES;
    let on = ENABLED.load(Ordering::Relaxed);
    (on && s.n == 1 && parts >= 2 && small_sums && fits).then_some(parts)
}

/// The largest expanded tensor (one image) a split block takes: MobileNetV2's 28x28 blocks
/// (602 KB) ran 0.17-0.185 ms banded and 0.125-0.128 ms split; its 56x56 ones (1.8 MB) were
/// faster banded (0.343 against 0.382 ms; `examples/block_ab.rs`, AMD host).
const MAX_EXPANDED_BYTES: usize = 1 << 20;

/// The expanded channels of share `i` of `parts`: equal runs cut at multiples of
/// [`ALIGN`].
fn share(c_mid: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let cut = |j: usize| {
        if j == parts {
            c_mid
        } else {
            (c_mid * j / parts).div_ceil(ALIGN) * ALIGN
        }
    };
    cut(i).min(c_mid)..cut(i + 1).min(c_mid)
}

/// Runs `block` on `x` into `y` (`[n, c_out, ho, wo]`) in `parts` shares of the expanded
/// channels (see [`split_parts`]).
pub fn inverted_residual_split(
    x: &[f32],
    s: BlockShape,
    block: &Block,
    parts: usize,
    y: &mut [f32],
) {
    check(x, &s, block, y);
    assert!(parts >= 1, "split block: no shares");
    let (ho, wo) = s.out_hw();
    let out_len = s.c_out * ho * wo;
    // Share 0 sums into `y`, the others into `partials`, one output each.
    let mut partials = PARTIALS.take();
    let partials_len = (parts - 1) * s.n * out_len;
    if partials.len() < partials_len {
        partials.resize(partials_len, 0.0);
    }
    let (y_ptr, rest) = (SendPtr(y.as_mut_ptr()), SendPtr(partials.as_mut_ptr()));
    (0..parts).into_par_iter().for_each(|i| {
        let sum = if i == 0 {
            y_ptr
        } else {
            SendPtr(rest.at((i - 1) * s.n * out_len))
        };
        let mut scratch = scratch_of_this_thread();
        for b in 0..s.n {
            // SAFETY: share i writes only its own output (y or its run of `partials`, each
            // n * out_len long, sized above).
            unsafe {
                run_share(
                    x,
                    &s,
                    block,
                    (b, Part::Sum(share(s.c_mid, parts, i))),
                    &mut scratch,
                    sum.at(b * out_len),
                )
            };
        }
        super::SCRATCH.set(Some(scratch));
    });
    let epilogue = block.projection_epilogue();
    let plane = ho * wo;
    for (row_index, row) in y.chunks_exact_mut(plane).enumerate() {
        for i in 1..parts {
            let other = &partials[(i - 1) * s.n * out_len + row_index * plane..][..plane];
            row.iter_mut().zip(other).for_each(|(v, o)| *v += o);
        }
        epilogue.apply_wide(row_index % s.c_out, row_index * plane, row);
    }
    PARTIALS.set(partials);
}

/// How many shares of its output channels a block without expansion (MobileNetV1's
/// depthwise-pointwise pairs) of shape `s` is worth splitting one image into, or `None`:
/// each thread runs the whole depthwise convolution (1-2% of such a block's work, where the
/// projection sums over 256-1024 channels) and projects its share of the output channels,
/// one parallel step instead of two. Its output is as large as its input, so partial sums
/// ([`split_parts`]) would cost as much as they save.
pub fn output_parts(s: &BlockShape) -> Option<usize> {
    let parts = rayon::current_num_threads().min(s.c_out / ALIGN);
    let fits = s.c_mid * s.h * s.w * 4 <= MAX_EXPANDED_BYTES;
    let on = ENABLED.load(Ordering::Relaxed);
    (on && s.n == 1 && s.c_mid == s.c_in && parts >= 2 && fits).then_some(parts)
}

/// Runs `block` (without expansion) on `x` into `y` in `parts` shares of the output
/// channels ([`output_parts`]), each share's thread running the depthwise convolution of the
/// whole image into its own buffer.
pub fn depthwise_pointwise_split(
    x: &[f32],
    s: BlockShape,
    block: &Block,
    parts: usize,
    y: &mut [f32],
) {
    check(x, &s, block, y);
    assert!(
        block.expand.is_none(),
        "split outputs: a block without expansion"
    );
    let (ho, wo) = s.out_hw();
    let y_ptr = SendPtr(y.as_mut_ptr());
    (0..parts).into_par_iter().for_each(|i| {
        let mut scratch = scratch_of_this_thread();
        for b in 0..s.n {
            let part = Part::Outputs(share(s.c_out, parts, i));
            let out = y_ptr.at(b * s.c_out * ho * wo);
            // SAFETY: share i writes only its output channels' planes of `y` (checked).
            unsafe { run_share(x, &s, block, (b, part), &mut scratch, out) };
        }
        super::SCRATCH.set(Some(scratch));
    });
}

/// Whether a block of shape `s` runs one image per thread ([`inverted_residual_per_image`]):
/// images enough for every thread, and an expanded tensor (per image) that stays in a
/// thread's cache, as for [`split_parts`].
pub fn per_image(s: &BlockShape) -> bool {
    let fits = s.c_mid * s.h * s.w * 4 <= MAX_EXPANDED_BYTES;
    PER_IMAGE.load(Ordering::Relaxed) && s.n >= rayon::current_num_threads().max(2) && fits
}

static PER_IMAGE: AtomicBool = AtomicBool::new(true);

/// Turns [`per_image`] blocks off or back on: A/B benchmarks.
pub fn set_per_image_enabled(on: bool) {
    PER_IMAGE.store(on, Ordering::Relaxed);
}

/// Runs `block` on `x` into `y` (`[n, c_out, ho, wo]`) one image per parallel job: each job
/// expands, convolves and projects its image with the expanded planes in its thread's
/// buffer, where run layer by layer over a batch (16 images of MobileNetV2's 7x7 blocks:
/// 3 MB expanded) they went out to L3 and back between the layers.
pub fn inverted_residual_per_image(x: &[f32], s: BlockShape, block: &Block, y: &mut [f32]) {
    check(x, &s, block, y);
    let (ho, wo) = s.out_hw();
    let out_len = s.c_out * ho * wo;
    let y_ptr = SendPtr(y.as_mut_ptr());
    (0..s.n).into_par_iter().for_each(|b| {
        let mut scratch = scratch_of_this_thread();
        // SAFETY: job b writes only image b's output, inside `y` (checked).
        unsafe {
            let out = y_ptr.at(b * out_len);
            run_share(
                x,
                &s,
                block,
                (b, Part::Outputs(0..s.c_out)),
                &mut scratch,
                out,
            );
        }
        super::SCRATCH.set(Some(scratch));
    });
}

thread_local! {
    /// The calling thread's partial sums of the shares after the first, kept between calls.
    static PARTIALS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// What one call of [`run_share`] computes.
enum Part {
    /// The partial sum of these expanded channels over every output channel, the
    /// projection's bias and activation not yet applied.
    Sum(Range<usize>),
    /// These output channels of the block, over every expanded channel, with the
    /// projection's epilogue.
    Outputs(Range<usize>),
}

/// Expands, convolves and projects image `b` (`part` says which channels) into `out`:
/// `c_out` planes of partial sums ([`Part::Sum`]), or image `b`'s output in `y`, of which
/// it writes the planes of its output channels ([`Part::Outputs`], the residual read at the
/// same place).
///
/// # Safety
/// No other thread may touch the planes of `out` that the call writes; `out` holds `c_out`
/// planes of `ho * wo`; `x` and the block are checked.
unsafe fn run_share(
    x: &[f32],
    s: &BlockShape,
    block: &Block,
    (b, part): (usize, Part),
    scratch: &mut Scratch,
    out: *mut f32,
) {
    let (plane, (ho, wo)) = (s.h * s.w, s.out_hw());
    let (mid, outputs) = match &part {
        Part::Sum(mid) => (mid.clone(), 0..s.c_out),
        Part::Outputs(outputs) => (0..s.c_mid, outputs.clone()),
    };
    if mid.is_empty() {
        // SAFETY: `out` holds c_out planes of ho * wo (the caller's contract).
        unsafe { std::ptr::write_bytes(out, 0, s.c_out * ho * wo) };
        return;
    }
    if outputs.is_empty() {
        return;
    }
    let image = &x[b * s.c_in * plane..][..s.c_in * plane];
    let channels = mid.len();
    let expanded: &[f32] = match &block.expand {
        Some(e) => {
            let buf = grown(&mut scratch.expanded, channels * plane);
            let epilogue = Epilogue::new(e.bias, e.act);
            let io = TileIo {
                x: image.as_ptr(),
                x_rs: plane,
                y: buf.as_mut_ptr(),
                y_rs: plane,
                offset: 0,
                channel: mid.start,
                epilogue: &epilogue,
            };
            let (m, depth) = (s.c_mid, s.c_in);
            // SAFETY: c_in input planes; `buf` holds the share's expanded planes.
            unsafe { gemm_tile_k(e.weights, (m, depth), 0, mid.clone(), 0..depth, plane, &io) };
            buf
        }
        None => &image[mid.start * plane..mid.end * plane],
    };
    let d = &block.depthwise;
    let depthwise = grown(&mut scratch.depthwise, channels * ho * wo);
    let shape = DwShape {
        n: 1,
        c: channels,
        h: s.h,
        w: s.w,
        stride: s.stride,
    };
    dw::forward_fused_serial(
        (expanded, plane),
        &d.weight[mid.start * 9..mid.end * 9],
        (shape, 0..ho),
        &Epilogue::new(&d.bias[mid.clone()], d.act),
        depthwise,
        &mut scratch.planes,
    );
    let first = outputs.start * ho * wo;
    let epilogue = match part {
        Part::Outputs(_) => block.projection_epilogue(),
        Part::Sum(_) => {
            let zeros = grown(&mut scratch.zeros, s.c_out);
            zeros.fill(0.0);
            Epilogue::new(zeros, Act::Identity)
        }
    };
    let io = TileIo {
        x: depthwise.as_ptr(),
        x_rs: ho * wo,
        // SAFETY: plane `outputs.start` of `out` (the caller's contract).
        y: unsafe { out.add(first) },
        y_rs: ho * wo,
        offset: match part {
            Part::Outputs(_) => b * s.c_out * ho * wo + first,
            Part::Sum(_) => 0,
        },
        channel: outputs.start,
        epilogue: &epilogue,
    };
    let p = &block.project;
    // SAFETY: the depthwise planes are the projection's input rows `mid`; `out` holds the
    // planes of `outputs` (the caller's contract).
    unsafe { gemm_tile_k(p.weights, (s.c_out, s.c_mid), 0, outputs, mid, ho * wo, &io) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_channels_in_aligned_runs() {
        for (c_mid, parts) in [(960, 2), (144, 2), (576, 3), (40, 2), (384, 4)] {
            let mut next = 0;
            for i in 0..parts {
                let r = share(c_mid, parts, i);
                assert_eq!(r.start, next, "{c_mid} / {parts}: share {i} is {r:?}");
                assert!(r.start.is_multiple_of(ALIGN), "{c_mid} / {parts}: {r:?}");
                next = r.end;
            }
            assert_eq!(next, c_mid);
        }
        assert_eq!(share(144, 2, 0), 0..80);
        assert_eq!(share(144, 2, 1), 80..144);
    }
}
