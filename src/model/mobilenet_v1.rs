//! MobileNetV1 (Howard et al. 2017): depthwise separable convolutions, and its "Conv
//! MobileNet" twin with standard 3x3 convolutions in the same places, so the trick's saving
//! can be measured.

use burn::prelude::*;

use super::ModelError;
use super::registry::{Family, FamilyInfo, HeadOptions, Network, at_most, parse_factor};
use super::Classifier;
use std::sync::Arc;
use super::blocks::{Act, ConvBnSpec, ConvStack, HeadSpec};
use super::cost::CostTable;

/// The 13 (output channels, stride) pairs after the stem, from the paper's Table 1.
const LAYERS: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];

/// Configuration of a MobileNetV1 (or its plain-convolution twin).
#[derive(Clone, Debug, PartialEq)]
pub struct MobileNetV1Config {
    /// Width multiplier alpha: every layer's channels are `floor(c * alpha)`.
    pub alpha: f64,
    /// `true`: depthwise 3x3 + pointwise 1x1 (MobileNet); `false`: one standard 3x3 conv.
    pub separable: bool,
    /// Number of output classes.
    pub classes: usize,
    /// Dropout before the classifier.
    pub dropout: f64,
}

impl MobileNetV1Config {
    fn width(&self, channels: usize) -> usize {
        ((channels as f64 * self.alpha).floor() as usize).max(1)
    }

    /// The convolutions in forward order: the stem, then per layer either a depthwise +
    /// pointwise pair or a single standard 3x3 convolution.
    pub fn convs(&self) -> Vec<ConvBnSpec> {
        let mut channels = self.width(32);
        let mut convs = vec![
            ConvBnSpec::new(3, channels, 3)
                .stride(2)
                .act(Act::Relu),
        ];
        for (out, stride) in LAYERS {
            let out = self.width(out);
            if self.separable {
                convs.push(ConvBnSpec::depthwise(channels, stride).act(Act::Relu));
                convs.push(ConvBnSpec::new(channels, out, 1).act(Act::Relu));
            } else {
                convs.push(
                    ConvBnSpec::new(channels, out, 3)
                        .stride(stride)
                        .act(Act::Relu),
                );
            }
            channels = out;
        }
        convs
    }

    fn head(&self) -> HeadSpec {
        HeadSpec {
            in_channels: self.width(1024),
            classes: self.classes,
            dropout: self.dropout,
        }
    }

    /// Builds the network.
    pub fn init(&self, device: &Device) -> MobileNetV1 {
        ConvStack::init(&self.convs(), self.head(), device)
    }

    /// Counts every layer.
    pub fn count(&self, table: &mut CostTable) -> Result<(), ModelError> {
        ConvStack::count(&self.convs(), self.head(), table)
    }
}

/// The network: a plain stack of convolution blocks and the head.
pub type MobileNetV1 = ConvStack;

/// `mobilenet_v1[:<alpha>]`: depthwise separable convolutions.
pub struct MobileNetV1Family;
/// `plain_v1[:<alpha>]`: the same topology with standard convolutions, the baseline.
pub struct PlainV1Family;

/// A MobileNetV1 or plain twin with its width.
#[derive(Debug)]
struct V1 {
    alpha: f64,
    separable: bool,
}

impl V1 {
    fn config(&self, head: HeadOptions) -> MobileNetV1Config {
        MobileNetV1Config {
            alpha: self.alpha,
            separable: self.separable,
            classes: head.classes,
            dropout: head.dropout,
        }
    }
}

impl Network for V1 {
    fn family(&self) -> &'static dyn Family {
        if self.separable {
            &MobileNetV1Family
        } else {
            &PlainV1Family
        }
    }
    fn name(&self) -> String {
        format!("{}:{:?}", self.family().name(), self.alpha)
    }
    fn build(&self, head: HeadOptions, device: &Device) -> Result<Classifier, ModelError> {
        Ok(Classifier::MobileNetV1(self.config(head).init(device)))
    }
    fn count(&self, head: HeadOptions, table: &mut CostTable) -> Result<(), ModelError> {
        self.config(head).count(table)
    }
}

fn parse_v1(
    family: &dyn Family,
    separable: bool,
    full: &str,
    options: &[&str],
) -> Result<Arc<dyn Network>, ModelError> {
    at_most(family, full, options, 1)?;
    let alpha = parse_factor(full, "alpha", options.first().copied())?;
    Ok(Arc::new(V1 { alpha, separable }))
}

impl Family for MobileNetV1Family {
    fn info(&self) -> &'static FamilyInfo {
        &FamilyInfo {
            name: "mobilenet_v1",
            pattern: "mobilenet_v1[:<alpha>]",
            trick: "depthwise separable convolution",
            examples: &[
            "mobilenet_v1:1.0",
            "mobilenet_v1:0.75",
            "mobilenet_v1:0.5",
            "mobilenet_v1:0.25",
        ],
            dropout: 0.0,
        }
    }
    fn parse(&self, full: &str, options: &[&str]) -> Result<Arc<dyn Network>, ModelError> {
        parse_v1(self, true, full, options)
    }
}

impl Family for PlainV1Family {
    fn info(&self) -> &'static FamilyInfo {
        &FamilyInfo {
            name: "plain_v1",
            pattern: "plain_v1[:<alpha>]",
            trick: "standard 3x3 convolution (MobileNetV1 topology, the baseline)",
            examples: &["plain_v1:1.0", "plain_v1:0.5"],
            dropout: 0.0,
        }
    }
    fn parse(&self, full: &str, options: &[&str]) -> Result<Arc<dyn Network>, ModelError> {
        parse_v1(self, false, full, options)
    }
}
