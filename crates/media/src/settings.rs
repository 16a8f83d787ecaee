//! The media service's settings.

use std::path::Path;
use std::time::Duration;

use chat_auth::Secret;
use chat_runtime::settings::SettingsError;
use serde::Deserialize;

/// Media settings: `CHAT_<NAME>` in the environment, `<name>` in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MediaSettings {
    /// `CHAT_MEDIA_MAX_BYTES`: the largest upload; larger is refused with 413.
    pub media_max_bytes: u64,
    /// `CHAT_MEDIA_LINK_TTL`: how long a signed file link works.
    #[serde(with = "humantime_serde")]
    pub media_link_ttl: Duration,
    /// `CHAT_MEDIA_SECRET`: signs file links (at least 32 bytes). When absent,
    /// one is generated once and kept in the data folder — fine for one
    /// process; replicas of the media service must share this setting.
    pub media_secret: Option<Secret>,
    /// `CHAT_MEDIA_IDLE_TIMEOUT`: how long an upload's body may stall before
    /// it is refused (408) and what arrived is removed: a client that sends a
    /// byte now and then cannot hold a connection and a file open for ever.
    #[serde(with = "humantime_serde")]
    pub media_idle_timeout: Duration,
    /// `DATABASE_URL`: metadata database; absent means SQLite in the data folder.
    pub database_url: Option<String>,
    /// `CHAT_UPLOADS_PER_IP_PER_MIN`: uploads one client address may start
    /// per minute (a burst of that many, then spread over the minute); more
    /// get 429. 0 turns the limit off.
    pub uploads_per_ip_per_min: u32,
    /// `CHAT_TRUSTED_PROXIES`: addresses or networks of the load balancers
    /// whose `X-Forwarded-For` names the client (comma-separated).
    pub trusted_proxies: String,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            media_max_bytes: 100 * 1024 * 1024,
            media_link_ttl: Duration::from_secs(3600),
            media_secret: None,
            media_idle_timeout: Duration::from_secs(30),
            database_url: None,
            uploads_per_ip_per_min: 120,
            trusted_proxies: String::new(),
        }
    }
}

/// The settings table for `--help`.
pub const HELP: &str = "\
Media settings:
  CHAT_MEDIA_MAX_BYTES    largest upload; larger gets 413        [default: 104857600]
  CHAT_MEDIA_LINK_TTL     how long a signed file link works      [default: 1h]
  CHAT_MEDIA_SECRET       signs file links, at least 32 bytes    [default: generated, kept in CHAT_DATA_DIR]
  CHAT_MEDIA_IDLE_TIMEOUT an upload stalled this long gets 408   [default: 30s]
  CHAT_UPLOADS_PER_IP_PER_MIN
                          uploads one client address may start per
                          minute; more get 429                   [default: 120; 0 = off]
  CHAT_TRUSTED_PROXIES    load balancers (addresses or networks) whose
                          X-Forwarded-For names the client       [default: none]
  DATABASE_URL            metadata database (sqlite://… or postgres://…)
                                                                 [default: SQLite in CHAT_DATA_DIR]";

impl MediaSettings {
    /// Checks values a type cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.media_max_bytes == 0 {
            return Err(SettingsError::new(
                "invalid setting CHAT_MEDIA_MAX_BYTES: must be at least 1",
            ));
        }
        if let Err(e) = chat_runtime::per_ip::TrustedProxies::parse(&self.trusted_proxies) {
            return Err(SettingsError::new(format!(
                "invalid setting CHAT_TRUSTED_PROXIES: {e}"
            )));
        }
        if self.media_idle_timeout.is_zero() {
            return Err(SettingsError::new(
                "invalid setting CHAT_MEDIA_IDLE_TIMEOUT: must be longer than 0s",
            ));
        }
        if self.media_link_ttl.is_zero() {
            return Err(SettingsError::new(
                "invalid setting CHAT_MEDIA_LINK_TTL: must be longer than 0s",
            ));
        }
        if let Some(secret) = &self.media_secret
            && secret.expose().len() < 32
        {
            return Err(SettingsError::new(
                "invalid setting CHAT_MEDIA_SECRET: must be at least 32 bytes",
            ));
        }
        Ok(())
    }

    /// The link-signing secret: the setting, or one generated once and kept
    /// in `data_dir` so links survive restarts.
    pub fn signing_secret(&self, data_dir: &Path) -> std::io::Result<Vec<u8>> {
        if let Some(secret) = &self.media_secret {
            return Ok(secret.expose().to_vec());
        }
        let path = data_dir.join("media.secret");
        match std::fs::read(&path) {
            Ok(secret) if secret.len() >= 32 => Ok(secret),
            _ => {
                // Two ULIDs: 52 characters with 160 random bits. Readable by
                // this user only; replicas must share CHAT_MEDIA_SECRET instead.
                use std::io::Write;
                #[cfg(unix)]
                use std::os::unix::fs::OpenOptionsExt;
                let secret = format!("{}{}", ulid::Ulid::new(), ulid::Ulid::new()).into_bytes();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                options.mode(0o600);
                options.open(&path)?.write_all(&secret)?;
                Ok(secret)
            }
        }
    }
}
