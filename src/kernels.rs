//! Fast CPU paths for the layers mobile networks are made of, plugged into burn's `flex`
//! backend through a backend extension ([`MobileKernels`]) with hand-written backward passes.
//!
//! The arithmetic lives in the `dermclass-kernels` crate (plain NCHW `f32` slices, tested
//! against naive references there); this module moves tensors in and out of it and registers
//! the gradients with burn's autodiff. The public wrappers ([`pointwise_conv`],
//! [`depthwise_conv3x3`], [`batch_norm_act_train`], [`batch_norm_act_eval`]) take the fast
//! path only for `f32` tensors on a flex device and when [`enabled`]; everywhere else (GPU
//! backends, other dtypes, `DERMCLASS_FAST_KERNELS=0`) the caller runs burn's own ops, so
//! results there are unchanged.

use std::sync::atomic::{AtomicU8, Ordering};

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use dermclass_kernels::pw::{self, PwShape};

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
}

/// `0` = not decided yet, `1` = on, `2` = off.
static SWITCH: AtomicU8 = AtomicU8::new(0);

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

/// 1x1 convolution (stride 1, no padding, no bias) with `groups` channel groups on the fast
/// path. The caller checks [`fast_path`] first.
pub fn pointwise_conv(x: Tensor<4>, weight: Tensor<4>, groups: usize) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as MobileKernels>::pointwise_conv(
        x.into_dispatch(),
        weight.into_dispatch(),
        groups,
    ))
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

fn pw_shape(x: &[usize], weight: &[usize], groups: usize) -> PwShape {
    PwShape {
        n: x[0],
        c_in: x[1],
        c_out: weight[0],
        hw: x[2] * x[3],
        groups,
    }
}

impl MobileKernels for Flex {
    fn pointwise_conv(x: FlexTensor, weight: FlexTensor, groups: usize) -> FlexTensor {
        let (x, weight) = (Raw::new(x), Raw::new(weight));
        let s = pw_shape(&x.shape, &weight.shape, groups);
        let y = pw::forward(x.data(), weight.data(), s);
        flex(y, [s.n, s.c_out, x.shape[2], x.shape[3]])
    }
}

/// Backward of [`MobileKernels::pointwise_conv`]: state is (x, weight, groups).
#[derive(Debug)]
struct PointwiseBackward;

impl Backward<Flex, 2> for PointwiseBackward {
    type State = (FlexTensor, FlexTensor, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = Raw::new(grads.consume::<Flex>(&ops.node));
        let (x, weight, groups) = ops.state;
        let (x, weight) = (Raw::new(x), Raw::new(weight));
        let s = pw_shape(&x.shape, &weight.shape, groups);
        if let Some(node) = node_w {
            let dw = pw::backward_weight(dy.data(), x.data(), s);
            grads.register::<Flex>(node.id, flex(dw, weight.shape.clone()));
        }
        if let Some(node) = node_x {
            let dx = pw::backward_input(dy.data(), weight.data(), s);
            grads.register::<Flex>(node.id, flex(dx, x.shape.clone()));
        }
    }
}

impl<C: CheckpointStrategy> MobileKernels for Autodiff<Flex, C> {
    fn pointwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        groups: usize,
    ) -> FloatTensor<Self> {
        match PointwiseBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.into_primitive(), weight.into_primitive());
                let y = Flex::pointwise_conv(x.clone(), weight.clone(), groups);
                prep.finish((x, weight, groups), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::pointwise_conv(
                x.into_primitive(),
                weight.into_primitive(),
                groups,
            )),
        }
    }
}
