//! Exact cost accounting: per-layer output shape, trainable parameters and multiply-adds.
//!
//! Conventions follow the MobileNet/ShuffleNet papers and torchvision: a convolution costs
//! `Cin/groups * k*k * Cout * Hout * Wout` multiply-accumulates, a linear layer `in * out`;
//! batch norm, activations, pooling, additions and concatenations cost nothing. Parameters
//! are the trainable ones (conv and linear weights and biases, batch-norm scale and shift);
//! batch-norm running statistics are buffers, not parameters.

use serde::Serialize;

use super::ModelError;

/// Shape of one feature map, without the batch dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FeatureShape {
    /// Channels.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

/// One counted layer.
#[derive(Clone, Debug, Serialize)]
pub struct LayerCost {
    /// Dotted path of the layer inside the model, e.g. `features.3.depthwise`.
    pub name: String,
    /// What the layer is, e.g. `conv3x3/s2 g=32`, `batchnorm`, `linear`.
    pub kind: String,
    /// Output shape (for a linear layer: channels = outputs, height = width = 1).
    pub output: FeatureShape,
    /// Trainable parameters.
    pub params: usize,
    /// Multiply-accumulate operations for one image.
    pub madds: u64,
}

/// Output size of a convolution or pooling window along one axis (floor mode).
pub fn window_output(size: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    let padded = size + 2 * padding;
    (padded >= kernel).then(|| (padded - kernel) / stride + 1)
}

/// Running tally of a model's layers, walked in forward order while tracking the shape.
#[derive(Clone, Debug)]
pub struct CostTable {
    input: FeatureShape,
    shape: FeatureShape,
    layers: Vec<LayerCost>,
    prefix: Vec<String>,
}

impl CostTable {
    /// Starts a table for an RGB (or `channels`) input of the given size.
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        let input = FeatureShape {
            channels,
            height,
            width,
        };
        Self {
            input,
            shape: input,
            layers: Vec::new(),
            prefix: Vec::new(),
        }
    }

    /// The input shape the table started from.
    pub fn input(&self) -> FeatureShape {
        self.input
    }

    /// Shape after the last counted layer.
    pub fn shape(&self) -> FeatureShape {
        self.shape
    }

    /// Overrides the current shape (to start a parallel branch, or after a concatenation).
    pub fn set_shape(&mut self, shape: FeatureShape) {
        self.shape = shape;
    }

    /// All counted layers in forward order.
    pub fn layers(&self) -> &[LayerCost] {
        &self.layers
    }

    /// Total trainable parameters.
    pub fn params(&self) -> usize {
        self.layers.iter().map(|l| l.params).sum()
    }

    /// Total multiply-adds for one image.
    pub fn madds(&self) -> u64 {
        self.layers.iter().map(|l| l.madds).sum()
    }

    /// Runs `f` with `name` appended to the layer-name prefix.
    pub fn scope<T>(&mut self, name: impl Into<String>, f: impl FnOnce(&mut Self) -> T) -> T {
        self.prefix.push(name.into());
        let out = f(self);
        self.prefix.pop();
        out
    }

    fn push(&mut self, name: &str, kind: String, params: usize, madds: u64) {
        let mut full = self.prefix.join(".");
        if !full.is_empty() {
            full.push('.');
        }
        full.push_str(name);
        self.layers.push(LayerCost {
            name: full,
            kind,
            output: self.shape,
            params,
            madds,
        });
    }

    fn too_small(&self, name: &str) -> ModelError {
        ModelError::InputTooSmall(format!(
            "{}x{} (width x height) shrinks to nothing at layer `{}{}{name}`",
            self.input.width,
            self.input.height,
            self.prefix.join("."),
            if self.prefix.is_empty() { "" } else { "." },
        ))
    }

    /// Counts `items` in order under `scope.0`, `scope.1`, ... with `count`.
    pub fn count_each<T>(
        &mut self,
        scope: &str,
        items: &[T],
        count: impl Fn(&T, &mut Self, &str) -> Result<(), ModelError>,
    ) -> Result<(), ModelError> {
        self.scope(scope, |t| {
            items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| count(item, t, &i.to_string()))
        })
    }

    /// Counts a 2-D convolution with square kernel and symmetric padding.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        name: &str,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        groups: usize,
        bias: bool,
    ) -> Result<(), ModelError> {
        let cin = self.shape.channels;
        let height = window_output(self.shape.height, kernel, stride, padding);
        let width = window_output(self.shape.width, kernel, stride, padding);
        let (Some(height), Some(width)) = (height, width) else {
            return Err(self.too_small(name));
        };
        let weights = cin / groups * kernel * kernel * out_channels;
        let params = weights + if bias { out_channels } else { 0 };
        let madds = (weights * height * width) as u64;
        self.shape = FeatureShape {
            channels: out_channels,
            height,
            width,
        };
        let group_note = if groups > 1 {
            format!(" g={groups}")
        } else {
            String::new()
        };
        self.push(
            name,
            format!("conv{kernel}x{kernel}/s{stride}{group_note}"),
            params,
            madds,
        );
        Ok(())
    }

    /// Counts a batch norm over the current channels (scale and shift are trainable).
    pub fn batch_norm(&mut self, name: &str) {
        let c = self.shape.channels;
        self.push(name, "batchnorm".into(), 2 * c, 0);
    }

    /// Counts a max or average pooling window (no parameters, no multiply-adds).
    pub fn pool(
        &mut self,
        name: &str,
        kind: &str,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<(), ModelError> {
        let height = window_output(self.shape.height, kernel, stride, padding);
        let width = window_output(self.shape.width, kernel, stride, padding);
        let (Some(height), Some(width)) = (height, width) else {
            return Err(self.too_small(name));
        };
        self.shape.height = height;
        self.shape.width = width;
        self.push(name, format!("{kind}{kernel}x{kernel}/s{stride}"), 0, 0);
        Ok(())
    }

    /// Counts a global average pool down to 1x1.
    pub fn global_pool(&mut self, name: &str) {
        self.shape.height = 1;
        self.shape.width = 1;
        self.push(name, "global avgpool".into(), 0, 0);
    }

    /// Counts a fully connected layer from the current (flattened) channels.
    pub fn linear(&mut self, name: &str, outputs: usize, bias: bool) {
        let inputs = self.shape.channels * self.shape.height * self.shape.width;
        self.shape = FeatureShape {
            channels: outputs,
            height: 1,
            width: 1,
        };
        let params = inputs * outputs + if bias { outputs } else { 0 };
        self.push(name, "linear".into(), params, (inputs * outputs) as u64);
    }

    /// Records a concatenation along channels, giving the resulting channel count.
    pub fn concat(&mut self, name: &str, channels: usize) {
        self.shape.channels = channels;
        self.push(name, "concat".into(), 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_counts_follow_the_paper_formula() {
        let mut t = CostTable::new(32, 112, 112);
        t.conv("dw", 32, 3, 1, 1, 32, false).unwrap();
        assert_eq!(t.layers()[0].madds, 3 * 3 * 32 * 112 * 112);
        t.conv("pw", 64, 1, 1, 0, 1, false).unwrap();
        assert_eq!(t.layers()[1].madds, 32 * 64 * 112 * 112);
        assert_eq!(t.params(), 9 * 32 + 32 * 64);
        t.conv("s2", 8, 3, 2, 1, 1, true).unwrap();
        assert_eq!(t.shape().height, 56);
        assert_eq!(t.layers()[2].params, 64 * 9 * 8 + 8);
    }

    #[test]
    fn windows_that_do_not_fit_are_an_error() {
        let mut t = CostTable::new(3, 2, 2);
        let err = t.conv("c", 8, 7, 2, 0, 1, false).unwrap_err();
        assert!(err.to_string().contains("shrinks to nothing"), "{err}");
    }

    #[test]
    fn linear_flattens_the_current_shape() {
        let mut t = CostTable::new(10, 1, 1);
        t.linear("fc", 7, true);
        assert_eq!(t.params(), 77);
        assert_eq!(t.madds(), 70);
    }
}
