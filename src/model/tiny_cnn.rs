//! A tiny plain CNN: four strided 3x3 convolutions (BN, ReLU) and the head. It demonstrates
//! no trick; it is a floor to measure the others against, and quick enough for smoke tests.
//! It is also the worked example of `docs/models.md`.

use std::sync::Arc;

use burn::prelude::*;

use super::blocks::{Act, ConvBn, ConvBnSpec, Head, HeadSpec};
use super::cost::CostTable;
use super::registry::{Family, HeadOptions, Network, at_most, parse_factor};
use super::{Classifier, ModelError};
use crate::export::{GraphBuilder, ToOnnx};

/// Output channels of the four convolutions at width 1.
const CHANNELS: [usize; 4] = [16, 32, 64, 128];

/// Configuration of a tiny CNN.
#[derive(Clone, Debug, PartialEq)]
pub struct TinyCnnConfig {
    /// Width multiplier on every convolution.
    pub width: f64,
    /// Classes and dropout of the head.
    pub head: HeadOptions,
}

impl TinyCnnConfig {
    fn convs(&self) -> Vec<ConvBnSpec> {
        let mut input = 3;
        CHANNELS
            .iter()
            .map(|&c| {
                let out = ((c as f64 * self.width).round() as usize).max(1);
                let spec = ConvBnSpec::new(input, out, 3)
                    .stride(2)
                    .act(Act::Relu);
                input = out;
                spec
            })
            .collect()
    }

    fn head(&self) -> HeadSpec {
        HeadSpec {
            in_channels: self.convs()[3].out_channels,
            classes: self.head.classes,
            dropout: self.head.dropout,
        }
    }

    /// Builds the network.
    pub fn init(&self, device: &Device) -> TinyCnn {
        TinyCnn {
            features: self.convs().iter().map(|c| c.init(device)).collect(),
            head: self.head().init(device),
        }
    }

    /// Counts every layer.
    pub fn count(&self, table: &mut CostTable) -> Result<(), ModelError> {
        table.count_each("features", &self.convs(), |item, t, name| {
            item.count(t, name)
        })?;
        self.head().count(table);
        Ok(())
    }
}

/// The tiny CNN.
#[derive(Module, Debug)]
pub struct TinyCnn {
    features: Vec<ConvBn>,
    head: Head,
}

impl TinyCnn {
    /// Maps `[batch, 3, h, w]` images to `[batch, classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.features.iter().fold(x, |x, layer| layer.forward(x));
        self.head.forward(x)
    }
}

impl ToOnnx for TinyCnn {
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let x = self
            .features
            .iter()
            .fold(x.to_string(), |x, layer| layer.emit(g, &x));
        self.head.emit(g, &x)
    }
}

/// `tiny_cnn[:<width>]`.
pub struct TinyCnnFamily;

/// A tiny CNN with its width.
#[derive(Debug)]
struct Tiny {
    width: f64,
}

impl Network for Tiny {
    fn family(&self) -> &'static dyn Family {
        &TinyCnnFamily
    }
    fn name(&self) -> String {
        format!("tiny_cnn:{:?}", self.width)
    }
    fn build(&self, head: HeadOptions, device: &Device) -> Result<Classifier, ModelError> {
        let config = TinyCnnConfig {
            width: self.width,
            head,
        };
        Ok(Classifier::TinyCnn(config.init(device)))
    }
    fn count(&self, head: HeadOptions, table: &mut CostTable) -> Result<(), ModelError> {
        let config = TinyCnnConfig {
            width: self.width,
            head,
        };
        config.count(table)
    }
}

impl Family for TinyCnnFamily {
    fn name(&self) -> &'static str {
        "tiny_cnn"
    }
    fn pattern(&self) -> &'static str {
        "tiny_cnn[:<width>]"
    }
    fn trick(&self) -> &'static str {
        "none: four plain strided convolutions (a floor and a smoke-test model)"
    }
    fn examples(&self) -> &'static [&'static str] {
        &["tiny_cnn:1.0", "tiny_cnn:0.5"]
    }
    fn parse(&self, full: &str, options: &[&str]) -> Result<Arc<dyn Network>, ModelError> {
        at_most(self, full, options, 1)?;
        let width = parse_factor(full, "width", options.first().copied())?;
        Ok(Arc::new(Tiny { width }))
    }
}
