//! Resume: an interrupted run ends like an uninterrupted one. Alone in its own test binary
//! (process), because burn seeds the CPU backend's random generator process-wide, and other
//! tests training at the same time would draw from it.

mod helpers;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::Tensor;
use dermclass::train::config::{LossKind, ScheduleKind, TrainConfig};
use dermclass::train::{SessionOptions, checkpoint, train};
use helpers::{quiet, synth_set, tiny_config};

#[test]
fn interrupted_and_resumed_run_ends_like_an_uninterrupted_one() {
    let (dir, data) = synth_set(6, 40, 30, 3);
    // One after the other in this one test: they share the process-wide generator.
    let plain = tiny_config(&data, 2);
    check_resume(&plain, &dir.path().join("plain"));
    // With the weights' moving average and the accuracy recipe's other parts: the
    // average, its warm-up position, the decision rule and the batch mixing are restored too.
    let mut recipe = tiny_config(&data, 2);
    recipe.ema = Some(0.9);
    recipe.loss = LossKind::LogitAdjusted;
    recipe.tau = 1.0;
    recipe.schedule = ScheduleKind::Onecycle;
    recipe.shades_of_gray = Some(6.0);
    recipe.augment.crop_scale = Some([0.5, 1.0]);
    recipe.augment.saturation = 0.2;
    // Both batch mixings, so that each kind and the choice between them are replayed.
    recipe.augment.mixup = 0.2;
    recipe.augment.cutmix = 1.0;
    check_resume(&recipe, &dir.path().join("recipe"));
}

fn check_resume(config: &TrainConfig, dir: &std::path::Path) {
    let config = config.clone();
    let straight = train(&config, &dir.join("straight"), &quiet()).unwrap();

    let run = dir.join("resumed");
    let first = SessionOptions {
        max_epochs_this_session: Some(1),
        ..quiet()
    };
    let stopped = train(&config, &run, &first).unwrap();
    assert_eq!(stopped.state.epochs_done, 1);
    // Starting again without --resume must not overwrite the run.
    let err = train(&config, &run, &quiet()).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
    let resume = SessionOptions {
        resume: true,
        ..quiet()
    };
    let resumed = train(&config, &run, &resume).unwrap();
    assert_eq!(resumed.state.epochs_done, 2);

    // Same data order, augmentation, dropout draws and optimizer state: the histories agree.
    // burn's flex CPU kernels are deterministic for the same thread count, so the tolerance
    // only absorbs float formatting; a difference in state restoration shows up far above it.
    assert_eq!(straight.state.history.len(), resumed.state.history.len());
    assert_eq!(straight.state.ema_updates, resumed.state.ema_updates);
    assert_eq!(straight.state.adjustment, resumed.state.adjustment);
    for (a, b) in straight.state.history.iter().zip(&resumed.state.history) {
        assert!((a.train_loss - b.train_loss).abs() < 1e-4, "{a:?}\n{b:?}");
        assert!((a.val_loss - b.val_loss).abs() < 1e-4, "{a:?}\n{b:?}");
        assert_eq!(a.val_balanced_accuracy, b.val_balanced_accuracy);
    }
    // The weights too: the resumed run's final model and trained weights equal the
    // uninterrupted run's.
    let a = checkpoint::load(&dir.join("straight").join("last.ckpt")).unwrap();
    let b = checkpoint::load(&run.join("last.ckpt")).unwrap();
    let device = burn::prelude::Device::default();
    for (x, y) in [
        (a.model(&device).unwrap(), b.model(&device).unwrap()),
        (
            a.train_model(&device).unwrap(),
            b.train_model(&device).unwrap(),
        ),
    ] {
        let (x, y) = (weights(&x), weights(&y));
        assert_eq!(x.len(), y.len());
        let worst = x
            .iter()
            .zip(&y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "weights differ by {worst}");
    }
    assert_eq!(
        straight.best_metrics.unwrap().confusion,
        resumed.best_metrics.unwrap().confusion
    );
    for file in [
        "config.toml",
        "split.csv",
        "metrics.csv",
        "last.ckpt",
        "best.ckpt",
        "curves.png",
        "confusion.png",
        "report.md",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(csv.starts_with("epoch,train_loss,val_loss,val_accuracy,val_balanced_accuracy,val_macro_auc,lr,seconds,images_per_second"), "{csv}");
    assert_eq!(csv.lines().count(), 3);
}

/// Every float value of a model (parameters and running statistics), in order.
fn weights(model: &dermclass::model::Classifier) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let data = param.val().into_data().convert::<f32>();
            self.0.extend(data.try_to_vec::<f32>().unwrap());
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}
