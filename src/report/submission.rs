//! The ISIC 2018 Task 3 submission CSV: writer and validator.
//!
//! Format: a header `image,<class 1>,...,<class K>` (officially
//! `image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`, see [`ISIC2018_CLASSES`]), then one row per image:
//! the image id and its class probabilities as plain decimals in `[0, 1]` that always contain a
//! decimal point and never use exponent notation (`0.0`, `1.0`, `0.123457`), summing to 1.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use super::write_atomic;

/// The official ISIC 2018 Task 3 class order of the submission columns.
pub const ISIC2018_CLASSES: [&str; 7] = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"];

/// Largest allowed deviation of a row's sum from 1.
pub const SUM_TOLERANCE: f64 = 1e-4;

/// What is wrong with a submission (see [`SubmissionError`] for the file and line).
#[derive(Debug, Clone, PartialEq)]
pub enum SubmissionProblem {
    /// The file could not be read or written.
    Io(String),
    /// The header differs from the expected one.
    BadHeader {
        /// Expected header.
        expected: String,
        /// Header found.
        found: String,
    },
    /// A row does not have `1 + n_classes` fields.
    FieldCount {
        /// Expected number of fields.
        expected: usize,
        /// Number found.
        found: usize,
    },
    /// An image id is empty or contains characters that would need CSV quoting.
    BadId(String),
    /// An image id appears more than once.
    DuplicateId(String),
    /// An image id that is not among the expected ids.
    UnexpectedId(String),
    /// Expected ids absent from the file (first few listed) and how many there are.
    MissingIds {
        /// Up to five of the missing ids.
        first: Vec<String>,
        /// How many are missing.
        count: usize,
    },
    /// A probability is not a plain decimal with a decimal point, or is outside [0, 1].
    BadProbability {
        /// Column name.
        column: String,
        /// The text found (or the value given to the writer).
        value: String,
    },
    /// The probabilities of a row do not sum to 1 within [`SUM_TOLERANCE`].
    BadSum(f64),
    /// The writer got inconsistent inputs.
    Shape(String),
}

impl fmt::Display for SubmissionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::BadHeader { expected, found } => {
                write!(f, "header is `{found}`, expected `{expected}`")
            }
            Self::FieldCount { expected, found } => {
                write!(f, "{found} fields, expected {expected}")
            }
            Self::BadId(id) => write!(f, "invalid image id `{id}`"),
            Self::DuplicateId(id) => write!(f, "image `{id}` appears more than once"),
            Self::UnexpectedId(id) => write!(f, "unexpected image `{id}`"),
            Self::MissingIds { first, count } => write!(
                f,
                "{count} expected image(s) missing, e.g. {}",
                first.join(", ")
            ),
            Self::BadProbability { column, value } => write!(
                f,
                "column {column}: `{value}` is not a plain decimal in [0, 1] with a decimal point"
            ),
            Self::BadSum(s) => write!(
                f,
                "probabilities sum to {s}, not 1 (tolerance {SUM_TOLERANCE})"
            ),
            Self::Shape(s) => write!(f, "{s}"),
        }
    }
}

/// A submission problem with the file and, where it applies, the 1-based line (header = 1)
/// and image id.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionError {
    /// The submission file.
    pub path: PathBuf,
    /// 1-based line number in the file (the header is line 1).
    pub line: Option<usize>,
    /// Image id of the offending row, when known.
    pub image: Option<String>,
    /// What is wrong.
    pub problem: SubmissionProblem,
}

impl fmt::Display for SubmissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ": line {line}")?;
        }
        if let Some(image) = &self.image {
            write!(f, " (image {image})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for SubmissionError {}

impl SubmissionError {
    fn new(
        path: &Path,
        line: Option<usize>,
        image: Option<&str>,
        problem: SubmissionProblem,
    ) -> Self {
        SubmissionError {
            path: path.to_path_buf(),
            line,
            image: image.map(str::to_string),
            problem,
        }
    }
}

/// Formats a probability as a plain decimal with at most six decimals, trailing zeros trimmed
/// but always with a decimal point: `0.0`, `1.0`, `0.5`, `0.123457`. Values within 1e-6 outside
/// [0, 1] (float round-off) are clamped; others, and non-finite values, give `None`.
pub fn format_probability(p: f32) -> Option<String> {
    if !p.is_finite() || !(-1e-6..=1.0 + 1e-6).contains(&p) {
        return None;
    }
    // `<= 0.0` also catches -0.0, which would print as "-0.000000".
    let p = if p <= 0.0 { 0.0 } else { p.min(1.0) };
    let mut s = format!("{p:.6}");
    while s.ends_with('0') && !s.ends_with(".0") {
        s.pop();
    }
    Some(s)
}

/// True for a plain decimal `digits.digits` (no sign, no exponent).
fn is_plain_decimal(s: &str) -> bool {
    match s.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// An id is valid when non-empty and free of characters that CSV would quote.
fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.trim() == id && !id.contains([',', '"', '\n', '\r'])
}

fn header_line<S: AsRef<str>>(class_names: &[S]) -> String {
    std::iter::once("image")
        .chain(class_names.iter().map(AsRef::as_ref))
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes a submission atomically (temporary file + rename) to `path`.
///
/// `probs` is flat row-major: `image_ids.len() * class_names.len()` softmax probabilities, row
/// `i` for `image_ids[i]`, columns in `class_names` order (the header is written from
/// `class_names`, so pass [`ISIC2018_CLASSES`] order for an official submission). Fails —
/// writing nothing — on a shape mismatch, an empty/duplicate/CSV-unsafe id, a value that is not
/// a probability, or a row whose written values do not sum to 1 within [`SUM_TOLERANCE`].
pub fn write_submission<I: AsRef<str>, S: AsRef<str>>(
    path: impl AsRef<Path>,
    class_names: &[S],
    image_ids: &[I],
    probs: &[f32],
) -> Result<(), SubmissionError> {
    let path = path.as_ref();
    let err = |line, image, problem| SubmissionError::new(path, line, image, problem);
    let k = class_names.len();
    if k == 0 || probs.len() != image_ids.len() * k {
        return Err(err(
            None,
            None,
            SubmissionProblem::Shape(format!(
                "{} probabilities for {} images x {k} classes",
                probs.len(),
                image_ids.len()
            )),
        ));
    }
    let mut out = header_line(class_names);
    out.push('\n');
    let mut seen = HashSet::with_capacity(image_ids.len());
    for (i, (id, row)) in image_ids.iter().zip(probs.chunks_exact(k)).enumerate() {
        let id = id.as_ref();
        let line = Some(i + 2);
        if !is_valid_id(id) {
            return Err(err(line, None, SubmissionProblem::BadId(id.to_string())));
        }
        if !seen.insert(id) {
            return Err(err(
                line,
                Some(id),
                SubmissionProblem::DuplicateId(id.to_string()),
            ));
        }
        out.push_str(id);
        let mut sum = 0.0f64;
        for (c, &p) in row.iter().enumerate() {
            let s = format_probability(p).ok_or_else(|| {
                err(
                    line,
                    Some(id),
                    SubmissionProblem::BadProbability {
                        column: class_names[c].as_ref().to_string(),
                        value: p.to_string(),
                    },
                )
            })?;
            sum += s.parse::<f64>().expect("formatted probability parses");
            out.push(',');
            out.push_str(&s);
        }
        if (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(err(line, Some(id), SubmissionProblem::BadSum(sum)));
        }
        out.push('\n');
    }
    write_atomic(path, out.as_bytes())
        .map_err(|e| err(None, None, SubmissionProblem::Io(e.to_string())))
}

/// Checks a submission file: the header is `image` followed by `class_names` in order, every
/// row has one field per column, each id in `expected_ids` appears exactly once and no other
/// id appears, every probability is a plain decimal with a decimal point in [0, 1] (no sign,
/// no exponent), and each row sums to 1 within [`SUM_TOLERANCE`]. Returns the first problem
/// found, naming the file, line and image.
pub fn validate_submission<I: AsRef<str>, S: AsRef<str>>(
    path: impl AsRef<Path>,
    expected_ids: &[I],
    class_names: &[S],
) -> Result<(), SubmissionError> {
    let path = path.as_ref();
    let err = |line, image, problem| SubmissionError::new(path, line, image, problem);
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(None, None, SubmissionProblem::Io(e.to_string())))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines = text.lines().enumerate();

    let expected_header = header_line(class_names);
    let header = lines
        .next()
        .map(|(_, l)| l.trim_end_matches('\r'))
        .unwrap_or("");
    if header != expected_header {
        return Err(err(
            Some(1),
            None,
            SubmissionProblem::BadHeader {
                expected: expected_header,
                found: header.to_string(),
            },
        ));
    }

    let k = class_names.len();
    let mut expected: HashMap<&str, bool> =
        expected_ids.iter().map(|s| (s.as_ref(), false)).collect();
    for (idx, raw) in lines {
        let line = Some(idx + 1);
        let raw = raw.trim_end_matches('\r');
        if raw.is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.split(',').collect();
        let id = fields[0];
        if fields.len() != k + 1 {
            return Err(err(
                line,
                Some(id),
                SubmissionProblem::FieldCount {
                    expected: k + 1,
                    found: fields.len(),
                },
            ));
        }
        match expected.get_mut(id) {
            None => {
                return Err(err(
                    line,
                    Some(id),
                    SubmissionProblem::UnexpectedId(id.to_string()),
                ));
            }
            Some(true) => {
                return Err(err(
                    line,
                    Some(id),
                    SubmissionProblem::DuplicateId(id.to_string()),
                ));
            }
            Some(seen) => *seen = true,
        }
        let mut sum = 0.0f64;
        for (c, field) in fields[1..].iter().enumerate() {
            let value = if is_plain_decimal(field) {
                field
                    .parse::<f64>()
                    .ok()
                    .filter(|v| (0.0..=1.0).contains(v))
            } else {
                None
            };
            let Some(v) = value else {
                return Err(err(
                    line,
                    Some(id),
                    SubmissionProblem::BadProbability {
                        column: class_names[c].as_ref().to_string(),
                        value: field.to_string(),
                    },
                ));
            };
            sum += v;
        }
        if (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(err(line, Some(id), SubmissionProblem::BadSum(sum)));
        }
    }

    let mut missing: Vec<&str> = expected_ids
        .iter()
        .map(AsRef::as_ref)
        .filter(|id| !expected[id])
        .collect();
    if !missing.is_empty() {
        let count = missing.len();
        missing.truncate(5);
        return Err(err(
            None,
            None,
            SubmissionProblem::MissingIds {
                first: missing.into_iter().map(str::to_string).collect(),
                count,
            },
        ));
    }
    Ok(())
}

/// [`validate_submission`] against the official ISIC 2018 Task 3 columns
/// ([`ISIC2018_CLASSES`]).
pub fn validate_isic2018_submission<I: AsRef<str>>(
    path: impl AsRef<Path>,
    expected_ids: &[I],
) -> Result<(), SubmissionError> {
    validate_submission(path, expected_ids, &ISIC2018_CLASSES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<String>, Vec<f32>) {
        let ids = vec!["ISIC_0034524".to_string(), "ISIC_0034525".to_string()];
        let probs = vec![
            1e-7,
            0.9,
            0.05,
            0.02,
            0.02,
            0.01,
            1.0 - 0.9 - 0.05 - 0.02 - 0.02 - 0.01 - 1e-7,
            0.0,
            1.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
        ];
        (ids, probs)
    }

    #[test]
    fn probability_format() {
        assert_eq!(format_probability(0.0).unwrap(), "0.0");
        assert_eq!(format_probability(-0.0).unwrap(), "0.0");
        assert_eq!(format_probability(1.0).unwrap(), "1.0");
        assert_eq!(format_probability(0.5).unwrap(), "0.5");
        assert_eq!(format_probability(0.123_456_7).unwrap(), "0.123457");
        assert_eq!(format_probability(1e-7).unwrap(), "0.0");
        assert_eq!(format_probability(3e-6).unwrap(), "0.000003");
        assert_eq!(format_probability(1.000_000_5).unwrap(), "1.0");
        assert_eq!(format_probability(-1e-7).unwrap(), "0.0");
        assert_eq!(format_probability(1.5), None);
        assert_eq!(format_probability(-0.1), None);
        assert_eq!(format_probability(f32::NAN), None);
        for i in 0..=1000 {
            let s = format_probability(i as f32 / 1000.0).unwrap();
            assert!(is_plain_decimal(&s), "{s}");
        }
    }

    #[test]
    fn write_then_validate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("submission.csv");
        let (ids, probs) = sample();
        write_submission(&p, &ISIC2018_CLASSES, &ids, &probs).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC");
        assert_eq!(lines[1], "ISIC_0034524,0.0,0.9,0.05,0.02,0.02,0.01,0.0");
        assert_eq!(lines[2], "ISIC_0034525,0.0,1.0,0.0,0.0,0.0,0.0,0.0");
        assert!(lines[1..].iter().all(|l| !l.contains(['e', 'E'])));
        validate_submission(&p, &ids, &ISIC2018_CLASSES).unwrap();
        validate_isic2018_submission(&p, &ids).unwrap();
        // Order of expected ids does not matter.
        let rev: Vec<&String> = ids.iter().rev().collect();
        validate_submission(&p, &rev, &ISIC2018_CLASSES).unwrap();
        // A custom class set writes its own header.
        write_submission(&p, &["b", "a"], &["x"], &[0.25, 0.75]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "image,b,a\nx,0.25,0.75\n"
        );
        validate_submission(&p, &["x"], &["b", "a"]).unwrap();
    }

    #[test]
    fn writer_rejects_bad_inputs_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.csv");
        let names = ["a", "b"];
        let e = write_submission(&p, &names, &["x"], &[0.5]).unwrap_err();
        assert!(matches!(e.problem, SubmissionProblem::Shape(_)));
        let e = write_submission(&p, &names, &["x", "x"], &[0.5, 0.5, 0.5, 0.5]).unwrap_err();
        assert!(matches!(e.problem, SubmissionProblem::DuplicateId(_)));
        assert_eq!(e.line, Some(3));
        let e = write_submission(&p, &names, &["x,y"], &[0.5, 0.5]).unwrap_err();
        assert!(matches!(e.problem, SubmissionProblem::BadId(_)));
        // Logits instead of probabilities.
        let e = write_submission(&p, &names, &["x"], &[2.0, -1.0]).unwrap_err();
        assert!(matches!(
            e.problem,
            SubmissionProblem::BadProbability { .. }
        ));
        let e = write_submission(&p, &names, &["x"], &[0.5, 0.4]).unwrap_err();
        assert!(matches!(e.problem, SubmissionProblem::BadSum(_)));
        assert!(e.to_string().contains("s.csv: line 2 (image x)"), "{e}");
        assert!(!p.exists());
    }

    fn check(content: &str) -> SubmissionError {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub.csv");
        std::fs::write(&p, content).unwrap();
        validate_submission(&p, &["i1", "i2"], &["A", "B"]).unwrap_err()
    }

    #[test]
    fn validator_errors_name_file_and_line() {
        let ok = "image,A,B\ni1,0.3,0.7\ni2,1.0,0.0\n";
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub.csv");
        std::fs::write(&p, ok).unwrap();
        validate_submission(&p, &["i1", "i2"], &["A", "B"]).unwrap();
        // CRLF line endings are fine too.
        std::fs::write(&p, ok.replace('\n', "\r\n")).unwrap();
        validate_submission(&p, &["i1", "i2"], &["A", "B"]).unwrap();

        let e = check("image,B,A\ni1,0.3,0.7\ni2,1.0,0.0\n");
        assert!(matches!(e.problem, SubmissionProblem::BadHeader { .. }));
        assert_eq!(e.line, Some(1));

        let e = check("image,A,B\ni1,0.3,0.7\ni2,1e-7,1.0\n");
        assert_eq!(e.line, Some(3));
        assert_eq!(e.image.as_deref(), Some("i2"));
        assert!(
            matches!(e.problem, SubmissionProblem::BadProbability { ref column, .. } if column == "A")
        );
        let msg = e.to_string();
        assert!(
            msg.contains("sub.csv: line 3 (image i2)") && msg.contains("1e-7"),
            "{msg}"
        );

        for bad in ["1", "-0.0", "1.5", ".5", "0.5.", "nan", "+0.5", " 0.5"] {
            let e = check(&format!("image,A,B\ni1,{bad},0.5\ni2,1.0,0.0\n"));
            assert!(
                matches!(e.problem, SubmissionProblem::BadProbability { .. }),
                "{bad}"
            );
        }

        let e = check("image,A,B\ni1,0.3,0.6\ni2,1.0,0.0\n");
        assert!(matches!(e.problem, SubmissionProblem::BadSum(_)));
        assert_eq!(e.line, Some(2));

        let e = check("image,A,B\ni1,0.3,0.7\ni1,0.3,0.7\ni2,1.0,0.0\n");
        assert!(matches!(e.problem, SubmissionProblem::DuplicateId(_)));
        assert_eq!(e.line, Some(3));

        let e = check("image,A,B\ni1,0.3,0.7\ni3,1.0,0.0\n");
        assert!(matches!(e.problem, SubmissionProblem::UnexpectedId(_)));

        let e = check("image,A,B\ni1,0.3,0.7\n");
        assert_eq!(
            e.problem,
            SubmissionProblem::MissingIds {
                first: vec!["i2".to_string()],
                count: 1
            }
        );

        let e = check("image,A,B\ni1,0.3,0.7,0.0\ni2,1.0,0.0\n");
        assert!(matches!(
            e.problem,
            SubmissionProblem::FieldCount {
                expected: 3,
                found: 4
            }
        ));

        let e = validate_submission("/nonexistent/sub.csv", &["x"], &["A"]).unwrap_err();
        assert!(matches!(e.problem, SubmissionProblem::Io(_)));
        assert!(e.to_string().starts_with("/nonexistent/sub.csv"));
    }

    #[test]
    fn rows_within_tolerance_pass() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.csv");
        std::fs::write(&p, "image,A,B\ni1,0.33334,0.66667\ni2,0.5,0.5\n").unwrap();
        validate_submission(&p, &["i1", "i2"], &["A", "B"]).unwrap();
    }
}
