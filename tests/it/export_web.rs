//! `dermclass export --web`: the page classifies in real headless Chromium (onnxruntime-web)
//! and shows the probabilities `dermclass predict` gives for the same image. Needs Debian's
//! `chromium` and `npm install` in `web/` (playwright-core, onnxruntime-web); without them
//! it says so and passes.

use std::path::{Path, PathBuf};

use dermclass::data::image_io::{load_image_rgb, resize_rgb};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dermclass(args: &[&str]) -> String {
    crate::helpers::dermclass_ok(args)
}

/// Chromium and the page's npm packages, or why the test cannot run.
fn browser_tools() -> Result<PathBuf, String> {
    crate::helpers::chromium_with(&["playwright-core", "onnxruntime-web"])
}

/// `predict`'s probabilities for one image, by class code.
fn predict(dir: &Path, csv: &Path) -> Vec<(String, f64)> {
    dermclass(&[
        "predict",
        "--input",
        dir.to_str().unwrap(),
        "--out",
        csv.to_str().unwrap(),
    ]);
    let mut reader = csv::Reader::from_path(csv).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let row = reader.records().next().unwrap().unwrap();
    header[1..]
        .iter()
        .zip(row.iter().skip(1))
        .map(|(c, v)| (c.clone(), v.parse().unwrap()))
        .collect()
}

#[test]
fn the_exported_page_shows_predicts_probabilities_in_headless_chromium() {
    let chromium = match browser_tools() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED the browser test: {why}");
            return;
        }
    };
    let work = tempfile::tempdir().unwrap();
    let site = work.path().join("site");
    let out = dermclass(&["export", "--web", site.to_str().unwrap()]);
    assert!(out.contains("npm install"), "{out}");
    std::os::unix::fs::symlink(repo().join("web/node_modules"), site.join("node_modules")).unwrap();
    // An image at the model's input size, as PNG, so that the browser and dermclass decode
    // and resize it identically and only the model path is compared.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.join("model.json")).unwrap()).unwrap();
    let (w, h) = (
        meta["input_width"].as_u64().unwrap() as u32,
        meta["input_height"].as_u64().unwrap() as u32,
    );
    let images = work.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let png = images.join("ISIC_0024333.png");
    let source = load_image_rgb(&repo().join("assets/demo/ISIC_0024333.jpg")).unwrap();
    resize_rgb(&source, w, h).save(&png).unwrap();
    let want = predict(&images, &work.path().join("p.csv"));

    let report = crate::helpers::run_browser_script(
        "browser-check.mjs",
        [
            std::ffi::OsString::from(site.clone()),
            std::ffi::OsString::from(png.clone()),
            std::ffi::OsString::from(chromium.clone()),
            std::ffi::OsString::from("5"),
        ],
    );
    eprintln!(
        "browser: page ready in {} ms, {} ms per image (median of 5)",
        report["load_ms"], report["median_ms"]
    );
    let shown = report["shown"].as_array().unwrap();
    assert_eq!(shown.len(), want.len(), "one bar per class");
    for (code, p) in &want {
        let row = shown
            .iter()
            .find(|r| r[0] == code.as_str())
            .unwrap_or_else(|| panic!("{code} not shown: {report}"));
        let got = row[1].as_f64().unwrap();
        assert!((got - p).abs() <= 1e-3, "{code}: page {got} vs predict {p}");
        let label = row[2].as_str().unwrap();
        assert!(
            label.contains(code.as_str()) && label.len() > code.len() + 3,
            "{label}"
        );
    }
    assert_eq!(
        report["requests_after_load"].as_array().unwrap().len(),
        0,
        "classifying made network requests: {report}"
    );
    assert!(
        report["privacy_text"]
            .as_str()
            .unwrap()
            .contains("never uploaded")
    );
}
