use prost::Message;

use super::proto::{ModelProto, NodeProto};
use super::*;
use crate::model::ModelSpec;

fn info(classes: usize) -> ExportInfo {
    ExportInfo {
        arch: "mobilenet_v2:0.35".to_string(),
        classes: (0..classes).map(|c| format!("C{c}")).collect(),
        width: 40,
        height: 32,
        normalization: ([0.5; 3], [-1.0; 3]),
        shades_of_gray: Some(6.0),
        logit_offsets: vec![0.25; classes],
        temperature: 1.0,
        extra: vec![("validation_bacc".to_string(), "0.5".to_string())],
    }
}

fn exported(spec: &str, info: &ExportInfo) -> ModelProto {
    let model = ModelSpec::parse(spec, info.classes.len())
        .unwrap()
        .build(&Device::default())
        .unwrap();
    let bytes = to_onnx(&model, info).unwrap();
    ModelProto::decode(bytes.as_slice()).unwrap()
}

fn ops(model: &ModelProto) -> Vec<&str> {
    let graph = model.graph.as_ref().unwrap();
    graph
        .node
        .iter()
        .map(|n: &NodeProto| n.op_type.as_str())
        .collect()
}

#[test]
fn the_file_declares_its_interface_and_preprocessing() {
    let info = info(3);
    let model = exported("mobilenet_v2:0.35", &info);
    assert_eq!(model.opset_import[0].version, OPSET);
    assert_eq!(model.ir_version, 8);
    let graph = model.graph.as_ref().unwrap();
    assert_eq!(graph.input.len(), 1);
    assert_eq!(graph.input[0].name, "image");
    let dims = &graph.input[0]
        .r#type
        .as_ref()
        .unwrap()
        .tensor_type
        .as_ref()
        .unwrap()
        .shape
        .as_ref()
        .unwrap()
        .dim;
    assert_eq!(
        dims[0].dim_param.as_deref(),
        Some("N"),
        "the batch is dynamic"
    );
    let fixed: Vec<Option<i64>> = dims[1..].iter().map(|d| d.dim_value).collect();
    assert_eq!(fixed, vec![Some(3), Some(32), Some(40)]);
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["logits", "probabilities"]);
    let meta: std::collections::HashMap<&str, &str> = model
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(meta["classes"], "C0,C1,C2");
    assert_eq!(meta["input_width"], "40");
    assert_eq!(meta["pixel_scale"], "0.5,0.5,0.5");
    assert_eq!(meta["shades_of_gray"], "6.0");
    assert_eq!(meta["validation_bacc"], "0.5");
    assert!(meta["preprocessing"].contains("Shades of Gray"));
}

#[test]
fn batch_norm_is_folded_and_every_weight_is_an_initializer() {
    let model = exported("shufflenet_v2:0.5", &info(3));
    let ops = ops(&model);
    assert!(!ops.contains(&"BatchNormalization"), "{ops:?}");
    assert!(ops.contains(&"Conv") && ops.contains(&"Split") && ops.contains(&"Gather"));
    let graph = model.graph.as_ref().unwrap();
    let defined: std::collections::HashSet<&str> = graph
        .initializer
        .iter()
        .map(|t| t.name.as_str())
        .chain(graph.input.iter().map(|i| i.name.as_str()))
        .chain(
            graph
                .node
                .iter()
                .flat_map(|n| n.output.iter().map(|s| s.as_str())),
        )
        .collect();
    for node in &graph.node {
        for input in &node.input {
            assert!(
                defined.contains(input.as_str()),
                "{} reads undefined {input}",
                node.name
            );
        }
    }
}

#[test]
fn the_adjustment_is_added_before_the_softmax_only_when_there_is_one() {
    let with = exported("mobilenet_v1:0.25", &info(3));
    assert_eq!(
        ops(&with)[ops(&with).len() - 3..],
        ["Identity", "Add", "Softmax"]
    );
    let mut plain = info(3);
    plain.logit_offsets.clear();
    let without = exported("mobilenet_v1:0.25", &plain);
    assert_eq!(
        ops(&without)[ops(&without).len() - 2..],
        ["Identity", "Softmax"]
    );
}

#[test]
fn a_temperature_divides_the_adjusted_logits() {
    let device = Device::default();
    let model = crate::model::tests::built("tiny_cnn:0.5", 3, &device);
    let mut info = info(3);
    info.temperature = 2.0;
    let graph = fp32_graph(&model, &info);
    let names: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(
        names[names.len() - 4..],
        ["Identity", "Add", "Mul", "Softmax"]
    );
    let x = Tensor::<4>::random([2, 3, 32, 32], burn::tensor::Distribution::Default, &device);
    let logits: Vec<f32> = model.forward(x.clone()).into_data().iter::<f32>().collect();
    let out = eval::run(&graph, x, &mut eval::Ranges::new()).unwrap();
    let probs: Vec<f32> = out[1].clone().into_data().iter::<f32>().collect();
    assert_eq!(probs.len(), logits.len());
    for (z, p) in logits.chunks(3).zip(probs.chunks(3)) {
        let e: Vec<f32> = z.iter().map(|v| ((v + 0.25) / 2.0).exp()).collect();
        let total: f32 = e.iter().sum();
        for (want, got) in e.iter().map(|v| v / total).zip(p) {
            assert!((want - got).abs() < 1e-5, "{want} vs {got}");
        }
    }
    info.temperature = 0.0;
    let err = to_onnx(&model, &info).unwrap_err().to_string();
    assert!(err.contains("temperature must be positive"), "{err}");
}

#[test]
fn inconsistent_descriptions_are_refused() {
    let model = ModelSpec::parse("mobilenet_v1:0.25", 3)
        .unwrap()
        .build(&Device::default())
        .unwrap();
    let mut bad = info(3);
    bad.logit_offsets = vec![0.0; 2];
    let err = to_onnx(&model, &bad).unwrap_err().to_string();
    assert!(err.contains("2 logit offsets for 3 classes"), "{err}");
    let err = to_onnx(&model, &info(1)).unwrap_err().to_string();
    assert!(err.contains("at least 2 classes"), "{err}");
}

#[test]
fn the_reference_interpreter_reproduces_the_model() {
    let device = Device::default();
    let mut info = info(7);
    info.logit_offsets = vec![0.0, 0.5, -0.5, 1.0, 0.0, 0.2, -1.0];
    for name in [
        "mobilenet_v2:0.35",
        "shufflenet_v1:g3:0.5",
        "shufflenet_v2:0.5",
        "tiny_cnn:0.5",
    ] {
        let model = crate::model::tests::built(name, 7, &device);
        let x = Tensor::<4>::random(
            [2, 3, 32, 40],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let want = model.forward(x.clone());
        let graph = fp32_graph(&model, &info);
        let mut ranges = eval::Ranges::new();
        let out = eval::run(&graph, x, &mut ranges).unwrap();
        let logits = out[0].clone().reshape([2, 7]);
        logits
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::absolute(1e-4));
        let probs: Vec<f32> = out[1].clone().into_data().iter::<f32>().collect();
        for row in probs.chunks(7) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{name}");
        }
        let (low, high) = ranges["image"];
        assert!(
            low < -1.0 && high > 1.0,
            "the input's range is recorded: {low} {high}"
        );
    }
}

#[test]
fn activation_ranges_map_to_uint8_with_an_exact_zero() {
    let (scale, zero) = quantize::activation_params(-1.0, 3.0);
    assert!((scale - 4.0 / 255.0).abs() < 1e-7);
    assert_eq!(zero, 64); // round(1 / (4/255)) = round(63.75)
    // A range that excludes 0 is widened to include it (ReLU outputs start at 0).
    assert_eq!(quantize::activation_params(2.0, 6.0), (6.0 / 255.0, 0));
    // A constant zero value gets a usable scale.
    assert_eq!(quantize::activation_params(0.0, 0.0), (1.0, 0));
}

#[test]
fn weights_quantize_symmetrically_per_output_channel() {
    // Two output channels of three weights, channel first (a Conv weight).
    let w = [0.5, -1.0, 0.25, 0.02, 0.01, -0.03];
    let (q, scales) = quantize::quantize_per_channel(&w, 2, false);
    assert_eq!(scales, vec![1.0 / 127.0, 0.03 / 127.0]);
    assert_eq!(q, vec![64, -127, 32, 85, 42, -127]);
    // Channel last (a Gemm weight [in, out]): columns share a scale.
    let (q, scales) = quantize::quantize_per_channel(&[1.0, 0.1, -0.5, 0.2], 2, true);
    assert_eq!(scales, vec![1.0 / 127.0, 0.2 / 127.0]);
    assert_eq!(q, vec![127, 64, -64, 127]);
}

#[test]
fn the_int8_file_holds_int8_weights_and_qdq_pairs_and_is_under_a_third() {
    let device = Device::default();
    let info = info(3);
    let model = crate::model::tests::built("mobilenet_v2:0.35", 3, &device);
    let batch = Tensor::<4>::random(
        [4, 3, 32, 40],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let fp32 = to_onnx(&model, &info).unwrap();
    let int8 = to_onnx_int8(&model, &info, vec![batch]).unwrap();
    assert!(
        int8.len() * 3 < fp32.len(),
        "{} vs {}",
        int8.len(),
        fp32.len()
    );
    let decoded = ModelProto::decode(int8.as_slice()).unwrap();
    let ops = ops(&decoded);
    let convs = ops.iter().filter(|o| **o == "Conv").count();
    let quantize = ops.iter().filter(|o| **o == "QuantizeLinear").count();
    assert!(convs > 10 && quantize > 10, "{ops:?}");
    let graph = decoded.graph.as_ref().unwrap();
    let int8_weights = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == 3)
        .count();
    assert!(int8_weights >= convs, "every conv weight is int8");
    assert!(
        decoded
            .metadata_props
            .iter()
            .any(|p| p.key == "quantization" && p.value.contains("4 calibration images"))
    );
    let err = to_onnx_int8(&model, &info, Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no calibration images"), "{err}");
}
