//! `prepare`: rewrite any source as one folder per class (hard links where possible).

use std::fs;
use std::path::Path;

use super::error::DataError;
use super::source::{Dataset, FOLDERS_LESIONS_FILE};

/// What `prepare` did.
#[derive(Debug, Clone, Default)]
pub struct PrepareSummary {
    /// Images per class, indexed like `Dataset::classes`.
    pub counts: Vec<usize>,
    /// Files hard-linked.
    pub linked: usize,
    /// Files copied (hard link impossible, e.g. across file systems).
    pub copied: usize,
}

/// Writes `out/<CLASS>/<file>` for every sample of `ds`, plus `out/lesions.csv`
/// (`image,lesion_id`) when lesion ids are known so that later splits stay grouped.
/// Existing identical targets are replaced.
pub fn prepare(ds: &Dataset, out: &Path) -> Result<PrepareSummary, DataError> {
    fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    for c in &ds.classes {
        let d = out.join(c);
        fs::create_dir_all(&d).map_err(|e| DataError::io(&d, e))?;
    }
    let mut summary = PrepareSummary {
        counts: ds.class_counts(),
        ..Default::default()
    };
    for s in &ds.samples {
        let name = s
            .path
            .file_name()
            .ok_or_else(|| DataError::Config(format!("{}: no file name", s.path.display())))?;
        let target = out.join(&ds.classes[s.label]).join(name);
        if target.exists() {
            fs::remove_file(&target).map_err(|e| DataError::io(&target, e))?;
        }
        match fs::hard_link(&s.path, &target) {
            Ok(()) => summary.linked += 1,
            Err(_) => {
                fs::copy(&s.path, &target).map_err(|e| DataError::io(&target, e))?;
                summary.copied += 1;
            }
        }
    }
    if ds.samples.iter().any(|s| s.lesion_id.is_some()) {
        let p = out.join(FOLDERS_LESIONS_FILE);
        let err = |e: csv::Error| DataError::Csv {
            path: p.clone(),
            msg: e.to_string(),
        };
        let mut w = csv::Writer::from_path(&p).map_err(err)?;
        w.write_record(["image", "lesion_id"]).map_err(err)?;
        for s in &ds.samples {
            if let Some(l) = &s.lesion_id {
                w.write_record([s.id.as_str(), l.as_str()]).map_err(err)?;
            }
        }
        w.flush().map_err(|e| DataError::io(&p, e))?;
    }
    Ok(summary)
}
