//! The fast CPU path of the Adam / AdamW update (`dermclass_kernels::adam`): one pass per
//! parameter tensor instead of burn's thirteen. Used by [`crate::train::fused_adam`].

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
pub use dermclass_kernels::adam::AdamStep;
use dermclass_kernels::adam::{AdamInputs, adam_update as update};

use super::{Raw, flex};

/// The optimizer's custom operation. Implemented for `Flex` and `Autodiff<Flex>` (where it
/// works on the inner tensors and records nothing: optimizers run outside autodiff).
#[backend_extension(Flex, Autodiff)]
pub trait OptimKernels: Backend {
    /// One Adam / AdamW update: (parameter, first moment, second moment).
    fn adam_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl OptimKernels for Flex {
    fn adam_update(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        step: AdamStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [param, grad, moment_1, moment_2] = [param, grad, moment_1, moment_2].map(Raw::new);
        let inputs = AdamInputs {
            param: param.data(),
            grad: grad.data(),
            moment_1: moment_1.data(),
            moment_2: moment_2.data(),
        };
        let (p, m, v) = update(inputs, &step);
        let shape = param.shape.clone();
        (
            flex(p, shape.clone()),
            flex(m, shape.clone()),
            flex(v, shape),
        )
    }
}

impl<C: CheckpointStrategy> OptimKernels for Autodiff<Flex, C> {
    fn adam_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (p, m, v) = Flex::adam_update(
            param.into_primitive(),
            grad.into_primitive(),
            moment_1.into_primitive(),
            moment_2.into_primitive(),
            step,
        );
        (
            FloatTensor::<Self>::new(p),
            FloatTensor::<Self>::new(m),
            FloatTensor::<Self>::new(v),
        )
    }
}

/// One fused Adam / AdamW update of `param` where [`super::fast_path`] holds (else `None`,
/// and the caller runs burn's optimizer): (parameter, first moment, second moment).
pub fn adam_update<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
    step: AdamStep,
) -> Option<(Tensor<D>, Tensor<D>, Tensor<D>)> {
    if !super::fast_path(&param) || grad.dtype() != param.dtype() {
        return None;
    }
    let (m, v) = moments.unwrap_or_else(|| (param.zeros_like(), param.zeros_like()));
    let (p, m, v) = Dispatch::adam_update(
        param.into_dispatch(),
        grad.into_dispatch(),
        m.into_dispatch(),
        v.into_dispatch(),
        step,
    );
    Some((
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    ))
}
