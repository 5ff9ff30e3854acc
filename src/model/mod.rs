//! The mobile model zoo: one file per network family, shared blocks in [`blocks`], exact
//! cost accounting in [`cost`], and a registry that builds any model from a name such as
//! `mobilenet_v2:1.0` or `shufflenet_v1:g3`.

pub mod blocks;
pub mod cost;
pub mod registry;
mod stem;
pub mod torchvision;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use thiserror::Error;

pub use cost::{CostTable, FeatureShape, LayerCost};
pub use registry::{Arch, Family, FamilyInfo, HeadOptions, Network};

/// Smallest input side every model accepts.
pub const MIN_INPUT: usize = 32;

/// Errors from parsing an architecture name or building a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The architecture family is not registered.
    #[error(
        "unknown architecture `{name}`; known families: {known} (`dermclass models` lists their options)"
    )]
    UnknownArch {
        /// The name as given.
        name: String,
        /// The registered family names.
        known: String,
    },
    /// An option (alpha, groups, scale, class count) is out of range.
    #[error("{0}")]
    BadOption(String),
    /// The input is too small for the network.
    #[error("input too small: {0}")]
    InputTooSmall(String),
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
        let dropout = arch.family().dropout();
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

    fn head(&self) -> HeadOptions {
        HeadOptions {
            classes: self.classes,
            dropout: self.dropout,
        }
    }

    /// Builds the burn module with freshly initialised weights on `device`.
    pub fn build(&self, device: &Device) -> Result<Classifier, ModelError> {
        self.arch.network().build(self.head(), device)
    }

    /// Counts every layer for one `height` x `width` RGB input.
    pub fn cost(&self, height: usize, width: usize) -> Result<CostTable, ModelError> {
        if height < MIN_INPUT || width < MIN_INPUT {
            return Err(ModelError::InputTooSmall(format!(
                "{width}x{height} (width x height); every side must be at least {MIN_INPUT}"
            )));
        }
        let mut table = CostTable::new(3, height, width);
        self.arch.network().count(self.head(), &mut table)?;
        Ok(table)
    }
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

/// The registry: each line names a family's file, the burn module it builds (a variant of
/// [`Classifier`], named as in saved checkpoints, so keep names and order) and the
/// [`Family`] entries it registers, in listing order.
macro_rules! registry {
    ($($file:ident :: $module:ident => [$($family:expr),+ $(,)?]),+ $(,)?) => {
        $(pub mod $file;)+

        /// Any model of the zoo, behind one forward.
        #[derive(Module, Debug)]
        #[allow(clippy::large_enum_variant)]
        pub enum Classifier {
            $(
                #[doc = concat!("A network of `model::", stringify!($file), "`.")]
                $module($file::$module),
            )+
        }

        impl Classifier {
            /// Maps `[batch, 3, h, w]` images to `[batch, classes]` logits.
            pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
                self.head().forward(self.features(x))
            }

            /// The last convolutional stage's `[batch, channels, h', w']` output: what the
            /// head pools, and the map Grad-CAM weighs.
            pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
                match self {
                    $(Classifier::$module(m) => m.features(x),)+
                }
            }

            /// The classifier head: global average pool, dropout, linear.
            pub fn head(&self) -> &blocks::Head {
                match self {
                    $(Classifier::$module(m) => m.head(),)+
                }
            }
        }

        impl crate::export::ToOnnx for Classifier {
            fn emit(&self, g: &mut crate::export::GraphBuilder, x: &str) -> String {
                match self {
                    $(Classifier::$module(m) => m.emit(g, x),)+
                }
            }
        }

        /// Every registered family, in listing order.
        pub static FAMILIES: &[&dyn Family] = &[$($(&$family,)+)+];
    };
}

registry! {
    mobilenet_v1::MobileNetV1 => [mobilenet_v1::PlainV1Family, mobilenet_v1::MobileNetV1Family],
    mobilenet_v2::MobileNetV2 => [mobilenet_v2::MobileNetV2Family],
    shufflenet_v1::ShuffleNetV1 => [shufflenet_v1::ShuffleNetV1Family],
    shufflenet_v2::ShuffleNetV2 => [shufflenet_v2::ShuffleNetV2Family],
    resnet::ResNet => [resnet::ResNet50Family],
    tiny_cnn::TinyCnn => [tiny_cnn::TinyCnnFamily],
}

#[cfg(test)]
pub(crate) mod tests;
