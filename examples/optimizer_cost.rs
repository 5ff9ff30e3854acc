//! How long the Adam step takes beside the rest of a training step, burn's optimizer and
//! dermclass's fused one (`train::fused_adam`): times forward + backward and the optimizer
//! step separately, at 128x128 batch 32 (the real comparison's setting), median of the timed
//! steps after one warm-up, the two optimizers in turn.
//!
//! usage: cargo run --release --example optimizer_cost -- [ARCH] [STEPS]

use std::time::Instant;

use anyhow::Result;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use dermclass::model::ModelSpec;
use dermclass::train::fused_adam::FusedAdam;
use dermclass::train::loss::cross_entropy;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median (forward + backward, optimizer step) milliseconds and the parameter count.
fn time_steps(
    arch: &str,
    steps: usize,
    mut optimizer: ModuleOptimizer,
) -> Result<(f64, f64, usize)> {
    let device = Device::flex().autodiff();
    let spec = ModelSpec::parse(arch, 7)?;
    let mut model = spec.build(&device)?;
    let x = Tensor::<4>::random(
        [32, 3, 128, 128],
        burn::tensor::Distribution::Default,
        &device,
    );
    let labels: Vec<usize> = (0..32).map(|i| i % 7).collect();
    let (mut passes, mut updates) = (Vec::new(), Vec::new());
    for step in 0..=steps {
        let started = Instant::now();
        let loss = cross_entropy(model.forward(x.clone()), &labels, None, 0.0);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let between = Instant::now();
        model = optimizer.step(1e-4, model.clone(), grads);
        let _ = model.clone().into_record();
        if step > 0 {
            passes.push((between - started).as_secs_f64() * 1e3);
            updates.push(between.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok((
        median(passes),
        median(updates),
        spec.cost(128, 128)?.params(),
    ))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arch = args.first().map_or("plain_v1:1.0", String::as_str);
    let steps: usize = args.get(1).map_or(Ok(5), |s| s.parse())?;
    dermclass::fast_ops::make_this_thread_a_pool_worker();
    for round in 1..=2 {
        for (name, optimizer) in [
            ("burn Adam", AdamConfig::new().init()),
            ("fused Adam", FusedAdam::new(0.0).init()),
        ] {
            let (pass, update, params) = time_steps(arch, steps, optimizer)?;
            println!(
                "round {round} {arch} ({params} parameters) {name}: forward + backward {pass:.1} ms, optimizer step {update:.1} ms ({:.0}% of the step), median of {steps}",
                100.0 * update / (pass + update)
            );
        }
    }
    Ok(())
}
