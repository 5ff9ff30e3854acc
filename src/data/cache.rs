//! The preprocessed cache: every image decoded and resized once to the working size and
//! stored as raw RGB u8 in one file, memory-mapped, so later epochs skip JPEG decoding.
//!
//! File layout (little endian): a 64-byte header — magic `DERMCCH1`, version u32,
//! width u32, height u32, channels u32, count u64, key u64 (hash of the sample list, the
//! files' sizes and modification times) — then `count` images of `height*width*3` bytes,
//! in sample order. The file is written to a temporary name and renamed into place, so a
//! crash never leaves a truncated cache under the final name; opening validates the header
//! and the file length.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;

use super::error::DataError;
use super::image_io::load_resized;
use super::source::Sample;

const MAGIC: &[u8; 8] = b"DERMCCH1";
/// Cache format version.
pub const CACHE_VERSION: u32 = 1;
const HEADER: usize = 64;

/// A validated, memory-mapped preprocessed cache.
#[derive(Debug)]
pub struct PreprocessedCache {
    mmap: Mmap,
    path: PathBuf,
    width: usize,
    height: usize,
    count: usize,
}

fn fnv(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= b as u64;
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

/// Hash identifying a sample list (ids and canonical paths, in order) and the files'
/// sizes and modification times.
pub fn samples_key(samples: &[Sample]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for s in samples {
        fnv(&mut h, s.id.as_bytes());
        // Canonical path, so `../data/x.jpg` and `/abs/data/x.jpg` share one cache.
        let canon = fs::canonicalize(&s.path).unwrap_or_else(|_| s.path.clone());
        fnv(&mut h, canon.as_os_str().as_encoded_bytes());
        if let Ok(m) = fs::metadata(&s.path) {
            fnv(&mut h, &m.len().to_le_bytes());
            if let Ok(t) = m.modified()
                && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
            {
                fnv(&mut h, &d.as_nanos().to_le_bytes());
            }
        }
        fnv(&mut h, b"\n");
    }
    h
}

impl PreprocessedCache {
    /// Where the cache for these samples at this size lives inside `dir`.
    pub fn path_for(dir: &Path, samples: &[Sample], width: usize, height: usize) -> PathBuf {
        let key = samples_key(samples);
        dir.join(format!("dermclass-{key:016x}-{width}x{height}.u8cache"))
    }

    /// Opens the cache for `samples` in `dir`, building it first when absent or invalid.
    pub fn open_or_build(
        dir: &Path,
        samples: &[Sample],
        width: usize,
        height: usize,
    ) -> Result<Self, DataError> {
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let key = samples_key(samples);
        let path = dir.join(format!("dermclass-{key:016x}-{width}x{height}.u8cache"));
        if path.is_file() {
            match Self::open(&path, key, samples.len(), width, height) {
                Ok(c) => return Ok(c),
                Err(_) => {
                    // Stale or damaged: rebuild below.
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Self::build(&path, samples, width, height, key)?;
        Self::open(&path, key, samples.len(), width, height)
    }

    /// Decodes and resizes every sample (in parallel, in chunks so memory stays bounded)
    /// and writes the cache atomically (temporary file + rename).
    pub fn build(
        path: &Path,
        samples: &[Sample],
        width: usize,
        height: usize,
        key: u64,
    ) -> Result<(), DataError> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let result = (|| {
            let f = fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            let mut header = [0u8; HEADER];
            header[0..8].copy_from_slice(MAGIC);
            header[8..12].copy_from_slice(&CACHE_VERSION.to_le_bytes());
            header[12..16].copy_from_slice(&(width as u32).to_le_bytes());
            header[16..20].copy_from_slice(&(height as u32).to_le_bytes());
            header[20..24].copy_from_slice(&3u32.to_le_bytes());
            header[24..32].copy_from_slice(&(samples.len() as u64).to_le_bytes());
            header[32..40].copy_from_slice(&key.to_le_bytes());
            w.write_all(&header).map_err(|e| DataError::io(&tmp, e))?;
            for chunk in samples.chunks(128) {
                let imgs: Vec<Result<Vec<u8>, DataError>> = chunk
                    .par_iter()
                    .map(|s| {
                        load_resized(&s.path, width as u32, height as u32).map(|i| i.into_raw())
                    })
                    .collect();
                for img in imgs {
                    w.write_all(&img?).map_err(|e| DataError::io(&tmp, e))?;
                }
            }
            let f = w
                .into_inner()
                .map_err(|e| DataError::io(&tmp, e.into_error()))?;
            f.sync_all().map_err(|e| DataError::io(&tmp, e))?;
            fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Opens and validates a cache file.
    pub fn open(
        path: &Path,
        key: u64,
        count: usize,
        width: usize,
        height: usize,
    ) -> Result<Self, DataError> {
        let bad = |msg: String| DataError::Cache {
            path: path.to_path_buf(),
            msg,
        };
        let f = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        // SAFETY: the file is only ever replaced by rename, never modified in place.
        let mmap = unsafe { Mmap::map(&f) }.map_err(|e| DataError::io(path, e))?;
        if mmap.len() < HEADER || &mmap[0..8] != MAGIC {
            return Err(bad("not a dermclass cache (bad magic)".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(mmap[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(mmap[o..o + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != CACHE_VERSION {
            return Err(bad(format!("version {version}, expected {CACHE_VERSION}")));
        }
        let (w, h, c, n, k) = (
            u32_at(12) as usize,
            u32_at(16) as usize,
            u32_at(20) as usize,
            u64_at(24) as usize,
            u64_at(32),
        );
        if (w, h, c) != (width, height, 3) {
            return Err(bad(format!(
                "image size {w}x{h}x{c}, expected {width}x{height}x3"
            )));
        }
        if n != count {
            return Err(bad(format!("{n} images, expected {count}")));
        }
        if k != key {
            return Err(bad("stale: the sample list or files changed".into()));
        }
        let expected = HEADER + n * w * h * 3;
        if mmap.len() != expected {
            return Err(bad(format!(
                "length {} bytes, expected {expected} (truncated?)",
                mmap.len()
            )));
        }
        Ok(PreprocessedCache {
            mmap,
            path: path.to_path_buf(),
            width,
            height,
            count,
        })
    }

    /// The `i`-th image, `height*width*3` RGB bytes.
    pub fn image(&self, i: usize) -> &[u8] {
        let sz = self.width * self.height * 3;
        let o = HEADER + i * sz;
        &self.mmap[o..o + sz]
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when it holds no images.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
