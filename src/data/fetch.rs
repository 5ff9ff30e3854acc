//! Downloading the official ISIC 2018 Task 3 files: progress bar, resume of partial
//! downloads (HTTP `Range`), size check, unzip and a final layout check.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::error::DataError;

/// Default base URL of the official files.
pub const DEFAULT_BASE_URL: &str = "https://isic-challenge-data.s3.amazonaws.com/2018/";

/// Which part of the challenge data to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchSet {
    /// Training images, ground truth and lesion groupings.
    Training,
    /// Validation images and ground truth.
    Validation,
    /// Test images (and ground truth when the server has it).
    Test,
}

impl std::str::FromStr for FetchSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "training" | "train" => Ok(FetchSet::Training),
            "validation" | "val" => Ok(FetchSet::Validation),
            "test" => Ok(FetchSet::Test),
            o => Err(format!(
                "unknown set `{o}` (training, validation, test, all)"
            )),
        }
    }
}

impl FetchSet {
    /// The official subset name.
    pub fn name(self) -> &'static str {
        match self {
            FetchSet::Training => "Training",
            FetchSet::Validation => "Validation",
            FetchSet::Test => "Test",
        }
    }

    /// `(file name, required)` pairs for this set.
    pub fn files(self) -> Vec<(String, bool)> {
        let n = self.name();
        let mut v = vec![
            (format!("ISIC2018_Task3_{n}_Input.zip"), true),
            (
                format!("ISIC2018_Task3_{n}_GroundTruth.zip"),
                self != FetchSet::Test,
            ),
        ];
        if self == FetchSet::Training {
            v.push((format!("ISIC2018_Task3_{n}_LesionGroupings.csv"), true));
        }
        v
    }
}

/// Downloads `url` to `dest`, resuming from `dest.part` when present. Checks the size
/// against the server's `Content-Length`/`Content-Range`. Skips the download when `dest`
/// already exists with the server's size. Returns the file size.
pub fn download(url: &str, dest: &Path, progress: bool) -> Result<u64, DataError> {
    let derr = |msg: String| DataError::Download {
        url: url.to_string(),
        msg,
    };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(30))
        .timeout_read(std::time::Duration::from_secs(120))
        .build();
    let remote_size = |resp: &ureq::Response| -> Option<u64> {
        if let Some(cr) = resp.header("Content-Range") {
            // bytes a-b/total
            return cr.rsplit('/').next().and_then(|t| t.trim().parse().ok());
        }
        resp.header("Content-Length").and_then(|v| v.parse().ok())
    };
    if dest.is_file() {
        let have = fs::metadata(dest)
            .map_err(|e| DataError::io(dest, e))?
            .len();
        if let Ok(resp) = agent.head(url).call()
            && remote_size(&resp) == Some(have)
        {
            return Ok(have);
        }
    }
    let part = PathBuf::from(format!("{}.part", dest.display()));
    let mut offset = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url);
    if offset > 0 {
        req = req.set("Range", &format!("bytes={offset}-"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(416, _)) if offset > 0 => {
            // The part file is already complete (or bigger than the file): start over.
            fs::remove_file(&part).map_err(|e| DataError::io(&part, e))?;
            offset = 0;
            agent.get(url).call().map_err(|e| derr(e.to_string()))?
        }
        Err(ureq::Error::Status(code, _)) => return Err(derr(format!("HTTP status {code}"))),
        Err(e) => return Err(derr(e.to_string())),
    };
    let total = remote_size(&resp);
    let append = offset > 0 && resp.status() == 206;
    if !append {
        offset = 0;
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&part)
        .map_err(|e| DataError::io(&part, e))?;
    let bar = if progress {
        let b = indicatif::ProgressBar::new(total.unwrap_or(0));
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(
            dest.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        b.set_position(offset);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut written = offset;
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            derr(format!(
                "interrupted after {written} bytes: {e} (run again to resume)"
            ))
        })?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .map_err(|e| DataError::io(&part, e))?;
        written += n as u64;
        bar.set_position(written);
    }
    file.flush().map_err(|e| DataError::io(&part, e))?;
    drop(file);
    bar.finish_and_clear();
    if let Some(t) = total
        && written != t
    {
        return Err(derr(format!(
            "size mismatch: got {written} bytes, expected {t} (run again to resume)"
        )));
    }
    fs::rename(&part, dest).map_err(|e| DataError::io(dest, e))?;
    Ok(written)
}

/// Extracts a zip into `out` (entries with unsafe paths are refused).
pub fn unzip(zip_path: &Path, out: &Path) -> Result<usize, DataError> {
    let zerr = |msg: String| DataError::Decode {
        path: zip_path.to_path_buf(),
        msg,
    };
    let f = fs::File::open(zip_path).map_err(|e| DataError::io(zip_path, e))?;
    let mut z = zip::ZipArchive::new(f).map_err(|e| zerr(format!("bad zip: {e}")))?;
    let mut n = 0;
    for i in 0..z.len() {
        let mut entry = z
            .by_index(i)
            .map_err(|e| zerr(format!("bad zip entry: {e}")))?;
        let Some(rel) = entry.enclosed_name() else {
            return Err(zerr(format!("unsafe path in zip: {}", entry.name())));
        };
        let target = out.join(rel);
        if entry.is_dir() {
            fs::create_dir_all(&target).map_err(|e| DataError::io(&target, e))?;
            continue;
        }
        if let Some(p) = target.parent() {
            fs::create_dir_all(p).map_err(|e| DataError::io(p, e))?;
        }
        let mut w = fs::File::create(&target).map_err(|e| DataError::io(&target, e))?;
        std::io::copy(&mut entry, &mut w).map_err(|e| DataError::io(&target, e))?;
        n += 1;
    }
    Ok(n)
}

/// What [`fetch`] did.
#[derive(Debug, Clone, Default)]
pub struct FetchSummary {
    /// Files downloaded or already present.
    pub files: Vec<PathBuf>,
    /// Optional files the server did not have.
    pub missing_optional: Vec<String>,
    /// Images per subset after extraction (`subset`, labelled images).
    pub subsets: Vec<(String, usize)>,
}

/// Downloads, verifies and extracts `sets` into `out`, then checks the layout.
pub fn fetch(
    out: &Path,
    sets: &[FetchSet],
    base_url: &str,
    progress: bool,
) -> Result<FetchSummary, DataError> {
    fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    let downloads = out.join("downloads");
    fs::create_dir_all(&downloads).map_err(|e| DataError::io(&downloads, e))?;
    let base = if base_url.ends_with('/') {
        base_url.to_string()
    } else {
        format!("{base_url}/")
    };
    let mut summary = FetchSummary::default();
    for &set in sets {
        for (name, required) in set.files() {
            let url = format!("{base}{name}");
            let is_zip = name.ends_with(".zip");
            let dest = if is_zip {
                downloads.join(&name)
            } else {
                out.join(&name)
            };
            match download(&url, &dest, progress) {
                Ok(_) => {}
                Err(DataError::Download { msg, .. })
                    if !required && msg.contains("HTTP status 404") =>
                {
                    summary.missing_optional.push(name.clone());
                    continue;
                }
                Err(e) => return Err(e),
            }
            if is_zip {
                unzip(&dest, out)?;
            }
            summary.files.push(dest);
        }
        let input = out.join(format!("ISIC2018_Task3_{}_Input", set.name()));
        if !input.is_dir() {
            return Err(DataError::Layout {
                root: out.to_path_buf(),
                msg: format!("after extraction, {} is missing", input.display()),
            });
        }
        if super::source::find_isic_ground_truth(out, set.name()).is_some() {
            let ds = super::Dataset::open_with(
                out,
                &super::OpenOptions {
                    format: Some(super::SourceFormat::Isic),
                    isic_subset: Some(set.name().to_string()),
                    skip_bad: false,
                },
            )?;
            summary
                .subsets
                .push((set.name().to_string(), ds.samples.len()));
        }
    }
    Ok(summary)
}
