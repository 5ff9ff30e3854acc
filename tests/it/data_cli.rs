//! The data commands end to end (the `dermclass` binary).

use std::path::Path;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = crate::helpers::dermclass_cmd().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `dermclass <command> --data <data>` with the `extra` arguments.
fn run_on(command: &str, data: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![command, "--data", p(data)];
    args.extend(extra);
    run(&args)
}

/// `dermclass synth` of `per_class` images of each class at `size` into `data`, with the
/// `extra` arguments; fails the test unless it succeeds, and returns its stdout.
fn synth(data: &Path, per_class: &str, size: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "synth",
        "--out",
        p(data),
        "--per-class",
        per_class,
        "--size",
        size,
    ];
    args.extend(extra);
    let (ok, out, err) = run(&args);
    assert!(ok, "{out}{err}");
    out
}

#[test]
fn synth_check_split_prepare_and_bad_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("synth");
    let out = synth(&data, "6", "32x24", &["--seed", "2"]);
    assert!(out.contains("wrote 42 images"), "{out}");

    let (ok, out, err) = run_on("check", &data, &[]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("ok: 42 images decode"), "{out}");

    let split = dir.path().join("split.csv");
    let (ok, out, err) = run_on(
        "split",
        &data,
        &["--val-fraction", "0.3", "--seed", "1", "--out", p(&split)],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("grouped by lesion"), "{out}");
    let text = std::fs::read_to_string(&split).unwrap();
    assert_eq!(text.lines().count(), 43);
    let folds = dir.path().join("folds.csv");
    let (ok, out, err) = run_on("split", &data, &["--out", p(&folds), "--folds", "3"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("fold2"), "{out}");

    let prepared = dir.path().join("prepared");
    let (ok, out, err) = run_on("prepare", &data, &["--out", p(&prepared)]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("wrote 42 images"), "{out}");
    let (ok, out, _) = run_on("check", &prepared, &["--format", "folders"]);
    assert!(ok && out.contains("folders layout"), "{out}");

    // Break two images: check fails naming them; --skip-bad goes on and reports.
    let input = data.join("ISIC2018_Task3_Training_Input");
    std::fs::write(input.join("ISIC_0000003.jpg"), b"").unwrap();
    std::fs::write(input.join("ISIC_0000007.jpg"), b"not a jpeg").unwrap();
    let (ok, out, err) = run_on("check", &data, &[]);
    assert!(!ok, "{out}{err}");
    assert!(err.contains("ISIC_0000003.jpg: empty file"), "{err}");
    assert!(err.contains("ISIC_0000007.jpg"), "{err}");
    assert!(err.contains("2 of 42 images cannot be used"), "{err}");
    let (ok, out, err) = run_on("check", &data, &["--skip-bad"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("skipped 2"), "{out}");
    assert!(out.contains("ok: 40 images decode"), "{out}");

    // A bad CSV row stops `split` with a clear message.
    let gt = data.join("ISIC2018_Task3_Training_GroundTruth.csv");
    let csv = std::fs::read_to_string(&gt).unwrap();
    let mut lines: Vec<&str> = csv.lines().collect();
    let broken = lines[5].replace("0.0", "1.0");
    lines[5] = &broken;
    std::fs::write(&gt, lines.join("\n")).unwrap();
    let (ok, _, err) = run_on("split", &data, &["--out", p(&split)]);
    assert!(!ok);
    assert!(
        err.contains("not one-hot") && err.contains("line 6"),
        "{err}"
    );
}

#[test]
fn bench_data_runs_on_a_tiny_set() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("synth");
    synth(&data, "2", "40x30", &[]);
    let cache = dir.path().join("cache");
    let (ok, out, err) = run_on("bench-data", &data, &["--size", "32", "--cache", p(&cache)]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("cold (decode+resize+augment): 14 images"),
        "{out}"
    );
    assert!(out.contains("warm (cache+augment): 14 images"), "{out}");
    assert!(out.contains("img/s") && out.contains("RssAnon"), "{out}");
}
