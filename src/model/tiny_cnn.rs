//! A tiny plain CNN: four strided 3x3 convolutions (BN, ReLU) and the head. It demonstrates
//! no trick; it is a floor to measure the others against, and quick enough for smoke tests.
//! It is also the worked example of `docs/models.md`.

use std::sync::Arc;

use burn::prelude::*;

use super::blocks::{Act, ConvBnSpec, ConvStack, HeadSpec};
use super::cost::CostTable;
use super::registry::{Family, FamilyInfo, HeadOptions, Network, at_most, parse_factor};
use super::{Classifier, ModelError};

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
        ConvStack::init(&self.convs(), self.head(), device)
    }

    /// Counts every layer.
    pub fn count(&self, table: &mut CostTable) -> Result<(), ModelError> {
        ConvStack::count(&self.convs(), self.head(), table)
    }
}

/// The network: a plain stack of convolution blocks and the head.
pub type TinyCnn = ConvStack;

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
    fn info(&self) -> &'static FamilyInfo {
        &FamilyInfo {
            name: "tiny_cnn",
            pattern: "tiny_cnn[:<width>]",
            trick: "none: four plain strided convolutions (a floor and a smoke-test model)",
            examples: &["tiny_cnn:1.0", "tiny_cnn:0.5"],
            dropout: 0.0,
        }
    }
    fn parse(&self, full: &str, options: &[&str]) -> Result<Arc<dyn Network>, ModelError> {
        at_most(self, full, options, 1)?;
        let width = parse_factor(full, "width", options.first().copied())?;
        Ok(Arc::new(Tiny { width }))
    }
}
