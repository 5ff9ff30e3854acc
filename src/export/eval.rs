//! A reference interpreter for the graphs we write, on burn: it runs a `GraphProto` of the
//! operators [`super::GraphBuilder`] emits, so that export can measure the range of every
//! value on calibration images (for int8) without another runtime. Values are kept as
//! `[N, C, H, W]` tensors (2-D values as `[N, C, 1, 1]`) and dropped after their last use.

use std::collections::HashMap;

use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};

use super::ExportError;
use super::proto::{FLOAT, GraphProto, INT64, NodeProto, TensorProto};

/// The smallest and largest value each named value took.
pub type Ranges = HashMap<String, (f32, f32)>;

/// Integer-list attribute `name` of `node` (empty when absent).
pub(crate) fn attr_ints(node: &NodeProto, name: &str) -> Vec<usize> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.iter().map(|&i| i as usize).collect())
        .unwrap_or_default()
}

/// Integer attribute `name` of `node`, or `default`.
pub(crate) fn attr_int(node: &NodeProto, name: &str, default: i64) -> i64 {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(default, |a| a.i)
}

/// Runs `graph` on `input` and widens `ranges` with every value computed. Returns the
/// graph's outputs in order.
pub fn run(
    graph: &GraphProto,
    input: Tensor<4>,
    ranges: &mut Ranges,
) -> Result<Vec<Tensor<4>>, ExportError> {
    let device = input.device();
    let init: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut last_use: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for name in &node.input {
            last_use.insert(name, i);
        }
    }
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let mut values: HashMap<String, Tensor<4>> = HashMap::new();
    widen(ranges, &graph.input[0].name, &input);
    values.insert(graph.input[0].name.clone(), input);
    for (i, node) in graph.node.iter().enumerate() {
        let results = step(node, &values, &init, &device)?;
        for (name, value) in node.output.iter().zip(results) {
            widen(ranges, name, &value);
            values.insert(name.clone(), value);
        }
        for name in &node.input {
            if last_use.get(name.as_str()) == Some(&i) && !outputs.contains(&name.as_str()) {
                values.remove(name);
            }
        }
    }
    outputs
        .iter()
        .map(|name| {
            values
                .remove(*name)
                .ok_or_else(|| ExportError::Invalid(format!("output {name} was never computed")))
        })
        .collect()
}

fn widen(ranges: &mut Ranges, name: &str, value: &Tensor<4>) {
    let low: f32 = value.clone().min().into_scalar::<f32>();
    let high: f32 = value.clone().max().into_scalar::<f32>();
    let entry = ranges.entry(name.to_string()).or_insert((low, high));
    entry.0 = entry.0.min(low);
    entry.1 = entry.1.max(high);
}

fn step(
    node: &NodeProto,
    values: &HashMap<String, Tensor<4>>,
    init: &HashMap<&str, &TensorProto>,
    device: &Device,
) -> Result<Vec<Tensor<4>>, ExportError> {
    let value = |k: usize| -> Result<Tensor<4>, ExportError> {
        let name = &node.input[k];
        values.get(name).cloned().ok_or_else(|| {
            ExportError::Invalid(format!(
                "{}: input {name} is not a computed value",
                node.name
            ))
        })
    };
    let constant = |k: usize| -> Result<&TensorProto, ExportError> {
        let name = &node.input[k];
        init.get(name.as_str()).copied().ok_or_else(|| {
            ExportError::Invalid(format!("{}: input {name} is not a constant", node.name))
        })
    };
    let float_tensor = |t: &TensorProto| -> Tensor<1> {
        let v = t.f32_values();
        let n = v.len();
        Tensor::<1>::from_data(TensorData::new(v, [n]), device)
    };
    let out = match node.op_type.as_str() {
        "Conv" => {
            let w = constant(1)?;
            debug_assert_eq!(w.data_type, FLOAT);
            let dims: [usize; 4] = w
                .dims
                .iter()
                .map(|&d| d as usize)
                .collect::<Vec<_>>()
                .try_into()
                .map_err(|_| ExportError::Invalid(format!("{}: weight is not 4-D", node.name)))?;
            let weight = Tensor::<4>::from_data(TensorData::new(w.f32_values(), dims), device);
            let bias = float_tensor(constant(2)?);
            let s = attr_ints(node, "strides");
            let p = attr_ints(node, "pads");
            let d = attr_ints(node, "dilations");
            let groups = attr_int(node, "group", 1) as usize;
            let options = ConvOptions::new_with_padding(
                [s[0], s[1]],
                [(p[0], p[2]), (p[1], p[3])],
                [d[0], d[1]],
                groups,
            );
            conv2d(value(0)?, weight, Some(bias), options)
        }
        "Relu" => relu(value(0)?),
        "Clip" => {
            let low = constant(1)?.f32_values()[0];
            let high = constant(2)?.f32_values()[0];
            value(0)?.clamp(low, high)
        }
        "Add" => match values.get(&node.input[1]) {
            Some(b) => value(0)?.add(b.clone()),
            None => {
                let b = float_tensor(constant(1)?);
                let n = b.dims()[0];
                value(0)?.add(b.reshape([1, n, 1, 1]))
            }
        },
        "Mul" => value(0)?.mul_scalar(constant(1)?.f32_values()[0]),
        "Concat" => {
            let parts = (0..node.input.len())
                .map(value)
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::cat(parts, 1)
        }
        "Gather" => {
            let order = constant(1)?.i64_values();
            let n = order.len();
            let indices = Tensor::<1, Int>::from_data(TensorData::new(order, [n]), device);
            value(0)?.select(1, indices)
        }
        "Split" => {
            debug_assert_eq!(constant(1)?.data_type, INT64);
            let sizes = constant(1)?.i64_values();
            let x = value(0)?;
            let mut start = 0;
            let mut parts = Vec::new();
            for size in sizes {
                parts.push(x.clone().narrow(1, start, size as usize));
                start += size as usize;
            }
            return Ok(parts);
        }
        "MaxPool" | "AveragePool" => {
            let k = attr_ints(node, "kernel_shape");
            let s = attr_ints(node, "strides");
            let p = attr_ints(node, "pads");
            if node.op_type == "MaxPool" {
                let options = MaxPoolOptions::new([k[0], k[1]])
                    .with_stride([s[0], s[1]])
                    .with_padding([p[0], p[1]]);
                max_pool2d(value(0)?, options)
            } else {
                let options = AvgPoolOptions::new([k[0], k[1]])
                    .with_stride([s[0], s[1]])
                    .with_padding([p[0], p[1]]);
                avg_pool2d(value(0)?, options)
            }
        }
        "GlobalAveragePool" => value(0)?.mean_dim(3).mean_dim(2),
        "Flatten" | "Identity" => value(0)?,
        "Gemm" => {
            let x = value(0)?;
            let [n, c, _, _] = x.dims();
            let w = constant(1)?;
            let k = w.dims[1] as usize;
            let weight = Tensor::<2>::from_data(TensorData::new(w.f32_values(), [c, k]), device);
            let bias = float_tensor(constant(2)?).reshape([1, k]);
            x.reshape([n, c])
                .matmul(weight)
                .add(bias)
                .reshape([n, k, 1, 1])
        }
        "Softmax" => softmax(value(0)?, 1),
        other => {
            return Err(ExportError::Invalid(format!(
                "the reference interpreter does not know `{other}`"
            )));
        }
    };
    Ok(vec![out])
}
