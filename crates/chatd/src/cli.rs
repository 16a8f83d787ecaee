//! `chatd`'s command line: serve (the default), print a token or a VAPID
//! key, manage API keys.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// The chat backend in one process: WebSocket gateway (lobby, direct and
/// room messages), in-process broker and local storage, on one port. Set
/// REDIS_URL to join gateways sharing a Redis instead.
#[derive(Parser)]
#[command(name = "chatd", version, after_help = crate::Settings::help())]
pub struct Cli {
    /// TOML file with settings; the environment overrides it.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Make, list or revoke the server API's keys, in the store the
    /// settings name (REDIS_URL, or CHAT_DATA_DIR's SQLite).
    #[command(name = "api-key", subcommand)]
    ApiKey(crate::api_keys::Action),
    /// Print a token for USER signed with CHAT_JWT_SECRET (for demos and scripts).
    Token {
        /// The user the token opens.
        user: String,
        /// How long the token is valid, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Print a new VAPID key pair for Web Push: on standard output the line
    /// to set on every gateway and the presence binary
    /// (CHAT_VAPID_PRIVATE_KEY=…); on standard error the public key, for
    /// reference (the servers hand it to browsers).
    #[command(name = "vapid-key")]
    VapidKey,
}

/// Runs what the command line asks, and answers its exit code: serving's
/// (`chat_runtime::app::main`: 2 with one line for bad settings), the
/// token command's, or clap's for bad arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token { user, ttl }) => {
            crate::token_command(cli.config.as_deref(), &user, ttl)
        }
        Some(Command::ApiKey(action)) => crate::api_keys::command(cli.config.as_deref(), action),
        Some(Command::VapidKey) => vapid_key(),
        None => chat_runtime::app::main("chatd", cli.config.as_deref(), crate::serve),
    }
}

/// `chatd vapid-key`: a new key pair, from the operating system's random
/// source.
fn vapid_key() -> ExitCode {
    match chat_push::VapidKey::generate() {
        Ok(key) => {
            // What this command is for.
            // The setting alone on standard output, so `$(chatd vapid-key)`
            // is the line to set; the public key, for reference, apart.
            #[allow(clippy::print_stdout)]
            {
                println!("CHAT_VAPID_PRIVATE_KEY={}", key.private_base64());
            }
            eprintln!("# public key: {}", key.public_base64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chatd vapid-key: {e}");
            ExitCode::from(2)
        }
    }
}
