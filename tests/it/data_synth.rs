//! The synthetic data set is learnable, and (optionally) a montage for eyeballing it.
//! `DERMCLASS_MONTAGE=/tmp/m.png cargo test montage -- --ignored` writes 7 rows (classes) of
//! images followed by augmented versions of them.

#![allow(clippy::needless_range_loop)]
use dermclass::data::{
    AugmentConfig, Dataset, Loader, LoaderConfig, Normalization, load_image_rgb, synth,
};
use image::{GenericImage, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Mean and spread of each channel plus the mean of the centre vs the border.
fn features(img: &RgbImage) -> Vec<f64> {
    let (w, h) = img.dimensions();
    let mut f = vec![0f64; 12];
    let (mut nc, mut nb) = (0f64, 0f64);
    for (x, y, p) in img.enumerate_pixels() {
        let centre = (x as f64 - w as f64 / 2.0).abs() < w as f64 / 5.0
            && (y as f64 - h as f64 / 2.0).abs() < h as f64 / 5.0;
        for c in 0..3 {
            let v = p[c] as f64 / 255.0;
            f[c] += v;
            f[3 + c] += v * v;
            if centre {
                f[6 + c] += v;
            } else {
                f[9 + c] += v;
            }
        }
        if centre { nc += 1.0 } else { nb += 1.0 }
    }
    let n = (w * h) as f64;
    for c in 0..3 {
        f[c] /= n;
        f[3 + c] = (f[3 + c] / n - f[c] * f[c]).max(0.0).sqrt();
        f[6 + c] /= nc;
        f[9 + c] /= nb;
    }
    f
}

#[test]
fn synthetic_classes_are_separable_by_simple_features() {
    let dir = tempfile::tempdir().unwrap();
    synth::generate(dir.path(), 40, 64, 64, 21).unwrap();
    let ds = Dataset::open(dir.path(), None).unwrap();
    let split = dermclass::data::split_train_val(&ds, 0.3, 1);
    let feats: Vec<Vec<f64>> = ds
        .samples
        .iter()
        .map(|s| features(&load_image_rgb(&s.path).unwrap()))
        .collect();
    // Nearest class centroid.
    let mut cent = vec![vec![0f64; 12]; 7];
    let mut cnt = [0f64; 7];
    for &i in &split.train {
        let l = ds.samples[i].label;
        cnt[l] += 1.0;
        for k in 0..12 {
            cent[l][k] += feats[i][k];
        }
    }
    for l in 0..7 {
        for k in 0..12 {
            cent[l][k] /= cnt[l];
        }
    }
    let correct = split
        .val
        .iter()
        .filter(|&&i| {
            let pred = (0..7)
                .min_by(|&a, &b| {
                    let d = |c: usize| -> f64 {
                        cent[c]
                            .iter()
                            .zip(&feats[i])
                            .map(|(x, y)| (x - y).powi(2))
                            .sum()
                    };
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            pred == ds.samples[i].label
        })
        .count();
    let acc = correct as f64 / split.val.len() as f64;
    eprintln!("nearest-centroid accuracy on synthetic val: {acc:.3}");
    assert!(acc > 0.7, "synthetic classes should be easy: {acc}");
}

#[test]
#[ignore = "writes a picture to look at: DERMCLASS_MONTAGE=/tmp/m.png cargo test montage -- --ignored"]
fn montage_for_eyeballing() {
    let out = std::env::var_os("DERMCLASS_MONTAGE")
        .unwrap_or_else(|| std::env::temp_dir().join("dermclass-montage.png").into());
    let (w, h, per) = (96u32, 72u32, 5u32);
    let mut m = RgbImage::new(w * per * 2, h * 7);
    let cfg = AugmentConfig::default();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for c in 0..7u32 {
        for k in 0..per {
            let img = synth::render_example(c as usize, w, h, (c * 100 + k) as u64);
            m.copy_from(&img, k * w, c * h).unwrap();
            let aug = dermclass::data::augment_image(&img, &cfg.sample(&mut rng));
            m.copy_from(&aug, (per + k) * w, c * h).unwrap();
        }
    }
    m.save(&out).unwrap();
    // Also exercise the loader path on a tiny set for the record.
    let dir = tempfile::tempdir().unwrap();
    synth::generate(dir.path(), 1, 32, 32, 1).unwrap();
    let ds = Dataset::open(dir.path(), None).unwrap();
    let l = Loader::new(
        ds.samples,
        LoaderConfig {
            normalization: Normalization::ImageNet,
            ..LoaderConfig::default()
        },
    )
    .unwrap();
    assert_eq!(l.epoch(0).count(), 1);
}
