//! `media`: the media service as its own process.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Media service of the chat backend: streamed uploads, content sniffing,
/// signed links with ranges, metadata in SQLite or PostgreSQL.
#[derive(Parser)]
#[command(version, after_help = chat_media::Settings::help())]
struct Cli {
    /// TOML file with settings; the environment overrides it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    chat_runtime::app::main("media", cli.config.as_deref(), chat_media::serve)
}
