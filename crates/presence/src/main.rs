//! `presence`: the presence service as its own process, reading what the
//! gateways store in Redis.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Presence service of the chat backend: unread counters, read marks, online
/// state and conversation history over HTTP, from the gateways' Redis.
#[derive(Parser)]
#[command(version, after_help = chat_presence::Settings::help())]
struct Cli {
    /// TOML file with settings; the environment overrides it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    chat_runtime::app::main("presence", cli.config.as_deref(), chat_presence::serve)
}
