//! Who is calling, for every chat service.
//!
//! - `open` mode (the seed's behaviour, for local demos): the WebSocket path
//!   names the user; HTTP calls name it with a `user` query parameter.
//! - `jwt` mode (any real deployment): an HS256 token whose `sub` is the
//!   user, as `Authorization: Bearer …` or a `token` query parameter.
//!   Missing, malformed, wrongly signed or expired → 401; a valid token for
//!   another user → 403. Tokens must carry `exp`; only HS256 is accepted, so
//!   `alg: none` and algorithm confusion are refused by construction.
//!
//! [`OriginPolicy`] guards WebSocket upgrades against cross-site hijacking.

mod origin;
pub mod settings;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use chat_protocol::ErrorCode;
use chat_runtime::error::HttpError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub use origin::OriginPolicy;
pub use settings::{AuthMode, AuthSettings, Secret};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials where they are required.
    #[error("{0}")]
    Missing(&'static str),
    /// Credentials that do not verify: malformed, wrongly signed, expired.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Valid credentials for someone else.
    #[error("this token is for '{token_user}', not '{wanted}'")]
    WrongUser {
        /// The token's `sub`.
        token_user: String,
        /// The user the request is about.
        wanted: String,
    },
    /// A browser page from an origin that is not allowed.
    #[error("origin '{0}' is not allowed")]
    Origin(String),
    /// The user named by the request breaks the naming rules.
    #[error("invalid user name: {0}")]
    InvalidName(chat_protocol::NameError),
}

impl HttpError for AuthError {
    fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing(_) | AuthError::Invalid(_) => ErrorCode::Unauthorized,
            AuthError::WrongUser { .. } | AuthError::Origin(_) => ErrorCode::Forbidden,
            AuthError::InvalidName(_) => ErrorCode::InvalidName,
        }
    }

    fn status(&self) -> StatusCode {
        match self.code() {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

chat_runtime::http_error!(AuthError);

/// The claims of a chat token.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user.
    sub: String,
    /// Expiry, seconds since the Unix epoch (required).
    exp: u64,
    /// Issued at.
    iat: u64,
}

#[derive(Clone)]
enum Mode {
    Open,
    Jwt(Box<Keys>),
}

/// Everything jwt mode needs, built once.
#[derive(Clone)]
struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// Checks requests against the configured identity mode.
#[derive(Clone)]
pub struct Authenticator {
    mode: Mode,
}

impl Authenticator {
    /// Open mode: names are identities.
    pub fn open() -> Self {
        Self { mode: Mode::Open }
    }

    /// JWT mode with an HS256 secret (callers check its length: see [`AuthSettings`]).
    pub fn jwt(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            mode: Mode::Jwt(Box::new(Keys {
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                validation,
            })),
        }
    }

    /// True in open mode.
    pub fn is_open(&self) -> bool {
        matches!(self.mode, Mode::Open)
    }

    /// Mints a token for `user`, valid for `ttl` (jwt mode only).
    pub fn mint(&self, user: &str, ttl: Duration) -> Result<String, AuthError> {
        let Mode::Jwt(keys) = &self.mode else {
            return Err(AuthError::Missing(
                "tokens need CHAT_AUTH=jwt and CHAT_JWT_SECRET",
            ));
        };
        chat_protocol::validate_user(user).map_err(AuthError::InvalidName)?;
        let now = now_secs();
        let claims = Claims {
            sub: user.to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// The user a token belongs to.
    fn verify(&self, token: &str) -> Result<String, AuthError> {
        let Mode::Jwt(keys) = &self.mode else {
            return Err(AuthError::Invalid("open mode has no tokens".into()));
        };
        let data = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &keys.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                AuthError::Invalid(match e.kind() {
                    ErrorKind::ExpiredSignature => "expired".into(),
                    ErrorKind::InvalidSignature => "bad signature".into(),
                    ErrorKind::InvalidAlgorithm => "only HS256 tokens are accepted".into(),
                    ErrorKind::MissingRequiredClaim(claim) => format!("missing claim '{claim}'"),
                    _ => "malformed".into(),
                })
            })?;
        chat_protocol::validate_user(&data.claims.sub)
            .map_err(|e| AuthError::Invalid(format!("sub: {e}")))?;
        Ok(data.claims.sub)
    }

    /// The request's token, from `Authorization: Bearer …` or `?token=…`.
    fn token(req: &HttpRequest) -> Option<String> {
        if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION)
            && let Ok(value) = value.to_str()
            && let Some(token) = value.strip_prefix("Bearer ")
        {
            return Some(token.trim().to_owned());
        }
        query_param(req, "token")
    }

    /// A request about `user` (a WebSocket path, a user's data): open mode
    /// takes the name as given; jwt mode needs a valid token for that user.
    pub fn authorize(&self, req: &HttpRequest, user: &str) -> Result<(), AuthError> {
        chat_protocol::validate_user(user).map_err(AuthError::InvalidName)?;
        match &self.mode {
            Mode::Open => Ok(()),
            Mode::Jwt(_) => {
                let token =
                    Self::token(req).ok_or(AuthError::Missing("a bearer token is required"))?;
                let token_user = self.verify(&token)?;
                if token_user != user {
                    return Err(AuthError::WrongUser {
                        token_user,
                        wanted: user.to_owned(),
                    });
                }
                Ok(())
            }
        }
    }

    /// Who calls an HTTP API: the token's user (jwt), or the `user` query
    /// parameter (open).
    pub fn caller(&self, req: &HttpRequest) -> Result<String, AuthError> {
        match &self.mode {
            Mode::Open => {
                let user = query_param(req, "user").ok_or(AuthError::Missing(
                    "open mode: name yourself with ?user=NAME",
                ))?;
                chat_protocol::validate_user(&user).map_err(AuthError::InvalidName)?;
                Ok(user)
            }
            Mode::Jwt(_) => {
                let token =
                    Self::token(req).ok_or(AuthError::Missing("a bearer token is required"))?;
                self.verify(&token)
            }
        }
    }

    /// Anyone with valid credentials (the public lobby): always in open mode,
    /// a valid token of any user in jwt mode.
    pub fn anyone(&self, req: &HttpRequest) -> Result<(), AuthError> {
        match &self.mode {
            Mode::Open => Ok(()),
            Mode::Jwt(_) => {
                let token =
                    Self::token(req).ok_or(AuthError::Missing("a bearer token is required"))?;
                self.verify(&token).map(drop)
            }
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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

    #[test]
    fn a_minted_token_opens_its_own_user_only() {
        let auth = Authenticator::jwt(SECRET);
        let token = auth.mint("alice", Duration::from_secs(60)).unwrap();
        assert_eq!(auth.authorize(&with_token(&token), "alice"), Ok(()));
        let wrong = auth.authorize(&with_token(&token), "bob").unwrap_err();
        assert_eq!(wrong.code(), ErrorCode::Forbidden);
        let by_query =
            TestRequest::with_uri(&format!("/ws/alice/?token={token}")).to_http_request();
        assert_eq!(auth.caller(&by_query), Ok("alice".to_owned()));
    }

    #[test]
    fn tokens_that_do_not_verify_are_unauthorized() {
        let auth = Authenticator::jwt(SECRET);
        let other = Authenticator::jwt(b"another-secret-of-thirty-two-byte");
        let foreign = other.mint("alice", Duration::from_secs(60)).unwrap();
        let now = now_secs();
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "alice".into(),
                iat: now - 120,
                exp: now - 60,
            },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        // alg "none": header {"alg":"none","typ":"JWT"}, no signature.
        let none =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.";
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "alice"}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        for (token, why) in [
            (foreign.as_str(), "bad signature"),
            (expired.as_str(), "expired"),
            (none, "none"),
            (no_exp.as_str(), "exp"),
            ("not.a.token", "malformed"),
        ] {
            let error = auth.authorize(&with_token(token), "alice").unwrap_err();
            assert_eq!(error.code(), ErrorCode::Unauthorized, "{why}: {error}");
        }
        let missing = auth.authorize(&TestRequest::default().to_http_request(), "alice");
        assert_eq!(missing.unwrap_err().code(), ErrorCode::Unauthorized);
    }

    #[test]
    fn open_mode_takes_names_as_given_and_checks_them() {
        let auth = Authenticator::open();
        assert_eq!(
            auth.authorize(&TestRequest::default().to_http_request(), "alice"),
            Ok(())
        );
        let req = TestRequest::with_uri("/api/v1/unread?user=bob").to_http_request();
        assert_eq!(auth.caller(&req), Ok("bob".to_owned()));
        let nobody = auth
            .caller(&TestRequest::default().to_http_request())
            .unwrap_err();
        assert_eq!(nobody.code(), ErrorCode::Unauthorized);
        let bad = TestRequest::with_uri("/x?user=a%20b").to_http_request();
        assert_eq!(
            auth.caller(&bad).unwrap_err().code(),
            ErrorCode::InvalidName
        );
    }
}
