//! Model-zoo tests: published cost figures, parameter counts of the built modules, forward
//! shapes, and clear errors.

use burn::module::Module;
use burn::prelude::*;

use super::*;

fn cost(name: &str) -> CostTable {
    ModelSpec::parse(name, 1000)
        .unwrap()
        .cost(224, 224)
        .unwrap()
}

/// The model `name` with `classes` outputs, freshly initialised (panics on a bad name).
pub(crate) fn built(name: &str, classes: usize, device: &Device) -> Classifier {
    ModelSpec::parse(name, classes)
        .unwrap()
        .build(device)
        .unwrap()
}

/// Asserts `actual` is within `percent` % of `expected`.
fn assert_close(what: &str, actual: f64, expected: f64, percent: f64) {
    let error = (actual - expected).abs() / expected * 100.0;
    assert!(
        error <= percent,
        "{what}: {actual} is {error:.2}% away from {expected} (allowed {percent}%)"
    );
}

/// Asserts `name`'s parameters and MAdds at 224x224 are within `percent` % of the figures.
fn assert_cost_close(name: &str, params: f64, madds: f64, percent: f64) {
    let t = cost(name);
    assert_close(
        &format!("{name} params"),
        t.params() as f64,
        params,
        percent,
    );
    assert_close(&format!("{name} madds"), t.madds() as f64, madds, percent);
}

#[test]
fn mobilenet_v1_matches_the_paper() {
    // Howard et al. 2017, Tables 1 and 6; TF-slim reports 4.24M for 1.0.
    let cases = [
        ("mobilenet_v1:1.0", 4.23e6, 569e6, 1.0),
        ("mobilenet_v1:0.75", 2.59e6, 325e6, 3.0),
        ("mobilenet_v1:0.5", 1.33e6, 149e6, 3.0),
        ("mobilenet_v1:0.25", 0.47e6, 41e6, 3.0),
    ];
    for (name, params, madds, tolerance) in cases {
        assert_cost_close(name, params, madds, tolerance);
    }
    // The paper gives 325M for 0.75; TF-slim's table gives 317M: accept both within 3%.
    let t = cost("mobilenet_v1:0.75");
    assert_close("mobilenet_v1:0.75 (slim)", t.madds() as f64, 317e6, 3.0);
}

#[test]
fn conv_mobilenet_matches_the_paper() {
    // Howard et al. 2017, Table 4: Conv MobileNet 4866M MAdds, 29.3M parameters.
    assert_cost_close("plain_v1:1.0", 29.3e6, 4866e6, 2.0);
}

#[test]
fn mobilenet_v2_matches_torchvision_and_slim() {
    let t = cost("mobilenet_v2:1.0");
    assert_eq!(t.params(), 3_504_872, "torchvision mobilenet_v2");
    assert_close("mobilenet_v2:1.0 madds", t.madds() as f64, 300e6, 2.0);
    assert_cost_close("mobilenet_v2:1.4", 6.06e6, 582e6, 2.0);
}

#[test]
fn shufflenet_v1_matches_the_paper() {
    // Zhang et al. 2018: ShuffleNet 1x (g=3) 140 MFLOPs; 1.87M parameters.
    assert_cost_close("shufflenet_v1:g3", 1.87e6, 139e6, 3.0);
}

#[test]
fn shufflenet_v2_matches_torchvision() {
    let t = cost("shufflenet_v2:1.0");
    assert_eq!(t.params(), 2_278_604, "torchvision shufflenet_v2_x1_0");
    assert_close("shufflenet_v2:1.0 madds", t.madds() as f64, 146e6, 2.0);
    // The other widths torchvision ships (its published parameter counts).
    for (name, params) in [
        ("shufflenet_v2:0.5", 1_366_792),
        ("shufflenet_v2:1.5", 3_503_624),
        ("shufflenet_v2:2.0", 7_393_996),
    ] {
        assert_eq!(cost(name).params(), params, "{name}");
    }
}

#[test]
fn resnet50_matches_torchvision() {
    let t = cost("resnet50");
    assert_eq!(t.params(), 25_557_032, "torchvision resnet50");
    assert_close("resnet50 madds", t.madds() as f64, 4.09e9, 2.0);
}

/// Every family at a small size where that exists, for tests that build and run each one
/// (here and in the inference plan's tests).
pub(crate) const SMALL_OF_EACH_FAMILY: [&str; 8] = [
    "plain_v1:0.25",
    "mobilenet_v1:0.25",
    "mobilenet_v2:0.35",
    "shufflenet_v1:g3:0.5",
    "shufflenet_v1:g8:0.5",
    "shufflenet_v2:0.5",
    "resnet50",
    "tiny_cnn:0.5",
];

#[test]
fn counted_parameters_equal_the_built_module() {
    // Built on an autodiff device, where trainable tensors require gradients and batch-norm
    // running statistics (which burn's `num_params` includes) do not.
    let device = Device::default().autodiff();
    for family in FAMILIES {
        for name in family.examples() {
            let spec = ModelSpec::parse(name, 7).unwrap();
            let model = spec.build(&device).unwrap();
            let counted = spec.cost(224, 224).unwrap().params();
            assert_eq!(trainable_params(&model), counted, "{name}");
            assert!(
                model.num_params() > counted,
                "{name}: running stats are buffers"
            );
        }
    }
}

#[test]
fn forward_gives_finite_logits_for_square_and_dermoscopy_inputs() {
    let device = Device::default();
    for name in SMALL_OF_EACH_FAMILY.into_iter().chain(["mobilenet_v2:1.0"]) {
        let model = built(name, 7, &device);
        for [h, w] in [[224, 224], [150, 200]] {
            let x = Tensor::<4>::random(
                [2, 3, h, w],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let logits = model.forward(x);
            assert_eq!(logits.dims(), [2, 7], "{name} at {h}x{w}");
            let values: Vec<f32> = logits.into_data().try_to_vec().unwrap();
            assert!(values.iter().all(|v| v.is_finite()), "{name} at {h}x{w}");
        }
    }
}

#[test]
fn smallest_input_runs_and_smaller_is_rejected() {
    let device = Device::default();
    let spec = ModelSpec::parse("mobilenet_v2:0.35", 7).unwrap();
    let x = Tensor::<4>::zeros([1, 3, MIN_INPUT, MIN_INPUT + 9], &device);
    assert_eq!(spec.build(&device).unwrap().forward(x).dims(), [1, 7]);
    let err = spec.cost(31, 224).unwrap_err();
    assert!(matches!(err, ModelError::InputTooSmall(_)), "{err}");
    assert!(err.to_string().contains("at least 32"), "{err}");
}

#[test]
fn separable_saving_matches_the_paper_formula() {
    // Howard et al. 2017, eq. 5: depthwise + pointwise costs 1/N + 1/Dk^2 of a standard conv.
    for (channels_in, channels_out, size) in [(32, 64, 112), (512, 512, 14), (3, 7, 9)] {
        let mut standard = CostTable::new(channels_in, size, size);
        standard
            .conv("std", channels_out, 3, 1, 1, 1, false)
            .unwrap();
        let mut separable = CostTable::new(channels_in, size, size);
        separable
            .conv("dw", channels_in, 3, 1, 1, channels_in, false)
            .unwrap();
        separable
            .conv("pw", channels_out, 1, 1, 0, 1, false)
            .unwrap();
        let ratio = separable.madds() as f64 / standard.madds() as f64;
        let formula = 1.0 / channels_out as f64 + 1.0 / 9.0;
        assert!((ratio - formula).abs() < 1e-12, "{ratio} vs {formula}");
    }
}

#[test]
fn shufflenet_blocks_use_channel_shuffle() {
    // Replace the shuffle by a no-op and the network's output changes: the blocks use it.
    // Checked structurally instead: every grouped unit records its shuffle groups.
    let config = shufflenet_v1::ShuffleNetV1Config {
        groups: 3,
        scale: 1.0,
        classes: 7,
        dropout: 0.0,
    };
    let units = config.units().unwrap();
    assert_eq!(units.len(), 16);
    assert!(units.iter().all(|u| u.shuffle_groups == 3));
}

#[test]
fn names_parse_and_print_back() {
    for family in FAMILIES {
        for name in family.examples() {
            let arch: Arch = name.parse().unwrap();
            let again: Arch = arch.to_string().parse().unwrap();
            assert_eq!(arch, again, "{name}");
        }
    }
    let default_groups: Arch = "shufflenet_v1".parse().unwrap();
    assert_eq!(default_groups.to_string(), "shufflenet_v1:g3:1.0");
    assert_eq!(default_groups, "shufflenet_v1:g3:1".parse().unwrap());
    let mixed_case: Arch = "MobileNet_V2".parse().unwrap();
    assert_eq!(mixed_case.to_string(), "mobilenet_v2:1.0");
    assert_ne!(mixed_case, "mobilenet_v2:0.5".parse().unwrap());
}

#[test]
fn mobilenet_v2_adds_its_shortcuts_unless_told_not_to() {
    let adds = |name: &str| {
        let model = ModelSpec::parse(name, 7)
            .unwrap()
            .build(&Device::default())
            .unwrap();
        crate::export::network_graph(&model)
            .node
            .iter()
            .filter(|n| n.op_type == "Add")
            .count()
    };
    // torchvision's MobileNetV2: 17 blocks, 10 of which keep their shape.
    assert_eq!(adds("mobilenet_v2:1.0"), 10);
    assert_eq!(adds("mobilenet_v2:0.35"), 10);
    assert_eq!(adds("mobilenet_v2:1.0:noskip"), 0);
    let noskip: Arch = "mobilenet_v2:noskip".parse().unwrap();
    assert_eq!(noskip.to_string(), "mobilenet_v2:1.0:noskip");
}

#[test]
fn bad_names_give_clear_errors() {
    let cases = [
        ("efficientnet_b0", "unknown architecture"),
        ("mobilenet_v2:abc", "not a number"),
        ("mobilenet_v2:-1", "must be in (0, 4]"),
        ("mobilenet_v1:0", "must be in (0, 4]"),
        ("mobilenet_v2:1.0:2", "too many options"),
        ("shufflenet_v1:g5", "groups must be 1, 2, 3, 4 or 8"),
        ("shufflenet_v1:gx", "must look like g3"),
        ("shufflenet_v2:0.75", "scale must be 0.5, 1.0, 1.5 or 2.0"),
        ("resnet50:2", "too many options"),
    ];
    for (name, expected) in cases {
        let err = ModelSpec::parse(name, 7).unwrap_err().to_string();
        assert!(err.contains(expected), "{name}: {err}");
    }
    let err = ModelSpec::parse("resnet50", 1).unwrap_err().to_string();
    assert!(err.contains("at least 2 classes"), "{err}");
}
