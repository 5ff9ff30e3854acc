//! Exported ONNX files run in tract (a pure-Rust ONNX runtime) and reproduce dermclass's
//! own outputs: every registered family, and the shipped model on the bundled images.

use std::path::Path;

use crate::helpers::stdout_of_success;
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::Distribution;
use dermclass::data::loader::Loader;
use dermclass::data::source::Sample;
use dermclass::export::{ExportInfo, to_onnx, to_onnx_int8};
use dermclass::infer::InferenceModel;
use dermclass::model::{Classifier, FAMILIES, ModelSpec};
use dermclass::train::adjust::LogitAdjustment;
use dermclass::train::checkpoint;
use dermclass::train::evaluate::{Tta, batch_probabilities};
use dermclass::train::trainer::eval_loader_config;

/// Runs an exported file on `input` (`shape`), returning (logits, probabilities).
fn run_tract(bytes: &[u8], input: Vec<f32>, shape: [usize; 4]) -> (Vec<f32>, Vec<f32>) {
    tract::run(bytes, input, shape)
}

/// tract's prelude kept apart from burn's (both name a `Tensor`).
mod tract {
    use tract_onnx::prelude::*;

    pub fn run(bytes: &[u8], input: Vec<f32>, shape: [usize; 4]) -> (Vec<f32>, Vec<f32>) {
        let model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .expect("tract reads the file")
            .with_input_fact(0, f32::fact(shape).into())
            .unwrap()
            .into_optimized()
            .expect("tract optimises the graph")
            .into_runnable()
            .unwrap();
        let x = tract_ndarray::Array4::from_shape_vec(shape, input).unwrap();
        let outputs = model.run(tvec!(x.into_tensor().into())).unwrap();
        let flat = |i: usize| -> Vec<f32> {
            outputs[i]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        };
        (flat(0), flat(1))
    }
}

/// Gives every 1-D tensor (batch-norm scale, shift and running statistics, biases) random
/// values in [0.5, 1.5], so that folding the batch norm is really exercised.
struct TrainedLooking;

impl ModuleMapper for TrainedLooking {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D != 1 {
            return param;
        }
        param.map(|t| {
            let shape = t.shape();
            let device = t.device();
            Tensor::random(shape, Distribution::Uniform(0.5, 1.5), &device)
        })
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance * scale,
            "{what}[{i}]: tract {g} vs dermclass {w} (tolerance {tolerance} x {scale})"
        );
    }
}

fn info(arch: &str, classes: usize, offsets: Vec<f32>, height: usize, width: usize) -> ExportInfo {
    ExportInfo {
        arch: arch.to_string(),
        classes: (0..classes).map(|c| format!("class{c}")).collect(),
        width,
        height,
        normalization: ([1.0 / 255.0; 3], [0.0; 3]),
        shades_of_gray: None,
        logit_offsets: offsets,
        temperature: 1.0,
        extra: Vec::new(),
    }
}

fn write_f32(path: &Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

/// Runs an export in onnxruntime through `bench/onnx_check.py` and returns its report of
/// differences from `logits`/`probs`; `None` when onnxruntime is absent.
fn onnxruntime_report(
    name: &str,
    bytes: &[u8],
    input: &[f32],
    shape: [usize; 4],
    logits: &[f32],
    probs: &[f32],
) -> Option<serde_json::Value> {
    let python = crate::helpers::venv_python_with("onnxruntime, numpy")?;
    let dir = tempfile::tempdir().unwrap();
    let file = |n: &str| dir.path().join(n);
    std::fs::write(file("model.onnx"), bytes).unwrap();
    write_f32(&file("input.f32"), input);
    write_f32(&file("logits.f32"), logits);
    write_f32(&file("probs.f32"), probs);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/onnx_check.py");
    let shape = shape.map(|d| d.to_string()).join(",");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(file("model.onnx"))
        .arg(file("input.f32"))
        .arg(shape)
        .arg(file("logits.f32"))
        .arg(file("probs.f32"))
        .output()
        .unwrap();
    let stdout = stdout_of_success(&format!("{name}: onnxruntime"), &out);
    Some(serde_json::from_str(stdout.trim()).unwrap())
}

/// Checks the `report` of an fp32 export's run in onnxruntime (see [`onnxruntime_report`]);
/// false when it was skipped.
fn check_onnxruntime_report(name: &str, report: Option<serde_json::Value>) -> bool {
    let Some(report) = report else {
        return false;
    };
    let diff = |k: &str| report[k].as_f64().unwrap();
    assert!(
        diff("logits_max_abs_diff") <= 1e-4 * diff("logits_scale"),
        "{name}: {report}"
    );
    assert!(
        diff("probabilities_max_abs_diff") <= 1e-4,
        "{name}: {report}"
    );
    true
}

fn skip_note(checked: bool) {
    if !checked {
        eprintln!(
            "SKIPPED the onnxruntime half: bench/.venv lacks onnxruntime (run bench/setup-peers.sh)"
        );
    }
}

#[test]
fn every_family_exports_and_tract_gives_the_same_logits_and_probabilities() {
    let device = Device::default();
    let (batch, height, width) = (2, 64, 48);
    let offsets = [0.3f32, -0.2, 0.0, 1.1, -0.7, 0.05, 0.4];
    let adjustment = LogitAdjustment {
        prior: offsets.iter().map(|o: &f32| (-o).exp() as f64).collect(),
        tau: 1.0,
        temperature: 1.0,
    };
    for family in FAMILIES {
        let name = family.examples()[0];
        let model: Classifier = ModelSpec::parse(name, 7)
            .unwrap()
            .build(&device)
            .unwrap()
            .map(&mut TrainedLooking);
        let shape = [batch, 3, height, width];
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let input: Vec<f32> = x.clone().into_data().iter::<f32>().collect();
        let logits: Vec<f32> = model.forward(x).into_data().iter::<f32>().collect();
        // The decision rule's offsets are `-tau * ln(prior)`; normalising the prior only
        // shifts every logit alike, which the softmax ignores.
        let bytes = to_onnx(
            &model,
            &info(name, 7, adjustment.logit_offsets(), height, width),
        )
        .unwrap();
        let input_copy = input.clone();
        let (tract_logits, tract_probs) = run_tract(&bytes, input, shape);
        assert_close(&format!("{name} logits"), &tract_logits, &logits, 1e-4);
        let mut probs = Vec::new();
        for row in logits.chunks(7) {
            let mut p = softmax(row);
            adjustment.apply(&mut p);
            probs.extend(p);
        }
        assert_close(&format!("{name} probabilities"), &tract_probs, &probs, 1e-4);
        let x: Vec<f32> = input_copy;
        let report = onnxruntime_report(name, &bytes, &x, shape, &logits, &probs);
        skip_note(check_onnxruntime_report(name, report));
    }
}

fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let exp: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

#[test]
fn the_shipped_model_exports_and_tract_reproduces_its_predictions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let checkpoint =
        checkpoint::load(&dermclass::train::shipped_model_file()).expect("the shipped model loads");
    let device = Device::default();
    let model = checkpoint.model(&device).unwrap();
    let info = ExportInfo::for_checkpoint(&checkpoint);
    let bytes = to_onnx(&model, &info).unwrap();
    // The bundled demo images through predict's own loader and decision rule.
    let demo = root.join("assets").join("demo");
    let mut samples: Vec<Sample> = std::fs::read_dir(&demo)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .map(|path| Sample {
            id: path.file_stem().unwrap().to_string_lossy().into_owned(),
            path,
            label: 0,
            lesion_id: None,
        })
        .collect();
    samples.sort_by(|a, b| a.id.cmp(&b.id));
    assert!(samples.len() >= 5, "bundled demo images");
    let loader = Loader::new(samples, eval_loader_config(&checkpoint.state.config)).unwrap();
    let rule = &checkpoint.state.adjustment;
    assert!(
        !rule.is_identity(),
        "the shipped model carries its logit adjustment"
    );
    let predictor = InferenceModel::new(model.clone(), &device).unwrap();
    for batch in loader.epoch(0) {
        let batch = batch.unwrap();
        let want = batch_probabilities(&predictor, &batch, &device, Tta::One, rule);
        let (logits, got) = run_tract(&bytes, batch.images.clone(), batch.shape);
        assert_close("shipped model probabilities", &got, &want, 1e-4);
        let name = "shipped model";
        let report = onnxruntime_report(name, &bytes, &batch.images, batch.shape, &logits, &want);
        skip_note(check_onnxruntime_report(name, report));
        // int8, calibrated on these images: the same answers, probabilities close.
        let x = Tensor::<4>::from_data(TensorData::new(batch.images.clone(), batch.shape), &device);
        let int8 = to_onnx_int8(&model, &info, vec![x]).unwrap();
        assert!(
            int8.len() * 3 < bytes.len(),
            "{} vs {}",
            int8.len(),
            bytes.len()
        );
        let (_, quantized) = run_tract(&int8, batch.images.clone(), batch.shape);
        let top1 = |p: &[f32]| -> Vec<usize> {
            p.chunks(7)
                .map(|r| (0..7).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
                .collect()
        };
        let agree = top1(&quantized)
            .iter()
            .zip(top1(&want))
            .filter(|(a, b)| **a == *b)
            .count();
        assert!(
            agree + 1 >= batch.shape[0],
            "int8 top-1 agrees on {agree} of {}",
            batch.shape[0]
        );
        assert_close("int8 probabilities", &quantized, &want, 0.1);
        let report = onnxruntime_report("int8", &int8, &batch.images, batch.shape, &logits, &want);
        if let Some(report) = &report {
            let agreement = report["top1_agreement"].as_f64().unwrap();
            let n = batch.shape[0] as f64;
            assert!(agreement >= (n - 1.0) / n, "onnxruntime int8: {report}");
            assert!(
                report["probabilities_max_abs_diff"].as_f64().unwrap() <= 0.1,
                "{report}"
            );
        }
        skip_note(report.is_some());
    }
}
