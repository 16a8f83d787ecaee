//! Who is calling, for every chat service.
//!
//! - `open` mode (the seed's behaviour, for local demos): the WebSocket path
//!   names the user; HTTP calls name it with a `user` query parameter.
//!   Names are nicknames in any script, mapped per PRECIS (`names.rs`).
//! - `jwt` mode (any real deployment): a token from the app's identity
//!   provider (`jwt.rs`), as `Authorization: Bearer …` or a `token` query
//!   parameter; its user claim is the user id, as the provider issues it.
//!   Missing, malformed, wrongly signed or expired → 401; a valid token for
//!   another user → 403.
//!
//! [`OriginPolicy`] guards WebSocket upgrades against cross-site hijacking.

mod jwks;
mod jwt;
mod keys;
pub mod names;
mod origin;
pub mod settings;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use chat_protocol::ErrorCode;
use chat_runtime::error::HttpError;
use futures_util::future::BoxFuture;

pub use jwks::JwksOptions;
pub use jwt::Verified;
pub use names::{NameError, UserNames};
pub use origin::OriginPolicy;
pub use settings::{AuthMode, AuthSettings, Secret};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials where they are required.
    #[error("{0}")]
    Missing(&'static str),
    /// Credentials that do not verify, and why: `expired`, `bad signature`,
    /// `wrong audience`, `unknown key`, `malformed`…
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Valid credentials for someone else.
    #[error("this token is for '{token_user}', not '{wanted}'")]
    WrongUser {
        /// The token's user.
        token_user: String,
        /// The user the request is about.
        wanted: String,
    },
    /// A browser page from an origin that is not allowed.
    #[error("origin '{0}' is not allowed")]
    Origin(String),
    /// The user named by the request breaks the naming rules.
    #[error("invalid user name: {0}")]
    InvalidName(NameError),
    /// What a check needs (the revocations' store) is unreachable.
    #[error("cannot check credentials now: {0}")]
    Unavailable(String),
}

impl HttpError for AuthError {
    fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing(_) | AuthError::Invalid(_) => ErrorCode::Unauthorized,
            AuthError::WrongUser { .. } | AuthError::Origin(_) => ErrorCode::Forbidden,
            AuthError::InvalidName(_) => ErrorCode::InvalidName,
            AuthError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    fn status(&self) -> StatusCode {
        match self.code() {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

chat_runtime::http_error!(AuthError);

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user id everything routes by: the nickname mapped (open mode),
    /// or the provider's id (jwt mode).
    pub id: String,
    /// How the user is shown: the nickname as typed, or the token's display
    /// name; `None` when the token carries none.
    pub name: Option<String>,
}

enum Mode {
    Open,
    Jwt(Box<jwt::Verifier>),
}

/// Checks requests against the configured identity mode. Built once
/// (see [`AuthSettings::build`]) and shared.
pub struct Authenticator {
    mode: Mode,
    /// When each user's tokens were revoked (the server API's
    /// `disconnect {revoke: true}`); unset: nothing is ever revoked.
    revocations: OnceLock<Arc<dyn Revocations>>,
}

/// Where the time before which a user's tokens are refused is kept (the
/// message store's engine: the sorted set `revoked` on Redis, a SQLite
/// table).
pub trait Revocations: Send + Sync + 'static {
    /// Tokens of `user` issued before this time (ms since the Unix epoch)
    /// are refused; `None` when none are.
    ///
    /// Errors: the store is unreachable (its message).
    fn revoked_before(&self, user: &str) -> BoxFuture<'static, Result<Option<u64>, String>>;
}

/// The settings of jwt mode, as [`Authenticator::jwt_with`] takes them.
#[derive(Debug, Clone, Default)]
pub struct JwtKeys {
    /// The shared secret of HS256/384/512 tokens.
    pub secret: Option<Vec<u8>>,
    /// A public key in PEM (RSA, P-256, P-384 or Ed25519).
    pub public_key_pem: Option<String>,
    /// The identity provider's key set.
    pub jwks: Option<JwksOptions>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The audience tokens must be for (`aud`), when set.
    pub audience: Option<String>,
    /// The issuer tokens must come from (`iss`), when set.
    pub issuer: Option<String>,
    /// The claim naming the user (`sub` when empty).
    pub user_claim: String,
    /// The claim holding the display name (`name` when empty).
    pub name_claim: String,
}

impl Authenticator {
    /// Open mode: names are identities.
    pub fn open() -> Self {
        Self {
            mode: Mode::Open,
            revocations: OnceLock::new(),
        }
    }

    /// JWT mode with an HS256 shared secret only, defaults otherwise
    /// (callers check its length: see [`AuthSettings`]).
    pub fn jwt(secret: &[u8]) -> Self {
        Self {
            revocations: OnceLock::new(),
            mode: Mode::Jwt(Box::new(jwt::Verifier {
                hmac: Some((
                    keys::hmac(secret),
                    jsonwebtoken::EncodingKey::from_secret(secret),
                )),
                public: None,
                jwks: None,
                rules: jwt::Rules {
                    leeway: Duration::from_secs(5),
                    audience: None,
                    issuer: None,
                    user_claim: "sub".into(),
                    name_claim: "name".into(),
                },
            })),
        }
    }

    /// JWT mode with these keys and rules. Errors: no key at all, both a
    /// public key and a JWKS URL, a public key that is not one we take (an
    /// RSA key under 2048 bits included), a JWKS URL that is not `http(s)://`.
    pub fn jwt_with(keys: JwtKeys) -> Result<Self, String> {
        if keys.secret.is_none() && keys.public_key_pem.is_none() && keys.jwks.is_none() {
            return Err("jwt mode needs a secret, a public key or a JWKS URL".into());
        }
        if keys.public_key_pem.is_some() && keys.jwks.is_some() {
            // One would silently shadow the other: the provider's keys come
            // from one place.
            return Err("CHAT_JWT_PUBLIC_KEY and CHAT_JWKS_URL are both set: give one".into());
        }
        let hmac = keys.secret.as_deref().map(|secret| {
            (
                keys::hmac(secret),
                jsonwebtoken::EncodingKey::from_secret(secret),
            )
        });
        let public = keys
            .public_key_pem
            .as_deref()
            .map(keys::from_pem)
            .transpose()?;
        let jwks = match keys.jwks {
            None => None,
            Some(options) => {
                if !(options.url.starts_with("https://") || options.url.starts_with("http://")) {
                    return Err(format!("'{}' is not an http(s) URL", options.url));
                }
                Some(jwks::Jwks::new(options)?)
            }
        };
        let or = |claim: String, default: &str| {
            if claim.is_empty() {
                default.to_owned()
            } else {
                claim
            }
        };
        Ok(Self {
            revocations: OnceLock::new(),
            mode: Mode::Jwt(Box::new(jwt::Verifier {
                hmac,
                public,
                jwks,
                rules: jwt::Rules {
                    leeway: keys.leeway,
                    audience: keys.audience,
                    issuer: keys.issuer,
                    user_claim: or(keys.user_claim, "sub"),
                    name_claim: or(keys.name_claim, "name"),
                },
            })),
        })
    }

    /// True in open mode.
    pub fn is_open(&self) -> bool {
        matches!(self.mode, Mode::Open)
    }

    /// How user names in frames and URLs are read in this mode.
    pub fn user_names(&self) -> UserNames {
        match self.mode {
            Mode::Open => UserNames::Nicknames,
            Mode::Jwt(_) => UserNames::ProviderIds,
        }
    }

    /// Mints an HS256 token for `user` (and display `name`), valid for
    /// `ttl`. Errors: not jwt mode with a shared secret; a user id that is
    /// not one.
    pub fn mint(&self, user: &str, name: Option<&str>, ttl: Duration) -> Result<String, AuthError> {
        let no_secret = AuthError::Missing("tokens need CHAT_AUTH=jwt and CHAT_JWT_SECRET");
        let Mode::Jwt(verifier) = &self.mode else {
            return Err(no_secret);
        };
        names::provider_id(user).map_err(AuthError::InvalidName)?;
        verifier.mint(user, name, ttl).unwrap_or(Err(no_secret))
    }

    /// Where revocations are read from, once the store exists (a second
    /// call changes nothing).
    pub fn set_revocations(&self, revocations: Arc<dyn Revocations>) {
        let _ = self.revocations.set(revocations);
    }

    /// What a token says (jwt mode only).
    pub async fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        match &self.mode {
            Mode::Jwt(verifier) => self.verified(verifier, token).await,
            Mode::Open => Err(AuthError::Invalid("open mode has no tokens".into())),
        }
    }

    /// `token` verified, and not revoked: a token issued (`iat`) before
    /// its user's revocation time, or without `iat` once the user has one,
    /// is refused. `iat` is in whole seconds: a token passes when the
    /// second it names starts at or after the revocation, so one made in
    /// the rest of that second is refused too.
    ///
    /// Errors: the verifier's; [`AuthError::Invalid`] for a revoked token;
    /// [`AuthError::Unavailable`] when revocations cannot be read.
    async fn verified(&self, verifier: &jwt::Verifier, token: &str) -> Result<Verified, AuthError> {
        let verified = verifier.verify(token).await?;
        let Some(revocations) = self.revocations.get() else {
            return Ok(verified);
        };
        let before = revocations
            .revoked_before(&verified.user)
            .await
            .map_err(AuthError::Unavailable)?;
        match (before, verified.issued_at) {
            (Some(before), Some(iat)) if iat.saturating_mul(1000) >= before => Ok(verified),
            (Some(_), _) => Err(AuthError::Invalid(
                "revoked: issued before this user's tokens were revoked".into(),
            )),
            (None, _) => Ok(verified),
        }
    }

    /// The request's token, from `Authorization: Bearer …` or `?token=…`.
    fn token(req: &HttpRequest) -> Result<String, AuthError> {
        if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION)
            && let Ok(value) = value.to_str()
            && let Some(token) = value.strip_prefix("Bearer ")
        {
            return Ok(token.trim().to_owned());
        }
        query_param(req, "token").ok_or(AuthError::Missing("a bearer token is required"))
    }

    /// A request about `user` (a WebSocket path, a user's data): open mode
    /// takes the name as given (mapped to its id); jwt mode needs a valid
    /// token for exactly that user id.
    pub async fn authorize(&self, req: &HttpRequest, user: &str) -> Result<Caller, AuthError> {
        match &self.mode {
            Mode::Open => Ok(Caller {
                id: names::nickname(user).map_err(AuthError::InvalidName)?,
                name: Some(user.to_owned()),
            }),
            Mode::Jwt(verifier) => {
                names::provider_id(user).map_err(AuthError::InvalidName)?;
                let verified = self.verified(verifier, &Self::token(req)?).await?;
                if verified.user != user {
                    return Err(AuthError::WrongUser {
                        token_user: verified.user,
                        wanted: user.to_owned(),
                    });
                }
                Ok(Caller {
                    id: verified.user,
                    name: verified.name,
                })
            }
        }
    }

    /// Who calls an HTTP API: the token's user (jwt), or the `user` query
    /// parameter (open).
    pub async fn caller(&self, req: &HttpRequest) -> Result<Caller, AuthError> {
        match &self.mode {
            Mode::Open => {
                let user = query_param(req, "user").ok_or(AuthError::Missing(
                    "open mode: name yourself with ?user=NAME",
                ))?;
                Ok(Caller {
                    id: names::nickname(&user).map_err(AuthError::InvalidName)?,
                    name: Some(user),
                })
            }
            Mode::Jwt(verifier) => {
                let verified = self.verified(verifier, &Self::token(req)?).await?;
                Ok(Caller {
                    id: verified.user,
                    name: verified.name,
                })
            }
        }
    }

    /// Whether the request's credentials still hold: its token checked
    /// again, revocations included (a connection that finished setting up
    /// after its user's tokens were revoked must not stay). Always in open
    /// mode.
    ///
    /// Errors: as [`Self::authorize`].
    pub async fn still_valid(&self, req: &HttpRequest) -> Result<(), AuthError> {
        match &self.mode {
            Mode::Open => Ok(()),
            Mode::Jwt(verifier) => self.verified(verifier, &Self::token(req)?).await.map(drop),
        }
    }

    /// Anyone with valid credentials (the public lobby): always in open mode,
    /// a valid token of any user in jwt mode.
    pub async fn anyone(&self, req: &HttpRequest) -> Result<(), AuthError> {
        match &self.mode {
            Mode::Open => Ok(()),
            Mode::Jwt(verifier) => self.verified(verifier, &Self::token(req)?).await.map(drop),
        }
    }
}

/// A query parameter, percent-decoded.
pub fn query_param(req: &HttpRequest, name: &str) -> Option<String> {
    let query = actix_web::web::Query::<std::collections::HashMap<String, String>>::from_query(
        req.query_string(),
    )
    .ok()?;
    query.get(name).cloned()
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn with_token(token: &str) -> HttpRequest {
        TestRequest::default()
            .insert_header(("Authorization", format!("Bearer {token}")))
            .to_http_request()
    }

    #[tokio::test]
    async fn a_minted_token_opens_its_own_user_only() {
        let auth = Authenticator::jwt(SECRET);
        let token = auth
            .mint("auth0|alice", Some("Alice"), Duration::from_secs(60))
            .unwrap();
        let caller = auth
            .authorize(&with_token(&token), "auth0|alice")
            .await
            .unwrap();
        assert_eq!(
            caller,
            Caller {
                id: "auth0|alice".into(),
                name: Some("Alice".into())
            }
        );
        let wrong = auth
            .authorize(&with_token(&token), "bob")
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), ErrorCode::Forbidden);
        // Provider ids are compared exactly: case matters.
        let cased = auth
            .authorize(&with_token(&token), "Auth0|alice")
            .await
            .unwrap_err();
        assert_eq!(cased.code(), ErrorCode::Forbidden);
        let by_query = TestRequest::with_uri(&format!("/ws/x/?token={token}")).to_http_request();
        assert_eq!(auth.caller(&by_query).await.unwrap().id, "auth0|alice");
        let missing = auth
            .authorize(&TestRequest::default().to_http_request(), "auth0|alice")
            .await;
        assert_eq!(missing.unwrap_err().code(), ErrorCode::Unauthorized);
    }

    #[tokio::test]
    async fn open_mode_maps_nicknames_and_keeps_them_as_typed() {
        let auth = Authenticator::open();
        let caller = auth
            .authorize(&TestRequest::default().to_http_request(), "Алиса")
            .await
            .unwrap();
        assert_eq!(
            caller,
            Caller {
                id: "алиса".into(),
                name: Some("Алиса".into())
            }
        );
        let req = TestRequest::with_uri("/api/v1/unread?user=%EF%BD%82%EF%BD%8F%EF%BD%82")
            .to_http_request();
        assert_eq!(auth.caller(&req).await.unwrap().id, "bob", "ｂｏｂ is bob");
        let nobody = auth
            .caller(&TestRequest::default().to_http_request())
            .await
            .unwrap_err();
        assert_eq!(nobody.code(), ErrorCode::Unauthorized);
        let bad = TestRequest::with_uri("/x?user=a%20b").to_http_request();
        assert_eq!(
            auth.caller(&bad).await.unwrap_err().code(),
            ErrorCode::InvalidName
        );
    }
}
