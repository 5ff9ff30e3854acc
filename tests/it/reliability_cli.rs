//! Reliability at batch scale, end to end with the `dermclass` binary: bad images in
//! `predict`/`evaluate`/`prepare`, run-folder locks, checkpoint write failures, and a run
//! killed with SIGKILL and resumed. Every training run here is its own process, so the
//! runs do not share burn's process-wide random generator.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::helpers::{epochs_done, names_in, synth_set};
use dermclass::train::checkpoint;
use dermclass::train::lock::{LOCK_FILE, RunLock};

fn bin() -> Command {
    crate::helpers::dermclass_cmd()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The small, fast settings of the library tests (tests/helpers), as flags.
const TINY: [&str; 14] = [
    "--arch",
    "shufflenet_v2:0.5",
    "--input",
    "32x32",
    "--batch",
    "8",
    "--lr",
    "0.003",
    "--warmup-epochs",
    "0",
    "--dropout",
    "0.2",
    "--workers",
    "2",
];

/// `dermclass train` on `data` into `run` with the tiny settings.
fn train_cmd(data: &Path, run: &Path, epochs: usize) -> Command {
    let mut cmd = bin();
    cmd.arg("train")
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(run)
        .args(TINY)
        .args(["--epochs", &epochs.to_string()]);
    cmd
}

fn input_dir(data: &Path) -> PathBuf {
    data.join("ISIC2018_Task3_Training_Input")
}

/// `dermclass train` on `data` into `run` with 3 epochs' settings, stopped after the first by
/// a time budget far below one epoch.
fn train_first_of_three_epochs(data: &Path, run: &Path) -> Output {
    let out = train_cmd(data, run, 3)
        .args(["--budget-minutes", "0.00001"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(epochs_done(run), 1);
    out
}

/// Asserts that `out` refused its inputs (exit 1) because 2 of `total` cannot be used, naming
/// the first bad one (`first`: its name and what is wrong with it) and counting the other.
/// Returns its stderr.
fn assert_two_bad_of(out: &Output, total: usize, first: &str) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    let err = stderr(out);
    assert!(
        err.contains(&format!("2 of {total} inputs cannot be used")),
        "{err}"
    );
    assert!(err.contains(first) && err.contains("and 1 more"), "{err}");
    err
}

/// Temporary files a failed atomic write could leave behind.
fn leftovers(dir: &Path) -> Vec<String> {
    names_in(dir, |n| n.contains(".tmp."))
}

/// `dermclass predict` of the images in `input` with the model of `run` into `csv`.
fn predict_cmd(run: &Path, input: &Path, csv: &Path) -> Command {
    let mut cmd = bin();
    cmd.arg("predict")
        .arg("--model")
        .arg(run)
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(csv);
    cmd
}

/// Runs `cmd`, with `--skip-bad` when asked.
fn output_skipping_bad(mut cmd: Command, skip_bad: bool) -> Output {
    if skip_bad {
        cmd.arg("--skip-bad");
    }
    cmd.output().unwrap()
}

#[test]
fn predict_and_evaluate_name_every_bad_image_or_skip_them() {
    let (dir, data) = synth_set(5, 40, 30, 11);
    let run = dir.path().join("run");
    let out = train_cmd(&data, &run, 1).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // Break two of the 35 images: one empty, one truncated JPEG (sorted order: 0003 first).
    let input = input_dir(&data);
    std::fs::write(input.join("ISIC_0000003.jpg"), b"").unwrap();
    let whole = std::fs::read(input.join("ISIC_0000020.jpg")).unwrap();
    std::fs::write(input.join("ISIC_0000020.jpg"), &whole[..whole.len() / 2]).unwrap();

    let csv_path = dir.path().join("predictions.csv");
    let sidecar = dir.path().join("predictions.skipped.csv");
    let predict =
        |skip_bad: bool| output_skipping_bad(predict_cmd(&run, &input, &csv_path), skip_bad);

    // Strict: exit 1, the first bad file and how many more, every one listed, nothing written.
    let err = assert_two_bad_of(&predict(false), 35, "ISIC_0000003.jpg: empty file");
    assert!(
        err.contains("ISIC_0000020.jpg") && err.contains("truncated JPEG"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!csv_path.exists() && !sidecar.exists());

    // --skip-bad: every readable image gets its row, the others are listed; exit 3.
    let out = predict(true);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let rows = std::fs::read_to_string(&csv_path).unwrap();
    assert_eq!(rows.lines().count(), 1 + 33, "{rows}");
    assert!(!rows.contains("ISIC_0000003") && !rows.contains("ISIC_0000020"));
    let mut r = csv::Reader::from_path(&sidecar).unwrap();
    let listed: Vec<(String, String)> = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_string(), rec[3].to_string())
        })
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0].0, "ISIC_0000003");
    assert!(listed[0].1.contains("empty file"), "{listed:?}");
    assert_eq!(listed[1].0, "ISIC_0000020");
    assert!(listed[1].1.contains("truncated JPEG"), "{listed:?}");
    assert!(stderr(&out).contains("ISIC_0000020.jpg"), "{}", text(&out));

    // evaluate: the same two behaviours; the metrics cover the 33 readable images.
    let evaluate = |skip_bad: bool| {
        let mut cmd = bin();
        cmd.args(["evaluate", "--json", "--allow-train-images", "--model"])
            .arg(&run)
            .arg("--data")
            .arg(&data);
        output_skipping_bad(cmd, skip_bad)
    };
    let out = evaluate(false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("ISIC_0000003.jpg: empty file")
            && stderr(&out).contains("and 1 more"),
        "{}",
        text(&out)
    );
    let out = evaluate(true);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["n_samples"].as_u64(), Some(33), "{json}");

    // Repaired: exit 0, and the stale sidecar is gone.
    std::fs::write(input.join("ISIC_0000020.jpg"), &whole).unwrap();
    std::fs::remove_file(input.join("ISIC_0000003.jpg")).unwrap();
    let out = predict(true);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!sidecar.exists());

    // Nothing readable at all: an error, not an empty submission.
    let junk = dir.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("a.png"), b"nope").unwrap();
    let out = predict_cmd(&run, &junk, &dir.path().join("junk.csv"))
        .arg("--skip-bad")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("none of the 1 inputs"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_locked_run_folder_refuses_train_resume_and_compare_at_once() {
    let (dir, data) = synth_set(3, 40, 30, 12);
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    // This test process holds the lock, as a running `train` would.
    let lock = RunLock::acquire(&run).unwrap();
    let pid = std::process::id().to_string();
    let started = Instant::now();
    for resume in [false, true] {
        let mut cmd = train_cmd(&data, &run, 1);
        if resume {
            cmd.arg("--resume");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = stderr(&out);
        assert!(err.contains("in use by another dermclass process"), "{err}");
        assert!(err.contains(&pid) && err.contains(LOCK_FILE), "{err}");
    }
    let results = dir.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    let compare_lock = RunLock::acquire(&results).unwrap();
    let out = bin()
        .args(["compare", "--arches", "shufflenet_v2:0.5", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&results)
        .args(["--epochs", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("in use"), "{}", text(&out));
    // Refused before any work: nothing was written into the folders.
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(!run.join("config.toml").exists() && !results.join("split.csv").exists());

    // Released: the same command trains, and leaves no lock behind.
    drop(lock);
    drop(compare_lock);
    let out = train_cmd(&data, &run, 1).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!run.join(LOCK_FILE).exists());
}

#[test]
fn a_failed_checkpoint_write_keeps_the_previous_checkpoints() {
    let (dir, data) = synth_set(4, 40, 30, 13);
    let run = dir.path().join("run");
    // Two epochs of budget per session is not expressible on the command line: the first
    // session runs 3 epochs' settings but stops after one through a time budget of ~0.
    train_first_of_three_epochs(&data, &run);
    let last = std::fs::read(run.join("last.ckpt")).unwrap();

    let cpu = dermclass::device::parse_device("cpu").unwrap();
    // The disk is full when epoch 2 is saved (each checkpoint write fails half-way).
    for failing in ["last.ckpt", "best.ckpt,last.ckpt"] {
        let best = std::fs::read(run.join("best.ckpt")).unwrap();
        let out = train_cmd(&data, &run, 3)
            .arg("--resume")
            .env(dermclass::report::FAIL_WRITES_ENV, failing)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = stderr(&out);
        assert!(err.contains("no space left on device"), "{err}");
        assert!(err.contains("was not replaced"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        // The previous pair is intact and loadable; no temporary file, no lock left.
        assert_eq!(std::fs::read(run.join("last.ckpt")).unwrap(), last);
        let best_now = std::fs::read(run.join("best.ckpt")).unwrap();
        if failing.contains("best") {
            assert_eq!(best_now, best);
        }
        for file in ["last.ckpt", "best.ckpt"] {
            let ck = checkpoint::load(&run.join(file)).unwrap();
            assert!(ck.state.epochs_done <= 2);
            ck.model(&cpu).unwrap();
        }
        assert_eq!(epochs_done(&run), 1);
        assert!(leftovers(&run).is_empty(), "{:?}", leftovers(&run));
        assert!(!run.join(LOCK_FILE).exists());
    }

    // Space again: the run resumes from the intact epoch 1 and goes on.
    let out = train_cmd(&data, &run, 3).arg("--resume").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(epochs_done(&run), 2);
}

#[test]
fn a_run_killed_after_its_first_checkpoint_resumes_to_the_same_history() {
    let (dir, data) = synth_set(6, 40, 30, 3);
    let epochs = 3;

    let straight = dir.path().join("straight");
    let out = train_cmd(&data, &straight, epochs).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // Start the same run, and SIGKILL it as soon as its first checkpoint is on disk.
    let run = dir.path().join("killed");
    let mut child = train_cmd(&data, &run, epochs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !run.join("last.ckpt").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        assert!(Instant::now() < deadline, "no checkpoint after 300 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished before it could be killed"
    );
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success());
    // The killed process could not clean up: its lock is left behind, and is stale.
    assert!(run.join(LOCK_FILE).exists());
    let done = epochs_done(&run);
    assert!((1..epochs).contains(&done), "killed after epoch {done}");

    let out = train_cmd(&data, &run, epochs)
        .arg("--resume")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("stale lock"), "{}", text(&out));
    assert!(!run.join(LOCK_FILE).exists());

    // The tolerance of tests/train_resume.rs: float formatting only.
    let a = checkpoint::load(&straight.join("last.ckpt")).unwrap().state;
    let b = checkpoint::load(&run.join("last.ckpt")).unwrap().state;
    assert_eq!(a.epochs_done, epochs);
    assert_eq!(b.epochs_done, epochs);
    assert_eq!(a.history.len(), b.history.len());
    for (x, y) in a.history.iter().zip(&b.history) {
        assert_eq!(x.epoch, y.epoch);
        assert!((x.train_loss - y.train_loss).abs() < 1e-4, "{x:?}\n{y:?}");
        assert!((x.val_loss - y.val_loss).abs() < 1e-4, "{x:?}\n{y:?}");
        assert_eq!(x.val_balanced_accuracy, y.val_balanced_accuracy);
    }
    assert_eq!(a.best_epoch, b.best_epoch);
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + epochs);
    assert!(leftovers(&run).is_empty(), "{:?}", leftovers(&run));
}

#[test]
fn prepare_decodes_every_image_unless_told_not_to() {
    let (dir, data) = synth_set(2, 40, 30, 14);
    let input = input_dir(&data);
    std::fs::write(input.join("ISIC_0000004.jpg"), b"GIF89a not really").unwrap();
    std::fs::write(input.join("ISIC_0000009.jpg"), b"").unwrap();
    let prepare = |out: &Path, extra: &[&str]| {
        bin()
            .arg("prepare")
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(out)
            .args(extra)
            .output()
            .unwrap()
    };
    let count = |out: &Path| -> usize {
        std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .map(|d| std::fs::read_dir(d).unwrap().count())
            .sum()
    };

    let strict = dir.path().join("strict");
    let err = assert_two_bad_of(&prepare(&strict, &[]), 14, "ISIC_0000004.jpg");
    assert!(err.contains("ISIC_0000009.jpg: empty file"), "{err}");
    assert!(!strict.exists(), "nothing may be filed");

    let skipping = dir.path().join("skipping");
    let out = prepare(&skipping, &["--skip-bad"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&skipping), 12);
    assert!(String::from_utf8_lossy(&out.stdout).contains("wrote 12 images"));

    let unchecked = dir.path().join("unchecked");
    let out = prepare(&unchecked, &["--no-verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&unchecked), 14);
}

#[test]
fn resume_takes_a_larger_budget_and_refuses_a_changed_schedule_by_name() {
    let (dir, data) = synth_set(3, 40, 30, 21);
    let run = dir.path().join("run");
    // A budget far below one epoch: the run stops after its first epoch.
    let out = train_first_of_three_epochs(&data, &run);
    assert!(stdout(&out).contains("time budget"), "{}", text(&out));
    let resume_with = |flag: &str, value: &str| {
        bin()
            .args(["train", "--resume", "--out"])
            .arg(&run)
            .args([flag, value])
            .output()
            .unwrap()
    };
    // A different epoch count would change the learning-rate schedule: refused, by name.
    let out = resume_with("--epochs", "5");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("epochs (run: 3, asked: 5)"),
        "{}",
        text(&out)
    );
    assert_eq!(epochs_done(&run), 1, "a refused resume trains nothing");
    // A larger budget is taken (the budget counts every session), and the run finishes.
    let out = resume_with("--budget-minutes", "60");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(epochs_done(&run), 3);
}
