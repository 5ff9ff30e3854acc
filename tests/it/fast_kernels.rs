//! Numerical equivalence of the fast CPU kernels (`dermclass::fast_ops`) with burn's own ops,
//! values and gradients, on the flex backend with autodiff.
//!
//! Every case draws seeded random inputs, runs the fast op and burn's reference op on the same
//! tensors, takes the loss `sum(y * r)` for a random cotangent `r` (so gradients are not
//! uniform), and compares the output and every input gradient.
//!
//! Tolerance: `max|fast - ref| <= 1e-4 * (1 + max|ref|)` per tensor. Both sides compute in f32
//! with different summation orders; sums here have at most a few thousand terms of size ~1, so
//! rounding differences stay around 1e-5 of the scale, while any indexing, stride or border
//! mistake changes values by O(1) of the scale.

use crate::helpers::values;
use burn::prelude::*;
use burn::tensor::activation::{relu, relu6};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use dermclass::fast_ops::{self, DenseGeometry};
use dermclass_kernels::bn::Act;

const TOL: f32 = 1e-4;

fn device() -> Device {
    Device::flex().autodiff()
}

/// Uniform values in [-1, 1) from a generator of this call's own: the device's generator
/// is process-wide, and tests running in parallel would reseed it between a seed and a draw.
fn random<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn assert_close(fast: &[f32], reference: &[f32], what: &str) {
    assert_eq!(fast.len(), reference.len(), "{what}: length");
    let scale = 1.0 + reference.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let worst = fast
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= TOL * scale,
        "{what}: max difference {worst} exceeds {}",
        TOL * scale
    );
}

/// Runs `op` on fresh copies of `inputs` (each requiring grad) and returns the output values
/// and each input's gradient of `sum(y * r)`.
fn run<const D: usize>(
    inputs: &[Tensor<4>],
    cotangent_seed: u64,
    op: impl Fn(&[Tensor<4>]) -> Tensor<D>,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let tracked: Vec<Tensor<4>> = inputs
        .iter()
        .map(|t| Tensor::from_data(t.to_data(), &device()).require_grad())
        .collect();
    let y = op(&tracked);
    let r = random(y.dims(), cotangent_seed, &device());
    let grads = (y.clone() * r).sum().backward();
    let grads = tracked
        .iter()
        .map(|t| values(&t.grad(&grads).expect("every input gets a gradient")))
        .collect();
    (values(&y), grads)
}

fn compare<const D: usize>(
    what: &str,
    inputs: &[Tensor<4>],
    fast: impl Fn(&[Tensor<4>]) -> Tensor<D>,
    reference: impl Fn(&[Tensor<4>]) -> Tensor<D>,
) {
    let (y_fast, g_fast) = run(inputs, 99, fast);
    let (y_ref, g_ref) = run(inputs, 99, reference);
    assert_close(&y_fast, &y_ref, &format!("{what}: output"));
    for (i, (a, b)) in g_fast.iter().zip(&g_ref).enumerate() {
        assert_close(a, b, &format!("{what}: gradient of input {i}"));
    }
}

/// Compares the fast convolution `fast(x, weight)` with burn's `conv2d` under `options`, on
/// an input of `x_shape` and a weight of `weight_shape` drawn for case `case`.
fn compare_conv(
    what: &str,
    case: usize,
    [x_shape, weight_shape]: [[usize; 4]; 2],
    options: ConvOptions<2>,
    fast: impl Fn(Tensor<4>, Tensor<4>) -> Tensor<4>,
) {
    let d = device();
    let x = random(x_shape, case as u64, &d);
    let weight = random(weight_shape, 100 + case as u64, &d);
    compare(
        what,
        &[x, weight],
        |t| fast(t[0].clone(), t[1].clone()),
        |t| conv2d(t[0].clone(), t[1].clone(), None, options.clone()),
    );
}

#[test]
fn pointwise_conv_matches_burn_conv2d() {
    // [batch, c_in, c_out, h, w, groups]
    let cases = [
        [1, 3, 5, 7, 7, 1],
        [3, 16, 24, 13, 11, 1],
        [2, 12, 6, 5, 9, 3],
        [2, 24, 48, 1, 1, 8],
        [1, 240, 60, 14, 14, 3],
        [4, 8, 8, 15, 3, 2],
    ];
    for (i, &[n, c_in, c_out, h, w, groups]) in cases.iter().enumerate() {
        compare_conv(
            &format!("pointwise {:?}", cases[i]),
            i,
            [[n, c_in, h, w], [c_out, c_in / groups, 1, 1]],
            ConvOptions::new([1, 1], [0, 0], [1, 1], groups),
            |x, weight| fast_ops::pointwise_conv(x, weight, groups),
        );
    }
}

#[test]
fn depthwise_conv_matches_burn_conv2d() {
    // [batch, channels, h, w] at both strides, odd and even sizes, batch 1.
    let cases = [
        [1, 1, 7, 7],
        [3, 17, 14, 14],
        [2, 3, 13, 15],
        [1, 144, 56, 56],
        [2, 8, 1, 2],
        [1, 5, 28, 9],
    ];
    for (i, &[n, c, h, w]) in cases.iter().enumerate() {
        for stride in [1, 2] {
            compare_conv(
                &format!("depthwise {:?} stride {stride}", cases[i]),
                i,
                [[n, c, h, w], [c, 1, 3, 3]],
                ConvOptions::new([stride; 2], [1, 1], [1, 1], c),
                |x, weight| fast_ops::depthwise_conv3x3(x, weight, stride),
            );
        }
    }
}

#[test]
fn dense_conv_matches_burn_conv2d() {
    // [batch, c_in, c_out, h, w, kernel, pad]: stems, ResNet's 7x7 stem, 3x3 layers with
    // many channels, strided 1x1 projections; odd sizes, batch 1. Values, input and weight
    // gradients are compared.
    let cases = [
        [2, 3, 8, 15, 15, 3, 1],
        [1, 3, 16, 32, 24, 3, 1],
        [3, 1, 4, 7, 9, 3, 1],
        [2, 4, 5, 1, 2, 3, 1],
        [2, 3, 6, 19, 16, 7, 3],
        [1, 32, 24, 9, 11, 3, 1],
        [3, 12, 20, 10, 7, 1, 0],
    ];
    for (i, &[n, c_in, c_out, h, w, k, pad]) in cases.iter().enumerate() {
        for stride in [1, 2] {
            compare_conv(
                &format!("dense {:?} stride {stride}", cases[i]),
                i,
                [[n, c_in, h, w], [c_out, c_in, k, k]],
                ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1),
                |x, weight| fast_ops::dense_conv(x, weight, DenseGeometry { stride, pad }),
            );
        }
    }
}

#[test]
fn fast_convs_accept_non_contiguous_inputs() {
    let d = device();
    // A [n, h, c, w] tensor viewed as [n, c, h, w]: strided, not contiguous.
    let x = random([2, 9, 6, 11], 5, &d).swap_dims(1, 2);
    let pw = random([4, 6, 1, 1], 6, &d);
    let dw = random([6, 1, 3, 3], 7, &d);
    let y_fast = fast_ops::pointwise_conv(x.clone(), pw.clone(), 1);
    let y_ref = conv2d(
        x.clone(),
        pw,
        None,
        ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
    );
    assert_close(&values(&y_fast), &values(&y_ref), "pointwise on a view");
    let y_fast = fast_ops::depthwise_conv3x3(x.clone(), dw.clone(), 2);
    let y_ref = conv2d(x, dw, None, ConvOptions::new([2, 2], [1, 1], [1, 1], 6));
    assert_close(&values(&y_fast), &values(&y_ref), "depthwise on a view");
}

#[test]
fn an_input_without_grad_gets_none_and_the_weight_still_learns() {
    let d = device();
    let x = random([2, 3, 9, 9], 1, &d); // like the image batch: no grad
    let weight = random([3, 1, 3, 3], 2, &d).require_grad();
    let y = fast_ops::depthwise_conv3x3(x.clone(), weight.clone(), 2);
    let grads = y.sum().backward();
    assert!(x.grad(&grads).is_none());
    let dw = values(&weight.grad(&grads).unwrap());
    assert!(dw.iter().any(|v| *v != 0.0));
}

fn bn_reference(x: Tensor<4>, gamma: Tensor<4>, beta: Tensor<4>, act: Act) -> Tensor<4> {
    let c = x.dims()[1];
    let y = burn::tensor::module::batch_norm_train(x, gamma.reshape([c]), beta.reshape([c]), 1e-5)
        .output;
    match act {
        Act::Identity => y,
        Act::Relu => relu(y),
        Act::Relu6 => relu6(y),
    }
}

#[test]
fn fused_batch_norm_matches_burn_batch_norm_and_activations() {
    // (batch, channels, h, w)
    let cases = [(1, 1, 7, 7), (3, 5, 4, 6), (2, 17, 13, 13), (16, 32, 7, 7)];
    for (i, &(n, c, h, w)) in cases.iter().enumerate() {
        for act in [Act::Identity, Act::Relu, Act::Relu6] {
            let d = device();
            // Inputs around 2 with spread 3 and gamma up to 4: ReLU6 clips at both ends.
            let x = random([n, c, h, w], i as u64, &d)
                .mul_scalar(3.0)
                .add_scalar(2.0);
            let gamma = random([1, 1, 1, c], 10 + i as u64, &d)
                .mul_scalar(2.0)
                .add_scalar(2.0);
            let beta = random([1, 1, 1, c], 20 + i as u64, &d)
                .mul_scalar(3.0)
                .add_scalar(2.0);
            compare(
                &format!("batch norm {:?} {act:?}", cases[i]),
                &[x, gamma, beta],
                |t| {
                    fast_ops::batch_norm_act_train(
                        t[0].clone(),
                        t[1].clone().reshape([c]),
                        t[2].clone().reshape([c]),
                        1e-5,
                        act,
                    )
                    .output
                },
                |t| bn_reference(t[0].clone(), t[1].clone(), t[2].clone(), act),
            );
        }
    }
}

#[test]
fn fused_batch_norm_statistics_and_inference_match_burn() {
    let d = device();
    let x = random([4, 6, 5, 5], 3, &d).mul_scalar(2.0).add_scalar(1.0);
    let gamma = random([6], 4, &d);
    let beta = random([6], 5, &d);
    let fast =
        fast_ops::batch_norm_act_train(x.clone(), gamma.clone(), beta.clone(), 1e-5, Act::Identity);
    let reference =
        burn::tensor::module::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
    assert_close(&values(&fast.mean), &values(&reference.mean), "batch mean");
    assert_close(
        &values(&fast.variance),
        &values(&reference.variance),
        "batch variance",
    );

    // Inference (no autodiff) with given statistics, against burn's batch_norm + relu6.
    let plain = Device::flex();
    let on = |t: &Tensor<1>| Tensor::<1>::from_data(t.to_data(), &plain);
    let x = Tensor::<4>::from_data(x.to_data(), &plain);
    let (mean, var) = (on(&reference.mean), on(&reference.variance).add_scalar(0.5));
    let fast = fast_ops::batch_norm_act_eval(
        x.clone(),
        on(&gamma),
        on(&beta),
        mean.clone(),
        var.clone(),
        1e-3,
        Act::Relu6,
    );
    let reference = relu6(burn::tensor::module::batch_norm(
        x,
        on(&gamma),
        on(&beta),
        mean,
        var,
        1e-3,
    ));
    assert_close(&values(&fast), &values(&reference), "inference batch norm");
}

#[test]
fn pools_match_burn_pools() {
    // [batch, channels, h, w, kernel, stride, pad]: the stems' and ShuffleNet v1's 3x3/2
    // windows at odd and even sizes, and windows the separable pass does not cover.
    let cases = [
        [2, 3, 16, 16, 3, 2, 1],
        [1, 5, 15, 9, 3, 2, 1],
        [3, 2, 1, 2, 3, 2, 1],
        [2, 4, 8, 7, 2, 2, 0],
        [1, 3, 9, 10, 3, 1, 1],
    ];
    for (i, &[n, c, h, w, kernel, stride, pad]) in cases.iter().enumerate() {
        let x = random([n, c, h, w], 40 + i as u64, &device());
        for max in [true, false] {
            let window = fast_ops::Window {
                kernel,
                stride,
                pad,
                max,
            };
            compare(
                &format!("pool {:?} max={max}", cases[i]),
                std::slice::from_ref(&x),
                |t| fast_ops::pool2d(t[0].clone(), window),
                |t| fast_ops::burn_pool2d(t[0].clone(), window),
            );
        }
    }
}

#[test]
fn channel_split_and_interleave_match_narrow_and_concat_shuffle() {
    use dermclass::model::blocks::concat_shuffle;
    // [batch, channels, h, w]: ShuffleNet v2's stride-1 unit, where the input is both split
    // (its second half goes through a branch, here a product with a fixed random tensor) and
    // read whole by the merge, so its gradient gathers from both; then the stride-2 merge
    // of two equal branches.
    let cases = [[2, 8, 5, 7], [1, 116, 16, 16], [3, 2, 1, 1]];
    for (i, &[n, c, h, w]) in cases.iter().enumerate() {
        let d = device();
        let x = random([n, c, h, w], 60 + i as u64, &d);
        let scale = random([n, c / 2, h, w], 70 + i as u64, &d);
        compare(
            &format!("stride-1 unit {:?}", cases[i]),
            std::slice::from_ref(&x),
            |t| {
                let right = fast_ops::take_channels(t[0].clone(), c / 2, c / 2);
                fast_ops::interleave(t[0].clone(), right * scale.clone())
            },
            |t| {
                let left = t[0].clone().narrow(1, 0, c / 2);
                let right = t[0].clone().narrow(1, c / 2, c / 2);
                concat_shuffle(left, right * scale.clone())
            },
        );
        let b = random([n, c, h, w], 80 + i as u64, &d);
        compare(
            &format!("stride-2 merge {:?}", cases[i]),
            &[x, b],
            |t| fast_ops::interleave(t[0].clone(), t[1].clone()),
            |t| concat_shuffle(t[0].clone(), t[1].clone()),
        );
    }
}

#[test]
fn channel_shuffle_matches_the_reshape_transpose_shuffle() {
    use dermclass::model::blocks::channel_shuffle;
    for (i, &[n, c, h, w, groups]) in [[2, 12, 5, 7, 3], [1, 240, 8, 8, 3], [3, 8, 1, 1, 2]]
        .iter()
        .enumerate()
    {
        let x = random([n, c, h, w], 90 + i as u64, &device());
        compare(
            &format!("channel shuffle [{n}, {c}, {h}, {w}] in {groups} groups"),
            std::slice::from_ref(&x),
            |t| fast_ops::channel_shuffle(t[0].clone(), groups),
            |t| channel_shuffle(t[0].clone(), groups),
        );
    }
}

#[test]
fn add_relu_matches_burn_add_then_relu() {
    let d = device();
    let a = random([2, 6, 9, 7], 110, &d);
    let b = random([2, 6, 9, 7], 111, &d);
    compare(
        "residual add + relu",
        &[a.clone(), b],
        |t| fast_ops::add_relu(t[0].clone(), t[1].clone()),
        |t| relu(t[0].clone() + t[1].clone()),
    );
    // One tensor as both operands (its gradient gathers twice).
    compare(
        "add_relu(a, a)",
        std::slice::from_ref(&a),
        |t| fast_ops::add_relu(t[0].clone(), t[0].clone()),
        |t| relu(t[0].clone() + t[0].clone()),
    );
}
