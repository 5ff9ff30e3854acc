//! The HAM10000 layout: `HAM10000_metadata.csv` (one row per image with its diagnosis and
//! lesion id) beside the image folders.

use std::collections::BTreeMap;
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
    let rows = read_rows(&meta, &mut rdr, img_col, &images, opts, |rec, line, id| {
        let dx = rec.get(dx_col).unwrap_or("");
        let label = class_index_for(dx).ok_or_else(|| DataError::UnknownClass {
            csv: meta.clone(),
            line,
            id: id.to_string(),
            class: dx.to_string(),
        })?;
        let lesion_id = les_col
            .and_then(|c| rec.get(c))
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Ok((label, lesion_id))
    })?;
    Ok(Dataset {
        root: root.to_path_buf(),
        format: SourceFormat::Ham10000,
        classes,
        samples: rows.samples,
        warnings: rows.warnings,
        skipped: rows.skipped,
    })
}

// ---------------------------------------------------------------- folders
