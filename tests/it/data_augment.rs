//! Augmentation warp tests.

use dermclass::data::{AugmentConfig, AugmentParams, FillMode, augment_image};
use image::{Rgb, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 7 + y * 3) as u8,
            ((x * 13) ^ (y * 29)) as u8,
            ((x * y) % 251) as u8,
        ])
    })
}

#[test]
fn identity_parameters_reproduce_input_exactly() {
    for (w, h) in [(1, 1), (17, 9), (32, 32), (224, 150)] {
        let img = pattern(w, h);
        let out = augment_image(&img, &AugmentParams::identity());
        assert_eq!(out, img, "{w}x{h}");
        // Going through the general warp path (fill mode differs, no fast path taken
        // because a zero-shift with constant fill is still geometric identity): also zoom
        // exactly 1 via a config with all ranges 0.
        let p = AugmentConfig::none().sample(&mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(augment_image(&img, &p), img);
    }
}

#[test]
fn identity_matrix_is_identity() {
    let m = AugmentParams::identity().matrix(31, 17);
    assert_eq!(m, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
}

#[test]
fn two_horizontal_flips_are_identity() {
    let img = pattern(23, 11);
    let p = AugmentParams {
        flip_h: true,
        ..AugmentParams::identity()
    };
    let once = augment_image(&img, &p);
    assert_ne!(once, img);
    assert_eq!(once, image::imageops::flip_horizontal(&img));
    assert_eq!(augment_image(&once, &p), img);
    let v = AugmentParams {
        flip_v: true,
        ..AugmentParams::identity()
    };
    assert_eq!(
        augment_image(&img, &v),
        image::imageops::flip_vertical(&img)
    );
}

/// An exact image rotation of `image::imageops`.
type Turn = fn(&RgbImage) -> RgbImage;

#[test]
fn ninety_degree_rotation_of_square_equals_pixel_rotation() {
    for n in [8u32, 15, 64] {
        let img = pattern(n, n);
        // Positive angles turn the content counter-clockwise on screen.
        let turns: [(f32, Turn); 3] = [
            (90.0, image::imageops::rotate270),
            (-90.0, image::imageops::rotate90),
            (180.0, image::imageops::rotate180),
        ];
        for (degrees, turned) in turns {
            let p = AugmentParams {
                rotation_deg: degrees,
                ..AugmentParams::identity()
            };
            assert_eq!(
                augment_image(&img, &p),
                turned(&img),
                "n={n}, {degrees} deg"
            );
        }
    }
}

#[test]
fn integer_shift_moves_pixels_and_nearest_fill_replicates_edge() {
    let (w, h) = (20u32, 10u32);
    let img = pattern(w, h);
    // shift_x = 0.25 of 20 px = 5 px: output(x) samples input(x + 5).
    let p = AugmentParams {
        shift_x: 0.25,
        ..AugmentParams::identity()
    };
    let out = augment_image(&img, &p);
    for y in 0..h {
        for x in 0..w {
            let sx = (x + 5).min(w - 1);
            assert_eq!(out.get_pixel(x, y), img.get_pixel(sx, y), "({x},{y})");
        }
    }
    // Vertical shift the other way: top rows replicate row 0.
    let p = AugmentParams {
        shift_y: -0.3,
        ..AugmentParams::identity()
    };
    let out = augment_image(&img, &p);
    for y in 0..h {
        for x in 0..w {
            let sy = (y as i64 - 3).max(0) as u32;
            assert_eq!(out.get_pixel(x, y), img.get_pixel(x, sy), "({x},{y})");
        }
    }
}

#[test]
fn nearest_fill_on_zoom_out_replicates_edges() {
    // Zoom out by 2 around the centre: the border of the output lies outside the source and
    // must copy the nearest edge pixel. Use an image that is constant along each edge.
    let n = 21u32;
    let img = RgbImage::from_fn(n, n, |x, y| {
        if x == 0 || y == 0 || x == n - 1 || y == n - 1 {
            Rgb([200, 10, 30])
        } else {
            Rgb([(x * 9) as u8, (y * 9) as u8, 77])
        }
    });
    let p = AugmentParams {
        zoom_x: 2.0,
        zoom_y: 2.0,
        ..AugmentParams::identity()
    };
    let out = augment_image(&img, &p);
    for y in 0..n {
        for x in 0..n {
            let far = (x as i32 - 10).abs() > 5 || (y as i32 - 10).abs() > 5;
            if far {
                assert_eq!(*out.get_pixel(x, y), Rgb([200, 10, 30]), "({x},{y})");
            }
        }
    }
    // Centre pixel is preserved.
    assert_eq!(out.get_pixel(10, 10), img.get_pixel(10, 10));
    // Constant fill puts the constant outside instead.
    let c = AugmentParams {
        fill_mode: FillMode::Constant(0),
        ..p
    };
    let out = augment_image(&img, &c);
    assert_eq!(*out.get_pixel(0, 0), Rgb([0, 0, 0]));
}

#[test]
fn reflect_fill_mirrors() {
    let img = pattern(10, 4);
    let p = AugmentParams {
        shift_x: 0.3,
        fill_mode: FillMode::Reflect,
        ..AugmentParams::identity()
    };
    let out = augment_image(&img, &p);
    // x = 9 samples 12 -> mirrored to 7 (…8 9 | 9 8 7).
    assert_eq!(out.get_pixel(9, 0), img.get_pixel(7, 0));
}

#[test]
fn bilinear_half_pixel_shift_averages_neighbours() {
    let img = RgbImage::from_fn(4, 1, |x, _| Rgb([(x * 60) as u8, 0, 0]));
    let p = AugmentParams {
        shift_x: 0.125, // half a pixel of a 4-px image
        ..AugmentParams::identity()
    };
    let out = augment_image(&img, &p);
    assert_eq!(out.get_pixel(0, 0)[0], 30);
    assert_eq!(out.get_pixel(1, 0)[0], 90);
    assert_eq!(out.get_pixel(2, 0)[0], 150);
    // 3.5 lies past the last pixel: "nearest" replicates it.
    assert_eq!(out.get_pixel(3, 0)[0], 180);
}

#[test]
fn sampled_parameters_stay_in_range_and_are_reproducible() {
    let cfg = AugmentConfig {
        vertical_flip: true,
        brightness_range: 0.1,
        contrast_range: 0.2,
        ..AugmentConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut flips = 0;
    let mut zx_ne_zy = 0;
    for _ in 0..5000 {
        let p = cfg.sample(&mut rng);
        assert!((-30.0..=30.0).contains(&p.rotation_deg));
        assert!((-0.3..=0.3).contains(&p.shift_x));
        assert!((-0.3..=0.3).contains(&p.shift_y));
        assert!((0.7..=1.3).contains(&p.zoom_x));
        assert!((0.7..=1.3).contains(&p.zoom_y));
        assert!((-0.1..=0.1).contains(&p.brightness));
        assert!((0.8..=1.2).contains(&p.contrast));
        assert_eq!(p.fill_mode, FillMode::Nearest);
        flips += p.flip_h as usize;
        zx_ne_zy += (p.zoom_x != p.zoom_y) as usize;
    }
    assert!((2000..3000).contains(&flips), "flip rate {flips}/5000");
    assert!(zx_ne_zy > 4900, "Keras samples zx and zy independently");
    let a: Vec<_> = (0..10)
        .map(|_| cfg.sample(&mut ChaCha8Rng::seed_from_u64(7)))
        .collect();
    assert!(a.windows(2).all(|w| w[0] == w[1]));
    let keep = AugmentConfig {
        zoom_keep_aspect: true,
        ..cfg
    };
    let p = keep.sample(&mut rng);
    assert_eq!(p.zoom_x, p.zoom_y);
    // Disabled flips never flip.
    let none = AugmentConfig::none();
    for _ in 0..100 {
        let p = none.sample(&mut rng);
        assert_eq!(p, AugmentParams::identity());
    }
}

#[test]
fn brightness_and_contrast_jitter() {
    let img = RgbImage::from_pixel(3, 3, Rgb([100, 150, 250]));
    let p = AugmentParams {
        brightness: 0.1,
        ..AugmentParams::identity()
    };
    let out = augment_image(&img, &p);
    assert_eq!(*out.get_pixel(1, 1), Rgb([126, 176, 255]));
    let p = AugmentParams {
        contrast: 2.0,
        ..AugmentParams::identity()
    };
    let out = augment_image(&img, &p);
    // (v - 127.5) * 2 + 127.5
    assert_eq!(*out.get_pixel(1, 1), Rgb([73, 173, 255]));
}

#[test]
fn random_warps_keep_size_and_do_not_panic() {
    let cfg = AugmentConfig::default();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (w, h) in [(1u32, 1u32), (2, 3), (64, 48)] {
        let img = pattern(w, h);
        for _ in 0..20 {
            let out = augment_image(&img, &cfg.sample(&mut rng));
            assert_eq!(out.dimensions(), (w, h));
        }
    }
}

/// Straightforward f64 reference: bilinear, nearest fill, using the documented matrix.
fn reference(img: &RgbImage, p: &AugmentParams) -> RgbImage {
    let (w, h) = img.dimensions();
    let m = p.matrix(w as usize, h as usize);
    let get = |x: i64, y: i64, c: usize| -> f64 {
        let x = x.clamp(0, w as i64 - 1) as u32;
        let y = y.clamp(0, h as i64 - 1) as u32;
        img.get_pixel(x, y)[c] as f64
    };
    RgbImage::from_fn(w, h, |x, y| {
        let sx = m[0] * x as f64 + m[1] * y as f64 + m[2];
        let sy = m[3] * x as f64 + m[4] * y as f64 + m[5];
        let (x0, y0) = (sx.floor(), sy.floor());
        let (ax, ay) = (sx - x0, sy - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let mut px = [0u8; 3];
        for (c, out) in px.iter_mut().enumerate() {
            let top = get(x0, y0, c) * (1.0 - ax) + get(x0 + 1, y0, c) * ax;
            let bot = get(x0, y0 + 1, c) * (1.0 - ax) + get(x0 + 1, y0 + 1, c) * ax;
            *out = (top * (1.0 - ay) + bot * ay).round() as u8;
        }
        Rgb(px)
    })
}

#[test]
fn random_warps_match_an_f64_reference() {
    let cfg = AugmentConfig {
        vertical_flip: true,
        ..AugmentConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let img = pattern(57, 43);
    for _ in 0..30 {
        let p = cfg.sample(&mut rng);
        let a = augment_image(&img, &p);
        let b = reference(&img, &p);
        let worst = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| (*x as i32 - *y as i32).abs())
            .max()
            .unwrap();
        assert!(worst <= 1, "{p:?}: max difference {worst}");
    }
}

/// The 8 symmetries of a square, by hand: `(x, y) -> source pixel`.
fn dihedral_by_hand(img: &RgbImage, k: usize) -> RgbImage {
    let n = img.width();
    assert_eq!(n, img.height());
    let m = n - 1;
    RgbImage::from_fn(n, n, |x, y| {
        let (sx, sy) = match k {
            0 => (x, y),
            1 => (m - x, y),     // mirror left-right
            2 => (x, m - y),     // mirror top-bottom
            3 => (m - x, m - y), // half turn
            4 => (y, x),         // transpose
            5 => (m - y, x),     // quarter turn
            6 => (y, m - x),     // the other quarter turn
            _ => (m - y, m - x), // anti-transpose
        };
        *img.get_pixel(sx, sy)
    })
}

#[test]
fn dihedral_views_are_the_8_pixel_permutations() {
    let img = pattern(9, 9);
    let by_hand: Vec<RgbImage> = (0..8).map(|k| dihedral_by_hand(&img, k)).collect();
    for (i, a) in by_hand.iter().enumerate() {
        for b in &by_hand[i + 1..] {
            assert_ne!(a, b, "the pattern has no symmetry");
        }
    }
    // Every combination of the two flips and a quarter turn is one of them, exactly.
    let mut seen = Vec::new();
    for flip_h in [false, true] {
        for flip_v in [false, true] {
            for quarter in [0.0, 90.0] {
                let p = AugmentParams {
                    flip_h,
                    flip_v,
                    rotation_deg: quarter,
                    ..AugmentParams::identity()
                };
                let out = augment_image(&img, &p);
                let k = by_hand
                    .iter()
                    .position(|v| *v == out)
                    .unwrap_or_else(|| panic!("{p:?} is not a pixel permutation"));
                seen.push(k);
            }
        }
    }
    seen.sort();
    assert_eq!(seen, (0..8).collect::<Vec<_>>());
    // Sampling with `dihedral` reaches all 8 views, with no other geometry.
    let cfg = AugmentConfig {
        dihedral: true,
        horizontal_flip: false,
        ..AugmentConfig::none()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut hits = [0usize; 8];
    for _ in 0..400 {
        let out = augment_image(&img, &cfg.sample(&mut rng));
        hits[by_hand.iter().position(|v| *v == out).unwrap()] += 1;
    }
    assert!(hits.iter().all(|&h| h > 20), "{hits:?}");
}

#[test]
fn random_resized_crops_stay_inside_the_image() {
    let cfg = AugmentConfig {
        crop_scale: Some([0.35, 1.0]),
        ..AugmentConfig::none()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut smallest: f32 = 1.0;
    for _ in 0..2000 {
        let p = cfg.sample(&mut rng);
        let area = p.zoom_x * p.zoom_y;
        smallest = smallest.min(area);
        assert!((0.35 - 1e-4..=1.0 + 1e-4).contains(&area), "{p:?}");
        let ratio = p.zoom_x / p.zoom_y;
        assert!(
            p.zoom_x >= 1.0 - 1e-6 || p.zoom_y >= 1.0 - 1e-6 || (0.749..1.334).contains(&ratio)
        );
        // The crop's edges: centre shift plus half its side stays within half the image.
        assert!(p.shift_x.abs() + p.zoom_x / 2.0 <= 0.5 + 1e-5, "{p:?}");
        assert!(p.shift_y.abs() + p.zoom_y / 2.0 <= 0.5 + 1e-5, "{p:?}");
    }
    assert!(smallest < 0.4, "small crops are drawn: {smallest}");
    // A crop of the left half, scaled back up: output column x samples source x / 2.
    let img = pattern(16, 16);
    let p = AugmentParams {
        zoom_x: 0.5,
        shift_x: -0.25,
        ..AugmentParams::identity()
    };
    let out = augment_image(&img, &p);
    let m = p.matrix(16, 16);
    assert!((m[0] - 0.5).abs() < 1e-12 && m[2].abs() < 0.5, "{m:?}");
    assert_eq!(out.get_pixel(0, 5), img.get_pixel(0, 5));
}

#[test]
fn shades_of_gray_maps_a_tinted_grey_image_to_neutral_grey() {
    use dermclass::data::augment::shades_of_gray_gains;
    // A grey card under a warm light: every pixel (200, 150, 100).
    let img = RgbImage::from_pixel(8, 6, Rgb([200, 150, 100]));
    let gains = shades_of_gray_gains(img.as_raw(), 6.0);
    let p = AugmentParams {
        gains,
        ..AugmentParams::identity()
    };
    let out = augment_image(&img, &p);
    let px = out.get_pixel(3, 3).0;
    assert!(
        px[0].abs_diff(px[1]) <= 1 && px[1].abs_diff(px[2]) <= 1,
        "not neutral: {px:?}"
    );
    // Brightness is kept: the grey level is the channels' root mean square, 155.5.
    assert!(px[0].abs_diff(155) <= 1, "{px:?}");
    // A neutral image is left alone.
    let grey = RgbImage::from_pixel(4, 4, Rgb([90, 90, 90]));
    let g = shades_of_gray_gains(grey.as_raw(), 6.0);
    assert!(g.iter().all(|v| (v - 1.0).abs() < 1e-6), "{g:?}");
}

#[test]
fn saturation_and_hue_jitter_keep_grey_and_change_colour() {
    let grey = RgbImage::from_pixel(3, 3, Rgb([120, 120, 120]));
    let colour = RgbImage::from_pixel(3, 3, Rgb([200, 80, 40]));
    let desaturate = AugmentParams {
        saturation: 0.0,
        ..AugmentParams::identity()
    };
    let px = augment_image(&colour, &desaturate).get_pixel(1, 1).0;
    assert!(
        px[0].abs_diff(px[1]) <= 1 && px[1].abs_diff(px[2]) <= 1,
        "{px:?}"
    );
    // Luma 0.299*200 + 0.587*80 + 0.114*40 = 111.3.
    assert!(px[0].abs_diff(111) <= 1, "{px:?}");
    let hue = AugmentParams {
        hue: 0.25,
        saturation: 1.5,
        ..AugmentParams::identity()
    };
    assert_eq!(augment_image(&grey, &hue), grey, "grey has no hue");
    assert_ne!(augment_image(&colour, &hue), colour);
    // A full turn changes nothing.
    let turn = AugmentParams {
        hue: 1.0,
        ..AugmentParams::identity()
    };
    let back = augment_image(&colour, &turn).get_pixel(0, 0).0;
    for (a, b) in back.iter().zip([200u8, 80, 40]) {
        assert!(a.abs_diff(b) <= 1, "{back:?}");
    }
}

/// The order of the combined geometric steps, derived by hand rather than from the code's
/// own matrix: output pixel p samples the source at `R(θ)·(Z·F·(p - c) + t) + c`.
/// On a 5x5 image (centre c = (2, 2)) with a horizontal flip F = diag(-1, 1), zoom 1, a
/// shift of 0.2 x 5 = 1 pixel in x, t = (1, 0), and θ = 90° (R = [0 -1; 1 0]):
/// `F·(p - c) + t = (3 - x, y - 2)`, then `R·(3 - x, y - 2) = (2 - y, 3 - x)`, so the
/// source is `(4 - y, 5 - x)`. The single bright source pixel (1, 2) therefore lands at
/// output (3, 3), and nowhere else (edge fill repeats row 4 and column 4, which are dark).
#[test]
fn flip_shift_and_quarter_turn_compose_in_the_hand_derived_order() {
    let mut img = RgbImage::new(5, 5);
    img.put_pixel(1, 2, image::Rgb([255, 255, 255]));
    let p = AugmentParams {
        flip_h: true,
        rotation_deg: 90.0,
        shift_x: 0.2,
        ..AugmentParams::identity()
    };
    let out = augment_image(&img, &p);
    for y in 0..5 {
        for x in 0..5 {
            let want = if (x, y) == (3, 3) { 255 } else { 0 };
            assert_eq!(out.get_pixel(x, y)[0], want, "output ({x}, {y})");
        }
    }
}
