//! A bounded load test of `dermclass serve`, loopback only: the server runs in this process
//! with the shipped model; CLIENTS threads send REQUESTS `POST /predict` requests in all,
//! each a real ISIC image scaled to 600x450 (the size of the HAM10000 originals) and
//! encoded as JPEG. Prints latency percentiles, throughput and errors; exits 1 on any error.
//!
//! cargo run --release --example serve_load -- DATA_ROOT [REQUESTS] [CLIENTS] [WORKERS] [IMAGES_OUT]
//!
//! DATA_ROOT is an ISIC 2018 Task 3 folder (its first 64 images are used). With IMAGES_OUT
//! the 600x450 JPEGs are also written there, so that `dermclass predict` can be timed on the
//! same images.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dermclass::data::Dataset;
use dermclass::data::image_io::{load_image_rgb, resize_rgb};
use dermclass::serve::{Engine, ServeConfig, Server};
use dermclass::train::{SHIPPED_MODEL_NAME, checkpoint, shipped_model_file};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> Result<T> {
    match args.get(i) {
        Some(text) => text
            .parse()
            .map_err(|_| anyhow::anyhow!("argument {i} `{text}` is not valid")),
        None => Ok(default),
    }
}

/// The first 64 images of `root`, as 600x450 JPEGs.
fn jpegs(root: &Path, out: Option<&Path>) -> Result<Vec<Vec<u8>>> {
    let dataset = Dataset::open(root, None)?;
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)?;
    }
    dataset
        .samples
        .iter()
        .take(64)
        .map(|sample| {
            let img = resize_rgb(&load_image_rgb(&sample.path)?, 600, 450);
            let mut bytes = std::io::Cursor::new(Vec::new());
            img.write_to(&mut bytes, image::ImageFormat::Jpeg)?;
            if let Some(dir) = out {
                std::fs::write(dir.join(format!("{}.jpg", sample.id)), bytes.get_ref())?;
            }
            Ok(bytes.into_inner())
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(root) = args.first().map(PathBuf::from) else {
        bail!("usage: serve_load DATA_ROOT [REQUESTS] [CLIENTS] [WORKERS] [IMAGES_OUT]");
    };
    let requests: usize = arg(&args, 1, 1000)?;
    let clients: usize = arg(&args, 2, 8)?;
    let workers: usize = arg(&args, 3, 2)?;
    let images_out = args.get(4).map(PathBuf::from);
    let images = Arc::new(jpegs(&root, images_out.as_deref())?);
    let ckpt = checkpoint::load(&shipped_model_file()).context("the shipped model")?;
    let engine = Engine::start(
        SHIPPED_MODEL_NAME,
        ckpt,
        workers,
        burn::prelude::Device::flex(),
    )?;
    let config = ServeConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ServeConfig::default()
    };
    let server = Server::start(engine, config)?;
    let url = format!("http://{}/predict", server.addr());
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|client| {
            let (images, url) = (images.clone(), url.clone());
            std::thread::spawn(move || {
                let agent = ureq::agent();
                let mut times = Vec::new();
                let mut errors = 0usize;
                for k in (client..requests).step_by(clients) {
                    let t = Instant::now();
                    let answer = agent
                        .post(&url)
                        .set("Content-Type", "image/jpeg")
                        .send_bytes(&images[k % images.len()]);
                    let ok = answer.is_ok_and(|r| r.status() == 200 && r.into_string().is_ok());
                    if ok {
                        times.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (times, errors)
            })
        })
        .collect();
    let mut times = Vec::new();
    let mut errors = 0;
    for handle in handles {
        let (t, e) = handle.join().expect("client thread");
        times.extend(t);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    server.shutdown()?;
    times.sort();
    println!(
        "{} requests, {clients} clients, {workers} inference workers, 600x450 JPEGs ({:.0} KB mean)",
        requests,
        images.iter().map(Vec::len).sum::<usize>() as f64 / images.len() as f64 / 1e3
    );
    println!(
        "errors {errors}; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.1} requests/s over {wall:.1} s",
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 0.99),
        percentile(&times, 1.0),
        times.len() as f64 / wall
    );
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    Ok(())
}
