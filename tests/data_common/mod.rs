//! Helpers shared by the data tests: small data sets written to temporary folders.
#![allow(dead_code)]

use std::fs;
use std::path::Path;

use image::{Rgb, RgbImage};

/// Classes in official order.
pub const CLASSES: [&str; 7] = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];

/// A small distinct RGB image.
pub fn tiny_image(seed: u32, w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 11 + seed * 37) as u8,
            (y * 7 + seed * 13) as u8,
            ((x ^ y) + seed) as u8,
        ])
    })
}

/// Saves `img` as JPEG.
pub fn save_jpeg(img: &RgbImage, path: &Path) {
    img.save_with_format(path, image::ImageFormat::Jpeg)
        .unwrap();
}

/// Writes a minimal ISIC layout: `labels[i]` is the class of image `ISIC_000000i`,
/// `lesions[i]` its lesion id. Returns the ids.
pub fn write_isic(root: &Path, labels: &[usize], lesions: Option<&[&str]>) -> Vec<String> {
    let input = root.join("ISIC2018_Task3_Training_Input");
    fs::create_dir_all(&input).unwrap();
    let mut gt = String::from("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n");
    let mut groups = String::from("image,lesion_id,diagnosis_confirm_type\n");
    let mut ids = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        let id = format!("ISIC_{i:07}");
        save_jpeg(
            &tiny_image(i as u32, 12, 9),
            &input.join(format!("{id}.jpg")),
        );
        let row: Vec<&str> = (0..7).map(|c| if c == l { "1.0" } else { "0.0" }).collect();
        gt.push_str(&format!("{id},{}\n", row.join(",")));
        if let Some(les) = lesions {
            groups.push_str(&format!("{id},{},histo\n", les[i]));
        }
        ids.push(id);
    }
    fs::write(root.join("ISIC2018_Task3_Training_GroundTruth.csv"), gt).unwrap();
    if lesions.is_some() {
        fs::write(
            root.join("ISIC2018_Task3_Training_LesionGroupings.csv"),
            groups,
        )
        .unwrap();
    }
    ids
}

/// Labels with `n` images of each of the 7 classes.
pub fn labels_each(n: usize) -> Vec<usize> {
    (0..7).flat_map(|c| std::iter::repeat_n(c, n)).collect()
}
