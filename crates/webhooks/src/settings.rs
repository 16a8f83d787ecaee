//! The webhooks' settings.

use std::time::Duration;

use chat_auth::Secret;
use chat_runtime::settings::SettingsError;

chat_runtime::settings! {
    /// Webhook settings: `CHAT_<NAME>` in the environment, `<name>` in the file.
    #[title = "Webhooks"]
    pub struct WebhookSettings {
        /// Where events are posted (`http://` or `https://`); unset: no
        /// webhooks, nothing is queued.
        pub webhook_url: Option<String> = None => "none",
        /// The signing secret, `whsec_` and base64 (as Standard Webhooks
        /// gives them); required with a URL. Never logged.
        pub webhook_secret: Option<Secret> = None => "none",
        /// The events to send, comma-separated: message.offline (direct and
        /// room messages), user.online, user.offline, room.member_joined,
        /// room.member_left, room.deleted.
        pub webhook_events: String = "message.offline,user.online,user.offline,room.member_joined,room.member_left,room.deleted".to_owned(),
        /// How long the receiver has to answer 2xx before the attempt counts as failed.
        #[serde(with = "humantime_serde")]
        pub webhook_timeout: Duration = Duration::from_secs(5),
        /// The wait before the first retry; each next one doubles (±25 %), up to an hour.
        #[serde(with = "humantime_serde")]
        pub webhook_retry_min: Duration = Duration::from_secs(1),
        /// How long an event is retried before it goes to the dead letters.
        #[serde(with = "humantime_serde")]
        pub webhook_give_up: Duration = Duration::from_secs(24 * 3600),
    }
}

impl WebhookSettings {
    /// Checks values a type cannot: a URL needs a secret that Standard
    /// Webhooks can use, and names only known events.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let fail = |name: &str, why: &str| {
            Err(SettingsError::new(format!("invalid setting {name}: {why}")))
        };
        let Some(url) = &self.webhook_url else {
            return Ok(());
        };
        match reqwest::Url::parse(url) {
            Ok(parsed)
                if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {}
            _ => {
                return fail(
                    "CHAT_WEBHOOK_URL",
                    "must be an http:// or https:// URL with a host",
                );
            }
        }
        let Some(secret) = &self.webhook_secret else {
            return fail("CHAT_WEBHOOK_SECRET", "required with CHAT_WEBHOOK_URL");
        };
        // Standard Webhooks: whsec_ and the base64 of 24 to 64 random bytes.
        let key = std::str::from_utf8(secret.expose())
            .ok()
            .and_then(|s| s.strip_prefix("whsec_"))
            .and_then(|b64| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(b64).ok()
            });
        if !key.is_some_and(|key| (24..=64).contains(&key.len())) {
            return fail(
                "CHAT_WEBHOOK_SECRET",
                "must be whsec_ followed by the base64 of 24 to 64 bytes",
            );
        }
        for event in self.events() {
            if !crate::EVENTS.contains(&event) {
                return fail(
                    "CHAT_WEBHOOK_EVENTS",
                    &format!(
                        "'{event}' is no event (one of {})",
                        crate::EVENTS.join(", ")
                    ),
                );
            }
        }
        if self.webhook_timeout.is_zero() || self.webhook_retry_min.is_zero() {
            return fail(
                "CHAT_WEBHOOK_TIMEOUT/CHAT_WEBHOOK_RETRY_MIN",
                "must be longer than 0s",
            );
        }
        Ok(())
    }

    /// The events asked for.
    pub fn events(&self) -> impl Iterator<Item = &str> {
        self.webhook_events
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
    }

    /// Tells `queue` to queue the message and room events asked for, in
    /// the steps that store what they tell (see [`chat_store::WebhookQueue`]);
    /// with `pushes` (Web Push on), the jobs of messages for someone with
    /// no connection whatever the webhooks.
    pub fn enable_queues(&self, queue: &dyn chat_store::WebhookQueue, pushes: bool) {
        if pushes || self.wants("message.offline") {
            queue.queue_offline_events();
        }
        if self.wants("room.member_joined")
            || self.wants("room.member_left")
            || self.wants("room.deleted")
        {
            queue.queue_room_events();
        }
    }

    /// Whether presence events (`user.online`, `user.offline`) are asked for.
    pub fn wants_presence(&self) -> bool {
        self.wants("user.online") || self.wants("user.offline")
    }

    /// Whether webhooks are on and `event` is among those asked for.
    pub fn wants(&self, event: &str) -> bool {
        self.webhook_url.is_some() && self.events().any(|e| e == event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(url: &str, secret: &str) -> WebhookSettings {
        let layers = chat_runtime::settings::Figment::new()
            .merge(("webhook_url", url))
            .merge(("webhook_secret", secret));
        layers.extract().unwrap()
    }

    #[test]
    fn a_receiver_needs_a_url_and_a_standard_secret() {
        let good = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/6eR8YHiFYY=";
        assert!(with("https://app.example/hooks", good).validate().is_ok());
        for (url, secret, says) in [
            ("http://", good, "CHAT_WEBHOOK_URL"),
            ("ftp://app.example/", good, "CHAT_WEBHOOK_URL"),
            ("https://app.example/", "whsec_", "CHAT_WEBHOOK_SECRET"),
            (
                "https://app.example/",
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/6eR8YHiFYY=",
                "CHAT_WEBHOOK_SECRET",
            ),
            (
                "https://app.example/",
                "whsec_c2hvcnQ=",
                "CHAT_WEBHOOK_SECRET",
            ),
        ] {
            let error = with(url, secret).validate().unwrap_err().to_string();
            assert!(error.contains(says), "{url} {secret}: {error}");
        }
        let mut unknown = with("https://app.example/", good);
        unknown.webhook_events = "message.offline,user.typing".into();
        assert!(
            unknown
                .validate()
                .unwrap_err()
                .to_string()
                .contains("user.typing")
        );
    }
}
