//! An inference plan compiled from the ONNX graph a model writes of itself (batch norm
//! already folded into each convolution's weight and bias): the nodes become steps over
//! plain `f32` buffers, each convolution absorbs the activation, residual add and second
//! activation that follow it, and every value gets a buffer slot reused once the value is
//! dead, so a [`Workspace`] allocates nothing after its first run.

use std::collections::HashMap;

use dermclass_kernels::block::{self, Block, BlockShape, Depthwise, Pointwise};
use dermclass_kernels::bn::Act;
use dermclass_kernels::fused::{self, ConvShape, ConvWeights, Epilogue};
use dermclass_kernels::pool::{self, PoolShape};

use super::InferError;
use crate::export::eval::{attr_int, attr_ints};
use crate::export::proto::{GraphProto, NodeProto, TensorProto};

/// One operation of the plan.
#[derive(Clone, Debug)]
enum Op {
    /// Convolution with its fused epilogue; a residual, when fused, is the step's second
    /// input.
    Conv(ConvOp),
    /// A MobileNet inverted-residual block: (expansion,) depthwise and projection, run a
    /// band of rows at a time where its expanded tensor is large; the projection's residual,
    /// when fused, is the step's second input.
    Block(Box<BlockOp>),
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

/// A convolution and what its epilogue does.
#[derive(Clone, Debug)]
struct ConvOp {
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
}

impl ConvOp {
    /// A 1x1, stride-1, one-group convolution (the block's expansion and projection).
    fn is_pointwise(&self) -> bool {
        self.kernel == (1, 1) && self.stride == 1 && self.pad == 0 && self.groups == 1
    }

    /// A depthwise 3x3 convolution with padding 1 and stride 1 or 2 (the block's middle).
    fn is_depthwise3x3(&self) -> bool {
        self.groups == self.c_out
            && self.kernel == (3, 3)
            && self.pad == 1
            && (self.stride == 1 || self.stride == 2)
    }

    /// Whether the epilogue is bias and activation only.
    fn is_plain(&self) -> bool {
        !self.residual && self.post == Act::Identity
    }
}

/// The layers of an inverted-residual block.
#[derive(Clone, Debug)]
struct BlockOp {
    expand: Option<ConvOp>,
    depthwise: ConvOp,
    project: ConvOp,
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
    /// The intermediate tensors of an unbanded inverted-residual block.
    scratch: [Vec<f32>; 2],
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
            Op::Conv(ConvOp {
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
            })
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

/// The one step that reads step `i`'s first output, unless others read it too or it is a
/// graph output.
fn sole_reader(steps: &[Option<NamedStep>], i: usize, graph_outputs: &[String]) -> Option<usize> {
    let out = &steps[i].as_ref()?.outputs[0];
    let mut readers =
        (0..steps.len()).filter(|&j| steps[j].as_ref().is_some_and(|s| s.inputs.contains(out)));
    match (readers.next(), readers.next()) {
        (Some(j), None) if !graph_outputs.contains(out) => Some(j),
        _ => None,
    }
}

/// The convolution of step `i`, if it is a live convolution step.
fn conv_at(steps: &[Option<NamedStep>], i: usize) -> Option<&ConvOp> {
    match &steps[i].as_ref()?.op {
        Op::Conv(conv) => Some(conv),
        _ => None,
    }
}

/// Merges each depthwise 3x3 convolution with the 1x1 projection that alone reads it, and
/// with the 1x1 expansion it alone reads when there is one, into a block step at the
/// projection's place (every input of the three is ready there).
fn fuse_blocks(steps: Vec<NamedStep>, graph_outputs: &[String]) -> Vec<NamedStep> {
    let mut steps: Vec<Option<NamedStep>> = steps.into_iter().map(Some).collect();
    for j in 0..steps.len() {
        if !conv_at(&steps, j).is_some_and(|d| d.is_depthwise3x3() && d.is_plain()) {
            continue;
        }
        let Some(k) = sole_reader(&steps, j, graph_outputs) else {
            continue;
        };
        let dw_out = &steps[j].as_ref().expect("live").outputs[0];
        // The projection reads the depthwise output as its input only (not also as its
        // residual, which the block would no longer have).
        let feeds_project = conv_at(&steps, k).is_some_and(ConvOp::is_pointwise)
            && steps[k]
                .as_ref()
                .is_some_and(|p| p.inputs[0] == *dw_out && !p.inputs[1..].contains(dw_out));
        if !feeds_project {
            continue;
        }
        let dw_in = &steps[j].as_ref().expect("live").inputs[0];
        let expand = steps
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.outputs.contains(dw_in)))
            .filter(|&i| {
                conv_at(&steps, i).is_some_and(|e| e.is_pointwise() && e.is_plain())
                    && sole_reader(&steps, i, graph_outputs) == Some(j)
            });
        let take = |steps: &mut [Option<NamedStep>], i: usize| {
            let step = steps[i].take().expect("live");
            let Op::Conv(conv) = step.op else {
                unreachable!("checked to be a convolution")
            };
            (conv, step.inputs, step.outputs)
        };
        let (project, project_inputs, outputs) = take(&mut steps, k);
        let (depthwise, mut inputs, _) = take(&mut steps, j);
        let expand = expand.map(|i| {
            let (conv, expand_inputs, _) = take(&mut steps, i);
            inputs = expand_inputs;
            conv
        });
        inputs.extend(project_inputs.into_iter().skip(1));
        steps[k] = Some(NamedStep {
            op: Op::Block(Box::new(BlockOp {
                expand,
                depthwise,
                project,
            })),
            inputs,
            outputs,
        });
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
            Op::Conv(ConvOp {
                act,
                residual,
                post,
                ..
            }),
        outputs,
        ..
    }) = &steps[i]
    else {
        return false;
    };
    let out = &outputs[0];
    let Some(j) = sole_reader(steps, i, graph_outputs) else {
        return false;
    };
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
    if let Op::Conv(ConvOp {
        act,
        residual,
        post,
        ..
    }) = &mut conv.op
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
        let steps = fuse_blocks(fuse(named, &outputs), &outputs);
        Ok(assign_slots(steps, &input, &outputs))
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
    ///
    /// The steps run on one of rayon's worker threads ([`crate::fast_ops::on_pool_worker`]).
    pub fn run_with(
        &self,
        ws: &mut Workspace,
        input: &[f32],
        shape: [usize; 4],
        timer: impl FnMut(&'static str, std::time::Duration) + Send,
    ) -> Result<Vec<Output>, InferError> {
        crate::fast_ops::on_pool_worker(|| self.run_on_calling_thread(ws, input, shape, timer))
    }

    /// [`Plan::run_with`] with the steps run on the calling thread, wherever it is (the slower
    /// way from outside rayon's pool; kept for the A/B benchmark that measures it).
    pub fn run_on_calling_thread(
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
            Op::Conv(ConvOp {
                kernel: (1, 1),
                groups: 1,
                ..
            }) => "conv 1x1",
            Op::Conv(ConvOp { kernel: (1, 1), .. }) => "conv 1x1 grouped",
            Op::Conv(ConvOp { c_out, groups, .. }) if c_out == groups => "conv depthwise",
            Op::Conv(_) => "conv dense",
            Op::Block(_) => "inverted-residual block",
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

/// A residual operand and its shape.
type Residual<'a> = Option<(&'a [f32], [usize; 4])>;

/// Runs convolution `op` on `x` (`shape`) into `out`; returns the output's shape.
fn run_conv(
    op: &ConvOp,
    x: &[f32],
    shape: [usize; 4],
    residual: Residual,
    out: &mut Vec<f32>,
) -> Result<[usize; 4], InferError> {
    let [n, c, h, w] = shape;
    let s = ConvShape {
        n,
        c_in: c,
        c_out: op.c_out,
        h,
        w,
        kernel: op.kernel,
        stride: op.stride,
        pad: op.pad,
        groups: op.groups,
    };
    let (kernel, pad) = (op.kernel, op.pad);
    let fits = op.groups > 0
        && c.is_multiple_of(op.groups)
        && op.weight.raw().len() == op.c_out * (c / op.groups) * kernel.0 * kernel.1
        && h + 2 * pad >= kernel.0
        && w + 2 * pad >= kernel.1;
    if !fits {
        return Err(InferError::Shape(format!(
            "a [{n}, {c}, {h}, {w}] input does not fit a {}x{} convolution to {} channels",
            kernel.0, kernel.1, op.c_out
        )));
    }
    let (ho, wo) = s.out_hw();
    let out_shape = [n, op.c_out, ho, wo];
    check_residual(residual, out_shape)?;
    let epilogue = Epilogue {
        bias: &op.bias,
        act: op.act,
        residual: residual.map(|(r, _)| r),
        post: op.post,
    };
    fused::conv2d(x, &op.weight, s, &epilogue, grow(out, numel(out_shape)));
    Ok(out_shape)
}

/// Refuses a residual whose shape is not the output's.
fn check_residual(residual: Residual, out_shape: [usize; 4]) -> Result<(), InferError> {
    match residual {
        Some((_, shape)) if shape != out_shape => {
            Err(InferError::Shape("a residual of another shape".into()))
        }
        _ => Ok(()),
    }
}

/// The block's layers as the kernel takes them.
fn pointwise(op: &ConvOp) -> Pointwise<'_> {
    Pointwise {
        weights: &op.weight,
        bias: &op.bias,
        act: op.act,
    }
}

/// Runs an inverted-residual block on `x` (`shape`) into `out` as one step in the
/// [`Layout`] its shape calls for, else its layers one after the other through `scratch`.
fn run_block(
    block: &BlockOp,
    x: &[f32],
    shape: [usize; 4],
    residual: Residual,
    scratch: &mut [Vec<f32>; 2],
    out: &mut Vec<f32>,
) -> Result<[usize; 4], InferError> {
    let [n, c, h, w] = shape;
    let (expand, depthwise, project) = (block.expand.as_ref(), &block.depthwise, &block.project);
    let c_mid = depthwise.c_out;
    let s = BlockShape {
        n,
        c_in: c,
        c_mid,
        c_out: project.c_out,
        h,
        w,
        stride: depthwise.stride,
    };
    let fits = expand.map_or(c == c_mid, |e| e.weight.raw().len() == c_mid * c)
        && project.weight.raw().len() == project.c_out * c_mid;
    let layout = if !fits {
        None
    } else if let Some(parts) = block::split_parts(&s) {
        Some(Layout::Shares(parts))
    } else if let Some(parts) = block::output_parts(&s).filter(|_| expand.is_none()) {
        Some(Layout::Outputs(parts))
    } else if block::per_image(&s) {
        Some(Layout::Images)
    } else {
        block::band_rows(&s).map(Layout::Bands)
    };
    let Some(layout) = layout else {
        // Each layer checks its own fit and names a misfit.
        let [first, second] = scratch;
        let (mid, mid_shape) = match expand {
            Some(e) => {
                let mid_shape = run_conv(e, x, shape, None, first)?;
                (&first[..numel(mid_shape)], mid_shape)
            }
            None => (x, shape),
        };
        let dw_shape = run_conv(depthwise, mid, mid_shape, None, second)?;
        return run_conv(project, &second[..numel(dw_shape)], dw_shape, residual, out);
    };
    let (ho, wo) = s.out_hw();
    let out_shape = [n, project.c_out, ho, wo];
    check_residual(residual, out_shape)?;
    let layers = Block {
        expand: expand.map(pointwise),
        depthwise: Depthwise {
            weight: depthwise.weight.raw(),
            bias: &depthwise.bias,
            act: depthwise.act,
            stride: depthwise.stride,
        },
        project: pointwise(project),
        residual: residual.map(|(r, _)| r),
        post: project.post,
    };
    let y = grow(out, numel(out_shape));
    match layout {
        Layout::Bands(rows) => block::inverted_residual(x, s, &layers, rows, y),
        Layout::Shares(parts) => block::inverted_residual_split(x, s, &layers, parts, y),
        Layout::Images => block::inverted_residual_per_image(x, s, &layers, y),
        Layout::Outputs(parts) => block::depthwise_pointwise_split(x, s, &layers, parts, y),
    }
    Ok(out_shape)
}

/// How a block runs as one step: in shares of its expanded channels, one per thread (one
/// image, expanded tensor up to 1 MiB), in shares of its output channels (the same, without
/// expansion), one image per thread (a batch, the same tensors), or in bands of output rows
/// (large maps).
enum Layout {
    Bands(usize),
    Shares(usize),
    Outputs(usize),
    Images,
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
        Op::Conv(conv) => {
            let residual = conv
                .residual
                .then(|| (value(step.inputs[1]), ws.shapes[step.inputs[1]]));
            out_shapes[0] = run_conv(conv, x, shape, residual, &mut taken[0])?;
        }
        Op::Block(block) => {
            let residual = block
                .project
                .residual
                .then(|| (value(step.inputs[1]), ws.shapes[step.inputs[1]]));
            out_shapes[0] = run_block(block, x, shape, residual, &mut ws.scratch, &mut taken[0])?;
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
            pool::pool2d(x, s, *max, grow(&mut taken[0], numel(out_shapes[0])));
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
