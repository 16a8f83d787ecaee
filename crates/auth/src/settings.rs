//! Identity settings, shared by every service binary.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use chat_runtime::settings::SettingsError;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::{Authenticator, JwksOptions, JwtKeys, OriginPolicy};

/// Shortest accepted HS256 secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// How users prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The seed's behaviour: the name in the URL is the identity. Local demos only.
    Open,
    /// Tokens from the app's identity provider.
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
        /// The shared secret of HMAC tokens (HS256/384/512), at least 32
        /// bytes (jwt mode).
        pub jwt_secret: Option<Secret> = None,
        /// The identity provider's public key (RSA, P-256, P-384 or
        /// Ed25519), as PEM text or the path of a PEM file: RS*, PS*,
        /// ES256/384 and EdDSA tokens are verified with it.
        pub jwt_public_key: Option<String> = None,
        /// The identity provider's key set (JWKS), `https://…/.well-known/jwks.json`:
        /// signed tokens are verified with the key their `kid` names;
        /// refetched when a token names a key it does not hold.
        pub jwks_url: Option<String> = None,
        /// The least time between two fetches of the key set.
        #[serde(with = "humantime_serde")]
        pub jwks_refresh_floor: Duration = Duration::from_secs(30),
        /// A key set older than this is fetched again when next used.
        #[serde(with = "humantime_serde")]
        pub jwks_max_age: Duration = Duration::from_secs(600),
        /// The audience tokens must carry in `aud`; unset, `aud` is not checked.
        pub jwt_audience: Option<String> = None,
        /// The issuer tokens must carry in `iss`; unset, `iss` is not checked.
        pub jwt_issuer: Option<String> = None,
        /// The claim naming the user.
        pub jwt_user_claim: String = "sub".to_owned(),
        /// The claim holding the user's display name, when present.
        pub jwt_name_claim: String = "name".to_owned(),
        /// Clock skew allowed on `exp` and `nbf`.
        #[serde(with = "humantime_serde")]
        pub jwt_leeway: Duration = Duration::from_secs(5),
        /// Let open mode listen on a non-loopback address.
        pub allow_open_public: bool = false,
        /// Browser origins allowed to open WebSockets, comma-separated
        /// (`*` for any); unset means the page's own origin only.
        pub allowed_origins: Option<String> = None => "same origin only",
    }
}

impl AuthSettings {
    /// Builds the authenticator and origin policy, refusing unsafe
    /// combinations: jwt without a key (or with a secret under 32 bytes, a
    /// public key we do not take, a JWKS URL that is not `http(s)://`),
    /// open mode on a public address without `CHAT_ALLOW_OPEN_PUBLIC`.
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
                if let Some(secret) = &self.jwt_secret
                    && secret.expose().len() < MIN_SECRET_BYTES
                {
                    return Err(SettingsError::new(format!(
                        "invalid setting CHAT_JWT_SECRET: must be at least {MIN_SECRET_BYTES} bytes"
                    )));
                }
                let public_key_pem = match &self.jwt_public_key {
                    None => None,
                    Some(text) if text.trim_start().starts_with("-----BEGIN") => Some(text.clone()),
                    Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                        SettingsError::new(format!(
                            "invalid setting CHAT_JWT_PUBLIC_KEY: neither PEM nor a readable file ({path}: {e})"
                        ))
                    })?),
                };
                let keys = JwtKeys {
                    secret: self.jwt_secret.as_ref().map(|s| s.expose().to_vec()),
                    public_key_pem,
                    jwks: self.jwks_url.as_ref().map(|url| JwksOptions {
                        url: url.clone(),
                        floor: self.jwks_refresh_floor,
                        max_age: self.jwks_max_age,
                        timeout: Duration::from_secs(5),
                    }),
                    leeway: self.jwt_leeway,
                    audience: self.jwt_audience.clone(),
                    issuer: self.jwt_issuer.clone(),
                    user_claim: self.jwt_user_claim.clone(),
                    name_claim: self.jwt_name_claim.clone(),
                };
                let none =
                    keys.secret.is_none() && keys.public_key_pem.is_none() && keys.jwks.is_none();
                if none {
                    return Err(SettingsError::new(
                        "invalid setting CHAT_JWT_SECRET: jwt mode needs CHAT_JWT_SECRET, \
                         CHAT_JWT_PUBLIC_KEY or CHAT_JWKS_URL",
                    ));
                }
                let name = if self.jwt_public_key.is_some() {
                    "CHAT_JWT_PUBLIC_KEY"
                } else {
                    "CHAT_JWKS_URL"
                };
                Authenticator::jwt_with(keys)
                    .map_err(|e| SettingsError::new(format!("invalid setting {name}: {e}")))?
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
        assert!(
            err.contains("CHAT_JWT_SECRET") && err.contains("CHAT_JWKS_URL"),
            "{err}"
        );
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
