//! Inference A/B: the compiled plan (folded batch norm, fused epilogues) against burn's
//! modules with the fast kernels (batch norm + activation as their own pass), and against
//! the plan without the AVX-512 micro-kernel (the gemm crate instead); same weights, same
//! thread pool. Median images/s at 224x224, then where the plan's time goes.
//!
//! usage: cargo run --release --example infer_ab -- [ARCH] [RUNS]

use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::prelude::*;
use dermclass::infer::InferenceModel;
use dermclass::model::ModelSpec;

fn median_rate(batch: usize, runs: usize, mut step: impl FnMut()) -> f64 {
    for _ in 0..3 {
        step();
    }
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            step();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    batch as f64 / times[runs / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arch = args.first().map_or("mobilenet_v2:1.0", String::as_str);
    let runs: usize = args.get(1).map_or(Ok(41), |s| s.parse())?;
    let device = Device::default();
    let model = ModelSpec::parse(arch, 7)?.build(&device)?.valid();
    let compiled = InferenceModel::new(model.clone(), &device)?;
    dermclass_kernels::micro::set_enabled(false);
    let gemm_only = InferenceModel::new(model.clone(), &device)?;
    dermclass_kernels::micro::set_enabled(true);
    println!("{arch}, {} threads", rayon::current_num_threads());
    for batch in [1, 16] {
        let x = Tensor::<4>::random(
            [batch, 3, 224, 224],
            burn::tensor::Distribution::Default,
            &device,
        );
        let runs = if batch == 1 { runs } else { runs / 4 + 1 };
        // `INFER_AB=compiled` skips the modules (for a profiler).
        let skip = std::env::var("INFER_AB").is_ok_and(|v| v == "compiled");
        let modules = median_rate(batch, if skip { 1 } else { runs }, || {
            let _ = model.forward(x.clone()).into_data();
        });
        let plan = median_rate(batch, runs, || {
            let _ = compiled.forward(x.clone()).into_data();
        });
        let gemm = median_rate(batch, runs, || {
            let _ = gemm_only.forward(x.clone()).into_data();
        });
        println!(
            "batch {batch:2}: modules {modules:6.1} img/s, compiled {plan:6.1} img/s ({:.2} ms, \
             {:.2}x the modules), compiled without the micro-kernel {gemm:6.1} img/s",
            1e3 * batch as f64 / plan,
            plan / modules
        );
        if let Some(plan) = compiled.compiled() {
            let images: Vec<f32> = x.to_data().iter::<f32>().collect();
            let runs = runs.min(20);
            let per_run = |t: f64| 1e3 * t / runs as f64;
            for (kind, total, _) in plan.profile(&images, [batch, 3, 224, 224], runs)? {
                println!("    {kind:18} {:7.2} ms", per_run(total));
            }
        }
    }
    Ok(())
}
