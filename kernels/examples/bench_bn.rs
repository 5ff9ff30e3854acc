//! Benchmark of the fused batch norm + activation kernels on MobileNetV2 shapes.
//!
//! `cargo run --release -p dermclass-kernels --example bench_bn`
//!
//! For every shape: median milliseconds of `train_forward`, `train_backward` and
//! `eval_forward` (ReLU6), and the effective bandwidth counting the compulsory traffic of the
//! passes, 4 bytes a float: forward reads x twice and writes y (12 B/elem), backward reads
//! x and dy twice and writes dx (20 B/elem), eval reads x and writes y (8 B/elem).
//! The last column is the time to allocate and fill a fresh output `Vec` of the same size
//! (page faults included): a floor that every call pays, since each returns a new tensor.

use dermclass_kernels::bn::{self, Act};

mod common;
use common::median_ms;

fn main() {
    let train = [
        (16, 32, 112, 112),
        (16, 96, 112, 112),
        (16, 96, 56, 56),
        (16, 144, 56, 56),
        (16, 192, 28, 28),
        (16, 384, 14, 14),
        (16, 576, 14, 14),
        (16, 960, 7, 7),
        (16, 1280, 7, 7),
    ];
    let eval_only = [(1, 32, 112, 112), (1, 960, 7, 7)];
    let eps = 1e-5;
    let act = Act::Relu6;
    println!(
        "threads: {}  act: {act:?}  (median ms; GB/s = compulsory bytes / time)",
        rayon::current_num_threads()
    );
    println!(
        "{:<20} {:>9} {:>7} {:>9} {:>7} {:>9} {:>7} {:>9}",
        "shape", "fwd ms", "GB/s", "bwd ms", "GB/s", "eval ms", "GB/s", "alloc ms"
    );
    for (i, &(n, c, h, w)) in train.iter().chain(&eval_only).enumerate() {
        let hw = h * w;
        let len = n * c * hw;
        // Deterministic pseudo-random data (a small LCG; the values only need to be varied).
        let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ len as u64;
        let mut rnd = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        };
        let x: Vec<f32> = (0..len).map(|_| rnd()).collect();
        let dy: Vec<f32> = (0..len).map(|_| rnd()).collect();
        let gamma: Vec<f32> = (0..c).map(|_| 1.0 + rnd()).collect();
        let beta: Vec<f32> = (0..c).map(|_| 2.0 + rnd()).collect();
        let bytes = len as f64 * 4.0;
        let reps = ((2e9 / (bytes * 12.0)) as usize).clamp(7, 201);
        let gbs = |b: f64, ms: f64| b / (ms * 1e-3) / 1e9;
        let shape = format!("({n},{c},{h},{w})");
        let alloc_ms = median_ms(1, reps, || {
            let mut o = vec![0f32; len];
            o.fill(1.0);
            std::hint::black_box(o);
        });
        let eval_ms = {
            let (_, m, v) =
                bn::train_forward(&x, &gamma, &beta, bn::BnShape { n, c, hw }, eps, act);
            median_ms(1, reps, || {
                std::hint::black_box(bn::eval_forward(
                    &x,
                    &gamma,
                    &beta,
                    &m,
                    &v,
                    bn::BnShape { n, c, hw },
                    eps,
                    act,
                ));
            })
        };
        if i >= train.len() {
            println!(
                "{shape:<20} {:>9} {:>7} {:>9} {:>7} {eval_ms:>9.3} {:>7.1} {alloc_ms:>9.3}",
                "-",
                "-",
                "-",
                "-",
                gbs(8.0 * bytes, eval_ms)
            );
            continue;
        }
        let fwd_ms = median_ms(1, reps, || {
            std::hint::black_box(bn::train_forward(
                &x,
                &gamma,
                &beta,
                bn::BnShape { n, c, hw },
                eps,
                act,
            ));
        });
        let (_, m, v) = bn::train_forward(&x, &gamma, &beta, bn::BnShape { n, c, hw }, eps, act);
        let bwd_ms = median_ms(1, reps, || {
            std::hint::black_box(bn::train_backward(
                &x,
                &gamma,
                &beta,
                &m,
                &v,
                &dy,
                bn::BnShape { n, c, hw },
                eps,
                act,
            ));
        });
        println!(
            "{shape:<20} {fwd_ms:>9.3} {:>7.1} {bwd_ms:>9.3} {:>7.1} {eval_ms:>9.3} {:>7.1} \
             {alloc_ms:>9.3}",
            gbs(12.0 * bytes, fwd_ms),
            gbs(20.0 * bytes, bwd_ms),
            gbs(8.0 * bytes, eval_ms)
        );
    }
}
