//! The gateway's settings. Every field is `CHAT_<NAME>` in the environment
//! and `<name>` in the TOML file; durations are written like `15s`.

use std::num::NonZeroU32;
use std::time::Duration;

use chat_runtime::settings::SettingsError;
use serde::Deserialize;

/// Gateway settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GatewaySettings {
    /// `REDIS_URL`: Redis for pub/sub between replicas; absent means the
    /// in-process broker (allowed only in `chatd`).
    pub redis_url: Option<String>,
    /// `CHAT_REDIS_PREFIX`: prefix of every Redis key and channel.
    pub redis_prefix: String,
    /// `CHAT_PING_INTERVAL`: how often the server pings each connection.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// `CHAT_IDLE_TIMEOUT`: a connection silent this long (no frame, no pong) is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// `CHAT_MAX_FRAME_BYTES`: largest accepted frame; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// `CHAT_RATE_PER_SEC`: sustained frames per second per connection.
    pub rate_per_sec: NonZeroU32,
    /// `CHAT_RATE_BURST`: frames a connection may send at once above the rate.
    pub rate_burst: NonZeroU32,
    /// `CHAT_RATE_STRIKES`: refused frames in a row before the connection is closed with 1008.
    pub rate_strikes: u32,
    /// `CHAT_OUTBOUND_QUEUE`: frames waiting for one slow client before it is closed with 1013.
    pub outbound_queue: usize,
    /// `CHAT_MAX_ROOMS`: rooms one connection may join.
    pub max_rooms: usize,
    /// `CHAT_MAX_CONNECTIONS`: connections this process accepts; more get 503.
    pub max_connections: usize,
    /// `CHAT_HISTORY_MAX`: messages kept per inbox and per conversation in Redis.
    pub history_max: u64,
    /// `CHAT_OFFLINE_MAX`: messages kept per user while they have no connection.
    pub offline_max: u64,
    /// `CHAT_MEDIA_URL`: the media service (`http://host:port`) that checks
    /// files attached to messages; absent means messages carry no files
    /// (`chatd` answers in process instead).
    pub media_url: Option<String>,
    /// `CHAT_PRESENCE_LEASE`: a crashed gateway's users count as offline after this.
    #[serde(with = "humantime_serde")]
    pub presence_lease: Duration,
    /// `CHAT_CONNECTS_PER_IP_PER_MIN`: WebSocket upgrades one client address
    /// may start per minute (a burst of that many, then spread over the
    /// minute); more get 429. 0 turns the limit off.
    pub connects_per_ip_per_min: u32,
    /// `CHAT_TRUSTED_PROXIES`: addresses or networks of the load balancers
    /// whose `X-Forwarded-For` names the client (comma-separated).
    pub trusted_proxies: String,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            redis_url: None,
            // Empty: keys are exactly the documented `unread:{receiver}`.
            redis_prefix: String::new(),
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            max_frame_bytes: 64 * 1024,
            rate_per_sec: NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN),
            rate_burst: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
            rate_strikes: 20,
            outbound_queue: 256,
            max_rooms: 100,
            // A process may hold 20 000 files here; leave room for the rest.
            max_connections: 19_000,
            history_max: 10_000,
            offline_max: 1_000,
            presence_lease: Duration::from_secs(30),
            media_url: None,
            connects_per_ip_per_min: 600,
            trusted_proxies: String::new(),
        }
    }
}

impl GatewaySettings {
    /// Checks relations a type cannot express; the error names the setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let fail = |name: &str, why: &str| {
            Err(SettingsError::new(format!("invalid setting {name}: {why}")))
        };
        if self.ping_interval.is_zero() {
            return fail("CHAT_PING_INTERVAL", "must be greater than zero");
        }
        if self.idle_timeout <= self.ping_interval {
            return fail(
                "CHAT_IDLE_TIMEOUT",
                "must be longer than CHAT_PING_INTERVAL",
            );
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_frame_bytes) {
            return fail("CHAT_MAX_FRAME_BYTES", "must be between 1024 and 16777216");
        }
        if self.outbound_queue == 0 {
            return fail("CHAT_OUTBOUND_QUEUE", "must be at least 1");
        }
        if self.max_connections == 0 {
            return fail("CHAT_MAX_CONNECTIONS", "must be at least 1");
        }
        if self.redis_prefix.contains(char::is_whitespace) {
            return fail("CHAT_REDIS_PREFIX", "must not contain spaces");
        }
        if self.presence_lease < Duration::from_millis(300) {
            return fail("CHAT_PRESENCE_LEASE", "must be at least 300ms");
        }
        if let Err(e) = chat_runtime::per_ip::TrustedProxies::parse(&self.trusted_proxies) {
            return fail("CHAT_TRUSTED_PROXIES", &e);
        }
        if self.history_max == 0 || self.offline_max == 0 {
            return fail(
                "CHAT_HISTORY_MAX",
                "CHAT_HISTORY_MAX and CHAT_OFFLINE_MAX must be at least 1",
            );
        }
        Ok(())
    }
}

/// The settings table for `--help`.
pub const HELP: &str = "\
Gateway settings (environment, or the same name lowercased without CHAT_ in the --config file):
  REDIS_URL               Redis for pub/sub between replicas (required by `gateway`;
                          absent in `chatd` means the in-process broker)
    CHAT_REDIS_PREFIX       prefix of Redis keys and channels        [default: none]
  CHAT_PING_INTERVAL      server ping interval                       [default: 15s]
  CHAT_IDLE_TIMEOUT       close a connection silent this long        [default: 45s]
  CHAT_MAX_FRAME_BYTES    largest frame; larger closes with 1009     [default: 65536]
  CHAT_RATE_PER_SEC       frames per second per connection           [default: 50]
  CHAT_RATE_BURST         burst above the rate                       [default: 100]
  CHAT_RATE_STRIKES       refused frames in a row before close 1008  [default: 20]
  CHAT_OUTBOUND_QUEUE     frames queued for a slow client before 1013 [default: 256]
  CHAT_MAX_ROOMS          rooms one connection may join              [default: 100]
    CHAT_MAX_CONNECTIONS    connections accepted; more get 503         [default: 19000]
  CHAT_HISTORY_MAX        messages kept per inbox and conversation   [default: 10000]
    CHAT_OFFLINE_MAX        messages kept for a user with no connection [default: 1000]
    CHAT_PRESENCE_LEASE     a crashed gateway's users go offline after  [default: 30s]
  CHAT_MEDIA_URL          media service checking attached files, http://host:port
  CHAT_CONNECTS_PER_IP_PER_MIN
                          upgrades one client address may start per minute;
                          more get 429                               [default: 600; 0 = off]
  CHAT_TRUSTED_PROXIES    load balancers (addresses or networks) whose
                          X-Forwarded-For names the client           [default: none]";
