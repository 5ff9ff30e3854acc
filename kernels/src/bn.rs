//! Batch normalisation fused with an activation (identity, ReLU, ReLU6) on NCHW `f32` data.
//!
//! Passes over the big activations:
//! - [`train_forward`]: one statistics pass over `x`, one pass `x -> y` (normalise + activate);
//! - [`train_backward`]: one reduction pass over `(x, dy)`, one pass `(x, dy) -> dx`;
//! - [`eval_forward`]: one pass `x -> y`.
//!
//! Numerics:
//! - the pre-activation is always computed as `z = (x - mean) * a + beta` with
//!   `a = gamma / sqrt(var + eps)` (rounded to `f32` from an `f64` computation on the `f32`
//!   `mean`/`var`), the same expression (and the same fused multiply-add where available) in
//!   the forward and backward passes, so the activation mask of the backward pass is exactly the
//!   one the forward pass applied;
//! - the variance is computed in one pass over memory but without the cancellation of
//!   `E[x^2] - E[x]^2`: every plane is cut into L1-sized blocks (1024 floats), each block is
//!   summed to get its approximate mean `k`, then re-read from L1 to sum `x - k` and
//!   `(x - k)^2` (so the block's exact mean and centred sum of squares follow), and blocks then
//!   planes are merged with Chan et al.'s pairwise formula in `f64`;
//! - every reduction accumulates at most 64 values per `f32` lane before the lanes are summed
//!   into `f64`; per-channel results are combined in `f64` in a fixed order, so results do not
//!   depend on the number of threads.
//!
//! Parallelism: the `n * c` planes (each `hw` contiguous floats) are cut into contiguous runs of
//! whole planes, with the number of runs a multiple of the thread count when there is enough
//! work; the reductions produce per-plane partial results that are then combined per channel.
//! This reads memory in order and balances the threads for every shape, including few channels
//! (`c = 32`) and tiny planes (`7 x 7`).

use rayon::prelude::*;
use std::mem::MaybeUninit;

use crate::cpu::output_buffer;
#[cfg(target_arch = "x86_64")]
use crate::cpu::{Isa, isa};

/// Activation applied right after batch norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// `y = z`.
    Identity,
    /// `y = max(z, 0)`; derivative 1 where `z > 0`, else 0.
    Relu,
    /// `y = min(max(z, 0), 6)`; derivative 1 where `0 < z < 6`, else 0.
    Relu6,
}

const ID: u8 = 0;
const RELU: u8 = 1;
const RELU6: u8 = 2;

/// Runs `$body` with the const `$k` set to `$act`'s code, so that each activation gets its
/// own monomorphised loop.
macro_rules! per_act {
    ($act:expr, $k:ident => $body:expr) => {
        match $act {
            Act::Identity => {
                const $k: u8 = ID;
                $body
            }
            Act::Relu => {
                const $k: u8 = RELU;
                $body
            }
            Act::Relu6 => {
                const $k: u8 = RELU6;
                $body
            }
        }
    };
}

/// Accumulator lanes (one AVX-512 register, two AVX2 registers).
const W: usize = 16;
/// Floats per reduction block: 4 KiB, stays in L1 between the two sweeps of the statistics.
const BLOCK: usize = 1024;
/// Minimum floats per parallel task.
const TASK_ELEMS: usize = 8192;

/// Shape of a batch-norm input: `n` images of `c` channels with `hw` values each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnShape {
    /// Images.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Values per channel plane (height x width).
    pub hw: usize,
}

/// Training-mode batch norm + activation over x [n, c, hw] (hw = h*w).
/// Returns (y [n, c, hw], batch mean [c], biased batch variance [c]);
/// y = act((x - mean) / sqrt(var + eps) * gamma + beta).
///
/// The variance is the biased one (divided by `n * hw`), computed in one numerically safe
/// pass (blockwise centred sums merged in `f64`, see the module documentation).
/// Panics if a slice length does not match the shape or if `n * hw == 0` while `c > 0`.
pub fn train_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    s: BnShape,
    eps: f64,
    act: Act,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let BnShape { n, c, hw } = s;
    check_len(x.len(), n * c * hw, "x");
    check_len(gamma.len(), c, "gamma");
    check_len(beta.len(), c, "beta");
    if c == 0 {
        return (Vec::new(), Vec::new(), Vec::new());
    }
    assert!(n * hw > 0, "bn::train_forward: empty batch (n * hw == 0)");

    // Pass 1: per-plane (mean, centred sum of squares).
    let planes = n * c;
    let ppt = planes_per_task(planes, hw);
    let mut ps = vec![(0f64, 0f64); planes];
    let items: Vec<_> = x.chunks(ppt * hw).zip(ps.chunks_mut(ppt)).collect();
    for_each_task(items, |_, (xs, out)| stats_task(xs, out, hw));

    // Merge the n planes of every channel (equal counts: exact two-level formula).
    let count = (n * hw) as f64;
    let mut mean = vec![0f32; c];
    let mut var = vec![0f32; c];
    for ch in 0..c {
        let pm = (0..n).map(|i| ps[i * c + ch].0).sum::<f64>() / n as f64;
        let m2: f64 = (0..n)
            .map(|i| {
                let (mi, qi) = ps[i * c + ch];
                let d = mi - pm;
                qi + hw as f64 * d * d
            })
            .sum();
        mean[ch] = pm as f32;
        var[ch] = (m2 / count) as f32;
    }

    // Pass 2: normalise + activate, with the coefficients derived from the f32 stats returned.
    let coefs: Vec<FwdCoef> = (0..c)
        .map(|ch| FwdCoef::new(gamma[ch], beta[ch], mean[ch], var[ch], eps).0)
        .collect();
    let y = normalize(x, &coefs, n, c, hw, act);
    (y, mean, var)
}

/// Gradients of [`train_forward`] (batch statistics are functions of x) given dy [n, c, hw]
/// and the mean/var it returned: (dx [n, c, hw], d_gamma [c], d_beta [c]).
/// The activation's derivative is taken at z = normalised*gamma + beta recomputed from
/// x, mean, var (ReLU: 1 where z > 0; ReLU6: 1 where 0 < z < 6; else 0).
///
/// With `M = n * hw`, `xhat = (x - mean) / sqrt(var + eps)`, `g = dy * act'(z)`:
/// `d_beta = sum g`, `d_gamma = sum g * xhat`,
/// `dx = gamma / sqrt(var + eps) * (g - d_beta / M - xhat * d_gamma / M)`.
/// Panics if a slice length does not match the shape or if `n * hw == 0` while `c > 0`.
#[allow(clippy::too_many_arguments)]
pub fn train_backward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    dy: &[f32],
    s: BnShape,
    eps: f64,
    act: Act,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let BnShape { n, c, hw } = s;
    check_len(x.len(), n * c * hw, "x");
    check_len(dy.len(), n * c * hw, "dy");
    for (s, name) in [
        (gamma, "gamma"),
        (beta, "beta"),
        (mean, "mean"),
        (var, "var"),
    ] {
        check_len(s.len(), c, name);
    }
    if c == 0 {
        return (Vec::new(), Vec::new(), Vec::new());
    }
    assert!(n * hw > 0, "bn::train_backward: empty batch (n * hw == 0)");

    let fwd: Vec<(FwdCoef, f64)> = (0..c)
        .map(|ch| FwdCoef::new(gamma[ch], beta[ch], mean[ch], var[ch], eps))
        .collect();
    let fco: Vec<FwdCoef> = fwd.iter().map(|f| f.0).collect();

    // Pass 1: per-plane (sum g, sum g * (x - mean)).
    let planes = n * c;
    let ppt = planes_per_task(planes, hw);
    let mut ps = vec![(0f64, 0f64); planes];
    let items: Vec<_> = x
        .chunks(ppt * hw)
        .zip(dy.chunks(ppt * hw))
        .zip(ps.chunks_mut(ppt))
        .collect();
    per_act!(act, K => for_each_task(items, |t, ((xs, ds), out)| {
        bsums_task::<K>(xs, ds, out, hw, c, t * ppt, &fco)
    }));

    // Per-channel sums and dx coefficients: dx = a * (g + c2 + neg_k1 * (x - mean)).
    let m = (n * hw) as f64;
    let mut d_gamma = vec![0f32; c];
    let mut d_beta = vec![0f32; c];
    let mut bco = Vec::with_capacity(c);
    for ch in 0..c {
        let sg: f64 = (0..n).map(|i| ps[i * c + ch].0).sum();
        let sgx: f64 = (0..n).map(|i| ps[i * c + ch].1).sum();
        let (f, inv) = fwd[ch];
        let dg = sgx * inv;
        d_gamma[ch] = dg as f32;
        d_beta[ch] = sg as f32;
        bco.push(BwdCoef {
            f,
            neg_k1: (-inv * dg / m) as f32,
            c2: (-sg / m) as f32,
        });
    }

    // Pass 2: dx.
    let mut dx = output_buffer(x.len());
    let items: Vec<_> = x
        .chunks(ppt * hw)
        .zip(dy.chunks(ppt * hw))
        .zip(dx.spare_capacity_mut()[..x.len()].chunks_mut(ppt * hw))
        .collect();
    per_act!(act, K => for_each_task(items, |t, ((xs, ds), out)| {
        dx_task::<K>(xs, ds, out, hw, c, t * ppt, &bco)
    }));
    // SAFETY: the tasks above wrote every one of the first x.len() elements (the chunks
    // cover them all and each body writes its whole output slice).
    unsafe { dx.set_len(x.len()) };
    (dx, d_gamma, d_beta)
}

/// Inference: y = act((x - mean) / sqrt(var + eps) * gamma + beta) with given (running) stats.
///
/// One pass over `x`; the same arithmetic as the second pass of [`train_forward`].
/// Panics if a slice length does not match the shape.
#[allow(clippy::too_many_arguments)]
pub fn eval_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    s: BnShape,
    eps: f64,
    act: Act,
) -> Vec<f32> {
    let BnShape { n, c, hw } = s;
    check_len(x.len(), n * c * hw, "x");
    for (s, name) in [
        (gamma, "gamma"),
        (beta, "beta"),
        (mean, "mean"),
        (var, "var"),
    ] {
        check_len(s.len(), c, name);
    }
    let coefs: Vec<FwdCoef> = (0..c)
        .map(|ch| FwdCoef::new(gamma[ch], beta[ch], mean[ch], var[ch], eps).0)
        .collect();
    normalize(x, &coefs, n, c, hw, act)
}

fn check_len(got: usize, want: usize, name: &str) {
    assert!(
        got == want,
        "bn: {name} has {got} elements, the shape needs {want}"
    );
}

/// Per-channel coefficients of `z = (x - mean) * a + beta`.
#[derive(Clone, Copy, Debug)]
struct FwdCoef {
    mean: f32,
    a: f32,
    beta: f32,
}

impl FwdCoef {
    /// The coefficients and `1 / sqrt(var + eps)` in `f64`.
    fn new(gamma: f32, beta: f32, mean: f32, var: f32, eps: f64) -> (Self, f64) {
        let inv = 1.0 / (var as f64 + eps).sqrt();
        let a = (gamma as f64 * inv) as f32;
        (Self { mean, a, beta }, inv)
    }
}

/// Per-channel coefficients of `dx = a * (g + c2 + neg_k1 * (x - mean))` (the sum is formed
/// before scaling by `a`, so that `g - mean(g)` cancels exactly where it should).
#[derive(Clone, Copy, Debug)]
struct BwdCoef {
    f: FwdCoef,
    neg_k1: f32,
    c2: f32,
}

/// Planes per parallel task: tasks of at least [`TASK_ELEMS`] floats, their number rounded up
/// to a multiple of the thread count (planes are equal work, so threads stay balanced).
fn planes_per_task(planes: usize, hw: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let mut tasks = (planes * hw / TASK_ELEMS).max(1);
    if tasks > 1 {
        tasks = tasks.div_ceil(threads) * threads;
    }
    planes.div_ceil(tasks.min(planes).max(1)).max(1)
}

/// Runs `f(task_index, item)` for every item, on rayon's global pool when there are several.
fn for_each_task<T: Send>(items: Vec<T>, f: impl Fn(usize, T) + Sync + Send) {
    if items.len() <= 1 {
        items.into_iter().enumerate().for_each(|(i, t)| f(i, t));
    } else {
        items.into_par_iter().enumerate().for_each(|(i, t)| f(i, t));
    }
}

fn normalize(x: &[f32], coefs: &[FwdCoef], n: usize, c: usize, hw: usize, act: Act) -> Vec<f32> {
    let mut y = output_buffer(x.len());
    if x.is_empty() {
        return y;
    }
    let ppt = planes_per_task(n * c, hw);
    let out = &mut y.spare_capacity_mut()[..x.len()];
    let items: Vec<_> = x.chunks(ppt * hw).zip(out.chunks_mut(ppt * hw)).collect();
    per_act!(act, K => for_each_task(items, |t, (xs, ys)| {
        norm_task::<K>(xs, ys, hw, c, t * ppt, coefs)
    }));
    // SAFETY: the tasks above wrote every one of the first x.len() elements (the chunks
    // cover them all and each body writes its whole output slice).
    unsafe { y.set_len(x.len()) };
    y
}

// ---------------------------------------------------------------------------------------------
// Instruction-set dispatch.

/// Defines `$name`, which runs `$body::<consts.., FMA>` compiled for the best instruction set
/// of this CPU (AVX-512 or AVX2, both with FMA), or portably (`FMA = false`).
macro_rules! dispatched {
    ($name:ident <$(const $cg:ident: $ct:ty),*> ($($p:ident: $t:ty),*) => $body:ident) => {
        fn $name<$(const $cg: $ct),*>($($p: $t),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512<$(const $cg: $ct),*>($($p: $t),*) {
                    $body::<$($cg,)* true>($($p),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2<$(const $cg: $ct),*>($($p: $t),*) {
                    $body::<$($cg,)* true>($($p),*)
                }
                match isa() {
                    // SAFETY: `isa()` returns `Avx512` only after `is_x86_feature_detected!`
                    // confirmed avx512f, avx2 and fma on this CPU.
                    Isa::Avx512 => return unsafe { avx512::<$($cg),*>($($p),*) },
                    // SAFETY: `isa()` returns `Avx2` only after detecting avx2 and fma.
                    Isa::Avx2 => return unsafe { avx2::<$($cg),*>($($p),*) },
                    Isa::Portable => {}
                }
            }
            $body::<$($cg,)* false>($($p),*)
        }
    };
}

dispatched!(stats_task<>(xs: &[f32], out: &mut [(f64, f64)], hw: usize) => stats_body);
dispatched!(norm_task<const A: u8>(
    xs: &[f32], ys: &mut [MaybeUninit<f32>], hw: usize, c: usize, p0: usize, coefs: &[FwdCoef]
) => norm_body);
dispatched!(bsums_task<const A: u8>(
    xs: &[f32], ds: &[f32], out: &mut [(f64, f64)], hw: usize, c: usize, p0: usize,
    coefs: &[FwdCoef]
) => bsums_body);
dispatched!(dx_task<const A: u8>(
    xs: &[f32], ds: &[f32], out: &mut [MaybeUninit<f32>], hw: usize, c: usize, p0: usize, coefs: &[BwdCoef]
) => dx_body);

// ---------------------------------------------------------------------------------------------
// Generic bodies (inlined into each instruction-set variant).

/// `a * b + c`, fused where the caller is compiled with FMA.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// The pre-activation, computed identically in every pass.
#[inline(always)]
fn pre_act<const FMA: bool>(x: f32, co: FwdCoef) -> f32 {
    madd::<FMA>(x - co.mean, co.a, co.beta)
}

#[inline(always)]
fn act_fwd<const A: u8>(z: f32) -> f32 {
    match A {
        RELU => {
            if z > 0.0 {
                z
            } else {
                0.0
            }
        }
        RELU6 => {
            let r = if z > 0.0 { z } else { 0.0 };
            if r < 6.0 { r } else { 6.0 }
        }
        _ => z,
    }
}

/// `dy * act'(z)`.
#[inline(always)]
fn act_grad<const A: u8>(z: f32, dy: f32) -> f32 {
    match A {
        RELU => {
            if z > 0.0 {
                dy
            } else {
                0.0
            }
        }
        RELU6 => {
            if z > 0.0 && z < 6.0 {
                dy
            } else {
                0.0
            }
        }
        _ => dy,
    }
}

/// Sum of the lanes, in `f64` (one `f32` addition of lane pairs first, then a tree).
#[inline(always)]
fn hsum(v: &[f32; W]) -> f64 {
    const H: usize = W / 2;
    let mut h = [0f32; H];
    for i in 0..H {
        h[i] = v[i] + v[i + H];
    }
    let mut d = [0f64; H / 2];
    for i in 0..H / 2 {
        d[i] = h[i] as f64 + h[i + H / 2] as f64;
    }
    let mut w = H / 4;
    while w > 0 {
        for i in 0..w {
            d[i] += d[i + w];
        }
        w /= 2;
    }
    d[0]
}

/// Calls `f(acc, lane, x[j])` for every element so that `f` updates `K` arrays of per-lane
/// accumulators: full chunks of `W`, then the last `< W` elements padded with `pad` (which
/// must leave the accumulators unchanged). Every lane index is a constant, so the
/// accumulators stay in vector registers.
#[inline(always)]
fn fold1<const K: usize>(
    x: &[f32],
    pad: f32,
    acc: &mut [[f32; W]; K],
    f: impl Fn(&mut [[f32; W]; K], usize, f32),
) {
    let mut it = x.chunks_exact(W);
    for ch in &mut it {
        let ch: &[f32; W] = ch.try_into().unwrap();
        for (i, &v) in ch.iter().enumerate() {
            f(acc, i, v);
        }
    }
    let rest = it.remainder();
    if !rest.is_empty() {
        let mut buf = [pad; W];
        buf[..rest.len()].copy_from_slice(rest);
        for (i, &v) in buf.iter().enumerate() {
            f(acc, i, v);
        }
    }
}

/// [`fold1`] over two slices of equal length (padding with `pad.0` and `pad.1`).
#[inline(always)]
fn fold2<const K: usize>(
    x: &[f32],
    y: &[f32],
    pad: (f32, f32),
    acc: &mut [[f32; W]; K],
    f: impl Fn(&mut [[f32; W]; K], usize, f32, f32),
) {
    let mut xi = x.chunks_exact(W);
    let mut yi = y.chunks_exact(W);
    for (xc, yc) in (&mut xi).zip(&mut yi) {
        let xc: &[f32; W] = xc.try_into().unwrap();
        let yc: &[f32; W] = yc.try_into().unwrap();
        for i in 0..W {
            f(acc, i, xc[i], yc[i]);
        }
    }
    let (xr, yr) = (xi.remainder(), yi.remainder());
    if !xr.is_empty() {
        let mut xb = [pad.0; W];
        let mut yb = [pad.1; W];
        xb[..xr.len()].copy_from_slice(xr);
        yb[..yr.len()].copy_from_slice(yr);
        for i in 0..W {
            f(acc, i, xb[i], yb[i]);
        }
    }
}

/// (mean, centred sum of squares) of one plane; see the module documentation.
#[inline(always)]
fn plane_stats<const FMA: bool>(x: &[f32]) -> (f64, f64) {
    let (mut cnt, mut mean, mut m2) = (0f64, 0f64, 0f64);
    for blk in x.chunks(BLOCK) {
        let nb = blk.len() as f64;
        let r = 1.0 / nb;
        let mut s = [[0f32; W]; 1];
        fold1(blk, 0.0, &mut s, |s, i, v| s[0][i] += v);
        let k = (hsum(&s[0]) * r) as f32;
        let mut dq = [[0f32; W]; 2];
        fold1(blk, k, &mut dq, |dq, i, v| {
            let u = v - k;
            dq[0][i] += u;
            dq[1][i] = madd::<FMA>(u, u, dq[1][i]);
        });
        let d = hsum(&dq[0]);
        let q = hsum(&dq[1]);
        let bmean = k as f64 + d * r;
        let bm2 = (q - d * d * r).max(0.0);
        if cnt == 0.0 {
            (cnt, mean, m2) = (nb, bmean, bm2);
            continue;
        }
        // Chan et al.: merge (cnt, mean, m2) with the block's (nb, bmean, bm2).
        let tot = cnt + nb;
        let delta = bmean - mean;
        mean += delta * (nb / tot);
        m2 += bm2 + delta * delta * (cnt * nb / tot);
        cnt = tot;
    }
    (mean, m2)
}

#[inline(always)]
fn stats_body<const FMA: bool>(xs: &[f32], out: &mut [(f64, f64)], hw: usize) {
    for (xp, o) in xs.chunks_exact(hw).zip(out.iter_mut()) {
        *o = plane_stats::<FMA>(xp);
    }
}

#[inline(always)]
fn norm_body<const A: u8, const FMA: bool>(
    xs: &[f32],
    ys: &mut [MaybeUninit<f32>],
    hw: usize,
    c: usize,
    p0: usize,
    coefs: &[FwdCoef],
) {
    for (j, (xp, yp)) in xs.chunks_exact(hw).zip(ys.chunks_exact_mut(hw)).enumerate() {
        let co = coefs[(p0 + j) % c];
        let f = |v: f32| act_fwd::<A>(pre_act::<FMA>(v, co));
        let mut xi = xp.chunks_exact(W);
        let mut yi = yp.chunks_exact_mut(W);
        for (xc, yc) in (&mut xi).zip(&mut yi) {
            let xc: &[f32; W] = xc.try_into().unwrap();
            let yc: &mut [MaybeUninit<f32>; W] = yc.try_into().unwrap();
            for i in 0..W {
                yc[i].write(f(xc[i]));
            }
        }
        for (&v, o) in xi.remainder().iter().zip(yi.into_remainder()) {
            o.write(f(v));
        }
    }
}

#[inline(always)]
fn bsums_body<const A: u8, const FMA: bool>(
    xs: &[f32],
    ds: &[f32],
    out: &mut [(f64, f64)],
    hw: usize,
    c: usize,
    p0: usize,
    coefs: &[FwdCoef],
) {
    let planes = xs.chunks_exact(hw).zip(ds.chunks_exact(hw));
    for (j, ((xp, dp), o)) in planes.zip(out.iter_mut()).enumerate() {
        let co = coefs[(p0 + j) % c];
        let (mut sg, mut sgx) = (0f64, 0f64);
        for (xb, db) in xp.chunks(BLOCK).zip(dp.chunks(BLOCK)) {
            let mut acc = [[0f32; W]; 2];
            fold2(xb, db, (co.mean, 0.0), &mut acc, |acc, i, v, d| {
                let g = act_grad::<A>(pre_act::<FMA>(v, co), d);
                acc[0][i] += g;
                acc[1][i] = madd::<FMA>(g, v - co.mean, acc[1][i]);
            });
            sg += hsum(&acc[0]);
            sgx += hsum(&acc[1]);
        }
        *o = (sg, sgx);
    }
}

#[inline(always)]
fn dx_body<const A: u8, const FMA: bool>(
    xs: &[f32],
    ds: &[f32],
    out: &mut [MaybeUninit<f32>],
    hw: usize,
    c: usize,
    p0: usize,
    coefs: &[BwdCoef],
) {
    let planes = xs.chunks_exact(hw).zip(ds.chunks_exact(hw));
    for (j, ((xp, dp), op)) in planes.zip(out.chunks_exact_mut(hw)).enumerate() {
        let co = coefs[(p0 + j) % c];
        let f = |v: f32, d: f32| {
            let g = act_grad::<A>(pre_act::<FMA>(v, co.f), d);
            co.f.a * (g + madd::<FMA>(co.neg_k1, v - co.f.mean, co.c2))
        };
        let mut xi = xp.chunks_exact(W);
        let mut di = dp.chunks_exact(W);
        let mut oi = op.chunks_exact_mut(W);
        for ((xc, dc), oc) in (&mut xi).zip(&mut di).zip(&mut oi) {
            let xc: &[f32; W] = xc.try_into().unwrap();
            let dc: &[f32; W] = dc.try_into().unwrap();
            let oc: &mut [MaybeUninit<f32>; W] = oc.try_into().unwrap();
            for i in 0..W {
                oc[i].write(f(xc[i], dc[i]));
            }
        }
        let rest = xi.remainder().iter().zip(di.remainder());
        for ((&v, &d), o) in rest.zip(oi.into_remainder()) {
            o.write(f(v, d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const ACTS: [Act; 3] = [Act::Identity, Act::Relu, Act::Relu6];
    const EPS: f64 = 1e-5;
    /// Distance of z to a kink of the activation under which the f32 kernel and the f64
    /// reference may legitimately disagree on the mask.
    const KINK: f64 = 1e-4;

    struct Data {
        x: Vec<f32>,
        gamma: Vec<f32>,
        beta: Vec<f32>,
        dy: Vec<f32>,
    }

    impl Data {
        /// [`train_backward`] of this data with the given statistics.
        fn backward(
            &self,
            mean: &[f32],
            var: &[f32],
            s: BnShape,
            act: Act,
        ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
            train_backward(
                &self.x,
                &self.gamma,
                &self.beta,
                mean,
                var,
                &self.dy,
                s,
                EPS,
                act,
            )
        }
    }

    /// Per-channel offset and scale for x; gamma in [-2, 4] and beta in [-2, 6] so that ReLU6
    /// clips at both 0 and 6.
    fn data(seed: u64, n: usize, c: usize, hw: usize, offset: f32, scale: f32) -> Data {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        let ch: Vec<(f32, f32)> = (0..c)
            .map(|_| {
                let o = offset + r.random_range(-3.0f32..3.0);
                let s = scale * r.random_range(0.1f32..3.0);
                (o, s)
            })
            .collect();
        let mut x = vec![0f32; n * c * hw];
        for (p, plane) in x.chunks_mut(hw).enumerate() {
            let (o, s) = ch[p % c];
            for v in plane {
                let u: f32 = (0..3).map(|_| r.random_range(-1.0f32..1.0)).sum();
                *v = o + s * u;
            }
        }
        let gamma = (0..c).map(|_| r.random_range(-2.0f32..4.0)).collect();
        let beta = (0..c).map(|_| r.random_range(-2.0f32..6.0)).collect();
        let dy = (0..n * c * hw)
            .map(|_| r.random_range(-1.0f32..1.0))
            .collect();
        Data { x, gamma, beta, dy }
    }

    fn act64(z: f64, act: Act) -> f64 {
        match act {
            Act::Identity => z,
            Act::Relu => z.max(0.0),
            Act::Relu6 => z.clamp(0.0, 6.0),
        }
    }

    fn dact64(z: f64, act: Act) -> f64 {
        let on = match act {
            Act::Identity => true,
            Act::Relu => z > 0.0,
            Act::Relu6 => z > 0.0 && z < 6.0,
        };
        if on { 1.0 } else { 0.0 }
    }

    fn near_kink(z: f64, act: Act) -> bool {
        match act {
            Act::Identity => false,
            Act::Relu => z.abs() < KINK,
            Act::Relu6 => z.abs() < KINK || (z - 6.0).abs() < KINK,
        }
    }

    /// Naive two-pass batch statistics in f64: (mean, biased var).
    fn ref_stats(x: &[f64], n: usize, c: usize, hw: usize) -> (Vec<f64>, Vec<f64>) {
        let m = (n * hw) as f64;
        let mut mean = vec![0.0; c];
        let mut var = vec![0.0; c];
        for ch in 0..c {
            for i in 0..n {
                for j in 0..hw {
                    mean[ch] += x[(i * c + ch) * hw + j];
                }
            }
            mean[ch] /= m;
            for i in 0..n {
                for j in 0..hw {
                    let d = x[(i * c + ch) * hw + j] - mean[ch];
                    var[ch] += d * d;
                }
            }
            var[ch] /= m;
        }
        (mean, var)
    }

    /// Naive forward with given stats: (y, z).
    #[allow(clippy::too_many_arguments)]
    fn ref_apply(
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        mean: &[f64],
        var: &[f64],
        c: usize,
        hw: usize,
        eps: f64,
        act: Act,
    ) -> (Vec<f64>, Vec<f64>) {
        let z: Vec<f64> = (0..x.len())
            .map(|k| {
                let ch = (k / hw) % c;
                (x[k] - mean[ch]) / (var[ch] + eps).sqrt() * gamma[ch] + beta[ch]
            })
            .collect();
        (z.iter().map(|&v| act64(v, act)).collect(), z)
    }

    type RefGrads = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<bool>);

    /// Naive backward: (dx, d_gamma, d_beta, |g| sums, |g xhat| sums, channels with a z near
    /// a kink).
    #[allow(clippy::too_many_arguments)]
    fn ref_backward(
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        mean: &[f64],
        var: &[f64],
        dy: &[f64],
        n: usize,
        c: usize,
        hw: usize,
        eps: f64,
        act: Act,
    ) -> RefGrads {
        let (_, z) = ref_apply(x, gamma, beta, mean, var, c, hw, eps, act);
        let m = (n * hw) as f64;
        let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
        let (mut sdg, mut sdb) = (vec![0.0; c], vec![0.0; c]);
        let mut kink = vec![false; c];
        let idx = |i: usize, ch: usize, j: usize| (i * c + ch) * hw + j;
        for ch in 0..c {
            let inv = 1.0 / (var[ch] + eps).sqrt();
            for i in 0..n {
                for j in 0..hw {
                    let k = idx(i, ch, j);
                    let g = dy[k] * dact64(z[k], act);
                    let xhat = (x[k] - mean[ch]) * inv;
                    db[ch] += g;
                    dg[ch] += g * xhat;
                    sdb[ch] += g.abs();
                    sdg[ch] += (g * xhat).abs();
                    kink[ch] |= near_kink(z[k], act);
                }
            }
        }
        let mut dx = vec![0.0; x.len()];
        for ch in 0..c {
            let inv = 1.0 / (var[ch] + eps).sqrt();
            for i in 0..n {
                for j in 0..hw {
                    let k = idx(i, ch, j);
                    let g = dy[k] * dact64(z[k], act);
                    let xhat = (x[k] - mean[ch]) * inv;
                    dx[k] = gamma[ch] * inv * (g - db[ch] / m - xhat * dg[ch] / m);
                }
            }
        }
        (dx, dg, db, sdg, sdb, kink)
    }

    fn f64s(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&e| e as f64).collect()
    }

    /// Elementwise `|got - want| <= atol + rtol * |want|`.
    fn assert_close(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (g as f64 - w).abs();
            assert!(
                err <= atol + rtol * w.abs(),
                "{what}[{k}]: got {g}, want {w} (err {err:e})"
            );
        }
    }

    fn max_abs(v: &[f64]) -> f64 {
        v.iter().fold(0.0, |m, &e| m.max(e.abs()))
    }

    /// Tolerances (all with the f32 inputs read exactly into the f64 reference):
    /// - mean: 1e-6 * (|mean| + std) + 1e-7; var: 1e-5 relative + 1e-12;
    /// - y (forward and eval): 1e-5 * (1 + |y|);
    /// - dx: 1e-4 relative + 1e-5 * max|dx| + 1e-6 * max|gamma / std| * max|dy|; d_beta, d_gamma: 1e-5 * sum |term| + 1e-6.
    ///
    /// A wrong formula (unbiased var, missing term, wrong mask, wrong channel) errs by 1e-3
    /// or more (relative) on these shapes.
    fn check_case(seed: u64, n: usize, c: usize, hw: usize, offset: f32, scale: f32) -> [usize; 2] {
        let d = data(seed, n, c, hw, offset, scale);
        let x64 = f64s(&d.x);
        let (g64, b64, dy64) = (f64s(&d.gamma), f64s(&d.beta), f64s(&d.dy));
        let (rmean, rvar) = ref_stats(&x64, n, c, hw);
        let mut clipped = [0usize; 2];
        for act in ACTS {
            let ctx = format!("n={n} c={c} hw={hw} offset={offset} act={act:?}");
            let (y, mean, var) =
                train_forward(&d.x, &d.gamma, &d.beta, BnShape { n, c, hw }, EPS, act);
            for ch in 0..c {
                let tol_m = 1e-6 * (rmean[ch].abs() + rvar[ch].sqrt()) + 1e-7;
                let err = (mean[ch] as f64 - rmean[ch]).abs();
                assert!(
                    err <= tol_m,
                    "{ctx}: mean[{ch}] {} vs {}",
                    mean[ch],
                    rmean[ch]
                );
                let err = (var[ch] as f64 - rvar[ch]).abs();
                assert!(
                    err <= 1e-5 * rvar[ch] + 1e-12,
                    "{ctx}: var[{ch}] {} vs {}",
                    var[ch],
                    rvar[ch]
                );
            }
            // y against the exact reference; with a large offset the f32 mean itself is off
            // by |mean| * 2^-24, which moves y by that over std: widen accordingly.
            let (ry, rz) = ref_apply(&x64, &g64, &b64, &rmean, &rvar, c, hw, EPS, act);
            let shift = (offset.abs() as f64 * 6e-8 / (scale as f64 * 0.1)) * 4.0;
            assert_close(&format!("{ctx} y"), &y, &ry, 1e-5, 1e-5 + shift);
            if act == Act::Relu6 {
                clipped[0] += rz.iter().filter(|&&z| z < 0.0).count();
                clipped[1] += rz.iter().filter(|&&z| z > 6.0).count();
            }

            // Eval with the reference statistics.
            let (m32, v32): (Vec<f32>, Vec<f32>) = rmean
                .iter()
                .zip(&rvar)
                .map(|(&m, &v)| (m as f32, v as f32))
                .unzip();
            let ye = eval_forward(
                &d.x,
                &d.gamma,
                &d.beta,
                &m32,
                &v32,
                BnShape { n, c, hw },
                EPS,
                act,
            );
            assert_close(&format!("{ctx} eval y"), &ye, &ry, 1e-5, 1e-5 + shift);

            // Backward with the stats the forward returned (as the API prescribes).
            let (dx, dg, db) = d.backward(&mean, &var, BnShape { n, c, hw }, act);
            let (rdx, rdg, rdb, sdg, sdb, kink) = ref_backward(
                &x64,
                &g64,
                &b64,
                &f64s(&mean),
                &f64s(&var),
                &dy64,
                n,
                c,
                hw,
                EPS,
                act,
            );
            // dx cancels terms of size |a| * |dy| (a = gamma / std): allow rounding at that scale.
            let a_max = (0..c).map(|ch| (g64[ch] / (var[ch] as f64 + EPS).sqrt()).abs());
            let dx_atol = 1e-5 * max_abs(&rdx) + 1e-6 * a_max.fold(0.0, f64::max) * max_abs(&dy64);
            for ch in 0..c {
                if kink[ch] {
                    continue; // the f32 and f64 masks may differ there
                }
                assert!(
                    (db[ch] as f64 - rdb[ch]).abs() <= 1e-5 * sdb[ch] + 1e-6,
                    "{ctx}: d_beta[{ch}] {} vs {}",
                    db[ch],
                    rdb[ch]
                );
                assert!(
                    (dg[ch] as f64 - rdg[ch]).abs() <= 1e-5 * sdg[ch] + 1e-6,
                    "{ctx}: d_gamma[{ch}] {} vs {}",
                    dg[ch],
                    rdg[ch]
                );
                for i in 0..n {
                    let r = (i * c + ch) * hw..(i * c + ch + 1) * hw;
                    assert_close(
                        &format!("{ctx} dx (i={i}, ch={ch})"),
                        &dx[r.clone()],
                        &rdx[r],
                        1e-4,
                        dx_atol,
                    );
                }
            }
            assert!(
                kink.iter().filter(|&&k| k).count() * 10 <= c.max(10),
                "{ctx}: too many kinks skipped"
            );
        }
        clipped
    }

    #[test]
    fn matches_reference_on_small_shapes() {
        let mut seed = 1;
        let mut clipped = [0usize; 2];
        for n in [1, 3] {
            for c in [1, 5, 17] {
                for hw in [1, 7, 49, 130] {
                    let k = check_case(seed, n, c, hw, 0.0, 1.0);
                    clipped[0] += k[0];
                    clipped[1] += k[1];
                    seed += 1;
                }
            }
        }
        assert!(
            clipped[0] > 100 && clipped[1] > 100,
            "ReLU6 clipping not exercised: {clipped:?}"
        );
    }

    #[test]
    fn matches_reference_on_parallel_shapes() {
        // Several tasks; planes split across tasks mid-channel; partial reduction blocks.
        check_case(100, 3, 7, 4100, 0.0, 1.0);
        check_case(101, 2, 300, 49, 0.0, 1.0);
        check_case(102, 5, 33, 196, 0.0, 1.0);
    }

    #[test]
    fn variance_is_accurate_with_a_large_mean() {
        // mean / std ~ 1e4: E[x^2] - E[x]^2 in f32 would lose every digit.
        check_case(200, 3, 5, 2000, 300.0, 0.01);
        check_case(201, 1, 3, 130, -1000.0, 0.05);
    }

    #[test]
    fn eval_with_batch_one_and_odd_eps() {
        let (n, c, hw) = (1, 40, 300);
        let d = data(300, n, c, hw, 0.0, 1.0);
        let mut r = ChaCha8Rng::seed_from_u64(301);
        let mean: Vec<f32> = (0..c).map(|_| r.random_range(-2.0f32..2.0)).collect();
        let var: Vec<f32> = (0..c).map(|_| r.random_range(0.0f32..3.0)).collect();
        for act in ACTS {
            let y = eval_forward(
                &d.x,
                &d.gamma,
                &d.beta,
                &mean,
                &var,
                BnShape { n, c, hw },
                1e-3,
                act,
            );
            let (ry, _) = ref_apply(
                &f64s(&d.x),
                &f64s(&d.gamma),
                &f64s(&d.beta),
                &f64s(&mean),
                &f64s(&var),
                c,
                hw,
                1e-3,
                act,
            );
            assert_close(&format!("eval {act:?}"), &y, &ry, 1e-5, 1e-5);
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // L = sum(w * y) over a tiny case, y from the f64 reference with batch statistics
        // recomputed from x; central differences with h = 1e-6 in f64.
        let (n, c, hw) = (2, 3, 5);
        let d = data(400, n, c, hw, 0.0, 1.0);
        let x64 = f64s(&d.x);
        let (g64, b64, w) = (f64s(&d.gamma), f64s(&d.beta), f64s(&d.dy));
        let loss = |x: &[f64], g: &[f64], b: &[f64], act: Act| -> f64 {
            let (m, v) = ref_stats(x, n, c, hw);
            let (y, _) = ref_apply(x, g, b, &m, &v, c, hw, EPS, act);
            y.iter().zip(&w).map(|(a, b)| a * b).sum()
        };
        let h = 1e-6;
        for act in ACTS {
            let (m, v) = ref_stats(&x64, n, c, hw);
            let (_, z) = ref_apply(&x64, &g64, &b64, &m, &v, c, hw, EPS, act);
            if act != Act::Identity {
                let mind = z
                    .iter()
                    .map(|&z| z.abs().min((z - 6.0).abs()))
                    .fold(f64::MAX, f64::min);
                assert!(mind > 1e-3, "seed puts a z within {mind} of a kink");
            }
            type Perturb<'a> = &'a dyn Fn(&mut Vec<f64>, &mut Vec<f64>, &mut Vec<f64>, f64);
            let num = |p: Perturb| {
                let (mut xp, mut gp, mut bp) = (x64.clone(), g64.clone(), b64.clone());
                p(&mut xp, &mut gp, &mut bp, h);
                let lp = loss(&xp, &gp, &bp, act);
                let (mut xm, mut gm, mut bm) = (x64.clone(), g64.clone(), b64.clone());
                p(&mut xm, &mut gm, &mut bm, -h);
                (lp - loss(&xm, &gm, &bm, act)) / (2.0 * h)
            };
            let (rdx, rdg, rdb, ..) =
                ref_backward(&x64, &g64, &b64, &m, &v, &w, n, c, hw, EPS, act);
            let (mean, var) = (
                m.iter().map(|&e| e as f32).collect::<Vec<_>>(),
                v.iter().map(|&e| e as f32).collect::<Vec<_>>(),
            );
            let (dx, dg, db) = d.backward(&mean, &var, BnShape { n, c, hw }, act);
            for k in 0..x64.len() {
                let fd = num(&|x, _, _, e| x[k] += e);
                assert!(
                    (rdx[k] - fd).abs() <= 1e-6 * (1.0 + fd.abs()),
                    "{act:?} ref dx[{k}] {} vs fd {fd}",
                    rdx[k]
                );
                assert!(
                    (dx[k] as f64 - fd).abs() <= 1e-4 * (1.0 + fd.abs()),
                    "{act:?} dx[{k}] {} vs fd {fd}",
                    dx[k]
                );
            }
            for ch in 0..c {
                let fd = num(&|_, g, _, e| g[ch] += e);
                assert!(
                    (rdg[ch] - fd).abs() <= 1e-6 * (1.0 + fd.abs()),
                    "{act:?} ref d_gamma"
                );
                assert!(
                    (dg[ch] as f64 - fd).abs() <= 1e-4 * (1.0 + fd.abs()),
                    "{act:?} d_gamma[{ch}] {} vs {fd}",
                    dg[ch]
                );
                let fd = num(&|_, _, b, e| b[ch] += e);
                assert!(
                    (rdb[ch] - fd).abs() <= 1e-6 * (1.0 + fd.abs()),
                    "{act:?} ref d_beta"
                );
                assert!(
                    (db[ch] as f64 - fd).abs() <= 1e-4 * (1.0 + fd.abs()),
                    "{act:?} d_beta[{ch}] {} vs {fd}",
                    db[ch]
                );
            }
        }
    }

    #[test]
    fn degenerate_shapes() {
        // One element per channel: var = 0, y = act(beta), dx = 0.
        let (y, m, v) = train_forward(
            &[3.0, -1.0],
            &[2.0, 2.0],
            &[7.0, -0.5],
            BnShape { n: 1, c: 2, hw: 1 },
            EPS,
            Act::Relu6,
        );
        assert_eq!((y, m, v), (vec![6.0, 0.0], vec![3.0, -1.0], vec![0.0, 0.0]));
        let (dx, _, db) = train_backward(
            &[3.0],
            &[2.0],
            &[1.0],
            &[3.0],
            &[0.0],
            &[0.5],
            BnShape { n: 1, c: 1, hw: 1 },
            EPS,
            Act::Relu,
        );
        assert_eq!((dx, db), (vec![0.0], vec![0.5]));
        let (y, m, v) = train_forward(&[], &[], &[], BnShape { n: 4, c: 0, hw: 9 }, EPS, Act::Relu);
        assert!(y.is_empty() && m.is_empty() && v.is_empty());
        assert!(
            eval_forward(
                &[],
                &[1.0],
                &[0.0],
                &[0.0],
                &[1.0],
                BnShape { n: 0, c: 1, hw: 5 },
                EPS,
                Act::Relu
            )
            .is_empty()
        );
    }
}
