//! The `dermclass` command line.

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
    #[command(flatten)]
    Data(cli::data::DataCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Data(cmd) => cmd.run(),
    }
}
