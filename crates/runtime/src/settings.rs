//! Layered settings: defaults → optional TOML file (`--config`) → environment.
//!
//! Every service reads its own typed struct from the same layers, so `chatd`
//! (all services in one process) and each service binary accept the same
//! names. File keys are the lowercase names without the `CHAT_` prefix
//! (`CHAT_PING_INTERVAL` ↔ `ping_interval`); `REDIS_URL` and `DATABASE_URL`
//! keep their conventional unprefixed names.
//!
//! Each setting is declared once, with [`settings!`](crate::settings!): its
//! name (the field), its type, its default (an expression) and its meaning
//! (the doc comment). `--help` and the README's settings table are made
//! from those declarations ([`Described`], [`help`], [`markdown`]).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use std::path::PathBuf;

pub use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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

/// One documented setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable (`CHAT_PING_INTERVAL`, `REDIS_URL`).
    pub env: String,
    /// Its default, as one would write it (`15s`; `none` when unset).
    pub default: String,
    /// What it means (its doc comment, on one line).
    pub meaning: String,
}

/// A settings struct that can describe its settings.
pub trait Described: Default + Serialize {
    /// The group's title (`Gateway`, `Identity`).
    const TITLE: &'static str;

    /// Each field: its file key, its meaning and, when its default is not
    /// shown by its value, what the default means.
    fn fields() -> Vec<(&'static str, String, Option<&'static str>)>;

    /// The settings, with their defaults rendered from [`Default`].
    fn describe() -> Vec<Setting> {
        let defaults = serde_json::to_value(Self::default()).unwrap_or_default();
        Self::fields()
            .into_iter()
            .map(|(key, meaning, shown)| Setting {
                env: env_name(key),
                default: shown.map_or_else(|| show(&defaults[key]), str::to_owned),
                meaning,
            })
            .collect()
    }
}

/// A default value as one would write it in the environment.
fn show(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "none".to_owned(),
        serde_json::Value::String(s) if s.is_empty() => "none".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The settings table of `groups` for `--help`: one block per group, each
/// setting on its own line, its default after it.
pub fn help(groups: &[(&str, Vec<Setting>)]) -> String {
    let mut out = String::from(
        "Settings come from the environment, or from the --config file under the same \
         name lowercased without CHAT_ (CHAT_PING_INTERVAL = ping_interval); durations \
         are written like 15s or 500ms.",
    );
    for (title, settings) in groups {
        out.push_str(&format!("\n\n{title} settings:"));
        for s in settings {
            out.push_str(&format!("\n  {}", s.env));
            let text = format!("{} [default: {}]", s.meaning, s.default);
            out.push_str(&wrap(&text, "\n      ", 80 - 6));
        }
    }
    out
}

/// `text` in lines of at most `width` characters (longer words alone),
/// each line starting with `indent`.
fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if line == 0 || line + 1 + len > width {
            out.push_str(indent);
            line = 0;
        } else {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += len;
    }
    out
}

/// The settings of `groups` as a Markdown table (the README's).
pub fn markdown(groups: &[(&str, Vec<Setting>)]) -> String {
    let mut out = String::from("| setting | default | meaning |\n|---|---|---|\n");
    for (title, settings) in groups {
        out.push_str(&format!("| **{title}** | | |\n"));
        for s in settings {
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                s.env,
                if s.default == "none" {
                    "—".to_owned()
                } else if s.default.contains(' ') {
                    s.default.clone() // words, not a value
                } else {
                    format!("`{}`", s.default)
                },
                s.meaning.replace('|', "\\|")
            ));
        }
    }
    out
}

/// Declares a settings struct once: each field with its doc comment (its
/// meaning), its attributes, its type and its default; optionally what the
/// default means when its value does not say (`= None => "generated"`).
/// Makes the struct (`Deserialize`, `Serialize`, `#[serde(default)]`), its
/// [`Default`], and its [`Described`] for `--help` and the README.
#[macro_export]
macro_rules! settings {
    (
        $(#[doc = $sdoc:literal])*
        #[title = $title:literal]
        pub struct $name:ident {
            $(
                $(#[$($attr:tt)*])*
                pub $field:ident : $ty:ty = $default:expr $(=> $shown:literal)?
            ),* $(,)?
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
        #[serde(default)]
        pub struct $name {
            $(
                $(#[$($attr)*])*
                pub $field: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }

        impl $crate::settings::Described for $name {
            const TITLE: &'static str = $title;

            fn fields() -> Vec<(&'static str, String, Option<&'static str>)> {
                vec![$(
                    (
                        stringify!($field),
                        [$($crate::__setting_doc!($($attr)*)),*]
                            .into_iter()
                            .flatten()
                            .map(str::trim)
                            .collect::<Vec<&str>>()
                            .join(" "),
                        None $(.or(Some($shown)))?,
                    ),
                )*]
            }
        }
    };
}

/// A field attribute's doc text, if it is a doc comment (for [`settings!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __setting_doc {
    (doc = $doc:literal) => {
        Some($doc)
    };
    ($($other:tt)*) => {
        None
    };
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured on a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

crate::settings! {
    /// Settings of the HTTP server every binary runs.
    #[title = "Server"]
    pub struct ServerSettings {
        /// Address and port to listen on.
        pub listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)),
        /// Log output: `pretty`, or `json` (one object per line). The level
        /// comes from `RUST_LOG` (e.g. `info`, `chat_gateway=debug`).
        pub log_format: LogFormat = LogFormat::Pretty,
        /// HTTP worker threads; 0 means one per core.
        pub workers: usize = 0,
        /// How long a stop waits for connections to drain.
        #[serde(with = "humantime_serde")]
        pub shutdown_grace: Duration = Duration::from_secs(10),
    }
}

crate::settings! {
    /// Settings several services read, parsed in one place.
    #[title = "Shared"]
    pub struct SharedSettings {
        /// Redis for the gateways and the presence service (pub/sub,
        /// messages, presence): one Redis, `redis://host:port/db`, or a
        /// Redis Cluster by some of its nodes,
        /// `redis+cluster://[user:password@]h1:p1,h2:p2` (Redis ≥ 7: sharded
        /// pub/sub). Required by `gateway` and `presence`; without it
        /// `chatd` runs its in-process broker and SQLite store.
        pub redis_url: Option<String> = None,
        /// Prefix of every Redis key and channel, to share one Redis between
        /// deployments; empty keeps keys exactly as documented
        /// (`unread:{receiver}`).
        pub redis_prefix: String = String::new(),
        /// Addresses or networks (comma-separated) of the load balancers
        /// whose `X-Forwarded-For` names the client, for per-address limits.
        pub trusted_proxies: String = String::new(),
        /// Where `chatd` and the media service keep their files (messages,
        /// uploads, SQLite databases, generated secrets).
        pub data_dir: PathBuf = PathBuf::from("./data"),
    }
}

impl SharedSettings {
    /// Checks values a type cannot; the error names the setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.redis_prefix.contains(char::is_whitespace) {
            return Err(SettingsError::new(
                "invalid setting CHAT_REDIS_PREFIX: must not contain spaces",
            ));
        }
        if let Some(Err(e)) = self
            .redis_url
            .as_deref()
            .map(chat_broker::redis_url::Target::checked)
        {
            return Err(SettingsError::new(format!(
                "invalid setting REDIS_URL: {e}"
            )));
        }
        if let Err(e) = crate::per_ip::TrustedProxies::parse(&self.trusted_proxies) {
            return Err(SettingsError::new(format!(
                "invalid setting CHAT_TRUSTED_PROXIES: {e}"
            )));
        }
        Ok(())
    }

    /// `REDIS_URL`, required by this binary.
    pub fn require_redis(&self, binary: &str) -> Result<&str, SettingsError> {
        self.redis_url.as_deref().ok_or_else(|| {
            SettingsError::new(format!(
                "invalid setting REDIS_URL: required by {binary} (run chatd for the all-in-one without Redis)"
            ))
        })
    }
}

crate::settings! {
    /// Limits of durable rooms, read by the gateways and the presence
    /// service (both change memberships).
    #[title = "Rooms"]
    pub struct RoomSettings {
        /// Rooms one user may be a member of; one more is refused
        /// (`too_many_rooms`).
        pub rooms_per_user: u64 = 1_000,
        /// Members one room may have; one more is refused (`room_full`).
        pub room_max_members: u64 = 100_000,
        /// Rooms with at most this many members send read receipts to their
        /// members; larger rooms do not (a receipt per read would cost
        /// every member a frame per reader).
        pub room_receipts_max: u64 = 100,
    }
}

impl RoomSettings {
    /// Checks values a type cannot; the error names the setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.rooms_per_user == 0 {
            return Err(SettingsError::new(
                "invalid setting CHAT_ROOMS_PER_USER: must be at least 1",
            ));
        }
        if self.room_max_members == 0 {
            return Err(SettingsError::new(
                "invalid setting CHAT_ROOM_MAX_MEMBERS: must be at least 1",
            ));
        }
        Ok(())
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
