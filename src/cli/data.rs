//! Data commands: `prepare`, `split`, `synth`, `check`, `bench-data`, `fetch-data`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::model::InputSize;
use clap::{Args, Subcommand};

use dermclass::data::{
    self, Dataset, Loader, LoaderConfig, Normalization, OpenOptions, SourceFormat,
};

/// Where the data is and how to read it.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Data root (ISIC 2018 Task 3 layout, HAM10000 layout or one folder per class).
    #[arg(long)]
    pub data: PathBuf,
    /// Force the layout instead of auto-detecting it: isic, ham10000 or folders.
    #[arg(long)]
    pub format: Option<SourceFormat>,
    /// Skip bad images/rows (and report them) instead of stopping at the first one.
    #[arg(long)]
    pub skip_bad: bool,
    /// ISIC subset to read: Training, Validation or Test (default: Training if present).
    #[arg(long)]
    pub subset: Option<String>,
}

impl DataArgs {
    fn open(&self) -> anyhow::Result<Dataset> {
        let ds = Dataset::open_with(
            &self.data,
            &OpenOptions {
                format: self.format,
                skip_bad: self.skip_bad,
                isic_subset: self.subset.clone(),
            },
        )?;
        print_problems(&ds);
        Ok(ds)
    }
}

fn print_problems(ds: &Dataset) {
    let show = |label: &str, list: &[data::Skipped]| {
        if list.is_empty() {
            return;
        }
        let mut by_kind = std::collections::BTreeMap::new();
        for s in list {
            *by_kind.entry(s.kind.as_str()).or_insert(0usize) += 1;
        }
        let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
        eprintln!("{label}: {} ({})", list.len(), kinds.join(", "));
        for s in list.iter().take(10) {
            eprintln!("  {}", s.message);
        }
        if list.len() > 10 {
            eprintln!("  ... and {} more", list.len() - 10);
        }
    };
    show("warning", &ds.warnings);
    show("skipped", &ds.skipped);
}

fn print_counts(ds: &Dataset, counts: &[usize]) {
    let total: usize = counts.iter().sum();
    for (c, n) in ds.classes.iter().zip(counts) {
        println!("{c:>8} {n:>7}");
    }
    println!("{:>8} {total:>7}", "total");
}

/// Commands that read, check, reshape or generate data sets.
/// Options of `bench-data`.
#[derive(Args, Debug, Clone)]
pub struct BenchDataArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Output size (square).
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// Cache folder for the warm run (default: a temporary folder, removed afterwards).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Worker threads (0 = number of CPUs).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Only the first N images (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Skip the cold run.
    #[arg(long)]
    no_cold: bool,
    /// Normalisation: keras or imagenet.
    #[arg(long, default_value = "keras")]
    normalization: Normalization,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Decode every image and report problems before training (exit code 1 on problems).
    Check {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Rewrite a data set as one folder per class (hard links where possible), after
    /// decoding every image (a bad one stops it, or is left out with --skip-bad).
    Prepare {
        #[command(flatten)]
        data: DataArgs,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// File the images without decoding them first.
        #[arg(long)]
        no_verify: bool,
    },
    /// Write a stratified, lesion-grouped train/val split (or k folds) as `image,split` CSV.
    Split {
        #[command(flatten)]
        data: DataArgs,
        /// Fraction of each class for validation.
        #[arg(long, default_value_t = 0.3)]
        val_fraction: f64,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output CSV.
        #[arg(long)]
        out: PathBuf,
        /// Write K folds (split = fold number) instead of train/val.
        #[arg(long)]
        folds: Option<usize>,
    },
    /// Generate a small synthetic ISIC-layout data set of learnable lesion-like images.
    Synth {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Images per class.
        #[arg(long, default_value_t = 50)]
        per_class: usize,
        /// Image size, WxH (or one number for a square).
        #[arg(long, default_value = "64x64")]
        size: InputSize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Measure the loader: images/s and peak memory for a full augmented epoch, cold
    /// (JPEG decode every image) and warm (preprocessed cache).
    BenchData(BenchDataArgs),
    /// Download the official ISIC 2018 Task 3 files (resumable), unzip and check them.
    FetchData {
        /// Output folder (becomes an ISIC-layout data root).
        #[arg(long)]
        out: PathBuf,
        /// training, validation, test or all.
        #[arg(long, default_value = "training")]
        set: String,
        /// Base URL of the files.
        #[arg(long, default_value = data::fetch::DEFAULT_BASE_URL)]
        base_url: String,
    },
}

impl DataCommand {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            DataCommand::Check { data } => check(&data),
            DataCommand::Prepare {
                data,
                out,
                no_verify,
            } => {
                let mut ds = data.open()?;
                if !no_verify {
                    verify_images(&mut ds, data.skip_bad)?;
                }
                let s = data::prepare::prepare(&ds, &out)?;
                println!(
                    "wrote {} images to {} ({} hard links, {} copies)",
                    ds.samples.len(),
                    out.display(),
                    s.linked,
                    s.copied
                );
                print_counts(&ds, &s.counts);
                Ok(())
            }
            DataCommand::Split {
                data,
                val_fraction,
                seed,
                out,
                folds,
            } => split(&data, val_fraction, seed, &out, folds),
            DataCommand::Synth {
                out,
                per_class,
                size,
                seed,
            } => {
                let (w, h) = (size.width as u32, size.height as u32);
                let s = data::synth::generate(&out, per_class, w, h, seed)?;
                println!(
                    "wrote {} images ({} lesions) to {}",
                    s.images,
                    s.lesions,
                    s.root.display()
                );
                for (c, n) in data::ISIC_CLASSES.iter().zip(&s.per_class) {
                    println!("{c:>8} {n:>7}");
                }
                Ok(())
            }
            DataCommand::FetchData { out, set, base_url } => {
                use data::fetch::FetchSet;
                let sets = if set.eq_ignore_ascii_case("all") {
                    vec![FetchSet::Training, FetchSet::Validation, FetchSet::Test]
                } else {
                    vec![set.parse::<FetchSet>().map_err(anyhow::Error::msg)?]
                };
                let s = data::fetch::fetch(&out, &sets, &base_url, true)?;
                for f in &s.files {
                    println!("have {}", f.display());
                }
                for m in &s.missing_optional {
                    println!("not on server (optional): {m}");
                }
                for (subset, n) in &s.subsets {
                    println!("{subset}: {n} labelled images");
                }
                println!("data root ready: {}", out.display());
                Ok(())
            }
            DataCommand::BenchData(args) => bench(&args),
        }
    }
}

fn check(args: &DataArgs) -> anyhow::Result<()> {
    let mut ds = args.open()?;
    println!(
        "{}: {} layout, {} images listed, {} lesions",
        ds.root.display(),
        ds.format,
        ds.samples.len(),
        ds.lesion_count()
    );
    let before = ds.skipped.len();
    // Decode everything, report every bad image, then decide.
    let report = data::check_images(&mut ds, true)?;
    for b in &report.bad {
        eprintln!("bad image: {}", b.message);
    }
    if !args.skip_bad && !report.bad.is_empty() {
        anyhow::bail!(
            "{} of {} images cannot be used (first: {}); fix them or pass --skip-bad",
            report.bad.len(),
            report.bad.len() + report.ok,
            report.bad[0].message
        );
    }
    print_counts(&ds, &ds.class_counts());
    let skipped = ds.skipped.len();
    if skipped > 0 {
        let kinds: Vec<String> = report
            .bad_by_kind()
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        println!(
            "skipped {skipped} ({} at open, {} undecodable{}{})",
            before,
            report.bad.len(),
            if kinds.is_empty() { "" } else { ": " },
            kinds.join(", ")
        );
    }
    println!("ok: {} images decode", report.ok);
    Ok(())
}

/// Decodes every image of `ds` before it is filed: strict, any bad image stops the command
/// (all are listed, the error names the first and counts the rest); with `skip_bad` the
/// bad ones are left out of `ds` and listed.
fn verify_images(ds: &mut Dataset, skip_bad: bool) -> anyhow::Result<()> {
    use data::screen::{BadInput, print_bad, require_all_readable};
    let total = ds.samples.len();
    let report = data::check_images(ds, true)?;
    let bad: Vec<BadInput> = report.bad.iter().map(BadInput::from_skipped).collect();
    if !skip_bad {
        print_bad("cannot be used", &bad);
        require_all_readable(&bad, total).map_err(|e| {
            anyhow::anyhow!("{e}; nothing was written (--no-verify files images unchecked)")
        })?;
    }
    print_bad("skipped (undecodable)", &bad);
    Ok(())
}

fn split(
    args: &DataArgs,
    val_fraction: f64,
    seed: u64,
    out: &Path,
    folds: Option<usize>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&val_fraction),
        "--val-fraction must be in [0, 1]"
    );
    let ds = args.open()?;
    let grouped = ds.samples.iter().any(|s| s.lesion_id.is_some());
    println!(
        "{} images, {} lesions ({})",
        ds.samples.len(),
        ds.lesion_count(),
        if grouped {
            "grouped by lesion"
        } else {
            "no lesion ids: grouped by image"
        }
    );
    let counts_for = |idx: &[usize]| {
        data::source::counts_of(idx.iter().map(|&i| ds.samples[i].label), ds.classes.len())
    };
    match folds {
        Some(k) => {
            anyhow::ensure!(k >= 2, "--folds must be at least 2");
            let f = data::kfold_assign(&ds, k, seed);
            data::write_folds_csv(out, &ds, &f)?;
            print!("{:>8}", "class");
            for j in 0..k {
                print!(" {:>7}", format!("fold{j}"));
            }
            println!();
            for (c, name) in ds.classes.iter().enumerate() {
                print!("{name:>8}");
                for j in 0..k {
                    let n = ds
                        .samples
                        .iter()
                        .zip(&f)
                        .filter(|(s, fj)| s.label == c && **fj == j)
                        .count();
                    print!(" {n:>7}");
                }
                println!();
            }
        }
        None => {
            let s = data::split_train_val(&ds, val_fraction, seed);
            data::write_split_csv(out, &ds, &s)?;
            let (tr, va) = (counts_for(&s.train), counts_for(&s.val));
            println!("{:>8} {:>7} {:>7} {:>7}", "class", "train", "val", "val%");
            for (c, name) in ds.classes.iter().enumerate() {
                let tot = (tr[c] + va[c]).max(1);
                println!(
                    "{name:>8} {:>7} {:>7} {:>6.1}%",
                    tr[c],
                    va[c],
                    100.0 * va[c] as f64 / tot as f64
                );
            }
            println!(
                "{:>8} {:>7} {:>7} {:>6.1}%",
                "total",
                s.train.len(),
                s.val.len(),
                100.0 * s.val.len() as f64 / ds.samples.len().max(1) as f64
            );
        }
    }
    println!("wrote {}", out.display());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn bench(args: &BenchDataArgs) -> anyhow::Result<()> {
    let BenchDataArgs {
        data,
        size,
        cache,
        batch_size,
        workers,
        limit,
        no_cold,
        normalization,
    } = args.clone();
    let ds = data.open()?;
    let mut samples = ds.samples;
    if limit > 0 {
        samples.truncate(limit);
    }
    let n = samples.len();
    let cfg = LoaderConfig {
        width: size,
        height: size,
        batch_size,
        workers,
        normalization,
        ..LoaderConfig::default()
    };
    println!(
        "bench-data: {n} images -> {size}x{size}, batch {batch_size}, workers {}, augmentation on",
        if workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            workers
        }
    );
    let base = data::bench::proc_status_kb("RssAnon").unwrap_or(0);
    println!("baseline RssAnon {:.1} MB", base as f64 / 1024.0);
    let run_epoch = |label: &str, loader: &Loader| -> anyhow::Result<()> {
        let sampler = data::bench::RssSampler::start(Duration::from_millis(5));
        let cpu0 = data::bench::process_cpu_seconds().unwrap_or(0.0);
        let t = Instant::now();
        let mut seen = 0usize;
        let mut checksum = 0f64;
        for b in loader.epoch(0) {
            let b = b?;
            seen += b.labels.len();
            checksum += b.images[0] as f64;
        }
        let secs = t.elapsed().as_secs_f64();
        let peak = sampler.finish();
        let cpu = data::bench::process_cpu_seconds().unwrap_or(0.0) - cpu0;
        println!(
            "{label}: {seen} images in {secs:.2} s = {:.0} img/s ({:.2} ms CPU per image, \
             {:.0} img per CPU-second); peak RssAnon {:.1} MB \
             (loader +{:.1} MB over baseline); VmHWM {:.1} MB [checksum {checksum:.3}]",
            seen as f64 / secs,
            1000.0 * cpu / seen.max(1) as f64,
            seen as f64 / cpu.max(1e-9),
            peak as f64 / 1024.0,
            peak.saturating_sub(base) as f64 / 1024.0,
            data::bench::proc_status_kb("VmHWM").unwrap_or(0) as f64 / 1024.0,
        );
        Ok(())
    };
    if !no_cold {
        let loader = Loader::new(samples.clone(), cfg.clone())?;
        run_epoch("cold (decode+resize+augment)", &loader)?;
    }
    let remove_cache = cache.is_none();
    let dir = cache.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("dermclass-bench-{}", std::process::id()))
    });
    let t = Instant::now();
    let sampler = data::bench::RssSampler::start(Duration::from_millis(5));
    let loader = Loader::new(
        samples,
        LoaderConfig {
            cache_dir: Some(dir.clone()),
            ..cfg
        },
    )?;
    let peak = sampler.finish();
    println!(
        "cache ready in {:.2} s (built or opened, {}); peak RssAnon {:.1} MB",
        t.elapsed().as_secs_f64(),
        dir.display(),
        peak as f64 / 1024.0
    );
    run_epoch("warm (cache+augment)", &loader)?;
    drop(loader);
    if remove_cache {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
