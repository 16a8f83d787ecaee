//! `media`: the media service as its own process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chat_auth::settings::{AuthMode, AuthSettings};
use chat_media::{MediaService, MediaSettings};
use chat_runtime::observe::Observability;
use chat_runtime::settings::{self, ServerSettings, SettingsError};
use clap::Parser;
use serde::Deserialize;

/// Media service of the chat backend: streamed uploads, content sniffing,
/// signed links with ranges, metadata in SQLite or PostgreSQL.
#[derive(Parser)]
#[command(version, after_help = format!(
    "{}\n\n{}\n\n{}\n  CHAT_DATA_DIR           where files (and the SQLite database) live [default: ./data]",
    settings::HELP,
    chat_auth::settings::HELP,
    chat_media::settings::HELP,
))]
struct Cli {
    /// TOML file with settings; the environment overrides it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(default)]
struct Storage {
    data_dir: PathBuf,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
        }
    }
}

fn load(
    cli: &Cli,
) -> Result<(ServerSettings, AuthSettings, MediaSettings, PathBuf), SettingsError> {
    let layers = settings::layers(cli.config.as_deref())?;
    let media: MediaSettings = settings::extract(&layers)?;
    media.validate()?;
    let storage: Storage = settings::extract(&layers)?;
    Ok((
        settings::extract(&layers)?,
        settings::extract(&layers)?,
        media,
        storage.data_dir,
    ))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (server, auth, media, data_dir) = match load(&cli) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("media: {e}");
            return ExitCode::from(2);
        }
    };
    chat_runtime::telemetry::init(server.log_format);
    let auth = match auth.build(AuthMode::Jwt, server.listen) {
        Ok((auth, _origins)) => Arc::new(auth),
        Err(e) => {
            eprintln!("media: {e}");
            return ExitCode::from(2);
        }
    };
    let result = actix_web::rt::System::new().block_on(async move {
        std::fs::create_dir_all(&data_dir)?;
        let mut obs = Observability::new();
        let service = MediaService::build(&media, &data_dir, auth, &mut obs).await?;
        chat_runtime::server::serve_until_signal(&server, obs, move |cfg| service.configure(cfg))
            .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("media: {e:#}");
            ExitCode::FAILURE
        }
    }
}
