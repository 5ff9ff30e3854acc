//! `compare --vary key=v1,v2,...`: settings varied alongside the architectures, as the Keras
//! study's table lists one model at several batch sizes and learning rates. Any key of the
//! run's `config.toml` can vary (`augment.zoom` for nested ones); each combination of the
//! values is one row.

use std::str::FromStr;

use anyhow::{Context, Result, bail};

use super::config::TrainConfig;

/// One `--vary`: a setting and the values to try, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Variation {
    /// The `config.toml` key, dotted for nested tables.
    pub key: String,
    /// The values, as TOML scalars.
    pub values: Vec<toml::Value>,
}

impl FromStr for Variation {
    type Err = String;

    /// Parses `key=v1,v2,...`; each value reads as an integer, a float, a boolean, or else a
    /// string.
    fn from_str(text: &str) -> Result<Self, String> {
        let (key, values) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}`: expected key=value1,value2,..."))?;
        let key = key.trim();
        if key.is_empty() || key == "arch" {
            return Err(format!(
                "`{text}`: name a setting of config.toml (architectures go in --arches)"
            ));
        }
        let values: Vec<toml::Value> = values
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(scalar)
            .collect();
        if values.is_empty() {
            return Err(format!("`{text}`: no values"));
        }
        Ok(Variation {
            key: key.to_string(),
            values,
        })
    }
}

fn scalar(text: &str) -> toml::Value {
    if let Ok(i) = text.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = text.parse::<f64>() {
        return toml::Value::Float(f);
    }
    match text {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(text.to_string()),
    }
}

/// One combination: a value for each varied key.
pub type Overrides = Vec<(String, toml::Value)>;

/// Every combination of the variations' values, the first key varying slowest; one empty
/// combination without variations.
pub fn combinations(variations: &[Variation]) -> Vec<Overrides> {
    variations.iter().fold(vec![Vec::new()], |done, v| {
        done.iter()
            .flat_map(|prefix| {
                v.values.iter().map(move |value| {
                    let mut next = prefix.clone();
                    next.push((v.key.clone(), value.clone()));
                    next
                })
            })
            .collect()
    })
}

/// `base` with `overrides` set, checked as a config file would be.
pub fn apply(base: &TrainConfig, overrides: &[(String, toml::Value)]) -> Result<TrainConfig> {
    let mut table = toml::Value::try_from(base).context("cannot represent the settings")?;
    for (key, value) in overrides {
        let mut slot = &mut table;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            slot = slot
                .get_mut(*part)
                .with_context(|| format!("--vary {key}: no setting `{part}`"))?;
        }
        let Some(fields) = slot.as_table_mut() else {
            bail!("--vary {key}: `{key}` is not a setting");
        };
        fields.insert(parts[parts.len() - 1].to_string(), value.clone());
    }
    let config: TrainConfig = table.try_into().map_err(|e| {
        let keys: Vec<&str> = overrides.iter().map(|(k, _)| k.as_str()).collect();
        anyhow::anyhow!("--vary {}: {e}", keys.join(", "))
    })?;
    config.validate()?;
    Ok(config)
}

/// `key=value` pairs for tables: `batch=16, lr=0.001`.
pub fn label(overrides: &[(String, toml::Value)]) -> String {
    overrides
        .iter()
        .map(|(k, v)| format!("{k}={}", plain(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A folder-name suffix: `_batch16_lr0.001` (empty without overrides).
pub fn dir_suffix(overrides: &[(String, toml::Value)]) -> String {
    overrides
        .iter()
        .map(|(k, v)| {
            let text: String = format!("{k}{}", plain(v))
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("_{text}")
        })
        .collect()
}

fn plain(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_by_kind() {
        let v: Variation = "lr=1e-3, 3e-3".parse().unwrap();
        assert_eq!(v.key, "lr");
        assert_eq!(
            v.values,
            vec![toml::Value::Float(1e-3), toml::Value::Float(3e-3)]
        );
        let v: Variation = "optimizer=sgd,adamw".parse().unwrap();
        assert_eq!(v.values[1], toml::Value::String("adamw".into()));
        assert!(
            "batch"
                .parse::<Variation>()
                .unwrap_err()
                .contains("key=value1")
        );
        assert!(
            "arch=a,b"
                .parse::<Variation>()
                .unwrap_err()
                .contains("--arches")
        );
        assert!(
            "lr="
                .parse::<Variation>()
                .unwrap_err()
                .contains("no values")
        );
    }

    #[test]
    fn combinations_cover_every_pair_with_the_first_key_slowest() {
        let vars: Vec<Variation> = ["batch=16,32", "lr=0.001,0.003,0.01"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        let combos = combinations(&vars);
        assert_eq!(combos.len(), 6);
        assert_eq!(label(&combos[0]), "batch=16, lr=0.001");
        assert_eq!(label(&combos[5]), "batch=32, lr=0.01");
        assert_eq!(combinations(&[]), vec![Vec::new()]);
        assert_eq!(dir_suffix(&combos[1]), "_batch16_lr0.003");
    }

    #[test]
    fn overrides_set_top_level_and_nested_settings_and_bad_ones_fail() {
        let base = TrainConfig::default();
        let set = |text: &str| {
            let v: Variation = text.parse().unwrap();
            apply(&base, &combinations(&[v])[0])
        };
        let c = set("batch=16").unwrap();
        assert_eq!(c.batch, 16);
        let c = set("lr=1").unwrap();
        assert_eq!(c.lr, 1.0, "an integer sets a float setting");
        let c = set("augment.zoom=0.1").unwrap();
        assert!((c.augment.zoom - 0.1).abs() < 1e-6);
        let err = set("bacth=16").unwrap_err().to_string();
        assert!(
            err.contains("--vary bacth") && err.contains("bacth"),
            "{err}"
        );
        let err = set("batch=big").unwrap_err().to_string();
        assert!(err.contains("--vary batch"), "{err}");
        let err = set("batch=0").unwrap_err().to_string();
        assert!(err.contains("batch must be at least 1"), "{err}");
    }
}
