//! Layered settings: defaults → optional TOML file (`--config`) → environment.
//!
//! Every service reads its own typed struct from the same layers, so `chatd`
//! (all services in one process) and each service binary accept the same
//! names. File keys are the lowercase names without the `CHAT_` prefix
//! (`CHAT_PING_INTERVAL` ↔ `ping_interval`); `REDIS_URL` and `DATABASE_URL`
//! keep their conventional unprefixed names.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Environment variables read without the `CHAT_` prefix.
const UNPREFIXED: &[&str] = &["REDIS_URL", "DATABASE_URL"];

/// A setting that could not be loaded; its `Display` is one line naming it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

impl SettingsError {
    /// An error with this one-line message (which should name the setting).
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The layers: the optional file, then the environment.
pub fn layers(config_file: Option<&Path>) -> Result<Figment, SettingsError> {
    let mut figment = Figment::new();
    if let Some(path) = config_file {
        if !path.is_file() {
            return Err(SettingsError(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    Ok(figment
        .merge(Env::prefixed("CHAT_"))
        .merge(Env::raw().only(UNPREFIXED)))
}

/// Reads one typed settings struct from the layers.
pub fn extract<T: DeserializeOwned>(figment: &Figment) -> Result<T, SettingsError> {
    figment.extract().map_err(|error| {
        // figment may collect several errors; the first one is the one to fix.
        let e = error.into_iter().next();
        let Some(e) = e else {
            return SettingsError("invalid settings".into());
        };
        let origin = e
            .metadata
            .as_ref()
            .map(|m| format!(" (from {})", m.name))
            .unwrap_or_default();
        // One line, whatever the parser said (TOML errors draw a caret
        // under the line they quote).
        let why = e
            .kind
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if e.path.is_empty() {
            // Not one setting's value: the file itself did not parse.
            return SettingsError(format!("invalid settings{origin}: {why}"));
        }
        let name = env_name(&e.path.join("."));
        SettingsError(format!("invalid setting {name}: {why}{origin}"))
    })
}

/// The environment variable that sets a file key.
pub fn env_name(key: &str) -> String {
    let upper = key.to_ascii_uppercase();
    if UNPREFIXED.contains(&upper.as_str()) {
        upper
    } else {
        format!("CHAT_{upper}")
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured on a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The settings table of [`ServerSettings`] for `--help`.
pub const HELP: &str = "\
Server settings (environment, or the same name lowercased without CHAT_ in the --config file):
  CHAT_LISTEN             address to listen on                  [default: 127.0.0.1:8080]
  CHAT_LOG_FORMAT         pretty or json                        [default: pretty]
  CHAT_WORKERS            HTTP worker threads, 0 = one per core [default: 0]
  CHAT_SHUTDOWN_GRACE     how long a stop waits for draining    [default: 10s]
  RUST_LOG                log filter, e.g. info or chat_gateway=debug [default: info]";

/// Settings of the HTTP server every binary runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    /// `CHAT_LISTEN`: address and port to listen on.
    pub listen: SocketAddr,
    /// `CHAT_LOG_FORMAT`: `pretty` or `json`.
    pub log_format: LogFormat,
    /// `CHAT_WORKERS`: HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// `CHAT_SHUTDOWN_GRACE`: how long a stop waits for connections to drain.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            log_format: LogFormat::Pretty,
            workers: 0,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        Jail::expect_with(|_| {
            let s: ServerSettings =
                extract(&layers(None).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(s.log_format, LogFormat::Pretty);
            Ok(())
        });
    }

    #[test]
    fn the_environment_overrides_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "chat.toml",
                "listen = \"127.0.0.1:9000\"\nshutdown_grace = \"3s\"",
            )?;
            jail.set_env("CHAT_LISTEN", "127.0.0.1:9100");
            let figment = layers(Some(Path::new("chat.toml"))).map_err(|e| e.to_string())?;
            let s: ServerSettings = extract(&figment).map_err(|e| e.to_string())?;
            assert_eq!(s.listen.to_string(), "127.0.0.1:9100");
            assert_eq!(s.shutdown_grace, Duration::from_secs(3));
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_names_the_environment_variable() {
        Jail::expect_with(|jail| {
            jail.set_env("CHAT_LISTEN", "not-an-address");
            let error = extract::<ServerSettings>(&layers(None).map_err(|e| e.to_string())?)
                .expect_err("must refuse");
            let line = error.to_string();
            assert!(line.starts_with("invalid setting CHAT_LISTEN:"), "{line}");
            assert!(!line.contains('\n'), "one line: {line}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_refused() {
        let error = layers(Some(Path::new("/nonexistent/chat.toml"))).expect_err("must refuse");
        assert!(error.to_string().contains("/nonexistent/chat.toml"));
    }
}
