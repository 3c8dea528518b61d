//! The `vod-purge` binary: parses the command line and runs one subcommand.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vod-purge", version, about = "Batched, rate-limited ApsaraVideo VOD purges from CMS webhooks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the VOD simulator (a real HTTP server speaking the VOD RPC protocol).
    Sim(vod_purge::sim::SimArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => vod_purge::sim::run(args),
    }
}
