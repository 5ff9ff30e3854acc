//! MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks and
//! ReLU6, laid out as in torchvision's `mobilenetv2.py`.

use burn::prelude::*;

use super::ModelError;
use crate::export::{GraphBuilder, ToOnnx};
use super::registry::{Family, FamilyInfo, HeadOptions, Network, at_most, parse_factor};
use super::Classifier;
use std::sync::Arc;
use super::blocks::{Act, ConvBn, ConvBnSpec, Head, HeadSpec, make_divisible};
use super::torchvision::TorchKeys;
use super::cost::CostTable;

/// The paper's Table 2: expansion t, output channels c, repeats n, first stride s.
const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// Configuration of a MobileNetV2.
#[derive(Clone, Debug, PartialEq)]
pub struct MobileNetV2Config {
    /// Width multiplier: channels are rounded to multiples of 8 (the last layer never shrinks).
    pub alpha: f64,
    /// Number of output classes.
    pub classes: usize,
    /// Dropout before the classifier (torchvision: 0.2).
    pub dropout: f64,
    /// Identity shortcuts where a block keeps its shape (the paper's network). `false` is
    /// the `noskip` variant: what dermclass built before 2026-11-30 by a bug, kept so that
    /// models trained then load as they were trained.
    pub skips: bool,
}

/// One inverted residual: 1x1 expansion (skipped when t = 1), 3x3 depthwise, linear 1x1
/// projection, with an identity shortcut when shape is preserved.
#[derive(Clone, Debug, PartialEq)]
pub struct InvertedResidualSpec {
    /// Expansion convolution, absent when the expansion factor is 1.
    pub expand: Option<ConvBnSpec>,
    /// Depthwise convolution.
    pub depthwise: ConvBnSpec,
    /// Linear projection.
    pub project: ConvBnSpec,
}

impl InvertedResidualSpec {
    fn new(input: usize, output: usize, stride: usize, expansion: usize) -> Self {
        let hidden = input * expansion;
        Self {
            expand: (expansion != 1)
                .then(|| ConvBnSpec::new(input, hidden, 1).act(Act::Relu6)),
            depthwise: ConvBnSpec::depthwise(hidden, stride).act(Act::Relu6),
            project: ConvBnSpec::new(hidden, output, 1),
        }
    }

    /// Channels into the block.
    fn input(&self) -> usize {
        self.expand
            .map_or(self.depthwise.in_channels, |e| e.in_channels)
    }

    /// Whether the block adds its input to its output (stride 1, same channels).
    pub fn residual(&self) -> bool {
        self.depthwise.stride == 1 && self.input() == self.project.out_channels
    }

    fn init(&self, device: &Device, skips: bool) -> InvertedResidual {
        InvertedResidual {
            expand: self.expand.map(|c| c.init(device)),
            depthwise: self.depthwise.init(device),
            project: self.project.init(device),
            residual: skips && self.residual(),
        }
    }

    fn count(&self, table: &mut CostTable, name: &str) -> Result<(), ModelError> {
        table.scope(name, |t| {
            if let Some(expand) = &self.expand {
                expand.count(t, "expand")?;
            }
            self.depthwise.count(t, "depthwise")?;
            self.project.count(t, "project")
        })
    }
}

/// Inverted residual block.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    #[module(skip)]
    residual: bool,
}

impl InvertedResidual {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = x.clone();
        if let Some(expand) = &self.expand {
            y = expand.forward(y);
        }
        let y = self.project.forward(self.depthwise.forward(y));
        if self.residual { x + y } else { y }
    }
}

impl MobileNetV2Config {
    fn stem(&self) -> ConvBnSpec {
        ConvBnSpec::new(3, make_divisible(32.0 * self.alpha, 8), 3)
            .stride(2)
            .act(Act::Relu6)
    }

    /// The inverted residual blocks in forward order.
    pub fn blocks(&self) -> Vec<InvertedResidualSpec> {
        let mut input = self.stem().out_channels;
        let mut blocks = Vec::new();
        for (t, c, n, s) in SETTINGS {
            let output = make_divisible(c as f64 * self.alpha, 8);
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                blocks.push(InvertedResidualSpec::new(input, output, stride, t));
                input = output;
            }
        }
        blocks
    }

    fn last(&self) -> ConvBnSpec {
        let input = make_divisible(SETTINGS[6].1 as f64 * self.alpha, 8);
        ConvBnSpec::new(input, make_divisible(1280.0 * self.alpha.max(1.0), 8), 1)
            .act(Act::Relu6)
    }

    fn head(&self) -> HeadSpec {
        HeadSpec {
            in_channels: self.last().out_channels,
            classes: self.classes,
            dropout: self.dropout,
        }
    }

    /// Builds the network.
    pub fn init(&self, device: &Device) -> MobileNetV2 {
        MobileNetV2 {
            stem: self.stem().init(device),
            blocks: self
                .blocks()
                .iter()
                .map(|b| b.init(device, self.skips))
                .collect(),
            last: self.last().init(device),
            head: self.head().init(device),
        }
    }

    /// Counts every layer.
    pub fn count(&self, table: &mut CostTable) -> Result<(), ModelError> {
        self.stem().count(table, "stem")?;
        table.count_each("blocks", &self.blocks(), |item, t, name| {
            item.count(t, name)
        })?;
        self.last().count(table, "last")?;
        self.head().count(table);
        Ok(())
    }
}

/// MobileNetV2.
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    stem: ConvBn,
    blocks: Vec<InvertedResidual>,
    last: ConvBn,
    head: Head,
}

impl MobileNetV2 {
    /// The last convolutional stage's output, the map Grad-CAM explains.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.stem.forward(x);
        let x = self.blocks.iter().fold(x, |x, b| b.forward(x));
        self.last.forward(x)
    }

    /// The classifier head (pool, dropout, linear) that maps [`Self::features`] to logits.
    pub fn head(&self) -> &Head {
        &self.head
    }
}

impl ToOnnx for InvertedResidual {
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let y = match &self.expand {
            Some(expand) => expand.emit(g, x),
            None => x.to_string(),
        };
        let y = self.depthwise.emit(g, &y);
        let y = self.project.emit(g, &y);
        if self.residual { g.add(x, &y) } else { y }
    }
}

impl ToOnnx for MobileNetV2 {
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let x = self.stem.emit(g, x);
        let x = self.blocks.iter().fold(x, |x, b| b.emit(g, &x));
        let x = self.last.emit(g, &x);
        self.head.emit(g, &x)
    }
}

/// `mobilenet_v2[:<alpha>][:noskip]`.
pub struct MobileNetV2Family;

/// A MobileNetV2 with its width multiplier, with or without its shortcuts.
#[derive(Debug)]
struct V2 {
    alpha: f64,
    skips: bool,
}

impl V2 {
    fn config(&self, head: HeadOptions) -> MobileNetV2Config {
        MobileNetV2Config {
            alpha: self.alpha,
            classes: head.classes,
            dropout: head.dropout,
            skips: self.skips,
        }
    }
}

impl Network for V2 {
    fn family(&self) -> &'static dyn Family {
        &MobileNetV2Family
    }
    fn name(&self) -> String {
        let variant = if self.skips { "" } else { ":noskip" };
        format!("mobilenet_v2:{:?}{variant}", self.alpha)
    }
    fn build(&self, head: HeadOptions, device: &Device) -> Result<Classifier, ModelError> {
        Ok(Classifier::MobileNetV2(self.config(head).init(device)))
    }
    fn count(&self, head: HeadOptions, table: &mut CostTable) -> Result<(), ModelError> {
        self.config(head).count(table)
    }
    fn torchvision_keys(&self) -> Option<TorchKeys> {
        // The noskip variant has the layout but not torchvision's function.
        if !self.skips {
            return None;
        }
        let head = HeadOptions {
            classes: 1,
            dropout: 0.0,
        };
        let blocks = self.config(head).blocks();
        let mut keys = TorchKeys::default();
        keys.conv_bn("features.0.0", "features.0.1");
        for (i, block) in blocks.iter().enumerate() {
            let f = format!("features.{}.conv", i + 1);
            // torchvision numbers the layers of a block from 0, the expansion first.
            let first = usize::from(block.expand.is_some());
            if first == 1 {
                keys.conv_bn(&format!("{f}.0.0"), &format!("{f}.0.1"));
            }
            keys.conv_bn(&format!("{f}.{first}.0"), &format!("{f}.{first}.1"));
            keys.conv_bn(&format!("{f}.{}", first + 1), &format!("{f}.{}", first + 2));
        }
        let last = blocks.len() + 1;
        keys.conv_bn(&format!("features.{last}.0"), &format!("features.{last}.1"));
        keys.linear("classifier.1");
        Some(keys)
    }
}

impl Family for MobileNetV2Family {
    fn info(&self) -> &'static FamilyInfo {
        &FamilyInfo {
            name: "mobilenet_v2",
            pattern: "mobilenet_v2[:<alpha>][:noskip]",
            trick: "inverted residuals with linear bottlenecks",
            examples: &[
            "mobilenet_v2:1.4",
            "mobilenet_v2:1.0",
            "mobilenet_v2:0.75",
            "mobilenet_v2:0.5",
            "mobilenet_v2:0.35",
        ],
            dropout: 0.2,
        }
    }
    fn parse(&self, full: &str, options: &[&str]) -> Result<Arc<dyn Network>, ModelError> {
        at_most(self, full, options, 2)?;
        let skips = options.last() != Some(&"noskip");
        let options = if skips { options } else { &options[..options.len() - 1] };
        if options.len() > 1 {
            return Err(ModelError::BadOption(format!(
                "`{full}`: too many options; expected {}",
                self.pattern()
            )));
        }
        let alpha = parse_factor(full, "alpha", options.first().copied())?;
        Ok(Arc::new(V2 { alpha, skips }))
    }
}
