//! `gateway`: the WebSocket gateway as its own process, one of many replicas
//! sharing a Redis.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use chat_auth::settings::{AuthMode, AuthSettings};
use chat_gateway::{Access, Application, Engine, GatewaySettings};
use chat_runtime::settings::{self, ServerSettings};
use clap::Parser;

/// WebSocket gateway of the chat backend: terminates client connections and
/// fans messages out through Redis, so any number of replicas serve one chat.
#[derive(Parser)]
#[command(version, after_help = format!(
    "{}\n\n{}\n\n{}",
    settings::HELP,
    chat_auth::settings::HELP,
    chat_gateway::settings::HELP
))]
struct Cli {
    /// TOML file with settings; the environment overrides it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = settings::layers(cli.config.as_deref()).and_then(|layers| {
        let server: ServerSettings = settings::extract(&layers)?;
        let gateway: GatewaySettings = settings::extract(&layers)?;
        gateway.validate()?;
        let auth: AuthSettings = settings::extract(&layers)?;
        if gateway.redis_url.is_none() {
            return Err(settings::SettingsError::new(
                "invalid setting REDIS_URL: required by the gateway (run chatd for the all-in-one without Redis)",
            ));
        }
        Ok((server, gateway, auth))
    });
    let (server, gateway, auth) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
    };
    chat_runtime::telemetry::init(server.log_format);
    // After telemetry, so open mode's warning is logged.
    let access = match auth.build(AuthMode::Jwt, server.listen) {
        Ok((auth, origins)) => Access {
            auth: Arc::new(auth),
            origins,
        },
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let result = actix_web::rt::System::new().block_on(async move {
        // REDIS_URL is required here, so this is always the Redis engine.
        let engine = Engine::from_settings(&gateway, std::path::Path::new("."));
        let app = Application::build(&server, gateway, engine, access).await?;
        app.run_until_stopped(chat_runtime::server::shutdown_signal())
            .await?;
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("gateway failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
