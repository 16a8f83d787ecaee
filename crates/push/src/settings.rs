//! Web Push settings.

use std::time::Duration;

use chat_auth::Secret;
use chat_runtime::settings::SettingsError;

chat_runtime::settings! {
    /// Web Push settings: `CHAT_<NAME>` in the environment, `<name>` in the file.
    #[title = "Web Push"]
    pub struct PushSettings {
        /// The VAPID private key (RFC 8292): the P-256 private scalar,
        /// base64url, as `npx web-push generate-vapid-keys` prints it. Every
        /// gateway and the presence binary need the same one; `chatd`
        /// generates one once and keeps it in CHAT_DATA_DIR. Unset on a
        /// replica: no notifications are pushed.
        pub vapid_private_key: Option<Secret> = None => "chatd: generated once, kept in CHAT_DATA_DIR",
        /// Who push services may contact about these notifications: a
        /// `mailto:` or `https:` address of yours (VAPID's `sub`; some push
        /// services refuse pushes without one).
        pub vapid_subject: Option<String> = None,
        /// How long a push service keeps a notification for a device that
        /// is off (the `TTL` header, whole seconds; at most 4 weeks).
        #[serde(with = "humantime_serde")]
        pub push_ttl: Duration = Duration::from_secs(24 * 3600),
        /// The push services subscriptions may be on (hosts, or domains
        /// whose subdomains all are): a user names the endpoint, so the
        /// server posts only to these. `http` only for a listed loopback
        /// address (a stand-in in tests).
        pub push_services: String = crate::services::DEFAULT.to_owned(),
    }
}

/// The longest `TTL` push services take (RFC 8030 sets none; the common
/// services keep at most four weeks).
const TTL_MAX: Duration = Duration::from_secs(28 * 24 * 3600);

impl PushSettings {
    /// The push services endpoints may be on.
    pub fn services(&self) -> crate::PushServices {
        crate::PushServices::parse(&self.push_services)
    }

    /// The pusher these settings make: signing with the key set, else (with
    /// a `data_dir`: `chatd`) the one kept there, made on first use;
    /// `None` (Web Push off, logged) for a replica without a key.
    ///
    /// Errors: the kept key cannot be read or written.
    pub fn pusher(
        &self,
        data_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Option<crate::Pusher>> {
        let setting = self.vapid_private_key.as_ref().map(Secret::expose);
        let key = match (setting, data_dir) {
            (None, None) => {
                tracing::info!(
                    "Web Push is off: set CHAT_VAPID_PRIVATE_KEY (the same on every replica)"
                );
                return Ok(None);
            }
            (setting, Some(dir)) => crate::VapidKey::load_or_generate(setting, dir)?,
            (Some(setting), None) => crate::VapidKey::parse(setting)?,
        };
        if self.vapid_subject.is_none() {
            tracing::warn!(
                "CHAT_VAPID_SUBJECT is unset: some push services refuse pushes without a contact (mailto: or https:)"
            );
        }
        let pusher = crate::Pusher::new(
            key,
            self.vapid_subject.clone(),
            self.push_ttl,
            self.services(),
        )
        .map_err(anyhow::Error::msg)?;
        Ok(Some(pusher))
    }

    /// Checks values a type cannot: the key's shape, the subject's scheme,
    /// the TTL's range.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(key) = &self.vapid_private_key
            && let Err(e) = crate::vapid::VapidKey::parse(key.expose())
        {
            return Err(SettingsError::new(format!(
                "invalid setting CHAT_VAPID_PRIVATE_KEY: {e}"
            )));
        }
        if let Some(subject) = &self.vapid_subject
            && !(subject
                .strip_prefix("mailto:")
                .is_some_and(|a| a.contains('@'))
                || subject
                    .strip_prefix("https://")
                    .is_some_and(|h| !h.is_empty()))
        {
            return Err(SettingsError::new(
                "invalid setting CHAT_VAPID_SUBJECT: must be a mailto: or https: address (RFC 8292)",
            ));
        }
        if let Err(e) = crate::PushServices::validate(&self.push_services) {
            return Err(SettingsError::new(format!(
                "invalid setting CHAT_PUSH_SERVICES: {e}"
            )));
        }
        if self.push_ttl < Duration::from_secs(1) || self.push_ttl.subsec_nanos() != 0 {
            return Err(SettingsError::new(
                "invalid setting CHAT_PUSH_TTL: whole seconds, at least 1s (the TTL header counts seconds)",
            ));
        }
        if self.push_ttl > TTL_MAX {
            return Err(SettingsError::new(
                "invalid setting CHAT_PUSH_TTL: must be at most 4 weeks",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(key: Option<&str>, subject: Option<&str>, ttl: u64) -> PushSettings {
        PushSettings {
            vapid_private_key: key.map(|k| serde_json::from_value(k.into()).unwrap()),
            vapid_subject: subject.map(str::to_owned),
            push_ttl: Duration::from_secs(ttl),
            ..PushSettings::default()
        }
    }

    #[test]
    fn keys_subjects_and_ttls_are_checked() {
        let key = crate::vapid::VapidKey::generate().unwrap().private_base64();
        assert!(
            with(Some(&key), Some("mailto:ops@example.com"), 60)
                .validate()
                .is_ok()
        );
        assert!(
            with(None, Some("https://example.com"), 60)
                .validate()
                .is_ok()
        );
        for (settings, what) in [
            (with(Some("short"), None, 60), "CHAT_VAPID_PRIVATE_KEY"),
            (
                with(Some(&"A".repeat(43)), None, 60),
                "CHAT_VAPID_PRIVATE_KEY",
            ),
            (
                with(None, Some("ops@example.com"), 60),
                "CHAT_VAPID_SUBJECT",
            ),
            (with(None, None, 29 * 24 * 3600), "CHAT_PUSH_TTL"),
            (with(None, Some("mailto:"), 60), "CHAT_VAPID_SUBJECT"),
            (with(None, None, 0), "CHAT_PUSH_TTL"),
            (
                PushSettings {
                    push_services: "https://fcm.googleapis.com/".into(),
                    ..PushSettings::default()
                },
                "CHAT_PUSH_SERVICES",
            ),
            (
                PushSettings {
                    push_services: " , ".into(),
                    ..PushSettings::default()
                },
                "CHAT_PUSH_SERVICES",
            ),
            (
                PushSettings {
                    push_services: "*.push.example".into(),
                    ..PushSettings::default()
                },
                "CHAT_PUSH_SERVICES",
            ),
        ] {
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains(what), "{error}");
        }
    }
}
