//! `fetch-data` against a tiny HTTP server on 127.0.0.1 (never the internet).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Cursor, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::helpers::*;
use dermclass::data::fetch::{FetchSet, download, fetch};

#[derive(Default)]
pub(crate) struct State {
    pub(crate) files: HashMap<String, Vec<u8>>,
    /// Paths whose next full GET is cut in the middle.
    pub(crate) cut_once: Vec<String>,
    pub(crate) log: Vec<String>,
}

/// Serves `state.files` by name on a loopback port; returns the base URL.
pub(crate) fn serve(state: Arc<Mutex<State>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let mut range: Option<u64> = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse().ok();
                }
            }
            let mut st = state.lock().unwrap();
            st.log.push(format!("{method} {path} {range:?}"));
            let name = path.rsplit('/').next().unwrap_or("").to_string();
            let Some(body) = st.files.get(&name).cloned() else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let len = body.len() as u64;
            let (status, start) = match range {
                Some(r) if r < len => ("206 Partial Content", r),
                Some(_) => {
                    let _ = stream.write_all(
                        format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
                    );
                    continue;
                }
                None => ("200 OK", 0),
            };
            let mut head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                len - start
            );
            if start > 0 {
                head.push_str(&format!(
                    "Content-Range: bytes {start}-{}/{len}\r\n",
                    len - 1
                ));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            if method == "HEAD" {
                continue;
            }
            let mut end = len;
            if start == 0 && st.cut_once.contains(&name) {
                st.cut_once.retain(|n| n != &name);
                end = len / 2;
            }
            drop(st);
            let _ = stream.write_all(&body[start as usize..end as usize]);
            let _ = stream.flush();
        }
    });
    format!("http://{addr}/2018/")
}

pub(crate) fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        zw.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        zw.write_all(data).unwrap();
    }
    zw.finish().unwrap().into_inner()
}

fn official_files() -> HashMap<String, Vec<u8>> {
    let src = tempfile::tempdir().unwrap();
    let labels = labels_each(2);
    let lesions: Vec<String> = (0..14).map(|i| format!("HAM_{}", i / 2)).collect();
    let les: Vec<&str> = lesions.iter().map(String::as_str).collect();
    let ids = write_isic(src.path(), &labels, Some(&les));
    let mut images: Vec<(String, Vec<u8>)> = ids
        .iter()
        .map(|id| {
            let p = src
                .path()
                .join(format!("ISIC2018_Task3_Training_Input/{id}.jpg"));
            (
                format!("ISIC2018_Task3_Training_Input/{id}.jpg"),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    images.push((
        "ISIC2018_Task3_Training_Input/LICENSE.txt".into(),
        b"CC-BY-NC".to_vec(),
    ));
    let gt = std::fs::read(src.path().join("ISIC2018_Task3_Training_GroundTruth.csv")).unwrap();
    let groups = std::fs::read(
        src.path()
            .join("ISIC2018_Task3_Training_LesionGroupings.csv"),
    )
    .unwrap();
    let mut files = HashMap::new();
    files.insert("ISIC2018_Task3_Training_Input.zip".into(), zip_of(&images));
    files.insert(
        "ISIC2018_Task3_Training_GroundTruth.zip".into(),
        zip_of(&[(
            "ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv".into(),
            gt,
        )]),
    );
    files.insert("ISIC2018_Task3_Training_LesionGroupings.csv".into(), groups);
    files
}

#[test]
fn fetch_training_set_resumes_and_checks_layout() {
    let state = Arc::new(Mutex::new(State {
        files: official_files(),
        cut_once: vec!["ISIC2018_Task3_Training_Input.zip".into()],
        log: Vec::new(),
    }));
    let base = serve(Arc::clone(&state));
    let out = tempfile::tempdir().unwrap();
    // First attempt is cut mid-file: a clear error, the partial file stays.
    let err = fetch(out.path(), &[FetchSet::Training], &base, false).unwrap_err();
    assert!(err.to_string().contains("Training_Input.zip"), "{err}");
    let part = out
        .path()
        .join("downloads/ISIC2018_Task3_Training_Input.zip.part");
    let partial = std::fs::metadata(&part).unwrap().len();
    assert!(partial > 0);
    // Second attempt resumes with a Range request and completes.
    let s = fetch(out.path(), &[FetchSet::Training], &base, false).unwrap();
    assert_eq!(s.subsets, vec![("Training".to_string(), 14)]);
    let log = state.lock().unwrap().log.clone();
    assert!(
        log.iter()
            .any(|l| l.contains("Training_Input.zip") && l.contains(&format!("Some({partial})"))),
        "{log:?}"
    );
    assert!(!part.exists());
    let zip = out
        .path()
        .join("downloads/ISIC2018_Task3_Training_Input.zip");
    let want = state.lock().unwrap().files["ISIC2018_Task3_Training_Input.zip"].clone();
    assert_eq!(std::fs::read(&zip).unwrap(), want);
    // The result is a valid data root.
    let ds = dermclass::data::Dataset::open(out.path(), None).unwrap();
    assert_eq!(ds.class_counts(), vec![2; 7]);
    assert_eq!(ds.lesion_count(), 7);
    // A third run downloads nothing again (HEAD only for existing files).
    state.lock().unwrap().log.clear();
    fetch(out.path(), &[FetchSet::Training], &base, false).unwrap();
    let log = state.lock().unwrap().log.clone();
    assert!(log.iter().all(|l| l.starts_with("HEAD")), "{log:?}");
}

#[test]
fn missing_file_and_size_mismatch_are_errors() {
    let state = Arc::new(Mutex::new(State::default()));
    state
        .lock()
        .unwrap()
        .files
        .insert("a.bin".into(), vec![7u8; 1000]);
    let base = serve(Arc::clone(&state));
    let out = tempfile::tempdir().unwrap();
    let err = download(
        &format!("{base}nope.bin"),
        &out.path().join("nope.bin"),
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("404") && err.to_string().contains("nope.bin"));
    // Validation set missing on the server: required file -> error naming the URL.
    let err = fetch(out.path(), &[FetchSet::Validation], &base, false).unwrap_err();
    assert!(err.to_string().contains("Validation_Input.zip"), "{err}");
    // A stale, longer .part file is restarted cleanly.
    let dest = out.path().join("a.bin");
    std::fs::write(out.path().join("a.bin.part"), vec![1u8; 5000]).unwrap();
    assert_eq!(
        download(&format!("{base}a.bin"), &dest, false).unwrap(),
        1000
    );
    assert_eq!(std::fs::read(&dest).unwrap(), vec![7u8; 1000]);
}

/// A zip whose entries are stored uncompressed, so that a byte of an entry's content can be
/// found and flipped in the archive.
fn stored_zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        zw.start_file(name.as_str(), opts).unwrap();
        zw.write_all(data).unwrap();
    }
    zw.finish().unwrap().into_inner()
}

fn entries_of(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut e = z.by_index(i).unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (e.name().to_string(), data)
        })
        .collect()
}

fn hidden_leftovers(dir: &std::path::Path) -> Vec<String> {
    names_in(dir, |n| n.starts_with('.'))
}

#[test]
fn a_corrupt_or_truncated_archive_never_leaves_a_data_set_that_looks_complete() {
    const INPUT: &str = "ISIC2018_Task3_Training_Input.zip";
    let mut files = official_files();
    // The images first, then a marker entry whose content is corrupted in transit: by the
    // time its CRC fails, every image has been unpacked somewhere.
    let mut entries = entries_of(&files[INPUT]);
    let marker = b"MARKER-CONTENT-MARKER-CONTENT".to_vec();
    entries.push(("ISIC2018_Task3_Training_Input/zz_marker.txt".into(), marker));
    let good = stored_zip_of(&entries);
    let mut corrupt = good.clone();
    let at = corrupt
        .windows(8)
        .position(|w| w == b"MARKER-C")
        .expect("stored content is in the archive");
    corrupt[at + 3] ^= 0x20;
    files.insert(INPUT.into(), corrupt);
    let state = Arc::new(Mutex::new(State {
        files,
        ..State::default()
    }));
    let base = serve(Arc::clone(&state));
    let out = tempfile::tempdir().unwrap();
    let input = out.path().join("ISIC2018_Task3_Training_Input");
    let archive = out.path().join("downloads").join(INPUT);
    let fetch_training = || fetch(out.path(), &[FetchSet::Training], &base, false);
    let serve_input = |archive: Vec<u8>| state.lock().unwrap().files.insert(INPUT.into(), archive);

    // Corrupt content (the size is right): the CRC check fails, nothing is unpacked, no
    // temporary folder stays, and the bad archive is removed so a rerun downloads it.
    let err = fetch_training().unwrap_err().to_string();
    assert!(
        err.contains(INPUT) && err.contains("zz_marker.txt"),
        "{err}"
    );
    assert!(err.contains("checksum"), "{err}");
    assert!(!input.exists(), "a half-unpacked input folder is left");
    assert!(hidden_leftovers(out.path()).is_empty());
    assert!(!archive.exists());

    // The server is fixed: a rerun downloads and unpacks everything.
    serve_input(good.clone());
    let s = fetch_training().unwrap();
    assert_eq!(s.subsets, vec![("Training".to_string(), 14)]);
    let complete = std::fs::read_dir(&input).unwrap().count();
    assert_eq!(complete, 16); // 14 images, LICENSE.txt, the marker

    // A truncated archive (the server's size agrees, so only the archive itself can tell):
    // refused, and the complete folder from before is left as it was.
    serve_input(good[..good.len() - 40].to_vec());
    let err = fetch_training().unwrap_err().to_string();
    assert!(
        err.contains(INPUT) && err.contains("corrupt or incomplete"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&input).unwrap().count(), complete);
    assert!(hidden_leftovers(out.path()).is_empty());
    assert!(!archive.exists());
}
