//! Run-time device selection: `cpu` (burn's flex backend, always built), `cuda:N` and `wgpu`
//! when the matching cargo feature is compiled in.

use burn::prelude::Device;
use thiserror::Error;

/// A device request that cannot be honoured.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// The name is not one of the known device kinds.
    #[error("unknown device `{0}`: expected `cpu`, `cuda`, `cuda:N` or `wgpu`")]
    Unknown(String),
    /// The backend exists but this binary was built without it.
    #[error(
        "device `{0}` needs the `{1}` feature; rebuild with `cargo build --release --features {1}`"
    )]
    NotCompiled(String, &'static str),
}

/// Parses a device name (`cpu`, `cuda`, `cuda:N`, `wgpu`) into a burn device.
pub fn parse_device(name: &str) -> Result<Device, DeviceError> {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "cpu" | "flex" => Ok(Device::flex()),
        "wgpu" => wgpu_device(&name),
        _ => match name.strip_prefix("cuda") {
            Some("") => cuda_device(&name, 0),
            Some(index) => {
                let index = index
                    .strip_prefix(':')
                    .and_then(|i| i.parse::<usize>().ok())
                    .ok_or_else(|| DeviceError::Unknown(name.clone()))?;
                cuda_device(&name, index)
            }
            None => Err(DeviceError::Unknown(name)),
        },
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(_name: &str, index: usize) -> Result<Device, DeviceError> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(name: &str, _index: usize) -> Result<Device, DeviceError> {
    Err(DeviceError::NotCompiled(name.to_string(), "cuda"))
}

#[cfg(feature = "wgpu")]
fn wgpu_device(_name: &str) -> Result<Device, DeviceError> {
    Ok(Device::wgpu(Default::default()))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(name: &str) -> Result<Device, DeviceError> {
    Err(DeviceError::NotCompiled(name.to_string(), "wgpu"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_available() {
        assert!(parse_device("cpu").is_ok());
        assert!(parse_device(" CPU ").is_ok());
    }

    #[test]
    fn bad_names_are_rejected() {
        for name in ["tpu", "cuda:x", "cuda:", "cuda0x"] {
            let err = parse_device(name).unwrap_err();
            assert!(matches!(err, DeviceError::Unknown(_)), "{name}: {err}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn missing_backend_names_the_feature() {
        let err = parse_device("cuda:1").unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
