//! Fast CPU paths for the layers between the convolutions: pooling windows (the stems' 3x3
//! stride-2 max pool, ShuffleNet v1's average-pooled shortcut), channel moves (ShuffleNet
//! v2's split and interleaving merge, v1's shuffle) and the residual add + ReLU (ResNet,
//! ShuffleNet v1), each with its own backward. burn's versions are a single-threaded `cat`,
//! transposing copies, a `narrow` whose backward zero-fills the whole input once per half, a
//! max pool that keeps an index per output, and separate passes for the add, the ReLU and
//! their gradients.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use dermclass_kernels::channels::{self, Planes};
use dermclass_kernels::pool::{self, PoolShape};
use dermclass_kernels::residual;

use super::profile::{Phase, time};
use super::{Raw, fast_path, flex, register_grad};
use crate::model::blocks::shuffled_source;

/// A pooling window: square `kernel`, `stride`, symmetric `pad`; the maximum or the mean
/// (the padding counted as zeros, burn's and PyTorch's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Window size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding on every side.
    pub pad: usize,
    /// Maximum (true) or mean (false).
    pub max: bool,
}

impl Window {
    /// The 3x3, stride-2, padding-1 window of the stems and ShuffleNet v1's shortcuts.
    pub const fn three_by_three_stride_two(max: bool) -> Self {
        Window {
            kernel: 3,
            stride: 2,
            pad: 1,
            max,
        }
    }

    fn shape(self, x: &[usize]) -> PoolShape {
        PoolShape {
            planes: x[0] * x[1],
            h: x[2],
            w: x[3],
            kernel: self.kernel,
            stride: self.stride,
            pad: self.pad,
        }
    }
}

/// Custom operations that move planes. Implemented for `Flex` and `Autodiff<Flex>`; the
/// wrappers never route other backends here.
#[backend_extension(Flex, Autodiff)]
pub trait PlaneKernels: Backend {
    /// Pooling of x [N, C, H, W] over `window`.
    fn pool2d(x: FloatTensor<Self>, window: Window) -> FloatTensor<Self>;

    /// Channels `[start, start + len)` of x [N, C, H, W].
    fn take_channels(x: FloatTensor<Self>, start: usize, len: usize) -> FloatTensor<Self>;

    /// a [N, Ca, H, W] and b [N, Cb, H, W] (Ca >= Cb) interleaved: channel 2k is a's k,
    /// 2k + 1 is b's k, for k < Cb.
    fn interleave(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;

    /// x [N, C, H, W] with its channels shuffled in `groups` groups
    /// ([`crate::model::blocks::channel_shuffle`]).
    fn channel_shuffle(x: FloatTensor<Self>, groups: usize) -> FloatTensor<Self>;

    /// `relu(a + b)` of two tensors of one shape.
    fn add_relu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The channel order of a shuffle in `groups` groups: output channel `j` is input channel
/// `order[j]`.
fn shuffle_order(channels: usize, groups: usize) -> Vec<usize> {
    (0..channels)
        .map(|j| shuffled_source(j, channels, groups))
        .collect()
}

/// Pooling over `window`: the kernels where [`fast_path`] holds, burn's pools elsewhere.
pub fn pool2d(x: Tensor<4>, window: Window) -> Tensor<4> {
    if fast_path(&x) {
        return Tensor::from_dispatch(Dispatch::pool2d(x.into_dispatch(), window));
    }
    burn_pool2d(x, window)
}

/// burn's own max or average pool over `window` (the fallback, and the tests' reference).
pub fn burn_pool2d(x: Tensor<4>, window: Window) -> Tensor<4> {
    let Window {
        kernel,
        stride,
        pad,
        max,
    } = window;
    if max {
        let options = MaxPoolOptions::new([kernel; 2])
            .with_stride([stride; 2])
            .with_padding([pad; 2]);
        max_pool2d(x, options)
    } else {
        let options = AvgPoolOptions::new([kernel; 2])
            .with_stride([stride; 2])
            .with_padding([pad; 2]);
        avg_pool2d(x, options)
    }
}

/// Channels `[start, start + len)` of `x`, copied (so the next kernel reads it without a
/// copy of its own), with a backward that fills only the other channels with zeros; burn's
/// `narrow` elsewhere.
pub fn take_channels(x: Tensor<4>, start: usize, len: usize) -> Tensor<4> {
    if fast_path(&x) {
        return Tensor::from_dispatch(Dispatch::take_channels(x.into_dispatch(), start, len));
    }
    x.narrow(1, start, len)
}

/// ShuffleNet v2's merge of `a`'s first `Cb` channels and `b` (`Cb` channels): their
/// concatenation shuffled in two groups, as one interleaving copy; `a` may be the unit's
/// whole input (its first half is the branch that passes through). burn's ops elsewhere.
pub fn interleave(a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    if fast_path(&a) {
        return Tensor::from_dispatch(Dispatch::interleave(a.into_dispatch(), b.into_dispatch()));
    }
    let cb = b.dims()[1];
    crate::model::blocks::concat_shuffle(a.narrow(1, 0, cb), b)
}

/// ShuffleNet v1's channel shuffle in `groups` groups as one parallel copy of planes (and
/// its inverse backward); burn's reshape, transpose and copy elsewhere.
pub fn channel_shuffle(x: Tensor<4>, groups: usize) -> Tensor<4> {
    if fast_path(&x) {
        return Tensor::from_dispatch(Dispatch::channel_shuffle(x.into_dispatch(), groups));
    }
    crate::model::blocks::channel_shuffle(x, groups)
}

/// `relu(a + b)` (a residual add and its ReLU) as one pass each way where [`fast_path`]
/// holds, burn's ops elsewhere.
pub fn add_relu(a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    if fast_path(&a) && a.dims() == b.dims() {
        return Tensor::from_dispatch(Dispatch::add_relu(a.into_dispatch(), b.into_dispatch()));
    }
    burn::tensor::activation::relu(a + b)
}

/// `(n, c, h*w)` of an NCHW shape as [`Planes`].
fn planes(shape: &[usize]) -> Planes {
    Planes {
        n: shape[0],
        c: shape[1],
        hw: shape[2] * shape[3],
    }
}

impl PlaneKernels for Flex {
    fn pool2d(x: FlexTensor, window: Window) -> FlexTensor {
        let x = Raw::new(x);
        let s = window.shape(&x.shape);
        let (ho, wo) = s.out_hw();
        let mut y = vec![0.0; s.planes * ho * wo];
        time(Phase::PoolForward, || {
            pool::pool2d(x.data(), s, window.max, &mut y)
        });
        flex(y, [x.shape[0], x.shape[1], ho, wo])
    }

    fn take_channels(x: FlexTensor, start: usize, len: usize) -> FlexTensor {
        let x = Raw::new(x);
        let y = time(Phase::ChannelMoves, || {
            channels::take_channels(x.data(), planes(&x.shape), start, len)
        });
        flex(y, [x.shape[0], len, x.shape[2], x.shape[3]])
    }

    fn interleave(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        let (a, b) = (Raw::new(a), Raw::new(b));
        let cb = b.shape[1];
        assert_eq!(
            (a.shape[0], a.shape[2], a.shape[3]),
            (b.shape[0], b.shape[2], b.shape[3]),
            "interleave: images and plane sizes must agree"
        );
        let y = time(Phase::ChannelMoves, || {
            channels::interleave(a.data(), b.data(), planes(&a.shape), cb)
        });
        flex(y, [a.shape[0], 2 * cb, a.shape[2], a.shape[3]])
    }

    fn channel_shuffle(x: FlexTensor, groups: usize) -> FlexTensor {
        let x = Raw::new(x);
        let s = planes(&x.shape);
        let y = time(Phase::ChannelMoves, || {
            channels::permute_channels(x.data(), s, &shuffle_order(s.c, groups))
        });
        flex(y, x.shape.clone())
    }

    fn add_relu(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        let (a, b) = (Raw::new(a), Raw::new(b));
        assert_eq!(a.shape, b.shape, "add_relu: shapes must agree");
        let y = time(Phase::AddRelu, || residual::add_relu(a.data(), b.data()));
        flex(y, a.shape.clone())
    }
}

/// Backward of [`PlaneKernels::pool2d`]: state is (x, y, window).
#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = (FlexTensor, FlexTensor, Window);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents.map(|p| p.map(|node| node.id));
        let dy = Raw::new(grads.consume::<Flex>(&ops.node));
        let (x, y, window) = ops.state;
        let (x, y) = (Raw::new(x), Raw::new(y));
        register_grad(grads, node_x, &x.shape, || {
            time(Phase::PoolBackward, || {
                let s = window.shape(&x.shape);
                pool::pool2d_backward(x.data(), y.data(), dy.data(), s, window.max)
            })
        });
    }
}

/// Backward of [`PlaneKernels::take_channels`]: state is (x's shape, start).
#[derive(Debug)]
struct TakeChannelsBackward;

impl Backward<Flex, 1> for TakeChannelsBackward {
    type State = (Vec<usize>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents.map(|p| p.map(|node| node.id));
        let dy = Raw::new(grads.consume::<Flex>(&ops.node));
        let (shape, start) = ops.state;
        register_grad(grads, node_x, &shape, || {
            time(Phase::ChannelMoves, || {
                channels::put_channels(dy.data(), planes(&shape), start, dy.shape[1])
            })
        });
    }
}

/// Backward of [`PlaneKernels::interleave`]: state is a's shape.
#[derive(Debug)]
struct InterleaveBackward;

impl Backward<Flex, 2> for InterleaveBackward {
    type State = Vec<usize>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents.map(|p| p.map(|node| node.id));
        let dy = Raw::new(grads.consume::<Flex>(&ops.node));
        let shape_a = ops.state;
        let cb = dy.shape[1] / 2;
        let (da, db) = time(Phase::ChannelMoves, || {
            channels::deinterleave(dy.data(), planes(&shape_a), cb)
        });
        register_grad(grads, node_a, &shape_a, || da);
        let shape_b = [shape_a[0], cb, shape_a[2], shape_a[3]];
        register_grad(grads, node_b, &shape_b, || db);
    }
}

/// Backward of [`PlaneKernels::channel_shuffle`]: state is `groups`.
#[derive(Debug)]
struct ChannelShuffleBackward;

impl Backward<Flex, 1> for ChannelShuffleBackward {
    type State = usize;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents.map(|p| p.map(|node| node.id));
        let dy = Raw::new(grads.consume::<Flex>(&ops.node));
        let s = planes(&dy.shape);
        register_grad(grads, node_x, &dy.shape, || {
            time(Phase::ChannelMoves, || {
                let inverse = channels::inverse_permutation(&shuffle_order(s.c, ops.state));
                channels::permute_channels(dy.data(), s, &inverse)
            })
        });
    }
}

/// Backward of [`PlaneKernels::add_relu`]: state is the output.
#[derive(Debug)]
struct AddReluBackward;

impl Backward<Flex, 2> for AddReluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents.map(|p| p.map(|node| node.id));
        let dz = Raw::new(grads.consume::<Flex>(&ops.node));
        let z = Raw::new(ops.state);
        let grad = time(Phase::AddRelu, || {
            flex(
                residual::add_relu_backward(z.data(), dz.data()),
                z.shape.clone(),
            )
        });
        // Both operands get the same gradient; the tensor is shared, not copied.
        if let Some(id) = node_a {
            grads.register::<Flex>(id, grad.clone());
        }
        if let Some(id) = node_b {
            grads.register::<Flex>(id, grad);
        }
    }
}

/// The float tensor primitive of `Autodiff<Flex>`.
type AutodiffFloat = FloatTensor<Autodiff<Flex>>;

impl<C: CheckpointStrategy> PlaneKernels for Autodiff<Flex, C> {
    fn pool2d(x: AutodiffFloat, window: Window) -> AutodiffFloat {
        match PoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive();
                let y = Flex::pool2d(x.clone(), window);
                prep.finish((x, y.clone(), window), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::pool2d(x.into_primitive(), window)),
        }
    }

    fn take_channels(x: AutodiffFloat, start: usize, len: usize) -> AutodiffFloat {
        let prepared = TakeChannelsBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = x.into_primitive();
        let shape = x.layout().shape().to_vec();
        let y = Flex::take_channels(x, start, len);
        match prepared {
            OpsKind::Tracked(prep) => prep.finish((shape, start), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn interleave(a: AutodiffFloat, b: AutodiffFloat) -> AutodiffFloat {
        let prepared = InterleaveBackward
            .prepare::<C>([a.node(), b.node()])
            .compute_bound()
            .stateful();
        let a = a.into_primitive();
        let shape_a = a.layout().shape().to_vec();
        let y = Flex::interleave(a, b.into_primitive());
        match prepared {
            OpsKind::Tracked(prep) => prep.finish(shape_a, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn channel_shuffle(x: AutodiffFloat, groups: usize) -> AutodiffFloat {
        let prepared = ChannelShuffleBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let y = Flex::channel_shuffle(x.into_primitive(), groups);
        match prepared {
            OpsKind::Tracked(prep) => prep.finish(groups, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn add_relu(a: AutodiffFloat, b: AutodiffFloat) -> AutodiffFloat {
        let prepared = AddReluBackward
            .prepare::<C>([a.node(), b.node()])
            .compute_bound()
            .stateful();
        let y = Flex::add_relu(a.into_primitive(), b.into_primitive());
        match prepared {
            OpsKind::Tracked(prep) => prep.finish(y.clone(), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}
