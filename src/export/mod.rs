//! ONNX export: the model's graph written from the burn modules themselves, batch norm
//! folded into the convolutions, with the preprocessing and the decision rule recorded so
//! that another runtime reproduces `dermclass predict`.
//!
//! The file has one input, `image` (`N x 3 x H x W` float, the resized RGB pixels after
//! Shades-of-Gray and the normalisation, exactly what the network saw in training) and two
//! outputs, `logits` and `probabilities` (softmax after the model's logit adjustment).
//! `metadata_props` carry the class names, input size, normalisation and preprocessing.

pub mod eval;
pub mod graph;
pub(crate) mod proto;
pub mod quantize;
pub mod web;

use burn::prelude::*;
use prost::Message;
use thiserror::Error;

use crate::train::Checkpoint;

pub use graph::{Attr, Dim, GraphBuilder};
use proto::{IR_VERSION, ModelProto, OperatorSetIdProto, StringStringEntryProto};

/// The ONNX operator set the files declare.
pub const OPSET: i64 = 17;

/// A module that can write itself into an ONNX graph.
pub trait ToOnnx {
    /// Appends this module's nodes, reading value `x`, and returns its output's name.
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String;
}

/// The values of a tensor as f32 (any stored element type).
pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().iter::<f32>().collect()
}

/// Errors of an export.
#[derive(Debug, Error)]
pub enum ExportError {
    /// The description does not fit the model.
    #[error("cannot export: {0}")]
    Invalid(String),
}

/// What the file records besides the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportInfo {
    /// Canonical architecture name.
    pub arch: String,
    /// Class names, in output order.
    pub classes: Vec<String>,
    /// Input width in pixels.
    pub width: usize,
    /// Input height in pixels.
    pub height: usize,
    /// Per-channel `(scale, offset)`: `input = pixel (0..=255) * scale + offset`.
    pub normalization: ([f32; 3], [f32; 3]),
    /// Shades-of-Gray colour constancy exponent applied before normalising, if any.
    pub shades_of_gray: Option<f32>,
    /// Added to the logits before the softmax of `probabilities` (empty: none).
    pub logit_offsets: Vec<f32>,
    /// Temperature scaling: the adjusted logits are divided by it before the softmax.
    pub temperature: f32,
    /// Further `key = value` pairs (model card numbers, training recipe).
    pub extra: Vec<(String, String)>,
}

impl ExportInfo {
    /// The description of a trained model: its preprocessing, decision rule and the run's
    /// validation figures.
    pub fn for_checkpoint(checkpoint: &Checkpoint) -> Self {
        let state = &checkpoint.state;
        let config = &state.config;
        let mut extra = vec![
            ("epochs".to_string(), state.epochs_done.to_string()),
            ("seed".to_string(), config.seed.to_string()),
            (
                "logit_adjustment_tau".to_string(),
                format!("{:?}", state.adjustment.tau),
            ),
        ];
        if state.best_epoch > 0 {
            extra.push((
                "validation_balanced_accuracy".to_string(),
                format!("{:.4}", state.best_balanced_accuracy),
            ));
            extra.push(("validation_epoch".to_string(), state.best_epoch.to_string()));
        }
        Self {
            arch: state.arch.clone(),
            classes: state.classes.clone(),
            width: config.width,
            height: config.height,
            normalization: config.normalization.affine(),
            shades_of_gray: config.shades_of_gray,
            logit_offsets: state.adjustment.logit_offsets(),
            temperature: state.adjustment.temperature as f32,
            extra,
        }
    }

    fn check(&self) -> Result<(), ExportError> {
        if self.classes.len() < 2 {
            return Err(ExportError::Invalid(format!(
                "a classifier needs at least 2 classes, got {}",
                self.classes.len()
            )));
        }
        if !self.logit_offsets.is_empty() && self.logit_offsets.len() != self.classes.len() {
            return Err(ExportError::Invalid(format!(
                "{} logit offsets for {} classes",
                self.logit_offsets.len(),
                self.classes.len()
            )));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(ExportError::Invalid(format!(
                "the temperature must be positive, got {}",
                self.temperature
            )));
        }
        Ok(())
    }

    /// The `metadata_props` entries.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let join = |v: &[f32]| {
            v.iter()
                .map(|x| format!("{x:?}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let (scale, offset) = self.normalization;
        let mut props = vec![
            ("arch".to_string(), self.arch.clone()),
            ("classes".to_string(), self.classes.join(",")),
            ("input_width".to_string(), self.width.to_string()),
            ("input_height".to_string(), self.height.to_string()),
            ("input_layout".to_string(), "NCHW RGB float32".to_string()),
            ("pixel_scale".to_string(), join(&scale)),
            ("pixel_offset".to_string(), join(&offset)),
            (
                "shades_of_gray".to_string(),
                self.shades_of_gray
                    .map_or("none".to_string(), |p| format!("{p:?}")),
            ),
            (
                "preprocessing".to_string(),
                preprocessing_text(self.width, self.height, self.shades_of_gray),
            ),
            ("logit_offsets".to_string(), join(&self.logit_offsets)),
            ("temperature".to_string(), format!("{:?}", self.temperature)),
        ];
        props.extend(self.extra.iter().cloned());
        props
    }
}

fn preprocessing_text(width: usize, height: usize, shades_of_gray: Option<f32>) -> String {
    let sog = match shades_of_gray {
        Some(p) => format!(
            "multiply each channel by mean_all/mean_c where mean_c = (mean of x^{p:?})^(1/{p:?}) \
             over the image's pixels (Shades of Gray), clamp to 0..255; "
        ),
        None => String::new(),
    };
    format!(
        "decode to RGB 0..255; resize to {width}x{height} (bilinear); {sog}\
         input = pixel * pixel_scale + pixel_offset per channel; NCHW"
    )
}

/// Writes `model` as an ONNX model (opset [`OPSET`], dynamic batch) and returns its bytes.
pub fn to_onnx(model: &impl ToOnnx, info: &ExportInfo) -> Result<Vec<u8>, ExportError> {
    info.check()?;
    Ok(encode(fp32_graph(model, info), info, Vec::new()))
}

/// As [`to_onnx`], quantized to int8 in QDQ form with activation ranges measured on the
/// `calibration` batches (normalised like the model's input).
pub fn to_onnx_int8(
    model: &impl ToOnnx,
    info: &ExportInfo,
    calibration: impl IntoIterator<Item = Tensor<4>>,
) -> Result<Vec<u8>, ExportError> {
    info.check()?;
    let graph = fp32_graph(model, info);
    let mut ranges = eval::Ranges::new();
    let mut images = 0;
    for batch in calibration {
        images += batch.dims()[0];
        eval::run(&graph, batch, &mut ranges)?;
    }
    if images == 0 {
        return Err(ExportError::Invalid("no calibration images".into()));
    }
    let note = format!(
        "int8 QDQ: weights symmetric per output channel, biases int32, activations uint8 \
         with min/max ranges from {images} calibration images"
    );
    let graph = quantize::quantize(&graph, &ranges)?;
    Ok(encode(
        graph,
        info,
        vec![("quantization".to_string(), note)],
    ))
}

/// Declares the input `image` (`N x 3 x height x width`) in `g`, emits `model` and names
/// its output `logits`; returns that name.
fn emit_network(g: &mut GraphBuilder, model: &impl ToOnnx, height: Dim, width: Dim) -> String {
    let image = g.input("image", &[Dim::Named("N"), Dim::Fixed(3), height, width]);
    let raw_logits = model.emit(g, &image);
    let logits = "logits".to_string();
    g.node_named(
        "Identity",
        &[&raw_logits],
        std::slice::from_ref(&logits),
        &[],
    );
    logits
}

/// The network alone, batch norm folded: input `image` (`N x 3 x H x W`), output
/// `logits`. What the inference plan compiles.
pub fn network_graph(model: &impl ToOnnx) -> proto::GraphProto {
    let mut g = GraphBuilder::default();
    emit_network(&mut g, model, Dim::Named("H"), Dim::Named("W"));
    g.output("logits", &[Dim::Named("N"), Dim::Named("classes")]);
    g.finish("network")
}

fn fp32_graph(model: &impl ToOnnx, info: &ExportInfo) -> proto::GraphProto {
    let mut g = GraphBuilder::default();
    let batch = Dim::Named("N");
    let (height, width) = (Dim::Fixed(info.height), Dim::Fixed(info.width));
    let logits = emit_network(&mut g, model, height, width);
    let classes = Dim::Fixed(info.classes.len());
    let adjusted = if info.logit_offsets.is_empty() {
        logits.clone()
    } else {
        let offsets = g.weight(
            "logit_offsets",
            &[info.logit_offsets.len()],
            &info.logit_offsets,
        );
        g.add(&logits, &offsets)
    };
    let adjusted = if info.temperature == 1.0 {
        adjusted
    } else {
        let inverse = g.weight("inverse_temperature", &[], &[1.0 / info.temperature]);
        g.node("Mul", &[&adjusted, &inverse], &[])
    };
    g.node_named(
        "Softmax",
        &[&adjusted],
        &["probabilities".to_string()],
        &[("axis", Attr::Int(1))],
    );
    g.output("logits", &[batch, classes]);
    g.output("probabilities", &[batch, classes]);
    g.finish(&info.arch)
}

fn encode(graph: proto::GraphProto, info: &ExportInfo, extra: Vec<(String, String)>) -> Vec<u8> {
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "dermclass".to_string(),
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        doc_string: format!(
            "{} skin-lesion classifier exported by dermclass; not a medical device",
            info.arch
        ),
        graph: Some(graph),
        metadata_props: info
            .metadata()
            .into_iter()
            .chain(extra)
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
    };
    model.encode_to_vec()
}

#[cfg(test)]
mod tests;
