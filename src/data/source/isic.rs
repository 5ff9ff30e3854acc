//! The official ISIC 2018 Task 3 layout: a one-hot ground-truth CSV per subset beside its
//! image folder, with lesion groupings from the lesion-groupings CSV or HAM10000's metadata.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::*;

const ISIC_SUBSETS: [&str; 3] = ["Training", "Validation", "Test"];

/// Finds the ground-truth CSV of an ISIC subset, at the root or inside the
/// `ISIC2018_Task3_{subset}_GroundTruth/` folder of the official zip.
pub fn find_isic_ground_truth(root: &Path, subset: &str) -> Option<PathBuf> {
    let name = format!("ISIC2018_Task3_{subset}_GroundTruth");
    let direct = root.join(format!("{name}.csv"));
    if direct.is_file() {
        return Some(direct);
    }
    let dir = root.join(&name);
    let inner = dir.join(format!("{name}.csv"));
    if inner.is_file() {
        return Some(inner);
    }
    if dir.is_dir()
        && let Ok(list) = read_dir_sorted(&dir)
    {
        return list.into_iter().find(|p| {
            p.extension()
                .map(|e| e.eq_ignore_ascii_case("csv"))
                .unwrap_or(false)
        });
    }
    None
}

/// The official subset name (`Training`, `Validation`, `Test`) for `name` in any case.
pub fn isic_subset_name(name: &str) -> Result<&'static str, DataError> {
    ISIC_SUBSETS
        .iter()
        .copied()
        .find(|x| x.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            DataError::Config(format!(
                "unknown ISIC subset `{name}`; expected training, validation or test"
            ))
        })
}

pub(super) fn open_isic(root: &Path, opts: &OpenOptions) -> Result<Dataset, DataError> {
    let subset = match &opts.isic_subset {
        Some(s) => isic_subset_name(s)?.to_string(),
        None => ISIC_SUBSETS
            .iter()
            .find(|s| {
                root.join(format!("ISIC2018_Task3_{s}_Input")).is_dir()
                    && find_isic_ground_truth(root, s).is_some()
            })
            .map(|s| s.to_string())
            .ok_or_else(|| DataError::Layout {
                root: root.to_path_buf(),
                msg: "ISIC layout: no ISIC2018_Task3_*_Input/ folder with a matching \
                      ISIC2018_Task3_*_GroundTruth.csv"
                    .into(),
            })?,
    };
    let input = root.join(format!("ISIC2018_Task3_{subset}_Input"));
    if !input.is_dir() {
        return Err(DataError::Layout {
            root: root.to_path_buf(),
            msg: format!("missing folder {}", input.display()),
        });
    }
    let gt = find_isic_ground_truth(root, &subset).ok_or_else(|| DataError::Layout {
        root: root.to_path_buf(),
        msg: format!("missing ISIC2018_Task3_{subset}_GroundTruth.csv"),
    })?;
    let mut images = BTreeMap::new();
    list_images(&input, &mut images)?;

    let groupings_path = root.join(format!("ISIC2018_Task3_{subset}_LesionGroupings.csv"));
    let mut lesions = if groupings_path.is_file() {
        read_lesion_groupings(&groupings_path)?
    } else {
        HashMap::new()
    };
    // HAM10000 metadata also carries lesion ids for the training images.
    if lesions.is_empty()
        && let Some(meta) = find_ham_metadata(root)
        && let Ok(m) = read_lesion_groupings(&meta)
    {
        lesions = m;
    }

    let mut rdr = csv_reader(&gt)?;
    let headers = rdr.headers().map_err(|e| csv_err(&gt, e))?.clone();
    if headers.get(0) != Some("image") {
        return Err(DataError::Csv {
            path: gt.clone(),
            msg: format!(
                "first column must be `image`, found `{}`",
                headers.get(0).unwrap_or("")
            ),
        });
    }
    let mut col_class = Vec::new();
    for h in headers.iter().skip(1) {
        match class_index_for(h) {
            Some(c) => col_class.push(c),
            None => {
                return Err(DataError::UnknownColumn {
                    csv: gt.clone(),
                    column: h.to_string(),
                });
            }
        }
    }
    // Classes: the official codes present as columns, in official order.
    let mut present: Vec<usize> = col_class.clone();
    present.sort_unstable();
    present.dedup();
    if present.len() != col_class.len() {
        return Err(DataError::Csv {
            path: gt.clone(),
            msg: "a class column appears twice".into(),
        });
    }
    let classes: Vec<String> = present
        .iter()
        .map(|&c| ISIC_CLASSES[c].to_string())
        .collect();
    let remap: HashMap<usize, usize> = present.iter().enumerate().map(|(i, &c)| (c, i)).collect();

    let rows = read_rows(&gt, &mut rdr, 0, &images, opts, |rec, line, id| {
        let k = one_hot_index(rec).ok_or_else(|| DataError::NotOneHot {
            csv: gt.clone(),
            line,
            id: id.to_string(),
            values: rec.iter().skip(1).collect::<Vec<_>>().join(","),
        })?;
        Ok((remap[&col_class[k]], lesions.get(id).cloned()))
    })?;
    Ok(Dataset {
        root: root.to_path_buf(),
        format: SourceFormat::Isic,
        classes,
        samples: rows.samples,
        warnings: rows.warnings,
        skipped: rows.skipped,
    })
}

/// The class column holding the row's single 1 (every other value 0), if the row is
/// one-hot.
fn one_hot_index(rec: &csv::StringRecord) -> Option<usize> {
    let mut hot = None;
    for (k, v) in rec.iter().skip(1).enumerate() {
        match v.parse::<f64>() {
            Ok(1.0) if hot.is_none() => hot = Some(k),
            Ok(0.0) => {}
            _ => return None,
        }
    }
    hot
}
