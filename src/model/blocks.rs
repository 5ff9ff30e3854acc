//! Building blocks shared by the model families: convolution + batch norm + activation,
//! the classifier head, channel shuffle, and channel rounding.
//!
//! Every block comes as a plain specification (`*Spec`) that both builds the burn module
//! (`init`) and counts its cost (`count`), so the summary can never drift from the model.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::prelude::*;

use super::ModelError;
use super::cost::CostTable;
use crate::export::{Attr, GraphBuilder, ToOnnx, values};
use crate::fast_ops;

/// The activation after a convolution's batch norm: identity (MobileNetV2's "linear
/// bottleneck"), ReLU or ReLU6. One type shared with the kernels, which fuse it into the
/// batch norm.
pub use dermclass_kernels::bn::Act;

/// Rounds `value` to the nearest multiple of `divisor` (at least `divisor`), never going
/// more than 10% below `value`: the channel rule of MobileNetV2 (torchvision/TF-slim).
pub fn make_divisible(value: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut rounded = (((value + d / 2.0) / d).floor() as usize * divisor).max(divisor);
    if (rounded as f64) < 0.9 * value {
        rounded += divisor;
    }
    rounded
}

/// Specification of a convolution (square kernel, "same"-style symmetric padding `k/2`,
/// no bias) followed by batch norm and an activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvBnSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size (square).
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Channel groups (`in_channels` for a depthwise convolution).
    pub groups: usize,
    /// Act after batch norm.
    pub activation: Act,
}

impl ConvBnSpec {
    /// A `kernel`x`kernel` convolution with stride 1, one group and no activation.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            groups: 1,
            activation: Act::Identity,
        }
    }

    /// A 3x3 depthwise convolution over `channels`.
    pub fn depthwise(channels: usize, stride: usize) -> Self {
        Self::new(channels, channels, 3)
            .stride(stride)
            .groups(channels)
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the number of groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Sets the activation.
    pub fn act(mut self, activation: Act) -> Self {
        self.activation = activation;
        self
    }

    fn padding(&self) -> usize {
        self.kernel / 2
    }

    /// Checks that the channel counts split evenly into the groups.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.groups == 0
            || !self.in_channels.is_multiple_of(self.groups)
            || !self.out_channels.is_multiple_of(self.groups)
        {
            return Err(ModelError::BadOption(format!(
                "a convolution {} -> {} channels cannot be split into {} groups",
                self.in_channels, self.out_channels, self.groups
            )));
        }
        Ok(())
    }

    /// Builds the module.
    pub fn init(&self, device: &Device) -> ConvBn {
        let p = self.padding();
        let conv = Conv2dConfig::new([self.in_channels, self.out_channels], [self.kernel; 2])
            .with_stride([self.stride; 2])
            .with_groups(self.groups)
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_bias(false)
            .with_initializer(conv_initializer())
            .init(device);
        ConvBn {
            conv,
            norm: BatchNormConfig::new(self.out_channels).init(device),
            activation: self.activation,
        }
    }

    /// Counts the convolution and its batch norm under `name`.
    pub fn count(&self, table: &mut CostTable, name: &str) -> Result<(), ModelError> {
        debug_assert_eq!(table.shape().channels, self.in_channels, "at {name}");
        table.scope(name, |t| {
            t.conv(
                "conv",
                self.out_channels,
                self.kernel,
                self.stride,
                self.padding(),
                self.groups,
                false,
            )?;
            t.batch_norm("bn");
            Ok(())
        })
    }
}

/// He (Kaiming) normal initialisation over fan-out, as torchvision uses for these networks.
pub fn conv_initializer() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: true,
    }
}

/// Convolution, batch norm, activation.
#[derive(Module, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    norm: BatchNorm,
    #[module(skip)]
    activation: Act,
}

impl ConvBn {
    /// Convolution, batch norm, activation (on flex through the fast kernels).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        fast_ops::conv_norm_act(&self.conv, &self.norm, self.activation, x)
    }
}

impl ConvBn {
    /// Input channels.
    pub fn in_channels(&self) -> usize {
        let [_, per_group, _, _] = self.conv.weight.dims();
        per_group * self.conv.groups
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.conv.weight.dims()[0]
    }

    /// The convolution with its batch norm folded in, as `(weight, bias)`: with
    /// `s = gamma / sqrt(running_var + eps)`, `w' = w * s` per output channel and
    /// `b' = beta - running_mean * s` (computed in f64).
    fn folded(&self) -> (Vec<f32>, Vec<f32>) {
        let norm = &self.norm;
        let gamma = values(norm.gamma.val());
        let beta = values(norm.beta.val());
        let mean = values(norm.running_mean.value());
        let var = values(norm.running_var.value());
        let weight = values(self.conv.weight.val());
        let per_channel = weight.len() / gamma.len();
        let scale: Vec<f64> = gamma
            .iter()
            .zip(&var)
            .map(|(&g, &v)| g as f64 / (v as f64 + norm.epsilon).sqrt())
            .collect();
        let folded_weight = weight
            .chunks(per_channel)
            .zip(&scale)
            .flat_map(|(w, &s)| w.iter().map(move |&w| (w as f64 * s) as f32))
            .collect();
        let bias = (0..gamma.len())
            .map(|c| (beta[c] as f64 - mean[c] as f64 * scale[c]) as f32)
            .collect();
        (folded_weight, bias)
    }
}

impl ToOnnx for ConvBn {
    /// One `Conv` with the batch norm folded into its weight and bias, then the activation.
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let (weight, bias) = self.folded();
        let dims = self.conv.weight.dims();
        let w = g.weight("conv_weight", &dims, &weight);
        let b = g.weight("conv_bias", &[dims[0]], &bias);
        let [sh, sw] = self.conv.stride;
        let [kh, kw] = self.conv.kernel_size;
        let [dh, dw] = self.conv.dilation;
        let pads = match self.conv.padding {
            PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
            _ => [0; 4],
        };
        let ints = |v: &[usize]| Attr::Ints(v.iter().map(|&i| i as i64).collect());
        let y = g.node(
            "Conv",
            &[x, &w, &b],
            &[
                ("kernel_shape", ints(&[kh, kw])),
                ("strides", ints(&[sh, sw])),
                ("pads", ints(&pads)),
                ("dilations", ints(&[dh, dw])),
                ("group", Attr::Int(self.conv.groups as i64)),
            ],
        );
        match self.activation {
            Act::Identity => y,
            Act::Relu => g.relu(&y),
            Act::Relu6 => {
                let low = g.weight("relu6_min", &[], &[0.0]);
                let high = g.weight("relu6_max", &[], &[6.0]);
                g.node("Clip", &[&y, &low, &high], &[])
            }
        }
    }
}

/// Specification of the classifier head: global average pool, optional dropout, linear.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadSpec {
    /// Channels of the last feature map.
    pub in_channels: usize,
    /// Number of classes.
    pub classes: usize,
    /// Dropout probability before the linear layer (0 disables it).
    pub dropout: f64,
}

impl HeadSpec {
    /// Builds the module.
    pub fn init(&self, device: &Device) -> Head {
        Head {
            dropout: DropoutConfig::new(self.dropout).init(),
            linear: LinearConfig::new(self.in_channels, self.classes)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.01,
                })
                .init(device),
        }
    }

    /// Counts the pooling and the linear layer.
    pub fn count(&self, table: &mut CostTable) {
        table.global_pool("avgpool");
        table.linear("classifier", self.classes, true);
    }
}

/// Global average pool, dropout, linear classifier.
#[derive(Module, Debug)]
pub struct Head {
    dropout: Dropout,
    linear: Linear,
}

impl Head {
    /// Maps a `[batch, channels, h, w]` feature map to `[batch, classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let [batch, channels, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([batch, channels]);
        self.linear.forward(self.dropout.forward(pooled))
    }

    /// The linear layer's `[channels, classes]` weight.
    pub fn linear_weight(&self) -> Tensor<2> {
        self.linear.weight.val()
    }
}

impl ToOnnx for Head {
    /// `GlobalAveragePool`, `Flatten`, `Gemm` (burn's linear weight is `[in, out]`, so no
    /// transpose); dropout is the identity at inference.
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let pooled = g.node("GlobalAveragePool", &[x], &[]);
        let flat = g.node("Flatten", &[&pooled], &[("axis", Attr::Int(1))]);
        let dims = self.linear.weight.dims();
        let w = g.weight("linear_weight", &dims, &values(self.linear.weight.val()));
        let bias = match &self.linear.bias {
            Some(b) => values(b.val()),
            None => vec![0.0; dims[1]],
        };
        let b = g.weight("linear_bias", &[dims[1]], &bias);
        g.node("Gemm", &[&flat, &w, &b], &[])
    }
}

/// A plain stack of convolution blocks and the classifier head: MobileNetV1, its plain
/// twin, and `tiny_cnn` are this with different specs.
#[derive(Module, Debug)]
pub struct ConvStack {
    features: Vec<ConvBn>,
    head: Head,
}

impl ConvStack {
    /// Builds the stack of `convs` and `head`.
    pub fn init(convs: &[ConvBnSpec], head: HeadSpec, device: &Device) -> Self {
        Self {
            features: convs.iter().map(|c| c.init(device)).collect(),
            head: head.init(device),
        }
    }

    /// Counts the stack of `convs` (named `features.<i>`) and `head`.
    pub fn count(
        convs: &[ConvBnSpec],
        head: HeadSpec,
        table: &mut CostTable,
    ) -> Result<(), ModelError> {
        table.count_each("features", convs, |item, t, name| item.count(t, name))?;
        head.count(table);
        Ok(())
    }

    /// The last convolution's output, the map Grad-CAM explains.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        self.features.iter().fold(x, |x, layer| layer.forward(x))
    }

    /// The classifier head (pool, dropout, linear) that maps [`Self::features`] to logits.
    pub fn head(&self) -> &Head {
        &self.head
    }
}

impl ToOnnx for ConvStack {
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let x = self
            .features
            .iter()
            .fold(x.to_string(), |x, layer| layer.emit(g, &x));
        self.head.emit(g, &x)
    }
}

/// ShuffleNet's channel shuffle: view channels as `[groups, channels/groups]`, transpose,
/// flatten, so that each group of the next grouped convolution sees every previous group.
pub fn channel_shuffle(x: Tensor<4>, groups: usize) -> Tensor<4> {
    let [batch, channels, height, width] = x.dims();
    debug_assert_eq!(channels % groups, 0);
    x.reshape([batch, groups, channels / groups, height, width])
        .swap_dims(1, 2)
        .reshape([batch, channels, height, width])
}

/// `channel_shuffle(cat([a, b], 1), 2)` in one copy instead of two: with equal widths, the
/// shuffled order interleaves the channels of `a` and `b`, which is stacking them on a new
/// axis after the channels and flattening. Unequal widths take the two-copy route.
pub fn concat_shuffle(a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    let [batch, ca, height, width] = a.dims();
    if b.dims()[1] != ca {
        return channel_shuffle(Tensor::cat(vec![a, b], 1), 2);
    }
    Tensor::<4>::stack::<5>(vec![a, b], 2).reshape([batch, 2 * ca, height, width])
}

/// [`channel_shuffle`] as a graph: a `Gather` of the channels in shuffled order.
pub fn emit_channel_shuffle(
    g: &mut GraphBuilder,
    x: &str,
    channels: usize,
    groups: usize,
) -> String {
    let order: Vec<usize> = (0..channels)
        .map(|i| shuffled_source(i, channels, groups))
        .collect();
    g.permute_channels(x, &order)
}

/// The channel index that ends up at position `i` after [`channel_shuffle`]: position
/// `i = k*groups + g` takes channel `g*(channels/groups) + k`.
pub fn shuffled_source(i: usize, channels: usize, groups: usize) -> usize {
    let per_group = channels / groups;
    (i % groups) * per_group + i / groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_shuffle_is_channel_shuffle_of_the_concatenation() {
        let device = Device::flex();
        let a = Tensor::<4>::random([2, 3, 4, 5], burn::tensor::Distribution::Default, &device);
        let b = Tensor::<4>::random([2, 3, 4, 5], burn::tensor::Distribution::Default, &device);
        let c = Tensor::<4>::random([2, 5, 4, 5], burn::tensor::Distribution::Default, &device);
        for other in [b, c] {
            let expected = channel_shuffle(Tensor::cat(vec![a.clone(), other.clone()], 1), 2);
            let got = concat_shuffle(a.clone(), other);
            assert_eq!(got.dims(), expected.dims());
            got.into_data().assert_eq(&expected.into_data(), true);
        }
    }

    #[test]
    fn make_divisible_matches_torchvision() {
        assert_eq!(make_divisible(32.0, 8), 32);
        assert_eq!(make_divisible(32.0 * 0.35, 8), 16);
        assert_eq!(make_divisible(16.0 * 0.35, 8), 8);
        assert_eq!(make_divisible(24.0 * 0.75, 8), 24);
        assert_eq!(make_divisible(32.0 * 1.4, 8), 48);
        assert_eq!(make_divisible(1280.0 * 1.4, 8), 1792);
        assert_eq!(make_divisible(12.0, 8), 16);
    }

    #[test]
    fn channel_shuffle_matches_the_hand_written_permutation() {
        let device = Device::default();
        // 12 channels, 3 groups of 4: [0 1 2 3 | 4 5 6 7 | 8 9 10 11].
        // Shuffled: take the first of each group, then the second, ...
        let expected: [usize; 12] = [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11];
        let values: Vec<f32> = (0..12 * 2).map(|v| v as f32).collect();
        // Each channel holds a 1x2 map [c*2, c*2+1] so spatial positions are checked too.
        let x = Tensor::<4>::from_data(TensorData::new(values, [1, 12, 1, 2]), &device);
        let out: Vec<f32> = channel_shuffle(x, 3).into_data().try_to_vec().unwrap();
        for (i, &src) in expected.iter().enumerate() {
            assert_eq!(out[2 * i], (2 * src) as f32, "channel {i}");
            assert_eq!(out[2 * i + 1], (2 * src + 1) as f32, "channel {i}");
            assert_eq!(shuffled_source(i, 12, 3), src);
        }
    }

    /// A block whose batch norm has non-trivial statistics, as after training.
    fn trained_block(spec: ConvBnSpec, device: &Device) -> ConvBn {
        use burn::module::{Param, RunningState};
        let c = spec.out_channels;
        let ramp = |from: f32, step: f32| {
            let v: Vec<f32> = (0..c).map(|i| from + step * i as f32).collect();
            Tensor::<1>::from_data(TensorData::new(v, [c]), device)
        };
        let mut block = spec.init(device);
        block.norm.gamma = Param::from_tensor(ramp(0.5, 0.1));
        block.norm.beta = Param::from_tensor(ramp(-0.3, 0.07));
        block.norm.running_mean = RunningState::new(ramp(0.2, -0.05));
        block.norm.running_var = RunningState::new(ramp(0.4, 0.3));
        block
    }

    #[test]
    fn folding_the_batch_norm_into_the_convolution_keeps_the_output() {
        use burn::tensor::module::conv2d;
        use burn::tensor::ops::ConvOptions;
        let device = Device::flex();
        for spec in [
            ConvBnSpec::new(3, 8, 3).stride(2).act(Act::Relu6),
            ConvBnSpec::depthwise(8, 1).act(Act::Relu),
            ConvBnSpec::new(8, 6, 1).groups(2),
        ] {
            let block = trained_block(spec, &device);
            let x = Tensor::<4>::random(
                [2, spec.in_channels, 9, 7],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let expected = block.forward(x.clone());
            let (weight, bias) = block.folded();
            let dims = block.conv.weight.dims();
            let weight = Tensor::<4>::from_data(TensorData::new(weight, dims), &device);
            let bias = Tensor::<1>::from_data(TensorData::new(bias, [dims[0]]), &device);
            let p = spec.kernel / 2;
            let options = ConvOptions::new([spec.stride; 2], [p, p], [1, 1], spec.groups);
            let folded = fast_ops::apply(spec.activation, conv2d(x, weight, Some(bias), options));
            folded.into_data().assert_approx_eq::<f32>(
                &expected.into_data(),
                burn::tensor::Tolerance::absolute(1e-5),
            );
        }
    }

    #[test]
    fn groups_that_do_not_divide_are_rejected() {
        let err = ConvBnSpec::new(10, 12, 1).groups(3).validate().unwrap_err();
        assert!(err.to_string().contains("3 groups"), "{err}");
    }
}
