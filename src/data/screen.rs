//! Screening a batch job's images before it starts: every image is decoded once (in
//! parallel), so a job over a large archive either reports every unreadable file at once
//! (strict) or runs on the readable ones and lists the others (`--skip-bad`).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::error::DataError;
use super::image_io::load_image_rgb;
use super::source::{Sample, Skipped};

/// An image (or data-set entry) that a job left out, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput {
    /// Image id, or what the entry is when no image file is known.
    pub image: String,
    /// The file concerned (empty when the problem was not with one image file).
    pub file: PathBuf,
    /// Short kind of problem (e.g. `undecodable image`).
    pub kind: String,
    /// The full message, naming the file and the problem.
    pub reason: String,
}

impl BadInput {
    /// An entry skipped while opening a data set (`Dataset::skipped`).
    pub fn from_skipped(s: &Skipped) -> Self {
        BadInput {
            image: s.what.clone(),
            file: PathBuf::new(),
            kind: s.kind.clone(),
            reason: s.message.clone(),
        }
    }
}

/// The outcome of [`screen_images`].
#[derive(Debug, Clone, Default)]
pub struct Screened {
    /// Samples whose image decodes, in input order.
    pub good: Vec<Sample>,
    /// Samples whose image does not, in input order.
    pub bad: Vec<BadInput>,
}

/// Decodes the image of every sample (in parallel) and splits them into good and bad,
/// keeping the input order in both.
pub fn screen_images(samples: Vec<Sample>) -> Screened {
    let errors: Vec<Option<DataError>> = samples
        .par_iter()
        .map(|s| load_image_rgb(&s.path).err())
        .collect();
    let mut out = Screened::default();
    for (sample, error) in samples.into_iter().zip(errors) {
        match error {
            None => out.good.push(sample),
            Some(e) => out.bad.push(BadInput {
                image: sample.id.clone(),
                file: sample.path.clone(),
                kind: e.kind().to_string(),
                reason: e.to_string(),
            }),
        }
    }
    out
}

/// The strict verdict on a screened job of `total` inputs: `Ok` when nothing is bad, else
/// an error that names the first bad file and says how many more there are.
pub fn require_all_readable(bad: &[BadInput], total: usize) -> Result<(), DataError> {
    let Some(first) = bad.first() else {
        return Ok(());
    };
    let more = match bad.len() - 1 {
        0 => String::new(),
        1 => " and 1 more (listed above)".to_string(),
        n => format!(" and {n} more (listed above)"),
    };
    Err(DataError::BadInputs(format!(
        "{} of {total} inputs cannot be used: {}{more}; fix them or pass --skip-bad to go on \
         without them",
        bad.len(),
        first.reason
    )))
}

/// Prints every bad input on stderr, one line each, after a heading.
pub fn print_bad(heading: &str, bad: &[BadInput]) {
    if bad.is_empty() {
        return;
    }
    eprintln!("{heading}: {}", bad.len());
    for b in bad {
        eprintln!("  {}", b.reason);
    }
}

/// The sidecar file that lists what a job writing `out` skipped: `predictions.csv` ->
/// `predictions.skipped.csv` (same folder).
pub fn skipped_sidecar(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    out.with_file_name(format!("{stem}.skipped.csv"))
}

/// Writes `bad` as CSV (`image,file,kind,reason`) to `path`, atomically. With nothing to
/// list, removes a sidecar left by an earlier run instead, so a stale list never remains.
pub fn write_skipped_csv(path: &Path, bad: &[BadInput]) -> Result<(), DataError> {
    if bad.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DataError::io(path, e)),
            _ => Ok(()),
        };
    }
    let csv_err = |e: csv::Error| DataError::Csv {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["image", "file", "kind", "reason"])
        .map_err(csv_err)?;
    for b in bad {
        let file = b.file.to_string_lossy();
        w.write_record([b.image.as_str(), &*file, b.kind.as_str(), b.reason.as_str()])
            .map_err(csv_err)?;
    }
    let bytes = w.into_inner().map_err(|e| DataError::Csv {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    crate::report::write_atomic(path, &bytes).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path, id: &str) -> Sample {
        Sample {
            id: id.into(),
            path: dir.join(format!("{id}.png")),
            label: 0,
            lesion_id: None,
        }
    }

    #[test]
    fn screening_keeps_order_and_names_every_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_pixel(4, 3, image::Rgb([10, 20, 30]));
        for id in ["a", "c", "e"] {
            img.save(dir.path().join(format!("{id}.png"))).unwrap();
        }
        std::fs::write(dir.path().join("b.png"), b"").unwrap();
        std::fs::write(dir.path().join("d.png"), b"not an image").unwrap();
        let samples: Vec<Sample> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|id| sample(dir.path(), id))
            .collect();
        let s = screen_images(samples);
        let good: Vec<&str> = s.good.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(good, ["a", "c", "e"]);
        let bad: Vec<(&str, &str)> = s
            .bad
            .iter()
            .map(|b| (b.image.as_str(), b.kind.as_str()))
            .collect();
        assert_eq!(
            bad,
            [
                ("b", "empty file"),
                ("d", "undecodable image"),
                ("f", "io error")
            ]
        );
        for b in &s.bad {
            assert!(b.reason.contains(&format!("{}.png", b.image)), "{b:?}");
        }

        let err = require_all_readable(&s.bad, 6).unwrap_err().to_string();
        assert!(err.contains("3 of 6 inputs"), "{err}");
        assert!(err.contains("b.png: empty file"), "{err}");
        assert!(err.contains("and 2 more"), "{err}");
        assert!(require_all_readable(&[], 6).is_ok());
    }

    #[test]
    fn sidecar_is_written_and_a_stale_one_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("predictions.csv");
        let side = skipped_sidecar(&out);
        assert_eq!(side, dir.path().join("predictions.skipped.csv"));
        let bad = vec![BadInput {
            image: "x".into(),
            file: dir.path().join("x.jpg"),
            kind: "empty file".into(),
            reason: "x.jpg: empty file, with a comma".into(),
        }];
        write_skipped_csv(&side, &bad).unwrap();
        let mut r = csv::Reader::from_path(&side).unwrap();
        assert_eq!(
            r.headers().unwrap().iter().collect::<Vec<_>>(),
            ["image", "file", "kind", "reason"]
        );
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][3], "x.jpg: empty file, with a comma");
        write_skipped_csv(&side, &[]).unwrap();
        assert!(!side.exists());
        write_skipped_csv(&side, &[]).unwrap();
    }
}
