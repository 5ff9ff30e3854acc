//! The data pipeline: sources (ISIC 2018 Task 3, HAM10000, one folder per class), checks,
//! lesion-grouped stratified splits, Keras-style augmentation as one affine warp, a
//! streaming multi-threaded loader with an optional memory-mapped preprocessed cache,
//! class weights and samplers, a synthetic data generator and the official data fetcher.

pub mod augment;
pub mod bench;
pub mod cache;
pub mod check;
pub mod error;
pub mod fetch;
pub mod image_io;
pub mod loader;
pub mod prepare;
pub mod screen;
pub mod source;
pub mod split;
pub mod synth;
pub mod weights;

pub use augment::{AugmentConfig, AugmentParams, FillMode, augment_image};
pub use cache::PreprocessedCache;
pub use check::{CheckReport, check_images};
pub use error::DataError;
pub use image_io::{
    decode_image_rgb, load_image_rgb, load_resized, preprocess_image, resize_rgb, to_chw,
};
pub use loader::{Batch, EpochIter, Loader, LoaderConfig, Sampler};
pub use source::{Dataset, OpenOptions, Sample, Skipped, SourceFormat};
pub use split::{
    Split, kfold_assign, read_fold_csv, read_split_csv, split_train_val, write_folds_csv,
    write_split_csv,
};
pub use weights::{ClassWeighting, class_weights};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The seven ISIC 2018 Task 3 classes, in the official column order.
pub const ISIC_CLASSES: [&str; 7] = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];

/// ImageNet channel means (RGB, 0..1).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB, 0..1).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How pixel values (0..=255) become network inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// `x / 255` (Keras `rescale=1/255`).
    #[default]
    Keras,
    /// `(x / 255 - mean) / std` with the ImageNet statistics.
    #[value(name = "imagenet")]
    ImageNet,
}

impl Normalization {
    /// `(scale, offset)` per channel such that `normalised = x * scale + offset`.
    pub fn affine(self) -> ([f32; 3], [f32; 3]) {
        match self {
            Normalization::Keras => ([1.0 / 255.0; 3], [0.0; 3]),
            Normalization::ImageNet => {
                let mut s = [0.0; 3];
                let mut o = [0.0; 3];
                for c in 0..3 {
                    s[c] = 1.0 / (255.0 * IMAGENET_STD[c]);
                    o[c] = -IMAGENET_MEAN[c] / IMAGENET_STD[c];
                }
                (s, o)
            }
        }
    }
}

impl std::str::FromStr for Normalization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "keras" | "rescale" | "unit" => Ok(Normalization::Keras),
            "imagenet" => Ok(Normalization::ImageNet),
            o => Err(format!("unknown normalisation `{o}` (keras or imagenet)")),
        }
    }
}

/// The full name of an ISIC 2018 Task 3 class code (the code itself otherwise).
pub fn class_name(code: &str) -> &str {
    match code {
        "MEL" => "Melanoma",
        "NV" => "Melanocytic nevus",
        "BCC" => "Basal cell carcinoma",
        "AKIEC" => "Actinic keratosis / intraepithelial carcinoma",
        "BKL" => "Benign keratosis",
        "DF" => "Dermatofibroma",
        "VASC" => "Vascular lesion",
        other => other,
    }
}

/// The position of class `code` (case-insensitive) in `classes`; the error lists them.
pub fn class_index(classes: &[String], code: &str) -> Result<usize, String> {
    classes
        .iter()
        .position(|c| c.eq_ignore_ascii_case(code))
        .ok_or_else(|| {
            format!(
                "unknown class `{code}`; the model's classes are {}",
                classes.join(", ")
            )
        })
}

#[cfg(test)]
mod normalization_tests {
    use super::*;

    #[test]
    fn imagenet_normalisation_of_a_hand_computed_pixel() {
        // Pixel (255, 0, 128): red (1 - 0.485) / 0.229, green (0 - 0.456) / 0.224,
        // blue (128/255 - 0.406) / 0.225.
        let (scale, offset) = Normalization::ImageNet.affine();
        let pixel = [255.0f32, 0.0, 128.0];
        let want = [
            (1.0 - 0.485) / 0.229,
            (0.0 - 0.456) / 0.224,
            (128.0 / 255.0 - 0.406) / 0.225,
        ];
        for c in 0..3 {
            let got = pixel[c] * scale[c] + offset[c];
            assert!(
                (got - want[c]).abs() < 1e-5,
                "channel {c}: {got} vs {}",
                want[c]
            );
        }
        let (scale, offset) = Normalization::Keras.affine();
        assert_eq!(255.0 * scale[0] + offset[0], 1.0);
    }

    #[test]
    fn images_become_rgb_planes_in_channel_order() {
        // A 2x1 image: pixel 0 = (255, 0, 128), pixel 1 = (0, 51, 255).
        let img = image::RgbImage::from_raw(2, 1, vec![255, 0, 128, 0, 51, 255]).unwrap();
        let chw = to_chw(&img, Normalization::Keras);
        let want = [1.0, 0.0, 0.0, 0.2, 128.0 / 255.0, 1.0];
        for (i, (g, w)) in chw.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-6, "value {i}: {g} vs {w}");
        }
    }
}
