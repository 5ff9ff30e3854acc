//! The streaming loader: decode + resize + augment on worker threads, a bounded queue of
//! ready batches (memory does not grow with the data set), per-epoch shuffling or
//! class-balanced sampling, and an optional memory-mapped preprocessed cache.
//!
//! Determinism: the order of an epoch is drawn from `(seed, epoch)`, and each image's
//! augmentation from `(seed, epoch, position in the epoch)`, so the batches of an epoch are
//! identical whatever the number of workers or the thread timing. Batch `b` is built by
//! worker `b % workers` and handed over through that worker's bounded channel; the
//! iterator reads the channels round-robin, so batches come out in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use clap::ValueEnum;
use crossbeam_channel::{Receiver, bounded};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::Normalization;
use super::augment::{AugmentConfig, AugmentParams, shades_of_gray_gains, warp_with};
use super::cache::PreprocessedCache;
use super::error::DataError;
use super::image_io::{load_image_rgb, resize_rgb, resize_rgb_into};
use super::source::Sample;
use image::RgbImage;

/// How an epoch picks its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Sampler {
    /// Every sample once (shuffled when `shuffle`).
    #[default]
    Uniform,
    /// As many draws as samples, each draw picking a class uniformly, then an image of
    /// that class uniformly (with replacement).
    Balanced,
    /// As `Balanced`, but a class is drawn with probability proportional to the square
    /// root of its size.
    Sqrt,
}

impl std::str::FromStr for Sampler {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "uniform" => Ok(Sampler::Uniform),
            "balanced" => Ok(Sampler::Balanced),
            "sqrt" => Ok(Sampler::Sqrt),
            o => Err(format!("unknown sampler `{o}` (uniform, balanced or sqrt)")),
        }
    }
}

/// `n` draws, each picking a non-empty class with probability proportional to
/// `class_mass(class size)`, then one of its images uniformly (with replacement).
/// (`Balanced` keeps its own draw so that runs made before `Sqrt` existed resume exactly.)
fn draw_by_class(
    by_class: &[Vec<usize>],
    n: usize,
    class_mass: impl Fn(usize) -> f64,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    let classes: Vec<&Vec<usize>> = by_class.iter().filter(|c| !c.is_empty()).collect();
    if classes.is_empty() {
        return Vec::new();
    }
    let mut cumulative = Vec::with_capacity(classes.len());
    let mut total = 0.0;
    for c in &classes {
        total += class_mass(c.len());
        cumulative.push(total);
    }
    (0..n)
        .map(|_| {
            let u = rng.random::<f64>() * total;
            let k = cumulative
                .partition_point(|&edge| edge <= u)
                .min(classes.len() - 1);
            let c = classes[k];
            c[rng.random_range(0..c.len())]
        })
        .collect()
}

/// Loader settings.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Output width in pixels.
    pub width: usize,
    /// Output height in pixels.
    pub height: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Shuffle each epoch (uniform sampler).
    pub shuffle: bool,
    /// Augmentation ranges (`AugmentConfig::none()` for evaluation).
    pub augment: AugmentConfig,
    /// Pixel normalisation.
    pub normalization: Normalization,
    /// Worker threads (0 = number of CPUs).
    pub workers: usize,
    /// Folder of the preprocessed cache (built on first use); `None` decodes every epoch.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Sampling scheme.
    pub sampler: Sampler,
    /// Drop the last incomplete batch.
    pub drop_last: bool,
    /// Seed of shuffling and augmentation.
    pub seed: u64,
    /// Shades-of-Gray colour constancy with this norm, computed on each resized image
    /// before augmentation (`None` = off).
    pub shades_of_gray: Option<f32>,
    /// Each image is resized (and cached) at this multiple of the output size, and the
    /// augmentation renders the output from it, so a crop keeps the detail of the image
    /// instead of enlarging an already reduced one (1 = the output size).
    pub source_scale: f32,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            width: 224,
            height: 224,
            batch_size: 32,
            shuffle: true,
            augment: AugmentConfig::default(),
            normalization: Normalization::Keras,
            workers: 0,
            cache_dir: None,
            sampler: Sampler::Uniform,
            drop_last: false,
            seed: 1,
            shades_of_gray: None,
            source_scale: 1.0,
        }
    }
}

impl LoaderConfig {
    /// Evaluation settings: no shuffling, no augmentation, keep the last batch.
    pub fn eval(width: usize, height: usize, batch_size: usize) -> Self {
        LoaderConfig {
            width,
            height,
            batch_size,
            shuffle: false,
            augment: AugmentConfig::none(),
            ..LoaderConfig::default()
        }
    }
}

impl LoaderConfig {
    /// Size (width, height) each image is resized to before augmentation renders it.
    pub fn source_size(&self) -> (usize, usize) {
        let scaled = |n: usize| ((n as f32 * self.source_scale).round() as usize).max(n);
        (scaled(self.width), scaled(self.height))
    }

    /// Colour constancy, `params`' augmentation and normalisation of one RGB8 image resized
    /// to `source` (width, height), written as CHW into `out` (`3 * width * height`).
    fn render(
        &self,
        (pixels, source): (&[u8], (usize, usize)),
        mut params: AugmentParams,
        out: &mut [f32],
    ) {
        let plane = self.width * self.height;
        let (scale, offset) = self.normalization.affine();
        if let Some(p) = self.shades_of_gray {
            params.gains = shades_of_gray_gains(pixels, p);
        }
        let (r, rest) = out.split_at_mut(plane);
        let (g, bl) = rest.split_at_mut(plane);
        let size = (self.width, self.height);
        warp_with(pixels, source, size, &params, |i, v| {
            r[i] = v[0] * scale[0] + offset[0];
            g[i] = v[1] * scale[1] + offset[1];
            bl[i] = v[2] * scale[2] + offset[2];
        });
    }

    /// One decoded image as an evaluation batch of this configuration holds it: resized,
    /// colour-corrected and normalised, CHW, no augmentation. What `serve` and `explain`
    /// feed the model, so that they answer as `predict` does.
    pub fn image_input(&self, img: &RgbImage) -> Vec<f32> {
        let resized = resize_rgb(img, self.width as u32, self.height as u32);
        let mut out = vec![0f32; 3 * self.width * self.height];
        let size = (self.width, self.height);
        self.render(
            (resized.as_raw(), size),
            AugmentParams::identity(),
            &mut out,
        );
        out
    }
}

/// A batch of normalised images.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// NCHW, RGB, normalised.
    pub images: Vec<f32>,
    /// Class indices.
    pub labels: Vec<usize>,
    /// Image ids.
    pub ids: Vec<String>,
    /// `[n, 3, height, width]`.
    pub shape: [usize; 4],
}

struct Inner {
    samples: Vec<Sample>,
    cfg: LoaderConfig,
    workers: usize,
    cache: Option<PreprocessedCache>,
    by_class: Vec<Vec<usize>>,
}

/// A multi-threaded, deterministic epoch loader.
#[derive(Clone)]
pub struct Loader {
    inner: Arc<Inner>,
    prefetch: usize,
}

/// SplitMix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The RNG seed of the image at `position` of `epoch`.
pub fn image_seed(seed: u64, epoch: usize, position: usize) -> u64 {
    mix(mix(mix(seed) ^ epoch as u64) ^ position as u64)
}

impl Loader {
    /// Creates a loader; opens (or builds) the cache when `cfg.cache_dir` is set.
    pub fn new(samples: Vec<Sample>, cfg: LoaderConfig) -> Result<Loader, DataError> {
        if cfg.width == 0 || cfg.height == 0 || cfg.batch_size == 0 {
            return Err(DataError::Config(
                "width, height and batch size must be positive".into(),
            ));
        }
        let workers = if cfg.workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            cfg.workers
        };
        let (sw, sh) = cfg.source_size();
        let cache = match &cfg.cache_dir {
            Some(dir) => Some(PreprocessedCache::open_or_build(dir, &samples, sw, sh)?),
            None => None,
        };
        let n_classes = samples.iter().map(|s| s.label + 1).max().unwrap_or(0);
        let mut by_class = vec![Vec::new(); n_classes];
        for (i, s) in samples.iter().enumerate() {
            by_class[s.label].push(i);
        }
        Ok(Loader {
            inner: Arc::new(Inner {
                samples,
                cfg,
                workers,
                cache,
                by_class,
            }),
            prefetch: 2,
        })
    }

    /// Sets how many ready batches each worker may queue (default 2, at least 1). Peak
    /// loader memory is about `workers * (prefetch + 1)` batches of
    /// `batch_size * 3 * height * width * 4` bytes.
    pub fn with_prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// The samples, in loader order.
    pub fn samples(&self) -> &[Sample] {
        &self.inner.samples
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.inner.cfg
    }

    /// Number of images an epoch yields.
    pub fn len_epoch(&self) -> usize {
        let n = self.inner.samples.len();
        let b = self.inner.cfg.batch_size;
        if self.inner.cfg.drop_last {
            n / b * b
        } else {
            n
        }
    }

    /// Number of batches per epoch.
    pub fn len_batches(&self) -> usize {
        let n = self.inner.samples.len();
        let b = self.inner.cfg.batch_size;
        if self.inner.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The sample indices of an epoch, in order.
    pub fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let inner = &self.inner;
        let n = inner.samples.len();
        let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(inner.cfg.seed) ^ epoch as u64) ^ 0xabcd);
        let mut order: Vec<usize> = match inner.cfg.sampler {
            Sampler::Uniform => {
                let mut o: Vec<usize> = (0..n).collect();
                if inner.cfg.shuffle {
                    o.shuffle(&mut rng);
                }
                o
            }
            Sampler::Balanced => {
                let classes: Vec<&Vec<usize>> =
                    inner.by_class.iter().filter(|c| !c.is_empty()).collect();
                if classes.is_empty() {
                    Vec::new()
                } else {
                    (0..n)
                        .map(|_| {
                            let c = classes[rng.random_range(0..classes.len())];
                            c[rng.random_range(0..c.len())]
                        })
                        .collect()
                }
            }
            Sampler::Sqrt => draw_by_class(&inner.by_class, n, |c| (c as f64).sqrt(), &mut rng),
        };
        order.truncate(self.len_epoch());
        order
    }

    /// Iterates over the batches of `epoch`. Same `(seed, epoch)` gives identical batches.
    pub fn epoch(&self, epoch: usize) -> EpochIter {
        let order = Arc::new(self.epoch_order(epoch));
        let n_batches = self.len_batches();
        let workers = self.inner.workers.min(n_batches.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = bounded(self.prefetch);
            receivers.push(rx);
            let inner = Arc::clone(&self.inner);
            let order = Arc::clone(&order);
            let stop = Arc::clone(&stop);
            handles.push(std::thread::spawn(move || {
                let mut scratch = Vec::new();
                let mut b = w;
                while b < n_batches && !stop.load(Ordering::Relaxed) {
                    let batch = build_batch(&inner, &order, epoch, b, &mut scratch);
                    if tx.send(batch).is_err() {
                        break;
                    }
                    b += workers;
                }
            }));
        }
        EpochIter {
            receivers,
            handles,
            stop,
            next: 0,
            n_batches,
        }
    }

    /// Builds batch `b` of `epoch` on the calling thread (no workers).
    pub fn batch(&self, epoch: usize, b: usize) -> Result<Batch, DataError> {
        let order = self.epoch_order(epoch);
        let mut scratch = Vec::new();
        build_batch(&self.inner, &order, epoch, b, &mut scratch)
    }
}

fn build_batch(
    inner: &Inner,
    order: &[usize],
    epoch: usize,
    b: usize,
    scratch: &mut Vec<u8>,
) -> Result<Batch, DataError> {
    let cfg = &inner.cfg;
    let (w, h) = (cfg.width, cfg.height);
    let (sw, sh) = cfg.source_size();
    let start = b * cfg.batch_size;
    let end = (start + cfg.batch_size).min(order.len());
    let n = end.saturating_sub(start);
    let plane = w * h;
    let mut images = vec![0f32; n * 3 * plane];
    let mut labels = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for (k, pos) in (start..end).enumerate() {
        let idx = order[pos];
        let s = &inner.samples[idx];
        let pixels: &[u8] = match &inner.cache {
            Some(c) => c.image(idx),
            None => {
                let img = load_image_rgb(&s.path)?;
                scratch.resize(sw * sh * 3, 0);
                resize_rgb_into(&img, sw as u32, sh as u32, scratch);
                scratch
            }
        };
        let mut rng = ChaCha8Rng::seed_from_u64(image_seed(cfg.seed, epoch, pos));
        let params = cfg.augment.sample(&mut rng);
        let out = &mut images[k * 3 * plane..(k + 1) * 3 * plane];
        cfg.render((pixels, (sw, sh)), params, out);
        labels.push(s.label);
        ids.push(s.id.clone());
    }
    Ok(Batch {
        images,
        labels,
        ids,
        shape: [n, 3, h, w],
    })
}

/// The batches of one epoch, in order.
pub struct EpochIter {
    receivers: Vec<Receiver<Result<Batch, DataError>>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    next: usize,
    n_batches: usize,
}

impl EpochIter {
    /// Number of batches still to come.
    pub fn remaining(&self) -> usize {
        self.n_batches - self.next
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.n_batches || self.receivers.is_empty() {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        self.next += 1;
        match rx.recv() {
            Ok(b) => Some(b),
            Err(_) => Some(Err(DataError::Config(
                "loader worker stopped unexpectedly".into(),
            ))),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let r = self.remaining();
        (r, Some(r))
    }
}

impl ExactSizeIterator for EpochIter {}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_seeds_differ_by_epoch_and_position() {
        let a = image_seed(1, 0, 0);
        assert_ne!(a, image_seed(1, 1, 0));
        assert_ne!(a, image_seed(1, 0, 1));
        assert_ne!(a, image_seed(2, 0, 0));
        assert_eq!(a, image_seed(1, 0, 0));
        assert_ne!(image_seed(1, 1, 2), image_seed(1, 2, 1));
    }

    /// `serve` and `explain` preprocess one image with `image_input`; it must give exactly
    /// what an evaluation batch holds for the same file, colour constancy included.
    #[test]
    fn image_input_equals_the_evaluation_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        let img = RgbImage::from_fn(50, 30, |x, y| {
            image::Rgb([(x * 5) as u8, (y * 8) as u8, ((x + y) * 3) as u8])
        });
        img.save(&path).unwrap();
        let mut cfg = LoaderConfig::eval(24, 16, 4);
        cfg.normalization = Normalization::ImageNet;
        cfg.shades_of_gray = Some(6.0);
        let sample = Sample {
            id: "a".into(),
            path,
            label: 0,
            lesion_id: None,
        };
        let loader = Loader::new(vec![sample], cfg.clone()).unwrap();
        let batch = loader.batch(0, 0).unwrap();
        assert_eq!(batch.images, cfg.image_input(&img));
    }

    #[test]
    fn sampler_parses() {
        assert_eq!("balanced".parse(), Ok(Sampler::Balanced));
        assert_eq!("sqrt".parse(), Ok(Sampler::Sqrt));
        assert!("x".parse::<Sampler>().is_err());
    }

    #[test]
    fn sqrt_draws_classes_in_proportion_to_the_root_of_their_size() {
        // Classes of 400, 100, 25 and 0 images: roots 20, 10, 5 -> shares 4/7, 2/7, 1/7.
        let sizes = [400usize, 100, 25, 0];
        let mut by_class = Vec::new();
        let mut next = 0;
        for &size in &sizes {
            by_class.push((next..next + size).collect::<Vec<usize>>());
            next += size;
        }
        let label_of = |i: usize| by_class.iter().position(|c| c.contains(&i)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let draws = draw_by_class(&by_class, 70_000, |c| (c as f64).sqrt(), &mut rng);
        let mut seen = [0usize; 4];
        for &i in &draws {
            seen[label_of(i)] += 1;
        }
        for (class, want) in [(0, 4.0 / 7.0), (1, 2.0 / 7.0), (2, 1.0 / 7.0), (3, 0.0)] {
            let got = seen[class] as f64 / draws.len() as f64;
            assert!((got - want).abs() < 0.01, "class {class}: {got} vs {want}");
        }
        // Within a class every image is reachable.
        let rare: std::collections::HashSet<usize> = draws
            .iter()
            .copied()
            .filter(|&i| label_of(i) == 2)
            .collect();
        assert_eq!(rare.len(), 25);
    }
}
