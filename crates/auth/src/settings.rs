//! Identity settings, shared by every service binary.

use std::fmt;
use std::net::SocketAddr;

use chat_runtime::settings::SettingsError;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::{Authenticator, OriginPolicy};

/// Shortest accepted HS256 secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// How users prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The seed's behaviour: the name in the URL is the identity. Local demos only.
    Open,
    /// HS256 tokens whose `sub` is the user.
    Jwt,
}

/// A secret that never prints.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A secret serialises as `[redacted]` (only defaults are ever serialised:
/// for `--help`).
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

chat_runtime::settings! {
    /// Identity settings.
    #[title = "Identity"]
    pub struct AuthSettings {
        /// `open` (the name in the URL is the identity: local demos) or
        /// `jwt` (tokens from the app's identity provider).
        pub auth: Option<AuthMode> = None => "open in chatd, jwt elsewhere",
        /// The HS256 secret tokens are signed with, at least 32 bytes (jwt mode).
        pub jwt_secret: Option<Secret> = None,
        /// Let open mode listen on a non-loopback address.
        pub allow_open_public: bool = false,
        /// Browser origins allowed to open WebSockets, comma-separated
        /// (`*` for any); unset means the page's own origin only.
        pub allowed_origins: Option<String> = None => "same origin only",
    }
}

impl AuthSettings {
    /// Builds the authenticator and origin policy, refusing unsafe
    /// combinations: jwt without a long enough secret, open mode on a
    /// public address without `CHAT_ALLOW_OPEN_PUBLIC`.
    pub fn build(
        &self,
        default: AuthMode,
        listen: SocketAddr,
    ) -> Result<(Authenticator, OriginPolicy), SettingsError> {
        let origins =
            OriginPolicy::parse(self.allowed_origins.as_deref().unwrap_or("")).map_err(|e| {
                SettingsError::new(format!("invalid setting CHAT_ALLOWED_ORIGINS: {e}"))
            })?;
        let authenticator = match self.auth.unwrap_or(default) {
            AuthMode::Open => {
                if !listen.ip().is_loopback() && !self.allow_open_public {
                    return Err(SettingsError::new(format!(
                        "invalid setting CHAT_AUTH: open mode (anyone can claim any name) refuses \
                         to listen on {listen}; use CHAT_AUTH=jwt, a loopback CHAT_LISTEN, or \
                         CHAT_ALLOW_OPEN_PUBLIC=true"
                    )));
                }
                warn!("CHAT_AUTH=open: the name in the URL is the identity; for local demos only");
                Authenticator::open()
            }
            AuthMode::Jwt => {
                let secret = self.jwt_secret.as_ref().ok_or_else(|| {
                    SettingsError::new(
                        "invalid setting CHAT_JWT_SECRET: required when CHAT_AUTH=jwt",
                    )
                })?;
                if secret.expose().len() < MIN_SECRET_BYTES {
                    return Err(SettingsError::new(format!(
                        "invalid setting CHAT_JWT_SECRET: must be at least {MIN_SECRET_BYTES} bytes"
                    )));
                }
                Authenticator::jwt(secret.expose())
            }
        };
        Ok((authenticator, origins))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn jwt_needs_a_secret_of_32_bytes() {
        let mut s = AuthSettings {
            auth: Some(AuthMode::Jwt),
            ..AuthSettings::default()
        };
        let err = s
            .build(AuthMode::Open, addr("127.0.0.1:1"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("CHAT_JWT_SECRET"), "{err}");
        s.jwt_secret = Some(Secret("short".into()));
        let err = s
            .build(AuthMode::Open, addr("127.0.0.1:1"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("at least 32 bytes"), "{err}");
        s.jwt_secret = Some(Secret("x".repeat(32)));
        assert!(
            !s.build(AuthMode::Open, addr("0.0.0.0:1"))
                .unwrap()
                .0
                .is_open()
        );
    }

    #[test]
    fn open_mode_stays_on_loopback_unless_allowed() {
        let mut s = AuthSettings::default();
        assert!(
            s.build(AuthMode::Open, addr("127.0.0.1:1"))
                .unwrap()
                .0
                .is_open()
        );
        let err = s
            .build(AuthMode::Open, addr("0.0.0.0:1"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("invalid setting CHAT_AUTH"), "{err}");
        s.allow_open_public = true;
        assert!(s.build(AuthMode::Open, addr("0.0.0.0:1")).is_ok());
    }

    #[test]
    fn the_secret_never_prints() {
        let s = AuthSettings {
            jwt_secret: Some(Secret("hunter2".repeat(6))),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
