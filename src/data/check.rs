//! The `check` pass: decode every image once, before any training starts.

use rayon::prelude::*;

use super::error::DataError;
use super::image_io::load_image_rgb;
use super::source::{Dataset, Skipped, skipped_from};

/// What a check found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Images decoded successfully.
    pub ok: usize,
    /// Images that failed to decode (with the reason), in sample order.
    pub bad: Vec<Skipped>,
}

impl CheckReport {
    /// Counts of bad images per kind of problem.
    pub fn bad_by_kind(&self) -> Vec<(String, usize)> {
        let mut m = std::collections::BTreeMap::new();
        for b in &self.bad {
            *m.entry(b.kind.clone()).or_insert(0) += 1;
        }
        m.into_iter().collect()
    }
}

/// Decodes every image of `ds` (in parallel). Without `skip_bad` the first bad image (in
/// sample order) is returned as the error. With `skip_bad` bad images are removed from `ds`
/// and added to `ds.skipped`.
pub fn check_images(ds: &mut Dataset, skip_bad: bool) -> Result<CheckReport, DataError> {
    let results: Vec<Option<DataError>> = ds
        .samples
        .par_iter()
        .map(|s| load_image_rgb(&s.path).err())
        .collect();
    let mut report = CheckReport::default();
    let mut keep = Vec::with_capacity(ds.samples.len());
    for (s, r) in std::mem::take(&mut ds.samples).into_iter().zip(results) {
        match r {
            None => {
                report.ok += 1;
                keep.push(s);
            }
            Some(e) => {
                if !skip_bad {
                    ds.samples = keep;
                    return Err(e);
                }
                let sk = skipped_from(&s.id, &e);
                report.bad.push(sk.clone());
                ds.skipped.push(sk);
            }
        }
    }
    ds.samples = keep;
    Ok(report)
}
