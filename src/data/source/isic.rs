//! The official ISIC 2018 Task 3 layout: a one-hot ground-truth CSV per subset beside its
//! image folder, with lesion groupings from the lesion-groupings CSV or HAM10000's metadata.

use std::collections::{BTreeMap, HashMap, HashSet};
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

pub(super) fn open_isic(root: &Path, opts: &OpenOptions) -> Result<Dataset, DataError> {
    let subset = match &opts.isic_subset {
        Some(s) => {
            let canon = ISIC_SUBSETS
                .iter()
                .find(|x| x.eq_ignore_ascii_case(s))
                .ok_or_else(|| DataError::Config(format!("unknown ISIC subset `{s}`")))?;
            canon.to_string()
        }
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

    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = HashSet::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_err(&gt, e))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let id = rec.get(0).unwrap_or("").to_string();
        let res = (|| {
            if !seen.insert(id.clone()) {
                return Err(DataError::DuplicateId {
                    path: gt.clone(),
                    id: id.clone(),
                });
            }
            let mut hot = None;
            let mut ok = true;
            for (k, v) in rec.iter().skip(1).enumerate() {
                match v.parse::<f64>() {
                    Ok(1.0) => {
                        if hot.is_some() {
                            ok = false;
                        }
                        hot = Some(k);
                    }
                    Ok(0.0) => {}
                    _ => ok = false,
                }
            }
            let k = match (ok, hot) {
                (true, Some(k)) => k,
                _ => {
                    return Err(DataError::NotOneHot {
                        csv: gt.clone(),
                        line,
                        id: id.clone(),
                        values: rec.iter().skip(1).collect::<Vec<_>>().join(","),
                    });
                }
            };
            let path = images
                .get(&id)
                .cloned()
                .ok_or_else(|| DataError::MissingImage {
                    csv: gt.clone(),
                    id: id.clone(),
                })?;
            Ok(Sample {
                id: id.clone(),
                path,
                label: remap[&col_class[k]],
                lesion_id: lesions.get(&id).cloned(),
            })
        })();
        match res {
            Ok(s) => samples.push(s),
            Err(e) if opts.skip_bad => skipped.push(skipped_from(&id, &e)),
            Err(e) => return Err(e),
        }
    }
    let warnings = unlisted_warnings(&images, &seen, &gt);
    Ok(Dataset {
        root: root.to_path_buf(),
        format: SourceFormat::Isic,
        classes,
        samples,
        warnings,
        skipped,
    })
}
