//! The command line's view of a training session: a progress bar per epoch and one line
//! per finished epoch, from the library's events.

use std::sync::{Arc, Mutex};

use dermclass::train::{Event, Observer};
use indicatif::{ProgressBar, ProgressStyle};

/// Prints epoch lines (and, when `bars`, draws a progress bar during each epoch).
pub fn terminal(bars: bool) -> Observer {
    let bar: Arc<Mutex<Option<ProgressBar>>> = Arc::new(Mutex::new(None));
    Observer::new(move |event| {
        let mut bar = bar.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match event {
            Event::SkippedImages { count, by_kind } => {
                eprintln!("skipped {count} unreadable images: {by_kind}");
            }
            Event::EpochStarted {
                epoch,
                epochs,
                images,
            } if bars => *bar = Some(epoch_bar(*images, *epoch, *epochs)),
            Event::EpochStarted { .. } => {}
            Event::BatchDone { images, mean_loss } => {
                if let Some(b) = bar.as_ref() {
                    b.set_message(format!("loss {mean_loss:.4}"));
                    b.inc(*images as u64);
                }
            }
            Event::EpochEnded { row, epochs } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                // A final fit has no validation: say so rather than print NaNs.
                let validation = if row.val_loss.is_nan() && row.val_balanced_accuracy.is_nan() {
                    "no validation (final fit)".to_string()
                } else {
                    format!(
                        "val_loss {:.4} val_acc {:.4} val_bacc {:.4} val_auc {:.4}",
                        row.val_loss,
                        row.val_accuracy,
                        row.val_balanced_accuracy,
                        row.val_macro_auc
                    )
                };
                println!(
                    "epoch {}/{epochs}: train_loss {:.4} {validation} lr {:.2e} {:.0}s {:.1} img/s",
                    row.epoch, row.train_loss, row.lr, row.seconds, row.images_per_second
                );
            }
            Event::Stopping { reason } => println!("{reason}"),
            Event::Initialised(report) => {
                let classifier = if report.classifier_loaded {
                    "the classifier too".to_string()
                } else {
                    format!(
                        "the classifier freshly initialised (the file's has {} classes)",
                        report.file_classes
                    )
                };
                println!(
                    "initialised from {}: {} tensors, {classifier}",
                    report.path.display(),
                    report.tensors
                );
            }
            Event::ArchStarted { arch } => println!("== {arch}"),
            Event::ArchAlreadyDone { arch } => println!("{arch}: finished before, not retrained"),
        }
    })
}

fn epoch_bar(images: usize, epoch: usize, epochs: usize) -> ProgressBar {
    let bar = ProgressBar::new(images as u64);
    bar.set_message("starting");
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} images, {msg}, {rate} eta {eta}",
    )
    .expect("valid template")
    .progress_chars("=> ")
    .with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.1} img/s", state.per_sec());
        },
    );
    bar.set_style(style);
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}
