//! Winograd F(2x2, 3x3) against the dense kernel (im2col + GEMM) on the 3x3 stride-1 layers
//! of the plain twin and ResNet-50 at 128x128: forward and input gradient, median ms of each,
//! the two kernels' passes interleaved so that a busy machine slows both alike.
//!
//! `cargo run --release -p dermclass-kernels --example bench_winograd -- [BATCH] [RUNS]`

use dermclass_kernels::dense::{self, DenseShape};
use dermclass_kernels::winograd;

mod common;
use common::{median_ms, random};

/// (name, channels, side)
const LAYERS: [(&str, usize, usize); 8] = [
    ("plain 3x3 32->64 @64", 32, 64),
    ("plain 3x3 128->128 @32", 128, 32),
    ("plain 3x3 256->256 @16", 256, 16),
    ("plain 3x3 512->512 @8 (x5)", 512, 8),
    ("plain 3x3 1024->1024 @4", 1024, 4),
    ("resnet 3x3 64->64 @32", 64, 32),
    ("resnet 3x3 256->256 @8", 256, 8),
    ("resnet 3x3 512->512 @4", 512, 4),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batch: usize = args.first().map_or(32, |s| s.parse().expect("BATCH"));
    let runs: usize = args.get(1).map_or(5, |s| s.parse().expect("RUNS"));
    println!(
        "threads {}, batch {batch}, median of {runs} (ms): dense / winograd",
        rayon::current_num_threads()
    );
    println!("{:<28} {:>24} {:>24}", "layer", "forward", "input grad");
    for (name, c, side) in LAYERS {
        // The plain twin's first 3x3 layer widens 32 -> 64; the others keep their width.
        let c_out = if c == 32 { 64 } else { c };
        let s = DenseShape::k3(batch, c, c_out, (side, side), 1);
        let x = random(batch * c * side * side, 1);
        let w = random(c_out * c * 9, 2);
        let dy = random(batch * c_out * side * side, 3);
        let mut cells = Vec::new();
        for (dense_pass, wino_pass) in [
            (
                &(|| drop(dense::forward(&x, &w, s))) as &dyn Fn(),
                &(|| drop(winograd::forward(&x, &w, s))) as &dyn Fn(),
            ),
            (
                &(|| drop(dense::backward_input(&dy, &w, s))) as &dyn Fn(),
                &(|| drop(winograd::backward_input(&dy, &w, s))) as &dyn Fn(),
            ),
        ] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                a.push(median_ms(0, 1, dense_pass));
                b.push(median_ms(0, 1, wino_pass));
            }
            a.sort_by(f64::total_cmp);
            b.sort_by(f64::total_cmp);
            let (da, wb) = (a[runs / 2], b[runs / 2]);
            cells.push(format!("{da:7.2} / {wb:7.2} ({:4.2}x)", da / wb));
        }
        println!("{name:<28} {:>24} {:>24}", cells[0], cells[1]);
    }
}
