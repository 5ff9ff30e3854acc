//! The data error type: every message names the file (or URL) and the problem.

use std::path::PathBuf;

/// Errors raised while reading, checking, caching, splitting or fetching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O operation on a path failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A zero-byte image file.
    #[error("{}: empty file (0 bytes)", path.display())]
    EmptyFile {
        /// The image.
        path: PathBuf,
    },
    /// An image that cannot be decoded (corrupt, truncated, not an image).
    #[error("{}: cannot decode image: {msg}", path.display())]
    Decode {
        /// The image.
        path: PathBuf,
        /// What the decoder said.
        msg: String,
    },
    /// A CSV (ground truth, metadata, groupings, split) that cannot be parsed.
    #[error("{}: {msg}", path.display())]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// The problem, with the line number where known.
        msg: String,
    },
    /// An image listed in a CSV but absent on disk.
    #[error("{}: image `{id}` is listed but no image file was found for it", csv.display())]
    MissingImage {
        /// The CSV that lists it.
        csv: PathBuf,
        /// The image id.
        id: String,
    },
    /// A ground-truth row that is not one-hot.
    #[error("{}: line {line}: row for `{id}` is not one-hot ({values})", csv.display())]
    NotOneHot {
        /// The CSV.
        csv: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The image id.
        id: String,
        /// The offending values.
        values: String,
    },
    /// An unexpected column in a CSV header.
    #[error("{}: unknown column `{column}` (expected image and class codes among MEL,NV,BCC,AKIEC,BKL,DF,VASC)", csv.display())]
    UnknownColumn {
        /// The CSV.
        csv: PathBuf,
        /// The column name.
        column: String,
    },
    /// A class label that is not one of the known classes.
    #[error("{}: line {line}: unknown class `{class}` for `{id}`", csv.display())]
    UnknownClass {
        /// The CSV.
        csv: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The image id.
        id: String,
        /// The unknown class.
        class: String,
    },
    /// A class without a single image.
    #[error("{}: class `{class}` has no images", source_path.display())]
    EmptyClass {
        /// The CSV or class folder.
        source_path: PathBuf,
        /// The class name.
        class: String,
    },
    /// An image id that appears twice.
    #[error("{}: duplicate image id `{id}`", path.display())]
    DuplicateId {
        /// The CSV or folder where the second occurrence was found.
        path: PathBuf,
        /// The image id.
        id: String,
    },
    /// A data root whose layout is not recognised or is incomplete.
    #[error("{}: {msg}", root.display())]
    Layout {
        /// The data root.
        root: PathBuf,
        /// The problem.
        msg: String,
    },
    /// A preprocessed cache file that is invalid or stale.
    #[error("{}: cache: {msg}", path.display())]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// The problem.
        msg: String,
    },
    /// Inputs of a batch job that cannot be used (the message names the first, counts the
    /// rest).
    #[error("{0}")]
    BadInputs(String),
    /// A downloaded archive that is corrupt or incomplete.
    #[error("{}: corrupt or incomplete archive: {msg}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// The problem (which entry, what check failed).
        msg: String,
    },
    /// A download that failed.
    #[error("{url}: download failed: {msg}")]
    Download {
        /// The URL.
        url: String,
        /// The problem.
        msg: String,
    },
    /// An invalid argument or configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl DataError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    /// A short tag for the kind of problem, used to group skip reports.
    pub fn kind(&self) -> &'static str {
        match self {
            DataError::Io { .. } => "io error",
            DataError::EmptyFile { .. } => "empty file",
            DataError::Decode { .. } => "undecodable image",
            DataError::Csv { .. } => "bad csv",
            DataError::MissingImage { .. } => "missing image",
            DataError::NotOneHot { .. } => "row not one-hot",
            DataError::UnknownColumn { .. } => "unknown column",
            DataError::UnknownClass { .. } => "unknown class",
            DataError::EmptyClass { .. } => "empty class",
            DataError::DuplicateId { .. } => "duplicate id",
            DataError::Layout { .. } => "layout",
            DataError::Cache { .. } => "cache",
            DataError::BadInputs(_) => "bad inputs",
            DataError::Archive { .. } => "bad archive",
            DataError::Download { .. } => "download",
            DataError::Config(_) => "config",
        }
    }
}
