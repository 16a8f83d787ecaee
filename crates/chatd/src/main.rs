//! `chatd`: the all-in-one chat server. `cargo run --release` runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use chatd::{Application, Settings};
use clap::Parser;

/// The chat backend in one process: WebSocket gateway (lobby, direct and
/// room messages), in-process broker and local storage, on one port. Set
/// REDIS_URL to join gateways sharing a Redis instead.
#[derive(Parser)]
#[command(version, after_help = format!(
    "{}\n\n{}\n\n{}",
    chat_runtime::settings::HELP,
    chat_gateway::settings::HELP,
    chatd::HELP
))]
struct Cli {
    /// TOML file with settings; the environment overrides it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
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
    chat_runtime::telemetry::init(settings.server.log_format);
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings)?;
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
