//! `gateway`: the WebSocket gateway as its own process, one of many replicas
//! sharing a Redis.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// WebSocket gateway of the chat backend: terminates client connections and
/// fans messages out through Redis, so any number of replicas serve one chat.
#[derive(Parser)]
#[command(version, after_help = chat_gateway::Settings::help())]
struct Cli {
    /// TOML file with settings; the environment overrides it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    chat_runtime::app::main("gateway", cli.config.as_deref(), chat_gateway::serve)
}
