//! `dermclass compare` end to end on synthetic data: two tiny architectures, one epoch.

use std::path::Path;
use std::process::Command;

use crate::helpers::{assert_success, dermclass_cmd, synth_set};

/// `dermclass compare --data DATA --out OUT`, for the rest of the arguments.
fn compare_cmd(data: &Path, out: &Path) -> Command {
    let mut cmd = dermclass_cmd();
    cmd.args(["compare", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out);
    cmd
}

#[test]
fn compare_writes_a_complete_table_and_does_not_retrain_finished_arches() {
    let (dir, data) = synth_set(5, 40, 30, 11);
    let out = dir.path().join("results");
    let run = || {
        compare_cmd(&data, &out)
            .args([
                "--arches",
                "mobilenet_v1:0.25,shufflenet_v2:0.5",
                "--epochs",
                "1",
                "--input",
                "32",
                "--batch",
                "8",
                "--workers",
                "2",
            ])
            .output()
            .unwrap()
    };
    let first = run();
    assert_success(&first);

    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    for column in [
        "trick",
        "arch",
        "settings",
        "params",
        "madds",
        "training_time",
        "val_accuracy",
        "val_balanced_accuracy",
        "val_macro_auc",
        "latency_ms",
        "weights_mb",
        "train_images_per_s",
        "peak_train_memory_mb",
    ] {
        assert!(headers.iter().any(|h| h == column), "{column} missing");
    }
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        for (header, value) in headers.iter().zip(row.iter()) {
            assert!(!value.is_empty(), "{header} empty in {row:?}");
            assert_ne!(value, "NaN", "{header} undefined in {row:?}");
        }
    }
    assert_eq!(&rows[0][1], "mobilenet_v1:0.25");
    assert_eq!(&rows[1][1], "shufflenet_v2:0.5");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("depthwise separable convolution"), "{md}");
    assert!(md.contains("channel split"), "{md}");
    for plot in ["accuracy_vs_madds.png", "accuracy_vs_latency.png"] {
        let png = std::fs::read(out.join(plot)).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{plot}");
    }
    let column = |row: &csv::StringRecord, name: &str| -> f64 {
        let at = headers.iter().position(|h| h == name).unwrap();
        row[at].parse().unwrap()
    };
    for row in &rows {
        let (rate, peak) = (
            column(row, "train_images_per_s"),
            column(row, "peak_train_memory_mb"),
        );
        assert!(rate > 0.0 && peak > 1.0, "{row:?}");
    }

    let again = run();
    assert_success(&again);
    let text = String::from_utf8_lossy(&again.stdout);
    assert_eq!(text.matches("not retrained").count(), 2, "{text}");

    // An arch interrupted before its result was written resumes from its checkpoint: it is
    // finished and tabulated without training anything again.
    let arch_dir = dermclass::train::compare::run_folder(&out, "shufflenet_v2:0.5");
    std::fs::remove_file(arch_dir.join("result.json")).unwrap();
    let checkpoint = std::fs::read(arch_dir.join("last.ckpt")).unwrap();
    let resumed = run();
    assert_success(&resumed);
    let text = String::from_utf8_lossy(&resumed.stdout);
    assert_eq!(text.matches("not retrained").count(), 1, "{text}");
    assert!(text.contains("== shufflenet_v2:0.5"), "{text}");
    assert!(
        !text.contains("epoch 1/1"),
        "nothing is trained again: {text}"
    );
    assert!(arch_dir.join("result.json").is_file());
    assert_eq!(
        std::fs::read(arch_dir.join("last.ckpt")).unwrap(),
        checkpoint
    );
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

#[test]
fn compare_vary_trains_one_row_per_combination_and_refuses_a_bad_setting_first() {
    let (dir, data) = synth_set(4, 32, 32, 5);
    let out = dir.path().join("results");
    let run = |vary: &[&str]| {
        let mut cmd = compare_cmd(&data, &out);
        cmd.args(["--arches", "tiny_cnn:0.5", "--epochs", "1", "--input", "32"]);
        for v in vary {
            cmd.args(["--vary", v]);
        }
        cmd.output().unwrap()
    };
    let bad = run(&["batch=8", "bacth=4"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--vary") && stderr.contains("bacth"),
        "{stderr}"
    );
    assert!(
        !out.join("runs").exists(),
        "nothing trained before the check"
    );

    let ok = run(&["batch=4,8", "optimizer=sgd,adamw"]);
    assert_success(&ok);
    let mut reader = csv::Reader::from_path(out.join("results.csv")).unwrap();
    let settings: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[2].to_string())
        .collect();
    assert_eq!(settings.len(), 4, "{settings:?}");
    assert!(settings[0].starts_with("batch 4,") && settings[0].ends_with("optimizer=sgd"));
    assert!(settings[3].starts_with("batch 8,") && settings[3].ends_with("optimizer=adamw"));
    let run_dir = out.join("runs/tiny_cnn_0_5_batch8_optimizersgd");
    let config = std::fs::read_to_string(run_dir.join("config.toml")).unwrap();
    assert!(
        config.contains("batch = 8") && config.contains("optimizer = \"sgd\""),
        "{config}"
    );
    // Run again: all four are finished and kept.
    let again = run(&["batch=4,8", "optimizer=sgd,adamw"]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout)
            .matches("not retrained")
            .count(),
        4
    );
}

#[test]
fn the_table_holds_each_finished_run_when_a_later_one_fails() {
    let (dir, data) = synth_set(4, 32, 32, 9);
    let out = dir.path().join("results");
    // The second architecture's run folder cannot be created: a file stands in its place.
    let blocked = dermclass::train::compare::run_folder(&out, "mobilenet_v1:0.25");
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, "not a folder").unwrap();
    let failed = compare_cmd(&data, &out)
        .args([
            "--arches",
            "tiny_cnn:0.5,mobilenet_v1:0.25",
            "--epochs",
            "1",
        ])
        .args(["--input", "32", "--batch", "8"])
        .output()
        .unwrap();
    assert!(!failed.status.success(), "the blocked run fails");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        2,
        "a header and the finished run: {csv}"
    );
    assert!(csv.contains("tiny_cnn:0.5"), "{csv}");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("`tiny_cnn:0.5`") && !md.contains("mobilenet_v1"),
        "{md}"
    );
}
