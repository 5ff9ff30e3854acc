//! Grad-CAM points at the evidence: a model trained here on images whose class is decided
//! only by the colour of a patch in the top-left corner gets maps whose mass lies mostly in
//! that corner, for both classes and for images it never saw.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use dermclass::explain::grad_cam;
use dermclass::model::ModelSpec;

const SIDE: usize = 64;
const PATCH: usize = 16;

/// A noisy grey image with a red (class 0) or blue (class 1) patch in the top-left corner.
fn corner_image(class: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let plane = SIDE * SIDE;
    let mut x = vec![0f32; 3 * plane];
    for i in 0..plane {
        let grey = rng.random_range(-0.6f32..0.6);
        for c in 0..3 {
            x[c * plane + i] = grey + rng.random_range(-0.2f32..0.2);
        }
    }
    let hot = if class == 0 { 0 } else { 2 };
    for y in 0..PATCH {
        for col in 0..PATCH {
            for c in 0..3 {
                x[c * plane + y * SIDE + col] = if c == hot { 1.5 } else { -1.0 };
            }
        }
    }
    x
}

fn batch(labels: &[usize], rng: &mut ChaCha8Rng, device: &Device) -> Tensor<4> {
    let data: Vec<f32> = labels.iter().flat_map(|&c| corner_image(c, rng)).collect();
    Tensor::from_data(TensorData::new(data, [labels.len(), 3, SIDE, SIDE]), device)
}

#[test]
fn grad_cam_of_a_corner_patch_classifier_lies_in_that_corner() {
    let device = Device::flex();
    let train_device = device.clone().autodiff();
    let mut model = ModelSpec::parse("tiny_cnn:0.5", 2)
        .unwrap()
        .build(&train_device)
        .unwrap();
    let mut optimizer = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let labels: Vec<usize> = (0..16).map(|i| i % 2).collect();
    for _ in 0..60 {
        let x = batch(&labels, &mut rng, &train_device);
        let targets = Tensor::<1, Int>::from_data(
            TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [16]),
            &train_device,
        );
        let loss = loss_fn.forward(model.forward(x), targets);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(3e-3, model, grads);
    }
    let model = model.valid();
    let mut correct = 0;
    let mut corner_mass = Vec::new();
    for i in 0..8 {
        let class = i % 2;
        let x = batch(&[class], &mut rng, &device);
        let logits: Vec<f32> = model
            .forward(x.clone())
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        correct += usize::from((logits[1] > logits[0]) == (class == 1));
        let map = grad_cam(&model, x, class);
        corner_mass.push(map.mass_in(0.0, 0.0, 0.5, 0.5));
    }
    assert!(
        correct >= 7,
        "the model learnt the patch: {correct}/8 right"
    );
    let mean = corner_mass.iter().sum::<f32>() / corner_mass.len() as f32;
    // A map spread evenly would put a quarter of its mass in the corner quadrant.
    assert!(
        mean > 0.6,
        "mean share of the map in the patch's quadrant {mean:.2} ({corner_mass:?})"
    );
}
