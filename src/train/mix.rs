//! Mixup (Zhang et al., ICLR 2018) and CutMix (Yun et al., ICCV 2019) on training batches:
//! every image is blended with (mixup) or gets a rectangle pasted from (cutmix) its partner
//! in the batch, and its target becomes the same mixture of the two labels. Both fight the
//! memorising of the few images of rare classes that a balanced sampler repeats.
//!
//! As in timm's `Mixup`, one mixing weight serves the whole batch, image `i` is paired with
//! image `n - 1 - i` (the loader has already shuffled), and with both kinds on each batch
//! takes one of them with even odds.

use rand::Rng;

/// A training image's target: `lam` of class `a` and `1 - lam` of class `b`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MixedLabel {
    pub a: usize,
    pub b: usize,
    pub lam: f32,
}

impl MixedLabel {
    /// The target of an image that was not mixed.
    pub fn pure(label: usize) -> Self {
        Self {
            a: label,
            b: label,
            lam: 1.0,
        }
    }
}

/// The targets of a batch that was not mixed.
pub fn unmixed(labels: &[usize]) -> Vec<MixedLabel> {
    labels.iter().map(|&l| MixedLabel::pure(l)).collect()
}

/// Batch mixing settings: Beta concentrations (0 turns a kind off) and the chance that a
/// batch is mixed at all.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchMix {
    pub mixup_alpha: f32,
    pub cutmix_alpha: f32,
    pub prob: f32,
}

impl std::fmt::Display for BatchMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mixup {} / CutMix {} (a batch mixed with probability {})",
            self.mixup_alpha, self.cutmix_alpha, self.prob
        )
    }
}

/// Which mixing a batch got.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Mixup,
    Cutmix,
}

impl BatchMix {
    /// Mixes the NCHW `images` of a batch in place and returns each image's target.
    pub fn apply(
        &self,
        images: &mut [f32],
        shape: [usize; 4],
        labels: &[usize],
        rng: &mut impl Rng,
    ) -> Vec<MixedLabel> {
        let kind = match (self.mixup_alpha > 0.0, self.cutmix_alpha > 0.0) {
            (false, false) => return unmixed(labels),
            (true, false) => Kind::Mixup,
            (false, true) => Kind::Cutmix,
            (true, true) if rng.random::<bool>() => Kind::Cutmix,
            (true, true) => Kind::Mixup,
        };
        if rng.random::<f32>() >= self.prob {
            return unmixed(labels);
        }
        let lam = match kind {
            Kind::Mixup => {
                let lam = sample_symmetric_beta(self.mixup_alpha as f64, rng) as f32;
                blend_with_reversed(images, shape, lam);
                lam
            }
            Kind::Cutmix => {
                let lam = sample_symmetric_beta(self.cutmix_alpha as f64, rng);
                let rect = cut_rectangle(shape[2], shape[3], lam, rng);
                paste_from_reversed(images, shape, rect);
                1.0 - rect.area() as f32 / (shape[2] * shape[3]) as f32
            }
        };
        let n = labels.len();
        (0..n)
            .map(|i| MixedLabel {
                a: labels[i],
                b: labels[n - 1 - i],
                lam,
            })
            .collect()
    }
}

/// Images `i` and `n - 1 - i` of the batch, for `i < n / 2`, both writable.
fn partners(images: &mut [f32], per_image: usize, i: usize) -> (&mut [f32], &mut [f32]) {
    let n = images.len() / per_image;
    let (front, back) = images.split_at_mut((n - 1 - i) * per_image);
    (
        &mut front[i * per_image..(i + 1) * per_image],
        &mut back[..per_image],
    )
}

/// `lam * x_i + (1 - lam) * x_{n-1-i}` for every image `i`, pair by pair in place (the
/// middle image of an odd batch is its own partner and stays).
fn blend_with_reversed(images: &mut [f32], shape: [usize; 4], lam: f32) {
    let per_image = shape[1] * shape[2] * shape[3];
    for i in 0..shape[0] / 2 {
        let (x, y) = partners(images, per_image, i);
        for (a, b) in x.iter_mut().zip(y.iter_mut()) {
            (*a, *b) = (lam * *a + (1.0 - lam) * *b, lam * *b + (1.0 - lam) * *a);
        }
    }
}

/// Rows `y0..y1` and columns `x0..x1` of an image.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rect {
    y0: usize,
    y1: usize,
    x0: usize,
    x1: usize,
}

impl Rect {
    fn area(&self) -> usize {
        (self.y1 - self.y0) * (self.x1 - self.x0)
    }
}

/// CutMix's box: sides `sqrt(1 - lam)` of the image's, centred uniformly, clipped to the
/// image (so the pasted area, which sets the label weight, can be smaller).
fn cut_rectangle(height: usize, width: usize, lam: f64, rng: &mut impl Rng) -> Rect {
    let ratio = (1.0 - lam).max(0.0).sqrt();
    let (cut_h, cut_w) = (
        (height as f64 * ratio) as usize,
        (width as f64 * ratio) as usize,
    );
    let (cy, cx) = (rng.random_range(0..height), rng.random_range(0..width));
    Rect {
        y0: cy.saturating_sub(cut_h / 2),
        y1: (cy + cut_h / 2).min(height),
        x0: cx.saturating_sub(cut_w / 2),
        x1: (cx + cut_w / 2).min(width),
    }
}

/// Copies `rect` of image `n - 1 - i` into image `i`, every channel, for every image: a
/// swap of the two images' boxes, pair by pair.
fn paste_from_reversed(images: &mut [f32], shape: [usize; 4], rect: Rect) {
    let [n, channels, height, width] = shape;
    let plane = height * width;
    for i in 0..n / 2 {
        let (x, y) = partners(images, channels * plane, i);
        for c in 0..channels {
            for row in rect.y0..rect.y1 {
                let start = c * plane + row * width;
                let span = start + rect.x0..start + rect.x1;
                x[span.clone()].swap_with_slice(&mut y[span]);
            }
        }
    }
}

/// A draw from Beta(alpha, alpha), as `G1 / (G1 + G2)` with `G1, G2 ~ Gamma(alpha, 1)`.
fn sample_symmetric_beta(alpha: f64, rng: &mut impl Rng) -> f64 {
    let (g1, g2) = (sample_gamma(alpha, rng), sample_gamma(alpha, rng));
    if g1 + g2 > 0.0 { g1 / (g1 + g2) } else { 0.5 }
}

/// A draw from Gamma(shape, 1) by Marsaglia and Tsang's method (2000); shapes below 1 use
/// `Gamma(shape + 1) * U^(1 / shape)`.
fn sample_gamma(shape: f64, rng: &mut impl Rng) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        return sample_gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = standard_normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A standard normal draw (Box-Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn mixing(mixup_alpha: f32, cutmix_alpha: f32, prob: f32) -> BatchMix {
        BatchMix {
            mixup_alpha,
            cutmix_alpha,
            prob,
        }
    }

    /// A batch of `n` constant images: image `i` holds `i` everywhere.
    fn constant_batch(n: usize, side: usize) -> (Vec<f32>, [usize; 4]) {
        let shape = [n, 3, side, side];
        let per_image = 3 * side * side;
        let images = (0..n * per_image).map(|k| (k / per_image) as f32).collect();
        (images, shape)
    }

    #[test]
    fn beta_draws_have_the_distributions_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for alpha in [0.2, 1.0, 2.0] {
            let draws: Vec<f64> = (0..20_000)
                .map(|_| sample_symmetric_beta(alpha, &mut rng))
                .collect();
            assert!(draws.iter().all(|d| (0.0..=1.0).contains(d)));
            let mean = draws.iter().sum::<f64>() / draws.len() as f64;
            let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
            let expected_var = 1.0 / (4.0 * (2.0 * alpha + 1.0));
            assert!((mean - 0.5).abs() < 0.01, "alpha {alpha}: mean {mean}");
            assert!(
                (var - expected_var).abs() < 0.05 * expected_var,
                "alpha {alpha}: variance {var}, expected {expected_var}"
            );
        }
    }

    #[test]
    fn mixup_blends_each_image_with_its_partner_by_the_label_weight() {
        let (mut images, shape) = constant_batch(4, 5);
        let labels = [0, 1, 2, 3];
        let mix = mixing(1.0, 0.0, 1.0);
        let targets = mix.apply(
            &mut images,
            shape,
            &labels,
            &mut ChaCha8Rng::seed_from_u64(1),
        );
        let per_image = 3 * 5 * 5;
        for (i, t) in targets.iter().enumerate() {
            assert_eq!((t.a, t.b), (labels[i], labels[3 - i]));
            // Image i held i, its partner 3 - i.
            let expected = t.lam * i as f32 + (1.0 - t.lam) * (3 - i) as f32;
            let image = &images[i * per_image..(i + 1) * per_image];
            assert!(
                image.iter().all(|v| (v - expected).abs() < 1e-5),
                "image {i}"
            );
        }
        assert!(targets[0].lam > 0.0 && targets[0].lam < 1.0);
    }

    #[test]
    fn cutmix_label_weight_is_the_share_of_pixels_kept() {
        let side = 16;
        let per_image = 3 * side * side;
        for seed in 0..20 {
            let (mut images, shape) = constant_batch(3, side);
            let mix = mixing(0.0, 1.0, 1.0);
            let targets = mix.apply(
                &mut images,
                shape,
                &[5, 6, 4],
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            // Image 0 (all 0) gets a box of image 2 (all 2); the middle image pairs with itself.
            let kept = images[..per_image].iter().filter(|&&v| v == 0.0).count();
            let pasted = images[..per_image].iter().filter(|&&v| v == 2.0).count();
            assert_eq!(kept + pasted, per_image);
            let share = kept as f32 / per_image as f32;
            assert!((targets[0].lam - share).abs() < 1e-6, "seed {seed}");
            assert_eq!((targets[0].a, targets[0].b), (5, 4));
            assert_eq!((targets[1].a, targets[1].b), (6, 6));
            assert!(images[per_image..2 * per_image].iter().all(|&v| v == 1.0));
        }
    }

    #[test]
    fn no_mixing_when_off_or_not_drawn() {
        let (mut images, shape) = constant_batch(2, 4);
        let before = images.clone();
        let off = mixing(0.0, 0.0, 1.0);
        let never = mixing(1.0, 1.0, 0.0);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        assert_eq!(
            never.to_string(),
            "mixup 1 / CutMix 1 (a batch mixed with probability 0)"
        );
        for mix in [off, never] {
            let targets = mix.apply(&mut images, shape, &[1, 0], &mut rng);
            assert_eq!(targets, vec![MixedLabel::pure(1), MixedLabel::pure(0)]);
            assert_eq!(images, before);
        }
    }

    #[test]
    fn both_kinds_on_take_each_about_half_the_time() {
        let mix = mixing(1.0, 1.0, 1.0);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut blended = 0;
        for _ in 0..400 {
            let (mut images, shape) = constant_batch(2, 8);
            mix.apply(&mut images, shape, &[0, 1], &mut rng);
            // Mixup leaves no pixel of image 0 at exactly 0 or 1; cutmix only those.
            if images[..3 * 64].iter().any(|&v| v != 0.0 && v != 1.0) {
                blended += 1;
            }
        }
        assert!(
            (150..250).contains(&blended),
            "{blended} of 400 batches blended"
        );
    }
}
