//! Which fast kernels run a whole convolution + batch norm + activation block: the
//! selection `ConvBn::forward` delegates to in one call, kept apart from the block (as timm
//! keeps `fast_norm` apart from `ConvNormAct`).

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::prelude::*;
use dermclass_kernels::bn::Act;

use super::{
    DenseGeometry, apply, batch_norm_act_eval, batch_norm_act_train, dense_conv, depthwise_conv3x3,
    fast_path, pointwise_conv,
};

/// `act(norm(conv(x)))`. On the fast path (f32 on flex, kernels enabled) the convolution
/// runs on the kernel that fits the layer (burn's own otherwise) and batch norm is fused
/// with the activation; elsewhere burn's modules run as they are.
pub fn conv_norm_act(conv: &Conv2d, norm: &BatchNorm, act: Act, x: Tensor<4>) -> Tensor<4> {
    if !fast_path(&x) {
        return apply(act, norm.forward(conv.forward(x)));
    }
    let y = match fast_conv(conv) {
        Some(FastConv::Pointwise) => pointwise_conv(x, conv.weight.val(), conv.groups),
        Some(FastConv::Depthwise3x3 { stride }) => depthwise_conv3x3(x, conv.weight.val(), stride),
        Some(FastConv::Dense(geometry)) => dense_conv(x, conv.weight.val(), geometry),
        None => conv.forward(x),
    };
    norm_act(norm, act, y)
}

/// Which fast kernel runs a block's convolution.
#[derive(Clone, Copy, Debug)]
enum FastConv {
    /// 1x1, stride 1, any groups.
    Pointwise,
    /// Depthwise 3x3, padding 1, stride 1 or 2.
    Depthwise3x3 { stride: usize },
    /// Dense (one group), square kernel, equal strides: stems, ResNet's 3x3 and strided 1x1
    /// convolutions, the plain twin's 3x3 layers.
    Dense(DenseGeometry),
}

/// The fast kernel that computes `conv`, if any.
fn fast_conv(conv: &Conv2d) -> Option<FastConv> {
    if conv.bias.is_some() || conv.dilation != [1, 1] {
        return None;
    }
    let pad = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right)
            if top == left && left == bottom && bottom == right =>
        {
            top
        }
        _ => return None,
    };
    let [c_out, per_group, _, _] = conv.weight.dims();
    let depthwise = per_group == 1 && conv.groups == c_out;
    match (conv.kernel_size, conv.stride, pad) {
        ([1, 1], [1, 1], 0) => Some(FastConv::Pointwise),
        ([3, 3], [s, t], 1) if depthwise && s == t && (s == 1 || s == 2) => {
            Some(FastConv::Depthwise3x3 { stride: s })
        }
        // Every dense size: the plain twin's 1024-channel layer (9.4M weights), once slower
        // than burn's convolution, ran 1.23x faster at 128x128 batch 32 and 1.05x at 224x224
        // batch 16 after its weight gradient got one buffer (`cargo run --release --example
        // dense_ab -- 32 3 128`, `results/dense-ab-2026-12-01.txt`).
        ([k, l], [s, t], pad) if conv.groups == 1 && k == l && s == t => {
            Some(FastConv::Dense(DenseGeometry { stride: s, pad }))
        }
        _ => None,
    }
}

/// Batch norm and activation through the fused kernels, choosing like burn's `BatchNorm`:
/// batch statistics (updating the running ones as it does) when training on an autodiff
/// device, running statistics otherwise (burn's differentiable ops on an autodiff device,
/// which the kernel wrapper picks itself).
fn norm_act(norm: &BatchNorm, act: Act, y: Tensor<4>) -> Tensor<4> {
    let device = y.device();
    if device.is_autodiff() && norm.training.is_enabled() {
        let batch = batch_norm_act_train(y, norm.gamma.val(), norm.beta.val(), norm.epsilon, act);
        let blend = |running: Tensor<1>, batch: Tensor<1>| {
            running
                .to_device(&device)
                .mul_scalar(1.0 - norm.momentum)
                .add(batch.detach().mul_scalar(norm.momentum))
                .detach()
        };
        norm.running_mean
            .update(blend(norm.running_mean.value_sync(), batch.mean));
        norm.running_var
            .update(blend(norm.running_var.value_sync(), batch.variance));
        batch.output
    } else {
        batch_norm_act_eval(
            y,
            norm.gamma.val(),
            norm.beta.val(),
            norm.running_mean.value().to_device(&device),
            norm.running_var.value().to_device(&device),
            norm.epsilon,
            act,
        )
    }
}
