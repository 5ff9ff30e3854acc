//! The HAM10000 layout: `HAM10000_metadata.csv` (one row per image with its diagnosis and
//! lesion id) beside the image folders.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::*;

pub(super) fn open_ham(root: &Path, opts: &OpenOptions) -> Result<Dataset, DataError> {
    let meta = find_ham_metadata(root).ok_or_else(|| DataError::Layout {
        root: root.to_path_buf(),
        msg: "HAM10000 layout: missing HAM10000_metadata.csv".into(),
    })?;
    // Images: the root itself and every sub-folder (HAM10000_images_part_1/2 or any other).
    let mut images = BTreeMap::new();
    list_images(root, &mut images)?;
    for p in read_dir_sorted(root)? {
        if p.is_dir() && !is_hidden(&p) {
            list_images(&p, &mut images)?;
        }
    }
    let mut rdr = csv_reader(&meta)?;
    let headers = rdr.headers().map_err(|e| csv_err(&meta, e))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (img_col, dx_col) = match (col("image_id"), col("dx")) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            return Err(DataError::Csv {
                path: meta.clone(),
                msg: "HAM10000 metadata needs `image_id` and `dx` columns".into(),
            });
        }
    };
    let les_col = col("lesion_id");
    let classes: Vec<String> = ISIC_CLASSES.iter().map(|s| s.to_string()).collect();
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = HashSet::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_err(&meta, e))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let id = rec.get(img_col).unwrap_or("").to_string();
        let res = (|| {
            if !seen.insert(id.clone()) {
                return Err(DataError::DuplicateId {
                    path: meta.clone(),
                    id: id.clone(),
                });
            }
            let dx = rec.get(dx_col).unwrap_or("");
            let label = class_index_for(dx).ok_or_else(|| DataError::UnknownClass {
                csv: meta.clone(),
                line,
                id: id.clone(),
                class: dx.to_string(),
            })?;
            let path = images
                .get(&id)
                .cloned()
                .ok_or_else(|| DataError::MissingImage {
                    csv: meta.clone(),
                    id: id.clone(),
                })?;
            let lesion_id = les_col
                .and_then(|c| rec.get(c))
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            Ok(Sample {
                id: id.clone(),
                path,
                label,
                lesion_id,
            })
        })();
        match res {
            Ok(s) => samples.push(s),
            Err(e) if opts.skip_bad => skipped.push(skipped_from(&id, &e)),
            Err(e) => return Err(e),
        }
    }
    let warnings = unlisted_warnings(&images, &seen, &meta);
    Ok(Dataset {
        root: root.to_path_buf(),
        format: SourceFormat::Ham10000,
        classes,
        samples,
        warnings,
        skipped,
    })
}

// ---------------------------------------------------------------- folders
