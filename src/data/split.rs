//! Train/validation splits and k-fold assignment: stratified by class, grouped by lesion
//! (no lesion on two sides) when lesion ids are known, seeded.

use std::collections::HashMap;
use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::error::DataError;
use super::source::Dataset;

/// Indices into `Dataset::samples`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    /// Training indices (ascending).
    pub train: Vec<usize>,
    /// Validation indices (ascending).
    pub val: Vec<usize>,
}

/// Groups of sample indices (one per lesion, or per image when no lesion id), per class.
/// A lesion's class is the majority label of its images (they agree in ISIC/HAM10000).
fn groups_by_class(ds: &Dataset) -> Vec<Vec<Vec<usize>>> {
    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (i, s) in ds.samples.iter().enumerate() {
        let key = s.lesion_id.as_deref().unwrap_or(&s.id);
        by_key
            .entry(key)
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(i);
    }
    let mut per_class = vec![Vec::new(); ds.classes.len()];
    for key in order {
        let idx = by_key.remove(key).unwrap();
        let mut votes = vec![0usize; ds.classes.len()];
        for &i in &idx {
            votes[ds.samples[i].label] += 1;
        }
        let class = (0..votes.len())
            .max_by_key(|&c| (votes[c], usize::MAX - c))
            .unwrap();
        per_class[class].push(idx);
    }
    per_class
}

/// Splits into train/validation: per class, lesion groups are shuffled (seeded) and moved
/// to validation greedily while that brings the class's validation count closer to
/// `val_fraction` of the class.
pub fn split_train_val(ds: &Dataset, val_fraction: f64, seed: u64) -> Split {
    let vf = val_fraction.clamp(0.0, 1.0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut split = Split::default();
    for groups in groups_by_class(ds) {
        let mut groups = groups;
        groups.shuffle(&mut rng);
        let total: usize = groups.iter().map(Vec::len).sum();
        let target = vf * total as f64;
        let mut val = 0usize;
        for g in groups {
            let new = val + g.len();
            if (new as f64 - target).abs() < (val as f64 - target).abs() {
                val = new;
                split.val.extend(g);
            } else {
                split.train.extend(g);
            }
        }
    }
    split.train.sort_unstable();
    split.val.sort_unstable();
    split
}

/// Assigns every sample to one of `k` folds (stratified, lesion-grouped, seeded): per
/// class, shuffled groups go to the fold with the fewest images of that class so far.
pub fn kfold_assign(ds: &Dataset, k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold = vec![0usize; ds.samples.len()];
    for groups in groups_by_class(ds) {
        let mut groups = groups;
        groups.shuffle(&mut rng);
        // Larger groups first (stable, so ties keep the shuffled order) packs more evenly.
        groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
        let mut sizes = vec![0usize; k];
        let start = rng_offset(&mut rng, k);
        for g in groups {
            let f = (0..k)
                .map(|j| (j + start) % k)
                .min_by_key(|&j| sizes[j])
                .unwrap();
            sizes[f] += g.len();
            for i in g {
                fold[i] = f;
            }
        }
    }
    fold
}

fn rng_offset(rng: &mut ChaCha8Rng, k: usize) -> usize {
    use rand::Rng;
    rng.random_range(0..k)
}

/// The split for fold `f` of a k-fold assignment (validation = fold `f`).
pub fn fold_split(folds: &[usize], f: usize) -> Split {
    let mut s = Split::default();
    for (i, &k) in folds.iter().enumerate() {
        if k == f {
            s.val.push(i)
        } else {
            s.train.push(i)
        }
    }
    s
}

/// Writes `image,split` rows (`train` / `val`) in sample order.
pub fn write_split_csv(path: &Path, ds: &Dataset, split: &Split) -> Result<(), DataError> {
    let mut tag = vec![None; ds.samples.len()];
    for &i in &split.train {
        tag[i] = Some("train");
    }
    for &i in &split.val {
        tag[i] = Some("val");
    }
    let rows = ds
        .samples
        .iter()
        .zip(tag)
        .filter_map(|(s, t)| t.map(|t| (s.id.as_str(), t.to_string())));
    write_rows(path, rows)
}

/// Writes `image,split` rows with the fold number as split.
pub fn write_folds_csv(path: &Path, ds: &Dataset, folds: &[usize]) -> Result<(), DataError> {
    let rows = ds
        .samples
        .iter()
        .zip(folds)
        .map(|(s, f)| (s.id.as_str(), f.to_string()));
    write_rows(path, rows)
}

fn write_rows<'a>(
    path: &Path,
    rows: impl Iterator<Item = (&'a str, String)>,
) -> Result<(), DataError> {
    let err = |e: csv::Error| DataError::Csv {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    w.write_record(["image", "split"]).map_err(err)?;
    for (id, s) in rows {
        w.write_record([id, s.as_str()]).map_err(err)?;
    }
    w.flush().map_err(|e| DataError::io(path, e))
}

/// Reads an `image,split` file into `id -> split` pairs, in file order.
pub fn read_split_rows(path: &Path) -> Result<Vec<(String, String)>, DataError> {
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(f);
    let cerr = |e: csv::Error| DataError::Csv {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let headers = rdr.headers().map_err(cerr)?.clone();
    if headers.get(0) != Some("image") || headers.get(1) != Some("split") {
        return Err(DataError::Csv {
            path: path.to_path_buf(),
            msg: "expected header `image,split`".into(),
        });
    }
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(cerr)?;
        out.push((
            rec.get(0).unwrap_or("").to_string(),
            rec.get(1).unwrap_or("").to_string(),
        ));
    }
    Ok(out)
}

/// Reads a `train`/`val` split file for `ds`. Ids absent from `ds` (e.g. skipped bad
/// images) are ignored; samples absent from the file are in neither side. Unknown split
/// values and duplicate ids are errors.
pub fn read_split_csv(path: &Path, ds: &Dataset) -> Result<Split, DataError> {
    let index = ds.index_by_id();
    let mut split = Split::default();
    let mut seen = std::collections::HashSet::new();
    for (id, s) in read_split_rows(path)? {
        if !seen.insert(id.clone()) {
            return Err(DataError::DuplicateId {
                path: path.to_path_buf(),
                id,
            });
        }
        let Some(&i) = index.get(id.as_str()) else {
            continue;
        };
        match s.as_str() {
            "train" => split.train.push(i),
            "val" | "valid" | "validation" => split.val.push(i),
            other => {
                return Err(DataError::Csv {
                    path: path.to_path_buf(),
                    msg: format!(
                        "image `{id}`: split `{other}` is not train/val (a fold file? use read_fold_csv)"
                    ),
                });
            }
        }
    }
    split.train.sort_unstable();
    split.val.sort_unstable();
    Ok(split)
}

/// Reads a fold file (`image,<fold number>`) and returns the split whose validation side is
/// fold `fold`.
pub fn read_fold_csv(path: &Path, ds: &Dataset, fold: usize) -> Result<Split, DataError> {
    let index = ds.index_by_id();
    let mut split = Split::default();
    for (id, s) in read_split_rows(path)? {
        let f: usize = s.parse().map_err(|_| DataError::Csv {
            path: path.to_path_buf(),
            msg: format!("image `{id}`: fold `{s}` is not a number"),
        })?;
        if let Some(&i) = index.get(id.as_str()) {
            if f == fold {
                split.val.push(i)
            } else {
                split.train.push(i)
            }
        }
    }
    split.train.sort_unstable();
    split.val.sort_unstable();
    Ok(split)
}
