use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::*;
use crate::export::proto::GraphProto;
use crate::model::tests::{SMALL_OF_EACH_FAMILY, built};

/// Every 1-D tensor (batch-norm scale, shift, running mean and variance, biases) drawn
/// from [0.5, 1.5], so folding the batch norms is far from the identity.
struct ScrambleNorms;

impl ModuleMapper for ScrambleNorms {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D != 1 {
            return param;
        }
        param.map(|t| {
            let device = t.device();
            Tensor::random(t.shape(), Distribution::Uniform(0.5, 1.5), &device)
        })
    }
}

fn model(arch: &str) -> Classifier {
    built(arch, 7, &Device::default())
        .map(&mut ScrambleNorms)
        .valid()
}

/// burn's eval-mode logits and the plan's, for `[n, 3, h, w]` random images.
fn both(model: &Classifier, compiled: &CompiledModel, shape: [usize; 4]) -> (Vec<f32>, Vec<f32>) {
    let device = Device::default();
    let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let images: Vec<f32> = x.to_data().try_to_vec::<f32>().unwrap();
    let want: Vec<f32> = model.forward(x).into_data().try_to_vec::<f32>().unwrap();
    let got = compiled
        .logits(&mut Workspace::default(), &images, shape)
        .unwrap();
    (want, got)
}

fn assert_close(what: &str, want: &[f32], got: &[f32]) {
    assert_eq!(want.len(), got.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        assert!(
            (w - g).abs() <= 1e-4 * scale,
            "{what}: logit {i} is {g}, burn says {w} (scale {scale})"
        );
    }
}

#[test]
fn folded_inference_equals_the_eval_model_for_every_family() {
    for arch in SMALL_OF_EACH_FAMILY {
        let model = model(arch);
        let compiled = CompiledModel::compile(&model).unwrap();
        for shape in [[1, 3, 67, 45], [16, 3, 40, 32], [3, 3, 33, 49]] {
            let (want, got) = both(&model, &compiled, shape);
            assert_close(&format!("{arch} at {shape:?}"), &want, &got);
        }
    }
}

#[test]
fn convolutions_absorb_their_batch_norm_activation_and_residual() {
    // Left besides the convolutions: ResNet's max pool, then global pool, flatten, linear
    // and the output copy. Every ReLU, Clip and residual Add went into an epilogue (ResNet's
    // projection blocks add into the shortcut convolution, which runs last).
    // MobileNetV2's 17 inverted-residual blocks become one step each: 16 of three
    // convolutions, the first (expansion factor 1) of two.
    for (arch, others, merged) in [("mobilenet_v2:0.35", 4, 16 * 2 + 1), ("resnet50", 5, 0)] {
        let model = model(arch);
        let graph: GraphProto = crate::export::network_graph(&model);
        let count = |op: &str| graph.node.iter().filter(|n| n.op_type == op).count();
        assert!(count("Add") >= 10, "{arch} has its shortcuts");
        let compiled = CompiledModel::compile(&model).unwrap();
        assert_eq!(compiled.steps(), count("Conv") - merged + others, "{arch}");
    }
}

#[test]
fn banded_blocks_equal_the_eval_model_on_wide_maps() {
    // At 1.0 width and these sizes the early blocks' expanded tensors pass the size from which
    // they are computed in bands of rows (MobileNetV1's depthwise-pointwise pairs too): e.g.
    // MobileNetV2's second block at 160x136, whose input after the stem is 80x68.
    let second_block = dermclass_kernels::block::BlockShape {
        n: 1,
        c_in: 16,
        c_mid: 96,
        c_out: 24,
        h: 80,
        w: 68,
        stride: 2,
    };
    assert!(dermclass_kernels::block::band_rows(&second_block).is_some());
    for arch in ["mobilenet_v2:1.0", "mobilenet_v1:1.0"] {
        let model = model(arch);
        let compiled = CompiledModel::compile(&model).unwrap();
        for shape in [[1, 3, 160, 136], [2, 3, 129, 97]] {
            let (want, got) = both(&model, &compiled, shape);
            assert_close(&format!("{arch} at {shape:?}"), &want, &got);
        }
    }
}

#[test]
fn one_workspace_serves_runs_of_different_shapes() {
    let model = model("shufflenet_v2:0.5");
    let compiled = CompiledModel::compile(&model).unwrap();
    let mut ws = Workspace::default();
    let x = vec![0.25f32; 2 * 3 * 48 * 40];
    let big = compiled.logits(&mut ws, &x, [2, 3, 48, 40]).unwrap();
    let small = compiled
        .logits(&mut ws, &x[..3 * 32 * 32], [1, 3, 32, 32])
        .unwrap();
    let again = compiled.logits(&mut ws, &x, [2, 3, 48, 40]).unwrap();
    assert_eq!(big, again, "a reused workspace gives the same logits");
    assert_eq!(small.len(), 7);
}

#[test]
fn bad_inputs_are_errors() {
    let compiled = CompiledModel::compile(&model("mobilenet_v2:0.35")).unwrap();
    let mut ws = Workspace::default();
    let err = compiled
        .logits(&mut ws, &[0.0; 10], [1, 3, 32, 32])
        .unwrap_err();
    assert!(err.to_string().contains("10 values"), "{err}");
    let err = compiled
        .logits(&mut ws, &vec![0.0; 4 * 32 * 32], [1, 4, 32, 32])
        .unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}
