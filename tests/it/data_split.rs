//! Splits, fold assignment and split files, on synthetic data.

use std::collections::HashSet;

use crate::helpers::*;
use dermclass::data::{
    Dataset, kfold_assign, read_fold_csv, read_split_csv, split::fold_split, split_train_val,
    write_folds_csv, write_split_csv,
};

/// 7 classes, class c has 20 + 15c images, lesions of 1-3 images.
fn dataset() -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    let mut labels = Vec::new();
    let mut lesions = Vec::new();
    let mut lesion = 0;
    for c in 0..7 {
        let n = 20 + 15 * c;
        let mut k = 0;
        while k < n {
            let size = 1 + (lesion % 3);
            for _ in 0..size.min(n - k) {
                labels.push(c);
                lesions.push(format!("LES_{lesion}"));
                k += 1;
            }
            lesion += 1;
        }
    }
    let les: Vec<&str> = lesions.iter().map(String::as_str).collect();
    write_isic(dir.path(), &labels, Some(&les));
    let ds = Dataset::open(dir.path(), None).unwrap();
    (dir, ds)
}

fn lesions_of(ds: &Dataset, idx: &[usize]) -> HashSet<String> {
    idx.iter()
        .map(|&i| ds.samples[i].lesion_id.clone().unwrap())
        .collect()
}

#[test]
fn split_is_grouped_stratified_and_seeded() {
    let (_d, ds) = dataset();
    let s = split_train_val(&ds, 0.3, 1);
    assert_eq!(s.train.len() + s.val.len(), ds.samples.len());
    let all: HashSet<usize> = s.train.iter().chain(&s.val).copied().collect();
    assert_eq!(all.len(), ds.samples.len());
    assert!(lesions_of(&ds, &s.train).is_disjoint(&lesions_of(&ds, &s.val)));
    let counts = ds.class_counts();
    for (c, &n) in counts.iter().enumerate() {
        let v = s.val.iter().filter(|&&i| ds.samples[i].label == c).count();
        let frac = v as f64 / n as f64;
        assert!((frac - 0.3).abs() < 0.06, "class {c}: {frac}");
    }
    assert_eq!(s, split_train_val(&ds, 0.3, 1));
    assert_ne!(s, split_train_val(&ds, 0.3, 2));
    let none = split_train_val(&ds, 0.0, 1);
    assert!(none.val.is_empty());
}

#[test]
fn split_without_lesion_ids_groups_by_image() {
    let dir = tempfile::tempdir().unwrap();
    write_isic(dir.path(), &labels_each(10), None);
    let ds = Dataset::open(dir.path(), None).unwrap();
    let s = split_train_val(&ds, 0.3, 9);
    for c in 0..7 {
        let v = s.val.iter().filter(|&&i| ds.samples[i].label == c).count();
        assert_eq!(v, 3);
    }
}

#[test]
fn kfold_is_grouped_balanced_and_seeded() {
    let (_d, ds) = dataset();
    let k = 5;
    let f = kfold_assign(&ds, k, 3);
    assert_eq!(f, kfold_assign(&ds, k, 3));
    assert!(f.iter().all(|&x| x < k));
    // Lesion never spans folds.
    let mut fold_of = std::collections::HashMap::new();
    for (s, &fi) in ds.samples.iter().zip(&f) {
        let prev = fold_of.insert(s.lesion_id.clone().unwrap(), fi);
        assert!(prev.is_none() || prev == Some(fi));
    }
    for c in 0..7 {
        let per: Vec<usize> = (0..k)
            .map(|j| {
                ds.samples
                    .iter()
                    .zip(&f)
                    .filter(|(s, fj)| s.label == c && **fj == j)
                    .count()
            })
            .collect();
        let (mn, mx) = (per.iter().min().unwrap(), per.iter().max().unwrap());
        assert!(mx - mn <= 3, "class {c}: {per:?}");
    }
    let s = fold_split(&f, 2);
    assert!(lesions_of(&ds, &s.train).is_disjoint(&lesions_of(&ds, &s.val)));
}

#[test]
fn split_files_round_trip() {
    let (d, ds) = dataset();
    let s = split_train_val(&ds, 0.3, 1);
    let p = d.path().join("split.csv");
    write_split_csv(&p, &ds, &s).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.starts_with("image,split\n"));
    assert_eq!(read_split_csv(&p, &ds).unwrap(), s);

    let f = kfold_assign(&ds, 4, 1);
    let pf = d.path().join("folds.csv");
    write_folds_csv(&pf, &ds, &f).unwrap();
    assert_eq!(read_fold_csv(&pf, &ds, 1).unwrap(), fold_split(&f, 1));
    // A fold file is not a train/val file.
    let err = read_split_csv(&pf, &ds).unwrap_err();
    assert!(err.to_string().contains("folds.csv"), "{err}");
    // Bad header.
    std::fs::write(&p, "id,set\nx,train\n").unwrap();
    assert!(
        read_split_csv(&p, &ds)
            .unwrap_err()
            .to_string()
            .contains("image,split")
    );
}

#[test]
fn class_weights_inverse_and_effective() {
    use dermclass::data::{ClassWeighting, class_weights};
    let counts = [6705usize, 1113, 1099, 514, 327, 142, 115];
    for kind in [
        ClassWeighting::None,
        ClassWeighting::Inverse,
        ClassWeighting::Effective { beta: 0.999 },
        ClassWeighting::Effective { beta: 0.9999 },
    ] {
        let w = class_weights(&counts, kind);
        let mean: f32 = w.iter().sum::<f32>() / w.len() as f32;
        assert!((mean - 1.0).abs() < 1e-5, "{kind:?}: {w:?}");
        if kind != ClassWeighting::None {
            // Rarer class, larger weight: the counts fall class by class, so the weights
            // rise (or stay, where effective weighting saturates).
            assert!(w.windows(2).all(|p| p[0] <= p[1]), "{kind:?}: {w:?}");
            assert!(w[6] > w[0]);
        }
    }
    let inv = class_weights(&[10, 30], ClassWeighting::Inverse);
    assert!((inv[0] - 1.5).abs() < 1e-6 && (inv[1] - 0.5).abs() < 1e-6);
    // beta -> 0 approaches no weighting; beta -> 1 approaches inverse frequency.
    let e0 = class_weights(&[10, 30], ClassWeighting::Effective { beta: 0.0 });
    assert_eq!(e0, vec![1.0, 1.0]);
    let e1 = class_weights(&[10, 30], ClassWeighting::Effective { beta: 0.999999 });
    assert!((e1[0] - 1.5).abs() < 1e-3);
    // Empty class gets 0, the others average 1.
    let z = class_weights(&[0, 10, 30], ClassWeighting::Inverse);
    assert_eq!(z[0], 0.0);
    assert!((z[1] + z[2] - 2.0).abs() < 1e-6);
    assert_eq!(
        "effective:0.99".parse::<ClassWeighting>().unwrap(),
        ClassWeighting::Effective { beta: 0.99 }
    );
}

#[test]
fn a_split_file_that_leaves_images_out_puts_them_on_neither_side() {
    let (d, ds) = dataset();
    // Only the first 10 images, alternating sides; the rest are not in the file.
    let mut text = String::from("image,split\n");
    for (i, s) in ds.samples.iter().take(10).enumerate() {
        text.push_str(&format!(
            "{},{}\n",
            s.id,
            if i % 2 == 0 { "train" } else { "val" }
        ));
    }
    let p = d.path().join("partial.csv");
    std::fs::write(&p, text).unwrap();
    let split = read_split_csv(&p, &ds).unwrap();
    assert_eq!(split.train, vec![0, 2, 4, 6, 8]);
    assert_eq!(split.val, vec![1, 3, 5, 7, 9]);
    // An id the data set does not have (a skipped bad image, say) is ignored, not an error.
    std::fs::write(&p, "image,split\nISIC_9999999,train\nISIC_0000000,val\n").unwrap();
    let split = read_split_csv(&p, &ds).unwrap();
    assert!(split.train.is_empty());
    assert_eq!(split.val, vec![0]);
}
