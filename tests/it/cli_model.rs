//! The `models`, `summary` and `export` commands, run as a user would.

use crate::helpers::{dermclass_cmd, dermclass_ok};
use dermclass::train::{SHIPPED_MODEL_NAME, checkpoint, shipped_model_file};

fn dermclass(args: &[&str]) -> std::process::Output {
    dermclass_cmd().args(args).output().expect("run dermclass")
}

/// Runs `dermclass` with `args`, which must fail with a message that contains `expected`,
/// not with a panic.
fn assert_fails_with(args: &[&str], expected: &str) {
    let out = dermclass(args);
    assert!(!out.status.success(), "{args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(expected), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

#[test]
fn models_lists_every_family() {
    let out = dermclass(&["models"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for family in [
        "plain_v1",
        "mobilenet_v1",
        "mobilenet_v2",
        "shufflenet_v1",
        "shufflenet_v2",
        "resnet50",
    ] {
        assert!(text.contains(family), "{family} missing from:\n{text}");
    }
}

#[test]
fn summary_json_has_totals_at_top_level() {
    let out = dermclass(&["summary", "resnet50", "--classes", "1000", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["params"], 25_557_032);
    let madds = json["madds"].as_u64().unwrap();
    assert!((4_000_000_000..4_200_000_000).contains(&madds), "{madds}");
    assert!(json["layers"].as_array().unwrap().len() > 100);
}

#[test]
fn summary_table_handles_non_square_inputs() {
    let out = dermclass(&["summary", "mobilenet_v2:0.5", "--input", "200x150"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("trainable params:"), "{text}");
    assert!(text.contains("weights at fp32:"), "{text}");
    // 150x200 -> stride 32 -> 5x7 before pooling.
    assert!(text.contains("x5x7"), "{text}");
}

#[test]
fn bad_requests_fail_with_a_message_not_a_panic() {
    for (args, expected) in [
        (
            vec!["summary", "vgg16"],
            "known families: plain_v1, mobilenet_v1",
        ),
        (vec!["summary", "mobilenet_v2:9"], "must be in (0, 4]"),
        (
            vec!["summary", "resnet50", "--input", "16"],
            "input too small",
        ),
        (
            vec!["summary", "resnet50", "--input", "12xq"],
            "must look like",
        ),
    ] {
        assert_fails_with(&args, expected);
    }
}

#[test]
fn export_writes_the_shipped_model_as_onnx_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested").join("model.onnx");
    let stdout = dermclass_ok(["export", "--out", out.to_str().unwrap()]);
    let file = format!("{SHIPPED_MODEL_NAME}.ckpt");
    assert!(stdout.contains(&file), "{stdout}");
    assert!(stdout.contains("opset 17"), "{stdout}");
    let bytes = std::fs::read(&out).unwrap().len() as f64;
    // Four bytes a weight at fp32, batch norm folded away, plus the graph: within 10%.
    let state = checkpoint::load(&shipped_model_file()).unwrap().state;
    let (w, h) = (state.config.width, state.config.height);
    let weights = 4.0 * state.model_spec().unwrap().cost(h, w).unwrap().params() as f64;
    assert!(
        (bytes / weights - 1.0).abs() < 0.1,
        "{bytes} bytes for {weights} at fp32"
    );
}

#[test]
fn export_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_checkpoint = dir.path().join("notes.txt");
    std::fs::write(&not_a_checkpoint, "hello").unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let under_a_file = blocker.join("model.onnx");
    let out = dir.path().join("m.onnx");
    let (model, to) = (not_a_checkpoint.to_str().unwrap(), out.to_str().unwrap());
    for (args, expected) in [
        (
            vec!["export", "--model", "/no/such/run", "--out", to],
            "/no/such/run",
        ),
        (
            vec!["export", "--model", model, "--out", to],
            "is not a dermclass checkpoint",
        ),
        (
            vec!["export", "--out", under_a_file.to_str().unwrap()],
            "cannot create the folder",
        ),
        (vec!["export", "--out", to, "--int8"], "--calibration"),
    ] {
        assert_fails_with(&args, expected);
    }
    assert!(!out.exists(), "no file is left behind by a failed export");
}

#[test]
fn train_help_ends_with_the_defaults_of_every_setting() {
    let out = dermclass_cmd().args(["train", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let defaults = dermclass::train::TrainConfig::default();
    assert!(
        help.contains("Defaults where neither a flag nor --config"),
        "{help}"
    );
    for line in [
        format!("arch = \"{}\"", defaults.arch),
        format!("epochs = {}", defaults.epochs),
        format!("batch = {}", defaults.batch),
        format!("lr = {}", toml::Value::from(defaults.lr)),
        "normalization = \"keras\"".to_string(),
    ] {
        assert!(help.contains(&line), "`{line}` missing from:\n{help}");
    }
}

#[test]
fn bench_measures_every_column_as_json() {
    let out = dermclass_ok([
        "bench",
        "--arch",
        "tiny_cnn:0.5",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["framework"], "dermclass (burn flex)");
    for column in [
        "train_224_b16",
        "train_128_b32",
        "infer_224_b1",
        "infer_224_b16",
        "peak_rss_mb",
    ] {
        let value = json[column].as_f64().unwrap_or(f64::NAN);
        assert!(value.is_finite() && value > 0.0, "{column}: {json}");
    }
}

#[test]
fn demo_classifies_the_bundled_images_then_trains_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let args = [
        "demo",
        "--out",
        out.to_str().unwrap(),
        "--per-class",
        "6",
        "--epochs",
        "1",
        "--arch",
        "tiny_cnn:0.5",
    ];
    let text = dermclass_ok(args);
    for step in [
        "0/3 the shipped model",
        "of 7 right",
        "1/3",
        "2/3",
        "3/3",
        "chance balanced accuracy",
    ] {
        assert!(text.contains(step), "`{step}` missing:\n{text}");
    }
    // One line per bundled image, with its true class and the model's.
    assert_eq!(text.matches("ISIC_00").count(), 7, "{text}");
    assert!(out.join("run").join("report.md").is_file());
    let again = dermclass_cmd().args(args).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a demo run"));
}
