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

mod folders;
mod ham;
mod isic;

pub use folders::FOLDERS_LESIONS_FILE;
use folders::open_folders;
use ham::open_ham;
use isic::open_isic;
pub use isic::{find_isic_ground_truth, isic_subset_name};

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

/// The samples a label CSV lists, with what was skipped and what was left unlisted.
struct Rows {
    samples: Vec<Sample>,
    skipped: Vec<Skipped>,
    warnings: Vec<Skipped>,
}

/// The one row loop of the CSV-based layouts. Every row's id (column `id_col`) must be new
/// and name an image of `images`; `label_of(row, line, id)` gives its class index and
/// lesion id, or the problem with the row. A bad row is skipped when `opts.skip_bad`, else
/// it fails the whole read with its error.
fn read_rows(
    csv: &Path,
    rdr: &mut csv::Reader<fs::File>,
    id_col: usize,
    images: &BTreeMap<String, PathBuf>,
    opts: &OpenOptions,
    label_of: impl Fn(&csv::StringRecord, u64, &str) -> Result<(usize, Option<String>), DataError>,
) -> Result<Rows, DataError> {
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = HashSet::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_err(csv, e))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let id = rec.get(id_col).unwrap_or("").to_string();
        let row = (|| {
            if !seen.insert(id.clone()) {
                return Err(DataError::DuplicateId {
                    path: csv.to_path_buf(),
                    id: id.clone(),
                });
            }
            let (label, lesion_id) = label_of(&rec, line, &id)?;
            let path = images
                .get(&id)
                .cloned()
                .ok_or_else(|| DataError::MissingImage {
                    csv: csv.to_path_buf(),
                    id: id.clone(),
                })?;
            Ok(Sample {
                id: id.clone(),
                path,
                label,
                lesion_id,
            })
        })();
        match row {
            Ok(s) => samples.push(s),
            Err(e) if opts.skip_bad => skipped.push(skipped_from(&id, &e)),
            Err(e) => return Err(e),
        }
    }
    let warnings = unlisted_warnings(images, &seen, csv);
    Ok(Rows {
        samples,
        skipped,
        warnings,
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
