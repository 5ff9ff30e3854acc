//! Exponential moving average of a model's weights (Polyak averaging, as timm's `ModelEma`
//! and TensorFlow's `ExponentialMovingAverage`): after every optimisation step
//! `ema = d * ema + (1 - d) * weights`. Batch-norm running statistics are averaged the
//! same way, so the averaged model's normalisation matches its averaged weights.
//!
//! The decay warms up as TensorFlow's does with `num_updates`: `d_t = min(d, (1 + t) / (10 + t))`
//! for update `t` (0-based), so the average forgets its random start within a few hundred
//! steps instead of `1 / (1 - d)`.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// The averaging rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ema {
    /// Target decay.
    pub decay: f64,
    /// Use the warm-up `(1 + t) / (10 + t)`.
    pub warmup: bool,
}

impl Ema {
    /// The decay of update `t` (0-based).
    pub fn decay_at(&self, t: u64) -> f64 {
        if self.warmup {
            self.decay.min((1.0 + t as f64) / (10.0 + t as f64))
        } else {
            self.decay
        }
    }

    /// Moves `average` toward `weights` (same architecture, any devices) as update `t`.
    pub fn update<M: Module>(&self, average: M, weights: &M, t: u64) -> M {
        let mut collect = Collect(Vec::new());
        weights.visit(&mut collect);
        let mut blend = Blend {
            sources: collect.0.into_iter(),
            decay: self.decay_at(t),
        };
        let out = average.map(&mut blend);
        assert!(
            blend.sources.next().is_none(),
            "the averaged model and the trained one differ in their parameters"
        );
        out
    }
}

/// Every float tensor of a module (parameters and running statistics), flattened, in
/// visiting order.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

struct Blend {
    sources: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let source = self
            .sources
            .next()
            .expect("the trained model has as many tensors as the average");
        let decay = self.decay;
        param.map(|average| {
            let shape = average.shape();
            let device = average.device();
            let source = source.to_device(&device).reshape(shape);
            average
                .mul_scalar(decay)
                .add(source.mul_scalar(1.0 - decay))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    fn weights(linear: &Linear) -> Vec<f32> {
        linear
            .weight
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn k_updates_match_the_closed_form() {
        let device = Device::default();
        let start = LinearConfig::new(2, 3).init(&device);
        let target = LinearConfig::new(2, 3).init(&device);
        let ema = Ema {
            decay: 0.9,
            warmup: false,
        };
        let mut average = start.clone();
        let k = 7;
        for t in 0..k {
            average = ema.update(average, &target, t);
        }
        // Against a constant target: ema_k = d^k * ema_0 + (1 - d^k) * target.
        let dk = 0.9f64.powi(k as i32);
        for ((a, s), w) in weights(&average)
            .iter()
            .zip(weights(&start))
            .zip(weights(&target))
        {
            let expected = dk * s as f64 + (1.0 - dk) * w as f64;
            assert!((*a as f64 - expected).abs() < 1e-5, "{a} vs {expected}");
        }
    }

    #[test]
    fn varying_targets_follow_the_recursion_and_warmup_shortens_memory() {
        let device = Device::default();
        let zero = LinearConfig::new(1, 1).init(&device).map(&mut Fill(0.0));
        let ema = Ema {
            decay: 0.5,
            warmup: false,
        };
        // Targets 1, 2, 3: ((0 * .5 + .5) * .5 + 1) * .5 + 1.5 = 2.125.
        let mut average = zero.clone();
        for (t, v) in [1.0, 2.0, 3.0].into_iter().enumerate() {
            let target = zero.clone().map(&mut Fill(v));
            average = ema.update(average, &target, t as u64);
        }
        assert!((weights(&average)[0] - 2.125).abs() < 1e-6);
        let warm = Ema {
            decay: 0.999,
            warmup: true,
        };
        assert!((warm.decay_at(0) - 0.1).abs() < 1e-12);
        assert!((warm.decay_at(90) - 0.91).abs() < 1e-12);
        assert_eq!(warm.decay_at(1_000_000), 0.999);
    }

    struct Fill(f32);

    impl ModuleMapper for Fill {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let v = self.0;
            param.map(|t| t.zeros_like().add_scalar(v))
        }
    }
}
