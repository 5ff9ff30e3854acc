//! burn's Adam and AdamW with each parameter's update fused into one pass on the CPU
//! (`fast_ops::optim`), and burn's own optimizer everywhere else (GPU backends, the kernels
//! switched off). The state types are burn's, so checkpoints are the same either way and a
//! run resumes across the switch.

use burn::optim::{
    AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate,
    ModuleOptimizer, Optimizer, decay::WeightDecayConfig,
};
use burn::prelude::*;
use burn::tensor::Device;

use crate::fast_ops::optim::{AdamStep, adam_update};

/// burn's defaults for both optimizers.
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-5;

/// Adam with an L2 penalty added to the gradient (`penalty`, 0 for none), as
/// `AdamConfig::new().with_weight_decay(..)` builds it.
#[derive(Clone)]
pub struct FusedAdam {
    penalty: f32,
    burn: burn::optim::Adam,
}

/// AdamW with decoupled weight decay `decay`, as `AdamWConfig::new().with_weight_decay(..)`
/// builds it.
#[derive(Clone)]
pub struct FusedAdamW {
    decay: f32,
    burn: AdamW,
}

impl FusedAdam {
    /// Adam with L2 penalty `penalty` (0 for none).
    pub fn new(penalty: f32) -> Self {
        let decay = (penalty > 0.0).then(|| WeightDecayConfig::new(penalty));
        Self {
            penalty,
            burn: AdamConfig::new().with_weight_decay(decay).build(),
        }
    }

    /// As a module optimizer.
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

impl FusedAdamW {
    /// AdamW with decoupled decay `decay`.
    pub fn new(decay: f32) -> Self {
        Self {
            decay,
            burn: AdamWConfig::new().with_weight_decay(decay).build(),
        }
    }

    /// As a module optimizer.
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

/// The fused update of one tensor, or `None` where the fast path does not apply.
fn fused<const D: usize>(
    lr: LearningRate,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    state: Option<&AdaptiveMomentumState<D>>,
    (penalty, decay): (f32, f32),
) -> Option<(Tensor<D>, AdaptiveMomentumState<D>)> {
    let time = state.map_or(1, |s| s.time + 1);
    let step = AdamStep {
        lr,
        beta_1: BETA_1,
        beta_2: BETA_2,
        epsilon: EPSILON,
        time,
        penalty,
        decay,
    };
    let moments = state.map(|s| (s.moment_1.clone(), s.moment_2.clone()));
    let (p, m, v) = adam_update(tensor, grad, moments, step)?;
    Some((p, AdaptiveMomentumState::new(time, m, v)))
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let momentum = state.as_ref().map(|s| &s.momentum);
        match fused(
            lr,
            tensor.clone(),
            grad.clone(),
            momentum,
            (self.penalty, 0.0),
        ) {
            Some((p, momentum)) => (p, Some(AdamState::new(momentum))),
            None => self.burn.step(lr, tensor, grad, state),
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        burn::optim::Adam::to_device(state, device)
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let momentum = state.as_ref().map(|s| &s.momentum);
        match fused(
            lr,
            tensor.clone(),
            grad.clone(),
            momentum,
            (0.0, self.decay),
        ) {
            Some((p, momentum)) => (p, Some(AdamWState::new(momentum))),
            None => self.burn.step(lr, tensor, grad, state),
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamW::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
        t.to_data().try_to_vec::<f32>().unwrap()
    }

    /// The moments inside either optimizer's state.
    trait Momentum {
        fn momentum(&self) -> &AdaptiveMomentumState<2>;
    }

    impl Momentum for AdamState<2> {
        fn momentum(&self) -> &AdaptiveMomentumState<2> {
            &self.momentum
        }
    }

    impl Momentum for AdamWState<2> {
        fn momentum(&self) -> &AdaptiveMomentumState<2> {
            &self.momentum
        }
    }

    /// Three updates of one tensor by `fused` and by burn's `reference`, with fresh random
    /// gradients and a falling learning rate: parameters and moments agree to f32 rounding
    /// (Adam's to the bit: the same operations in the same order; AdamW's within an ulp).
    fn agree<S, F, R>(fused: &F, reference: &R, what: &str)
    where
        S: Momentum,
        F: Optimizer<State<2> = S>,
        R: Optimizer<State<2> = S>,
    {
        let device = Device::flex();
        let start = Tensor::<2>::random([37, 1100], Distribution::Default, &device);
        let (mut a, mut b) = (start.clone(), start.clone());
        let (mut state_a, mut state_b) = (None, None);
        for step in 0..3 {
            let grad = Tensor::<2>::random([37, 1100], Distribution::Normal(0.0, 1.0), &device);
            let lr = 0.01 / (step + 1) as f64;
            (a, state_a) = fused.step(lr, a, grad.clone(), state_a);
            (b, state_b) = reference.step(lr, b, grad, state_b);
        }
        let close = |x: Vec<f32>, y: Vec<f32>, name: &str| {
            assert_eq!(x.len(), y.len(), "{what}: {name} length");
            let worst = x
                .iter()
                .zip(&y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-6, "{what}: {name} differs by {worst}");
        };
        close(values(&a), values(&b), "parameter");
        let (sa, sb) = (state_a.unwrap(), state_b.unwrap());
        let (sa, sb) = (sa.momentum(), sb.momentum());
        assert_eq!((sa.time, sb.time), (3, 3), "{what}: step count");
        close(values(&sa.moment_1), values(&sb.moment_1), "first moment");
        close(values(&sa.moment_2), values(&sb.moment_2), "second moment");
        let moved = values(&(a - start).abs().mean())[0];
        assert!(
            moved > 1e-3,
            "{what}: the parameters barely moved ({moved})"
        );
    }

    #[test]
    fn fused_adam_and_adamw_match_burns() {
        let probe = Tensor::<1>::zeros([1], &Device::flex());
        assert!(
            crate::fast_ops::fast_path(&probe),
            "the fused path must run"
        );
        for decay in [0.0, 0.05] {
            let adam = FusedAdam::new(decay);
            agree(&adam, &adam.burn, &format!("Adam, L2 penalty {decay}"));
            let adamw = FusedAdamW::new(decay);
            agree(&adamw, &adamw.burn, &format!("AdamW, decay {decay}"));
        }
    }
}
