//! The `models` and `summary` commands, run as a user would.

use std::process::Command;

fn dermclass(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dermclass"))
        .args(args)
        .output()
        .expect("run dermclass")
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
        (vec!["summary", "vgg16"], "unknown architecture"),
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
        let out = dermclass(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
