//! Static int8 quantization in QDQ form, as onnxruntime's quantizer writes it: every
//! convolution and the classifier read int8 weights (symmetric, one scale per output
//! channel), int32 biases, and activations quantized to uint8 with ranges calibrated on
//! real images; `QuantizeLinear`/`DequantizeLinear` pairs mark each, so runtimes that fuse
//! them run integer kernels and the others still compute the same function.

use std::collections::HashMap;

use super::ExportError;
use super::eval::Ranges;
use super::proto::{AttributeProto, GraphProto, NodeProto, TensorProto, attribute_type, f32_bytes};

const UINT8: i32 = 2;
const INT8: i32 = 3;
const INT32: i32 = 6;

/// uint8 activation parameters for a range (which always includes 0, so that zero
/// padding is exact).
pub fn activation_params(low: f32, high: f32) -> (f32, u8) {
    let (low, high) = (low.min(0.0), high.max(0.0));
    let scale = if high > low {
        (high - low) / 255.0
    } else {
        1.0
    };
    let zero = (-low / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero)
}

/// Symmetric int8 values and scales of `weights` with one scale per slice along `axis`
/// (`channels` slices), for a row-major tensor whose `axis` is the first or the last.
pub fn quantize_per_channel(
    weights: &[f32],
    channels: usize,
    axis_is_last: bool,
) -> (Vec<i8>, Vec<f32>) {
    let index = |i: usize| {
        if axis_is_last {
            i % channels
        } else {
            i / (weights.len() / channels)
        }
    };
    let mut max = vec![0f32; channels];
    for (i, w) in weights.iter().enumerate() {
        let c = index(i);
        max[c] = max[c].max(w.abs());
    }
    let scales: Vec<f32> = max
        .iter()
        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let q = weights
        .iter()
        .enumerate()
        .map(|(i, w)| (w / scales[index(i)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

fn tensor(name: String, dims: Vec<i64>, data_type: i32, raw_data: Vec<u8>) -> TensorProto {
    TensorProto {
        dims,
        data_type,
        name,
        raw_data,
    }
}

fn node(op: &str, inputs: Vec<String>, output: String, axis: Option<i64>) -> NodeProto {
    NodeProto {
        input: inputs,
        output: vec![output.clone()],
        name: format!("{op}_{output}"),
        op_type: op.to_string(),
        attribute: axis
            .map(|a| AttributeProto {
                name: "axis".into(),
                r#type: attribute_type::INT,
                i: a,
                ..Default::default()
            })
            .into_iter()
            .collect(),
    }
}

/// The rewrite in progress.
struct Rewrite<'a> {
    ranges: &'a Ranges,
    init: HashMap<String, TensorProto>,
    nodes: Vec<NodeProto>,
    /// Activations already quantized: name -> (dequantized name, scale).
    activations: HashMap<String, (String, f32)>,
}

impl Rewrite<'_> {
    fn activation(&mut self, x: &str) -> Result<(String, f32), ExportError> {
        if let Some(done) = self.activations.get(x) {
            return Ok(done.clone());
        }
        let &(low, high) = self
            .ranges
            .get(x)
            .ok_or_else(|| ExportError::Invalid(format!("no calibrated range for {x}")))?;
        let (scale, zero) = activation_params(low, high);
        let (s, z) = (format!("{x}_scale"), format!("{x}_zero"));
        self.init
            .insert(s.clone(), tensor(s.clone(), vec![], 1, f32_bytes(&[scale])));
        self.init
            .insert(z.clone(), tensor(z.clone(), vec![], UINT8, vec![zero]));
        let (q, dq) = (format!("{x}_q"), format!("{x}_dq"));
        self.nodes.push(node(
            "QuantizeLinear",
            vec![x.into(), s.clone(), z.clone()],
            q.clone(),
            None,
        ));
        self.nodes
            .push(node("DequantizeLinear", vec![q, s, z], dq.clone(), None));
        self.activations.insert(x.to_string(), (dq.clone(), scale));
        Ok((dq, scale))
    }

    /// Quantizes a weight per output channel (axis 0 for Conv, 1 for Gemm) and its bias
    /// to int32 at scale `x_scale * w_scale`; returns the dequantized names.
    fn weight_and_bias(
        &mut self,
        w: &str,
        b: &str,
        x_scale: f32,
        axis: i64,
    ) -> Result<(String, String), ExportError> {
        let weight = self
            .init
            .remove(w)
            .ok_or_else(|| ExportError::Invalid(format!("weight {w} is not a constant")))?;
        let bias = self
            .init
            .remove(b)
            .ok_or_else(|| ExportError::Invalid(format!("bias {b} is not a constant")))?;
        let channels = weight.dims[axis as usize] as usize;
        let (q, scales) = quantize_per_channel(&weight.f32_values(), channels, axis == 1);
        let (wq, ws, wz) = (format!("{w}_q"), format!("{w}_scale"), format!("{w}_zero"));
        self.init.insert(
            wq.clone(),
            tensor(
                wq.clone(),
                weight.dims.clone(),
                INT8,
                q.iter().map(|&v| v as u8).collect(),
            ),
        );
        self.init.insert(
            ws.clone(),
            tensor(ws.clone(), vec![channels as i64], 1, f32_bytes(&scales)),
        );
        self.init.insert(
            wz.clone(),
            tensor(wz.clone(), vec![channels as i64], INT8, vec![0; channels]),
        );
        let wdq = format!("{w}_dq");
        self.nodes.push(node(
            "DequantizeLinear",
            vec![wq, ws, wz],
            wdq.clone(),
            Some(axis),
        ));
        let bias_scales: Vec<f32> = scales.iter().map(|s| s * x_scale).collect();
        let bias_q: Vec<u8> = bias
            .f32_values()
            .iter()
            .zip(&bias_scales)
            .flat_map(|(b, s)| {
                ((b / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32).to_le_bytes()
            })
            .collect();
        let (bq, bs) = (format!("{b}_q"), format!("{b}_scale"));
        self.init.insert(
            bq.clone(),
            tensor(bq.clone(), vec![channels as i64], INT32, bias_q),
        );
        self.init.insert(
            bs.clone(),
            tensor(
                bs.clone(),
                vec![channels as i64],
                1,
                f32_bytes(&bias_scales),
            ),
        );
        let bdq = format!("{b}_dq");
        self.nodes
            .push(node("DequantizeLinear", vec![bq, bs], bdq.clone(), Some(0)));
        Ok((wdq, bdq))
    }
}

/// The QDQ int8 version of an fp32 `graph` whose values took `ranges` on calibration data.
pub fn quantize(graph: &GraphProto, ranges: &Ranges) -> Result<GraphProto, ExportError> {
    let mut rewrite = Rewrite {
        ranges,
        init: graph
            .initializer
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect(),
        nodes: Vec::new(),
        activations: HashMap::new(),
    };
    for original in &graph.node {
        let axis = match original.op_type.as_str() {
            "Conv" => 0,
            "Gemm" => 1,
            _ => {
                rewrite.nodes.push(original.clone());
                continue;
            }
        };
        let (x, x_scale) = rewrite.activation(&original.input[0])?;
        let (w, b) =
            rewrite.weight_and_bias(&original.input[1], &original.input[2], x_scale, axis)?;
        let mut quantized = original.clone();
        quantized.input = vec![x, w, b];
        rewrite.nodes.push(quantized);
    }
    // Initializers in a stable order: the original order, then the new ones by name.
    let mut initializer: Vec<TensorProto> = graph
        .initializer
        .iter()
        .filter_map(|t| rewrite.init.remove(&t.name))
        .collect();
    let mut added: Vec<TensorProto> = rewrite.init.into_values().collect();
    added.sort_by(|a, b| a.name.cmp(&b.name));
    initializer.extend(added);
    Ok(GraphProto {
        node: rewrite.nodes,
        name: format!("{} (int8 QDQ)", graph.name),
        initializer,
        input: graph.input.clone(),
        output: graph.output.clone(),
    })
}
