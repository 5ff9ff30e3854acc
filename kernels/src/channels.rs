//! Channel moves of the ShuffleNets as one parallel copy of whole planes each: ShuffleNet
//! v2's split (a contiguous range of channels) and its concatenation followed by a two-group
//! shuffle (interleaving the two branches), and the gradients of both. In burn these are
//! `narrow` (whose backward zero-fills the whole input for each half), `cat` on one thread
//! and transposing copies on the way back.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::cpu::output_buffer;

/// Floats one rayon task copies at least, so small planes go in groups.
const MIN_TASK: usize = 16 * 1024;

/// `planes` planes of `hw` values, plane `p` a copy of `source(p)`, or zeros where it is
/// `None`.
fn gather_planes<'a>(
    planes: usize,
    hw: usize,
    source: impl Fn(usize) -> Option<&'a [f32]> + Sync,
) -> Vec<f32> {
    let len = planes * hw;
    let mut out = output_buffer(len);
    if hw > 0 {
        out.spare_capacity_mut()[..len]
            .par_chunks_mut(hw)
            .with_min_len(MIN_TASK.div_ceil(hw))
            .enumerate()
            .for_each(|(p, dst)| match source(p) {
                Some(src) => {
                    dst.write_copy_of_slice(src);
                }
                None => dst.fill(MaybeUninit::new(0.0)),
            });
    }
    // SAFETY: the loop above wrote every one of the `len` planes' values.
    unsafe { out.set_len(len) };
    out
}

/// Shape of a channel move: `n` images of `c` planes of `hw` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planes {
    /// Images.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Values per plane (height times width).
    pub hw: usize,
}

impl Planes {
    fn len(self) -> usize {
        self.n * self.c * self.hw
    }

    /// Plane `channel` of image `image` in `x`.
    fn plane(self, x: &[f32], image: usize, channel: usize) -> &[f32] {
        &x[(image * self.c + channel) * self.hw..][..self.hw]
    }
}

/// Channels `[start, start + len)` of `x` (`[n, c, hw]`), as `[n, len, hw]`.
pub fn take_channels(x: &[f32], s: Planes, start: usize, len: usize) -> Vec<f32> {
    assert_eq!(x.len(), s.len(), "take channels: input length");
    assert!(
        start + len <= s.c,
        "take channels: {start}+{len} of {} channels",
        s.c
    );
    gather_planes(s.n * len, s.hw, |p| {
        Some(s.plane(x, p / len, start + p % len))
    })
}

/// Gradient of [`take_channels`]: `dy` (`[n, len, hw]`) placed at channels
/// `[start, start + len)` of a zero `[n, c, hw]`.
pub fn put_channels(dy: &[f32], s: Planes, start: usize, len: usize) -> Vec<f32> {
    assert!(
        start + len <= s.c,
        "put channels: {start}+{len} of {} channels",
        s.c
    );
    let part = Planes { c: len, ..s };
    assert_eq!(dy.len(), part.len(), "put channels: gradient length");
    gather_planes(s.n * s.c, s.hw, |p| {
        let channel = (p % s.c).checked_sub(start).filter(|&k| k < len)?;
        Some(part.plane(dy, p / s.c, channel))
    })
}

/// ShuffleNet v2's merge: the first `cb` channels of `a` (`[n, ca, hw]`, `ca >= cb`) and
/// `b` (`[n, cb, hw]`) concatenated and shuffled in two groups, that is interleaved:
/// output channel `2k` is `a`'s channel `k`, `2k + 1` is `b`'s. With `ca = 2 cb`, `a` is the
/// unit's whole input and its first half the untouched branch, so the split needs no copy.
pub fn interleave(a: &[f32], b: &[f32], sa: Planes, cb: usize) -> Vec<f32> {
    let sb = Planes { c: cb, ..sa };
    assert_eq!(a.len(), sa.len(), "interleave: first input length");
    assert_eq!(b.len(), sb.len(), "interleave: second input length");
    assert!(cb <= sa.c, "interleave: {cb} channels from {}", sa.c);
    gather_planes(sa.n * 2 * cb, sa.hw, |p| {
        let (image, channel) = (p / (2 * cb), p % (2 * cb));
        Some(if channel % 2 == 0 {
            sa.plane(a, image, channel / 2)
        } else {
            sb.plane(b, image, channel / 2)
        })
    })
}

/// Gradients of [`interleave`] from the output's `dy` (`[n, 2 cb, hw]`): `a`'s (`[n, ca,
/// hw]`, zero past channel `cb`) and `b`'s (`[n, cb, hw]`).
pub fn deinterleave(dy: &[f32], sa: Planes, cb: usize) -> (Vec<f32>, Vec<f32>) {
    let out = Planes { c: 2 * cb, ..sa };
    assert_eq!(dy.len(), out.len(), "deinterleave: gradient length");
    assert!(cb <= sa.c, "deinterleave: {cb} channels from {}", sa.c);
    let da = gather_planes(sa.n * sa.c, sa.hw, |p| {
        let (image, channel) = (p / sa.c, p % sa.c);
        (channel < cb).then(|| out.plane(dy, image, 2 * channel))
    });
    let db = gather_planes(sa.n * cb, sa.hw, |p| {
        Some(out.plane(dy, p / cb, 2 * (p % cb) + 1))
    });
    (da, db)
}

/// `x` (`[n, c, hw]`) with its channels reordered: output channel `j` is input channel
/// `order[j]` (ShuffleNet v1's shuffle). `order` must be a permutation of `0..c`.
pub fn permute_channels(x: &[f32], s: Planes, order: &[usize]) -> Vec<f32> {
    assert_eq!(x.len(), s.len(), "permute channels: input length");
    assert_eq!(order.len(), s.c, "permute channels: order length");
    gather_planes(s.n * s.c, s.hw, |p| {
        Some(s.plane(x, p / s.c, order[p % s.c]))
    })
}

/// The inverse of a permutation: `inverse[order[j]] = j`.
pub fn inverse_permutation(order: &[usize]) -> Vec<usize> {
    let mut inverse = vec![usize::MAX; order.len()];
    for (j, &i) in order.iter().enumerate() {
        assert!(
            i < order.len() && inverse[i] == usize::MAX,
            "not a permutation: {order:?}"
        );
        inverse[i] = j;
    }
    inverse
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::random;

    /// Value of plane `(image, channel)` at position `i` in a `[n, c, hw]` tensor.
    fn at(x: &[f32], s: Planes, image: usize, channel: usize, i: usize) -> f32 {
        x[(image * s.c + channel) * s.hw + i]
    }

    #[test]
    fn take_and_put_channels_are_a_slice_and_its_adjoint() {
        for hw in [1, 5, 3000] {
            let s = Planes { n: 3, c: 6, hw };
            let x = random(s.len(), 1);
            let taken = take_channels(&x, s, 2, 3);
            let part = Planes { c: 3, ..s };
            let put = put_channels(&taken, s, 2, 3);
            for (image, channel, i) in (0..3)
                .flat_map(|n| (0..6).map(move |c| (n, c)))
                .flat_map(|(n, c)| (0..hw).map(move |i| (n, c, i)))
            {
                let inside = (2..5).contains(&channel);
                if inside {
                    assert_eq!(
                        at(&taken, part, image, channel - 2, i),
                        at(&x, s, image, channel, i)
                    );
                }
                let expected = if inside {
                    at(&x, s, image, channel, i)
                } else {
                    0.0
                };
                assert_eq!(at(&put, s, image, channel, i), expected);
            }
        }
    }

    #[test]
    fn interleave_alternates_the_branches_and_deinterleave_undoes_it() {
        for (ca, cb) in [(4, 4), (8, 4), (3, 1)] {
            let sa = Planes { n: 2, c: ca, hw: 7 };
            let sb = Planes { c: cb, ..sa };
            let (a, b) = (random(sa.len(), 2), random(sb.len(), 3));
            let y = interleave(&a, &b, sa, cb);
            let sy = Planes { c: 2 * cb, ..sa };
            assert_eq!(y.len(), sy.len());
            for image in 0..2 {
                for k in 0..cb {
                    for i in 0..7 {
                        assert_eq!(at(&y, sy, image, 2 * k, i), at(&a, sa, image, k, i));
                        assert_eq!(at(&y, sy, image, 2 * k + 1, i), at(&b, sb, image, k, i));
                    }
                }
            }
            let (da, db) = deinterleave(&y, sa, cb);
            assert_eq!(db, b);
            for image in 0..2 {
                for k in 0..ca {
                    for i in 0..7 {
                        let expected = if k < cb { at(&a, sa, image, k, i) } else { 0.0 };
                        assert_eq!(at(&da, sa, image, k, i), expected);
                    }
                }
            }
        }
    }

    #[test]
    fn permuting_by_an_order_then_its_inverse_gives_the_input_back() {
        let s = Planes { n: 2, c: 6, hw: 5 };
        let x = random(s.len(), 4);
        let order = [0, 2, 4, 1, 3, 5];
        let y = permute_channels(&x, s, &order);
        for (j, &i) in order.iter().enumerate() {
            assert_eq!(at(&y, s, 1, j, 3), at(&x, s, 1, i, 3));
        }
        let inverse = inverse_permutation(&order);
        assert_eq!(inverse, [0, 3, 1, 4, 2, 5]);
        assert_eq!(permute_channels(&y, s, &inverse), x);
    }
}
