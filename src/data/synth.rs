//! A synthetic ISIC-layout data set of lesion-like pictures whose class is learnable:
//! colour, border irregularity, texture and shape differ by class. Some lesions have 2-3
//! images (different rotation, position and scale of the same lesion).

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use image::RgbImage;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::ISIC_CLASSES;
use super::error::DataError;

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct SynthSummary {
    /// The data root (ISIC layout).
    pub root: PathBuf,
    /// Number of images.
    pub images: usize,
    /// Number of distinct lesions.
    pub lesions: usize,
    /// Images per class (official order).
    pub per_class: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Lesion {
    class: usize,
    colour: [f32; 3],
    skin: [f32; 3],
    radius: f32,
    aspect: f32,
    harmonics: Vec<(f32, f32, f32)>, // (k, amplitude, phase)
    tex_seed: u64,
}

#[derive(Debug, Clone, Copy)]
struct View {
    angle: f32,
    dx: f32,
    dy: f32,
    scale: f32,
    noise_seed: u64,
}

fn hash2(x: i64, y: i64, seed: u64) -> f32 {
    let mut h = seed
        ^ (x as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (y as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    h = (h ^ (h >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 29)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 32;
    (h & 0xffffff) as f32 / 16_777_216.0
}

/// Smooth value noise in [0, 1) at frequency `f` (cells per unit).
fn vnoise(x: f32, y: f32, f: f32, seed: u64) -> f32 {
    let (x, y) = (x * f, y * f);
    let (x0, y0) = (x.floor(), y.floor());
    let (tx, ty) = (x - x0, y - y0);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let (i, j) = (x0 as i64, y0 as i64);
    let a = hash2(i, j, seed);
    let b = hash2(i + 1, j, seed);
    let c = hash2(i, j + 1, seed);
    let d = hash2(i + 1, j + 1, seed);
    let top = a + (b - a) * sx;
    let bot = c + (d - c) * sx;
    top + (bot - top) * sy
}

fn mix3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn new_lesion(class: usize, rng: &mut ChaCha8Rng) -> Lesion {
    let j = |rng: &mut ChaCha8Rng, a: f32| rng.random_range(-a..a);
    // (colour, radius, aspect, irregularity, harmonics)
    let (base, radius, aspect, irr, nh): ([f32; 3], f32, f32, f32, usize) = match class {
        0 => ([60.0, 35.0, 30.0], 0.36, 1.2, 0.22, 6), // MEL: dark, large, irregular
        1 => ([150.0, 95.0, 60.0], 0.28, 1.05, 0.03, 2), // NV: brown, round, smooth
        2 => ([225.0, 160.0, 170.0], 0.27, 1.15, 0.10, 4), // BCC: pink, pearly, vessels
        3 => ([200.0, 85.0, 75.0], 0.30, 1.3, 0.16, 5), // AKIEC: red, scaly
        4 => ([185.0, 150.0, 95.0], 0.30, 1.6, 0.06, 3), // BKL: tan, oval, dotted
        5 => ([140.0, 95.0, 70.0], 0.22, 1.0, 0.04, 2), // DF: small ring, white centre
        _ => ([140.0, 25.0, 75.0], 0.26, 1.1, 0.05, 2), // VASC: red-purple lobules
    };
    let colour = [
        (base[0] + j(rng, 12.0)).clamp(0.0, 255.0),
        (base[1] + j(rng, 12.0)).clamp(0.0, 255.0),
        (base[2] + j(rng, 12.0)).clamp(0.0, 255.0),
    ];
    let skin = [
        228.0 + j(rng, 15.0),
        185.0 + j(rng, 15.0),
        160.0 + j(rng, 15.0),
    ];
    let harmonics = (0..nh)
        .map(|i| {
            let k = if class == 6 {
                4.0 + i as f32
            } else {
                (2 + 2 * i) as f32 // integer: continuous at θ = ±π
            };
            (
                k,
                irr * rng.random_range(0.5..1.0) / (1.0 + i as f32 * 0.3),
                rng.random_range(0.0..std::f32::consts::TAU),
            )
        })
        .collect();
    Lesion {
        class,
        colour,
        skin,
        radius: radius * rng.random_range(0.85..1.15),
        aspect: aspect * rng.random_range(0.9..1.1),
        harmonics,
        tex_seed: rng.random(),
    }
}

fn new_view(rng: &mut ChaCha8Rng) -> View {
    View {
        angle: rng.random_range(0.0..std::f32::consts::TAU),
        dx: rng.random_range(-0.08..0.08),
        dy: rng.random_range(-0.08..0.08),
        scale: rng.random_range(0.9..1.1),
        noise_seed: rng.random(),
    }
}

fn render(l: &Lesion, v: &View, width: u32, height: u32) -> RgbImage {
    let (w, h) = (width as f32, height as f32);
    let m = w.min(h);
    let (sa, ca) = v.angle.sin_cos();
    let mut img = RgbImage::new(width, height);
    for (px, py, p) in img.enumerate_pixels_mut() {
        // Normalised image coordinates (units of the shorter side), centred.
        let x = (px as f32 + 0.5 - w / 2.0) / m - v.dx;
        let y = (py as f32 + 0.5 - h / 2.0) / m - v.dy;
        // Lesion coordinates.
        let u = (ca * x + sa * y) / v.scale;
        let q = (-sa * x + ca * y) / v.scale;
        let (ue, qe) = (u, q * l.aspect);
        let r = (ue * ue + qe * qe).sqrt();
        let th = qe.atan2(ue);
        let mut border = l.radius;
        for &(k, a, ph) in &l.harmonics {
            border *= 1.0 + a * (k * th + ph).sin();
        }
        let border = border.max(l.radius * 0.3);
        // Skin with mild blotches and pixel noise.
        let sn = vnoise(x, y, 6.0, l.tex_seed ^ 7) - 0.5;
        let mut c = [
            l.skin[0] + sn * 20.0,
            l.skin[1] + sn * 20.0,
            l.skin[2] + sn * 16.0,
        ];
        let mut inside = 1.0 - smoothstep(border * 0.93, border * 1.05, r);
        if l.class == 6 {
            // VASC: lobules — modulate coverage with a few blobs.
            let lob = vnoise(u, q, 9.0, l.tex_seed);
            inside *= smoothstep(0.3, 0.45, lob);
        }
        if inside > 0.0 {
            let t1 = vnoise(u, q, 10.0, l.tex_seed);
            let t2 = vnoise(u, q, 35.0, l.tex_seed ^ 3);
            let rn = r / border.max(1e-3);
            let mut lc = l.colour;
            match l.class {
                0 => {
                    // MEL: multicolour — blue-grey veil and black blotches.
                    if t1 > 0.6 {
                        lc = mix3(lc, [95.0, 105.0, 140.0], ((t1 - 0.6) * 4.0).min(1.0));
                    }
                    if t2 > 0.75 {
                        lc = mix3(lc, [20.0, 15.0, 15.0], 0.8);
                    }
                }
                1 => {
                    // NV: uniform, slightly darker centre.
                    lc = mix3(lc, [110.0, 70.0, 45.0], (1.0 - rn).max(0.0) * 0.4);
                }
                2 => {
                    // BCC: thin red branching vessels.
                    let line = (u * 40.0 + 6.0 * t1).sin().abs();
                    if line < 0.12 {
                        lc = [190.0, 30.0, 40.0];
                    }
                }
                3 => {
                    // AKIEC: white scales over red.
                    if t2 > 0.6 {
                        lc = mix3(lc, [245.0, 240.0, 235.0], ((t2 - 0.6) * 3.0).min(0.9));
                    }
                }
                4 => {
                    // BKL: dark dots (comedo-like openings).
                    if t2 > 0.82 {
                        lc = [70.0, 50.0, 35.0];
                    }
                }
                5 => {
                    // DF: white scar-like centre.
                    lc = mix3(lc, [240.0, 230.0, 225.0], 1.0 - smoothstep(0.3, 0.5, rn));
                }
                _ => {
                    // VASC: darker lobule cores.
                    lc = mix3(lc, [80.0, 10.0, 40.0], smoothstep(0.5, 0.8, t1));
                }
            }
            c = mix3(c, lc, inside);
        }
        let pn = hash2(px as i64, py as i64, v.noise_seed) - 0.5;
        *p = image::Rgb([
            (c[0] + pn * 12.0).clamp(0.0, 255.0) as u8,
            (c[1] + pn * 12.0).clamp(0.0, 255.0) as u8,
            (c[2] + pn * 12.0).clamp(0.0, 255.0) as u8,
        ]);
    }
    img
}

/// Renders one synthetic image of `class` (for tests and demos).
pub fn render_example(class: usize, width: u32, height: u32, seed: u64) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let l = new_lesion(class.min(6), &mut rng);
    let v = new_view(&mut rng);
    render(&l, &v, width, height)
}

/// Writes a synthetic ISIC 2018 Task 3 training set under `out`:
/// `ISIC2018_Task3_Training_Input/ISIC_*.jpg`, the one-hot GroundTruth CSV and the
/// LesionGroupings CSV. `per_class` images for each of the 7 classes; about 30% of lesions
/// have 2-3 images. Deterministic for a given seed.
pub fn generate(
    out: &Path,
    per_class: usize,
    width: u32,
    height: u32,
    seed: u64,
) -> Result<SynthSummary, DataError> {
    if width < 8 || height < 8 {
        return Err(DataError::Config(
            "synth: image size must be at least 8x8".into(),
        ));
    }
    let input = out.join("ISIC2018_Task3_Training_Input");
    fs::create_dir_all(&input).map_err(|e| DataError::io(&input, e))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // (class, lesion index, view)
    let mut lesions = Vec::new();
    let mut items: Vec<(usize, usize, View)> = Vec::new();
    for class in 0..ISIC_CLASSES.len() {
        let mut left = per_class;
        while left > 0 {
            let r: f32 = rng.random();
            let n = if r < 0.7 {
                1
            } else if r < 0.9 {
                2
            } else {
                3
            }
            .min(left);
            let li = lesions.len();
            lesions.push(new_lesion(class, &mut rng));
            for _ in 0..n {
                items.push((class, li, new_view(&mut rng)));
            }
            left -= n;
        }
    }
    items.shuffle(&mut rng);
    let ids: Vec<String> = (0..items.len()).map(|i| format!("ISIC_{:07}", i)).collect();
    items
        .par_iter()
        .zip(ids.par_iter())
        .try_for_each(|((_, li, view), id)| {
            let img = render(&lesions[*li], view, width, height);
            let path = input.join(format!("{id}.jpg"));
            let f = fs::File::create(&path).map_err(|e| DataError::io(&path, e))?;
            let mut wtr = BufWriter::new(f);
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut wtr, 92);
            img.write_with_encoder(enc).map_err(|e| DataError::Decode {
                path: path.clone(),
                msg: format!("cannot encode: {e}"),
            })
        })?;
    let gt = out.join("ISIC2018_Task3_Training_GroundTruth.csv");
    let groups = out.join("ISIC2018_Task3_Training_LesionGroupings.csv");
    let cerr = |p: &Path| {
        let p = p.to_path_buf();
        move |e: csv::Error| DataError::Csv {
            path: p.clone(),
            msg: e.to_string(),
        }
    };
    let mut g = csv::Writer::from_path(&gt).map_err(cerr(&gt))?;
    let mut header = vec!["image"];
    header.extend(ISIC_CLASSES);
    g.write_record(&header).map_err(cerr(&gt))?;
    let mut l = csv::Writer::from_path(&groups).map_err(cerr(&groups))?;
    l.write_record(["image", "lesion_id", "diagnosis_confirm_type"])
        .map_err(cerr(&groups))?;
    let mut per = vec![0usize; ISIC_CLASSES.len()];
    for ((class, li, _), id) in items.iter().zip(&ids) {
        per[*class] += 1;
        let mut row = vec![id.clone()];
        for c in 0..ISIC_CLASSES.len() {
            row.push(if c == *class { "1.0" } else { "0.0" }.to_string());
        }
        g.write_record(&row).map_err(cerr(&gt))?;
        l.write_record([id.as_str(), &format!("SYN_{li:07}"), "synthetic"])
            .map_err(cerr(&groups))?;
    }
    g.flush().map_err(|e| DataError::io(&gt, e))?;
    l.flush().map_err(|e| DataError::io(&groups, e))?;
    Ok(SynthSummary {
        root: out.to_path_buf(),
        images: items.len(),
        lesions: lesions.len(),
        per_class: per,
    })
}
