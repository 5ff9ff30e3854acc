use dermclass_kernels::bn::Act;
use dermclass_kernels::dw::{self, DwShape};
use dermclass_kernels::fused::Epilogue;
use std::time::Instant;
fn main() {
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    pool.install(inner);
}
fn inner() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (c, h, w, st, iters) = (a[0], a[1], a[2], a[3], a[4]);
    let s = DwShape {
        n: 1,
        c,
        h,
        w,
        stride: st,
    };
    let x: Vec<f32> = (0..c * h * w).map(|i| (i % 7) as f32 * 0.1).collect();
    let wt: Vec<f32> = (0..c * 9).map(|i| (i % 5) as f32 * 0.01).collect();
    let bias = vec![0.1; c];
    let ep = Epilogue::new(&bias, Act::Relu6);
    let mut y = vec![0.0; c * dw::out_size(h, st) * dw::out_size(w, st)];
    for _ in 0..100 {
        dw::forward_fused(&x, &wt, s, &ep, &mut y);
    }
    let mut out = vec![];
    for round in 0..6 {
        dw::set_direct_enabled(round % 2 == 0);
        let t = Instant::now();
        for _ in 0..iters {
            dw::forward_fused(&x, &wt, s, &ep, &mut y);
        }
        out.push(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
    }
    println!(
        "{c}x{h}x{w} s{st}: direct {:.2} {:.2} {:.2} us, padded {:.2} {:.2} {:.2}",
        out[0], out[2], out[4], out[1], out[3], out[5]
    );
}
