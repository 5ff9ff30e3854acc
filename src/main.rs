//! The `dermclass` command line: a thin layer over the library.

mod cli;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Train, evaluate and ship small, fast CNNs for dermoscopic skin-lesion images.
#[derive(Parser, Debug)]
#[command(name = "dermclass", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List every registered model family with its options.
    Models,
    /// Per-layer output shapes, parameters and multiply-adds of an architecture.
    Summary(cli::model::SummaryArgs),
    /// Train a model: progress, checkpoints, metrics.csv, curves, report.md.
    Train(Box<cli::train::TrainArgs>),
    /// Metrics of a trained model on labelled images.
    Evaluate(cli::train::EvaluateArgs),
    /// Class probabilities for images, in the ISIC 2018 submission CSV format.
    Predict(cli::train::PredictArgs),
    /// Write a weights-only copy of a checkpoint (for shipping; it cannot resume).
    Strip(cli::train::StripArgs),
    /// Write a trained model as ONNX (batch norm folded; preprocessing in its metadata).
    Export(cli::export::ExportArgs),
    /// An HTTP inference server: Open Inference Protocol, /predict, /explain, a web page.
    Serve(cli::serve::ServeArgs),
    /// A Grad-CAM heat map of where the evidence for a class lies in an image.
    Explain(cli::serve::ExplainArgs),
    /// Train several architectures alike and tabulate cost, time, accuracy and latency.
    Compare(Box<cli::train::CompareArgs>),
    /// Training and inference speed of one model (compare with PyTorch/Keras: bench/speed.sh).
    Bench(cli::train::BenchArgs),
    /// Generate synthetic data, train a small model on it and evaluate it (a few minutes).
    Demo(cli::train::DemoArgs),
    #[command(flatten)]
    Data(cli::data::DataCommand),
}

fn main() {
    dermclass::memory::keep_freed_memory();
    // `train --help` ends with the settings' defaults, generated from the defaults.
    let command =
        Cli::command().mut_subcommand("train", |c| c.after_help(cli::train::defaults_help()));
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    if !matches!(cli.command, Command::Serve(_)) {
        quiet_on_closed_pipe();
    }
    // Training runs its steps on this thread: make it one of the pool's workers.
    if matches!(
        cli.command,
        Command::Train(_) | Command::Compare(_) | Command::Bench(_) | Command::Demo(_)
    ) {
        dermclass::fast_ops::make_this_thread_a_pool_worker();
    }
    let result = match cli.command {
        Command::Models => {
            cli::model::models();
            Ok(())
        }
        Command::Summary(args) => cli::model::summary(args),
        Command::Train(args) => cli::train::run_train(*args),
        Command::Evaluate(args) => return finish(cli::train::run_evaluate(args)),
        Command::Predict(args) => return finish(cli::train::run_predict(args)),
        Command::Strip(args) => cli::train::run_strip(args),
        Command::Export(args) => cli::export::run_export(args),
        Command::Serve(args) => cli::serve::run_serve(args),
        Command::Explain(args) => cli::serve::run_explain(args),
        Command::Demo(args) => cli::train::run_demo(args),
        Command::Compare(args) => cli::train::run_compare(*args),
        Command::Bench(args) => cli::train::run_bench(args),
        Command::Data(cmd) => cmd.run(),
    };
    finish(result.map(|()| cli::Outcome::Complete));
}

/// `dermclass predict ... | head` ends quietly when `head` stops reading, as Unix tools do,
/// instead of panicking on the write. Not for `serve`: there a client that hangs up must
/// only end its own connection, which Rust's default (SIGPIPE ignored) ensures.
fn quiet_on_closed_pipe() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: restoring the default disposition of one signal at start-up, before any
    // thread is spawned.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Exits with the command's outcome: 0 done, 1 error (printed), 3 done with inputs skipped.
fn finish(result: anyhow::Result<cli::Outcome>) {
    match result {
        Ok(cli::Outcome::Complete) => {}
        Ok(outcome) => std::process::exit(outcome.exit_code()),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(cli::EXIT_ERROR);
        }
    }
}
