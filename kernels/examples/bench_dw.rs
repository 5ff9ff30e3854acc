//! Microbenchmark of the depthwise 3x3 kernels on the MobileNetV2/ShuffleNet shapes.
//!
//! `cargo run --release -p dermclass-kernels --example bench_dw` (set `RAYON_NUM_THREADS`
//! to pin the thread count; it runs on a pool thread, as the plan does). Prints the median milliseconds of forward, of the inference
//! forward with its epilogue (bias and ReLU6, into a kept buffer), of the same through the
//! padded-plane kernels (the AVX-512 in-place ones off) and of backward (both
//! gradients) per shape. Optional arguments: indices of the shapes to run. `BATCH=1`
//! runs every shape at that batch size instead (inference).

use dermclass_kernels::bn::Act;
use dermclass_kernels::dw;
use dermclass_kernels::fused::Epilogue;
use std::hint::black_box;

mod common;
use common::median_ms;

fn main() {
    // On one of the pool's threads, as the plan and the training step run: from outside,
    // each call would hand its work over and sleep (tens of microseconds on small shapes).
    rayon::ThreadPoolBuilder::new()
        .build()
        .expect("a thread pool")
        .install(run);
}

fn run() {
    let shapes = [
        (16, 32, 112, 112, 1),
        (16, 96, 112, 112, 2),
        (16, 144, 56, 56, 1),
        (16, 144, 56, 56, 2),
        (16, 192, 28, 28, 1),
        (16, 192, 28, 28, 2),
        (16, 384, 14, 14, 1),
        (16, 576, 14, 14, 1),
        (16, 576, 14, 14, 2),
        (16, 960, 7, 7, 1),
        (1, 144, 56, 56, 1),
    ];
    println!(
        "threads: {} (RAYON_NUM_THREADS to change)",
        rayon::current_num_threads()
    );
    println!(
        "{:>4} {:>4} {:>4} {:>4} {:>2} | {:>9} {:>9} {:>9} {:>9} {:>9}",
        "n", "c", "h", "w", "s", "fwd ms", "fused ms", "padded ms", "bwd ms", "f+b ms"
    );
    let (mut tf, mut tfused, mut tpadded, mut tb) = (0.0, 0.0, 0.0, 0.0);
    // Optional arguments: indices (0-based) of the shapes to run.
    let only: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let batch: Option<usize> = std::env::var("BATCH").ok().and_then(|b| b.parse().ok());
    for (i, &(n, c, h, w, s)) in shapes.iter().enumerate() {
        if !only.is_empty() && !only.contains(&i) {
            continue;
        }
        let n = batch.unwrap_or(n);
        let (ho, wo) = (dw::out_size(h, s), dw::out_size(w, s));
        // Cheap deterministic pseudo-random data.
        let data = |len: usize, seed: u32| -> Vec<f32> {
            (0..len)
                .map(|i| {
                    let v = (i as u32).wrapping_mul(2654435761).wrapping_add(seed);
                    (v >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect()
        };
        let shape = dw::DwShape {
            n,
            c,
            h,
            w,
            stride: s,
        };
        let x = data(n * c * h * w, 1);
        let wt = data(c * 9, 2);
        let dy = data(n * c * ho * wo, 3);
        let reps = if n * c * h * w > 4_000_000 { 9 } else { 21 };
        let f = median_ms(3, reps, || {
            black_box(dw::forward(black_box(&x), &wt, shape));
        });
        let bias = data(c, 4);
        let epilogue = Epilogue::new(&bias, Act::Relu6);
        let mut y = vec![0.0; n * c * ho * wo];
        let mut fused_forward = || {
            dw::forward_fused(black_box(&x), &wt, shape, &epilogue, &mut y);
            black_box(&y);
        };
        let fused = median_ms(3, reps, &mut fused_forward);
        // The same through the padded-plane kernels (the in-place ones off).
        dw::set_direct_enabled(false);
        let padded = median_ms(3, reps, &mut fused_forward);
        dw::set_direct_enabled(true);
        let b = median_ms(3, reps, || {
            black_box(dw::backward(black_box(&x), &wt, &dy, shape, true, true));
        });
        tf += f;
        tfused += fused;
        tpadded += padded;
        tb += b;
        println!(
            "{n:>4} {c:>4} {h:>4} {w:>4} {s:>2} | {f:>9.3} {fused:>9.3} {padded:>9.3} {b:>9.3} {:>9.3}",
            f + b
        );
    }
    println!(
        "{:>22} | {tf:>9.3} {tfused:>9.3} {tpadded:>9.3} {tb:>9.3} {:>9.3}",
        "total",
        tf + tb
    );
}
