//! The README's walkthrough, end to end, on a synthetic official download served from
//! 127.0.0.1: fetch-data -> check -> train -> evaluate on the official validation set ->
//! predict the test set into the CSV the live leaderboard takes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::data_fetch::{State, serve, zip_of};
use crate::helpers::{CLASSES, TINY_CNN_FLAGS, dermclass_cmd, dermclass_ok, tiny_image};

/// The official files of one subset: `per_class` images of each class with ids from
/// `first_id`, the ground truth unless it is the test set, lesion groupings for training.
fn official_subset(subset: &str, first_id: usize, per_class: usize) -> HashMap<String, Vec<u8>> {
    let mut images = Vec::new();
    let mut truth = String::from("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n");
    let mut groups = String::from("image,lesion_id,diagnosis_confirm_type\n");
    for i in 0..per_class * 7 {
        let id = format!("ISIC_{:07}", first_id + i);
        let mut jpeg = std::io::Cursor::new(Vec::new());
        tiny_image((first_id + i) as u32, 40, 30)
            .write_to(&mut jpeg, image::ImageFormat::Jpeg)
            .unwrap();
        images.push((
            format!("ISIC2018_Task3_{subset}_Input/{id}.jpg"),
            jpeg.into_inner(),
        ));
        let row: Vec<&str> = (0..7)
            .map(|c| if c == i % 7 { "1.0" } else { "0.0" })
            .collect();
        truth += &format!("{id},{}\n", row.join(","));
        groups += &format!("{id},HAM_{},histo\n", first_id + i);
    }
    let mut files = HashMap::new();
    files.insert(
        format!("ISIC2018_Task3_{subset}_Input.zip"),
        zip_of(&images),
    );
    if subset != "Test" {
        let name = format!("ISIC2018_Task3_{subset}_GroundTruth");
        files.insert(
            format!("{name}.zip"),
            zip_of(&[(format!("{name}/{name}.csv"), truth.into_bytes())]),
        );
    }
    if subset == "Training" {
        files.insert(
            "ISIC2018_Task3_Training_LesionGroupings.csv".into(),
            groups.into_bytes(),
        );
    }
    files
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn download_check_train_evaluate_on_validation_and_predict_the_test_set() {
    let mut files = official_subset("Training", 0, 4);
    files.extend(official_subset("Validation", 1000, 1));
    files.extend(official_subset("Test", 2000, 1));
    let base = serve(Arc::new(Mutex::new(State {
        files,
        ..State::default()
    })));
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("isic2018");
    let fetched = dermclass_ok([
        "fetch-data",
        "--out",
        s(&root),
        "--set",
        "all",
        "--base-url",
        &base,
    ]);
    assert!(
        fetched.contains("Training: 28 labelled images"),
        "{fetched}"
    );
    assert!(
        fetched.contains("Validation: 7 labelled images"),
        "{fetched}"
    );
    dermclass_ok(["check", "--data", s(&root)]);

    let run = work.path().join("run");
    dermclass_ok(
        ["train", "--data", s(&root), "--out", s(&run)]
            .into_iter()
            .chain(TINY_CNN_FLAGS),
    );

    let scored = dermclass_cmd()
        .args(["evaluate", "--model", s(&run), "--data", s(&root)])
        .args(["--subset", "validation"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&scored.stderr);
    assert!(scored.status.success(), "{stderr}");
    assert!(
        stderr.contains("scoring 7 images: the validation subset"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&scored.stdout).contains("balanced accuracy"));

    let submission = work.path().join("submission.csv");
    dermclass_ok([
        "predict",
        "--model",
        s(&run),
        "--input",
        s(&root),
        "--subset",
        "test",
        "--out",
        s(&submission),
    ]);
    let mut reader = csv::Reader::from_path(&submission).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let mut want = vec!["image".to_string()];
    want.extend(CLASSES.iter().map(|c| c.to_string()));
    assert_eq!(header, want);
    let ids: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    let expected: Vec<String> = (2000..2007).map(|i| format!("ISIC_{i:07}")).collect();
    assert_eq!(ids, expected);

    // A subset the download lacks is named in the error.
    let missing = dermclass_cmd()
        .args(["predict", "--input", s(&work.path().join("run"))])
        .args(["--subset", "test", "--out", s(&submission)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        stderr.contains("has no Test images") && stderr.contains("fetch-data --set test"),
        "{stderr}"
    );
}
