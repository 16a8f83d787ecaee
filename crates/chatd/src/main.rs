//! `chatd`: the all-in-one chat server. `cargo run --release` runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chatd::{Application, Settings};
use clap::{Parser, Subcommand};

/// The chat backend in one process: WebSocket gateway (lobby, direct and
/// room messages), in-process broker and local storage, on one port. Set
/// REDIS_URL to join gateways sharing a Redis instead.
#[derive(Parser)]
#[command(version, after_help = format!(
        "{}\n\n{}\n\n{}\n\n{}\n\n{}",
    chat_runtime::settings::HELP,
    chat_auth::settings::HELP,
    chat_gateway::settings::HELP,
    chat_media::settings::HELP,
    chatd::HELP
))]
struct Cli {
    /// TOML file with settings; the environment overrides it.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print a token for USER signed with CHAT_JWT_SECRET (for demos and scripts).
    Token {
        /// The user the token opens.
        user: String,
        /// How long the token is valid, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("chatd: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Token { user, ttl }) = cli.command {
        return match chatd::mint_token(&settings, &user, ttl) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("chatd token: {e}");
                ExitCode::from(2)
            }
        };
    }
    chat_runtime::telemetry::init(settings.server.log_format);
    let access = match settings.access() {
        Ok(access) => access,
        Err(e) => {
            eprintln!("chatd: {e}");
            return ExitCode::from(2);
        }
    };
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings, access).await?;
        app.run_until_stopped(chat_runtime::server::shutdown_signal())
            .await?;
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
