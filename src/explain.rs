//! Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies.
//!
//! The map weighs each channel of the last convolutional stage by the mean gradient of the
//! class's logit with respect to it, sums the weighted channels and keeps the positive part.
//! The gradient comes from burn's autodiff over the head only: the backbone runs as in
//! inference (fast path included), and its output becomes the leaf that gradients reach.

use burn::prelude::*;
use burn::tensor::activation::relu;
use image::{Rgb, RgbImage};

use crate::model::Classifier;

/// A class activation map at the feature map's resolution, scaled to [0, 1] (all zeros when
/// no region speaks for the class).
#[derive(Clone, Debug, PartialEq)]
pub struct HeatMap {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Row-major values in [0, 1].
    pub values: Vec<f32>,
}

impl HeatMap {
    /// The value at fractional position (`x`, `y`) in [0, 1]², bilinear between cell
    /// centres (edges clamp), as image resizers sample.
    pub fn sample(&self, x: f32, y: f32) -> f32 {
        let fx = (x * self.width as f32 - 0.5).clamp(0.0, (self.width - 1) as f32);
        let fy = (y * self.height as f32 - 0.5).clamp(0.0, (self.height - 1) as f32);
        let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.width - 1), (y0 + 1).min(self.height - 1));
        let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
        let at = |x: usize, y: usize| self.values[y * self.width + x];
        let top = at(x0, y0) * (1.0 - tx) + at(x1, y0) * tx;
        let bottom = at(x0, y1) * (1.0 - tx) + at(x1, y1) * tx;
        top * (1.0 - ty) + bottom * ty
    }

    /// Share of the map's total mass inside the fractional rectangle `[x0, x1) x [y0, y1)`
    /// (cells counted by their centres); 0 for an all-zero map.
    pub fn mass_in(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> f32 {
        let total: f32 = self.values.iter().sum();
        if total <= 0.0 {
            return 0.0;
        }
        let mut inside = 0.0;
        for row in 0..self.height {
            for col in 0..self.width {
                let cx = (col as f32 + 0.5) / self.width as f32;
                let cy = (row as f32 + 0.5) / self.height as f32;
                if (x0..x1).contains(&cx) && (y0..y1).contains(&cy) {
                    inside += self.values[row * self.width + col];
                }
            }
        }
        inside / total
    }
}

/// Grad-CAM of `class` for a one-image `[1, 3, h, w]` input. `model` should be in inference
/// mode (`model.valid()`) on a plain device.
pub fn grad_cam(model: &Classifier, input: Tensor<4>, class: usize) -> HeatMap {
    let features = model.features(input).without_autodiff();
    let [_, _, height, width] = features.dims();
    let leaf = features.clone().autodiff().require_grad();
    let logits = model.head().forward(leaf.clone());
    let classes = logits.dims()[1];
    assert!(class < classes, "class {class} of {classes}");
    let score = logits.slice([0..1, class..class + 1]).sum();
    let grads = score.backward();
    let grad = leaf
        .grad(&grads)
        .expect("the feature map is a leaf that requires its gradient");
    let weights = grad.mean_dim(3).mean_dim(2);
    let cam = relu((features * weights).sum_dim(1));
    let values = cam
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 map");
    let peak = values.iter().copied().fold(0.0f32, f32::max);
    let scale = if peak > 0.0 { 1.0 / peak } else { 0.0 };
    HeatMap {
        width,
        height,
        values: values.into_iter().map(|v| v * scale).collect(),
    }
}

/// The "jet" colour scale from blue (0) through cyan, yellow to red (1), as Grad-CAM
/// figures draw it.
pub fn jet(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let channel = |centre: f32| (1.5 - (4.0 * v - centre).abs()).clamp(0.0, 1.0);
    [channel(3.0), channel(2.0), channel(1.0)].map(|c| (c * 255.0).round() as u8)
}

/// `image` with `map` (stretched over it, bilinear) laid over in the jet scale; `opacity`
/// in [0, 1] is the map's weight where it is 1, scaled down with the map so that cold
/// regions stay readable.
pub fn overlay(image: &RgbImage, map: &HeatMap, opacity: f32) -> RgbImage {
    let (w, h) = image.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let v = map.sample((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32);
        let colour = jet(v);
        let alpha = opacity * (0.35 + 0.65 * v);
        let base = image.get_pixel(x, y).0;
        Rgb(std::array::from_fn(|c| {
            (base[c] as f32 * (1.0 - alpha) + colour[c] as f32 * alpha).round() as u8
        }))
    })
}

/// PNG bytes of an RGB image.
pub fn png_bytes(image: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encoding a PNG in memory cannot fail");
    out.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_runs_from_blue_to_red() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
    }

    #[test]
    fn sampling_is_bilinear_between_cell_centres() {
        let map = HeatMap {
            width: 2,
            height: 1,
            values: vec![0.0, 1.0],
        };
        assert_eq!(map.sample(0.25, 0.5), 0.0);
        assert_eq!(map.sample(0.75, 0.5), 1.0);
        assert!((map.sample(0.5, 0.5) - 0.5).abs() < 1e-6);
        assert_eq!(map.sample(0.0, 0.0), 0.0, "edges clamp");
    }

    #[test]
    fn mass_in_counts_cells_by_their_centres() {
        let map = HeatMap {
            width: 2,
            height: 2,
            values: vec![3.0, 1.0, 0.0, 0.0],
        };
        assert!((map.mass_in(0.0, 0.0, 0.5, 0.5) - 0.75).abs() < 1e-6);
        assert!((map.mass_in(0.0, 0.0, 1.0, 0.5) - 1.0).abs() < 1e-6);
    }

    /// With a global-average-pool and linear head, the class score's gradient with respect
    /// to every cell of channel k is `W[k, class] / (h w)`, so Grad-CAM is the class
    /// activation map `relu(sum_k W[k, class] A_k)` up to scale: compare with it computed
    /// by hand from the features and the head's weights.
    #[test]
    fn grad_cam_equals_the_class_activation_map_of_a_pooled_linear_head() {
        let device = Device::flex();
        let model = crate::model::tests::built("tiny_cnn:0.5", 7, &device).valid();
        let input =
            Tensor::<4>::random([1, 3, 64, 64], burn::tensor::Distribution::Default, &device);
        let features: Vec<f32> = model
            .features(input.clone())
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        let weight: Vec<f32> = crate::export::values(model.head().linear_weight());
        let (channels, cells, classes) = (64, 16, 7);
        let mut lit = 0;
        for class in 0..classes {
            let mut cam: Vec<f32> = (0..cells)
                .map(|i| {
                    let s: f32 = (0..channels)
                        .map(|k| weight[k * classes + class] * features[k * cells + i])
                        .sum();
                    s.max(0.0)
                })
                .collect();
            let peak = cam.iter().copied().fold(0.0, f32::max);
            if peak > 0.0 {
                lit += 1;
                cam.iter_mut().for_each(|v| *v /= peak);
            }
            let map = grad_cam(&model, input.clone(), class);
            assert_eq!((map.width, map.height), (4, 4));
            assert_eq!(map.values.len(), cam.len());
            for (got, want) in map.values.iter().zip(&cam) {
                assert!((got - want).abs() < 1e-4, "class {class}: {got} vs {want}");
            }
        }
        assert!(lit >= 2, "only {lit} classes had a positive map");
    }

    #[test]
    fn every_family_gives_a_map_of_its_last_stage() {
        let device = Device::flex();
        for family in crate::model::FAMILIES {
            let name = family.examples()[0];
            let model = crate::model::tests::built(name, 7, &device).valid();
            let input =
                Tensor::<4>::random([1, 3, 64, 64], burn::tensor::Distribution::Default, &device);
            let [_, _, h, w] = model.features(input.clone()).dims();
            let map = grad_cam(&model, input, 3);
            assert_eq!((map.width, map.height), (w, h), "{name}");
            assert!(map.values.iter().all(|v| (0.0..=1.0).contains(v)), "{name}");
        }
    }

    #[test]
    fn the_overlay_keeps_the_image_size_and_reddens_the_hot_side() {
        let image = RgbImage::from_pixel(40, 20, Rgb([100, 100, 100]));
        let map = HeatMap {
            width: 2,
            height: 1,
            values: vec![0.0, 1.0],
        };
        let out = overlay(&image, &map, 0.5);
        assert_eq!(out.dimensions(), (40, 20));
        let (cold, hot) = (out.get_pixel(1, 10).0, out.get_pixel(38, 10).0);
        assert!(hot[0] > cold[0] && cold[2] > hot[2], "{cold:?} {hot:?}");
        let png = png_bytes(&out);
        assert_eq!(&png[1..4], b"PNG");
    }
}
