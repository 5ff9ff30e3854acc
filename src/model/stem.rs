//! The stem shared by ShuffleNet v1/v2 and ResNet: a strided convolution (BN, ReLU)
//! followed by a 3x3 stride-2 max pool.

use burn::prelude::*;

use super::ModelError;
use super::blocks::{ConvBn, ConvBnSpec};
use super::cost::CostTable;
use crate::export::{GraphBuilder, ToOnnx};
use crate::fast_ops::{Window, pool2d};

/// Specification of a convolution + max-pool stem.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StemSpec {
    /// The strided convolution.
    pub conv: ConvBnSpec,
}

impl StemSpec {
    /// Builds the module.
    pub fn init(&self, device: &Device) -> Stem {
        Stem {
            conv: self.conv.init(device),
        }
    }

    /// Counts the convolution and the pool.
    pub fn count(&self, table: &mut CostTable) -> Result<(), ModelError> {
        table.scope("stem", |t| {
            self.conv.count(t, "0")?;
            t.pool("maxpool", "maxpool", 3, 2, 1)
        })
    }
}

/// Strided convolution, batch norm, ReLU, 3x3/2 max pool.
#[derive(Module, Debug)]
pub struct Stem {
    conv: ConvBn,
}

impl Stem {
    /// Runs the stem.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        pool2d(
            self.conv.forward(x),
            Window::three_by_three_stride_two(true),
        )
    }
}

impl ToOnnx for Stem {
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let y = self.conv.emit(g, x);
        g.pool("MaxPool", &y, 3, 2, 1)
    }
}
