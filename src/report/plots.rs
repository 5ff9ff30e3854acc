//! Report pictures (PNG): training curves, confusion heat map, accuracy vs. cost scatter.
//!
//! Drawing uses plotters' bitmap backend into memory; the PNG is encoded with `image` and
//! written with [`super::write_atomic`].
//!
//! **Fonts.** plotters is built with its pure-Rust `ab_glyph` text renderer, which needs a
//! TrueType/OpenType file at run time. The first plot looks for one at `$DERMCLASS_FONT`, then at
//! common system locations (Debian's `fonts-dejavu-core` provides
//! `/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf`), then any `*.ttf` under
//! `/usr/share/fonts` (`DERMCLASS_FONT=none` skips the search). Without a usable font the pictures are still drawn and written — just
//! without any text (titles, tick labels, counts); see [`text_available`]. If drawing with text
//! fails for any reason, the picture is redrawn without text rather than failing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context as _, anyhow};
use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{EpochRow, write_atomic};

/// Environment variable naming a `.ttf`/`.otf` font file to use for picture text; the value
/// `none` disables text (pictures are drawn as without a font).
pub const FONT_ENV: &str = "DERMCLASS_FONT";
/// Pixel size (width, height) of `curves.png`.
pub const CURVES_SIZE: (u32, u32) = (1200, 480);
/// Pixel size (width, height) of `confusion.png`.
pub const CONFUSION_SIZE: (u32, u32) = (760, 720);
/// Pixel size (width, height) of the accuracy-vs-MAdds scatter.
pub const SCATTER_SIZE: (u32, u32) = (900, 600);

/// Font family name under which the runtime font is registered with plotters.
const FAMILY: &str = "sans-serif";

const KNOWN_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Any `.ttf` below `dir` (depth-limited), preferring names containing "Sans".
fn find_any_ttf(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && depth > 0 {
            find_any_ttf(&p, depth - 1, found);
        } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("ttf")) {
            found.push(p);
        }
    }
}

fn font_candidates() -> Vec<PathBuf> {
    let env = std::env::var_os(FONT_ENV);
    if env.as_deref() == Some(std::ffi::OsStr::new("none")) {
        return Vec::new();
    }
    let mut c: Vec<PathBuf> = env.map(PathBuf::from).into_iter().collect();
    c.extend(KNOWN_FONTS.iter().map(PathBuf::from));
    let mut any = Vec::new();
    find_any_ttf(Path::new("/usr/share/fonts"), 4, &mut any);
    any.sort_by_key(|p| {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        (
            !name.contains("Sans"),
            name.contains("Bold") || name.contains("Italic"),
            name,
        )
    });
    c.extend(any);
    c
}

/// Whether a font was found and registered, so pictures carry text. Loads it on first call.
pub fn text_available() -> bool {
    static LOADED: OnceLock<Option<PathBuf>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            for path in font_candidates() {
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                // plotters keeps `&'static` font data; one font is leaked once per process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                    return Some(path);
                }
            }
            None
        })
        .is_some()
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// A curve: points, colour, legend label, stroke width.
type Line = (Vec<(i64, f64)>, RGBColor, &'static str, u32);

/// Renders with `draw` (text on if a font is available; on failure retried without text),
/// encodes PNG and writes it atomically to `path`.
fn render_png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl Fn(&Area, bool) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    let attempt = |text: bool, buf: &mut Vec<u8>| -> anyhow::Result<()> {
        buf.fill(255);
        let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root, text)?;
        root.present()?;
        Ok(())
    };
    let text = text_available();
    if let Err(e) = attempt(text, &mut buf) {
        if !text {
            return Err(e.context(format!("drawing {}", path.display())));
        }
        attempt(false, &mut buf).with_context(|| format!("drawing {}", path.display()))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("bad buffer size"))?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)?;
    write_atomic(path, png.get_ref()).with_context(|| format!("writing {}", path.display()))
}

/// Text-free stand-in for the plotters mesh (whose tick labels need a font): a frame and a
/// 10 x 10 light grid over the plotting area.
fn plain_grid(area: &Area) -> anyhow::Result<()> {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let light = RGBColor(225, 225, 225);
    for i in 1..10 {
        let (x, y) = (w * i / 10, h * i / 10);
        area.draw(&PathElement::new(vec![(x, 0), (x, h - 1)], light))?;
        area.draw(&PathElement::new(vec![(0, y), (w - 1, y)], light))?;
    }
    area.draw(&Rectangle::new([(0, 0), (w - 1, h - 1)], BLACK))?;
    Ok(())
}

/// A chart builder on `area` with `margin`, and with `caption` and room for axis labels
/// (`label_areas`: below, left) when there is `text`.
fn chart_builder<'a, 'b>(
    area: &'a Area<'b>,
    text: bool,
    caption: &str,
    margin: u32,
    (below, left): (u32, u32),
) -> ChartBuilder<'a, 'static, BitMapBackend<'b>> {
    let mut b = ChartBuilder::on(area);
    b.margin(margin);
    if text {
        b.caption(caption, font(22.0))
            .x_label_area_size(below)
            .y_label_area_size(left);
    } else {
        b.x_label_area_size(8).y_label_area_size(8);
    }
    b
}

/// The mesh with light lines, axis descriptions and the plots' fonts; the caller may add
/// label settings before drawing it.
fn labelled_mesh<'a, 'm, 'b, X, Y>(
    chart: &'m mut ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>,
    x_desc: &str,
    y_desc: &str,
) -> MeshStyle<'a, 'm, X, Y, BitMapBackend<'b>>
where
    X: Ranged + ValueFormatter<X::ValueType>,
    Y: Ranged + ValueFormatter<Y::ValueType>,
{
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(font(14.0))
        .axis_desc_style(font(16.0));
    mesh
}

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// `[lo, hi]` of the finite values, padded; `default` when there are none.
fn finite_range(values: impl Iterator<Item = f64>, default: (f64, f64)) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        default
    } else if lo == hi {
        (lo - 0.5 * lo.abs().max(0.1), hi + 0.5 * hi.abs().max(0.1))
    } else {
        let pad = 0.05 * (hi - lo);
        (lo - pad, hi + pad)
    }
}

/// Draws `curves.png`: left panel train and validation loss per epoch, right panel validation
/// balanced accuracy (and plain accuracy, thinner) per epoch. Non-finite values are skipped.
/// An empty history gives empty axes.
pub fn plot_curves(path: impl AsRef<Path>, epochs: &[EpochRow]) -> anyhow::Result<()> {
    let e_lo = epochs.iter().map(|r| r.epoch).min().unwrap_or(0) as i64;
    let e_hi = (epochs.iter().map(|r| r.epoch).max().unwrap_or(1) as i64).max(e_lo + 1);
    let (_, loss_hi) = finite_range(
        epochs.iter().flat_map(|r| [r.train_loss, r.val_loss]),
        (0.0, 1.0),
    );
    let loss_hi = loss_hi.max(1e-3);
    let series = |f: fn(&EpochRow) -> f64| -> Vec<(i64, f64)> {
        epochs
            .iter()
            .map(|r| (r.epoch as i64, f(r)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    };
    render_png(path.as_ref(), CURVES_SIZE, |root, text| {
        let (left, right) = root.split_horizontally(CURVES_SIZE.0 / 2);
        let panels: [(&Area, &str, &str, f64); 2] = [
            (&left, "Loss", "loss", loss_hi),
            (&right, "Validation accuracy", "accuracy", 1.0),
        ];
        for (i, (area, title, y_desc, y_hi)) in panels.into_iter().enumerate() {
            let mut chart = chart_builder(area, text, title, 14, (40, 56))
                .build_cartesian_2d(e_lo..e_hi, 0.0..y_hi)?;
            if text {
                labelled_mesh(&mut chart, "epoch", y_desc)
                    .x_labels(((e_hi - e_lo) as usize + 1).min(12))
                    .draw()?;
            } else {
                plain_grid(&chart.plotting_area().strip_coord_spec())?;
            }
            let lines: Vec<Line> = if i == 0 {
                vec![
                    (
                        series(|r| r.train_loss),
                        RGBColor(31, 119, 180),
                        "train loss",
                        2,
                    ),
                    (series(|r| r.val_loss), RGBColor(214, 39, 40), "val loss", 2),
                ]
            } else {
                vec![
                    (
                        series(|r| r.val_balanced_accuracy),
                        RGBColor(44, 160, 44),
                        "val balanced accuracy",
                        3,
                    ),
                    (
                        series(|r| r.val_accuracy),
                        RGBColor(150, 150, 150),
                        "val accuracy",
                        1,
                    ),
                ]
            };
            for (points, color, label, width) in lines {
                let style = color.stroke_width(width);
                let s = chart.draw_series(LineSeries::new(points.clone(), style))?;
                if text {
                    s.label(label).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
                    });
                }
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
            if text {
                chart
                    .configure_series_labels()
                    .position(if i == 0 {
                        SeriesLabelPosition::UpperRight
                    } else {
                        SeriesLabelPosition::LowerRight
                    })
                    .label_font(font(14.0))
                    .background_style(WHITE.mix(0.85))
                    .border_style(RGBColor(200, 200, 200))
                    .draw()?;
            }
        }
        Ok(())
    })
}

/// Colour of a cell whose row-normalised value is `v` in [0, 1]: white to dark blue.
fn heat(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * v).round() as u8;
    RGBColor(lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0))
}

/// Draws `confusion.png`: a heat map with rows = true class, columns = predicted class. Each
/// cell shows its count (and its share of the row); colours are row-normalised (each row's
/// counts divided by the row total, so minority classes are as readable as NV).
pub fn plot_confusion<S: AsRef<str>>(
    path: impl AsRef<Path>,
    confusion: &[Vec<u64>],
    class_names: &[S],
) -> anyhow::Result<()> {
    let n = class_names.len();
    if n == 0 || confusion.len() != n || confusion.iter().any(|r| r.len() != n) {
        return Err(anyhow!(
            "{}: confusion matrix must be {n} x {n} for {n} class names",
            path.as_ref().display()
        ));
    }
    let names: Vec<&str> = class_names.iter().map(AsRef::as_ref).collect();
    let (w, h) = (CONFUSION_SIZE.0 as i32, CONFUSION_SIZE.1 as i32);
    render_png(path.as_ref(), CONFUSION_SIZE, |root, text| {
        let (left, top, right, bottom) = if text {
            (130, 60, 30, 90)
        } else {
            (20, 20, 20, 20)
        };
        let cell = ((w - left - right) / n as i32)
            .min((h - top - bottom) / n as i32)
            .max(1);
        let x0 = left + (w - left - right - cell * n as i32) / 2;
        let y0 = top;
        let center = Pos::new(HPos::Center, VPos::Center);
        let count_size = (cell as f64 * 0.28).clamp(8.0, 22.0);
        for (t, row) in confusion.iter().enumerate() {
            let total: u64 = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let v = if total > 0 {
                    count as f64 / total as f64
                } else {
                    0.0
                };
                let (cx, cy) = (x0 + p as i32 * cell, y0 + t as i32 * cell);
                root.draw(&Rectangle::new(
                    [(cx, cy), (cx + cell, cy + cell)],
                    heat(v).filled(),
                ))?;
                root.draw(&Rectangle::new(
                    [(cx, cy), (cx + cell, cy + cell)],
                    RGBColor(255, 255, 255).stroke_width(1),
                ))?;
                if text {
                    let color = if v > 0.5 { WHITE } else { BLACK };
                    let mid = (cx + cell / 2, cy + cell / 2);
                    let show_share = total > 0 && cell >= 48;
                    let dy = if show_share {
                        (count_size * 0.45) as i32
                    } else {
                        0
                    };
                    root.draw(&Text::new(
                        count.to_string(),
                        (mid.0, mid.1 - dy),
                        font(count_size).color(&color).pos(center),
                    ))?;
                    if show_share {
                        root.draw(&Text::new(
                            format!("{:.0}%", 100.0 * v),
                            (mid.0, mid.1 + (count_size * 0.6) as i32),
                            font(count_size * 0.6).color(&color).pos(center),
                        ))?;
                    }
                }
            }
        }
        if text {
            let label = (cell as f64 * 0.25).clamp(9.0, 16.0);
            let grid_bottom = y0 + cell * n as i32;
            for (i, name) in names.iter().enumerate() {
                let c = i as i32 * cell + cell / 2;
                root.draw(&Text::new(
                    name.to_string(),
                    (x0 - 8, y0 + c),
                    font(label).pos(Pos::new(HPos::Right, VPos::Center)),
                ))?;
                root.draw(&Text::new(
                    name.to_string(),
                    (x0 + c, grid_bottom + 8),
                    font(label).pos(Pos::new(HPos::Center, VPos::Top)),
                ))?;
            }
            let total: u64 = confusion.iter().flatten().sum();
            root.draw(&Text::new(
                format!("Confusion matrix (n = {total}, colours normalised per true class)"),
                (w / 2, 28),
                font(18.0).pos(center),
            ))?;
            root.draw(&Text::new(
                "predicted class",
                (x0 + cell * n as i32 / 2, grid_bottom + 50),
                font(16.0).pos(center),
            ))?;
            root.draw(&Text::new(
                "true class",
                (22, y0 + cell * n as i32 / 2),
                font(16.0).transform(FontTransform::Rotate270).pos(center),
            ))?;
        }
        Ok(())
    })
}

/// The x axis of an accuracy-vs-cost scatter: what the cost is and how its ticks read.
#[derive(Clone, Copy, Debug)]
pub struct CostAxis {
    /// Chart title.
    pub title: &'static str,
    /// Axis description (the axis is log-scale).
    pub label: &'static str,
    /// Tick text of a value.
    pub ticks: fn(&f64) -> String,
}

/// Multiply-adds per image, with SI prefixes.
pub const MADDS_AXIS: CostAxis = CostAxis {
    title: "Balanced accuracy vs. cost",
    label: "multiply-adds per image (MAdds, log scale)",
    ticks: |x| format_si(*x),
};

/// Batch-1 inference latency in milliseconds.
pub const LATENCY_AXIS: CostAxis = CostAxis {
    title: "Balanced accuracy vs. latency",
    label: "batch-1 inference latency (ms per image, log scale)",
    ticks: |x| {
        if *x >= 10.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.1}")
        }
    },
};

/// Draws an accuracy-vs-cost scatter: one labelled point per architecture at
/// (`cost`, `bacc`) on a log-scale x axis described by `axis`. Points with non-positive or
/// non-finite coordinates are skipped.
pub fn plot_accuracy_vs_cost<S: AsRef<str>>(
    path: impl AsRef<Path>,
    axis: CostAxis,
    points: &[(S, f64, f64)],
) -> anyhow::Result<()> {
    let pts: Vec<(&str, f64, f64)> = points
        .iter()
        .map(|(l, x, y)| (l.as_ref(), *x, *y))
        .filter(|(_, x, y)| x.is_finite() && *x > 0.0 && y.is_finite())
        .collect();
    let (x_lo, x_hi) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let (x_lo, x_hi) = if pts.is_empty() {
        (1.0, 1000.0)
    } else {
        (x_lo / 2.0, x_hi * 2.0)
    };
    let (y_lo, y_hi) = finite_range(pts.iter().map(|p| p.2), (0.0, 1.0));
    let (y_lo, y_hi) = (
        (y_lo - 0.05).max(0.0),
        (y_hi + 0.05).min(1.0).max(y_lo + 0.01),
    );
    render_png(path.as_ref(), SCATTER_SIZE, |root, text| {
        let mut chart = chart_builder(root, text, axis.title, 20, (46, 64))
            .build_cartesian_2d((x_lo..x_hi).log_scale(), y_lo..y_hi)?;
        if text {
            labelled_mesh(&mut chart, axis.label, "balanced accuracy")
                .x_label_formatter(&axis.ticks)
                .draw()?;
        } else {
            plain_grid(&chart.plotting_area().strip_coord_spec())?;
        }
        let color = RGBColor(31, 119, 180);
        chart.draw_series(
            pts.iter()
                .map(|&(_, x, y)| Circle::new((x, y), 6, color.filled())),
        )?;
        if text {
            chart.draw_series(pts.iter().map(|&(label, x, y)| {
                EmptyElement::at((x, y)) + Text::new(label.to_string(), (9, -16), font(14.0))
            }))?;
        }
        Ok(())
    })
}

/// Draws a reliability diagram: per confidence bin, the accuracy (bars) against the
/// diagonal of perfect calibration, with the ECE in the caption. Empty bins draw nothing.
pub fn plot_reliability(
    path: impl AsRef<Path>,
    calibration: &crate::calibration::Calibration,
) -> anyhow::Result<()> {
    let width = 1.0 / calibration.bins.len().max(1) as f64;
    render_png(path.as_ref(), (640, 560), |root, text| {
        let caption = format!("Reliability (ECE {:.3})", calibration.ece);
        let mut chart = chart_builder(root, text, &caption, 20, (46, 64))
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        if text {
            labelled_mesh(&mut chart, "confidence of the top class", "accuracy").draw()?;
        } else {
            plain_grid(&chart.plotting_area().strip_coord_spec())?;
        }
        let bar = RGBColor(31, 119, 180);
        chart.draw_series(calibration.bins.iter().filter(|b| b.count > 0).map(|b| {
            Rectangle::new(
                [(b.lower, 0.0), (b.lower + width * 0.92, b.accuracy)],
                bar.filled(),
            )
        }))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            RGBColor(200, 60, 40).stroke_width(2),
        )))?;
        Ok(())
    })
}

/// `1.5k`, `300M`, `2G` style number for axis labels.
fn format_si(x: f64) -> String {
    let (v, unit) = if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let s = format!("{v:.1}");
    let s = s.strip_suffix(".0").unwrap_or(&s);
    format!("{s}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(path: &Path) -> image::RgbImage {
        let img = image::open(path).expect("valid PNG").to_rgb8();
        // Not blank: some pixel differs from white.
        assert!(img.pixels().any(|p| p.0 != [255, 255, 255]));
        img
    }

    fn rows(n: usize) -> Vec<EpochRow> {
        (1..=n)
            .map(|e| EpochRow {
                epoch: e,
                train_loss: 1.6 * (-(e as f64) / 6.0).exp() + 0.2,
                val_loss: 1.5 * (-(e as f64) / 8.0).exp() + 0.35,
                val_accuracy: 0.67 + 0.15 * (1.0 - (-(e as f64) / 5.0).exp()),
                val_balanced_accuracy: 0.14 + 0.5 * (1.0 - (-(e as f64) / 6.0).exp()),
                val_macro_auc: 0.9,
                lr: 1e-3,
                seconds: 60.0,
                images_per_second: 150.0,
            })
            .collect()
    }

    #[test]
    fn curves_png() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("curves.png");
        plot_curves(&p, &rows(20)).unwrap();
        assert_eq!(decode(&p).dimensions(), CURVES_SIZE);
        // Degenerate inputs still give a picture.
        let mut one = rows(1);
        one[0].val_loss = f64::NAN;
        plot_curves(&p, &one).unwrap();
        assert_eq!(decode(&p).dimensions(), CURVES_SIZE);
        plot_curves(&p, &[]).unwrap();
        assert_eq!(decode(&p).dimensions(), CURVES_SIZE);
        if std::env::var_os("DERMCLASS_KEEP_PLOTS").is_some() {
            plot_curves("/tmp/dermclass-curves.png", &rows(20)).unwrap();
        }
    }

    const ISIC: [&str; 7] = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];

    fn confusion() -> Vec<Vec<u64>> {
        vec![
            vec![70, 30, 2, 1, 8, 0, 0],
            vec![40, 600, 3, 2, 22, 2, 1],
            vec![3, 4, 40, 3, 1, 0, 0],
            vec![2, 1, 5, 20, 4, 1, 0],
            vec![9, 20, 2, 3, 75, 1, 0],
            vec![0, 3, 1, 0, 1, 6, 0],
            vec![0, 2, 0, 0, 0, 0, 12],
        ]
    }

    #[test]
    fn confusion_png() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("confusion.png");
        plot_confusion(&p, &confusion(), &ISIC).unwrap();
        let img = decode(&p);
        assert_eq!(img.dimensions(), CONFUSION_SIZE);
        // A class absent from the truth (empty row) is fine.
        let mut c = confusion();
        c[5] = vec![0; 7];
        plot_confusion(&p, &c, &ISIC).unwrap();
        assert!(plot_confusion(&p, &c, &ISIC[..3]).is_err());
        if std::env::var_os("DERMCLASS_KEEP_PLOTS").is_some() {
            plot_confusion("/tmp/dermclass-confusion.png", &confusion(), &ISIC).unwrap();
        }
    }

    #[test]
    fn scatter_png() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bacc_vs_madds.png");
        let pts = [
            ("mobilenet_v3_small", 56e6, 0.64),
            ("mobilenet_v2", 300e6, 0.71),
            ("efficientnet_b0", 390e6, 0.74),
            ("tiny_cnn", 12e6, 0.48),
            ("bad", -1.0, 0.5),
        ];
        plot_accuracy_vs_cost(&p, MADDS_AXIS, &pts).unwrap();
        assert_eq!(decode(&p).dimensions(), SCATTER_SIZE);
        plot_accuracy_vs_cost(&p, MADDS_AXIS, &[("one", 1e6, 0.5)]).unwrap();
        let none: [(&str, f64, f64); 0] = [];
        plot_accuracy_vs_cost(&p, MADDS_AXIS, &none).unwrap();
        assert_eq!(decode(&p).dimensions(), SCATTER_SIZE);
        let latency = dir.path().join("bacc_vs_latency.png");
        plot_accuracy_vs_cost(&latency, LATENCY_AXIS, &[("a", 4.2, 0.6), ("b", 85.0, 0.7)])
            .unwrap();
        assert_eq!(decode(&latency).dimensions(), SCATTER_SIZE);
        if std::env::var_os("DERMCLASS_KEEP_PLOTS").is_some() {
            plot_accuracy_vs_cost("/tmp/dermclass-scatter.png", MADDS_AXIS, &pts).unwrap();
        }
    }

    #[test]
    fn no_text_mode_draws() {
        // The fallback path (no font) must draw without touching any font.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.png");
        let result = render_png(&p, (200, 100), |root, text| {
            if text {
                // Force the retry without text.
                return Err(anyhow!("simulated font failure"));
            }
            root.draw(&Rectangle::new([(10, 10), (50, 50)], BLUE.filled()))?;
            Ok(())
        });
        result.unwrap();
        assert_eq!(decode(&p).dimensions(), (200, 100));
    }

    /// Run in a child process by `all_plots_without_font` (the font choice is per process).
    #[test]
    #[ignore = "run by all_plots_without_font in a child process"]
    fn child_plots_without_font() {
        assert!(!text_available(), "DERMCLASS_FONT=none must disable text");
        let dir = std::env::var("DERMCLASS_CHILD_DIR").expect("child dir");
        let dir = Path::new(&dir);
        plot_curves(dir.join("curves.png"), &rows(5)).unwrap();
        plot_confusion(dir.join("confusion.png"), &confusion(), &ISIC).unwrap();
        plot_accuracy_vs_cost(
            dir.join("scatter.png"),
            MADDS_AXIS,
            &[("a", 1e6, 0.5), ("b", 1e8, 0.7)],
        )
        .unwrap();
    }

    #[test]
    fn all_plots_without_font() {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "report::plots::tests::child_plots_without_font",
                "--ignored",
                "--test-threads=1",
            ])
            .env(FONT_ENV, "none")
            .env("DERMCLASS_CHILD_DIR", dir.path())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{log}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(log.contains("1 passed"), "{log}");
        assert_eq!(
            decode(&dir.path().join("curves.png")).dimensions(),
            CURVES_SIZE
        );
        assert_eq!(
            decode(&dir.path().join("confusion.png")).dimensions(),
            CONFUSION_SIZE
        );
        assert_eq!(
            decode(&dir.path().join("scatter.png")).dimensions(),
            SCATTER_SIZE
        );
        if std::env::var_os("DERMCLASS_KEEP_PLOTS").is_some() {
            for f in ["curves.png", "confusion.png", "scatter.png"] {
                std::fs::copy(dir.path().join(f), format!("/tmp/dermclass-nofont-{f}")).unwrap();
            }
        }
    }

    #[test]
    fn si_labels() {
        assert_eq!(format_si(1.5e3), "1.5k");
        assert_eq!(format_si(3e8), "300M");
        assert_eq!(format_si(2e9), "2G");
        assert_eq!(format_si(10.0), "10");
    }
}
