//! Model commands: `models` and `summary`.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use dermclass::model::{FAMILIES, LayerCost, ModelSpec};

/// Input size given as `224` (square) or `WxH` (e.g. `200x150`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputSize {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl std::str::FromStr for InputSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("input size `{text}` must look like 224 or 200x150 (width x height)");
        let parse = |s: &str| s.trim().parse::<usize>().map_err(|_| bad());
        let (width, height) = match text.to_ascii_lowercase().split_once('x') {
            Some((w, h)) => (parse(w)?, parse(h)?),
            None => {
                let side = parse(text)?;
                (side, side)
            }
        };
        if width == 0 || height == 0 {
            return Err(bad());
        }
        Ok(Self { width, height })
    }
}

impl std::fmt::Display for InputSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// Arguments of `dermclass summary`.
#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// Architecture name, e.g. mobilenet_v2:1.0 (see `dermclass models`).
    pub arch: String,
    /// Number of output classes.
    #[arg(long, default_value_t = 7)]
    pub classes: usize,
    /// Input size: 224 or WxH (width x height), e.g. 200x150.
    #[arg(long, default_value = "224")]
    pub input: InputSize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct SummaryJson<'a> {
    arch: String,
    trick: &'a str,
    classes: usize,
    input: [usize; 2],
    params: usize,
    madds: u64,
    weights_mb_fp32: f64,
    layers: &'a [LayerCost],
}

/// Prints every registered family with its options.
pub fn models() {
    println!("{:<16} {:<40} trick", "family", "name pattern");
    for family in FAMILIES {
        println!(
            "{:<16} {:<40} {}",
            family.name(),
            family.pattern(),
            family.trick()
        );
        println!("{:<16} e.g. {}", "", family.examples().join(", "));
    }
}

/// Prints the per-layer cost table and totals.
pub fn summary(args: SummaryArgs) -> Result<()> {
    let spec = ModelSpec::parse(&args.arch, args.classes)?;
    let table = spec.cost(args.input.height, args.input.width)?;
    let weights_mb = table.params() as f64 * 4.0 / 1e6;
    if args.json {
        let json = SummaryJson {
            arch: spec.arch.to_string(),
            trick: spec.arch.family().trick(),
            classes: args.classes,
            input: [args.input.width, args.input.height],
            params: table.params(),
            madds: table.madds(),
            weights_mb_fp32: weights_mb,
            layers: table.layers(),
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!(
        "{} ({}), {} classes, input {} (width x height)\n",
        spec.arch,
        spec.arch.family().trick(),
        args.classes,
        args.input
    );
    println!(
        "{:<32} {:<18} {:>16} {:>12} {:>14}",
        "layer", "kind", "output (CxHxW)", "params", "MAdds"
    );
    for layer in table.layers() {
        let out = layer.output;
        println!(
            "{:<32} {:<18} {:>16} {:>12} {:>14}",
            layer.name,
            layer.kind,
            format!("{}x{}x{}", out.channels, out.height, out.width),
            layer.params,
            layer.madds
        );
    }
    println!();
    println!(
        "trainable params: {} ({:.2}M)",
        table.params(),
        table.params() as f64 / 1e6
    );
    println!(
        "multiply-adds:    {} ({:.1}M)",
        table.madds(),
        table.madds() as f64 / 1e6
    );
    println!("weights at fp32:  {weights_mb:.2} MB");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_sizes_parse() {
        assert_eq!(
            "224".parse::<InputSize>().unwrap(),
            InputSize {
                width: 224,
                height: 224
            }
        );
        assert_eq!(
            "200x150".parse::<InputSize>().unwrap(),
            InputSize {
                width: 200,
                height: 150
            }
        );
        for bad in ["", "x", "0", "200x", "abc", "-3"] {
            assert!(bad.parse::<InputSize>().is_err(), "{bad}");
        }
    }
}
