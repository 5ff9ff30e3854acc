//! Downloading the official ISIC 2018 Task 3 files: progress bar, resume of partial
//! downloads (HTTP `Range`), size check, unzip with a CRC check into a temporary folder
//! that is moved into place when complete, and a final layout check.

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

/// Extracts a zip into `out`, never leaving a half-unpacked folder that looks complete:
/// the archive is unpacked into a hidden temporary folder inside `out`, every entry is
/// checked while it is unpacked (its CRC-32 and its size against the archive's directory),
/// and only a complete unpack is moved into place, one top-level entry at a time (each a
/// rename; an existing folder of the same name is replaced only then). Entries with unsafe
/// paths are refused. Errors about the archive's content name the archive and the entry.
pub fn unzip(zip_path: &Path, out: &Path) -> Result<usize, DataError> {
    let zip_name = zip_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let tmp = out.join(format!(".{zip_name}.unpacking"));
    remove_if_present(&tmp)?;
    fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let result = unzip_checked(zip_path, &tmp).and_then(|n| {
        move_into_place(&tmp, out)?;
        Ok(n)
    });
    // Whatever happened, no temporary folder stays behind.
    let _ = fs::remove_dir_all(&tmp);
    result
}

fn remove_if_present(path: &Path) -> Result<(), DataError> {
    let result = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DataError::io(path, e)),
        _ => Ok(()),
    }
}

/// Unpacks every entry of `zip_path` into `dest`, checking each entry's CRC and size.
fn unzip_checked(zip_path: &Path, dest: &Path) -> Result<usize, DataError> {
    let zerr = |msg: String| DataError::Archive {
        path: zip_path.to_path_buf(),
        msg,
    };
    let f = fs::File::open(zip_path).map_err(|e| DataError::io(zip_path, e))?;
    let mut z = zip::ZipArchive::new(f).map_err(|e| zerr(format!("not a readable zip: {e}")))?;
    let mut n = 0;
    let mut buf = vec![0u8; 1 << 16];
    for i in 0..z.len() {
        let mut entry = z
            .by_index(i)
            .map_err(|e| zerr(format!("bad zip entry {i}: {e}")))?;
        let name = entry.name().to_string();
        let Some(rel) = entry.enclosed_name() else {
            return Err(zerr(format!("unsafe path in zip: {name}")));
        };
        let target = dest.join(rel);
        if entry.is_dir() {
            fs::create_dir_all(&target).map_err(|e| DataError::io(&target, e))?;
            continue;
        }
        if let Some(p) = target.parent() {
            fs::create_dir_all(p).map_err(|e| DataError::io(p, e))?;
        }
        let mut w = fs::File::create(&target).map_err(|e| DataError::io(&target, e))?;
        let mut written = 0u64;
        loop {
            // The zip reader checks the entry's CRC-32 when it reaches the end.
            let k = entry
                .read(&mut buf)
                .map_err(|e| zerr(format!("entry {name}: {e} (after {written} bytes)")))?;
            if k == 0 {
                break;
            }
            w.write_all(&buf[..k])
                .map_err(|e| DataError::io(&target, e))?;
            written += k as u64;
        }
        if written != entry.size() {
            return Err(zerr(format!(
                "entry {name}: unpacked {written} bytes, the archive's directory says {}",
                entry.size()
            )));
        }
        n += 1;
    }
    Ok(n)
}

/// Moves every top-level entry of `tmp` into `out`, replacing what is there.
fn move_into_place(tmp: &Path, out: &Path) -> Result<(), DataError> {
    let entries = fs::read_dir(tmp).map_err(|e| DataError::io(tmp, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(tmp, e))?;
        let target = out.join(entry.file_name());
        if target.exists() {
            let mut old_name = std::ffi::OsString::from(".");
            old_name.push(entry.file_name());
            old_name.push(".replaced");
            let old = out.join(old_name);
            remove_if_present(&old)?;
            fs::rename(&target, &old).map_err(|e| DataError::io(&target, e))?;
            fs::rename(entry.path(), &target).map_err(|e| DataError::io(&target, e))?;
            remove_if_present(&old)?;
        } else {
            fs::rename(entry.path(), &target).map_err(|e| DataError::io(&target, e))?;
        }
    }
    Ok(())
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
            if is_zip && let Err(e) = unzip(&dest, out) {
                // A corrupt download is removed, so that the next run fetches it afresh.
                if let DataError::Archive { path, msg } = &e
                    && fs::remove_file(&dest).is_ok()
                {
                    return Err(DataError::Archive {
                        path: path.clone(),
                        msg: format!(
                            "{msg}; nothing was unpacked from it, and it was removed: run \
                             again to download it afresh"
                        ),
                    });
                }
                return Err(e);
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
