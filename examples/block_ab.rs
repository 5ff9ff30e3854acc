//! Inference plan A/B: the compiled plan run with each given setting, one run of each in
//! turn so host noise falls on all alike, then the mean time of every step per setting.
//! A setting is a banding threshold (expanded bytes per image from which an inverted-residual
//! block is banded; `off` turns banding off), `narrow-off` (the default threshold with the
//! micro-kernel's narrow-tile path off), `narrow-tiles-off` (maps of at most 64 pixels cut
//! into tiles like the others, not in 48-channel tiles) or `split-off` (small blocks layer by
//! layer instead of in shares of their channels). 224x224, batch 1 (`BATCH=16` for another).
//!
//! usage: cargo run --release --example block_ab -- [ARCH] [RUNS] SETTING...
//! e.g.   cargo run --release --example block_ab -- mobilenet_v2:1.0 60 off 524288 1048576

use anyhow::{Context, Result};
use burn::module::Module;
use burn::prelude::*;
use dermclass::infer::{Plan, Workspace};
use dermclass::model::ModelSpec;
use dermclass_kernels::block::{self, set_min_expanded_bytes};
use dermclass_kernels::{dw, fused, micro};

/// The banding threshold dermclass uses.
const DEFAULT: usize = 512 * 1024;

/// One setting of the plan: the banding threshold, whether the narrow tiles run and how
/// narrow maps are cut into tiles.
#[derive(Clone, Copy)]
struct Setting {
    min_expanded_bytes: usize,
    narrow: bool,
    narrow_tiles: bool,
    split: bool,
    direct_dw: bool,
    prefetch: bool,
    per_image: bool,
}

impl Setting {
    fn parse(text: &str) -> Result<Setting> {
        let on = Setting {
            min_expanded_bytes: DEFAULT,
            narrow: true,
            narrow_tiles: true,
            split: true,
            direct_dw: true,
            prefetch: true,
            per_image: true,
        };
        Ok(match text {
            "off" => Setting {
                min_expanded_bytes: usize::MAX,
                ..on
            },
            "narrow-off" => Setting {
                narrow: false,
                ..on
            },
            "narrow-tiles-off" => Setting {
                narrow_tiles: false,
                ..on
            },
            "split-off" => Setting { split: false, ..on },
            "dw-direct-off" => Setting {
                direct_dw: false,
                ..on
            },
            "prefetch-off" => Setting {
                prefetch: false,
                ..on
            },
            "per-image-off" => Setting {
                per_image: false,
                ..on
            },
            _ => Setting {
                min_expanded_bytes: text
                    .parse()
                    .with_context(|| format!("bad setting {text}"))?,
                ..on
            },
        })
    }

    fn apply(self) {
        micro::set_narrow_enabled(self.narrow);
        fused::set_narrow_tiles(self.narrow_tiles);
        block::set_split_enabled(self.split);
        dw::set_direct_enabled(self.direct_dw);
        micro::set_prefetch_enabled(self.prefetch);
        block::set_per_image_enabled(self.per_image);
        set_min_expanded_bytes(self.min_expanded_bytes);
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arch = args.first().map_or("mobilenet_v2:1.0", String::as_str);
    let runs: usize = args.get(1).map_or(Ok(60), |s| s.parse())?;
    let thresholds: Vec<(String, Setting)> = args
        .iter()
        .skip(2)
        .map(|a| Ok((a.clone(), Setting::parse(a)?)))
        .collect::<Result<_>>()?;
    let device = Device::default();
    let model = ModelSpec::parse(arch, 7)?.build(&device)?.valid();
    let plan = Plan::compile(&dermclass::export::network_graph(&model))?;
    let batch: usize = std::env::var("BATCH").map_or(Ok(1), |b| b.parse())?;
    let shape = [batch, 3, 224, 224];
    let x = vec![0.5f32; batch * 3 * 224 * 224];
    let mut ws = Workspace::default();
    let mut totals = vec![vec![0.0f64; plan.len()]; thresholds.len()];
    let mut labels = vec![""; plan.len()];
    for run in 0..runs + 5 {
        for (t, &(_, setting)) in thresholds.iter().enumerate() {
            setting.apply();
            let mut step = 0;
            plan.run_with(&mut ws, &x, shape, |label, took| {
                if run >= 5 {
                    totals[t][step] += took.as_secs_f64();
                }
                labels[step] = label;
                step += 1;
            })?;
        }
    }
    println!(
        "{arch}, batch {batch}, 224x224, {} threads, mean ms over {runs} runs",
        rayon::current_num_threads()
    );
    print!("{:<28}", "step \\ setting");
    thresholds.iter().for_each(|(name, _)| print!(" {name:>9}"));
    println!();
    let ms = |seconds: f64| seconds / runs as f64 * 1e3;
    for (step, label) in labels.iter().enumerate() {
        print!("{step:>3} {label:<24}");
        totals.iter().for_each(|t| print!(" {:>9.3}", ms(t[step])));
        println!();
    }
    print!("{:<28}", "total");
    totals
        .iter()
        .for_each(|t| print!(" {:>9.3}", ms(t.iter().sum())));
    println!();
    Ok(())
}
