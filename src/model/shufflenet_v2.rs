//! ShuffleNet v2 (Ma et al. 2018): channel split, equal-width branches, concatenation and a
//! two-group channel shuffle, laid out as in torchvision's `shufflenetv2.py`.

use burn::prelude::*;

use super::ModelError;
use crate::export::{GraphBuilder, ToOnnx};
use super::registry::{Family, FamilyInfo, HeadOptions, Network, at_most, parse_factor};
use super::Classifier;
use std::sync::Arc;
use super::blocks::{
    Act, ConvBn, ConvBnSpec, Head, HeadSpec, emit_channel_shuffle,
};
use crate::fast_ops::{interleave, take_channels};
use super::torchvision::TorchKeys;
use super::cost::{CostTable, FeatureShape};
use super::stem::{Stem, StemSpec};

/// Units per stage (stages 2, 3, 4).
const REPEATS: [usize; 3] = [4, 8, 4];

/// Channels of (stem, stage 2, stage 3, stage 4, last conv) for a supported scale.
pub fn stage_channels(scale: f64) -> Option<[usize; 5]> {
    let table: [(f64, [usize; 5]); 4] = [
        (0.5, [24, 48, 96, 192, 1024]),
        (1.0, [24, 116, 232, 464, 1024]),
        (1.5, [24, 176, 352, 704, 1024]),
        (2.0, [24, 244, 488, 976, 2048]),
    ];
    table
        .iter()
        .find(|(s, _)| (s - scale).abs() < 1e-9)
        .map(|(_, c)| *c)
}

/// Configuration of a ShuffleNet v2.
#[derive(Clone, Debug, PartialEq)]
pub struct ShuffleNetV2Config {
    /// Width scale: 0.5, 1.0, 1.5 or 2.0.
    pub scale: f64,
    /// Number of output classes.
    pub classes: usize,
    /// Dropout before the classifier.
    pub dropout: f64,
}

/// One ShuffleNet v2 unit. With stride 1 the input is split in two halves and only the
/// second goes through `main`; with stride 2 both branches see the whole input.
#[derive(Clone, Debug, PartialEq)]
pub struct ShuffleV2UnitSpec {
    /// Shortcut branch for stride 2: depthwise 3x3 (BN), pointwise 1x1 (BN, ReLU).
    pub shortcut: Option<[ConvBnSpec; 2]>,
    /// Main branch: pointwise (BN, ReLU), depthwise 3x3 (BN), pointwise (BN, ReLU).
    pub main: [ConvBnSpec; 3],
}

impl ShuffleV2UnitSpec {
    fn new(input: usize, output: usize, stride: usize) -> Self {
        let branch = output / 2;
        let main_input = if stride == 1 { branch } else { input };
        Self {
            shortcut: (stride > 1).then(|| {
                [
                    ConvBnSpec::depthwise(input, stride),
                    ConvBnSpec::new(input, branch, 1).act(Act::Relu),
                ]
            }),
            main: [
                ConvBnSpec::new(main_input, branch, 1).act(Act::Relu),
                ConvBnSpec::depthwise(branch, stride),
                ConvBnSpec::new(branch, branch, 1).act(Act::Relu),
            ],
        }
    }

    fn init(&self, device: &Device) -> ShuffleV2Unit {
        ShuffleV2Unit {
            shortcut: self
                .shortcut
                .map(|convs| convs.iter().map(|c| c.init(device)).collect()),
            main: self.main.iter().map(|c| c.init(device)).collect(),
        }
    }

    fn count(&self, table: &mut CostTable, name: &str) -> Result<(), ModelError> {
        let input = table.shape();
        table.scope(name, |t| {
            let mut out_channels = input.channels / 2;
            if let Some(shortcut) = &self.shortcut {
                shortcut[0].count(t, "shortcut.0")?;
                shortcut[1].count(t, "shortcut.1")?;
                out_channels = t.shape().channels;
                t.set_shape(input);
            } else {
                t.set_shape(FeatureShape {
                    channels: out_channels,
                    ..input
                });
            }
            for (i, conv) in self.main.iter().enumerate() {
                conv.count(t, &format!("main.{i}"))?;
            }
            let channels = t.shape().channels + out_channels;
            t.concat("concat_shuffle", channels);
            Ok(())
        })
    }
}

/// ShuffleNet v2 unit.
#[derive(Module, Debug)]
pub struct ShuffleV2Unit {
    shortcut: Option<Vec<ConvBn>>,
    main: Vec<ConvBn>,
}

impl ShuffleV2Unit {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let run = |convs: &[ConvBn], x: Tensor<4>| convs.iter().fold(x, |x, c| c.forward(x));
        match &self.shortcut {
            Some(shortcut) => interleave(run(shortcut, x.clone()), run(&self.main, x)),
            None => {
                // The first half passes through: `interleave` reads it from `x` itself.
                let [_, channels, _, _] = x.dims();
                let half = channels / 2;
                let right = take_channels(x.clone(), half, channels - half);
                interleave(x, run(&self.main, right))
            }
        }
    }
}

impl ShuffleNetV2Config {
    fn channels(&self) -> Result<[usize; 5], ModelError> {
        stage_channels(self.scale).ok_or_else(|| {
            ModelError::BadOption(format!(
                "shufflenet_v2 scale must be 0.5, 1.0, 1.5 or 2.0, got {}",
                self.scale
            ))
        })
    }

    fn stem(&self) -> Result<StemSpec, ModelError> {
        Ok(StemSpec {
            conv: ConvBnSpec::new(3, self.channels()?[0], 3)
                .stride(2)
                .act(Act::Relu),
        })
    }

    /// The units in forward order.
    pub fn units(&self) -> Result<Vec<ShuffleV2UnitSpec>, ModelError> {
        let channels = self.channels()?;
        let mut input = channels[0];
        let mut units = Vec::new();
        for (output, repeats) in channels[1..4].iter().zip(REPEATS) {
            for i in 0..repeats {
                units.push(ShuffleV2UnitSpec::new(
                    input,
                    *output,
                    if i == 0 { 2 } else { 1 },
                ));
                input = *output;
            }
        }
        Ok(units)
    }

    fn last(&self) -> Result<ConvBnSpec, ModelError> {
        let c = self.channels()?;
        Ok(ConvBnSpec::new(c[3], c[4], 1).act(Act::Relu))
    }

    fn head(&self) -> Result<HeadSpec, ModelError> {
        Ok(HeadSpec {
            in_channels: self.channels()?[4],
            classes: self.classes,
            dropout: self.dropout,
        })
    }

    /// Builds the network.
    pub fn init(&self, device: &Device) -> Result<ShuffleNetV2, ModelError> {
        Ok(ShuffleNetV2 {
            stem: self.stem()?.init(device),
            units: self.units()?.iter().map(|u| u.init(device)).collect(),
            last: self.last()?.init(device),
            head: self.head()?.init(device),
        })
    }

    /// Counts every layer.
    pub fn count(&self, table: &mut CostTable) -> Result<(), ModelError> {
        self.stem()?.count(table)?;
        let units = self.units()?;
        table.count_each("units", &units, |item, t, name| item.count(t, name))?;
        self.last()?.count(table, "last")?;
        self.head()?.count(table);
        Ok(())
    }
}

/// ShuffleNet v2.
#[derive(Module, Debug)]
pub struct ShuffleNetV2 {
    stem: Stem,
    units: Vec<ShuffleV2Unit>,
    last: ConvBn,
    head: Head,
}

impl ShuffleNetV2 {
    /// The last convolutional stage's output, the map Grad-CAM explains.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.stem.forward(x);
        let x = self.units.iter().fold(x, |x, u| u.forward(x));
        self.last.forward(x)
    }

    /// The classifier head (pool, dropout, linear) that maps [`Self::features`] to logits.
    pub fn head(&self) -> &Head {
        &self.head
    }
}

impl ToOnnx for ShuffleV2Unit {
    /// As `forward`: the concatenation then a two-group shuffle.
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let run = |g: &mut GraphBuilder, convs: &[ConvBn], x: &str| {
            convs.iter().fold(x.to_string(), |x, c| c.emit(g, &x))
        };
        let (left, right) = match &self.shortcut {
            Some(shortcut) => (run(g, shortcut, x), run(g, &self.main, x)),
            None => {
                let channels = self.main[0].in_channels() * 2;
                let (left, right) = g.split_channels(x, channels / 2, channels / 2);
                let right = run(g, &self.main, &right);
                (left, right)
            }
        };
        let channels = self.main[2].out_channels() * 2;
        let joined = g.concat_channels(&[&left, &right]);
        emit_channel_shuffle(g, &joined, channels, 2)
    }
}

impl ToOnnx for ShuffleNetV2 {
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let x = self.stem.emit(g, x);
        let x = self.units.iter().fold(x, |x, u| u.emit(g, &x));
        let x = self.last.emit(g, &x);
        self.head.emit(g, &x)
    }
}

/// `shufflenet_v2[:<scale>]`.
pub struct ShuffleNetV2Family;

/// A ShuffleNet v2 with its scale.
#[derive(Debug)]
struct V2 {
    scale: f64,
}

impl V2 {
    fn config(&self, head: HeadOptions) -> ShuffleNetV2Config {
        ShuffleNetV2Config {
            scale: self.scale,
            classes: head.classes,
            dropout: head.dropout,
        }
    }
}

impl Network for V2 {
    fn family(&self) -> &'static dyn Family {
        &ShuffleNetV2Family
    }
    fn name(&self) -> String {
        format!("shufflenet_v2:{:?}", self.scale)
    }
    fn build(&self, head: HeadOptions, device: &Device) -> Result<Classifier, ModelError> {
        Ok(Classifier::ShuffleNetV2(self.config(head).init(device)?))
    }
    fn count(&self, head: HeadOptions, table: &mut CostTable) -> Result<(), ModelError> {
        self.config(head).count(table)
    }
    fn torchvision_keys(&self) -> Option<TorchKeys> {
        let mut keys = TorchKeys::default();
        keys.conv_bn("conv1.0", "conv1.1");
        for (stage, repeats) in REPEATS.into_iter().enumerate() {
            for unit in 0..repeats {
                let p = format!("stage{}.{unit}", stage + 2);
                if unit == 0 {
                    keys.conv_bn(&format!("{p}.branch1.0"), &format!("{p}.branch1.1"));
                    keys.conv_bn(&format!("{p}.branch1.2"), &format!("{p}.branch1.3"));
                }
                for (conv, norm) in [(0, 1), (3, 4), (5, 6)] {
                    keys.conv_bn(&format!("{p}.branch2.{conv}"), &format!("{p}.branch2.{norm}"));
                }
            }
        }
        keys.conv_bn("conv5.0", "conv5.1").linear("fc");
        Some(keys)
    }
}

impl Family for ShuffleNetV2Family {
    fn info(&self) -> &'static FamilyInfo {
        &FamilyInfo {
            name: "shufflenet_v2",
            pattern: "shufflenet_v2[:<scale>]",
            trick: "channel split + shuffle, equal-width branches",
            examples: &[
            "shufflenet_v2:0.5",
            "shufflenet_v2:1.0",
            "shufflenet_v2:1.5",
            "shufflenet_v2:2.0",
        ],
            dropout: 0.0,
        }
    }
    fn parse(&self, full: &str, options: &[&str]) -> Result<Arc<dyn Network>, ModelError> {
        at_most(self, full, options, 1)?;
        let scale = parse_factor(full, "scale", options.first().copied())?;
        if stage_channels(scale).is_none() {
            return Err(ModelError::BadOption(format!(
                "`{full}`: shufflenet_v2 scale must be 0.5, 1.0, 1.5 or 2.0"
            )));
        }
        Ok(Arc::new(V2 { scale }))
    }
}
