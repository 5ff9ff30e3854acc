//! Fast CPU paths for the layers mobile networks are made of, plugged into burn's `flex`
//! backend through a backend extension ([`MobileKernels`]) with hand-written backward passes.
//!
//! The arithmetic lives in the `dermclass-kernels` crate (plain NCHW `f32` slices, tested
//! against naive references there); this module moves tensors in and out of it and registers
//! the gradients with burn's autodiff. The public wrappers ([`pointwise_conv`],
//! [`depthwise_conv3x3`], [`dense_conv`], [`batch_norm_act_train`],
//! [`batch_norm_act_eval`]) take the fast
//! path only for `f32` tensors on a flex device and when [`enabled`]; everywhere else (GPU
//! backends, other dtypes, `DERMCLASS_FAST_KERNELS=0`) the caller runs burn's own ops, so
//! results there are unchanged.

mod layer;
pub mod optim;
mod planes;
pub mod profile;

pub use layer::conv_norm_act;
pub use planes::{
    PlaneKernels, Window, add_relu, burn_pool2d, channel_shuffle, interleave, pool2d, take_channels,
};

use std::sync::atomic::{AtomicU8, Ordering};

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::activation::{relu, relu6};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, TensorData};
use dermclass_kernels::bn::{self, Act, BnShape};
use dermclass_kernels::dense::{self, DenseShape};
use dermclass_kernels::dw::{self, DwShape};
use dermclass_kernels::pw::{self, PwShape};
use dermclass_kernels::winograd;
use profile::{Phase, time};

/// Custom operations of the fast CPU path. Implemented for `Flex` and `Autodiff<Flex>`;
/// the wrappers never route other backends here.
#[backend_extension(Flex, Autodiff)]
pub trait MobileKernels: Backend {
    /// 1x1 convolution, stride 1, no padding, no bias: x [N, Cin, H, W], weight
    /// [Cout, Cin/groups, 1, 1] → [N, Cout, H, W].
    fn pointwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        groups: usize,
    ) -> FloatTensor<Self>;

    /// Depthwise 3x3 convolution, padding 1, stride 1 or 2, no bias: x [N, C, H, W],
    /// weight [C, 1, 3, 3].
    fn depthwise_conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self>;

    /// Dense convolution (one group, square kernel), no bias: x [N, Cin, H, W], weight
    /// [Cout, Cin, k, k]; `geometry` is a [`DenseGeometry`] packed by `pack`.
    fn dense_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: usize,
    ) -> FloatTensor<Self>;

    /// Training batch norm followed by `act`, with the batch statistics: returns
    /// (output, batch mean [C], biased batch variance [C]). Mean and variance carry no
    /// gradient.
    fn batch_norm_act_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: Act,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Inference batch norm with the given statistics followed by `act`. Carries no
    /// gradient: the wrappers only call it off autodiff.
    fn batch_norm_act_eval(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
        act: Act,
    ) -> FloatTensor<Self>;
}

/// `0` = not decided yet, `1` = on, `2` = off.
static SWITCH: AtomicU8 = AtomicU8::new(0);

/// Runs `work` on one of rayon's worker threads and waits for it. The kernels split each
/// layer across the pool; called from a thread outside it, every layer hands its work over
/// and sleeps until it is done (two thread wake-ups per layer), while a worker does its own
/// share and lets the others steal the rest. The compiled plan's passes run through here
/// (`examples/worker_ab.rs` measures the difference). Training steps must not: burn's batch
/// norm keeps its running statistics per thread (`RunningState`, averaged over threads), so a
/// step landing on a different worker each time changes the statistics from run to run; see
/// [`make_this_thread_a_pool_worker`] instead. `work` must not wait for other work that needs
/// the pool, or a one-thread pool would deadlock.
pub fn on_pool_worker<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// Builds rayon's global pool with the calling thread as its worker 0, so the layers this
/// thread runs split their work without handing it over and sleeping, while the thread stays
/// the same for every step (burn's batch norm keeps running statistics per thread, and exact
/// resume needs them repeatable). For training commands, called before anything uses rayon:
/// `bench/main-pool-ab.sh` measures 5-21% more training images/s for the ShuffleNets (the
/// MobileNets within noise to +18%). Not for a thread that blocks in other
/// work (a server's), since the pool's other threads cannot hand work to it: it only helps
/// while it is itself in a parallel loop. Does nothing (returns false) with fewer than two
/// threads, where a blocked worker 0 would leave none, when `DERMCLASS_MAIN_IN_POOL=0`, or
/// when the global pool already exists.
pub fn make_this_thread_a_pool_worker() -> bool {
    if std::env::var("DERMCLASS_MAIN_IN_POOL").is_ok_and(|v| v == "0") {
        return false;
    }
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    threads >= 2
        && rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .use_current_thread()
            .build_global()
            .is_ok()
}

/// Whether the fast kernels are used: on unless the environment sets
/// `DERMCLASS_FAST_KERNELS=0` (for A/B runs), or [`set_enabled`] says otherwise.
pub fn enabled() -> bool {
    match SWITCH.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = std::env::var("DERMCLASS_FAST_KERNELS").map_or(true, |v| v != "0");
            SWITCH.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
    }
}

/// Whether the dense convolution `s` runs through Winograd's F(2x2, 3x3) rather than
/// im2col: where [`winograd::pays`]. The kernel's own switch is the only state; the
/// environment's `DERMCLASS_WINOGRAD=0` (A/B runs of whole training steps) turns it off once.
fn winograd_pays(s: &DenseShape) -> bool {
    static FROM_ENV: std::sync::Once = std::sync::Once::new();
    FROM_ENV.call_once(|| {
        if std::env::var("DERMCLASS_WINOGRAD").is_ok_and(|v| v == "0") {
            winograd::set_enabled(false);
        }
    });
    winograd::pays(s)
}

/// Turns the fast kernels on or off for the whole process (benchmarks and A/B tests).
pub fn set_enabled(on: bool) {
    SWITCH.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// True when `x` can take the fast path: `f32` on a flex device (with or without autodiff)
/// and the kernels are [`enabled`].
pub fn fast_path<const D: usize>(x: &Tensor<D>) -> bool {
    enabled()
        && x.dtype() == DType::F32
        && matches!(
            x.device().without_autodiff().as_dispatch(),
            DispatchDevice::Flex(_)
        )
}

/// A convolution kernel of [`MobileKernels`]: `(x, weight, setting)`.
type ConvKernel = fn(FloatTensor<Dispatch>, FloatTensor<Dispatch>, usize) -> FloatTensor<Dispatch>;

/// `kernel(x, weight, setting)` where [`fast_path`] holds, burn's `conv2d` with `options`
/// (the same convolution) elsewhere.
fn kernel_or_burn(
    x: Tensor<4>,
    weight: Tensor<4>,
    setting: usize,
    kernel: ConvKernel,
    options: ConvOptions<2>,
) -> Tensor<4> {
    if !fast_path(&x) {
        return conv2d(x, weight, None, options);
    }
    Tensor::from_dispatch(kernel(x.into_dispatch(), weight.into_dispatch(), setting))
}

/// 1x1 convolution (stride 1, no padding, no bias) with `groups` channel groups: the fast
/// kernel where [`fast_path`] holds, burn's `conv2d` elsewhere.
pub fn pointwise_conv(x: Tensor<4>, weight: Tensor<4>, groups: usize) -> Tensor<4> {
    let options = ConvOptions::new([1, 1], [0, 0], [1, 1], groups);
    kernel_or_burn(x, weight, groups, Dispatch::pointwise_conv, options)
}

/// Depthwise 3x3 convolution (padding 1, stride 1 or 2, no bias): the fast kernel where
/// [`fast_path`] holds, burn's `conv2d` elsewhere.
pub fn depthwise_conv3x3(x: Tensor<4>, weight: Tensor<4>, stride: usize) -> Tensor<4> {
    let channels = x.dims()[1];
    let options = ConvOptions::new([stride; 2], [1, 1], [1, 1], channels);
    kernel_or_burn(x, weight, stride, Dispatch::depthwise_conv3x3, options)
}

/// Stride and padding of a dense convolution (the kernel size is the weight's), packed into
/// one `usize` for the backend extension's plain arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseGeometry {
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

impl DenseGeometry {
    fn pack(self) -> usize {
        assert!(self.stride < 1 << 16 && self.pad < 1 << 16, "{self:?}");
        self.stride | self.pad << 16
    }

    fn unpack(packed: usize) -> Self {
        DenseGeometry {
            stride: packed & 0xffff,
            pad: packed >> 16,
        }
    }
}

/// Dense convolution (one group, square kernel, no bias) through im2col + GEMM, forward and
/// both gradients: the fast kernel where [`fast_path`] holds, burn's `conv2d` elsewhere.
pub fn dense_conv(x: Tensor<4>, weight: Tensor<4>, geometry: DenseGeometry) -> Tensor<4> {
    let DenseGeometry { stride, pad } = geometry;
    let options = ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1);
    kernel_or_burn(x, weight, geometry.pack(), Dispatch::dense_conv, options)
}

/// Output of [`batch_norm_act_train`].
pub struct BatchNormActTrain {
    /// `act(batch_norm(x))`, differentiable in x, gamma and beta.
    pub output: Tensor<4>,
    /// Batch mean per channel (no gradient).
    pub mean: Tensor<1>,
    /// Biased batch variance per channel (no gradient).
    pub variance: Tensor<1>,
}

/// Training batch norm + activation, in two passes forward and two backward where
/// [`fast_path`] holds (burn's ops elsewhere). The caller updates its running statistics
/// from the result.
pub fn batch_norm_act_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    act: Act,
) -> BatchNormActTrain {
    if !fast_path(&x) {
        let out = burn::tensor::module::batch_norm_train(x, gamma, beta, epsilon);
        return BatchNormActTrain {
            output: apply(act, out.output),
            mean: out.mean,
            variance: out.variance,
        };
    }
    let (output, mean, variance) = <Dispatch as MobileKernels>::batch_norm_act_train(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
        act,
    );
    BatchNormActTrain {
        output: Tensor::from_dispatch(output),
        mean: Tensor::from_dispatch(mean),
        variance: Tensor::from_dispatch(variance),
    }
}

/// Inference batch norm + activation with given statistics: one pass where [`fast_path`]
/// holds off autodiff, burn's (differentiable) ops elsewhere.
pub fn batch_norm_act_eval(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    mean: Tensor<1>,
    var: Tensor<1>,
    epsilon: f64,
    act: Act,
) -> Tensor<4> {
    if !fast_path(&x) || x.device().is_autodiff() {
        let y = burn::tensor::module::batch_norm(x, gamma, beta, mean, var, epsilon);
        return apply(act, y);
    }
    Tensor::from_dispatch(<Dispatch as MobileKernels>::batch_norm_act_eval(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        mean.into_dispatch(),
        var.into_dispatch(),
        epsilon,
        act,
    ))
}

/// `act` with burn's ops (the fallback path, and the model's activations off the kernels).
pub fn apply<const D: usize>(act: Act, y: Tensor<D>) -> Tensor<D> {
    match act {
        Act::Identity => y,
        Act::Relu => relu(y),
        Act::Relu6 => relu6(y),
    }
}

/// A contiguous `f32` view of a flex tensor with its shape.
struct Raw {
    tensor: FlexTensor,
    shape: Vec<usize>,
}

impl Raw {
    fn new(tensor: FlexTensor) -> Self {
        assert_eq!(tensor.dtype(), DType::F32, "fast kernels take f32 tensors");
        let tensor = tensor.to_contiguous();
        let shape = tensor.layout().shape().to_vec();
        Self { tensor, shape }
    }

    fn data(&self) -> &[f32] {
        self.tensor
            .as_slice::<f32>()
            .expect("a contiguous f32 flex tensor")
    }
}

/// Wraps a kernel's output as a flex tensor of `shape`.
fn flex(values: Vec<f32>, shape: impl Into<Vec<usize>>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// Registers `values()` (shaped `shape`) as the gradient of `node`, computed only when
/// autodiff tracks that parent.
fn register_grad(
    grads: &mut Gradients,
    node: Option<NodeId>,
    shape: &[usize],
    values: impl FnOnce() -> Vec<f32>,
) {
    if let Some(id) = node {
        grads.register::<Flex>(id, flex(values(), shape));
    }
}

fn pw_shape(x: &[usize], weight: &[usize], groups: usize) -> PwShape {
    PwShape {
        n: x[0],
        c_in: x[1],
        c_out: weight[0],
        hw: x[2] * x[3],
        groups,
    }
}

fn dense_shape(x: &[usize], weight: &[usize], geometry: usize) -> DenseShape {
    let DenseGeometry { stride, pad } = DenseGeometry::unpack(geometry);
    assert_eq!(weight[2], weight[3], "dense conv: square kernels only");
    DenseShape {
        n: x[0],
        c_in: x[1],
        c_out: weight[0],
        h: x[2],
        w: x[3],
        kernel: weight[2],
        stride,
        pad,
    }
}

/// `(n, c, h*w)` of an NCHW shape.
fn planes(shape: &[usize]) -> (usize, usize, usize) {
    (shape[0], shape[1], shape[2] * shape[3])
}

impl MobileKernels for Flex {
    fn pointwise_conv(x: FlexTensor, weight: FlexTensor, groups: usize) -> FlexTensor {
        let (x, weight) = (Raw::new(x), Raw::new(weight));
        let s = pw_shape(&x.shape, &weight.shape, groups);
        let y = time(Phase::PointwiseForward, || {
            pw::forward(x.data(), weight.data(), s)
        });
        flex(y, [s.n, s.c_out, x.shape[2], x.shape[3]])
    }

    fn depthwise_conv3x3(x: FlexTensor, weight: FlexTensor, stride: usize) -> FlexTensor {
        let (x, weight) = (Raw::new(x), Raw::new(weight));
        let [n, c, h, w] = x.shape[..] else {
            panic!("depthwise conv: rank-4 input expected")
        };
        let y = time(Phase::DepthwiseForward, || {
            dw::forward(x.data(), weight.data(), DwShape { n, c, h, w, stride })
        });
        flex(y, [n, c, dw::out_size(h, stride), dw::out_size(w, stride)])
    }

    fn dense_conv(x: FlexTensor, weight: FlexTensor, geometry: usize) -> FlexTensor {
        let (x, weight) = (Raw::new(x), Raw::new(weight));
        let s = dense_shape(&x.shape, &weight.shape, geometry);
        let (ho, wo) = s.out_hw();
        let y = time(Phase::DenseForward, || {
            if winograd_pays(&s) {
                winograd::forward(x.data(), weight.data(), s)
            } else {
                dense::forward(x.data(), weight.data(), s)
            }
        });
        flex(y, [s.n, s.c_out, ho, wo])
    }

    fn batch_norm_act_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        act: Act,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, gamma, beta) = (Raw::new(x), Raw::new(gamma), Raw::new(beta));
        let (n, c, hw) = planes(&x.shape);
        let (y, mean, var) = time(Phase::BatchNormForward, || {
            bn::train_forward(
                x.data(),
                gamma.data(),
                beta.data(),
                BnShape { n, c, hw },
                epsilon,
                act,
            )
        });
        (flex(y, x.shape.clone()), flex(mean, [c]), flex(var, [c]))
    }

    fn batch_norm_act_eval(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        epsilon: f64,
        act: Act,
    ) -> FlexTensor {
        let x = Raw::new(x);
        let [gamma, beta, mean, var] = [gamma, beta, mean, var].map(Raw::new);
        let (n, c, hw) = planes(&x.shape);
        let y = time(Phase::BatchNormInference, || {
            bn::eval_forward(
                x.data(),
                gamma.data(),
                beta.data(),
                mean.data(),
                var.data(),
                BnShape { n, c, hw },
                epsilon,
                act,
            )
        });
        flex(y, x.shape.clone())
    }
}

/// Backward of [`MobileKernels::pointwise_conv`]: state is (x, weight, groups).
#[derive(Debug)]
struct PointwiseBackward;

impl Backward<Flex, 2> for PointwiseBackward {
    type State = (FlexTensor, FlexTensor, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents.map(|p| p.map(|node| node.id));
        let dy = Raw::new(grads.consume::<Flex>(&ops.node));
        let (x, weight, groups) = ops.state;
        let (x, weight) = (Raw::new(x), Raw::new(weight));
        let s = pw_shape(&x.shape, &weight.shape, groups);
        register_grad(grads, node_w, &weight.shape, || {
            time(Phase::PointwiseWeightGrad, || {
                pw::backward_weight(dy.data(), x.data(), s)
            })
        });
        register_grad(grads, node_x, &x.shape, || {
            time(Phase::PointwiseInputGrad, || {
                pw::backward_input(dy.data(), weight.data(), s)
            })
        });
    }
}

/// Backward of [`MobileKernels::dense_conv`]: state is (x, weight, packed geometry).
#[derive(Debug)]
struct DenseBackward;

impl Backward<Flex, 2> for DenseBackward {
    type State = (FlexTensor, FlexTensor, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents.map(|p| p.map(|node| node.id));
        let dy = Raw::new(grads.consume::<Flex>(&ops.node));
        let (x, weight, geometry) = ops.state;
        let (x, weight) = (Raw::new(x), Raw::new(weight));
        let s = dense_shape(&x.shape, &weight.shape, geometry);
        register_grad(grads, node_w, &weight.shape, || {
            time(Phase::DenseWeightGrad, || {
                dense::backward_weight(dy.data(), x.data(), s)
            })
        });
        register_grad(grads, node_x, &x.shape, || {
            time(Phase::DenseInputGrad, || {
                if winograd_pays(&s) {
                    winograd::backward_input(dy.data(), weight.data(), s)
                } else {
                    dense::backward_input(dy.data(), weight.data(), s)
                }
            })
        });
    }
}

/// Backward of [`MobileKernels::depthwise_conv3x3`]: state is (x, weight, stride).
#[derive(Debug)]
struct DepthwiseBackward;

impl Backward<Flex, 2> for DepthwiseBackward {
    type State = (FlexTensor, FlexTensor, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents.map(|p| p.map(|node| node.id));
        let dy = Raw::new(grads.consume::<Flex>(&ops.node));
        let (x, weight, stride) = ops.state;
        let (x, weight) = (Raw::new(x), Raw::new(weight));
        let [n, c, h, w] = x.shape[..] else {
            unreachable!("the forward checked the rank")
        };
        let (dx, dw) = time(Phase::DepthwiseBackward, || {
            dw::backward(
                x.data(),
                weight.data(),
                dy.data(),
                DwShape { n, c, h, w, stride },
                node_x.is_some(),
                node_w.is_some(),
            )
        });
        let asked = "computed when asked";
        register_grad(grads, node_x, &x.shape, || dx.expect(asked));
        register_grad(grads, node_w, &weight.shape, || dw.expect(asked));
    }
}

/// Backward of [`MobileKernels::batch_norm_act_train`]: state is
/// (x, gamma, beta, mean, variance, epsilon, act).
#[derive(Debug)]
struct BatchNormActBackward;

impl Backward<Flex, 3> for BatchNormActBackward {
    type State = (
        FlexTensor,
        FlexTensor,
        FlexTensor,
        FlexTensor,
        FlexTensor,
        f64,
        Act,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents.map(|p| p.map(|node| node.id));
        let dy = Raw::new(grads.consume::<Flex>(&ops.node));
        let (x, gamma, beta, mean, var, epsilon, act) = ops.state;
        let x = Raw::new(x);
        let [gamma, beta, mean, var] = [gamma, beta, mean, var].map(Raw::new);
        let (n, c, hw) = planes(&x.shape);
        let (dx, d_gamma, d_beta) = time(Phase::BatchNormBackward, || {
            bn::train_backward(
                x.data(),
                gamma.data(),
                beta.data(),
                mean.data(),
                var.data(),
                dy.data(),
                BnShape { n, c, hw },
                epsilon,
                act,
            )
        });
        register_grad(grads, node_x, &x.shape, || dx);
        register_grad(grads, node_gamma, &[c], || d_gamma);
        register_grad(grads, node_beta, &[c], || d_beta);
    }
}

/// A convolution `forward(x, weight, setting)` recorded for autodiff with `backward`, whose
/// state is (x, weight, setting).
fn tracked_conv<C, B>(
    backward: B,
    x: AutodiffFloat,
    weight: AutodiffFloat,
    setting: usize,
    forward: fn(FlexTensor, FlexTensor, usize) -> FlexTensor,
) -> AutodiffFloat
where
    C: CheckpointStrategy,
    B: Backward<Flex, 2, State = (FlexTensor, FlexTensor, usize)>,
{
    match backward
        .prepare::<C>([x.node(), weight.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (x, weight) = (x.into_primitive(), weight.into_primitive());
            let y = forward(x.clone(), weight.clone(), setting);
            prep.finish((x, weight, setting), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(
            x.into_primitive(),
            weight.into_primitive(),
            setting,
        )),
    }
}

/// The float tensor primitive of `Autodiff<Flex>`.
type AutodiffFloat = FloatTensor<Autodiff<Flex>>;

impl<C: CheckpointStrategy> MobileKernels for Autodiff<Flex, C> {
    fn pointwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        groups: usize,
    ) -> FloatTensor<Self> {
        tracked_conv::<C, _>(PointwiseBackward, x, weight, groups, Flex::pointwise_conv)
    }

    fn depthwise_conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        tracked_conv::<C, _>(
            DepthwiseBackward,
            x,
            weight,
            stride,
            Flex::depthwise_conv3x3,
        )
    }

    fn dense_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: usize,
    ) -> FloatTensor<Self> {
        tracked_conv::<C, _>(DenseBackward, x, weight, geometry, Flex::dense_conv)
    }

    fn batch_norm_act_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: Act,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prepared = BatchNormActBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (x, gamma, beta) = (
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
        );
        let (y, mean, var) =
            Flex::batch_norm_act_train(x.clone(), gamma.clone(), beta.clone(), epsilon, act);
        let output = match prepared {
            OpsKind::Tracked(prep) => {
                prep.finish((x, gamma, beta, mean.clone(), var.clone(), epsilon, act), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (
            output,
            FloatTensor::<Self>::new(mean),
            FloatTensor::<Self>::new(var),
        )
    }

    fn batch_norm_act_eval(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
        act: Act,
    ) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(Flex::batch_norm_act_eval(
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            mean.into_primitive(),
            var.into_primitive(),
            epsilon,
            act,
        ))
    }
}
