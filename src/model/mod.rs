//! The mobile model zoo: one file per network family, shared blocks in [`blocks`], exact
//! cost accounting in [`cost`], and a registry that builds any model from a name such as
//! `mobilenet_v2:1.0` or `shufflenet_v1:g3`.

pub mod blocks;
pub mod cost;
pub mod mobilenet_v1;
pub mod mobilenet_v2;
pub mod resnet;
pub mod shufflenet_v1;
pub mod shufflenet_v2;
mod stem;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use thiserror::Error;

pub use cost::{CostTable, FeatureShape, LayerCost};
use mobilenet_v1::{MobileNetV1, MobileNetV1Config};
use mobilenet_v2::{MobileNetV2, MobileNetV2Config};
use resnet::{ResNet, ResNetConfig};
use shufflenet_v1::{ShuffleNetV1, ShuffleNetV1Config};
use shufflenet_v2::{ShuffleNetV2, ShuffleNetV2Config};

/// Smallest input side every model accepts.
pub const MIN_INPUT: usize = 32;

/// Errors from parsing an architecture name or building a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The architecture family is not registered.
    #[error("unknown architecture `{0}`; run `dermclass models` for the list")]
    UnknownArch(String),
    /// An option (alpha, groups, scale, class count) is out of range.
    #[error("{0}")]
    BadOption(String),
    /// The input is too small for the network.
    #[error("input too small: {0}")]
    InputTooSmall(String),
}

/// A registered network family, for listings.
#[derive(Clone, Debug)]
pub struct Family {
    /// Name prefix, e.g. `mobilenet_v2`.
    pub name: &'static str,
    /// Name pattern with its options.
    pub pattern: &'static str,
    /// The trick the family demonstrates.
    pub trick: &'static str,
    /// Suggested option values.
    pub examples: &'static [&'static str],
    /// Default classifier dropout.
    pub dropout: f64,
}

/// Every registered family.
pub const FAMILIES: [Family; 6] = [
    Family {
        name: "plain_v1",
        pattern: "plain_v1[:<alpha>]",
        trick: "standard 3x3 convolution (MobileNetV1 topology, the baseline)",
        examples: &["plain_v1:1.0", "plain_v1:0.5"],
        dropout: 0.0,
    },
    Family {
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
    },
    Family {
        name: "mobilenet_v2",
        pattern: "mobilenet_v2[:<alpha>]",
        trick: "inverted residuals with linear bottlenecks",
        examples: &[
            "mobilenet_v2:1.4",
            "mobilenet_v2:1.0",
            "mobilenet_v2:0.75",
            "mobilenet_v2:0.5",
            "mobilenet_v2:0.35",
        ],
        dropout: 0.2,
    },
    Family {
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
    },
    Family {
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
    },
    Family {
        name: "resnet50",
        pattern: "resnet50",
        trick: "bottleneck residual blocks (the classic reference)",
        examples: &["resnet50"],
        dropout: 0.0,
    },
];

/// A parsed architecture with its options.
#[derive(Clone, Debug, PartialEq)]
pub enum Arch {
    /// MobileNetV1 (`separable`) or Conv MobileNet (`!separable`) with width multiplier.
    MobileNetV1 {
        /// Width multiplier.
        alpha: f64,
        /// Depthwise separable (true) or standard (false) convolutions.
        separable: bool,
    },
    /// MobileNetV2 with width multiplier.
    MobileNetV2 {
        /// Width multiplier.
        alpha: f64,
    },
    /// ShuffleNet v1 with pointwise groups and width scale.
    ShuffleNetV1 {
        /// Groups of the pointwise convolutions.
        groups: usize,
        /// Width scale.
        scale: f64,
    },
    /// ShuffleNet v2 with width scale.
    ShuffleNetV2 {
        /// Width scale.
        scale: f64,
    },
    /// ResNet-50.
    ResNet50,
}

fn parse_factor(name: &str, what: &str, text: Option<&str>) -> Result<f64, ModelError> {
    let Some(text) = text else { return Ok(1.0) };
    let value: f64 = text
        .parse()
        .map_err(|_| ModelError::BadOption(format!("`{name}`: {what} `{text}` is not a number")))?;
    if !(value.is_finite() && value > 0.0 && value <= 4.0) {
        return Err(ModelError::BadOption(format!(
            "`{name}`: {what} must be in (0, 4], got {text}"
        )));
    }
    Ok(value)
}

impl std::str::FromStr for Arch {
    type Err = ModelError;

    /// Parses names such as `mobilenet_v2:1.4`, `shufflenet_v1:g3:0.5` or `resnet50`.
    fn from_str(name: &str) -> Result<Self, ModelError> {
        let lower = name.trim().to_ascii_lowercase();
        let mut parts = lower.split(':');
        let family = parts.next().unwrap_or_default();
        let options: Vec<&str> = parts.collect();
        let too_many = |max: usize| -> Result<(), ModelError> {
            if options.len() > max {
                return Err(ModelError::BadOption(format!(
                    "`{name}`: too many options; expected {}",
                    FAMILIES
                        .iter()
                        .find(|f| f.name == family)
                        .map_or("", |f| f.pattern)
                )));
            }
            Ok(())
        };
        let first = options.first().copied();
        let arch = match family {
            "mobilenet_v1" | "plain_v1" => {
                too_many(1)?;
                Arch::MobileNetV1 {
                    alpha: parse_factor(name, "alpha", first)?,
                    separable: family == "mobilenet_v1",
                }
            }
            "mobilenet_v2" => {
                too_many(1)?;
                Arch::MobileNetV2 {
                    alpha: parse_factor(name, "alpha", first)?,
                }
            }
            "shufflenet_v1" => {
                too_many(2)?;
                let (groups, scale) = match first {
                    Some(g) if g.starts_with('g') => {
                        let groups = g[1..].parse::<usize>().map_err(|_| {
                            ModelError::BadOption(format!(
                                "`{name}`: groups `{g}` must look like g3"
                            ))
                        })?;
                        (groups, options.get(1).copied())
                    }
                    Some(_) if options.len() == 2 => {
                        return Err(ModelError::BadOption(format!(
                            "`{name}`: expected shufflenet_v1:g<groups>:<scale>"
                        )));
                    }
                    other => (3, other),
                };
                if shufflenet_v1::stage2_channels(groups).is_none() {
                    return Err(ModelError::BadOption(format!(
                        "`{name}`: shufflenet_v1 groups must be 1, 2, 3, 4 or 8"
                    )));
                }
                Arch::ShuffleNetV1 {
                    groups,
                    scale: parse_factor(name, "scale", scale)?,
                }
            }
            "shufflenet_v2" => {
                too_many(1)?;
                let scale = parse_factor(name, "scale", first)?;
                if shufflenet_v2::stage_channels(scale).is_none() {
                    return Err(ModelError::BadOption(format!(
                        "`{name}`: shufflenet_v2 scale must be 0.5, 1.0, 1.5 or 2.0"
                    )));
                }
                Arch::ShuffleNetV2 { scale }
            }
            "resnet50" => {
                too_many(0)?;
                Arch::ResNet50
            }
            _ => return Err(ModelError::UnknownArch(name.to_string())),
        };
        Ok(arch)
    }
}

impl std::fmt::Display for Arch {
    /// The canonical name, which parses back to the same architecture.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arch::MobileNetV1 { alpha, separable } => {
                let family = if *separable {
                    "mobilenet_v1"
                } else {
                    "plain_v1"
                };
                write!(f, "{family}:{alpha:?}")
            }
            Arch::MobileNetV2 { alpha } => write!(f, "mobilenet_v2:{alpha:?}"),
            Arch::ShuffleNetV1 { groups, scale } => write!(f, "shufflenet_v1:g{groups}:{scale:?}"),
            Arch::ShuffleNetV2 { scale } => write!(f, "shufflenet_v2:{scale:?}"),
            Arch::ResNet50 => write!(f, "resnet50"),
        }
    }
}

impl Arch {
    /// The registered family this architecture belongs to.
    pub fn family(&self) -> &'static Family {
        let name = match self {
            Arch::MobileNetV1 {
                separable: true, ..
            } => "mobilenet_v1",
            Arch::MobileNetV1 { .. } => "plain_v1",
            Arch::MobileNetV2 { .. } => "mobilenet_v2",
            Arch::ShuffleNetV1 { .. } => "shufflenet_v1",
            Arch::ShuffleNetV2 { .. } => "shufflenet_v2",
            Arch::ResNet50 => "resnet50",
        };
        FAMILIES
            .iter()
            .find(|f| f.name == name)
            .expect("every arch has a family")
    }
}

/// Everything needed to build a classifier: architecture, class count, dropout.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// Architecture and its options.
    pub arch: Arch,
    /// Number of output classes.
    pub classes: usize,
    /// Dropout before the classifier.
    pub dropout: f64,
}

impl ModelSpec {
    /// Parses `name` and uses the family's default dropout.
    pub fn parse(name: &str, classes: usize) -> Result<Self, ModelError> {
        let arch: Arch = name.parse()?;
        if classes < 2 {
            return Err(ModelError::BadOption(format!(
                "a classifier needs at least 2 classes, got {classes}"
            )));
        }
        let dropout = arch.family().dropout;
        Ok(Self {
            arch,
            classes,
            dropout,
        })
    }

    /// Overrides the classifier dropout (must be in [0, 1)).
    pub fn with_dropout(mut self, dropout: f64) -> Result<Self, ModelError> {
        if !(0.0..1.0).contains(&dropout) {
            return Err(ModelError::BadOption(format!(
                "dropout must be in [0, 1), got {dropout}"
            )));
        }
        self.dropout = dropout;
        Ok(self)
    }

    /// The family configuration this specification stands for.
    fn network(&self) -> Network {
        let (classes, dropout) = (self.classes, self.dropout);
        match self.arch {
            Arch::MobileNetV1 { alpha, separable } => Network::MobileNetV1(MobileNetV1Config {
                alpha,
                separable,
                classes,
                dropout,
            }),
            Arch::MobileNetV2 { alpha } => Network::MobileNetV2(MobileNetV2Config {
                alpha,
                classes,
                dropout,
            }),
            Arch::ShuffleNetV1 { groups, scale } => Network::ShuffleNetV1(ShuffleNetV1Config {
                groups,
                scale,
                classes,
                dropout,
            }),
            Arch::ShuffleNetV2 { scale } => Network::ShuffleNetV2(ShuffleNetV2Config {
                scale,
                classes,
                dropout,
            }),
            Arch::ResNet50 => Network::ResNet(ResNetConfig { classes, dropout }),
        }
    }

    /// Builds the burn module with freshly initialised weights on `device`.
    pub fn build(&self, device: &Device) -> Result<Classifier, ModelError> {
        Ok(match self.network() {
            Network::MobileNetV1(c) => Classifier::MobileNetV1(c.init(device)),
            Network::MobileNetV2(c) => Classifier::MobileNetV2(c.init(device)),
            Network::ShuffleNetV1(c) => Classifier::ShuffleNetV1(c.init(device)?),
            Network::ShuffleNetV2(c) => Classifier::ShuffleNetV2(c.init(device)?),
            Network::ResNet(c) => Classifier::ResNet(c.init(device)),
        })
    }

    /// Counts every layer for one `height` x `width` RGB input.
    pub fn cost(&self, height: usize, width: usize) -> Result<CostTable, ModelError> {
        if height < MIN_INPUT || width < MIN_INPUT {
            return Err(ModelError::InputTooSmall(format!(
                "{width}x{height} (width x height); every side must be at least {MIN_INPUT}"
            )));
        }
        let mut table = CostTable::new(3, height, width);
        match self.network() {
            Network::MobileNetV1(c) => c.count(&mut table)?,
            Network::MobileNetV2(c) => c.count(&mut table)?,
            Network::ShuffleNetV1(c) => c.count(&mut table)?,
            Network::ShuffleNetV2(c) => c.count(&mut table)?,
            Network::ResNet(c) => c.count(&mut table)?,
        }
        Ok(table)
    }
}

/// The configuration of one family, from which both the module and its cost come.
enum Network {
    MobileNetV1(MobileNetV1Config),
    MobileNetV2(MobileNetV2Config),
    ShuffleNetV1(ShuffleNetV1Config),
    ShuffleNetV2(ShuffleNetV2Config),
    ResNet(ResNetConfig),
}

/// Counts the parameters of `module` that require gradients: weights, biases and batch-norm
/// scale/shift, but not batch-norm running statistics. The module must live on an autodiff
/// device (`device.autodiff()`); on a plain device nothing requires gradients.
pub fn trainable_params<M: Module>(module: &M) -> usize {
    struct Counter(usize);
    impl ModuleVisitor for Counter {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.val().is_require_grad() {
                self.0 += param.lazy_shape().num_elements();
            }
        }
    }
    let mut counter = Counter(0);
    module.visit(&mut counter);
    counter.0
}

/// Any model of the zoo, behind one forward.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Classifier {
    /// MobileNetV1 or plain-convolution twin.
    MobileNetV1(MobileNetV1),
    /// MobileNetV2.
    MobileNetV2(MobileNetV2),
    /// ShuffleNet v1.
    ShuffleNetV1(ShuffleNetV1),
    /// ShuffleNet v2.
    ShuffleNetV2(ShuffleNetV2),
    /// ResNet-50.
    ResNet(ResNet),
}

impl Classifier {
    /// Maps `[batch, 3, h, w]` images to `[batch, classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Classifier::MobileNetV1(m) => m.forward(x),
            Classifier::MobileNetV2(m) => m.forward(x),
            Classifier::ShuffleNetV1(m) => m.forward(x),
            Classifier::ShuffleNetV2(m) => m.forward(x),
            Classifier::ResNet(m) => m.forward(x),
        }
    }
}

#[cfg(test)]
mod tests;
