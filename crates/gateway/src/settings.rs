//! The gateway's settings. Every field is `CHAT_<NAME>` in the environment
//! and `<name>` in the TOML file; durations are written like `15s`. The
//! Redis address and prefix and the trusted proxies are shared with other
//! services ([`chat_runtime::settings::SharedSettings`]).

use std::num::NonZeroU32;
use std::time::Duration;

use chat_runtime::settings::SettingsError;

chat_runtime::settings! {
    /// Gateway settings.
    #[title = "Gateway"]
    pub struct GatewaySettings {
        /// How often the server pings each connection.
        #[serde(with = "humantime_serde")]
        pub ping_interval: Duration = Duration::from_secs(15),
        /// A connection silent this long (no frame, no pong) is closed (4408).
        #[serde(with = "humantime_serde")]
        pub idle_timeout: Duration = Duration::from_secs(45),
        /// The largest message a client may send, whole or in fragments;
        /// larger closes with 1009.
        pub max_frame_bytes: usize = 64 * 1024,
        /// Frames per second one connection may send, sustained.
        pub rate_per_sec: NonZeroU32 = NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN),
        /// Frames a connection may send at once above the rate.
        pub rate_burst: NonZeroU32 = NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
        /// Frames refused by the rate limit in a row before the connection
        /// is closed (1008).
        pub rate_strikes: u32 = 20,
        /// Frames waiting for one slow client before it is closed (1013).
        pub outbound_queue: usize = 256,
        /// Users one connection may watch (`watch`); more are refused
        /// (`too_many_rooms`).
        pub max_watched: usize = 100,
        /// Connections this process accepts; more get 503 (a process may
        /// hold 20 000 files here: room is left for the rest).
        pub max_connections: usize = 19_000,
        /// Entries kept per inbox, per conversation and per room, at least
        /// (updates of changed messages count as entries): rooms and
        /// inboxes keep exactly this many, conversations too on Redis;
        /// SQLite trims a conversation every 32 messages (up to 31 more).
        pub history_max: u64 = 10_000,
        /// Messages kept for a user with no connection, for clients that do not sync.
        pub offline_max: u64 = 1_000,
        /// The media service (`http://host:port`) that checks files attached
        /// to messages; unset means messages carry no files (`chatd` answers
        /// in process instead).
        pub media_url: Option<String> = None,
        /// A gateway that dies without a word has its users counted offline
        /// after this (its lease is renewed every third of it).
        #[serde(with = "humantime_serde")]
        pub presence_lease: Duration = Duration::from_secs(30),
        /// WebSocket upgrades one client address may start per minute (a
        /// burst of that many, then spread over the minute); more get 429;
        /// 0 turns the limit off.
        pub connects_per_ip_per_min: u32 = 600,
        /// How long after sending its author may edit a message (`edit`);
        /// later edits are refused (`forbidden`). Unset: any time.
        #[serde(with = "humantime_serde")]
        pub edit_window: Option<Duration> = None,
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
        if self.presence_lease < Duration::from_millis(300) {
            return fail("CHAT_PRESENCE_LEASE", "must be at least 300ms");
        }
        if self.history_max == 0 {
            return fail("CHAT_HISTORY_MAX", "must be at least 1");
        }
        if self.offline_max == 0 {
            return fail("CHAT_OFFLINE_MAX", "must be at least 1");
        }
        Ok(())
    }
}
