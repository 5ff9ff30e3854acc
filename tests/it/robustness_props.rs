//! Property tests of the readers of untrusted input: random and mutated bytes to the image
//! reader, random text to the CSV readers (ground truth, HAM10000 metadata, lesion
//! groupings, split files, metrics history). Never a panic (proptest fails a case that
//! panics), always `Ok` or an error naming the file. A few seconds in all.

use std::path::{Path, PathBuf};

use crate::helpers::{save_jpeg, tiny_image};
use dermclass::data::source::read_lesion_groupings;
use dermclass::data::split::read_split_rows;
use dermclass::data::{Dataset, decode_image_rgb, load_image_rgb};
use dermclass::report::read_epochs_csv;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One small valid image in every format the reader supports.
fn valid_images() -> Vec<Vec<u8>> {
    let img = tiny_image(5, 12, 9);
    [
        image::ImageFormat::Jpeg,
        image::ImageFormat::Png,
        image::ImageFormat::Bmp,
        image::ImageFormat::Tiff,
    ]
    .into_iter()
    .map(|format| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    })
    .collect()
}

/// Asserts a reader's verdict: success, or an error whose message names `name`.
fn ok_or_names<T, E: std::fmt::Display>(result: Result<T, E>, name: &str) -> Result<(), String> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains(name) => Ok(()),
        Err(e) => Err(format!("error does not name {name}: {e}")),
    }
}

/// Text that looks enough like CSV to get past the first checks: cells from a small
/// vocabulary (class codes, ids, numbers, quotes, empty) joined by commas and line ends.
fn csv_like() -> impl Strategy<Value = String> {
    let cell = prop_oneof![
        Just(String::new()),
        prop::sample::select(vec![
            "image",
            "image_id",
            "lesion_id",
            "dx",
            "split",
            "MEL",
            "NV",
            "BCC",
            "AKIEC",
            "BKL",
            "DF",
            "VASC",
            "mel",
            "nv",
            "train",
            "val",
            "epoch",
            "train_loss",
            "1.0",
            "0.0",
            "1",
            "0",
            "-1",
            "NaN",
            "inf",
            "ISIC_0000000",
            "ISIC_0000001",
            "HAM_1",
            "\"",
            "\"a,b\"",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,6}",
        "\\PC{0,4}",
    ];
    let line = prop::collection::vec(cell, 0..9).prop_map(|cells| cells.join(","));
    let end = prop::sample::select(vec!["\n", "\r\n", "\r", ""]);
    prop::collection::vec((line, end), 0..8).prop_map(|rows| {
        rows.into_iter()
            .map(|(line, end)| line + end)
            .collect::<String>()
    })
}

/// A header that the reader accepts, followed by random rows: exercises the row checks.
fn with_header(header: &'static str) -> impl Strategy<Value = String> {
    csv_like().prop_map(move |rows| format!("{header}\n{rows}"))
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn random_bytes_never_panic_the_image_reader(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        // A real signature in front makes the decoders get past their first check.
        prefix in prop::sample::select(vec![
            &b""[..], &b"\xFF\xD8\xFF"[..], &b"\x89PNG\r\n\x1a\n"[..], &b"BM"[..],
            &b"II*\0"[..], &b"MM\0*"[..],
        ]),
    ) {
        let mut data = prefix.to_vec();
        data.extend_from_slice(&bytes);
        let path = Path::new("/nowhere/random-image.jpg");
        ok_or_names(decode_image_rgb(&data, path), "random-image.jpg")
            .map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn mutated_images_never_panic_the_image_reader(
        which in 0usize..4,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        keep in prop::option::of(any::<prop::sample::Index>()),
    ) {
        thread_local! {
            static VALID: Vec<Vec<u8>> = valid_images();
        }
        let mut data = VALID.with(|v| v[which].clone());
        for (at, value) in flips {
            let i = at.index(data.len());
            data[i] = value;
        }
        if let Some(keep) = keep {
            data.truncate(keep.index(data.len()));
        }
        let path = Path::new("/nowhere/mutated-image.png");
        ok_or_names(decode_image_rgb(&data, path), "mutated-image.png")
            .map_err(TestCaseError::fail)?;
    }
}

/// A folder for one property's files, kept for all its cases.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_text_never_panics_the_small_csv_readers(
        text in prop_oneof![
            csv_like(),
            with_header("image,split"),
            with_header("image,lesion_id"),
            with_header("epoch,train_loss,val_loss,val_accuracy,val_balanced_accuracy,val_macro_auc,lr,seconds,images_per_second"),
        ],
        raw in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
    ) {
        thread_local! {
            static DIR: tempfile::TempDir = scratch();
        }
        let path: PathBuf = DIR.with(|d| d.path().join("random-input.csv"));
        let mut bytes = text.into_bytes();
        if let Some(raw) = raw {
            bytes.extend(raw); // invalid UTF-8 and control bytes too
        }
        std::fs::write(&path, &bytes).unwrap();
        let name = "random-input.csv";
        ok_or_names(read_split_rows(&path), name).map_err(TestCaseError::fail)?;
        ok_or_names(read_lesion_groupings(&path), name).map_err(TestCaseError::fail)?;
        ok_or_names(read_epochs_csv(&path).map_err(|e| format!("{e:#}")), name)
            .map_err(TestCaseError::fail)?;
    }
}

/// An ISIC-layout root with two readable images, and a HAM10000-layout root with the same.
fn layouts() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = scratch();
    let isic = dir.path().join("isic");
    let input = isic.join("ISIC2018_Task3_Training_Input");
    std::fs::create_dir_all(&input).unwrap();
    let ham = dir.path().join("ham");
    let part = ham.join("HAM10000_images_part_1");
    std::fs::create_dir_all(&part).unwrap();
    for i in 0..2u32 {
        save_jpeg(
            &tiny_image(i, 8, 6),
            &input.join(format!("ISIC_000000{i}.jpg")),
        );
        save_jpeg(
            &tiny_image(i, 8, 6),
            &part.join(format!("ISIC_000000{i}.jpg")),
        );
    }
    (dir, isic, ham)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_ground_truth_and_metadata_never_panic_the_data_set_reader(
        gt in prop_oneof![
            csv_like(),
            with_header("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"),
            with_header("image,MEL,NV"),
        ],
        meta in prop_oneof![
            csv_like(),
            with_header("lesion_id,image_id,dx"),
            with_header("image_id,dx"),
        ],
        skip_bad in any::<bool>(),
    ) {
        thread_local! {
            static ROOTS: (tempfile::TempDir, PathBuf, PathBuf) = layouts();
        }
        let (isic, ham) = ROOTS.with(|r| (r.1.clone(), r.2.clone()));
        let options = dermclass::data::OpenOptions {
            skip_bad,
            ..Default::default()
        };
        // Every error names the CSV, or (an empty class, a layout problem) the data root.
        let check = |root: &Path, csv: &str, result: Result<Dataset, dermclass::data::DataError>| {
            match result {
                Ok(_) => Ok(()),
                Err(e) => {
                    let msg = e.to_string();
                    if msg.contains(csv) || msg.contains(&root.display().to_string()) {
                        Ok(())
                    } else {
                        Err(TestCaseError::fail(format!("error names neither {csv} nor the root: {msg}")))
                    }
                }
            }
        };
        let gt_name = "ISIC2018_Task3_Training_GroundTruth.csv";
        std::fs::write(isic.join(gt_name), &gt).unwrap();
        check(&isic, gt_name, Dataset::open_with(&isic, &options))?;
        std::fs::write(ham.join("HAM10000_metadata.csv"), &meta).unwrap();
        check(&ham, "HAM10000_metadata.csv", Dataset::open_with(&ham, &options))?;
    }
}

#[test]
fn the_image_reader_names_the_file_for_an_unreadable_path() {
    let dir = scratch();
    let err = load_image_rgb(&dir.path().join("gone.jpg")).unwrap_err();
    assert!(err.to_string().contains("gone.jpg"), "{err}");
}
