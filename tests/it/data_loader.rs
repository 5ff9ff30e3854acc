//! The streaming loader and the preprocessed cache.

use std::fs;

use crate::helpers::*;
use dermclass::data::{
    AugmentConfig, Batch, Dataset, Loader, LoaderConfig, Normalization, PreprocessedCache, Sampler,
    preprocess_image,
};

fn synth(per_class: usize) -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    dermclass::data::synth::generate(dir.path(), per_class, 40, 30, 11).unwrap();
    let ds = Dataset::open(dir.path(), None).unwrap();
    (dir, ds)
}

fn cfg(workers: usize) -> LoaderConfig {
    LoaderConfig {
        width: 24,
        height: 16,
        batch_size: 5,
        workers,
        seed: 7,
        ..LoaderConfig::default()
    }
}

fn collect(loader: &Loader, epoch: usize) -> Vec<Batch> {
    loader.epoch(epoch).map(|b| b.unwrap()).collect()
}

#[test]
fn batches_have_the_right_shape_and_cover_the_epoch() {
    let (_d, ds) = synth(3); // 21 images
    let loader = Loader::new(ds.samples.clone(), cfg(2)).unwrap();
    assert_eq!(loader.len_batches(), 5);
    let batches = collect(&loader, 0);
    assert_eq!(batches.len(), 5);
    assert_eq!(batches[0].shape, [5, 3, 16, 24]);
    assert_eq!(batches[4].shape, [1, 3, 16, 24]);
    for b in &batches {
        assert_eq!(b.images.len(), b.shape.iter().product::<usize>());
        assert!(b.images.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    let mut ids: Vec<String> = batches.iter().flat_map(|b| b.ids.clone()).collect();
    ids.sort();
    let mut all: Vec<String> = ds.samples.iter().map(|s| s.id.clone()).collect();
    all.sort();
    assert_eq!(ids, all);
    // Labels match the ids.
    let by_id = ds.index_by_id();
    for b in &batches {
        for (id, l) in b.ids.iter().zip(&b.labels) {
            assert_eq!(ds.samples[by_id[id.as_str()]].label, *l);
        }
    }
    let dl = Loader::new(
        ds.samples.clone(),
        LoaderConfig {
            drop_last: true,
            ..cfg(2)
        },
    )
    .unwrap();
    assert_eq!(dl.len_batches(), 4);
    assert_eq!(collect(&dl, 0).len(), 4);
}

#[test]
fn same_seed_and_epoch_give_identical_batches_whatever_the_workers() {
    let (_d, ds) = synth(3);
    let a = collect(&Loader::new(ds.samples.clone(), cfg(1)).unwrap(), 2);
    let b = collect(&Loader::new(ds.samples.clone(), cfg(3)).unwrap(), 2);
    assert_eq!(a, b);
    let l = Loader::new(ds.samples.clone(), cfg(2)).unwrap();
    assert_eq!(collect(&l, 2), a);
    // Another epoch: other order and augmentation.
    assert_ne!(collect(&l, 3), a);
    // The single-threaded path agrees.
    assert_eq!(l.batch(2, 1).unwrap(), a[1]);
}

#[test]
fn evaluation_loader_matches_predict_preprocessing() {
    let (_d, ds) = synth(1);
    for norm in [Normalization::Keras, Normalization::ImageNet] {
        let c = LoaderConfig {
            normalization: norm,
            ..LoaderConfig::eval(24, 16, 4)
        };
        let l = Loader::new(ds.samples.clone(), c).unwrap();
        let b = l.epoch(0).next().unwrap().unwrap();
        assert_eq!(b.ids[0], ds.samples[0].id);
        let single = preprocess_image(&ds.samples[0].path, 24, 16, norm).unwrap();
        assert_eq!(&b.images[..3 * 24 * 16], &single[..]);
    }
}

#[test]
fn cache_gives_the_same_batches_and_is_reused() {
    let (d, ds) = synth(2);
    let cache_dir = d.path().join("cache");
    let plain = collect(&Loader::new(ds.samples.clone(), cfg(2)).unwrap(), 1);
    let cached_cfg = LoaderConfig {
        cache_dir: Some(cache_dir.clone()),
        ..cfg(2)
    };
    let cached = collect(
        &Loader::new(ds.samples.clone(), cached_cfg.clone()).unwrap(),
        1,
    );
    assert_eq!(plain, cached);
    let files: Vec<_> = fs::read_dir(&cache_dir).unwrap().collect();
    assert_eq!(files.len(), 1, "one cache file, no temporary left over");
    let path = PreprocessedCache::path_for(&cache_dir, &ds.samples, 24, 16);
    assert!(path.is_file());
    let len = fs::metadata(&path).unwrap().len();
    assert_eq!(len, 64 + 14 * 24 * 16 * 3);
    // Re-opening reuses it (mtime unchanged).
    let before = fs::metadata(&path).unwrap().modified().unwrap();
    let again = collect(&Loader::new(ds.samples.clone(), cached_cfg).unwrap(), 1);
    assert_eq!(again, plain);
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), before);
}

#[test]
fn a_larger_source_is_cached_at_its_size_and_renders_the_same_picture() {
    let (d, ds) = synth(2);
    let cache_dir = d.path().join("cache");
    let plain = LoaderConfig {
        augment: AugmentConfig::none(),
        shuffle: false,
        ..cfg(2)
    };
    let large = LoaderConfig {
        source_scale: 2.0,
        cache_dir: Some(cache_dir.clone()),
        ..plain.clone()
    };
    assert_eq!(large.source_size(), (48, 32));
    let a = collect(&Loader::new(ds.samples.clone(), plain).unwrap(), 0);
    let b = collect(&Loader::new(ds.samples.clone(), large).unwrap(), 0);
    // The cache holds the images at twice the size; the batches keep the output size.
    let path = PreprocessedCache::path_for(&cache_dir, &ds.samples, 48, 32);
    assert_eq!(fs::metadata(&path).unwrap().len(), 64 + 14 * 48 * 32 * 3);
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(&b) {
        assert_eq!((a.shape, &a.ids), (b.shape, &b.ids));
        // Resampled twice instead of once: close, not equal.
        let diff = a.images.iter().zip(&b.images).map(|(x, y)| (x - y).abs());
        let mean = diff.sum::<f32>() / a.images.len() as f32;
        assert!(mean < 0.03, "mean difference {mean}");
        assert_ne!(a.images, b.images);
    }
}

#[test]
fn cache_validation_rejects_bad_files_and_loader_rebuilds() {
    let (d, ds) = synth(1);
    let dir = d.path().join("cache");
    let c = PreprocessedCache::open_or_build(&dir, &ds.samples, 8, 8).unwrap();
    let path = c.path().to_path_buf();
    let key = dermclass::data::cache::samples_key(&ds.samples);
    drop(c);
    // Truncated.
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = PreprocessedCache::open(&path, key, 7, 8, 8).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    // Wrong size / count / version / magic.
    fs::write(&path, &bytes).unwrap();
    assert!(PreprocessedCache::open(&path, key, 7, 9, 8).is_err());
    assert!(PreprocessedCache::open(&path, key, 6, 8, 8).is_err());
    assert!(PreprocessedCache::open(&path, key ^ 1, 7, 8, 8).is_err());
    for (at, value, named) in [(8, 99, "version"), (0, b'X', "magic")] {
        let mut damaged = bytes.clone();
        damaged[at] = value;
        fs::write(&path, &damaged).unwrap();
        let err = PreprocessedCache::open(&path, key, 7, 8, 8).unwrap_err();
        assert!(err.to_string().contains(named), "{err}");
    }
    // open_or_build replaces the damaged file.
    let c = PreprocessedCache::open_or_build(&dir, &ds.samples, 8, 8).unwrap();
    assert_eq!(c.len(), 7);
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn cache_build_failure_leaves_no_file() {
    let (d, mut ds) = synth(1);
    fs::write(&ds.samples[3].path, b"garbage").unwrap();
    ds.samples[3].id.push('x'); // change the key
    let dir = d.path().join("cache");
    let err = PreprocessedCache::open_or_build(&dir, &ds.samples, 8, 8).unwrap_err();
    assert!(
        err.to_string()
            .contains(&ds.samples[3].path.display().to_string())
    );
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn decode_error_surfaces_as_batch_error_not_panic() {
    let (_d, ds) = synth(1);
    fs::write(&ds.samples[0].path, b"").unwrap();
    let l = Loader::new(ds.samples.clone(), LoaderConfig::eval(8, 8, 2)).unwrap();
    let results: Vec<_> = l.epoch(0).collect();
    assert_eq!(results.len(), 4);
    let err = results[0].as_ref().unwrap_err();
    assert!(err.to_string().contains("empty file"), "{err}");
    assert!(results[1..].iter().all(|r| r.is_ok()));
}

#[test]
fn balanced_sampler_evens_out_classes() {
    let dir = tempfile::tempdir().unwrap();
    // 60 of class 1, 2 of each other class.
    let mut labels = vec![1; 60];
    labels.extend([0, 0, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]);
    write_isic(dir.path(), &labels, None);
    let ds = Dataset::open(dir.path(), None).unwrap();
    let l = Loader::new(
        ds.samples.clone(),
        LoaderConfig {
            sampler: Sampler::Balanced,
            augment: AugmentConfig::none(),
            ..cfg(2)
        },
    )
    .unwrap();
    let mut counts = [0usize; 7];
    for e in 0..20 {
        for i in l.epoch_order(e) {
            counts[ds.samples[i].label] += 1;
        }
    }
    let total: usize = counts.iter().sum();
    assert_eq!(total, 20 * 72);
    for c in counts {
        let f = c as f64 / total as f64;
        assert!((f - 1.0 / 7.0).abs() < 0.03, "{counts:?}");
    }
    assert_eq!(l.epoch_order(3), l.epoch_order(3));
}

#[test]
fn dropping_an_epoch_early_does_not_hang() {
    let (_d, ds) = synth(3);
    let l = Loader::new(
        ds.samples.clone(),
        LoaderConfig {
            batch_size: 1,
            ..cfg(2)
        },
    )
    .unwrap()
    .with_prefetch(1);
    let mut it = l.epoch(0);
    it.next().unwrap().unwrap();
    drop(it);
    assert_eq!(l.epoch(0).count(), 21);
}
