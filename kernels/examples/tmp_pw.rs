use dermclass_kernels::bn::Act;
use dermclass_kernels::fused::{ConvShape, ConvWeights, Epilogue, conv2d};
use std::time::Instant;
fn main() {
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    pool.install(|| {
        for (c_in, c_out, h, w) in [
            (16usize, 96usize, 12usize, 112usize),
            (16, 96, 112, 112),
            (24, 144, 12, 56),
            (32, 192, 7, 28),
            (96, 24, 6, 56),
        ] {
            let s = ConvShape {
                n: 1,
                c_in,
                c_out,
                h,
                w,
                kernel: (1, 1),
                stride: 1,
                pad: 0,
                groups: 1,
            };
            let x: Vec<f32> = (0..c_in * h * w).map(|i| (i % 7) as f32 * 0.1).collect();
            let wt: Vec<f32> = (0..c_in * c_out).map(|i| (i % 5) as f32 * 0.01).collect();
            let bias = vec![0.1; c_out];
            let ep = Epilogue::new(&bias, Act::Relu6);
            let mut y = vec![0.0; s.out_len()];
            let p = ConvWeights::new(wt.clone(), c_out, 1);
            for _ in 0..50 {
                conv2d(&x, &p, s, &ep, &mut y);
            }
            let n = 2000;
            let t = Instant::now();
            for _ in 0..n {
                conv2d(&x, &p, s, &ep, &mut y);
            }
            let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            let macs = (c_in * c_out * h * w) as f64;
            println!(
                "{c_in}->{c_out} {h}x{w}: {us:.1} us, {:.1} GMAC/s",
                macs / us / 1e3
            );
        }
    });
}
