//! Augmentation with Keras `ImageDataGenerator` semantics, composed into ONE affine warp per
//! image with bilinear sampling.
//!
//! Keras (`apply_transform`) builds a matrix that maps each OUTPUT pixel to the INPUT
//! location it samples: `rotation · shift · zoom`, offset to the image centre, then flips
//! the result. We do the same in a single pass: for an output pixel `p` (relative to the
//! centre), after the flips `p' = F·p`, the source location is
//! `c + R(θ)·(Z·p' + t)`, with `Z = diag(zx, zy)` (so `zx > 1` shows a larger area: zoom out,
//! as in Keras), `t = (tx·W, ty·H)` and `R` a rotation by `θ` degrees (positive =
//! counter-clockwise as seen on screen). Locations outside the image use the fill mode
//! (`Nearest` replicates the edge like Keras' default).
//!
//! Zoom: like Keras, `zx` and `zy` are drawn independently from `[1-z, 1+z]`
//! (`AugmentConfig::zoom_keep_aspect = true` draws one factor for both).

use image::RgbImage;
use rand::Rng;

/// What to put where the warp samples outside the source image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FillMode {
    /// Replicate the nearest edge pixel (Keras `fill_mode="nearest"`).
    Nearest,
    /// A constant value for every channel (Keras `fill_mode="constant", cval`).
    Constant(u8),
    /// Mirror at the edge (Keras `fill_mode="reflect"`).
    Reflect,
}

/// Random augmentation ranges (Keras `ImageDataGenerator` style).
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentConfig {
    /// Random horizontal flip with probability 1/2.
    pub horizontal_flip: bool,
    /// Random vertical flip with probability 1/2.
    pub vertical_flip: bool,
    /// Rotation drawn uniformly from `[-rotation_range, rotation_range]` degrees.
    pub rotation_range: f32,
    /// Horizontal shift, fraction of the width, drawn from `[-w, w]`.
    pub width_shift_range: f32,
    /// Vertical shift, fraction of the height, drawn from `[-h, h]`.
    pub height_shift_range: f32,
    /// Zoom factors drawn from `[1 - zoom_range, 1 + zoom_range]`.
    pub zoom_range: f32,
    /// Draw one zoom factor for both axes (Keras draws them independently: `false`).
    pub zoom_keep_aspect: bool,
    /// Fill mode outside the source image.
    pub fill_mode: FillMode,
    /// Brightness jitter: add `d·255`, `d` from `[-b, b]` (0 = off).
    pub brightness_range: f32,
    /// Contrast jitter: scale around mid-grey by `c` from `[1-r, 1+r]` (0 = off).
    pub contrast_range: f32,
    /// The 8 dihedral views: random horizontal and vertical flips (whatever the two flip
    /// switches say) and a random quarter turn on top of the rotation.
    pub dihedral: bool,
    /// Random-resized crop: the crop's area fraction is drawn from this range and its
    /// aspect ratio (log-uniformly) from `crop_ratio`; the crop is placed uniformly inside
    /// the image and scaled to the output. Replaces the zoom and shift ranges when set.
    pub crop_scale: Option<[f32; 2]>,
    /// Random-resized crop: aspect-ratio range (width / height of the crop).
    pub crop_ratio: [f32; 2],
    /// Saturation jitter: factor from `[1-s, 1+s]` around the pixel's luma (0 = off).
    pub saturation_range: f32,
    /// Hue jitter: rotation of the chroma plane by `[-h, h]` turns (0 = off).
    pub hue_range: f32,
}

impl Default for AugmentConfig {
    /// The Keras study's generator: horizontal flip, zoom 0.3, shifts 0.3, rotation 30°,
    /// fill "nearest". Vertical flip and colour jitter are off by default.
    fn default() -> Self {
        AugmentConfig {
            horizontal_flip: true,
            vertical_flip: false,
            rotation_range: 30.0,
            width_shift_range: 0.3,
            height_shift_range: 0.3,
            zoom_range: 0.3,
            zoom_keep_aspect: false,
            fill_mode: FillMode::Nearest,
            brightness_range: 0.0,
            contrast_range: 0.0,
            dihedral: false,
            crop_scale: None,
            crop_ratio: [0.75, 4.0 / 3.0],
            saturation_range: 0.0,
            hue_range: 0.0,
        }
    }
}

impl AugmentConfig {
    /// No augmentation (evaluation).
    pub fn none() -> Self {
        AugmentConfig {
            horizontal_flip: false,
            rotation_range: 0.0,
            width_shift_range: 0.0,
            height_shift_range: 0.0,
            zoom_range: 0.0,
            ..Self::default()
        }
    }

    /// True when this config never changes an image.
    pub fn is_identity(&self) -> bool {
        let n = Self::none();
        self.horizontal_flip == n.horizontal_flip
            && self.vertical_flip == n.vertical_flip
            && self.rotation_range == 0.0
            && self.width_shift_range == 0.0
            && self.height_shift_range == 0.0
            && self.zoom_range == 0.0
            && self.brightness_range == 0.0
            && self.contrast_range == 0.0
            && !self.dihedral
            && self.crop_scale.is_none()
            && self.saturation_range == 0.0
            && self.hue_range == 0.0
    }

    /// Draws one set of parameters. The number of draws does not depend on the config, so
    /// the same RNG state gives the same stream whatever is enabled.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> AugmentParams {
        let u = |rng: &mut R| rng.random::<f32>() * 2.0 - 1.0; // uniform in [-1, 1)
        let fh = rng.random::<bool>();
        let fv = rng.random::<bool>();
        let rot = u(rng);
        let tx = u(rng);
        let ty = u(rng);
        let zx = u(rng);
        let zy = u(rng);
        let br = u(rng);
        let ct = u(rng);
        // Draws added after the Keras ones, so their stream is unchanged.
        let quarter = rng.random::<bool>();
        let area = rng.random::<f32>();
        let ratio = rng.random::<f32>();
        let (cx, cy) = (u(rng), u(rng));
        let (sat, hue) = (u(rng), u(rng));
        let zx = 1.0 + self.zoom_range * zx;
        let zy = if self.zoom_keep_aspect {
            zx
        } else {
            1.0 + self.zoom_range * zy
        };
        let mut params = AugmentParams {
            flip_h: (self.horizontal_flip || self.dihedral) && fh,
            flip_v: (self.vertical_flip || self.dihedral) && fv,
            rotation_deg: self.rotation_range * rot
                + if self.dihedral && quarter { 90.0 } else { 0.0 },
            shift_x: self.width_shift_range * tx,
            shift_y: self.height_shift_range * ty,
            zoom_x: zx,
            zoom_y: zy,
            brightness: self.brightness_range * br,
            contrast: 1.0 + self.contrast_range * ct,
            saturation: 1.0 + self.saturation_range * sat,
            hue: self.hue_range * hue,
            gains: [1.0; 3],
            fill_mode: self.fill_mode,
        };
        if let Some([lo, hi]) = self.crop_scale {
            let area = lo + (hi - lo) * area;
            let [rlo, rhi] = self.crop_ratio;
            let ratio = (rlo.ln() + (rhi.ln() - rlo.ln()) * ratio).exp();
            // Crop sides as fractions of the image; a crop wider or taller than the image
            // is clipped to it (torchvision falls back to a centre crop after 10 tries).
            let cw = (area * ratio).sqrt().min(1.0);
            let ch = (area / ratio).sqrt().min(1.0);
            params.zoom_x = cw;
            params.zoom_y = ch;
            params.shift_x = cx * (1.0 - cw) / 2.0;
            params.shift_y = cy * (1.0 - ch) / 2.0;
        }
        params
    }
}

/// One concrete augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentParams {
    /// Mirror left-right.
    pub flip_h: bool,
    /// Mirror top-bottom.
    pub flip_v: bool,
    /// Rotation in degrees, counter-clockwise on screen.
    pub rotation_deg: f32,
    /// Shift as a fraction of the width (source offset, like Keras).
    pub shift_x: f32,
    /// Shift as a fraction of the height.
    pub shift_y: f32,
    /// Zoom factor along x (>1 zooms out).
    pub zoom_x: f32,
    /// Zoom factor along y.
    pub zoom_y: f32,
    /// Additive brightness, fraction of 255.
    pub brightness: f32,
    /// Contrast factor around 127.5.
    pub contrast: f32,
    /// Saturation factor around the luma (1 = unchanged).
    pub saturation: f32,
    /// Hue rotation in turns (0 = unchanged).
    pub hue: f32,
    /// Per-channel gains applied first (colour constancy; `[1, 1, 1]` = none).
    pub gains: [f32; 3],
    /// Fill mode.
    pub fill_mode: FillMode,
}

impl AugmentParams {
    /// Parameters that change nothing.
    pub fn identity() -> Self {
        AugmentParams {
            flip_h: false,
            flip_v: false,
            rotation_deg: 0.0,
            shift_x: 0.0,
            shift_y: 0.0,
            zoom_x: 1.0,
            zoom_y: 1.0,
            brightness: 0.0,
            contrast: 1.0,
            saturation: 1.0,
            hue: 0.0,
            gains: [1.0; 3],
            fill_mode: FillMode::Nearest,
        }
    }

    /// The colour part as one affine map `v' = A·v + b` on 0..=255 RGB values (clamped
    /// after): gains, then saturation and hue around the luma axis (YIQ), then contrast
    /// around mid-grey and brightness. `None` when it changes nothing.
    pub fn colour_affine(&self) -> Option<([[f32; 3]; 3], [f32; 3])> {
        if self.gains == [1.0; 3]
            && self.saturation == 1.0
            && self.hue == 0.0
            && self.contrast == 1.0
            && self.brightness == 0.0
        {
            return None;
        }
        // RGB -> YIQ and back (NTSC); saturation scales I and Q, hue rotates them.
        const T: [[f64; 3]; 3] = [
            [0.299, 0.587, 0.114],
            [0.595_716, -0.274_453, -0.321_263],
            [0.211_456, -0.522_591, 0.311_135],
        ];
        let ti = invert3(&T);
        let (s, c) = (self.hue as f64 * std::f64::consts::TAU).sin_cos();
        let k = self.saturation as f64;
        let chroma = [[1.0, 0.0, 0.0], [0.0, k * c, -k * s], [0.0, k * s, k * c]];
        let mut a = mul3(&ti, &mul3(&chroma, &T));
        let contrast = self.contrast as f64;
        for row in a.iter_mut() {
            for (col, v) in row.iter_mut().enumerate() {
                *v *= contrast * self.gains[col] as f64;
            }
        }
        let offset = (127.5 * (1.0 - contrast) + self.brightness as f64 * 255.0) as f32;
        let a = a.map(|row| row.map(|v| v as f32));
        Some((a, [offset; 3]))
    }

    /// The affine map `src = A·(x, y) + b` from output pixel coordinates to source pixel
    /// coordinates, for an image of `w x h` pixels, as `[a00, a01, b0, a10, a11, b1]`.
    pub fn matrix(&self, w: usize, h: usize) -> [f64; 6] {
        let cx = (w as f64 - 1.0) / 2.0;
        let cy = (h as f64 - 1.0) / 2.0;
        let fx = if self.flip_h { -1.0 } else { 1.0 };
        let fy = if self.flip_v { -1.0 } else { 1.0 };
        let theta = (self.rotation_deg as f64).to_radians();
        let (mut s, mut c) = theta.sin_cos();
        // Snap exact multiples of 90° so quarter turns are exact pixel permutations.
        for v in [&mut s, &mut c] {
            let r = v.round();
            if (*v - r).abs() < 1e-12 {
                *v = r;
            }
        }
        let zx = self.zoom_x as f64 * fx;
        let zy = self.zoom_y as f64 * fy;
        let tx = self.shift_x as f64 * w as f64;
        let ty = self.shift_y as f64 * h as f64;
        // Screen coordinates have y down. Sampling the source at [c, -s; s, c]·p turns the
        // content counter-clockwise on screen by θ (θ = 90° equals a 270° clockwise
        // pixel rotation). src - centre = R · (Z·F·p + t)
        let (r00, r01, r10, r11) = (c, -s, s, c);
        let a00 = r00 * zx;
        let a01 = r01 * zy;
        let a10 = r10 * zx;
        let a11 = r11 * zy;
        let b0 = r00 * tx + r01 * ty;
        let b1 = r10 * tx + r11 * ty;
        // With p = (x - cx, y - cy): src = A·p + b + c  =>  A·(x,y) + (b + c - A·c).
        [
            a00,
            a01,
            b0 + cx - (a00 * cx + a01 * cy),
            a10,
            a11,
            b1 + cy - (a10 * cx + a11 * cy),
        ]
    }

    /// True when the geometric part is the identity.
    pub fn is_geometric_identity(&self) -> bool {
        !self.flip_h
            && !self.flip_v
            && self.rotation_deg == 0.0
            && self.shift_x == 0.0
            && self.shift_y == 0.0
            && self.zoom_x == 1.0
            && self.zoom_y == 1.0
    }
}

fn mul3(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut out = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

fn invert3(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let cof =
        |r0: usize, r1: usize, c0: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let adj = [
        [cof(1, 2, 1, 2), -cof(0, 2, 1, 2), cof(0, 1, 1, 2)],
        [-cof(1, 2, 0, 2), cof(0, 2, 0, 2), -cof(0, 1, 0, 2)],
        [cof(1, 2, 0, 1), -cof(0, 2, 0, 1), cof(0, 1, 0, 1)],
    ];
    let det = m[0][0] * adj[0][0] + m[0][1] * adj[1][0] + m[0][2] * adj[2][0];
    adj.map(|row| row.map(|v| v / det))
}

/// Shades-of-Gray colour constancy (Finlayson and Trezzi 2004): per-channel gains that
/// map the illuminant, estimated as the Minkowski `p`-norm mean of each channel, to
/// neutral grey while keeping its overall brightness, for interleaved RGB8 `pixels`.
pub fn shades_of_gray_gains(pixels: &[u8], p: f32) -> [f32; 3] {
    let p = p as f64;
    let mut table = [0f64; 256];
    for (v, t) in table.iter_mut().enumerate() {
        *t = (v as f64 / 255.0).powf(p);
    }
    let mut sums = [0f64; 3];
    for px in pixels.chunks_exact(3) {
        for c in 0..3 {
            sums[c] += table[px[c] as usize];
        }
    }
    let n = (pixels.len() / 3).max(1) as f64;
    let e = sums.map(|s| (s / n).powf(1.0 / p));
    let norm = (e.iter().map(|v| v * v).sum::<f64>() / 3.0).sqrt();
    e.map(|v| if v > 1e-12 { (norm / v) as f32 } else { 1.0 })
}

#[inline]
fn reflect(i: i64, n: i64) -> i64 {
    if n == 1 {
        return 0;
    }
    // Mirror including the edge pixel (scipy "reflect"): ... 1 0 | 0 1 2 ... n-1 | n-1 n-2
    let period = 2 * n;
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - 1 - m;
    }
    m
}

/// Splits a source coordinate into its integer cell and the fraction in `[0, 1)`, snapping
/// values within 1e-6 of an integer onto it (so exact permutations stay exact). Avoids
/// `f64::floor`/`round`, which are library calls on baseline x86-64.
#[inline(always)]
fn split_coord(u: f64) -> (i64, f32) {
    // Coordinates are far inside the i64 range; clamp guards absurd parameters.
    let u = u.clamp(-1e15, 1e15);
    let mut i = u as i64; // truncates toward zero
    if (i as f64) > u {
        i -= 1; // floor for negatives
    }
    let mut f = u - i as f64;
    if f < 1e-6 {
        f = 0.0;
    } else if f > 1.0 - 1e-6 {
        i += 1;
        f = 0.0;
    }
    (i, f as f32)
}

/// The map `m` (from output pixels of a `w x h` image to source pixels of the same size)
/// for a source of `sw x sh` pixels holding the same picture: pixel centres line up, so
/// `u' = (u + 1/2) * sw / w - 1/2` along x and likewise along y.
fn to_source(m: [f64; 6], (w, h): (usize, usize), (sw, sh): (usize, usize)) -> [f64; 6] {
    let kx = sw as f64 / w as f64;
    let ky = sh as f64 / h as f64;
    [
        m[0] * kx,
        m[1] * kx,
        (m[2] + 0.5) * kx - 0.5,
        m[3] * ky,
        m[4] * ky,
        (m[5] + 0.5) * ky - 0.5,
    ]
}

/// Warps an interleaved RGB8 source of `source` = (width, height) pixels with `p` into an
/// output of `out` = (width, height) pixels, calling `emit(pixel_index, [r,g,b])` for every
/// output pixel (values in 0..=255, not rounded). The geometry is that of `p` on an image of
/// the output's size; a larger source holds the same picture in more pixels, so crops and
/// zooms keep its detail (as torchvision's random-resized crop, which crops the original).
#[inline]
pub fn warp_with<F: FnMut(usize, [f32; 3])>(
    src: &[u8],
    source: (usize, usize),
    out: (usize, usize),
    p: &AugmentParams,
    mut emit: F,
) {
    let ((sw, sh), (w, h)) = (source, out);
    assert_eq!(src.len(), sw * sh * 3);
    let affine = p.colour_affine();
    let colour = |v: [f32; 3]| -> [f32; 3] {
        let Some((a, b)) = &affine else {
            return v;
        };
        let f =
            |r: usize| (a[r][0] * v[0] + a[r][1] * v[1] + a[r][2] * v[2] + b[r]).clamp(0.0, 255.0);
        [f(0), f(1), f(2)]
    };
    if p.is_geometric_identity() && source == out {
        for (i, px) in src.chunks_exact(3).enumerate() {
            emit(i, colour([px[0] as f32, px[1] as f32, px[2] as f32]));
        }
        return;
    }
    let m = to_source(p.matrix(w, h), out, source);
    let (wi, hi) = (sw as i64, sh as i64);
    let grid = Grid { sw, w, h };
    match p.fill_mode {
        FillMode::Nearest => warp_mapped(
            src,
            grid,
            &m,
            |x| x.clamp(0, wi - 1) as usize,
            |y| y.clamp(0, hi - 1) as usize,
            |i, v| emit(i, colour(v)),
        ),
        FillMode::Reflect => warp_mapped(
            src,
            grid,
            &m,
            |x| reflect(x, wi) as usize,
            |y| reflect(y, hi) as usize,
            |i, v| emit(i, colour(v)),
        ),
        FillMode::Constant(cval) => {
            let cv = cval as f32;
            let fetch = |x: i64, y: i64| -> [f32; 3] {
                if x < 0 || y < 0 || x >= wi || y >= hi {
                    return [cv, cv, cv];
                }
                let o = (y as usize * sw + x as usize) * 3;
                [src[o] as f32, src[o + 1] as f32, src[o + 2] as f32]
            };
            let mut i = 0;
            for y in 0..h {
                let yf = y as f64;
                let mut sx = m[1] * yf + m[2];
                let mut sy = m[4] * yf + m[5];
                for _x in 0..w {
                    let (x0, ax) = split_coord(sx);
                    let (y0, ay) = split_coord(sy);
                    let p00 = fetch(x0, y0);
                    let p10 = fetch(x0 + 1, y0);
                    let p01 = fetch(x0, y0 + 1);
                    let p11 = fetch(x0 + 1, y0 + 1);
                    let mut v = [0f32; 3];
                    for c in 0..3 {
                        let top = p00[c] + (p10[c] - p00[c]) * ax;
                        let bot = p01[c] + (p11[c] - p01[c]) * ax;
                        v[c] = top + (bot - top) * ay;
                    }
                    emit(i, colour(v));
                    i += 1;
                    sx += m[0];
                    sy += m[3];
                }
            }
        }
    }
}

/// The source's row length and the output's size, for [`warp_mapped`].
#[derive(Clone, Copy)]
struct Grid {
    sw: usize,
    w: usize,
    h: usize,
}

/// The bilinear warp loop for fill modes that map any coordinate to a valid index
/// (`mx`, `my`: nearest = clamp, reflect = mirror). Branch-free per pixel; a zero fraction
/// gives the exact source value.
#[inline(always)]
fn warp_mapped<MX, MY, F>(src: &[u8], grid: Grid, m: &[f64; 6], mx: MX, my: MY, mut emit: F)
where
    MX: Fn(i64) -> usize,
    MY: Fn(i64) -> usize,
    F: FnMut(usize, [f32; 3]),
{
    // Source coordinates in 32.32 fixed point: one add per pixel, floor = shift, and
    // f64 rounding noise (far below 2^-32) vanishes, so exact permutations stay exact.
    const ONE: f64 = 4_294_967_296.0;
    const INV: f32 = 1.0 / 4_294_967_296.0;
    let fx = |v: f64| -> i64 { (v.clamp(-1e8, 1e8) * ONE).round() as i64 };
    let (dx, dy) = (fx(m[0]), fx(m[3]));
    let Grid { sw, w, h } = grid;
    let mut i = 0;
    for y in 0..h {
        let yf = y as f64;
        let mut sx = fx(m[1] * yf + m[2]);
        let mut sy = fx(m[4] * yf + m[5]);
        for _x in 0..w {
            let (x0, y0) = (sx >> 32, sy >> 32);
            let ax = (sx & 0xffff_ffff) as f32 * INV;
            let ay = (sy & 0xffff_ffff) as f32 * INV;
            let (xa, xb) = (mx(x0), mx(x0 + 1));
            let (ya, yb) = (my(y0) * sw, my(y0 + 1) * sw);
            let (o00, o10) = ((ya + xa) * 3, (ya + xb) * 3);
            let (o01, o11) = ((yb + xa) * 3, (yb + xb) * 3);
            let mut v = [0f32; 3];
            for c in 0..3 {
                let p00 = src[o00 + c] as f32;
                let p10 = src[o10 + c] as f32;
                let p01 = src[o01 + c] as f32;
                let p11 = src[o11 + c] as f32;
                let top = p00 + (p10 - p00) * ax;
                let bot = p01 + (p11 - p01) * ax;
                v[c] = top + (bot - top) * ay;
            }
            emit(i, v);
            i += 1;
            sx = sx.wrapping_add(dx);
            sy = sy.wrapping_add(dy);
        }
    }
}

/// Applies `p` to an RGB8 image (same size out), rounding to u8.
pub fn augment_image(img: &RgbImage, p: &AugmentParams) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0u8; w * h * 3];
    warp_with(img.as_raw(), (w, h), (w, h), p, |i, v| {
        for c in 0..3 {
            out[i * 3 + c] = v[c].round().clamp(0.0, 255.0) as u8;
        }
    });
    RgbImage::from_raw(w as u32, h as u32, out).expect("size matches")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_mirrors_including_edge() {
        let v: Vec<i64> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(v, vec![2, 1, 0, 0, 1, 2, 3, 3, 2, 1]);
        assert_eq!(reflect(-5, 1), 0);
    }

    #[test]
    fn matrix_maps_centre_to_centre_without_shift() {
        let p = AugmentParams {
            rotation_deg: 37.0,
            zoom_x: 1.2,
            zoom_y: 0.8,
            flip_h: true,
            ..AugmentParams::identity()
        };
        let m = p.matrix(11, 7);
        let (cx, cy) = (5.0, 3.0);
        let sx = m[0] * cx + m[1] * cy + m[2];
        let sy = m[3] * cx + m[4] * cy + m[5];
        assert!((sx - cx).abs() < 1e-9 && (sy - cy).abs() < 1e-9);
    }

    #[test]
    fn shift_is_a_fraction_of_the_size() {
        let p = AugmentParams {
            shift_x: 0.5,
            shift_y: -0.25,
            ..AugmentParams::identity()
        };
        let m = p.matrix(10, 8);
        assert_eq!((m[2], m[5]), (5.0, -2.0));
    }

    /// Warps `src` (`source` pixels) to `out` pixels with `p`, as f32 RGB.
    fn warp(
        src: &[u8],
        source: (usize, usize),
        out: (usize, usize),
        p: &AugmentParams,
    ) -> Vec<f32> {
        let mut v = vec![0f32; out.0 * out.1 * 3];
        warp_with(src, source, out, p, |i, px| {
            v[i * 3..i * 3 + 3].copy_from_slice(&px)
        });
        v
    }

    #[test]
    fn a_larger_copy_of_the_same_picture_gives_the_same_views() {
        // Each pixel repeated 2x2: the same picture in twice the pixels. Pixel centres line
        // up, so every dihedral view drawn from the large copy equals the one drawn from
        // the small image (a map off by half a source pixel would blend neighbours).
        let (w, h) = (6usize, 6usize);
        let small: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let mut large = vec![0u8; 4 * small.len()];
        for y in 0..2 * h {
            for x in 0..2 * w {
                let (o, i) = ((y * 2 * w + x) * 3, ((y / 2) * w + x / 2) * 3);
                large[o..o + 3].copy_from_slice(&small[i..i + 3]);
            }
        }
        for quarter in [0.0, 90.0] {
            for (flip_h, flip_v) in [(false, false), (true, false), (false, true), (true, true)] {
                let p = AugmentParams {
                    flip_h,
                    flip_v,
                    rotation_deg: quarter,
                    ..AugmentParams::identity()
                };
                let a = warp(&small, (w, h), (w, h), &p);
                let b = warp(&large, (2 * w, 2 * h), (w, h), &p);
                assert_eq!(a, b, "view {p:?}");
            }
        }
    }

    #[test]
    fn a_crop_from_a_larger_source_samples_the_picture_where_the_map_says() {
        // The picture f(x, y) = 5x + 3y + 10 in output-pixel coordinates, stored at 1.5x:
        // source pixel i holds f at (i + 1/2) / 1.5 - 1/2. A crop inside the image then
        // reads f exactly at the matrix's location, up to the u8 rounding of the source.
        let (w, h) = (20usize, 20usize);
        let (sw, sh) = (30usize, 30usize);
        let f = |x: f64, y: f64| 5.0 * x + 3.0 * y + 10.0;
        let to_out = |i: usize| (i as f64 + 0.5) / 1.5 - 0.5;
        let mut src = vec![0u8; sw * sh * 3];
        for y in 0..sh {
            for x in 0..sw {
                let v = f(to_out(x), to_out(y)).round() as u8;
                src[(y * sw + x) * 3..(y * sw + x) * 3 + 3].fill(v);
            }
        }
        let p = AugmentParams {
            zoom_x: 0.5,
            zoom_y: 0.6,
            shift_x: 0.1,
            shift_y: -0.15,
            flip_h: true,
            ..AugmentParams::identity()
        };
        let m = p.matrix(w, h);
        let out = warp(&src, (sw, sh), (w, h), &p);
        for y in 0..h {
            for x in 0..w {
                let (xf, yf) = (x as f64, y as f64);
                let want = f(m[0] * xf + m[1] * yf + m[2], m[3] * xf + m[4] * yf + m[5]);
                let got = out[(y * w + x) * 3] as f64;
                assert!((got - want).abs() <= 0.51, "({x}, {y}): {got} vs {want}");
            }
        }
    }
}
