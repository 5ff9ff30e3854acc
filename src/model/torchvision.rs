//! Weights from a torchvision state-dict file (`train --init`): ImageNet weights, or any
//! other training of the same network. MobileNetV2, ShuffleNet v2 and ResNet-50 have
//! torchvision's parameter layout, so each family lists torchvision's key for every
//! parameter in the order burn visits them, and loading pairs the two lists, checking
//! every key's kind and shape.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::store::pytorch_reader::{DType, PytorchReader, Tensor as TorchTensor};
use burn::tensor::TensorData;

use super::Classifier;

/// torchvision's state-dict keys of a network's parameters, in burn's visiting order (a
/// convolution's weight, then its batch norm's scale, shift, running mean and variance; the
/// classifier's weight and bias last).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TorchKeys(Vec<String>);

impl TorchKeys {
    /// A bias-free convolution `conv` followed by the batch norm `norm`.
    pub fn conv_bn(&mut self, conv: &str, norm: &str) -> &mut Self {
        self.0.push(format!("{conv}.weight"));
        for tensor in ["weight", "bias", "running_mean", "running_var"] {
            self.0.push(format!("{norm}.{tensor}"));
        }
        self
    }

    /// The classifier `linear` (weight, bias): always the last two keys.
    pub fn linear(&mut self, linear: &str) -> &mut Self {
        self.0.push(format!("{linear}.weight"));
        self.0.push(format!("{linear}.bias"));
        self
    }

    /// The keys in order.
    pub fn keys(&self) -> &[String] {
        &self.0
    }
}

/// Why a state dict could not initialise a model. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The architecture has no torchvision layout.
    #[error(
        "{arch} cannot start from torchvision weights: --init supports mobilenet_v2 (with its \
         shortcuts), shufflenet_v2 and resnet50"
    )]
    Unsupported {
        /// The architecture name.
        arch: String,
    },
    /// The file is not a readable PyTorch file.
    #[error("cannot read {path} as a PyTorch state dict: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        reason: String,
    },
    /// Keys the network needs are absent.
    #[error(
        "{path} lacks {count} of the {total} tensors {arch} needs (first: {first}); is it \
         torchvision's state dict of this architecture?"
    )]
    Missing {
        /// The file.
        path: PathBuf,
        /// The architecture name.
        arch: String,
        /// How many are missing.
        count: usize,
        /// Of how many.
        total: usize,
        /// The first missing keys.
        first: String,
    },
    /// A tensor has another shape or type than the model's parameter.
    #[error("{path}: tensor `{key}` {problem}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The state-dict key.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// What `--init` loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct InitReport {
    /// The state-dict file.
    pub path: PathBuf,
    /// Tensors copied into the model.
    pub tensors: usize,
    /// Classes of the file's classifier.
    pub file_classes: usize,
    /// True when the classifier was loaded too (the file has the run's class count);
    /// otherwise it keeps its fresh initialisation.
    pub classifier_loaded: bool,
}

/// One tensor of the file, as `f32` values with torchvision's shape.
struct Loaded {
    key: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// Copies the tensors of the torchvision state dict at `path` into `model`, whose
/// architecture is `arch` with `keys` its torchvision layout. The classifier is copied only
/// when its class count matches the model's.
pub fn load_state_dict(
    model: Classifier,
    arch: &str,
    keys: &TorchKeys,
    path: &Path,
) -> Result<(Classifier, InitReport), InitError> {
    let mut tensors = read_tensors(arch, keys, path)?;
    let [.., weight, _] = tensors.as_slice() else {
        unreachable!("every layout ends with a classifier")
    };
    // A malformed classifier (no dimensions) fails the shape check below, naming it.
    let file_classes = weight.shape.first().copied().unwrap_or(0);
    let total = tensors.len();
    // The classifier's output width is the class count: compare before copying.
    let skip_classifier = file_classes != classes_of(&model);
    let mut mapper = Copier {
        path,
        tensors: &mut tensors,
        next: 0,
        skip_classifier,
        error: None,
    };
    let model = model.map(&mut mapper);
    let visited = mapper.next;
    if let Some(error) = mapper.error {
        return Err(error);
    }
    assert_eq!(
        visited, total,
        "{arch}: the torchvision layout lists {total} tensors, the model has {visited}"
    );
    let report = InitReport {
        path: path.to_path_buf(),
        tensors: total - if skip_classifier { 2 } else { 0 },
        file_classes,
        classifier_loaded: !skip_classifier,
    };
    Ok((model, report))
}

/// The output width of the model's classifier.
fn classes_of(model: &Classifier) -> usize {
    let weight = model.head().linear_weight();
    weight.dims()[1]
}

/// Every key of `keys` from the file, as `f32`.
fn read_tensors(arch: &str, keys: &TorchKeys, path: &Path) -> Result<Vec<Loaded>, InitError> {
    let read_error = |reason: String| InitError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let reader = PytorchReader::new(path).map_err(|e| read_error(e.to_string()))?;
    let missing: Vec<&String> = keys
        .keys()
        .iter()
        .filter(|k| reader.get(k).is_none())
        .collect();
    if !missing.is_empty() {
        let first: Vec<&str> = missing.iter().take(3).map(|k| k.as_str()).collect();
        return Err(InitError::Missing {
            path: path.to_path_buf(),
            arch: arch.to_string(),
            count: missing.len(),
            total: keys.keys().len(),
            first: first.join(", "),
        });
    }
    keys.keys()
        .iter()
        .map(|key| {
            let tensor = reader.get(key).expect("checked above");
            let values = f32_values(tensor).map_err(|problem| InitError::Tensor {
                path: path.to_path_buf(),
                key: key.clone(),
                problem,
            })?;
            Ok(Loaded {
                key: key.clone(),
                shape: tensor.shape().to_vec(),
                values,
            })
        })
        .collect()
}

/// A float32 or float64 tensor's values as `f32`.
fn f32_values(tensor: &TorchTensor) -> Result<Vec<f32>, String> {
    let bytes = tensor.read().map_err(|e| format!("cannot be read: {e}"))?;
    let values = match tensor.dtype() {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => {
            return Err(format!(
                "holds {other:?} values; save the state dict in float32 (model.float())"
            ));
        }
    };
    Ok(values)
}

/// Replaces each parameter, in visiting order, by the next tensor of the file.
struct Copier<'a> {
    path: &'a Path,
    tensors: &'a mut [Loaded],
    next: usize,
    /// Keep the model's own classifier (the file has another class count).
    skip_classifier: bool,
    error: Option<InitError>,
}

impl Copier<'_> {
    fn in_classifier(&self, index: usize) -> bool {
        index + 2 >= self.tensors.len()
    }
}

impl ModuleMapper for Copier<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let index = self.next;
        self.next += 1;
        if self.error.is_some() || (self.skip_classifier && self.in_classifier(index)) {
            return param;
        }
        let Some(loaded) = self.tensors.get_mut(index) else {
            return param;
        };
        let shape = param.val().dims().to_vec();
        match take_values(loaded, &shape) {
            Ok(values) => param.map(|t| {
                let loaded = Tensor::from_data(TensorData::new(values, shape), &t.device());
                loaded.set_require_grad(t.is_require_grad())
            }),
            Err(problem) => {
                self.error = Some(InitError::Tensor {
                    path: self.path.to_path_buf(),
                    key: loaded.key.clone(),
                    problem,
                });
                param
            }
        }
    }
}

/// The file's values for a parameter of `shape`, moved out of `loaded` (transposed for a
/// linear weight: torch keeps `[out, in]`, burn `[in, out]`).
fn take_values(loaded: &mut Loaded, shape: &[usize]) -> Result<Vec<f32>, String> {
    let file_shape = match loaded.shape.as_slice() {
        [out, input] => vec![*input, *out],
        other => other.to_vec(),
    };
    if file_shape != shape {
        let note = if shape.len() == 2 {
            " (transposed)"
        } else {
            ""
        };
        return Err(format!(
            "has shape {:?}{note} where the model has a parameter of shape {shape:?}",
            loaded.shape
        ));
    }
    let values = std::mem::take(&mut loaded.values);
    Ok(match loaded.shape.as_slice() {
        [out, input] => transpose(&values, *out, *input),
        _ => values,
    })
}

/// `[rows, cols]` row-major to `[cols, rows]`.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conv_bn_and_a_linear_list_torchvision_keys_in_burns_order() {
        let mut keys = TorchKeys::default();
        keys.conv_bn("features.0.0", "features.0.1")
            .linear("classifier.1");
        assert_eq!(
            keys.keys(),
            [
                "features.0.0.weight",
                "features.0.1.weight",
                "features.0.1.bias",
                "features.0.1.running_mean",
                "features.0.1.running_var",
                "classifier.1.weight",
                "classifier.1.bias",
            ]
        );
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
