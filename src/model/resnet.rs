//! ResNet-50 (He et al. 2016) with bottleneck blocks, stride on the 3x3 convolution as in
//! torchvision ("ResNet v1.5"): the classic reference the mobile tricks are measured against.

use burn::prelude::*;
use crate::fast_ops::add_relu;

use super::ModelError;
use crate::export::{GraphBuilder, ToOnnx};
use super::registry::{Family, FamilyInfo, HeadOptions, Network, at_most};
use super::Classifier;
use std::sync::Arc;
use super::blocks::{Act, ConvBn, ConvBnSpec, Head, HeadSpec};
use super::torchvision::TorchKeys;
use super::cost::CostTable;
use super::stem::{Stem, StemSpec};

/// Bottleneck blocks per stage for ResNet-50.
const RESNET50_LAYERS: [usize; 4] = [3, 4, 6, 3];
/// Output channels of a bottleneck are its width times this.
const EXPANSION: usize = 4;

/// Configuration of a ResNet-50.
#[derive(Clone, Debug, PartialEq)]
pub struct ResNetConfig {
    /// Number of output classes.
    pub classes: usize,
    /// Dropout before the classifier.
    pub dropout: f64,
}

/// One bottleneck: 1x1 reduce, 3x3 (strided), 1x1 expand, plus a projection shortcut when
/// the shape changes.
#[derive(Clone, Debug, PartialEq)]
pub struct BottleneckSpec {
    /// The three convolutions of the residual branch.
    pub convs: [ConvBnSpec; 3],
    /// 1x1 strided projection on the shortcut, when needed.
    pub downsample: Option<ConvBnSpec>,
}

impl BottleneckSpec {
    fn new(input: usize, width: usize, stride: usize) -> Self {
        let output = width * EXPANSION;
        Self {
            convs: [
                ConvBnSpec::new(input, width, 1).act(Act::Relu),
                ConvBnSpec::new(width, width, 3)
                    .stride(stride)
                    .act(Act::Relu),
                ConvBnSpec::new(width, output, 1),
            ],
            downsample: (stride != 1 || input != output)
                .then(|| ConvBnSpec::new(input, output, 1).stride(stride)),
        }
    }

    fn init(&self, device: &Device) -> Bottleneck {
        Bottleneck {
            convs: self.convs.iter().map(|c| c.init(device)).collect(),
            downsample: self.downsample.map(|c| c.init(device)),
        }
    }

    fn count(&self, table: &mut CostTable, name: &str) -> Result<(), ModelError> {
        let input = table.shape();
        table.scope(name, |t| {
            for (i, conv) in self.convs.iter().enumerate() {
                conv.count(t, &format!("conv{}", i + 1))?;
            }
            if let Some(down) = &self.downsample {
                let out = t.shape();
                t.set_shape(input);
                down.count(t, "downsample")?;
                debug_assert_eq!(out, t.shape());
            }
            Ok(())
        })
    }
}

/// Bottleneck residual block.
#[derive(Module, Debug)]
pub struct Bottleneck {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.downsample {
            Some(down) => down.forward(x.clone()),
            None => x.clone(),
        };
        let y = self.convs.iter().fold(x, |x, c| c.forward(x));
        add_relu(y, shortcut)
    }
}

impl ResNetConfig {
    fn stem(&self) -> StemSpec {
        StemSpec {
            conv: ConvBnSpec::new(3, 64, 7).stride(2).act(Act::Relu),
        }
    }

    /// The bottleneck blocks in forward order.
    pub fn blocks(&self) -> Vec<BottleneckSpec> {
        let mut input = 64;
        let mut blocks = Vec::new();
        for (stage, repeats) in RESNET50_LAYERS.into_iter().enumerate() {
            let width = 64 << stage;
            for i in 0..repeats {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                blocks.push(BottleneckSpec::new(input, width, stride));
                input = width * EXPANSION;
            }
        }
        blocks
    }

    fn head(&self) -> HeadSpec {
        HeadSpec {
            in_channels: 512 * EXPANSION,
            classes: self.classes,
            dropout: self.dropout,
        }
    }

    /// Builds the network.
    pub fn init(&self, device: &Device) -> ResNet {
        ResNet {
            stem: self.stem().init(device),
            blocks: self.blocks().iter().map(|b| b.init(device)).collect(),
            head: self.head().init(device),
        }
    }

    /// Counts every layer.
    pub fn count(&self, table: &mut CostTable) -> Result<(), ModelError> {
        self.stem().count(table)?;
        table.count_each("blocks", &self.blocks(), |item, t, name| {
            item.count(t, name)
        })?;
        self.head().count(table);
        Ok(())
    }
}

/// ResNet-50.
#[derive(Module, Debug)]
pub struct ResNet {
    stem: Stem,
    blocks: Vec<Bottleneck>,
    head: Head,
}

impl ResNet {
    /// The last convolutional stage's output, the map Grad-CAM explains.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.stem.forward(x);
        self.blocks.iter().fold(x, |x, b| b.forward(x))
    }

    /// The classifier head (pool, dropout, linear) that maps [`Self::features`] to logits.
    pub fn head(&self) -> &Head {
        &self.head
    }
}

impl ToOnnx for Bottleneck {
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let shortcut = match &self.downsample {
            Some(down) => down.emit(g, x),
            None => x.to_string(),
        };
        let y = self.convs.iter().fold(x.to_string(), |x, c| c.emit(g, &x));
        let sum = g.add(&y, &shortcut);
        g.relu(&sum)
    }
}

impl ToOnnx for ResNet {
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let x = self.stem.emit(g, x);
        let x = self.blocks.iter().fold(x, |x, b| b.emit(g, &x));
        self.head.emit(g, &x)
    }
}

/// `resnet50`.
pub struct ResNet50Family;

/// ResNet-50 (no options).
#[derive(Debug)]
struct ResNet50;

impl Network for ResNet50 {
    fn family(&self) -> &'static dyn Family {
        &ResNet50Family
    }
    fn name(&self) -> String {
        "resnet50".to_string()
    }
    fn build(&self, head: HeadOptions, device: &Device) -> Result<Classifier, ModelError> {
        let config = ResNetConfig {
            classes: head.classes,
            dropout: head.dropout,
        };
        Ok(Classifier::ResNet(config.init(device)))
    }
    fn count(&self, head: HeadOptions, table: &mut CostTable) -> Result<(), ModelError> {
        let config = ResNetConfig {
            classes: head.classes,
            dropout: head.dropout,
        };
        config.count(table)
    }
    fn torchvision_keys(&self) -> Option<TorchKeys> {
        let mut keys = TorchKeys::default();
        keys.conv_bn("conv1", "bn1");
        for (stage, repeats) in RESNET50_LAYERS.into_iter().enumerate() {
            for block in 0..repeats {
                let p = format!("layer{}.{block}", stage + 1);
                for i in 1..=3 {
                    keys.conv_bn(&format!("{p}.conv{i}"), &format!("{p}.bn{i}"));
                }
                if block == 0 {
                    keys.conv_bn(&format!("{p}.downsample.0"), &format!("{p}.downsample.1"));
                }
            }
        }
        keys.linear("fc");
        Some(keys)
    }
}

impl Family for ResNet50Family {
    fn info(&self) -> &'static FamilyInfo {
        &FamilyInfo {
            name: "resnet50",
            pattern: "resnet50",
            trick: "bottleneck residual blocks (the classic reference)",
            examples: &["resnet50"],
            dropout: 0.0,
        }
    }
    fn parse(&self, full: &str, options: &[&str]) -> Result<Arc<dyn Network>, ModelError> {
        at_most(self, full, options, 0)?;
        Ok(Arc::new(ResNet50))
    }
}
