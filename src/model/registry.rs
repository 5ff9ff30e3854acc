//! The family registry, in the manner of torchvision's `get_model` and timm's
//! `register_model`: a family is one file that implements [`Family`] (its name, what it
//! demonstrates, how its options parse) and [`Network`] (build the module, count its cost),
//! plus one line in the `registry!` list of `model/mod.rs`. `docs/models.md` walks through
//! adding one.

use std::fmt;
use std::sync::Arc;

use burn::prelude::*;

use super::torchvision::TorchKeys;
use super::{Classifier, CostTable, FAMILIES, ModelError};

/// What a family is, for listings and defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FamilyInfo {
    /// Name prefix, e.g. `mobilenet_v2`.
    pub name: &'static str,
    /// Name pattern with its options, e.g. `mobilenet_v2[:<alpha>]`.
    pub pattern: &'static str,
    /// The trick the family demonstrates.
    pub trick: &'static str,
    /// Names worth trying; each must parse.
    pub examples: &'static [&'static str],
    /// Default dropout before the classifier.
    pub dropout: f64,
}

/// A registered network family.
pub trait Family: Sync {
    /// Its name, pattern, trick, examples and default dropout.
    fn info(&self) -> &'static FamilyInfo;
    /// Name prefix, e.g. `mobilenet_v2`.
    fn name(&self) -> &'static str {
        self.info().name
    }
    /// Name pattern with its options.
    fn pattern(&self) -> &'static str {
        self.info().pattern
    }
    /// The trick the family demonstrates.
    fn trick(&self) -> &'static str {
        self.info().trick
    }
    /// Names worth trying; each must parse.
    fn examples(&self) -> &'static [&'static str] {
        self.info().examples
    }
    /// Default dropout before the classifier.
    fn dropout(&self) -> f64 {
        self.info().dropout
    }
    /// Parses the options that follow `name:` (already lower-case and split at `:`);
    /// `full` is the name as the user wrote it, for error messages.
    fn parse(&self, full: &str, options: &[&str]) -> Result<Arc<dyn Network>, ModelError>;
}

/// One architecture of a family with its options parsed: everything but the classifier's
/// class count and dropout, which [`HeadOptions`] brings.
pub trait Network: fmt::Debug + Send + Sync {
    /// The family it belongs to.
    fn family(&self) -> &'static dyn Family;
    /// The canonical name, which parses back to the same network.
    fn name(&self) -> String;
    /// Builds the burn module with freshly initialised weights.
    fn build(&self, head: HeadOptions, device: &Device) -> Result<Classifier, ModelError>;
    /// Counts every layer into `table`, which starts at the RGB input.
    fn count(&self, head: HeadOptions, table: &mut CostTable) -> Result<(), ModelError>;
    /// torchvision's state-dict keys for the parameters, in burn's visiting order, where
    /// the network has torchvision's layout (`train --init`).
    fn torchvision_keys(&self) -> Option<TorchKeys> {
        None
    }
}

/// What every classifier's last layer needs besides the family's own options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadOptions {
    /// Number of output classes.
    pub classes: usize,
    /// Dropout before the classifier.
    pub dropout: f64,
}

/// The family registered under `name` (exact, lower-case).
pub fn find(name: &str) -> Option<&'static dyn Family> {
    FAMILIES.iter().copied().find(|f| f.name() == name)
}

/// A parsed architecture name: a family and its options.
#[derive(Clone)]
pub struct Arch(Arc<dyn Network>);

impl Arch {
    /// The registered family this architecture belongs to.
    pub fn family(&self) -> &'static dyn Family {
        self.0.family()
    }

    /// The parsed network.
    pub fn network(&self) -> &dyn Network {
        self.0.as_ref()
    }

    /// torchvision's state-dict keys of its parameters, where it has torchvision's layout.
    pub fn torchvision_keys(&self) -> Option<TorchKeys> {
        self.0.torchvision_keys()
    }
}

impl std::str::FromStr for Arch {
    type Err = ModelError;

    /// Parses names such as `mobilenet_v2:1.4`, `shufflenet_v1:g3:0.5` or `resnet50`
    /// (case-insensitive).
    fn from_str(name: &str) -> Result<Self, ModelError> {
        let lower = name.trim().to_ascii_lowercase();
        let mut parts = lower.split(':');
        let family_name = parts.next().unwrap_or_default();
        let options: Vec<&str> = parts.collect();
        let family = find(family_name).ok_or_else(|| {
            let known: Vec<&str> = FAMILIES.iter().map(|f| f.name()).collect();
            ModelError::UnknownArch {
                name: name.to_string(),
                known: known.join(", "),
            }
        })?;
        family.parse(name, &options).map(Arch)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name())
    }
}

impl fmt::Debug for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Arch({})", self.0.name())
    }
}

impl PartialEq for Arch {
    /// Two architectures are equal when their canonical names are.
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

/// Fails when a family got more than `max` options.
pub fn at_most(
    family: &dyn Family,
    full: &str,
    options: &[&str],
    max: usize,
) -> Result<(), ModelError> {
    if options.len() > max {
        return Err(ModelError::BadOption(format!(
            "`{full}`: too many options; expected {}",
            family.pattern()
        )));
    }
    Ok(())
}

/// Parses a width factor in (0, 4]; absent means 1.
pub fn parse_factor(full: &str, what: &str, text: Option<&str>) -> Result<f64, ModelError> {
    let Some(text) = text else { return Ok(1.0) };
    let value: f64 = text
        .parse()
        .map_err(|_| ModelError::BadOption(format!("`{full}`: {what} `{text}` is not a number")))?;
    if !(value.is_finite() && value > 0.0 && value <= 4.0) {
        return Err(ModelError::BadOption(format!(
            "`{full}`: {what} must be in (0, 4], got {text}"
        )));
    }
    Ok(value)
}
