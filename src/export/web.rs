//! `dermclass export --web DIR`: a static site that classifies on the user's own device.
//! It holds the page (`index.html`, `app.js`, kept in the repository's `web/`), the ONNX
//! model, `model.json` (what the page needs to preprocess and label) and a `package.json`
//! that pins onnxruntime-web; `npm install` in the folder fetches it.

use std::path::Path;

use serde::Serialize;

use super::ExportInfo;

/// The onnxruntime-web release the page is written and tested against.
pub const ONNXRUNTIME_WEB: &str = "1.30.0";

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");

pub use crate::data::class_name;

/// What `app.js` reads from `model.json`.
#[derive(Serialize)]
struct PageModel<'a> {
    arch: &'a str,
    classes: &'a [String],
    class_names: Vec<&'a str>,
    input_width: usize,
    input_height: usize,
    pixel_scale: [f32; 3],
    pixel_offset: [f32; 3],
    shades_of_gray: Option<f32>,
    validation_balanced_accuracy: Option<&'a str>,
    note: &'a str,
}

/// Writes the site into `dir` (created if needed): page, script, model and its description.
pub fn write_site(dir: &Path, onnx: &[u8], info: &ExportInfo) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bacc = info
        .extra
        .iter()
        .find(|(k, _)| k == "validation_balanced_accuracy")
        .map(|(_, v)| v.as_str());
    let page = PageModel {
        arch: &info.arch,
        classes: &info.classes,
        class_names: info.classes.iter().map(|c| class_name(c)).collect(),
        input_width: info.width,
        input_height: info.height,
        pixel_scale: info.normalization.0,
        pixel_offset: info.normalization.1,
        shades_of_gray: info.shades_of_gray,
        validation_balanced_accuracy: bacc,
        note: "Probabilities include the model's correction for the training class balance.",
    };
    let package = format!(
        "{{\n  \"name\": \"dermclass-site\",\n  \"private\": true,\n  \
         \"dependencies\": {{ \"onnxruntime-web\": \"{ONNXRUNTIME_WEB}\" }}\n}}\n"
    );
    let files: [(&str, &[u8]); 5] = [
        ("index.html", INDEX_HTML.as_bytes()),
        ("app.js", APP_JS.as_bytes()),
        ("model.onnx", onnx),
        ("package.json", package.as_bytes()),
        ("model.json", &serde_json::to_vec_pretty(&page)?),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_site_pins_the_onnxruntime_web_the_repository_tests_with() {
        let repo = include_str!("../../web/package.json");
        let pinned = format!("\"onnxruntime-web\": \"{ONNXRUNTIME_WEB}\"");
        assert!(repo.contains(&pinned), "web/package.json: {repo}");
    }

    #[test]
    fn the_site_has_page_model_and_description() {
        let dir = tempfile::tempdir().unwrap();
        let info = ExportInfo {
            arch: "tiny_cnn:1.0".into(),
            classes: vec!["MEL".into(), "XYZ".into()],
            width: 64,
            height: 48,
            normalization: ([0.5; 3], [-1.0; 3]),
            shades_of_gray: Some(6.0),
            logit_offsets: Vec::new(),
            temperature: 1.0,
            extra: vec![("validation_balanced_accuracy".into(), "0.6100".into())],
        };
        write_site(dir.path(), b"onnx", &info).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("model.json")).unwrap()).unwrap();
        assert_eq!(json["class_names"][0], "Melanoma");
        assert_eq!(json["class_names"][1], "XYZ");
        assert_eq!(json["input_width"], 64);
        assert_eq!(json["shades_of_gray"], 6.0);
        assert_eq!(json["validation_balanced_accuracy"], "0.6100");
        assert_eq!(
            std::fs::read(dir.path().join("model.onnx")).unwrap(),
            b"onnx"
        );
        let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
        assert!(html.contains("never uploaded") && html.contains("app.js"));
    }
}
