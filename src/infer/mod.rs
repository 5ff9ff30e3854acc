//! Fast CPU inference: a model compiled once into a [`Plan`] whose convolutions carry their
//! batch norm folded into weight and bias and apply activation and residual add as they
//! store each output tile (the `dermclass-kernels` `fused` module). Evaluation,
//! prediction, serving and `bench --inference` run through it on the CPU; training and
//! Grad-CAM keep burn's modules, which they differentiate.

mod plan;

use std::sync::Mutex;

use burn::prelude::*;
use thiserror::Error;

use crate::export::network_graph;
use crate::fast_ops::fast_path;
use crate::model::Classifier;

pub use plan::{Output, Plan, Workspace};

/// Errors of compiling or running a plan.
#[derive(Debug, Error)]
pub enum InferError {
    /// The graph holds something the plan does not run.
    #[error("cannot compile for inference: {0}")]
    Unsupported(String),
    /// An input does not fit the model.
    #[error("input does not fit the model: {0}")]
    Shape(String),
}

/// A classifier compiled for inference, shareable between threads (each brings its own
/// [`Workspace`]).
#[derive(Clone, Debug)]
pub struct CompiledModel {
    plan: Plan,
}

impl CompiledModel {
    /// Folds and compiles `model` (its batch norms' running statistics are used, as in
    /// evaluation mode).
    pub fn compile(model: &Classifier) -> Result<Self, InferError> {
        Ok(Self {
            plan: Plan::compile(&network_graph(model))?,
        })
    }

    /// Logits `[n, classes]`, row-major, of `images` (`[n, 3, h, w]`).
    pub fn logits(
        &self,
        ws: &mut Workspace,
        images: &[f32],
        shape: [usize; 4],
    ) -> Result<Vec<f32>, InferError> {
        let mut outputs = self.plan.run(ws, images, shape)?;
        Ok(outputs.swap_remove(0).values)
    }

    /// Wall time per kind of step over `runs` passes on `images` (after one warm-up pass),
    /// largest first: `(kind, total seconds, steps timed)`.
    pub fn profile(
        &self,
        images: &[f32],
        shape: [usize; 4],
        runs: usize,
    ) -> Result<Vec<(&'static str, f64, usize)>, InferError> {
        let mut ws = Workspace::default();
        self.plan.run(&mut ws, images, shape)?;
        let mut totals: Vec<(&'static str, f64, usize)> = Vec::new();
        for _ in 0..runs {
            self.plan.run_with(&mut ws, images, shape, |kind, took| {
                match totals.iter_mut().find(|t| t.0 == kind) {
                    Some(t) => {
                        t.1 += took.as_secs_f64();
                        t.2 += 1;
                    }
                    None => totals.push((kind, took.as_secs_f64(), 1)),
                }
            })?;
        }
        totals.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(totals)
    }

    /// Steps of the compiled plan.
    pub fn steps(&self) -> usize {
        self.plan.len()
    }
}

/// A model ready for inference: the compiled plan where the fast CPU path applies (`f32`
/// on flex with the kernels enabled), burn's modules elsewhere (GPU backends,
/// `DERMCLASS_FAST_KERNELS=0`). Compiled once, when the model is loaded.
#[derive(Debug)]
pub struct InferenceModel {
    model: Classifier,
    compiled: Option<CompiledModel>,
    workspace: Mutex<Workspace>,
}

impl InferenceModel {
    /// Prepares `model` (switched to inference mode) for inputs on `device`.
    pub fn new(model: Classifier, device: &Device) -> Result<Self, InferError> {
        let model = model.valid();
        let probe = Tensor::<1>::zeros([1], device);
        let compiled = if fast_path(&probe) {
            Some(CompiledModel::compile(&model)?)
        } else {
            None
        };
        Ok(Self {
            model,
            compiled,
            workspace: Mutex::new(Workspace::default()),
        })
    }

    /// `[n, classes]` logits of `x` (`[n, 3, h, w]`), on `x`'s device.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let Some(compiled) = &self.compiled else {
            return self.model.forward(x);
        };
        let device = x.device();
        let shape = x.dims();
        let images: Vec<f32> = x
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 images");
        let mut workspace = self
            .workspace
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let logits = compiled
            .logits(&mut workspace, &images, shape)
            .unwrap_or_else(|e| panic!("the compiled model refused a checked input: {e}"));
        let classes = logits.len() / shape[0].max(1);
        Tensor::from_data(TensorData::new(logits, [shape[0], classes]), &device)
    }

    /// The burn modules (for what differentiates them, such as Grad-CAM).
    pub fn model(&self) -> &Classifier {
        &self.model
    }

    /// The compiled plan, where inference runs on one.
    pub fn compiled(&self) -> Option<&CompiledModel> {
        self.compiled.as_ref()
    }

    /// Whether inference runs on the compiled plan.
    pub fn is_compiled(&self) -> bool {
        self.compiled.is_some()
    }
}

#[cfg(test)]
mod tests;
