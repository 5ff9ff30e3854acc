//! `train --init`: torchvision state dicts load into dermclass and give torchvision's
//! logits; what cannot load is refused by name before any image is read.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use dermclass::model::ModelSpec;
use dermclass::model::torchvision::{InitError, load_state_dict};

use crate::helpers::{dermclass_cmd, stdout_of_success, synth_set, values, venv_python_with};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torchvision")
        .join(name)
}

fn f32s(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// dermclass's eval-mode logits for the fixture's input after loading its state dict, and
/// torchvision's.
fn logits_after_init(arch: &str, dir: &Path) -> (Vec<f32>, Vec<f32>) {
    let device = Device::default();
    let spec = ModelSpec::parse(arch, 7).unwrap();
    let keys = spec.arch.torchvision_keys().unwrap();
    let model = spec.build(&device).unwrap();
    let (model, report) = load_state_dict(model, arch, &keys, &dir.join("model.pth")).unwrap();
    assert!(report.classifier_loaded, "{arch}: {report:?}");
    assert_eq!(report.tensors, keys.keys().len(), "{arch}");
    let x = Tensor::<4>::from_data(
        TensorData::new(f32s(&dir.join("input.bin")), [1, 3, 64, 64]),
        &device,
    );
    let got = model.valid().forward(x).into_data().iter::<f32>().collect();
    (got, f32s(&dir.join("logits.bin")))
}

fn assert_logits_equal(arch: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{arch}");
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * scale,
            "{arch}: logit {i} is {g}, torchvision says {w} (scale {scale})"
        );
    }
}

#[test]
fn committed_torchvision_weights_give_torchvisions_logits() {
    for (arch, dir) in [
        ("mobilenet_v2:0.35", "mobilenet_v2_0.35"),
        ("shufflenet_v2:0.5", "shufflenet_v2_0.5"),
    ] {
        let (got, want) = logits_after_init(arch, &fixture(dir));
        assert_logits_equal(arch, &got, &want);
    }
}

#[test]
fn resnet50_written_by_torchvision_gives_its_logits() {
    let Some(python) = venv_python_with("torchvision") else {
        eprintln!("SKIPPED: bench/.venv lacks torchvision (run bench/setup-peers.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/torchvision_fixture.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["resnet50", "7"])
        .arg(dir.path())
        .output()
        .unwrap();
    stdout_of_success("torchvision_fixture.py resnet50", &out);
    let (got, want) = logits_after_init("resnet50", dir.path());
    assert_logits_equal("resnet50", &got, &want);
}

/// Why `path` cannot initialise a fresh `arch` with 7 classes.
fn init_error(arch: &str, path: &Path) -> InitError {
    let spec = ModelSpec::parse(arch, 7).unwrap();
    let keys = spec.arch.torchvision_keys().unwrap();
    let model = spec.build(&Device::default()).unwrap();
    load_state_dict(model, arch, &keys, path).unwrap_err()
}

#[test]
fn another_architectures_file_and_other_class_counts_are_handled() {
    let device = Device::default();
    // A ShuffleNet's state dict for a MobileNetV2: refused, naming the file.
    let err = init_error(
        "mobilenet_v2:0.35",
        &fixture("shufflenet_v2_0.5").join("model.pth"),
    );
    assert!(matches!(err, InitError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("model.pth"), "{err}");
    // Another width of the same family: same keys, other shapes.
    let path = fixture("mobilenet_v2_0.35").join("model.pth");
    let err = init_error("mobilenet_v2:0.5", &path);
    assert!(err.to_string().contains("has shape"), "{err}");
    // Three classes: everything but the classifier loads, which stays as initialised.
    let spec = ModelSpec::parse("mobilenet_v2:0.35", 3).unwrap();
    let fresh = spec.build(&device).unwrap();
    let fresh_head = values(&fresh.head().linear_weight());
    let keys = spec.arch.torchvision_keys().unwrap();
    let (model, report) = load_state_dict(fresh, "mobilenet_v2:0.35", &keys, &path).unwrap();
    assert!(!report.classifier_loaded);
    assert_eq!(report.file_classes, 7);
    assert_eq!(report.tensors, keys.keys().len() - 2);
    let head = values(&model.head().linear_weight());
    assert_eq!(head, fresh_head);
    // A file that is not a PyTorch file.
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"not a state dict").unwrap();
    let err = init_error("mobilenet_v2:0.35", junk.path());
    assert!(matches!(err, InitError::Read { .. }), "{err}");
}

/// `dermclass train --data DATA --out RUN --init INIT --arch ARCH`, to add flags to.
fn train_with_init(data: &Path, run: &Path, init: &Path, arch: &str) -> std::process::Command {
    let mut cmd = dermclass_cmd();
    cmd.args(["train", "--data"])
        .arg(data)
        .arg("--out")
        .arg(run);
    cmd.arg("--init").arg(init).args(["--arch", arch]);
    cmd
}

#[test]
fn train_init_reports_what_it_loaded_and_normalises_as_imagenet() {
    let (dir, data) = synth_set(3, 40, 40, 5);
    let run = dir.path().join("run");
    let init = fixture("mobilenet_v2_0.35").join("model.pth");
    let out = train_with_init(&data, &run, &init, "mobilenet_v2:0.35")
        .args(["--input", "32", "--epochs", "1", "--batch", "8"])
        .output()
        .unwrap();
    let stdout = stdout_of_success("train --init", &out);
    assert!(
        // The synthetic set has the 7 ISIC classes, as the fixture's classifier does.
        stdout.contains("initialised from") && stdout.contains("262 tensors, the classifier too"),
        "{stdout}"
    );
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("normalization = \"imagenet\""), "{config}");
    assert!(config.contains("init = "), "{config}");
}

#[test]
fn train_init_refuses_an_architecture_without_torchvision_layout_before_reading_data() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let init = fixture("mobilenet_v2_0.35").join("model.pth");
    for (arch, init) in [
        ("plain_v1:0.25", init.clone()),
        ("mobilenet_v2:0.35", dir.path().join("absent.pth")),
    ] {
        let out = train_with_init(&dir.path().join("no-data-here"), &run, &init, arch)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{arch}");
        assert!(
            stderr.contains("cannot start from torchvision weights")
                || stderr.contains("no such file"),
            "{arch}: {stderr}"
        );
        assert!(!run.exists(), "{arch}: the run folder was created");
    }
}

/// The speed peers' PyTorch twins (`bench/torch_models.py`) are the same networks: their
/// trainable parameters at 7 classes equal dermclass's count for every family.
#[test]
fn the_pytorch_twins_of_the_speed_peers_have_dermclass_parameter_counts() {
    let Some(python) = venv_python_with("torchvision") else {
        eprintln!("SKIPPED: bench/.venv lacks torchvision (run bench/setup-peers.sh)");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/torch_models.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .output()
        .unwrap();
    let stdout = stdout_of_success("torch_models.py", &out);
    let mut families = 0;
    for line in stdout.lines() {
        let (arch, params) = line.split_once(' ').unwrap();
        let ours = ModelSpec::parse(arch, 7)
            .unwrap()
            .cost(224, 224)
            .unwrap()
            .params();
        assert_eq!(params.parse::<usize>().unwrap(), ours, "{arch}");
        families += 1;
    }
    assert_eq!(families, 6, "{stdout}");
}
