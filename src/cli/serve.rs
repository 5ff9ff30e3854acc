//! `dermclass serve` (an HTTP inference server) and `dermclass explain` (a Grad-CAM heat
//! map from the command line).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::train::load_model;
use dermclass::data::image_io::load_image_rgb;
use dermclass::data::{class_index, class_name};
use dermclass::device::parse_device;
use dermclass::explain::{overlay, png_bytes};
use dermclass::report::write_atomic;
use dermclass::serve::engine::Predictor;
use dermclass::serve::{Engine, ServeConfig, Server};

/// Arguments of `dermclass serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A run folder (its best.ckpt) or a checkpoint file (default: the shipped model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Address to listen on. Binds to loopback unless told otherwise; port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Inference threads, each with its own copy of the model.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub workers: u64,
    /// Largest request body, in MB.
    #[arg(long, default_value_t = 20.0)]
    pub max_body_mb: f64,
    /// Longest a request may take, in seconds (answered 503 after that).
    #[arg(long, default_value_t = 30.0)]
    pub timeout_seconds: f64,
    /// Device: cpu, cuda[:N] or wgpu (when compiled in).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The name requests use for a model: its file stem, or its run folder's name for a
/// run's `best.ckpt`/`last.ckpt`.
fn model_name(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    let run = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|s| s.to_str());
    match (stem, run) {
        ("best" | "last", Some(run)) => run.to_string(),
        _ => stem.to_string(),
    }
}

fn serve_config(args: &ServeArgs) -> Result<ServeConfig> {
    if !(args.max_body_mb > 0.0 && args.max_body_mb <= 1024.0) {
        bail!(
            "--max-body-mb must be in (0, 1024], got {}",
            args.max_body_mb
        );
    }
    if !(args.timeout_seconds > 0.0 && args.timeout_seconds <= 3600.0) {
        bail!(
            "--timeout-seconds must be in (0, 3600], got {}",
            args.timeout_seconds
        );
    }
    Ok(ServeConfig {
        addr: args.addr,
        body_limit: (args.max_body_mb * 1024.0 * 1024.0) as usize,
        timeout: Duration::from_secs_f64(args.timeout_seconds),
        handle_signals: true,
    })
}

/// Runs `dermclass serve` until SIGTERM or Ctrl-C.
pub fn run_serve(args: ServeArgs) -> Result<()> {
    let config = serve_config(&args)?;
    let device = parse_device(&args.device)?;
    let (path, checkpoint) = load_model(args.model.as_deref())?;
    let name = model_name(&path);
    let engine = Engine::start(&name, checkpoint, args.workers as usize, device)?;
    let server = Server::start(engine, config)?;
    println!(
        "serving `{name}` on http://{} with {} inference workers (Ctrl-C or SIGTERM stops)",
        server.addr(),
        args.workers
    );
    println!(
        "  GET /  POST /predict  POST /explain  GET /v2/models/{name}  POST /v2/models/{name}/infer"
    );
    server.wait()?;
    println!("stopped: requests in flight were answered");
    Ok(())
}

/// Arguments of `dermclass explain`.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// A run folder (its best.ckpt) or a checkpoint file (default: the shipped model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The image to explain (JPEG, PNG, TIFF, BMP).
    #[arg(long)]
    pub input: PathBuf,
    /// The heat map over the image, as PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// The class to explain (a class code such as MEL; default: the top class).
    #[arg(long)]
    pub class: Option<String>,
    /// Device: cpu, cuda[:N] or wgpu (when compiled in).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Runs `dermclass explain`: prints the probabilities and writes the Grad-CAM overlay.
pub fn run_explain(args: ExplainArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    let (_, checkpoint) = load_model(args.model.as_deref())?;
    let classes = &checkpoint.state.classes;
    let asked = match &args.class {
        Some(code) => Some(class_index(classes, code).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let image = load_image_rgb(&args.input)?;
    let explanation = Predictor::new(&checkpoint, device)?.explain(&image, asked);
    for (code, p) in classes.iter().zip(&explanation.probabilities) {
        println!("  {code:<6} {:>6.1}%  {}", 100.0 * p, class_name(code));
    }
    let class = explanation.class;
    let png = png_bytes(&overlay(&image, &explanation.map, 0.5));
    write_atomic(&args.out, &png)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "wrote the Grad-CAM of {} ({}) over {} to {}",
        classes[class],
        class_name(&classes[class]),
        args.input.display(),
        args.out.display()
    );
    Ok(())
}
