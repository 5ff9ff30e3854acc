//! Benchmark of the inference convolutions (`fused::conv2d`) on MobileNetV2's 1x1 layers at
//! 224x224, batch 1: the AVX-512 micro-kernel (its narrow-tile kernel for maps of at most
//! 64 pixels on and off) against the portable GEMM path, with the epilogue (bias + ReLU6) in
//! all.
//!
//! `cargo run --release -p dermclass-kernels --example bench_conv`

use dermclass_kernels::bn::Act;
use dermclass_kernels::fused::{ConvShape, ConvWeights, Epilogue, conv2d};
use dermclass_kernels::micro;

mod common;
use common::median_ms;

fn main() {
    // (c_in, c_out, side): every distinct 1x1 layer of MobileNetV2 1.0 at 224x224.
    let layers = [
        (32, 16, 112),
        (16, 96, 112),
        (96, 24, 56),
        (24, 144, 56),
        (144, 24, 56),
        (144, 32, 28),
        (32, 192, 28),
        (192, 32, 28),
        (192, 64, 14),
        (64, 384, 14),
        (384, 64, 14),
        (384, 96, 14),
        (96, 576, 14),
        (576, 96, 14),
        (576, 160, 7),
        (160, 960, 7),
        (960, 160, 7),
        (960, 320, 7),
        (320, 1280, 7),
    ];
    println!(
        "threads: {}  (median ms, GFLOP/s)",
        rayon::current_num_threads()
    );
    println!(
        "{:<18} {:>9} {:>8} {:>9} {:>8} {:>9} {:>8}",
        "layer", "micro ms", "GFLOP/s", "no narrow", "GFLOP/s", "gemm ms", "GFLOP/s"
    );
    for &(c_in, c_out, side) in &layers {
        let s = ConvShape {
            n: 1,
            c_in,
            c_out,
            h: side,
            w: side,
            kernel: (1, 1),
            stride: 1,
            pad: 0,
            groups: 1,
        };
        let x: Vec<f32> = (0..c_in * side * side)
            .map(|i| (i % 7) as f32 * 0.1)
            .collect();
        let w: Vec<f32> = (0..c_in * c_out).map(|i| (i % 5) as f32 * 0.01).collect();
        let bias = vec![0.1; c_out];
        let ep = Epilogue::new(&bias, Act::Relu6);
        let mut y = vec![0.0; s.out_len()];
        let flops = 2.0 * (c_in * c_out * side * side) as f64;
        let mut time =
            |weights: &ConvWeights| median_ms(5, 51, || conv2d(&x, weights, s, &ep, &mut y));
        let packed = ConvWeights::new(w.clone(), c_out, 1);
        let micro = time(&packed);
        micro::set_narrow_enabled(false);
        let wide = time(&packed);
        micro::set_narrow_enabled(true);
        let gemm = time(&ConvWeights::unpacked(w.clone()));
        let label = format!("{c_in}->{c_out} {side}x{side}");
        println!(
            "{label:<18} {micro:>9.3} {:>8.1} {wide:>9.3} {:>8.1} {gemm:>9.3} {:>8.1}",
            flops / micro / 1e6,
            flops / wide / 1e6,
            flops / gemm / 1e6
        );
    }
}
