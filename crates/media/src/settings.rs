//! The media service's settings.

use std::path::Path;
use std::time::Duration;

use chat_auth::Secret;
use chat_runtime::settings::SettingsError;

chat_runtime::settings! {
    /// Media settings: `CHAT_<NAME>` in the environment, `<name>` in the file.
    #[title = "Media"]
    pub struct MediaSettings {
        /// The largest upload, in bytes; larger is refused with 413.
        pub media_max_bytes: u64 = 100 * 1024 * 1024,
        /// How long a signed file link works.
        #[serde(with = "humantime_serde")]
        pub media_link_ttl: Duration = Duration::from_secs(3600),
        /// Signs file links (at least 32 bytes). Replicas of the media
        /// service must share it; one process may leave it unset.
        pub media_secret: Option<Secret> = None => "generated once, kept in CHAT_DATA_DIR",
        /// How long an upload's body may stall before it is refused (408)
        /// and what arrived removed, so a client sending a byte now and
        /// then cannot hold a connection and a file open for ever.
        #[serde(with = "humantime_serde")]
        pub media_idle_timeout: Duration = Duration::from_secs(30),
        /// The metadata database, `sqlite://…` or `postgres://…`.
        pub database_url: Option<String> = None => "SQLite in CHAT_DATA_DIR",
        /// Uploads one client address may start per minute (a burst of that
        /// many, then spread over the minute); more get 429; 0 turns the
        /// limit off.
        pub uploads_per_ip_per_min: u32 = 120,
    }
}

impl MediaSettings {
    /// Checks values a type cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.media_max_bytes == 0 {
            return Err(SettingsError::new(
                "invalid setting CHAT_MEDIA_MAX_BYTES: must be at least 1",
            ));
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
