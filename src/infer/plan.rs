//! An inference plan compiled from the ONNX graph a model writes of itself (batch norm
//! already folded into each convolution's weight and bias): the nodes become steps over
//! plain `f32` buffers, each convolution absorbs the activation, residual add and second
//! activation that follow it, and every value gets a buffer slot reused once the value is
//! dead, so a [`Workspace`] allocates nothing after its first run.

use std::collections::HashMap;

use dermclass_kernels::bn::Act;
use dermclass_kernels::fused::{self, ConvShape, ConvWeights, Epilogue, PoolShape};

use super::InferError;
use crate::export::eval::{attr_int, attr_ints};
use crate::export::proto::{GraphProto, NodeProto, TensorProto};

/// One operation of the plan.
#[derive(Clone, Debug)]
enum Op {
    /// Convolution with its fused epilogue; a residual, when fused, is the step's second
    /// input.
    Conv {
        weight: ConvWeights,
        bias: Vec<f32>,
        c_out: usize,
        kernel: (usize, usize),
        stride: usize,
        pad: usize,
        groups: usize,
        act: Act,
        residual: bool,
        post: Act,
    },
    /// Element-wise clamp (ReLU, ReLU6, Clip) not fused into a convolution.
    Clamp(f32, f32),
    /// Element-wise sum of two values.
    Add,
    /// Adds a constant per channel (logit offsets).
    AddChannel(Vec<f32>),
    /// Multiplies by a constant.
    Scale(f32),
    /// Channel concatenation.
    Concat,
    /// Output channel `i` is input channel `order[i]`.
    Gather(Vec<usize>),
    /// Splits the channels into runs of these sizes (one output each).
    Split(Vec<usize>),
    /// Max (true) or average pooling.
    Pool {
        max: bool,
        kernel: usize,
        stride: usize,
        pad: usize,
    },
    /// Mean of each channel plane.
    GlobalAvgPool,
    /// `[n, c]` to `[n, k]` with a `[c, k]` weight.
    Linear { weight: Vec<f32>, bias: Vec<f32> },
    /// Softmax over the channels.
    Softmax,
    /// A copy (Identity, Flatten).
    Copy,
}

/// A step while compiling: its operation and value names.
#[derive(Clone, Debug)]
struct NamedStep {
    op: Op,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// A step of the compiled plan: value names replaced by buffer slots.
#[derive(Clone, Debug)]
struct Step {
    op: Op,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
}

/// A compiled model: steps over numbered buffer slots.
#[derive(Clone, Debug)]
pub struct Plan {
    steps: Vec<Step>,
    input: usize,
    outputs: Vec<(String, usize)>,
    slots: usize,
}

/// The buffers one caller (thread) runs a plan with, kept between runs.
#[derive(Debug, Default)]
pub struct Workspace {
    buffers: Vec<Vec<f32>>,
    shapes: Vec<[usize; 4]>,
}

/// One output of a run: name, `[n, c, h, w]` shape (2-D outputs have `h = w = 1`), values.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// The graph output's name.
    pub name: String,
    /// Its shape.
    pub shape: [usize; 4],
    /// Its values, row-major.
    pub values: Vec<f32>,
}

/// The activation a clamp to `[low, high]` computes, if it is one of the fusable three.
fn clamp_act(low: f32, high: f32) -> Option<Act> {
    match (low, high) {
        (0.0, 6.0) => Some(Act::Relu6),
        (0.0, f32::INFINITY) => Some(Act::Relu),
        _ => None,
    }
}

/// Translates one node into a step.
fn translate(
    node: &NodeProto,
    init: &HashMap<&str, &TensorProto>,
) -> Result<NamedStep, InferError> {
    let unsupported =
        |why: &str| InferError::Unsupported(format!("{} ({}): {why}", node.name, node.op_type));
    let constant = |k: usize| -> Result<&TensorProto, InferError> {
        node.input
            .get(k)
            .and_then(|name| init.get(name.as_str()).copied())
            .ok_or_else(|| unsupported(&format!("input {k} is not a constant")))
    };
    let mut inputs = vec![node.input[0].clone()];
    let op = match node.op_type.as_str() {
        "Conv" => {
            let w = constant(1)?;
            let dims: Vec<usize> = w.dims.iter().map(|&d| d as usize).collect();
            let (s, p, d) = (
                attr_ints(node, "strides"),
                attr_ints(node, "pads"),
                attr_ints(node, "dilations"),
            );
            if dims.len() != 4 || d.iter().any(|&d| d != 1) {
                return Err(unsupported("only 2-D undilated convolutions"));
            }
            if s.len() != 2 || s[0] != s[1] || p.len() != 4 || p.iter().any(|&v| v != p[0]) {
                return Err(unsupported("only equal strides and symmetric padding"));
            }
            let bias = match node.input.get(2) {
                Some(_) => constant(2)?.f32_values(),
                None => vec![0.0; dims[0]],
            };
            let groups = attr_int(node, "group", 1) as usize;
            Op::Conv {
                weight: ConvWeights::new(w.f32_values(), dims[0], groups),
                bias,
                c_out: dims[0],
                kernel: (dims[2], dims[3]),
                stride: s[0],
                pad: p[0],
                groups,
                act: Act::Identity,
                residual: false,
                post: Act::Identity,
            }
        }
        "Relu" => Op::Clamp(0.0, f32::INFINITY),
        "Clip" => Op::Clamp(constant(1)?.f32_values()[0], constant(2)?.f32_values()[0]),
        "Add" => match init.get(node.input[1].as_str()) {
            Some(t) => Op::AddChannel(t.f32_values()),
            None => {
                inputs.push(node.input[1].clone());
                Op::Add
            }
        },
        "Mul" => Op::Scale(constant(1)?.f32_values()[0]),
        "Concat" => {
            inputs = node.input.clone();
            Op::Concat
        }
        "Gather" => Op::Gather(
            constant(1)?
                .i64_values()
                .iter()
                .map(|&i| i as usize)
                .collect(),
        ),
        "Split" => Op::Split(
            constant(1)?
                .i64_values()
                .iter()
                .map(|&i| i as usize)
                .collect(),
        ),
        "MaxPool" | "AveragePool" => {
            let (k, s, p) = (
                attr_ints(node, "kernel_shape"),
                attr_ints(node, "strides"),
                attr_ints(node, "pads"),
            );
            if k.len() != 2 || k[0] != k[1] || s[0] != s[1] || p.iter().any(|&v| v != p[0]) {
                return Err(unsupported("only square windows with symmetric padding"));
            }
            Op::Pool {
                max: node.op_type == "MaxPool",
                kernel: k[0],
                stride: s[0],
                pad: p[0],
            }
        }
        "GlobalAveragePool" => Op::GlobalAvgPool,
        "Flatten" | "Identity" => Op::Copy,
        "Gemm" => Op::Linear {
            weight: constant(1)?.f32_values(),
            bias: constant(2)?.f32_values(),
        },
        "Softmax" => Op::Softmax,
        _ => return Err(unsupported("operator not in the plan's set")),
    };
    Ok(NamedStep {
        op,
        inputs,
        outputs: node.output.clone(),
    })
}

/// Folds the element-wise steps after each convolution into its epilogue: an activation,
/// then a residual add whose other operand is ready before the convolution runs, then a
/// second activation. A value is absorbed only when its one reader is that next step.
fn fuse(steps: Vec<NamedStep>, graph_outputs: &[String]) -> Vec<NamedStep> {
    let mut steps: Vec<Option<NamedStep>> = steps.into_iter().map(Some).collect();
    for i in 0..steps.len() {
        while absorb_next(&mut steps, i, graph_outputs) {}
    }
    steps.into_iter().flatten().collect()
}

/// What a convolution's epilogue takes over from the step that reads it.
enum Absorbed {
    Act(Act),
    Residual(String),
    Post(Act),
}

/// Absorbs the one reader of convolution `i`'s output into its epilogue, if it can; returns
/// whether it did.
fn absorb_next(steps: &mut [Option<NamedStep>], i: usize, graph_outputs: &[String]) -> bool {
    let Some(NamedStep {
        op:
            Op::Conv {
                act,
                residual,
                post,
                ..
            },
        outputs,
        ..
    }) = &steps[i]
    else {
        return false;
    };
    let out = &outputs[0];
    let mut readers =
        (0..steps.len()).filter(|&j| steps[j].as_ref().is_some_and(|s| s.inputs.contains(out)));
    let (Some(j), None) = (readers.next(), readers.next()) else {
        return false;
    };
    if graph_outputs.contains(out) {
        return false;
    }
    let reader = steps[j].as_ref().expect("a live reader");
    let absorbed = match &reader.op {
        Op::Clamp(low, high) => match clamp_act(*low, *high) {
            Some(a) if !residual && *act == Act::Identity => Some(Absorbed::Act(a)),
            Some(a) if *residual && *post == Act::Identity => Some(Absorbed::Post(a)),
            _ => None,
        },
        Op::Add if !residual => {
            let other = if reader.inputs[0] == *out {
                &reader.inputs[1]
            } else {
                &reader.inputs[0]
            };
            let producer = steps.iter().position(|s| {
                s.as_ref()
                    .is_some_and(|s| s.outputs.iter().any(|o| o == other))
            });
            (other != out && producer.is_none_or(|p| p < i))
                .then(|| Absorbed::Residual(other.clone()))
        }
        _ => None,
    };
    let Some(absorbed) = absorbed else {
        return false;
    };
    let reader_out = reader.outputs[0].clone();
    steps[j] = None;
    let conv = steps[i].as_mut().expect("the convolution");
    if let Op::Conv {
        act,
        residual,
        post,
        ..
    } = &mut conv.op
    {
        match absorbed {
            Absorbed::Act(a) => *act = a,
            Absorbed::Post(a) => *post = a,
            Absorbed::Residual(other) => {
                *residual = true;
                conv.inputs.push(other);
            }
        }
    }
    conv.outputs[0] = reader_out;
    true
}

impl Plan {
    /// Compiles `graph` (one input) for inference.
    pub fn compile(graph: &GraphProto) -> Result<Plan, InferError> {
        let init: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let input = graph
            .input
            .first()
            .ok_or_else(|| InferError::Unsupported("the graph has no input".into()))?
            .name
            .clone();
        let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
        let named = graph
            .node
            .iter()
            .map(|n| translate(n, &init))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(assign_slots(fuse(named, &outputs), &input, &outputs))
    }

    /// Number of steps (convolutions count once with their epilogues).
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether the plan has no step.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs the plan on `input` (`[n, c, h, w]`, row-major) and returns the graph outputs.
    pub fn run(
        &self,
        ws: &mut Workspace,
        input: &[f32],
        shape: [usize; 4],
    ) -> Result<Vec<Output>, InferError> {
        self.run_with(ws, input, shape, |_, _| {})
    }

    /// [`Plan::run`], reporting each step's operation and wall time to `timer` (profiles).
    pub fn run_with(
        &self,
        ws: &mut Workspace,
        input: &[f32],
        shape: [usize; 4],
        mut timer: impl FnMut(&'static str, std::time::Duration),
    ) -> Result<Vec<Output>, InferError> {
        if input.len() != numel(shape) {
            return Err(InferError::Shape(format!(
                "input has {} values, shape {shape:?} needs {}",
                input.len(),
                numel(shape)
            )));
        }
        ws.buffers
            .resize_with(self.slots.max(ws.buffers.len()), Vec::new);
        ws.shapes.resize(self.slots.max(ws.shapes.len()), [0; 4]);
        grow(&mut ws.buffers[self.input], input.len()).copy_from_slice(input);
        ws.shapes[self.input] = shape;
        for step in &self.steps {
            let started = std::time::Instant::now();
            run_step(step, ws)?;
            timer(step.op.label(), started.elapsed());
        }
        Ok(self
            .outputs
            .iter()
            .map(|&(ref name, slot)| Output {
                name: name.clone(),
                shape: ws.shapes[slot],
                values: ws.buffers[slot][..numel(ws.shapes[slot])].to_vec(),
            })
            .collect())
    }
}

fn numel(shape: [usize; 4]) -> usize {
    shape.iter().product()
}

/// The first `len` values of `buf`, growing it if needed. Buffers never shrink, so a warm
/// workspace neither allocates nor zero-fills.
fn grow(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

impl Op {
    /// What the step is, for profiles.
    fn label(&self) -> &'static str {
        match self {
            Op::Conv {
                kernel: (1, 1),
                groups: 1,
                ..
            } => "conv 1x1",
            Op::Conv { kernel: (1, 1), .. } => "conv 1x1 grouped",
            Op::Conv { c_out, groups, .. } if c_out == groups => "conv depthwise",
            Op::Conv { .. } => "conv dense",
            Op::Pool { .. } | Op::GlobalAvgPool => "pool",
            _ => "other",
        }
    }
}

/// Gives every value a buffer slot, reusing the slots of dead values (outputs are given
/// slots before the step's inputs are freed, so a step never writes what it reads).
fn assign_slots(steps: Vec<NamedStep>, input: &str, outputs: &[String]) -> Plan {
    let mut last_use: HashMap<&str, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        for name in &step.inputs {
            last_use.insert(name, i);
        }
    }
    let mut slot_of: HashMap<String, usize> = HashMap::from([(input.to_string(), 0)]);
    let (mut free, mut slots) = (Vec::<usize>::new(), 1);
    let mut planned = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let inputs = step.inputs.iter().map(|n| slot_of[n.as_str()]).collect();
        let outs = step
            .outputs
            .iter()
            .map(|name| {
                let slot = free.pop().unwrap_or_else(|| {
                    slots += 1;
                    slots - 1
                });
                slot_of.insert(name.clone(), slot);
                slot
            })
            .collect();
        for name in &step.inputs {
            let dead = last_use.get(name.as_str()) == Some(&i) && !outputs.contains(name);
            if let Some(slot) = dead.then(|| slot_of.remove(name.as_str())).flatten() {
                free.push(slot);
            }
        }
        planned.push(Step {
            op: step.op.clone(),
            inputs,
            outputs: outs,
        });
    }
    Plan {
        steps: planned,
        input: 0,
        outputs: outputs
            .iter()
            .map(|n| (n.clone(), slot_of[n.as_str()]))
            .collect(),
        slots,
    }
}

/// Runs one step, writing its output slots.
fn run_step(step: &Step, ws: &mut Workspace) -> Result<(), InferError> {
    let shape = ws.shapes[step.inputs[0]];
    let [n, c, h, w] = shape;
    let mut taken: Vec<Vec<f32>> = step
        .outputs
        .iter()
        .map(|&s| std::mem::take(&mut ws.buffers[s]))
        .collect();
    let value = |slot: usize| &ws.buffers[slot][..numel(ws.shapes[slot])];
    let x = value(step.inputs[0]);
    let plane = h * w;
    let mut out_shapes = vec![shape];
    match &step.op {
        Op::Conv {
            weight,
            bias,
            c_out,
            kernel,
            stride,
            pad,
            groups,
            act,
            residual,
            post,
        } => {
            let s = ConvShape {
                n,
                c_in: c,
                c_out: *c_out,
                h,
                w,
                kernel: *kernel,
                stride: *stride,
                pad: *pad,
                groups: *groups,
            };
            let fits = *groups > 0
                && c.is_multiple_of(*groups)
                && weight.raw().len() == c_out * (c / groups) * kernel.0 * kernel.1
                && h + 2 * pad >= kernel.0
                && w + 2 * pad >= kernel.1;
            if !fits {
                return Err(InferError::Shape(format!(
                    "a [{n}, {c}, {h}, {w}] input does not fit a {}x{} convolution to {c_out} channels",
                    kernel.0, kernel.1
                )));
            }
            let (ho, wo) = s.out_hw();
            out_shapes[0] = [n, *c_out, ho, wo];
            if *residual && ws.shapes[step.inputs[1]] != out_shapes[0] {
                return Err(InferError::Shape("a residual of another shape".into()));
            }
            let epilogue = Epilogue {
                bias,
                act: *act,
                residual: residual.then(|| value(step.inputs[1])),
                post: *post,
            };
            fused::conv2d(
                x,
                weight,
                s,
                &epilogue,
                grow(&mut taken[0], numel(out_shapes[0])),
            );
        }
        Op::Clamp(low, high) => {
            let out = grow(&mut taken[0], x.len());
            out.iter_mut()
                .zip(x)
                .for_each(|(o, v)| *o = v.max(*low).min(*high));
        }
        Op::Add => {
            if ws.shapes[step.inputs[1]] != shape {
                return Err(InferError::Shape("an Add of two shapes".into()));
            }
            let other = value(step.inputs[1]);
            let out = grow(&mut taken[0], x.len());
            for ((o, a), b) in out.iter_mut().zip(x).zip(other) {
                *o = a + b;
            }
        }
        Op::AddChannel(values) => {
            let out = grow(&mut taken[0], x.len());
            for (p, (o, src)) in out
                .chunks_exact_mut(plane)
                .zip(x.chunks_exact(plane))
                .enumerate()
            {
                let v = values[p % values.len()];
                o.iter_mut().zip(src).for_each(|(o, x)| *o = x + v);
            }
        }
        Op::Scale(k) => {
            let out = grow(&mut taken[0], x.len());
            out.iter_mut().zip(x).for_each(|(o, v)| *o = v * k);
        }
        Op::Concat => {
            let parts = &step.inputs;
            if parts.iter().any(|&p| {
                let [pn, _, ph, pw] = ws.shapes[p];
                (pn, ph, pw) != (n, h, w)
            }) {
                return Err(InferError::Shape(
                    "a concatenation of different sizes".into(),
                ));
            }
            let total: usize = parts.iter().map(|&p| ws.shapes[p][1]).sum();
            out_shapes[0] = [n, total, h, w];
            let out = grow(&mut taken[0], numel(out_shapes[0]));
            let mut at = 0;
            for b in 0..n {
                for &p in parts {
                    let len = ws.shapes[p][1] * plane;
                    out[at..at + len].copy_from_slice(&value(p)[b * len..(b + 1) * len]);
                    at += len;
                }
            }
        }
        Op::Gather(order) => {
            if order.iter().any(|&i| i >= c) {
                return Err(InferError::Shape(format!(
                    "a channel order past {c} channels"
                )));
            }
            out_shapes[0] = [n, order.len(), h, w];
            let out = grow(&mut taken[0], numel(out_shapes[0]));
            for (k, dst) in out.chunks_exact_mut(plane).enumerate() {
                let (b, i) = (k / order.len(), order[k % order.len()]);
                dst.copy_from_slice(&x[(b * c + i) * plane..][..plane]);
            }
        }
        Op::Split(sizes) => {
            if sizes.iter().sum::<usize>() != c || sizes.len() != taken.len() {
                return Err(InferError::Shape(format!(
                    "a split of {c} channels into {sizes:?}"
                )));
            }
            out_shapes.clear();
            let mut start = 0;
            for (buf, &size) in taken.iter_mut().zip(sizes) {
                let out = grow(buf, n * size * plane);
                for (b, dst) in out.chunks_exact_mut(size * plane).enumerate() {
                    dst.copy_from_slice(&x[(b * c + start) * plane..][..size * plane]);
                }
                out_shapes.push([n, size, h, w]);
                start += size;
            }
        }
        Op::Pool {
            max,
            kernel,
            stride,
            pad,
        } => {
            if h + 2 * pad < *kernel || w + 2 * pad < *kernel {
                return Err(InferError::Shape(format!(
                    "a {h}x{w} map is smaller than a {kernel}x{kernel} pool"
                )));
            }
            let s = PoolShape {
                planes: n * c,
                h,
                w,
                kernel: *kernel,
                stride: *stride,
                pad: *pad,
            };
            let (ho, wo) = s.out_hw();
            out_shapes[0] = [n, c, ho, wo];
            fused::pool2d(x, s, *max, grow(&mut taken[0], numel(out_shapes[0])));
        }
        Op::GlobalAvgPool => {
            out_shapes[0] = [n, c, 1, 1];
            fused::global_avg_pool(x, plane, grow(&mut taken[0], n * c));
        }
        Op::Linear { weight, bias } => {
            out_shapes[0] = [n, bias.len(), 1, 1];
            if weight.len() != c * plane * bias.len() {
                return Err(InferError::Shape(format!(
                    "{} features into a linear layer for {}",
                    c * plane,
                    weight.len() / bias.len().max(1)
                )));
            }
            fused::linear(x, weight, bias, n, grow(&mut taken[0], n * bias.len()));
        }
        Op::Softmax => {
            let out = grow(&mut taken[0], x.len());
            for (o, row) in out
                .chunks_exact_mut(c * plane)
                .zip(x.chunks_exact(c * plane))
            {
                let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                o.iter_mut()
                    .zip(row)
                    .for_each(|(o, v)| *o = (v - top).exp());
                let sum: f32 = o.iter().sum();
                o.iter_mut().for_each(|v| *v /= sum);
            }
        }
        Op::Copy => grow(&mut taken[0], x.len()).copy_from_slice(x),
    }
    for ((&slot, buf), out_shape) in step.outputs.iter().zip(taken).zip(out_shapes) {
        ws.buffers[slot] = buf;
        ws.shapes[slot] = out_shape;
    }
    Ok(())
}
