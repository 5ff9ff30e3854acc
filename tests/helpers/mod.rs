//! Helpers shared by the integration tests: small data sets written to temporary folders
//! and small, fast training settings. Each test binary uses some of them.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{Rgb, RgbImage};

/// Classes in official order.
pub const CLASSES: [&str; 7] = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];

/// A small distinct RGB image.
pub fn tiny_image(seed: u32, w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 11 + seed * 37) as u8,
            (y * 7 + seed * 13) as u8,
            ((x ^ y) + seed) as u8,
        ])
    })
}

/// Saves `img` as JPEG.
pub fn save_jpeg(img: &RgbImage, path: &Path) {
    img.save_with_format(path, image::ImageFormat::Jpeg)
        .unwrap();
}

/// Writes a minimal ISIC layout: `labels[i]` is the class of image `ISIC_000000i`,
/// `lesions[i]` its lesion id. Returns the ids.
pub fn write_isic(root: &Path, labels: &[usize], lesions: Option<&[&str]>) -> Vec<String> {
    let input = root.join("ISIC2018_Task3_Training_Input");
    fs::create_dir_all(&input).unwrap();
    let mut gt = String::from("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n");
    let mut groups = String::from("image,lesion_id,diagnosis_confirm_type\n");
    let mut ids = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        let id = format!("ISIC_{i:07}");
        save_jpeg(
            &tiny_image(i as u32, 12, 9),
            &input.join(format!("{id}.jpg")),
        );
        let row: Vec<&str> = (0..7).map(|c| if c == l { "1.0" } else { "0.0" }).collect();
        gt.push_str(&format!("{id},{}\n", row.join(",")));
        if let Some(les) = lesions {
            groups.push_str(&format!("{id},{},histo\n", les[i]));
        }
        ids.push(id);
    }
    fs::write(root.join("ISIC2018_Task3_Training_GroundTruth.csv"), gt).unwrap();
    if lesions.is_some() {
        fs::write(
            root.join("ISIC2018_Task3_Training_LesionGroupings.csv"),
            groups,
        )
        .unwrap();
    }
    ids
}

/// A temporary folder whose `data` subfolder holds a synthetic ISIC set
/// (`dermclass::data::synth`): `per_class` images of each class at `width`x`height`, drawn
/// from `seed`. Keep the folder alive as long as the data is used.
pub fn synth_set(
    per_class: usize,
    width: u32,
    height: u32,
    seed: u64,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    dermclass::data::synth::generate(&data, per_class, width, height, seed).unwrap();
    (dir, data)
}

/// The epochs a run folder's `last.ckpt` has done.
pub fn epochs_done(run: &Path) -> usize {
    dermclass::train::checkpoint::load(&run.join("last.ckpt"))
        .unwrap()
        .state
        .epochs_done
}

/// The names of the entries of `dir` that `keep` accepts.
pub fn names_in(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| keep(n))
        .collect()
}

/// Labels with `n` images of each of the 7 classes.
pub fn labels_each(n: usize) -> Vec<usize> {
    (0..7).flat_map(|c| std::iter::repeat_n(c, n)).collect()
}

use dermclass::train::SessionOptions;
use dermclass::train::config::TrainConfig;

/// Small, fast settings on `data`: a 0.5x ShuffleNet v2 at 32x32, with dropout.
pub fn tiny_config(data: &Path, epochs: usize) -> TrainConfig {
    TrainConfig {
        data: data.to_path_buf(),
        arch: "shufflenet_v2:0.5".into(),
        width: 32,
        height: 32,
        epochs,
        batch: 8,
        lr: 3e-3,
        warmup_epochs: 0.0,
        dropout: Some(0.2),
        workers: 2,
        ..TrainConfig::default()
    }
}

/// A tensor's values as `f32`s.
pub fn values<const D: usize>(t: &burn::prelude::Tensor<D>) -> Vec<f32> {
    t.try_to_vec_as::<f32>().unwrap()
}

/// No progress bars.
pub fn quiet() -> SessionOptions {
    SessionOptions::default()
}

/// The `dermclass` binary under test, as a command to add arguments to.
pub fn dermclass_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dermclass"))
}

/// The stdout of a finished command; fails the test with its output, naming it `what`,
/// unless it succeeded.
pub fn stdout_of_success(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Fails the test with the command's output unless it succeeded.
pub fn assert_success(out: &Output) {
    stdout_of_success("the command", out);
}

/// Runs `cmd`, fails the test with its output unless it succeeds, and returns its output.
pub fn output_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run the command");
    assert_success(&out);
    out
}

/// The small training flags of the CLI tests: a 0.5x tiny CNN at 32x32, one epoch of
/// batches of 8.
pub const TINY_CNN_FLAGS: [&str; 8] = [
    "--arch",
    "tiny_cnn:0.5",
    "--input",
    "32",
    "--epochs",
    "1",
    "--batch",
    "8",
];

/// Runs `dermclass` with `args`, fails the test with its stderr unless it succeeds, and
/// returns its stdout.
pub fn dermclass_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = dermclass_cmd().args(&args).output().expect("run dermclass");
    stdout_of_success(&format!("dermclass {args:?}"), &out)
}

/// Debian's Chromium (or `$CHROMIUM`) and the npm `packages` in `web/node_modules`, or why a
/// browser test cannot run.
pub fn chromium_with(packages: &[&str]) -> Result<std::path::PathBuf, String> {
    let chromium = std::env::var_os("CHROMIUM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        return Err(format!(
            "no Chromium at {} (apt-get install chromium)",
            chromium.display()
        ));
    }
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/node_modules");
    for package in packages {
        if !modules.join(package).is_dir() {
            return Err(format!(
                "web/node_modules/{package} is missing (npm install in web/)"
            ));
        }
    }
    Ok(chromium)
}

/// Runs `web/test/<script>` under node with `args`, fails the test with its output unless it
/// succeeds, and returns the one JSON line it prints.
pub fn run_browser_script<I, S>(script: &str, args: I) -> serde_json::Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let run = std::process::Command::new("node")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("web/test")
                .join(script),
        )
        .args(args)
        .output()
        .expect("node runs");
    let stdout = stdout_of_success(script, &run);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON line ({e}): {stdout}"))
}

/// The Python of `bench/.venv` when it can import `modules` (a comma-separated list;
/// `bench/setup-peers.sh` installs them).
pub fn venv_python_with(modules: &str) -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/.venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}
