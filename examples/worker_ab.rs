//! Where the work runs, A/B: on the calling thread (outside rayon's pool, so every layer hands
//! its parallel work to the pool and sleeps until it is done) against on one of the pool's
//! workers (`fast_ops::on_pool_worker`, what inference does). One pass (or training
//! step) of each in turn, so host noise falls on both alike; median, mean and 10th percentile.
//!
//! usage: cargo run --release --example worker_ab -- [ARCH] [RUNS] [infer|train]
//! `infer`: the compiled plan at 224x224, batch 1 (`BATCH=16` for another).
//! `train`: forward, cross-entropy, backward and Adam step at 128x128, batch 32 (training runs
//! on the main thread made a pool worker instead: a step on whichever worker is free changes
//! burn's per-thread batch-norm statistics from run to run; see `fast_ops::on_pool_worker`).

use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use dermclass::fast_ops::on_pool_worker;
use dermclass::infer::{Plan, Workspace};
use dermclass::model::ModelSpec;
use dermclass::train::loss::cross_entropy;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arch = args.first().map_or("mobilenet_v2:1.0", String::as_str);
    let runs: usize = args.get(1).map_or(Ok(200), |s| s.parse())?;
    let mode = args.get(2).map_or("infer", String::as_str);
    let (mut pass, what): (Box<dyn FnMut(bool) -> Result<()>>, String) = match mode {
        "infer" => inference(arch)?,
        "train" => training(arch)?,
        _ => bail!("mode must be infer or train, not {mode}"),
    };
    let mut ms = [Vec::new(), Vec::new()];
    for run in 0..runs + 3 {
        for (on_worker, times) in ms.iter_mut().enumerate() {
            let started = Instant::now();
            pass(on_worker == 1)?;
            if run >= 3 {
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let threads = rayon::current_num_threads();
    println!("{arch}, {what}, {threads} threads, {runs} runs each");
    for (name, times) in ["calling thread", "pool worker"].iter().zip(ms.iter_mut()) {
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let (median, p10) = (times[times.len() / 2], times[times.len() / 10]);
        println!("{name:<15} median {median:.3} ms, mean {mean:.3}, p10 {p10:.3}");
    }
    Ok(())
}

type Pass = Box<dyn FnMut(bool) -> Result<()>>;

/// One pass of the compiled plan, on a worker or on this thread.
fn inference(arch: &str) -> Result<(Pass, String)> {
    let batch: usize = std::env::var("BATCH").map_or(Ok(1), |b| b.parse())?;
    let model = ModelSpec::parse(arch, 7)?
        .build(&Device::default())?
        .valid();
    let plan = Plan::compile(&dermclass::export::network_graph(&model))?;
    let shape = [batch, 3, 224, 224];
    let x = vec![0.5f32; batch * 3 * 224 * 224];
    let mut ws = Workspace::default();
    let pass = move |on_worker: bool| -> Result<()> {
        if on_worker {
            plan.run(&mut ws, &x, shape)?;
        } else {
            plan.run_on_calling_thread(&mut ws, &x, shape, |_, _| {})?;
        }
        Ok(())
    };
    Ok((
        Box::new(pass),
        format!("inference at 224x224, batch {batch}"),
    ))
}

/// One training step, on a worker or on this thread.
fn training(arch: &str) -> Result<(Pass, String)> {
    let (size, batch) = (128, 32);
    let device = Device::default().autodiff();
    let mut model = ModelSpec::parse(arch, 7)?.build(&device)?;
    let mut optimizer = AdamConfig::new().init();
    let x = Tensor::<4>::random(
        [batch, 3, size, size],
        burn::tensor::Distribution::Default,
        &device,
    );
    let labels: Vec<usize> = (0..batch).map(|i| i % 7).collect();
    let pass = move |on_worker: bool| -> Result<()> {
        let mut step = || {
            let loss = cross_entropy(model.forward(x.clone()), &labels, None, 0.0);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-4, model.clone(), grads);
            let _ = model.clone().into_record();
        };
        if on_worker {
            on_pool_worker(step);
        } else {
            step();
        }
        Ok(())
    };
    Ok((
        Box::new(pass),
        format!("training at {size}x{size}, batch {batch}"),
    ))
}
