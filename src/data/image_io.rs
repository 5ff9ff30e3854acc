//! Image decoding and resizing, shared by training and prediction.
//!
//! Resize policy: the whole image is resized to the target `W x H` (aspect ratio not
//! preserved, like Keras `target_size`), with a bilinear convolution filter
//! (`fast_image_resize`, which is antialiased when downscaling).

use std::path::Path;

use fast_image_resize::images::{Image as FirImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::error::DataError;

/// Decodes any supported image file (JPEG, PNG, TIFF, BMP; grey, grey+alpha, RGBA, CMYK,
/// 16-bit) to 8-bit RGB. Alpha is dropped. Errors name the file and the problem.
pub fn load_image_rgb(path: &Path) -> Result<RgbImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_image_rgb(&bytes, path)
}

/// Decodes image bytes (format guessed from content) to 8-bit RGB; `path` is for messages.
pub fn decode_image_rgb(bytes: &[u8], path: &Path) -> Result<RgbImage, DataError> {
    if bytes.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let format = image::guess_format(bytes).map_err(|_| DataError::Decode {
        path: path.to_path_buf(),
        msg: "not a recognised image format (unknown file signature)".into(),
    })?;
    if format == image::ImageFormat::Jpeg {
        // The JPEG decoder is lenient with truncated files (it fills in the missing data),
        // so require the end-of-image marker (trailing zero padding allowed).
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if end < 4 || bytes[end - 2..end] != [0xFF, 0xD9] {
            return Err(DataError::Decode {
                path: path.to_path_buf(),
                msg: "truncated JPEG (no end-of-image marker)".into(),
            });
        }
    }
    let img =
        image::load_from_memory_with_format(bytes, format).map_err(|e| DataError::Decode {
            path: path.to_path_buf(),
            msg: format!("{format:?}: {e}"),
        })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(DataError::Decode {
            path: path.to_path_buf(),
            msg: "image has zero width or height".into(),
        });
    }
    Ok(img.into_rgb8())
}

/// Resizes an RGB8 image to exactly `width x height` (bilinear, aspect not preserved).
/// Returns a copy when the size already matches.
pub fn resize_rgb(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    if img.width() == width && img.height() == height {
        return img.clone();
    }
    let mut out = vec![0u8; width as usize * height as usize * 3];
    resize_rgb_into(img, width, height, &mut out);
    RgbImage::from_raw(width, height, out).expect("buffer size matches")
}

/// Resizes into a caller-provided `width*height*3` buffer.
pub fn resize_rgb_into(img: &RgbImage, width: u32, height: u32, out: &mut [u8]) {
    assert_eq!(out.len(), width as usize * height as usize * 3);
    if img.width() == width && img.height() == height {
        out.copy_from_slice(img.as_raw());
        return;
    }
    // Both images are u8x3 (alignment 1), so these constructors cannot fail.
    let src = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
        .expect("valid source");
    let mut dst =
        FirImage::from_slice_u8(width, height, out, PixelType::U8x3).expect("valid destination");
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    RESIZER.with_borrow_mut(|r| r.resize(&src, &mut dst, &opts).expect("same pixel type"));
}

thread_local! {
    static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
}

/// Loads and resizes one image to the working size: what the loader does before
/// augmentation, and what `predict` must do to a new image.
pub fn load_resized(path: &Path, width: u32, height: u32) -> Result<RgbImage, DataError> {
    let img = load_image_rgb(path)?;
    Ok(resize_rgb(&img, width, height))
}

/// Full evaluation-time preprocessing of one image: decode, resize to `width x height`,
/// normalise, CHW f32 (length `3*height*width`). Identical to the loader with
/// `AugmentConfig::none()`.
pub fn preprocess_image(
    path: &Path,
    width: u32,
    height: u32,
    norm: super::Normalization,
) -> Result<Vec<f32>, DataError> {
    let img = load_resized(path, width, height)?;
    Ok(to_chw(&img, norm))
}

/// Converts an RGB8 image to normalised CHW f32.
pub fn to_chw(img: &RgbImage, norm: super::Normalization) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let plane = w * h;
    let mut out = vec![0f32; 3 * plane];
    let (scale, offset) = norm.affine();
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = px[c] as f32 * scale[c] + offset[c];
        }
    }
    out
}
