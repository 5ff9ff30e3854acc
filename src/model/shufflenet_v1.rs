//! ShuffleNet v1 (Zhang et al. 2018): pointwise group convolutions with a channel shuffle
//! between them, so information still crosses groups.

use burn::prelude::*;
use burn::tensor::activation::relu;

use super::ModelError;
use crate::export::{GraphBuilder, ToOnnx};
use crate::fast_ops::{Window, add_relu, channel_shuffle, pool2d};
use super::registry::{Family, FamilyInfo, HeadOptions, Network, at_most, parse_factor};
use super::Classifier;
use std::sync::Arc;
use super::blocks::{
    Act, ConvBn, ConvBnSpec, Head, HeadSpec, emit_channel_shuffle,
};
use super::cost::CostTable;
use super::stem::{Stem, StemSpec};

/// Units per stage (stages 2, 3, 4), from the paper's Table 1.
const REPEATS: [usize; 3] = [4, 8, 4];
/// Channels of the stem convolution.
const STEM_CHANNELS: usize = 24;

/// Output channels of stage 2 at scale 1x for each supported group count (Table 1);
/// stages 3 and 4 double them.
pub fn stage2_channels(groups: usize) -> Option<usize> {
    match groups {
        1 => Some(144),
        2 => Some(200),
        3 => Some(240),
        4 => Some(272),
        8 => Some(384),
        _ => None,
    }
}

/// Configuration of a ShuffleNet v1.
#[derive(Clone, Debug, PartialEq)]
pub struct ShuffleNetV1Config {
    /// Groups of the pointwise convolutions (1, 2, 3, 4 or 8).
    pub groups: usize,
    /// Width scale s ("ShuffleNet s x"): stage channels are `s` times those of 1x, rounded
    /// to a multiple of `4 * groups` so the bottleneck splits evenly; the stem keeps 24.
    pub scale: f64,
    /// Number of output classes.
    pub classes: usize,
    /// Dropout before the classifier.
    pub dropout: f64,
}

/// One ShuffleNet unit.
#[derive(Clone, Debug, PartialEq)]
pub struct ShuffleUnitSpec {
    /// Grouped 1x1 convolution to the bottleneck width (BN, ReLU).
    pub compress: ConvBnSpec,
    /// 3x3 depthwise convolution (BN, no ReLU).
    pub depthwise: ConvBnSpec,
    /// Grouped 1x1 convolution back to the output width (BN); with stride 2 it produces
    /// only the channels added to the average-pooled shortcut.
    pub expand: ConvBnSpec,
    /// Groups of the channel shuffle between `compress` and `depthwise`.
    pub shuffle_groups: usize,
}

impl ShuffleUnitSpec {
    fn new(input: usize, output: usize, stride: usize, groups: usize, first: bool) -> Self {
        let bottleneck = output / 4;
        let first_groups = if first { 1 } else { groups };
        let expanded = if stride == 2 { output - input } else { output };
        Self {
            compress: ConvBnSpec::new(input, bottleneck, 1)
                .groups(first_groups)
                .act(Act::Relu),
            depthwise: ConvBnSpec::depthwise(bottleneck, stride),
            expand: ConvBnSpec::new(bottleneck, expanded, 1).groups(groups),
            shuffle_groups: groups,
        }
    }

    fn stride(&self) -> usize {
        self.depthwise.stride
    }

    fn validate(&self) -> Result<(), ModelError> {
        self.compress.validate()?;
        self.expand.validate()
    }

    fn init(&self, device: &Device) -> ShuffleUnit {
        ShuffleUnit {
            compress: self.compress.init(device),
            depthwise: self.depthwise.init(device),
            expand: self.expand.init(device),
            shuffle_groups: self.shuffle_groups,
            stride: self.stride(),
        }
    }

    fn count(&self, table: &mut CostTable, name: &str) -> Result<(), ModelError> {
        let input = table.shape();
        table.scope(name, |t| {
            self.compress.count(t, "compress")?;
            self.depthwise.count(t, "depthwise")?;
            self.expand.count(t, "expand")?;
            if self.stride() == 2 {
                let channels = t.shape().channels + input.channels;
                t.concat("concat_avgpool", channels);
            }
            Ok(())
        })
    }
}

/// A ShuffleNet unit: residual add (stride 1) or concatenation with a 3x3 average-pooled
/// shortcut (stride 2), followed by ReLU.
#[derive(Module, Debug)]
pub struct ShuffleUnit {
    compress: ConvBn,
    depthwise: ConvBn,
    expand: ConvBn,
    #[module(skip)]
    shuffle_groups: usize,
    #[module(skip)]
    stride: usize,
}

impl ShuffleUnit {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = self.compress.forward(x.clone());
        if self.shuffle_groups > 1 {
            y = channel_shuffle(y, self.shuffle_groups);
        }
        let y = self.expand.forward(self.depthwise.forward(y));
        if self.stride == 1 {
            add_relu(x, y)
        } else {
            let pooled = pool2d(x, Window::three_by_three_stride_two(false));
            relu(Tensor::cat(vec![pooled, y], 1))
        }
    }
}

impl ShuffleNetV1Config {
    fn stage_channels(&self) -> Result<[usize; 3], ModelError> {
        let base = stage2_channels(self.groups).ok_or_else(|| {
            ModelError::BadOption(format!(
                "shufflenet_v1 groups must be 1, 2, 3, 4 or 8, got {}",
                self.groups
            ))
        })?;
        let multiple = (4 * self.groups) as f64;
        let stage2 = ((base as f64 * self.scale / multiple).round() * multiple) as usize;
        let stage2 = stage2.max(4 * self.groups);
        Ok([stage2, 2 * stage2, 4 * stage2])
    }

    fn stem(&self) -> StemSpec {
        StemSpec {
            conv: ConvBnSpec::new(3, STEM_CHANNELS, 3)
                .stride(2)
                .act(Act::Relu),
        }
    }

    /// The units in forward order.
    pub fn units(&self) -> Result<Vec<ShuffleUnitSpec>, ModelError> {
        let mut input = STEM_CHANNELS;
        let mut units = Vec::new();
        for (stage, (output, repeats)) in
            self.stage_channels()?.into_iter().zip(REPEATS).enumerate()
        {
            for i in 0..repeats {
                let stride = if i == 0 { 2 } else { 1 };
                let unit =
                    ShuffleUnitSpec::new(input, output, stride, self.groups, stage == 0 && i == 0);
                unit.validate()?;
                units.push(unit);
                input = output;
            }
        }
        Ok(units)
    }

    fn head(&self) -> Result<HeadSpec, ModelError> {
        Ok(HeadSpec {
            in_channels: self.stage_channels()?[2],
            classes: self.classes,
            dropout: self.dropout,
        })
    }

    /// Builds the network.
    pub fn init(&self, device: &Device) -> Result<ShuffleNetV1, ModelError> {
        Ok(ShuffleNetV1 {
            stem: self.stem().init(device),
            units: self.units()?.iter().map(|u| u.init(device)).collect(),
            head: self.head()?.init(device),
        })
    }

    /// Counts every layer.
    pub fn count(&self, table: &mut CostTable) -> Result<(), ModelError> {
        self.stem().count(table)?;
        let units = self.units()?;
        table.count_each("units", &units, |item, t, name| item.count(t, name))?;
        self.head()?.count(table);
        Ok(())
    }
}

/// ShuffleNet v1.
#[derive(Module, Debug)]
pub struct ShuffleNetV1 {
    stem: Stem,
    units: Vec<ShuffleUnit>,
    head: Head,
}

impl ShuffleNetV1 {
    /// The last convolutional stage's output, the map Grad-CAM explains.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.stem.forward(x);
        self.units.iter().fold(x, |x, u| u.forward(x))
    }

    /// The classifier head (pool, dropout, linear) that maps [`Self::features`] to logits.
    pub fn head(&self) -> &Head {
        &self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_forward_shuffles_between_the_grouped_convolutions() {
        let device = Device::default();
        let spec = ShuffleUnitSpec::new(48, 48, 1, 3, false);
        let unit = spec.init(&device);
        let x = Tensor::<4>::random(
            [2, 48, 6, 5],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );

        // The same computation written out by hand, with and without the shuffle.
        let by_hand = |shuffle: bool| {
            let mut y = unit.compress.forward(x.clone());
            if shuffle {
                y = channel_shuffle(y, 3);
            }
            let y = unit.expand.forward(unit.depthwise.forward(y));
            relu(x.clone() + y)
        };
        let out = unit.forward(x.clone());
        let with = (out.clone() - by_hand(true))
            .abs()
            .max()
            .into_scalar::<f32>();
        let without = (out - by_hand(false)).abs().max().into_scalar::<f32>();
        assert!(
            with < 1e-5,
            "unit differs from compress-shuffle-dw-expand: {with}"
        );
        assert!(without > 1e-3, "the shuffle made no difference: {without}");
    }
}

impl ToOnnx for ShuffleUnit {
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let mut y = self.compress.emit(g, x);
        if self.shuffle_groups > 1 {
            let channels = self.compress.out_channels();
            y = emit_channel_shuffle(g, &y, channels, self.shuffle_groups);
        }
        let y = self.depthwise.emit(g, &y);
        let y = self.expand.emit(g, &y);
        let joined = if self.stride == 1 {
            g.add(x, &y)
        } else {
            let pooled = g.pool("AveragePool", x, 3, 2, 1);
            g.concat_channels(&[&pooled, &y])
        };
        g.relu(&joined)
    }
}

impl ToOnnx for ShuffleNetV1 {
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let x = self.stem.emit(g, x);
        let x = self.units.iter().fold(x, |x, u| u.emit(g, &x));
        self.head.emit(g, &x)
    }
}

/// `shufflenet_v1[:g<groups>][:<scale>]`.
pub struct ShuffleNetV1Family;

/// A ShuffleNet v1 with its groups and scale.
#[derive(Debug)]
struct V1 {
    groups: usize,
    scale: f64,
}

impl V1 {
    fn config(&self, head: HeadOptions) -> ShuffleNetV1Config {
        ShuffleNetV1Config {
            groups: self.groups,
            scale: self.scale,
            classes: head.classes,
            dropout: head.dropout,
        }
    }
}

impl Network for V1 {
    fn family(&self) -> &'static dyn Family {
        &ShuffleNetV1Family
    }
    fn name(&self) -> String {
        format!("shufflenet_v1:g{}:{:?}", self.groups, self.scale)
    }
    fn build(&self, head: HeadOptions, device: &Device) -> Result<Classifier, ModelError> {
        Ok(Classifier::ShuffleNetV1(self.config(head).init(device)?))
    }
    fn count(&self, head: HeadOptions, table: &mut CostTable) -> Result<(), ModelError> {
        self.config(head).count(table)
    }
}

impl Family for ShuffleNetV1Family {
    fn info(&self) -> &'static FamilyInfo {
        &FamilyInfo {
            name: "shufflenet_v1",
            pattern: "shufflenet_v1[:g<groups>][:<scale>]",
            trick: "pointwise group convolution with channel shuffle",
            examples: &[
            "shufflenet_v1:g1",
            "shufflenet_v1:g2",
            "shufflenet_v1:g3",
            "shufflenet_v1:g4",
            "shufflenet_v1:g8",
            "shufflenet_v1:g3:0.5",
            "shufflenet_v1:g3:2.0",
        ],
            dropout: 0.0,
        }
    }
    /// Groups come first as `g3` (default 3), then the scale (default 1).
    fn parse(&self, full: &str, options: &[&str]) -> Result<Arc<dyn Network>, ModelError> {
        at_most(self, full, options, 2)?;
        let first = options.first().copied();
        let (groups, scale) = match first {
            Some(g) if g.starts_with('g') => {
                let groups = g[1..].parse::<usize>().map_err(|_| {
                    ModelError::BadOption(format!("`{full}`: groups `{g}` must look like g3"))
                })?;
                (groups, options.get(1).copied())
            }
            Some(_) if options.len() == 2 => {
                return Err(ModelError::BadOption(format!(
                    "`{full}`: expected shufflenet_v1:g<groups>:<scale>"
                )));
            }
            other => (3, other),
        };
        if stage2_channels(groups).is_none() {
            return Err(ModelError::BadOption(format!(
                "`{full}`: shufflenet_v1 groups must be 1, 2, 3, 4 or 8"
            )));
        }
        let scale = parse_factor(full, "scale", scale)?;
        Ok(Arc::new(V1 { groups, scale }))
    }
}
