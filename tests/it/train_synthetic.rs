//! Training, resuming, evaluating and predicting end to end on small synthetic data.

use std::path::Path;
use std::process::Output;

use crate::helpers::{
    TINY_CNN_FLAGS, assert_success, dermclass_cmd, dermclass_ok, epochs_done, output_ok, quiet,
    stdout_of_success, synth_set, tiny_config,
};
use dermclass::train::config::TrainConfig;
use dermclass::train::{SessionOptions, checkpoint, train};

/// `dermclass train` on `data` into `out` with the `extra` flags.
fn train_output(data: &Path, out: &Path, extra: &[&str]) -> Output {
    dermclass_cmd()
        .args(["train", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// `dermclass evaluate --json` of `run` on the validation side of its own split of `data`.
fn evaluate_json(run: &Path, data: &Path) -> std::process::Command {
    let mut cmd = dermclass_cmd();
    cmd.args(["evaluate", "--json", "--model"])
        .arg(run)
        .arg("--data")
        .arg(data)
        .arg("--split-file")
        .arg(run.join("split.csv"));
    cmd
}

#[test]
fn the_demo_settings_learn_clearly_better_than_chance() {
    // 7 balanced classes: chance balanced accuracy is 1/7 = 0.143. The validation split
    // holds ~80 images (30% of 280); a chance-level model's balanced accuracy then has a
    // standard deviation of about 0.04, so 0.30 is more than 3.5 of them above chance, while
    // these settings reach 0.5-0.6 after 8 epochs (measured; the demo trains 15).
    let (dir, data) = synth_set(40, 96, 72, 7);
    let mut config = TrainConfig::demo(&data, 8);
    config.workers = 2;
    let summary = train(&config, &dir.path().join("run"), &quiet()).unwrap();
    let bacc = summary.best_metrics.as_ref().unwrap().balanced_accuracy;
    assert!(
        bacc >= 0.30,
        "balanced accuracy {bacc:.3} is too close to chance"
    );
    assert!(summary.best_metrics.as_ref().unwrap().n_samples >= 60);
}

#[test]
fn a_diverging_run_stops_with_a_clear_message_and_keeps_its_checkpoint() {
    let (dir, data) = synth_set(4, 40, 30, 5);
    let run = dir.path().join("run");
    train(&tiny_config(&data, 1), &run, &quiet()).unwrap();
    let before = std::fs::read(run.join("last.ckpt")).unwrap();

    // Resume with an absurd learning rate: patch the saved settings (a resumed run uses them).
    let mut ck = checkpoint::load(&run.join("last.ckpt")).unwrap();
    ck.state.config.epochs = 3;
    ck.state.config.lr = 1e30;
    ck.save(&run.join("last.ckpt")).unwrap();
    let patched = std::fs::read(run.join("last.ckpt")).unwrap();
    assert_ne!(before, patched);

    let resume = SessionOptions {
        resume: true,
        ..quiet()
    };
    // The run's (patched) settings: a resume refuses settings that differ from them.
    let err = train(&ck.state.config, &run, &resume)
        .unwrap_err()
        .to_string();
    assert!(err.contains("training loss became"), "{err}");
    assert!(err.contains("last.ckpt"), "{err}");
    // The last good checkpoint is untouched and still loads.
    assert_eq!(std::fs::read(run.join("last.ckpt")).unwrap(), patched);
    assert_eq!(epochs_done(&run), 1);
}

#[test]
fn the_cli_trains_evaluates_and_predicts_in_the_submission_format() {
    let (dir, data) = synth_set(5, 40, 30, 9);
    let run = dir.path().join("run");
    let trained = train_output(
        &data,
        &run,
        &[
            "--arch",
            "mobilenet_v1:0.25",
            "--input",
            "40x32",
            "--epochs",
            "1",
            "--batch",
            "8",
            "--optimizer",
            "sgd",
            "--nesterov",
            "--lr",
            "0.01",
            "--schedule",
            "step",
            "--label-smoothing",
            "0.1",
            "--class-weights",
            "effective",
            "--sampler",
            "balanced",
            "--vflip",
        ],
    );
    assert_success(&trained);
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    for expected in [
        "optimizer = \"sgd\"",
        "nesterov = true",
        "sampler = \"balanced\"",
        "width = 40",
    ] {
        assert!(config.contains(expected), "{expected} not in\n{config}");
    }

    let out = output_ok(&mut evaluate_json(&run, &data));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bacc = json["balanced_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&bacc));

    // Temperature scaling fitted on the validation split is stored and then applied.
    let reliability = dir.path().join("reliability.png");
    let text = dermclass_ok([
        "evaluate".as_ref(),
        "--fit-temperature".as_ref(),
        "--model".as_ref(),
        run.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
        "--split-file".as_ref(),
        run.join("split.csv").as_os_str(),
        "--reliability".as_ref(),
        reliability.as_os_str(),
    ] as [&std::ffi::OsStr; 10]);
    let fitted = text
        .lines()
        .find(|l| l.starts_with("temperature scaling"))
        .unwrap();
    let nll: Vec<f64> = fitted
        .split("NLL ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .split(" -> ")
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(nll[1] <= nll[0] + 1e-9, "{fitted}");
    assert!(text.contains("calibration        ECE"), "{text}");
    assert!(text.contains("melanoma           sensitivity"), "{text}");
    assert!(image::open(&reliability).unwrap().width() > 100);
    let refused = dermclass_cmd()
        .args(["evaluate", "--fit-temperature", "--tau", "0.5", "--model"])
        .arg(&run)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("drop --tau"));
    let stored = dermclass::train::checkpoint::load(&run.join("best.ckpt")).unwrap();
    let t = stored.state.adjustment.temperature;
    assert!(
        t != 1.0 && fitted.contains(&format!("T = {t:.4}")),
        "{t} {fitted}"
    );

    // Predict on the images at their own size (40x30 here, trained at 40x32).
    let images = data.join("ISIC2018_Task3_Training_Input");
    let csv_path = dir.path().join("predictions.csv");
    output_ok(
        dermclass_cmd()
            .args(["predict", "--tta", "8", "--model"])
            .arg(run.join("best.ckpt"))
            .arg("--input")
            .arg(&images)
            .arg("--out")
            .arg(&csv_path),
    );

    let mut ids: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    ids.sort();
    let text = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC");
    let mut seen = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 8, "{line}");
        seen.push(fields[0].to_string());
        let mut sum = 0.0;
        for value in &fields[1..] {
            assert!(value.contains('.'), "{value} has no decimal point");
            assert!(!value.contains(['e', 'E']), "{value} uses an exponent");
            let p: f64 = value.parse().unwrap();
            assert!((0.0..=1.0).contains(&p), "{p}");
            sum += p;
        }
        assert!((sum - 1.0).abs() < 1e-4, "row sums to {sum}: {line}");
    }
    seen.sort();
    assert_eq!(seen, ids, "every image exactly once");
    dermclass::report::submission::validate_isic2018_submission(&csv_path, &ids).unwrap();
}

#[test]
fn bad_requests_fail_before_training_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let out = train_output(&missing, &dir.path().join("run"), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing-here"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = dermclass_cmd()
        .args(["predict", "--model"])
        .arg(&missing)
        .args(["--input", "x.jpg", "--out", "p.csv"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn the_accuracy_recipe_trains_from_its_file_and_its_model_is_used_as_stored() {
    let (dir, data) = synth_set(5, 40, 30, 9);
    let run = dir.path().join("run");
    let os = |s: &str| std::ffi::OsString::from(s);
    let recipe = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/isic2018.toml");
    // The recipe file as it ships, shrunk to a tiny network, input and epoch count.
    let train: Vec<std::ffi::OsString> = vec![
        os("train"),
        os("--config"),
        os(recipe),
        os("--data"),
        data.clone().into(),
        os("--out"),
        run.clone().into(),
        os("--arch"),
        os("shufflenet_v2:0.5"),
        os("--input"),
        os("32"),
        os("--epochs"),
        os("2"),
        os("--batch"),
        os("8"),
    ];
    let refs: Vec<&std::ffi::OsStr> = train.iter().map(|s| s.as_os_str()).collect();
    dermclass_ok(&refs);
    let ck = checkpoint::load(&run.join("best.ckpt")).unwrap();
    let config = &ck.state.config;
    // The file's keys where no flag was given, the flags where they were.
    assert_eq!(config.ema, Some(0.999));
    assert_eq!(config.shades_of_gray, Some(6.0));
    assert!(config.augment.dihedral);
    assert_eq!(config.sampler, dermclass::data::Sampler::Sqrt);
    assert_eq!(config.augment.crop_scale, Some([0.5, 1.0]));
    assert_eq!((config.augment.mixup, config.augment.cutmix), (0.2, 1.0));
    assert_eq!(
        (
            config.arch.as_str(),
            config.width,
            config.epochs,
            config.batch
        ),
        ("shufflenet_v2:0.5", 32, 2, 8)
    );
    // Post-hoc adjustment by the prior the (square-root sampled, unweighted) loss saw.
    assert_eq!(ck.state.adjustment.tau, 1.0);
    let prior_sum: f64 = ck.state.adjustment.prior.iter().sum();
    assert!((prior_sum - 1.0).abs() < 1e-9);
    assert!(
        !ck.train_model.is_empty(),
        "the EMA run keeps its trained weights"
    );

    let split = run.join("split.csv");
    let evaluate = |extra: &[&str]| {
        let mut args: Vec<std::ffi::OsString> = vec![os("evaluate"), os("--model")];
        args.push(run.clone().into());
        args.extend([os("--data"), data.clone().into(), os("--split-file")]);
        args.push(split.clone().into());
        args.extend(extra.iter().map(|e| os(e)));
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
        dermclass_ok(&refs)
    };
    let sweep = evaluate(&["--sweep-tau"]);
    assert_eq!(sweep.lines().count(), 10, "{sweep}");
    assert!(sweep.contains("2.00"), "{sweep}");
    let average: serde_json::Value = serde_json::from_str(&evaluate(&["--json"])).unwrap();
    let trained: serde_json::Value =
        serde_json::from_str(&evaluate(&["--json", "--trained-weights", "--tta", "2"])).unwrap();
    assert!(average["balanced_accuracy"].is_number() && trained["balanced_accuracy"].is_number());

    // A weights-only copy is smaller and predicts the same.
    let strip_copy = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args: Vec<std::ffi::OsString> = vec![os("strip"), os("--model")];
        args.extend([run.clone().into(), os("--out"), out.clone().into()]);
        args.extend(extra.iter().map(|e| os(e)));
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
        dermclass_ok(&refs);
        out
    };
    let small = strip_copy("small.ckpt", &[]);
    let big = std::fs::metadata(run.join("best.ckpt")).unwrap().len();
    let little = std::fs::metadata(&small).unwrap().len();
    assert!(little * 2 < big, "{little} vs {big}");

    // An ensemble (the mean of its members' probabilities) of the model and its own copy
    // scores as the model alone.
    let small_arg = small.to_str().unwrap();
    let pair: serde_json::Value =
        serde_json::from_str(&evaluate(&["--json", "--model", small_arg])).unwrap();
    assert_eq!(pair, average);
    // With a copy that sounds less sure (temperature 5), the mean is less sure than the
    // model alone: its calibration line moves.
    let unsure = strip_copy("unsure.ckpt", &["--temperature", "5"]);
    let calibration = |text: String| {
        text.lines()
            .find(|l| l.starts_with("calibration"))
            .map(String::from)
    };
    let alone = calibration(evaluate(&[])).unwrap();
    let mixed = calibration(evaluate(&["--model", unsure.to_str().unwrap()])).unwrap();
    assert_ne!(alone, mixed);
    let refused = dermclass_cmd()
        .args(["evaluate", "--sweep-tau", "--model"])
        .arg(&run)
        .args(["--model", small_arg, "--model", small_arg])
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("work on one model; 3 were given"),
        "{stderr}"
    );
    let images = data.join("ISIC2018_Task3_Training_Input");
    let predict = |model: &Path, out: &Path| {
        let stdout = dermclass_ok([
            os("predict").as_os_str(),
            os("--model").as_os_str(),
            model.as_os_str(),
            os("--input").as_os_str(),
            images.as_os_str(),
            os("--out").as_os_str(),
            out.as_os_str(),
        ]);
        assert!(stdout.contains("shufflenet_v2:0.5"), "{stdout}");
        std::fs::read_to_string(out).unwrap()
    };
    let a = predict(&run.join("best.ckpt"), &dir.path().join("a.csv"));
    let b = predict(&small, &dir.path().join("b.csv"));
    assert_eq!(a, b);
}

#[test]
fn a_final_fit_trains_on_every_image_and_keeps_the_last_model() {
    let (dir, data) = synth_set(3, 40, 30, 4);
    let mut config = tiny_config(&data, 2);
    config.val_fraction = 0.0;
    config.ema = Some(0.9);
    let run = dir.path().join("run");
    let summary = train(&config, &run, &quiet()).unwrap();
    assert!(summary.best_metrics.is_none());
    assert_eq!(
        summary.state.best_epoch, 2,
        "the last epoch is the one kept"
    );
    let split = std::fs::read_to_string(run.join("split.csv")).unwrap();
    assert_eq!(split.lines().filter(|l| l.ends_with(",train")).count(), 21);
    assert!(!split.contains(",val"));
    let best = checkpoint::load(&run.join("best.ckpt")).unwrap();
    let last = checkpoint::load(&run.join("last.ckpt")).unwrap();
    assert_eq!(best.model, last.model);
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("every image"), "{report}");

    // Shipping it with the temperature fitted on a validation run of the same recipe.
    let mut validated = last.weights_only();
    let k = validated.state.classes.len();
    validated.state.adjustment = validated.state.adjustment.with_temperature(1.5, k);
    let validated_path = dir.path().join("validated.ckpt");
    validated.save(&validated_path).unwrap();
    let shipped = dir.path().join("shipped.ckpt");
    let strip = |temperature: &[&std::ffi::OsStr]| {
        dermclass_cmd()
            .args(["strip", "--model"])
            .arg(&run)
            .arg("--out")
            .arg(&shipped)
            .args(temperature)
            .output()
            .unwrap()
    };
    let strip_with_temperature =
        |from: &Path| strip(&["--temperature-from".as_ref(), from.as_ref()]);
    let stdout = stdout_of_success("strip", &strip_with_temperature(&validated_path));
    assert!(stdout.contains("temperature 1.5000 taken from"), "{stdout}");
    let shipped_ck = checkpoint::load(&shipped).unwrap();
    assert_eq!(shipped_ck.state.adjustment.temperature, 1.5);
    assert_eq!(
        shipped_ck.state.adjustment.prior,
        best.state.adjustment.prior
    );
    assert_eq!(shipped_ck.model, best.model);
    // Another model's temperature is refused.
    validated.state.arch = "tiny_cnn:0.5".into();
    validated.save(&validated_path).unwrap();
    let out = strip_with_temperature(&validated_path);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not this one's"));

    // Or a temperature on record, given as a number; a meaningless one is refused.
    let strip_with = |value: &str| strip(&["--temperature".as_ref(), value.as_ref()]);
    let stdout = stdout_of_success("strip", &strip_with("1.25"));
    assert!(stdout.contains("temperature 1.2500 as given"), "{stdout}");
    let given = checkpoint::load(&shipped).unwrap().state.adjustment;
    assert_eq!(given.temperature, 1.25);
    assert_eq!(given.prior, best.state.adjustment.prior);
    for bad in ["0", "-1", "nan"] {
        let out = strip_with(bad);
        assert!(!out.status.success(), "--temperature {bad} was taken");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("must be a positive number"), "{err}");
    }
}

#[test]
fn an_unknown_arch_or_device_fails_before_any_image_is_read_and_writes_nothing() {
    let (dir, data) = synth_set(2, 40, 30, 4);
    // A broken image: decoding it would fail with its name.
    let images = data.join("ISIC2018_Task3_Training_Input");
    let victim = std::fs::read_dir(&images)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&victim, b"not a jpeg").unwrap();
    for (flag, value, expected) in [
        ("--arch", "mobilenet_v9:1.0", "unknown architecture"),
        ("--device", "tpu", "tpu"),
    ] {
        let out_dir = dir.path().join(format!("run{flag}"));
        let out = train_output(&data, &out_dir, &[flag, value]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{err}");
        assert!(
            !err.contains("not a jpeg") && !err.contains("decode"),
            "{err}"
        );
        assert!(!out_dir.exists(), "{} was created", out_dir.display());
    }
}

#[test]
fn predict_without_a_model_uses_the_shipped_one_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let images = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo");
    let csv_path = dir.path().join("p.csv");
    let out = output_ok(
        dermclass_cmd()
            .env_remove("DERMCLASS_MODEL")
            .args(["predict", "--input", images, "--out"])
            .arg(&csv_path),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let file = format!("{}.ckpt", dermclass::train::SHIPPED_MODEL_NAME);
    let shipped = checkpoint::load(&dermclass::train::shipped_model_file()).unwrap();
    assert!(
        stdout.contains(&file) && stdout.contains(&shipped.state.arch),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&csv_path).unwrap();
    assert_eq!(
        text.lines().count(),
        8,
        "a header and one row per demo image"
    );
}

#[test]
fn a_session_reports_its_progress_as_events_and_the_epochs_add_up() {
    use dermclass::train::{Event, Observer};
    use std::sync::{Arc, Mutex};
    let (dir, data) = synth_set(5, 40, 30, 4);
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&log);
    let options = SessionOptions {
        observer: Observer::new(move |event| {
            let line = match event {
                Event::EpochStarted { epoch, images, .. } => format!("start {epoch} {images}"),
                Event::BatchDone { images, mean_loss } => {
                    assert!(mean_loss.is_finite());
                    format!("batch {images}")
                }
                Event::EpochEnded { row, epochs } => format!("end {} of {epochs}", row.epoch),
                other => format!("{other:?}"),
            };
            sink.lock().unwrap().push(line);
        }),
        ..SessionOptions::default()
    };
    train(&tiny_config(&data, 2), &dir.path().join("run"), &options).unwrap();
    let log = log.lock().unwrap();
    let starts: Vec<&String> = log.iter().filter(|l| l.starts_with("start")).collect();
    assert_eq!(starts.len(), 2, "{log:?}");
    assert_eq!(log.last().unwrap(), "end 2 of 2", "{log:?}");
    // Each epoch: its start, then batches that add up to the images it announced, then its end.
    for epoch in 1..=2 {
        let start = log
            .iter()
            .position(|l| l.starts_with(&format!("start {epoch} ")))
            .unwrap();
        let end = log
            .iter()
            .position(|l| *l == format!("end {epoch} of 2"))
            .unwrap();
        let announced: usize = log[start].rsplit(' ').next().unwrap().parse().unwrap();
        let seen: usize = log[start + 1..end]
            .iter()
            .map(|l| l.strip_prefix("batch ").unwrap().parse::<usize>().unwrap())
            .sum();
        assert!(
            seen > 0 && seen == announced,
            "epoch {epoch}: {seen} of {announced}: {log:?}"
        );
    }
}

#[test]
fn best_ckpt_is_the_epoch_with_the_highest_validation_balanced_accuracy() {
    let (dir, data) = synth_set(6, 40, 30, 12);
    let run = dir.path().join("run");
    train(&tiny_config(&data, 4), &run, &quiet()).unwrap();
    let last = checkpoint::load(&run.join("last.ckpt")).unwrap();
    let history = &last.state.history;
    assert_eq!(history.len(), 4);
    // The first epoch reaching the maximum (a later tie does not replace it).
    let best_bacc = history
        .iter()
        .map(|r| r.val_balanced_accuracy)
        .fold(f64::MIN, f64::max);
    let best_epoch = history
        .iter()
        .find(|r| r.val_balanced_accuracy == best_bacc)
        .unwrap()
        .epoch;
    assert_eq!(last.state.best_epoch, best_epoch);
    let best = checkpoint::load(&run.join("best.ckpt")).unwrap();
    assert_eq!(
        best.state.epochs_done, best_epoch,
        "best.ckpt holds that epoch's model"
    );
    // Scored again, the saved model gives the balanced accuracy recorded for its epoch.
    let json = dermclass_ok([
        std::ffi::OsStr::new("evaluate"),
        std::ffi::OsStr::new("--model"),
        run.as_os_str(),
        std::ffi::OsStr::new("--data"),
        data.as_os_str(),
        std::ffi::OsStr::new("--split-file"),
        run.join("split.csv").as_os_str(),
        std::ffi::OsStr::new("--json"),
    ]);
    let scored: serde_json::Value = serde_json::from_str(&json).unwrap();
    let bacc = scored["balanced_accuracy"].as_f64().unwrap();
    assert!((bacc - best_bacc).abs() < 1e-9, "{bacc} vs {best_bacc}");
}

#[test]
fn train_fold_k_validates_on_that_fold_of_a_fold_file() {
    let (dir, data) = synth_set(6, 32, 32, 3);
    let folds = dir.path().join("folds.csv");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    dermclass_ok([
        "split",
        "--folds",
        "3",
        "--data",
        &s(&data),
        "--out",
        &s(&folds),
    ]);
    let run = dir.path().join("run");
    let with = |extra: &[&str]| -> Vec<String> {
        ["train"]
            .iter()
            .chain(&TINY_CNN_FLAGS)
            .chain(extra)
            .map(|a| a.to_string())
            .collect()
    };
    dermclass_ok(with(&[
        "--fold",
        "1",
        "--data",
        &s(&data),
        "--split",
        &s(&folds),
        "--out",
        &s(&run),
    ]));
    let rows = |path: &Path| -> Vec<(String, String)> {
        csv::Reader::from_path(path)
            .unwrap()
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[0].to_string(), r[1].to_string())
            })
            .collect()
    };
    let fold_of: std::collections::HashMap<String, String> = rows(&folds).into_iter().collect();
    let split = rows(&run.join("split.csv"));
    assert_eq!(split.len(), fold_of.len());
    for (image, side) in &split {
        let in_fold_1 = fold_of[image] == "1";
        assert_eq!(
            side == "val",
            in_fold_1,
            "{image}: {side}, fold {}",
            fold_of[image]
        );
    }
    // Scoring the run on all its data is refused (most images trained it), unless asked.
    let evaluate = |extra: &[&str]| {
        dermclass_cmd()
            .args(["evaluate", "--model"])
            .arg(&run)
            .arg("--data")
            .arg(&data)
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = evaluate(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("are on the training side of the run's split"),
        "{stderr}"
    );
    let allowed = evaluate(&["--allow-train-images"]);
    assert_success(&allowed);
    let said = String::from_utf8_lossy(&allowed.stderr);
    assert!(
        said.contains(&format!(
            "scoring {} images: every labelled image",
            split.len()
        )),
        "{said}"
    );
    // A final fit says it has no validation instead of printing NaNs.
    let stdout = dermclass_ok(with(&[
        "--val-fraction",
        "0",
        "--data",
        &s(&data),
        "--out",
        &s(&dir.path().join("final")),
    ]));
    assert!(
        stdout.contains("no validation (final fit)") && !stdout.contains("NaN"),
        "{stdout}"
    );
    // --fold without --split is refused before anything runs.
    let out = train_output(&data, &dir.path().join("never"), &["--fold", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--split"));
    assert!(!dir.path().join("never").exists());
}

#[test]
fn mixup_and_cutmix_flags_are_stored_and_change_what_trains() {
    let (dir, data) = synth_set(3, 40, 30, 3);
    let train_loss_with = |name: &str, extra: &[&str]| -> (f64, TrainConfig) {
        let run = dir.path().join(name);
        let mut args = TINY_CNN_FLAGS.to_vec();
        args.extend(extra);
        assert_success(&train_output(&data, &run, &args));
        let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
        let epoch_one = metrics.lines().nth(1).unwrap();
        let loss = epoch_one.split(',').nth(1).unwrap().parse().unwrap();
        let config = TrainConfig::from_toml_file(&run.join("config.toml")).unwrap();
        (loss, config)
    };
    let (plain, plain_config) = train_loss_with("plain", &[]);
    assert_eq!(plain_config.augment.batch_mix(), None);
    let (mixed, config) = train_loss_with(
        "mixed",
        &["--mixup", "0.4", "--cutmix", "1.0", "--mix-prob", "0.9"],
    );
    let augment = &config.augment;
    assert_eq!(
        (augment.mixup, augment.cutmix, augment.mix_prob),
        (0.4, 1.0, 0.9)
    );
    // Same seed, data order and initialisation: only the mixed images and targets differ.
    assert_ne!(plain, mixed, "mixing left the training loss unchanged");
    let out = train_output(&data, &dir.path().join("bad"), &["--cutmix=-1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("augment.cutmix"), "{err}");
}

#[test]
fn evaluate_scores_at_another_input_size_when_asked_and_refuses_one_the_network_cannot_take() {
    let (dir, data) = synth_set(4, 40, 30, 5);
    let run = dir.path().join("run");
    train(&tiny_config(&data, 1), &run, &quiet()).unwrap();
    let evaluate = |extra: &[&str]| evaluate_json(&run, &data).args(extra).output().unwrap();
    // The size it trained at scores as without the flag; another size scores differently.
    let stored = evaluate(&[]);
    let same = evaluate(&["--input", "32"]);
    let larger = evaluate(&["--input", "48x40"]);
    let [stored, same, larger] = [stored, same, larger].map(|o| stdout_of_success("evaluate", &o));
    assert_eq!(same, stored);
    assert_ne!(larger, stored);
    // Too small for the network: refused before any image is read, naming size and model.
    let refused = evaluate(&["--input", "16"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--input 16x16 for the model"), "{err}");
    assert!(err.contains("input too small"), "{err}");
    // A fitted temperature belongs to the stored size.
    let refused = evaluate(&["--input", "48", "--fit-temperature"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--input"));
}
