//! Benchmark of the training convolutions that are matrix products, each pass on its own
//! (forward, input gradient, weight gradient): the dense kernel (`dense`) on the plain twin's
//! and ResNet-50's dense layers and the pointwise one (`pw`) on ResNet-50's 1x1 layers, at
//! 128x128, batch 32, as `compare` trains them. Median ms and GFLOP/s per pass.
//!
//! `cargo run --release -p dermclass-kernels --example bench_dense -- [BATCH] [RUNS] [FILTER]`
//! (FILTER: only the layers whose name contains it)

use dermclass_kernels::dense::{self, DenseShape};
use dermclass_kernels::pw::{self, PwShape};

mod common;
use common::{median_ms, random};

/// (name, c_in, c_out, input side, kernel, stride, padding)
type Layer = (&'static str, usize, usize, usize, usize, usize, usize);

const LAYERS: [Layer; 14] = [
    ("plain 3x3 32->64 @64", 32, 64, 64, 3, 1, 1),
    ("plain 3x3 64->128/2 @64", 64, 128, 64, 3, 2, 1),
    ("plain 3x3 128->128 @32", 128, 128, 32, 3, 1, 1),
    ("plain 3x3 128->256/2 @32", 128, 256, 32, 3, 2, 1),
    ("plain 3x3 256->256 @16", 256, 256, 16, 3, 1, 1),
    ("plain 3x3 256->512/2 @16", 256, 512, 16, 3, 2, 1),
    ("plain 3x3 512->512 @8 (x5)", 512, 512, 8, 3, 1, 1),
    ("plain 3x3 512->1024/2 @8", 512, 1024, 8, 3, 2, 1),
    ("plain 3x3 1024->1024 @4", 1024, 1024, 4, 3, 1, 1),
    ("resnet 7x7/2 3->64 @128", 3, 64, 128, 7, 2, 3),
    ("resnet 3x3 64->64 @32", 64, 64, 32, 3, 1, 1),
    ("resnet 3x3 256->256 @8", 256, 256, 8, 3, 1, 1),
    ("resnet 3x3 512->512 @4", 512, 512, 4, 3, 1, 1),
    ("resnet 1x1/2 256->512 @32", 256, 512, 32, 1, 2, 0),
];

/// ResNet-50's 1x1 layers at 128x128: (name, c_in, c_out, side).
const POINTWISE: [(&str, usize, usize, usize); 6] = [
    ("resnet 1x1 256->64 @32", 256, 64, 32),
    ("resnet 1x1 64->256 @32", 64, 256, 32),
    ("resnet 1x1 1024->256 @8", 1024, 256, 8),
    ("resnet 1x1 256->1024 @8", 256, 1024, 8),
    ("resnet 1x1 2048->512 @4", 2048, 512, 4),
    ("resnet 1x1 512->2048 @4", 512, 2048, 4),
];

/// One table row: the three passes' median ms and GFLOP/s.
fn row(name: &str, flop: f64, runs: usize, passes: [&dyn Fn(); 3]) {
    let cell = |ms: f64| format!("{ms:8.2} ({:5.0})", flop / ms / 1e6);
    let [f, bi, bw] = passes.map(|pass| median_ms(1, runs, pass));
    println!(
        "{name:<28} {:>18} {:>18} {:>18}",
        cell(f),
        cell(bi),
        cell(bw)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batch: usize = args.first().map_or(32, |s| s.parse().expect("BATCH"));
    let runs: usize = args.get(1).map_or(5, |s| s.parse().expect("RUNS"));
    let filter = args.get(2).map_or("", String::as_str);
    println!(
        "threads {}, batch {batch}, median of {runs}: ms (GFLOP/s)",
        rayon::current_num_threads()
    );
    println!(
        "{:<28} {:>18} {:>18} {:>18}",
        "layer", "forward", "input grad", "weight grad"
    );
    for (name, c_in, c_out, side, kernel, stride, pad) in LAYERS {
        if !name.contains(filter) {
            continue;
        }
        let s = DenseShape {
            n: batch,
            c_in,
            c_out,
            h: side,
            w: side,
            kernel,
            stride,
            pad,
        };
        let (ho, wo) = s.out_hw();
        let x = random(batch * c_in * side * side, 1);
        let w = random(c_out * c_in * kernel * kernel, 2);
        let dy = random(batch * c_out * ho * wo, 3);
        let flop = 2.0 * (batch * c_out * ho * wo * c_in * kernel * kernel) as f64;
        row(
            name,
            flop,
            runs,
            [
                &|| drop(std::hint::black_box(dense::forward(&x, &w, s))),
                &|| drop(std::hint::black_box(dense::backward_input(&dy, &w, s))),
                &|| drop(std::hint::black_box(dense::backward_weight(&dy, &x, s))),
            ],
        );
    }
    for (name, c_in, c_out, side) in POINTWISE {
        if !name.contains(filter) {
            continue;
        }
        let hw = side * side;
        let s = PwShape {
            n: batch,
            c_in,
            c_out,
            hw,
            groups: 1,
        };
        let x = random(batch * c_in * hw, 1);
        let w = random(c_out * c_in, 2);
        let dy = random(batch * c_out * hw, 3);
        let flop = 2.0 * (batch * c_out * hw * c_in) as f64;
        row(
            name,
            flop,
            runs,
            [
                &|| drop(std::hint::black_box(pw::forward(&x, &w, s))),
                &|| drop(std::hint::black_box(pw::backward_input(&dy, &w, s))),
                &|| drop(std::hint::black_box(pw::backward_weight(&dy, &x, s))),
            ],
        );
    }
}
