//! Source formats and bad-input handling, on small data the tests write.

use std::fs;
use std::path::Path;

use crate::helpers::*;
use dermclass::data::{
    self, DataError, Dataset, OpenOptions, SourceFormat, check_images, load_image_rgb,
};
use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};

fn open_skip(root: &Path) -> Result<Dataset, DataError> {
    Dataset::open_with(
        root,
        &OpenOptions {
            skip_bad: true,
            ..Default::default()
        },
    )
}

/// An ISIC layout in `root` with `n` images of each class, each class one lesion: image `i`
/// belongs to lesion `L{i / n}`.
fn write_isic_one_lesion_per_class(root: &Path, n: usize) {
    let labels = labels_each(n);
    let lesions: Vec<String> = (0..labels.len()).map(|i| format!("L{}", i / n)).collect();
    let les: Vec<&str> = lesions.iter().map(String::as_str).collect();
    write_isic(root, &labels, Some(&les));
}

#[test]
fn isic_layout_is_detected_and_read() {
    let dir = tempfile::tempdir().unwrap();
    write_isic_one_lesion_per_class(dir.path(), 2);
    let ds = Dataset::open(dir.path(), None).unwrap();
    assert_eq!(ds.format, SourceFormat::Isic);
    assert_eq!(ds.classes, CLASSES);
    assert_eq!(ds.class_counts(), vec![2; 7]);
    assert_eq!(ds.samples.len(), 14);
    assert_eq!(ds.lesion_count(), 7);
    assert_eq!(ds.samples[3].lesion_id.as_deref(), Some("L1"));
    assert_eq!(ds.samples[3].id, "ISIC_0000003");
    assert!(ds.warnings.is_empty());
    // Forcing the format works too.
    let ds2 = Dataset::open(dir.path(), Some(SourceFormat::Isic)).unwrap();
    assert_eq!(ds2.samples, ds.samples);
}

#[test]
fn isic_ground_truth_inside_official_folder() {
    let dir = tempfile::tempdir().unwrap();
    write_isic(dir.path(), &labels_each(1), None);
    let gt_dir = dir.path().join("ISIC2018_Task3_Training_GroundTruth");
    fs::create_dir_all(&gt_dir).unwrap();
    fs::rename(
        dir.path().join("ISIC2018_Task3_Training_GroundTruth.csv"),
        gt_dir.join("ISIC2018_Task3_Training_GroundTruth.csv"),
    )
    .unwrap();
    let ds = Dataset::open(dir.path(), None).unwrap();
    assert_eq!(ds.class_counts(), vec![1; 7]);
    assert!(ds.samples.iter().all(|s| s.lesion_id.is_none()));
}

#[test]
fn ham10000_layout_is_detected_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let p1 = root.join("HAM10000_images_part_1");
    let p2 = root.join("HAM10000_images_part_2");
    fs::create_dir_all(&p1).unwrap();
    fs::create_dir_all(&p2).unwrap();
    let dx = ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"];
    let mut meta = String::from("lesion_id,image_id,dx,dx_type,age,sex,localization\n");
    for i in 0..14 {
        let id = format!("ISIC_{i:07}");
        let folder = if i % 2 == 0 { &p1 } else { &p2 };
        save_jpeg(&tiny_image(i, 10, 8), &folder.join(format!("{id}.jpg")));
        meta.push_str(&format!(
            "HAM_{:07},{id},{},histo,45.0,male,back\n",
            i / 2,
            dx[i as usize % 7]
        ));
    }
    fs::write(root.join("HAM10000_metadata.csv"), meta).unwrap();
    let ds = Dataset::open(root, None).unwrap();
    assert_eq!(ds.format, SourceFormat::Ham10000);
    assert_eq!(ds.classes, CLASSES);
    assert_eq!(ds.class_counts(), vec![2; 7]);
    assert_eq!(ds.lesion_count(), 7);
    assert_eq!(ds.samples[1].label, 1);
    assert_eq!(ds.samples[1].lesion_id.as_deref(), Some("HAM_0000000"));
}

#[test]
fn folders_layout_with_isic_codes_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    for (c, name) in ["vasc", "Mel", "NV"].iter().enumerate() {
        let d = dir.path().join(name);
        fs::create_dir_all(&d).unwrap();
        for k in 0..(c + 1) {
            save_jpeg(
                &tiny_image(k as u32, 8, 8),
                &d.join(format!("{name}_{k}.jpg")),
            );
        }
    }
    let ds = Dataset::open(dir.path(), None).unwrap();
    assert_eq!(ds.format, SourceFormat::Folders);
    // Official order among the codes present.
    assert_eq!(ds.classes, vec!["MEL", "NV", "VASC"]);
    assert_eq!(ds.class_counts(), vec![2, 3, 1]);
}

#[test]
fn folders_layout_with_any_class_names_sorted() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["zebra", "apple", "Mango"] {
        let d = dir.path().join(name);
        fs::create_dir_all(&d).unwrap();
        save_jpeg(&tiny_image(1, 8, 8), &d.join(format!("{name}.jpg")));
        fs::write(d.join("notes.txt"), "ignored").unwrap();
    }
    let ds = Dataset::open(dir.path(), Some(SourceFormat::Folders)).unwrap();
    assert_eq!(ds.classes, vec!["Mango", "apple", "zebra"]);
    assert_eq!(ds.class_counts(), vec![1, 1, 1]);
}

#[test]
fn prepare_writes_folders_that_read_back_with_lesions() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_isic_one_lesion_per_class(src.path(), 3);
    let ds = Dataset::open(src.path(), None).unwrap();
    let s = data::prepare::prepare(&ds, out.path()).unwrap();
    assert_eq!(s.counts, vec![3; 7]);
    assert_eq!(s.linked + s.copied, 21);
    let back = Dataset::open(out.path(), None).unwrap();
    assert_eq!(back.format, SourceFormat::Folders);
    assert_eq!(back.classes, CLASSES);
    assert_eq!(back.class_counts(), vec![3; 7]);
    assert_eq!(back.lesion_count(), 7);
    // Running it twice is fine.
    data::prepare::prepare(&ds, out.path()).unwrap();
}

#[test]
fn synth_generates_a_readable_isic_set() {
    let dir = tempfile::tempdir().unwrap();
    let s = data::synth::generate(dir.path(), 10, 32, 24, 5).unwrap();
    assert_eq!(s.images, 70);
    assert!(s.lesions < 70, "some lesions have several images");
    let mut ds = Dataset::open(dir.path(), None).unwrap();
    assert_eq!(ds.class_counts(), vec![10; 7]);
    assert_eq!(ds.lesion_count(), s.lesions);
    let r = check_images(&mut ds, false).unwrap();
    assert_eq!(r.ok, 70);
    let img = load_image_rgb(&ds.samples[0].path).unwrap();
    assert_eq!(img.dimensions(), (32, 24));
    // Deterministic.
    let dir2 = tempfile::tempdir().unwrap();
    data::synth::generate(dir2.path(), 10, 32, 24, 5).unwrap();
    for f in [
        "ISIC2018_Task3_Training_GroundTruth.csv",
        "ISIC2018_Task3_Training_LesionGroupings.csv",
    ] {
        assert_eq!(
            fs::read(dir.path().join(f)).unwrap(),
            fs::read(dir2.path().join(f)).unwrap()
        );
    }
}

// ------------------------------------------------------------------ bad input

fn isic_with_one_bad(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write_isic(dir.path(), &labels_each(2), None);
    let bad = dir
        .path()
        .join("ISIC2018_Task3_Training_Input/ISIC_0000004.jpg");
    fs::write(&bad, bytes).unwrap();
    (dir, bad)
}

fn assert_check_fails_naming(dir: &Path, bad: &Path, what: &str) {
    let mut ds = Dataset::open(dir, None).unwrap();
    let err = check_images(&mut ds, false).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&bad.display().to_string()), "{msg}");
    assert!(msg.contains(what), "{msg}");
    // --skip-bad continues and reports.
    let mut ds = Dataset::open(dir, None).unwrap();
    let r = check_images(&mut ds, true).unwrap();
    assert_eq!(r.ok, 13);
    assert_eq!(r.bad.len(), 1);
    assert_eq!(ds.samples.len(), 13);
    assert_eq!(ds.skipped.len(), 1);
    assert!(ds.samples.iter().all(|s| s.id != "ISIC_0000004"));
}

#[test]
fn truncated_jpeg_is_reported() {
    let mut buf = std::io::Cursor::new(Vec::new());
    tiny_image(3, 64, 64)
        .write_to(&mut buf, image::ImageFormat::Jpeg)
        .unwrap();
    let bytes = buf.into_inner();
    let (dir, bad) = isic_with_one_bad(&bytes[..bytes.len() / 3]);
    assert_check_fails_naming(dir.path(), &bad, "cannot decode");
}

#[test]
fn corrupt_jpeg_is_reported() {
    // A JPEG signature followed by garbage.
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend((0..500u32).map(|i| (i * 7919 % 251) as u8));
    let (dir, bad) = isic_with_one_bad(&bytes);
    assert_check_fails_naming(dir.path(), &bad, "cannot decode");
}

#[test]
fn zero_byte_file_is_reported() {
    let (dir, bad) = isic_with_one_bad(b"");
    assert_check_fails_naming(dir.path(), &bad, "empty file");
}

#[test]
fn non_image_with_jpg_name_is_reported() {
    let (dir, bad) = isic_with_one_bad(b"<html>not an image</html>\n");
    assert_check_fails_naming(dir.path(), &bad, "not a recognised image");
}

#[test]
fn grayscale_rgba_16bit_and_cmyk_are_converted_to_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gray = ImageBuffer::from_fn(5, 4, |x, _| Luma([(x * 50) as u8]));
    DynamicImage::ImageLuma8(gray)
        .save(d.join("g.png"))
        .unwrap();
    let ga = ImageBuffer::from_fn(5, 4, |x, _| LumaA([(x * 50) as u8, 128]));
    DynamicImage::ImageLumaA8(ga)
        .save(d.join("ga.png"))
        .unwrap();
    let rgba = ImageBuffer::from_fn(5, 4, |x, y| Rgba([x as u8 * 10, y as u8 * 10, 7, 0]));
    DynamicImage::ImageRgba8(rgba)
        .save(d.join("rgba.png"))
        .unwrap();
    let g16 = ImageBuffer::from_fn(5, 4, |x, _| Luma([x as u16 * 10000]));
    DynamicImage::ImageLuma16(g16)
        .save(d.join("g16.png"))
        .unwrap();
    let c16 = ImageBuffer::from_fn(5, 4, |x, _| Rgb([x as u16 * 10000, 0, 65535]));
    DynamicImage::ImageRgb16(c16)
        .save(d.join("c16.png"))
        .unwrap();
    let gj = ImageBuffer::from_fn(16, 16, |x, _| Luma([(x * 16) as u8]));
    DynamicImage::ImageLuma8(gj)
        .save(d.join("gray.jpg"))
        .unwrap();

    let g = load_image_rgb(&d.join("g.png")).unwrap();
    assert_eq!(*g.get_pixel(2, 0), Rgb([100, 100, 100]));
    let g = load_image_rgb(&d.join("ga.png")).unwrap();
    assert_eq!(*g.get_pixel(2, 0), Rgb([100, 100, 100]));
    let g = load_image_rgb(&d.join("rgba.png")).unwrap();
    assert_eq!(*g.get_pixel(3, 2), Rgb([30, 20, 7]));
    let g = load_image_rgb(&d.join("g16.png")).unwrap();
    assert_eq!(g.get_pixel(4, 0)[0], (40000u32 * 255 / 65535) as u8 + 1);
    let g = load_image_rgb(&d.join("c16.png")).unwrap();
    assert_eq!(g.get_pixel(0, 0)[2], 255);
    let g = load_image_rgb(&d.join("gray.jpg")).unwrap();
    assert_eq!(g.dimensions(), (16, 16));

    // CMYK (TIFF; image converts CMYK to RGB).
    let path = d.join("cmyk.tif");
    {
        let f = fs::File::create(&path).unwrap();
        let mut enc = tiff::encoder::TiffEncoder::new(f).unwrap();
        // C=0,M=255,Y=255,K=0 -> red; all zero -> white.
        let mut px = Vec::new();
        for i in 0..4 {
            if i % 2 == 0 {
                px.extend([0u8, 255, 255, 0]);
            } else {
                px.extend([0u8, 0, 0, 0]);
            }
        }
        enc.write_image::<tiff::encoder::colortype::CMYK8>(2, 2, &px)
            .unwrap();
    }
    let g = load_image_rgb(&path).unwrap();
    assert_eq!(*g.get_pixel(0, 0), Rgb([255, 0, 0]));
    assert_eq!(*g.get_pixel(1, 0), Rgb([255, 255, 255]));
}

#[test]
fn image_listed_but_missing_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write_isic(dir.path(), &labels_each(2), None);
    fs::remove_file(
        dir.path()
            .join("ISIC2018_Task3_Training_Input/ISIC_0000005.jpg"),
    )
    .unwrap();
    let err = Dataset::open(dir.path(), None).unwrap_err();
    assert!(matches!(err, DataError::MissingImage { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("ISIC_0000005") && msg.contains("GroundTruth.csv"),
        "{msg}"
    );
    let ds = open_skip(dir.path()).unwrap();
    assert_eq!(ds.samples.len(), 13);
    assert_eq!(ds.skipped.len(), 1);
    assert_eq!(ds.skipped[0].kind, "missing image");
}

#[test]
fn image_on_disk_but_not_in_csv_is_warned() {
    let dir = tempfile::tempdir().unwrap();
    write_isic(dir.path(), &labels_each(1), None);
    save_jpeg(
        &tiny_image(99, 8, 8),
        &dir.path()
            .join("ISIC2018_Task3_Training_Input/ISIC_9999999.jpg"),
    );
    let ds = Dataset::open(dir.path(), None).unwrap();
    assert_eq!(ds.samples.len(), 7);
    assert_eq!(ds.warnings.len(), 1);
    assert!(ds.warnings[0].message.contains("ISIC_9999999"));
    assert!(ds.warnings[0].message.contains("not listed"));
}

fn rewrite_gt(dir: &Path, f: impl Fn(String) -> String) {
    let p = dir.join("ISIC2018_Task3_Training_GroundTruth.csv");
    let s = fs::read_to_string(&p).unwrap();
    fs::write(&p, f(s)).unwrap();
}

#[test]
fn row_not_one_hot_is_an_error() {
    for bad in ["1.0,1.0,0.0", "0.0,0.0,0.0", "0.5,0.5,0.0", "x,0.0,0.0"] {
        let dir = tempfile::tempdir().unwrap();
        write_isic(dir.path(), &labels_each(2), None);
        rewrite_gt(dir.path(), |s| {
            s.replacen(
                "ISIC_0000000,1.0,0.0,0.0",
                &format!("ISIC_0000000,{bad}"),
                1,
            )
        });
        let err = Dataset::open(dir.path(), None).unwrap_err();
        assert!(matches!(err, DataError::NotOneHot { .. }), "{bad}: {err}");
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(err.to_string().contains("ISIC_0000000"), "{err}");
        let ds = open_skip(dir.path()).unwrap();
        assert_eq!(ds.samples.len(), 13);
    }
}

#[test]
fn unknown_column_and_unknown_class_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_isic(dir.path(), &labels_each(1), None);
    rewrite_gt(dir.path(), |s| s.replacen("VASC", "VASCULAR", 1));
    let err = Dataset::open(dir.path(), None).unwrap_err();
    assert!(matches!(err, DataError::UnknownColumn { .. }), "{err}");
    assert!(err.to_string().contains("VASCULAR"));

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let imgs = root.join("imgs");
    fs::create_dir_all(&imgs).unwrap();
    let mut meta = String::from("lesion_id,image_id,dx\n");
    for (i, dx) in ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc", "scc"]
        .iter()
        .enumerate()
    {
        save_jpeg(
            &tiny_image(i as u32, 8, 8),
            &imgs.join(format!("IMG_{i}.jpg")),
        );
        meta.push_str(&format!("L{i},IMG_{i},{dx}\n"));
    }
    fs::write(root.join("HAM10000_metadata.csv"), meta).unwrap();
    let err = Dataset::open(root, None).unwrap_err();
    assert!(matches!(err, DataError::UnknownClass { .. }), "{err}");
    assert!(err.to_string().contains("scc") && err.to_string().contains("IMG_7"));
    assert_eq!(open_skip(root).unwrap().samples.len(), 7);
}

#[test]
fn empty_class_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // No DF image.
    let labels: Vec<usize> = labels_each(1).into_iter().filter(|&l| l != 5).collect();
    write_isic(dir.path(), &labels, None);
    let err = Dataset::open(dir.path(), None).unwrap_err();
    assert!(matches!(err, DataError::EmptyClass { .. }), "{err}");
    assert!(err.to_string().contains("DF"));
    let ds = open_skip(dir.path()).unwrap();
    assert_eq!(ds.class_counts()[5], 0);
    assert_eq!(ds.warnings.len(), 1);

    // Empty class folder.
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("MEL")).unwrap();
    fs::create_dir_all(dir.path().join("NV")).unwrap();
    save_jpeg(&tiny_image(1, 8, 8), &dir.path().join("NV/a.jpg"));
    let err = Dataset::open(dir.path(), None).unwrap_err();
    assert!(err.to_string().contains("MEL"), "{err}");
}

#[test]
fn duplicate_ids_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_isic(dir.path(), &labels_each(1), None);
    rewrite_gt(dir.path(), |s| {
        s + "ISIC_0000001,0.0,1.0,0.0,0.0,0.0,0.0,0.0\n"
    });
    let err = Dataset::open(dir.path(), None).unwrap_err();
    assert!(matches!(err, DataError::DuplicateId { .. }), "{err}");
    assert!(err.to_string().contains("ISIC_0000001"));
    assert_eq!(open_skip(dir.path()).unwrap().samples.len(), 7);

    // Same file stem in two class folders.
    let dir = tempfile::tempdir().unwrap();
    for c in ["MEL", "NV"] {
        fs::create_dir_all(dir.path().join(c)).unwrap();
        save_jpeg(&tiny_image(1, 8, 8), &dir.path().join(c).join("same.jpg"));
    }
    let err = Dataset::open(dir.path(), None).unwrap_err();
    assert!(matches!(err, DataError::DuplicateId { .. }), "{err}");
}

#[test]
fn missing_or_unrecognised_root_is_a_clear_error() {
    let err = Dataset::open(Path::new("/definitely/not/here"), None).unwrap_err();
    assert!(err.to_string().contains("/definitely/not/here"));
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("readme.txt"), "x").unwrap();
    let err = Dataset::open(dir.path(), None).unwrap_err();
    assert!(
        err.to_string().contains("unrecognised data layout"),
        "{err}"
    );
}

#[test]
fn isic_columns_may_come_in_any_order_or_subset_but_not_twice() {
    // Reordered columns: labels follow the column names, classes stay in official order.
    let dir = tempfile::tempdir().unwrap();
    write_isic(dir.path(), &labels_each(2), None);
    rewrite_gt(dir.path(), |s| {
        let mut lines = s.lines();
        let _ = lines.next();
        let mut out = String::from("image,VASC,DF,BKL,AKIEC,BCC,NV,MEL\n");
        for line in lines {
            let cells: Vec<&str> = line.split(',').collect();
            let mut row = vec![cells[0]];
            row.extend(cells[1..].iter().rev());
            out.push_str(&row.join(","));
            out.push('\n');
        }
        out
    });
    let reordered = Dataset::open(dir.path(), None).unwrap();
    let plain_dir = tempfile::tempdir().unwrap();
    write_isic(plain_dir.path(), &labels_each(2), None);
    let plain = Dataset::open(plain_dir.path(), None).unwrap();
    assert_eq!(reordered.classes, plain.classes);
    let labels = |d: &Dataset| d.samples.iter().map(|s| s.label).collect::<Vec<_>>();
    assert_eq!(labels(&reordered), labels(&plain));

    // A subset of the classes: only those columns, in official order.
    let dir = tempfile::tempdir().unwrap();
    write_isic(dir.path(), &[0, 1, 0, 1], None);
    rewrite_gt(dir.path(), |s| {
        s.lines()
            .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let two = Dataset::open(dir.path(), None).unwrap();
    assert_eq!(two.classes, vec!["MEL", "NV"]);
    assert_eq!(labels(&two), vec![0, 1, 0, 1]);

    // The same class twice is refused.
    let dir = tempfile::tempdir().unwrap();
    write_isic(dir.path(), &[0, 1], None);
    rewrite_gt(dir.path(), |s| {
        s.replacen("image,MEL,NV,", "image,MEL,MEL,", 1)
    });
    let err = Dataset::open(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("a class column appears twice"), "{err}");
}

#[test]
fn a_ragged_row_is_an_error_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write_isic(dir.path(), &labels_each(2), None);
    // The third line (ISIC_0000001) loses its last cell.
    rewrite_gt(dir.path(), |s| {
        s.lines()
            .map(|l| match l.strip_prefix("ISIC_0000001,") {
                Some(_) => l.rsplit_once(',').unwrap().0.to_string(),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let err = Dataset::open(dir.path(), None).unwrap_err().to_string();
    assert!(
        err.contains("ISIC2018_Task3_Training_GroundTruth.csv"),
        "{err}"
    );
    assert!(err.contains("line 3"), "{err}");
}
