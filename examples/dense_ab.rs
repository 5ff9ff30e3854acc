//! Dense convolution A/B: the im2col + GEMM kernel (`fast_ops::dense_conv`) against burn
//! flex's own `conv2d`, forward and backward (input and weight gradients) on an autodiff
//! device, for the dense layers of the plain twin and ResNet-50 at 224x224 (or, with SIZE
//! 128, at 128x128 as the comparison trains them). Median milliseconds per training step of
//! each layer, and the ratio.
//!
//! usage: cargo run --release --example dense_ab -- [BATCH] [RUNS] [SIZE: 224|128]

use std::time::Instant;

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use dermclass::fast_ops::{self, DenseGeometry};

/// A layer: name, input channels, output channels, input size, kernel, stride, padding.
type Layer = (&'static str, usize, usize, usize, usize, usize, usize);

const LAYERS: [Layer; 13] = [
    ("stem 3x3/2 3->32 @224", 3, 32, 224, 3, 2, 1),
    ("plain 3x3 64->128/2 @112", 64, 128, 112, 3, 2, 1),
    ("plain 3x3 128->128 @56", 128, 128, 56, 3, 1, 1),
    ("plain 3x3 256->256 @28", 256, 256, 28, 3, 1, 1),
    ("plain 3x3 512->512 @14", 512, 512, 14, 3, 1, 1),
    ("plain 3x3 512->1024/2 @14", 512, 1024, 14, 3, 2, 1),
    ("plain 3x3 1024->1024 @7", 1024, 1024, 7, 3, 1, 1),
    ("resnet 7x7/2 3->64 @224", 3, 64, 224, 7, 2, 3),
    ("resnet 3x3 64->64 @56", 64, 64, 56, 3, 1, 1),
    ("resnet 3x3 256->256 @14", 256, 256, 14, 3, 1, 1),
    ("resnet 3x3 512->512 @7", 512, 512, 7, 3, 1, 1),
    ("resnet 1x1/2 256->512 @56", 256, 512, 56, 1, 2, 0),
    ("resnet 1x1/2 1024->2048 @14", 1024, 2048, 14, 1, 2, 0),
];

/// The plain twin's and ResNet-50's dense layers at 128x128.
const LAYERS_128: [Layer; 7] = [
    ("plain 3x3 32->64 @64", 32, 64, 64, 3, 1, 1),
    ("plain 3x3 128->128 @32", 128, 128, 32, 3, 1, 1),
    ("plain 3x3 512->512 @8", 512, 512, 8, 3, 1, 1),
    ("plain 3x3 512->1024/2 @8", 512, 1024, 8, 3, 2, 1),
    ("plain 3x3 1024->1024 @4", 1024, 1024, 4, 3, 1, 1),
    ("resnet 3x3 512->512 @4", 512, 512, 4, 3, 1, 1),
    ("resnet 1x1/2 1024->2048 @8", 1024, 2048, 8, 1, 2, 0),
];

/// Median milliseconds of `step` over `runs` calls after one warm-up.
fn median_ms(runs: usize, mut step: impl FnMut()) -> f64 {
    step();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            step();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batch: usize = args.first().map_or(Ok(8), |s| s.parse())?;
    let runs: usize = args.get(1).map_or(Ok(5), |s| s.parse())?;
    let layers: &[Layer] = match args.get(2).map(String::as_str) {
        None | Some("224") => &LAYERS,
        Some("128") => &LAYERS_128,
        Some(other) => anyhow::bail!("SIZE is 224 or 128, not {other}"),
    };
    let device = Device::default().autodiff();
    println!(
        "{:<30} {:>12} {:>12} {:>7}   (batch {batch}, forward + backward, median of {runs})",
        "layer", "kernel ms", "burn ms", "ratio"
    );
    for &(name, c_in, c_out, size, k, stride, pad) in layers {
        let x = Tensor::<4>::random([batch, c_in, size, size], Distribution::Default, &device)
            .require_grad();
        let w =
            Tensor::<4>::random([c_out, c_in, k, k], Distribution::Default, &device).require_grad();
        let geometry = DenseGeometry { stride, pad };
        let options = ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1);
        let step = |fast: bool| {
            let y = if fast {
                fast_ops::dense_conv(x.clone(), w.clone(), geometry)
            } else {
                conv2d(x.clone(), w.clone(), None, options.clone())
            };
            let grads = y.sum().backward();
            let dx = x.grad(&grads).expect("input gradient");
            let dw = w.grad(&grads).expect("weight gradient");
            let _ = (dx.into_data(), dw.into_data());
        };
        let kernel = median_ms(runs, || step(true));
        let burn = median_ms(runs, || step(false));
        println!(
            "{name:<30} {kernel:>12.2} {burn:>12.2} {:>6.2}x",
            burn / kernel
        );
    }
    Ok(())
}
