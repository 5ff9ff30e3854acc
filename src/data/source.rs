//! Data sources: the official ISIC 2018 Task 3 layout, the HAM10000 layout and one folder
//! per class. [`Dataset::open`] auto-detects the layout of a root folder.
//!
//! Opening a data set only reads CSVs and lists folders; it does not decode images (see
//! [`crate::data::check`] for the pass that decodes every image).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::ISIC_CLASSES;
use super::error::DataError;

/// File extensions (lower case) treated as images.
pub const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "tif", "tiff", "bmp", "gif"];

/// The on-disk layout of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    /// `ISIC2018_Task3_{Training,Validation,Test}_Input/` + one-hot GroundTruth CSV.
    Isic,
    /// `HAM10000_metadata.csv` + any folder(s) of images.
    Ham10000,
    /// One folder per class.
    Folders,
}

impl FromStr for SourceFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "isic" | "isic2018" => Ok(SourceFormat::Isic),
            "ham10000" | "ham" => Ok(SourceFormat::Ham10000),
            "folders" | "folder" | "imagefolder" => Ok(SourceFormat::Folders),
            other => Err(format!(
                "unknown data format `{other}` (expected isic, ham10000 or folders)"
            )),
        }
    }
}

impl std::fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceFormat::Isic => "isic",
            SourceFormat::Ham10000 => "ham10000",
            SourceFormat::Folders => "folders",
        })
    }
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Image id (file stem, e.g. `ISIC_0024306`).
    pub id: String,
    /// Path of the image file.
    pub path: PathBuf,
    /// Index into [`Dataset::classes`].
    pub label: usize,
    /// Lesion id where known (several images may show one lesion).
    pub lesion_id: Option<String>,
}

/// A problem that was skipped (with `skip_bad`) or only warned about.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// Image id or file concerned.
    pub what: String,
    /// Short kind, from [`DataError::kind`] or `"not in csv"`.
    pub kind: String,
    /// Full message.
    pub message: String,
}

/// How to open a data root.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Force a layout instead of auto-detecting it.
    pub format: Option<SourceFormat>,
    /// Skip bad rows/images (and report them in [`Dataset::skipped`]) instead of failing.
    pub skip_bad: bool,
    /// For the ISIC layout: which subset (`Training`, `Validation`, `Test`). Default:
    /// `Training` when present, else the first subset that has ground truth.
    pub isic_subset: Option<String>,
}

/// A labelled data set.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The root folder it was read from.
    pub root: PathBuf,
    /// Its layout.
    pub format: SourceFormat,
    /// Class names; `Sample::label` indexes this.
    pub classes: Vec<String>,
    /// The images, in CSV order (ISIC, HAM10000) or sorted by class then file name (folders).
    pub samples: Vec<Sample>,
    /// Non-fatal problems (images on disk but not in the CSV, ...).
    pub warnings: Vec<Skipped>,
    /// Bad entries that were skipped because of `skip_bad`.
    pub skipped: Vec<Skipped>,
}

impl Dataset {
    /// Opens a data root, auto-detecting its layout unless `format` is given. Strict: the
    /// first bad entry is an error.
    pub fn open(root: &Path, format: Option<SourceFormat>) -> Result<Dataset, DataError> {
        Self::open_with(
            root,
            &OpenOptions {
                format,
                ..OpenOptions::default()
            },
        )
    }

    /// Opens a data root with options.
    pub fn open_with(root: &Path, opts: &OpenOptions) -> Result<Dataset, DataError> {
        if !root.is_dir() {
            return Err(DataError::Layout {
                root: root.to_path_buf(),
                msg: "data root is not a folder (or does not exist)".into(),
            });
        }
        let format = match opts.format {
            Some(f) => f,
            None => detect_format(root)?,
        };
        let mut ds = match format {
            SourceFormat::Isic => open_isic(root, opts)?,
            SourceFormat::Ham10000 => open_ham(root, opts)?,
            SourceFormat::Folders => open_folders(root, opts)?,
        };
        check_empty_classes(&mut ds, opts.skip_bad)?;
        Ok(ds)
    }

    /// Number of images per class, indexed like [`Dataset::classes`].
    pub fn class_counts(&self) -> Vec<usize> {
        counts_of(self.samples.iter().map(|s| s.label), self.classes.len())
    }

    /// Number of distinct lesions (images without a lesion id count as their own lesion).
    pub fn lesion_count(&self) -> usize {
        let mut set = HashSet::new();
        for s in &self.samples {
            set.insert(s.lesion_id.as_deref().unwrap_or(&s.id));
        }
        set.len()
    }

    /// Clones the samples at `indices` (e.g. `Split::train`), for `Loader::new`.
    pub fn select(&self, indices: &[usize]) -> Vec<Sample> {
        indices.iter().map(|&i| self.samples[i].clone()).collect()
    }

    /// Index of a sample by image id.
    pub fn index_by_id(&self) -> HashMap<&str, usize> {
        self.samples
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect()
    }
}

/// Counts labels into `n` bins.
pub fn counts_of(labels: impl Iterator<Item = usize>, n: usize) -> Vec<usize> {
    let mut c = vec![0; n];
    for l in labels {
        if l < n {
            c[l] += 1;
        }
    }
    c
}

fn check_empty_classes(ds: &mut Dataset, skip_bad: bool) -> Result<(), DataError> {
    let counts = ds.class_counts();
    for (c, &n) in counts.iter().enumerate() {
        if n == 0 {
            let err = DataError::EmptyClass {
                source_path: ds.root.clone(),
                class: ds.classes[c].clone(),
            };
            if skip_bad {
                ds.warnings.push(skipped_from(&ds.classes[c], &err));
            } else {
                return Err(err);
            }
        }
    }
    Ok(())
}

pub(crate) fn skipped_from(what: &str, err: &DataError) -> Skipped {
    Skipped {
        what: what.to_string(),
        kind: err.kind().to_string(),
        message: err.to_string(),
    }
}

/// Detects the layout of `root`.
pub fn detect_format(root: &Path) -> Result<SourceFormat, DataError> {
    let entries = read_dir_sorted(root)?;
    let names: Vec<String> = entries
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if names
        .iter()
        .any(|n| n.starts_with("ISIC2018_Task3_") && n.ends_with("_Input"))
    {
        return Ok(SourceFormat::Isic);
    }
    if find_ham_metadata(root).is_some() {
        return Ok(SourceFormat::Ham10000);
    }
    let class_dirs = entries
        .iter()
        .filter(|p| p.is_dir() && !is_hidden(p))
        .count();
    if class_dirs > 0 {
        return Ok(SourceFormat::Folders);
    }
    Err(DataError::Layout {
        root: root.to_path_buf(),
        msg: "unrecognised data layout: expected ISIC2018_Task3_*_Input/ + GroundTruth CSV, \
              HAM10000_metadata.csv + image folders, or one folder per class"
            .into(),
    })
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .map(|n| n.to_string_lossy().starts_with('.'))
        .unwrap_or(false)
}

pub(crate) fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| DataError::io(dir, e))?;
        out.push(e.path());
    }
    out.sort();
    Ok(out)
}

/// True when the path has an image extension.
pub fn is_image_path(p: &Path) -> bool {
    p.extension()
        .map(|e| {
            let e = e.to_string_lossy().to_ascii_lowercase();
            IMAGE_EXTENSIONS.contains(&e.as_str())
        })
        .unwrap_or(false)
}

/// Lists image files directly inside `dir`, keyed by file stem. Duplicated stems are errors.
fn list_images(dir: &Path, into: &mut BTreeMap<String, PathBuf>) -> Result<(), DataError> {
    for p in read_dir_sorted(dir)? {
        if p.is_file() && is_image_path(&p) && !is_hidden(&p) {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if into.insert(stem.clone(), p.clone()).is_some() {
                return Err(DataError::DuplicateId { path: p, id: stem });
            }
        }
    }
    Ok(())
}

fn class_index_for(name: &str) -> Option<usize> {
    ISIC_CLASSES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name.trim()))
}

fn csv_reader(path: &Path) -> Result<csv::Reader<fs::File>, DataError> {
    let f = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(f))
}

fn csv_err(path: &Path, e: csv::Error) -> DataError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    DataError::Csv {
        path: path.to_path_buf(),
        msg: format!("line {line}: {e}"),
    }
}

/// Reads `image,lesion_id[,...]` groupings into a map.
pub fn read_lesion_groupings(path: &Path) -> Result<HashMap<String, String>, DataError> {
    let mut rdr = csv_reader(path)?;
    let headers = rdr.headers().map_err(|e| csv_err(path, e))?.clone();
    let img_col = headers
        .iter()
        .position(|h| h == "image" || h == "image_id")
        .ok_or_else(|| DataError::Csv {
            path: path.to_path_buf(),
            msg: "no `image` column".into(),
        })?;
    let les_col = headers
        .iter()
        .position(|h| h == "lesion_id")
        .ok_or_else(|| DataError::Csv {
            path: path.to_path_buf(),
            msg: "no `lesion_id` column".into(),
        })?;
    let mut map = HashMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_err(path, e))?;
        let id = rec.get(img_col).unwrap_or("").to_string();
        let les = rec.get(les_col).unwrap_or("").to_string();
        if !id.is_empty() && !les.is_empty() {
            map.insert(id, les);
        }
    }
    Ok(map)
}

// ---------------------------------------------------------------- ISIC

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

fn open_isic(root: &Path, opts: &OpenOptions) -> Result<Dataset, DataError> {
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

fn unlisted_warnings(
    images: &BTreeMap<String, PathBuf>,
    listed: &HashSet<String>,
    csv: &Path,
) -> Vec<Skipped> {
    images
        .iter()
        .filter(|(id, _)| !listed.contains(*id))
        .map(|(id, p)| Skipped {
            what: id.clone(),
            kind: "not in csv".into(),
            message: format!(
                "{}: image on disk but not listed in {} (ignored)",
                p.display(),
                csv.display()
            ),
        })
        .collect()
}

// ---------------------------------------------------------------- HAM10000

fn find_ham_metadata(root: &Path) -> Option<PathBuf> {
    ["HAM10000_metadata.csv", "HAM10000_metadata"]
        .iter()
        .map(|n| root.join(n))
        .find(|p| p.is_file())
}

fn open_ham(root: &Path, opts: &OpenOptions) -> Result<Dataset, DataError> {
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

/// Name of the optional `image,lesion_id` file in a folders-layout root (written by
/// `prepare` so that splits stay grouped by lesion).
pub const FOLDERS_LESIONS_FILE: &str = "lesions.csv";

fn open_folders(root: &Path, opts: &OpenOptions) -> Result<Dataset, DataError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_image_extensions() {
        assert_eq!("ISIC".parse(), Ok(SourceFormat::Isic));
        assert_eq!("ham10000".parse(), Ok(SourceFormat::Ham10000));
        assert_eq!("folders".parse(), Ok(SourceFormat::Folders));
        assert!("coco".parse::<SourceFormat>().is_err());
        assert!(is_image_path(Path::new("a/ISIC_1.JPG")));
        assert!(is_image_path(Path::new("x.png")));
        assert!(!is_image_path(Path::new("LICENSE.txt")));
        assert_eq!(class_index_for(" vasc "), Some(6));
        assert_eq!(class_index_for("scc"), None);
    }
}
