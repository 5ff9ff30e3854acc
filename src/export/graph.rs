//! A small builder for an ONNX graph: named values, weights as initializers, and the few
//! operators a classifier of the zoo needs. Each `emit` of a model block appends its nodes
//! and returns the name of its output.

use super::proto::{
    AttributeProto, Dimension, FLOAT, GraphProto, INT64, NodeProto, TensorProto, TensorShapeProto,
    TensorTypeProto, TypeProto, ValueInfoProto, attribute_type, f32_bytes,
};

/// A node attribute.
#[derive(Clone, Debug)]
pub enum Attr {
    /// One integer.
    Int(i64),
    /// A list of integers.
    Ints(Vec<i64>),
    /// One float.
    Float(f32),
}

/// The graph under construction.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    counter: usize,
}

/// A float tensor type with named (dynamic) or fixed dimensions.
fn float_type(dims: &[Dim]) -> TypeProto {
    TypeProto {
        tensor_type: Some(TensorTypeProto {
            elem_type: FLOAT,
            shape: Some(TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(v) => Dimension {
                            dim_value: Some(*v as i64),
                            dim_param: None,
                        },
                        Dim::Named(name) => Dimension {
                            dim_value: None,
                            dim_param: Some(name.to_string()),
                        },
                    })
                    .collect(),
            }),
        }),
    }
}

/// One dimension of a graph input or output.
#[derive(Clone, Copy, Debug)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A symbolic size (the batch).
    Named(&'static str),
}

impl GraphBuilder {
    /// A fresh, unique value name with a readable prefix.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}", self.counter)
    }

    /// Declares a float graph input.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        self.inputs.push(ValueInfoProto {
            name: name.to_string(),
            r#type: Some(float_type(dims)),
        });
        name.to_string()
    }

    /// Declares a float graph output.
    pub fn output(&mut self, name: &str, dims: &[Dim]) {
        self.outputs.push(ValueInfoProto {
            name: name.to_string(),
            r#type: Some(float_type(dims)),
        });
    }

    /// Adds a float weight and returns its name.
    pub fn weight(&mut self, prefix: &str, dims: &[usize], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len(), "{prefix}");
        let name = self.fresh(prefix);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            name: name.clone(),
            raw_data: f32_bytes(values),
        });
        name
    }

    /// Adds an int64 constant (shapes, indices, split sizes) and returns its name.
    pub fn int64s(&mut self, prefix: &str, values: &[i64]) -> String {
        let name = self.fresh(prefix);
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// Appends a node with `outputs` fresh outputs named after the operator.
    pub fn node_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: usize,
        attrs: &[(&str, Attr)],
    ) -> Vec<String> {
        let names: Vec<String> = (0..outputs).map(|_| self.fresh(op)).collect();
        self.node_named(op, inputs, &names, attrs);
        names
    }

    /// Appends a node with one fresh output.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.node_n(op, inputs, 1, attrs).remove(0)
    }

    /// Appends a node whose outputs have the given names.
    pub fn node_named(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[String],
        attrs: &[(&str, Attr)],
    ) {
        let attribute = attrs
            .iter()
            .map(|(name, value)| {
                let mut a = AttributeProto {
                    name: name.to_string(),
                    ..Default::default()
                };
                match value {
                    Attr::Int(i) => {
                        a.r#type = attribute_type::INT;
                        a.i = *i;
                    }
                    Attr::Ints(ints) => {
                        a.r#type = attribute_type::INTS;
                        a.ints = ints.clone();
                    }
                    Attr::Float(f) => {
                        a.r#type = attribute_type::FLOAT;
                        a.f = *f;
                    }
                }
                a
            })
            .collect();
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.to_vec(),
            name,
            op_type: op.to_string(),
            attribute,
        });
    }

    /// The finished graph.
    pub fn finish(self, name: &str) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: name.to_string(),
            initializer: self.initializers,
            input: self.inputs,
            output: self.outputs,
        }
    }

    /// Number of nodes so far.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    // Operators, each as burn computes it.

    /// `Relu`.
    pub fn relu(&mut self, x: &str) -> String {
        self.node("Relu", &[x], &[])
    }

    /// `Add` of two same-shaped tensors.
    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.node("Add", &[a, b], &[])
    }

    /// `Concat` along the channels.
    pub fn concat_channels(&mut self, parts: &[&str]) -> String {
        self.node("Concat", parts, &[("axis", Attr::Int(1))])
    }

    /// Reorders channels: output channel `i` is input channel `order[i]` (a `Gather` on
    /// axis 1, which needs no spatial sizes, so the batch stays dynamic).
    pub fn permute_channels(&mut self, x: &str, order: &[usize]) -> String {
        let indices: Vec<i64> = order.iter().map(|&i| i as i64).collect();
        let indices = self.int64s("shuffle_order", &indices);
        self.node("Gather", &[x, &indices], &[("axis", Attr::Int(1))])
    }

    /// Splits the channels into two parts of the given sizes.
    pub fn split_channels(&mut self, x: &str, first: usize, second: usize) -> (String, String) {
        let sizes = self.int64s("split_sizes", &[first as i64, second as i64]);
        let mut out = self.node_n("Split", &[x, &sizes], 2, &[("axis", Attr::Int(1))]);
        let right = out.pop().expect("two outputs");
        (out.pop().expect("two outputs"), right)
    }

    /// Square max or average pooling with symmetric padding (average counts the padding,
    /// as burn's `avg_pool2d` does by default).
    pub fn pool(&mut self, op: &str, x: &str, kernel: usize, stride: usize, pad: usize) -> String {
        let (k, s, p) = (kernel as i64, stride as i64, pad as i64);
        let mut attrs = vec![
            ("kernel_shape", Attr::Ints(vec![k, k])),
            ("strides", Attr::Ints(vec![s, s])),
            ("pads", Attr::Ints(vec![p, p, p, p])),
        ];
        if op == "AveragePool" {
            attrs.push(("count_include_pad", Attr::Int(1)));
        }
        self.node(op, &[x], &attrs)
    }
}
