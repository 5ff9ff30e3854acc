//! The `dermclass` command line: a thin layer over the library.

mod cli;

use clap::{Parser, Subcommand};

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
    #[command(flatten)]
    Data(cli::data::DataCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Models => {
            cli::model::models();
            Ok(())
        }
        Command::Summary(args) => cli::model::summary(args),
        Command::Data(cmd) => cmd.run(),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
