//! Reports: per-epoch history (`metrics.csv`), pictures, markdown tables, the ISIC submission
//! CSV, and [`write_atomic`] for any file that must never be seen half-written.

pub mod markdown;
pub mod plots;
pub mod run;
pub mod submission;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Environment variable for fault-injection tests: a comma-separated list of file names
/// (e.g. `last.ckpt,best.ckpt`). [`write_atomic`] to a file of one of these names writes
/// half of its bytes to the temporary file and then fails as a full disk would.
pub const FAIL_WRITES_ENV: &str = "DERMCLASS_FAIL_WRITES";

fn injected_failure(file_name: &std::ffi::OsStr) -> Option<io::Error> {
    let names = std::env::var(FAIL_WRITES_ENV).ok()?;
    names
        .split(',')
        .any(|n| !n.trim().is_empty() && file_name == n.trim())
        .then(|| {
            io::Error::new(
                io::ErrorKind::StorageFull,
                format!("no space left on device (injected by {FAIL_WRITES_ENV})"),
            )
        })
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory is written,
/// fsynced and renamed over `path` (then the directory is fsynced, best effort). Readers see
/// either the old file or the complete new one. The temporary file is removed on failure,
/// and the error says that `path` was not replaced. Failures can be injected for tests
/// through [`FAIL_WRITES_ENV`].
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path = path.as_ref();
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        if let Some(e) = injected_failure(file_name) {
            f.write_all(&bytes[..bytes.len() / 2])?;
            return Err(e);
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io::Error::new(
            e.kind(),
            format!(
                "writing {}: {e}; {} was not replaced (its previous version, if any, is intact)",
                path.display(),
                path.display()
            ),
        ));
    }
    // Make the rename durable; not every platform can open a directory, so best effort.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// One row of the training history (`metrics.csv`), one per epoch. Undefined values (e.g.
/// the macro AUC when no class has both positives and negatives) are stored as NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    /// Epoch number (1-based by convention).
    pub epoch: usize,
    /// Mean training loss over the epoch.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    /// Mean validation loss.
    #[serde(deserialize_with = "nan_if_null")]
    pub val_loss: f64,
    /// Validation accuracy.
    #[serde(deserialize_with = "nan_if_null")]
    pub val_accuracy: f64,
    /// Validation balanced multiclass accuracy (the ISIC metric).
    #[serde(deserialize_with = "nan_if_null")]
    pub val_balanced_accuracy: f64,
    /// Validation macro one-vs-rest ROC AUC (NaN when undefined).
    #[serde(deserialize_with = "nan_if_null")]
    pub val_macro_auc: f64,
    /// Learning rate used during the epoch (last value if scheduled).
    pub lr: f64,
    /// Wall-clock seconds the epoch took.
    pub seconds: f64,
    /// Training throughput, images per second.
    pub images_per_second: f64,
}

/// JSON has no NaN: serde_json writes it as `null`, so `null` reads back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// Serialises `rows` as CSV (with a header line) into a string.
pub fn epochs_to_csv(rows: &[EpochRow]) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if rows.is_empty() {
        // serde only writes the header with the first record; write it by hand.
        w.write_record(EPOCH_COLUMNS)?;
    }
    for r in rows {
        w.serialize(r)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(String::from_utf8(bytes)?)
}

/// Column names of `metrics.csv`, in order.
pub const EPOCH_COLUMNS: [&str; 9] = [
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_balanced_accuracy",
    "val_macro_auc",
    "lr",
    "seconds",
    "images_per_second",
];

/// Atomically (re)writes the whole history to `path` as CSV.
pub fn write_epochs_csv(path: impl AsRef<Path>, rows: &[EpochRow]) -> anyhow::Result<()> {
    let path = path.as_ref();
    let text = epochs_to_csv(rows)?;
    write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Reads a history written by [`write_epochs_csv`].
pub fn read_epochs_csv(path: impl AsRef<Path>) -> anyhow::Result<Vec<EpochRow>> {
    let path = path.as_ref();
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, rec) in r.deserialize().enumerate() {
        let row: EpochRow =
            rec.with_context(|| format!("{}: bad row {}", path.display(), i + 2))?;
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize) -> EpochRow {
        EpochRow {
            epoch,
            train_loss: 1.5 / epoch as f64,
            val_loss: 1.7 / epoch as f64,
            val_accuracy: 0.6 + 0.02 * epoch as f64,
            val_balanced_accuracy: 0.3 + 0.04 * epoch as f64,
            val_macro_auc: 0.8,
            lr: 1e-3,
            seconds: 61.25,
            images_per_second: 140.5,
        }
    }

    #[test]
    fn undefined_values_survive_a_json_round_trip_as_nan() {
        let mut r = row(2);
        r.val_loss = f64::NAN;
        r.val_macro_auc = f64::NAN;
        let back: EpochRow = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert!(back.val_loss.is_nan() && back.val_macro_auc.is_nan());
        assert_eq!(back.train_loss, r.train_loss);
    }

    #[test]
    fn write_atomic_creates_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ckpt.bin");
        write_atomic(&p, b"first").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"first");
        write_atomic(&p, b"second, longer").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second, longer");
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn write_atomic_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("x.txt");
        let err = write_atomic(&p, b"x").unwrap_err();
        assert!(err.to_string().contains("x.txt"));
        // Renaming over a directory fails; the temporary file must be removed.
        let d = dir.path().join("sub");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("f"), b"keep").unwrap();
        assert!(write_atomic(&d, b"x").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomic(Path::new("/"), b"x").is_err());
    }

    #[test]
    fn epochs_csv_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.csv");
        let mut rows = vec![row(1), row(2)];
        rows[0].val_macro_auc = f64::NAN;
        write_epochs_csv(&p, &rows).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().next().unwrap(), EPOCH_COLUMNS.join(","));
        let back = read_epochs_csv(&p).unwrap();
        assert_eq!(back.len(), 2);
        assert!(back[0].val_macro_auc.is_nan());
        assert_eq!(back[1], rows[1]);
    }

    #[test]
    fn empty_history_has_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.csv");
        write_epochs_csv(&p, &[]).unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap().trim_end(),
            EPOCH_COLUMNS.join(",")
        );
        assert!(read_epochs_csv(&p).unwrap().is_empty());
        fs::write(&p, "epoch,train_loss\n1,abc\n").unwrap();
        let err = format!("{:#}", read_epochs_csv(&p).unwrap_err());
        assert!(err.contains("row 2"), "{err}");
    }
}
