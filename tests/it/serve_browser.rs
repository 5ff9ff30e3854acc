//! The page of `dermclass serve` in real headless Chromium: upload an image, see the bars
//! and the heat map, and the top class shown is `/predict`'s. Needs Debian's `chromium` and
//! `npm install` in `web/` (playwright-core); without them it says so and passes. With
//! `DERMCLASS_SCREENSHOT=path` it also keeps the screenshot (the README's picture).

use std::path::Path;

use dermclass::serve::ServeConfig;

#[test]
fn the_served_page_shows_bars_and_a_heat_map_and_predicts_top_class() {
    let chromium = match crate::helpers::chromium_with(&["playwright-core"]) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED the serve browser test: {why}");
            return;
        }
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let server = crate::serve::start(ServeConfig::default(), 1);
    let work = tempfile::tempdir().unwrap();
    let screenshot = std::env::var_os("DERMCLASS_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| work.path().join("serve.png"));
    let report = crate::helpers::run_browser_script(
        "serve-check.mjs",
        [
            std::ffi::OsString::from(format!("http://{}/", server.addr())),
            std::ffi::OsString::from(repo.join("assets/demo/ISIC_0024333.jpg")),
            std::ffi::OsString::from(chromium.clone()),
            std::ffi::OsString::from(screenshot.clone()),
        ],
    );
    eprintln!("serve page: answer shown in {} ms", report["shown_ms"]);
    assert_eq!(report["state"], "done", "{report}");
    let bars = report["shown"]["bars"].as_array().unwrap();
    assert_eq!(bars.len(), 7, "{report}");
    assert!(
        bars[0][1].as_str().unwrap().contains("Melanoma (MEL)"),
        "{report}"
    );
    let heatmap = &report["shown"]["heatmap"];
    assert_eq!(heatmap, &serde_json::json!([200, 150]), "{report}");
    let top = report["shown"]["top"].as_str().unwrap();
    assert_eq!(top, report["predicted_top"], "{report}");
    assert_eq!(
        report["console_errors"].as_array().unwrap().len(),
        0,
        "{report}"
    );
    let shot = image::open(&screenshot).unwrap();
    assert!(shot.width() >= 1000 && shot.height() > 300);
}
