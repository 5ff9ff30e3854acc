//! One folder per class, with an optional `lesions.csv` that groups images by lesion.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::*;

/// Name of the optional `image,lesion_id` file in a folders-layout root (written by
/// `prepare` so that splits stay grouped by lesion).
pub const FOLDERS_LESIONS_FILE: &str = "lesions.csv";

pub(super) fn open_folders(root: &Path, opts: &OpenOptions) -> Result<Dataset, DataError> {
    let dirs: Vec<PathBuf> = read_dir_sorted(root)?
        .into_iter()
        .filter(|p| p.is_dir() && !is_hidden(p))
        .collect();
    if dirs.is_empty() {
        return Err(DataError::Layout {
            root: root.to_path_buf(),
            msg: "folders layout: no class folders".into(),
        });
    }
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // Classes: the official codes (official order) when every folder name is one of them,
    // otherwise the folder names, sorted.
    let all_known = names.iter().all(|n| class_index_for(n).is_some());
    let mut order: Vec<(usize, String, PathBuf)> = if all_known {
        let mut v: Vec<_> = names
            .iter()
            .zip(&dirs)
            .map(|(n, d)| (class_index_for(n).unwrap(), n.clone(), d.clone()))
            .collect();
        v.sort_by_key(|x| x.0);
        let mut seen = HashSet::new();
        for (c, n, d) in &v {
            if !seen.insert(*c) {
                return Err(DataError::DuplicateId {
                    path: d.clone(),
                    id: format!("class folder `{n}`"),
                });
            }
        }
        v
    } else {
        names
            .iter()
            .zip(&dirs)
            .enumerate()
            .map(|(i, (n, d))| (i, n.clone(), d.clone()))
            .collect()
    };
    let classes: Vec<String> = order
        .iter()
        .map(|(c, n, _)| {
            if all_known {
                ISIC_CLASSES[*c].to_string()
            } else {
                n.clone()
            }
        })
        .collect();
    let lesions_path = root.join(FOLDERS_LESIONS_FILE);
    let lesions = if lesions_path.is_file() {
        read_lesion_groupings(&lesions_path)?
    } else {
        HashMap::new()
    };
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for (label, (_, _, dir)) in order.drain(..).enumerate() {
        for p in read_dir_sorted(&dir)? {
            if !(p.is_file() && is_image_path(&p) && !is_hidden(&p)) {
                continue;
            }
            let id = p.file_stem().unwrap().to_string_lossy().into_owned();
            if seen.contains_key(&id) {
                let e = DataError::DuplicateId {
                    path: p.clone(),
                    id: id.clone(),
                };
                if opts.skip_bad {
                    skipped.push(skipped_from(&id, &e));
                    continue;
                }
                return Err(e);
            }
            seen.insert(id.clone(), p.clone());
            samples.push(Sample {
                lesion_id: lesions.get(&id).cloned(),
                id,
                path: p,
                label,
            });
        }
    }
    Ok(Dataset {
        root: root.to_path_buf(),
        format: SourceFormat::Folders,
        classes,
        samples,
        warnings: Vec::new(),
        skipped,
    })
}
