//! MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks and
//! ReLU6, laid out as in torchvision's `mobilenetv2.py`.

use burn::prelude::*;

use super::ModelError;
use super::blocks::{Activation, ConvBn, ConvBnSpec, Head, HeadSpec, make_divisible};
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
                .then(|| ConvBnSpec::new(input, hidden, 1).act(Activation::Relu6)),
            depthwise: ConvBnSpec::depthwise(hidden, stride).act(Activation::Relu6),
            project: ConvBnSpec::new(hidden, output, 1),
        }
    }

    fn residual(&self) -> bool {
        self.depthwise.stride == 1 && self.depthwise.in_channels == self.project.out_channels
    }

    fn init(&self, device: &Device) -> InvertedResidual {
        InvertedResidual {
            expand: self.expand.map(|c| c.init(device)),
            depthwise: self.depthwise.init(device),
            project: self.project.init(device),
            residual: self.residual(),
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
            .act(Activation::Relu6)
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
            .act(Activation::Relu6)
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
            blocks: self.blocks().iter().map(|b| b.init(device)).collect(),
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
    /// Maps `[batch, 3, h, w]` images to `[batch, classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.stem.forward(x);
        let x = self.blocks.iter().fold(x, |x, b| b.forward(x));
        self.head.forward(self.last.forward(x))
    }
}
