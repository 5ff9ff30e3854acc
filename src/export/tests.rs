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
