//! `presence`: the presence service as its own process, reading what the
//! gateways store in Redis.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chat_auth::settings::{AuthMode, AuthSettings};
use chat_broker::Broker;
use chat_broker::redis::{RedisBroker, RedisOptions};
use chat_presence::PresenceService;
use chat_runtime::observe::Observability;
use chat_runtime::settings::{self, ServerSettings, SettingsError};
use chat_store::redis::messages::{RedisStore, RedisStoreOptions};
use chat_store::redis::presence::RedisPresence;
use chat_store::{Limits, MessageStore, Presence};
use clap::Parser;
use serde::Deserialize;

/// Presence service of the chat backend: unread counters, read marks, online
/// state and conversation history over HTTP, from the gateways' Redis.
#[derive(Parser)]
#[command(version, after_help = format!(
    "{}\n\n{}\n\nPresence settings:\n  REDIS_URL               the gateways' Redis (required)\n  CHAT_REDIS_PREFIX       the gateways' key prefix  [default: none]",
    settings::HELP,
    chat_auth::settings::HELP,
))]
struct Cli {
    /// TOML file with settings; the environment overrides it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Where the gateways keep their data.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PresenceSettings {
    redis_url: Option<String>,
    redis_prefix: String,
}

fn load(cli: &Cli) -> Result<(ServerSettings, AuthSettings, String, String), SettingsError> {
    let layers = settings::layers(cli.config.as_deref())?;
    let server: ServerSettings = settings::extract(&layers)?;
    let auth: AuthSettings = settings::extract(&layers)?;
    let own: PresenceSettings = settings::extract(&layers)?;
    let url = own.redis_url.ok_or_else(|| {
        SettingsError::new("invalid setting REDIS_URL: required by the presence service")
    })?;
    Ok((server, auth, url, own.redis_prefix))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (server, auth, url, prefix) = match load(&cli) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("presence: {e}");
            return ExitCode::from(2);
        }
    };
    chat_runtime::telemetry::init(server.log_format);
    let auth = match auth.build(AuthMode::Jwt, server.listen) {
        Ok((auth, _origins)) => Arc::new(auth),
        Err(e) => {
            eprintln!("presence: {e}");
            return ExitCode::from(2);
        }
    };
    let result = actix_web::rt::System::new().block_on(async move {
        // Reads and read markers only: the limits bound writes, which the
        // gateways make.
        let store: Arc<dyn MessageStore> = Arc::new(RedisStore::start(RedisStoreOptions {
            url: url.clone(),
            prefix: prefix.clone(),
            limits: Limits::default(),
        })?);
        let presence: Arc<dyn Presence> = Arc::new(RedisPresence::connect(&url, &prefix)?);
        // Publish-only: receipts and counters go out, nothing comes in.
        let broker: Arc<dyn Broker> = Arc::new(RedisBroker::start(
            RedisOptions {
                url,
                prefix,
                errors: None,
            },
            Arc::new(|_: &str, _| {}),
        )?);
        let mut obs = Observability::new();
        let check = Arc::clone(&store);
        obs.add_check(
            "store",
            Arc::new(move || {
                let store = Arc::clone(&check);
                Box::pin(async move { store.check().await.map_err(|e| e.to_string()) })
            }),
        );
        let service = PresenceService::new(store, presence, broker, auth);
        chat_runtime::server::serve_until_signal(&server, obs, move |cfg| service.configure(cfg))
            .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("presence: {e:#}");
            ExitCode::FAILURE
        }
    }
}
