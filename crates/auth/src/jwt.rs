//! Verifying tokens as identity providers issue them (RFC 7519, with RFC
//! 8725's best practices).
//!
//! - The key is chosen by the token's algorithm family: HMAC tokens
//!   (HS256/384/512) against `CHAT_JWT_SECRET`, signed tokens (RS*, PS*,
//!   ES256, ES384, EdDSA) against `CHAT_JWT_PUBLIC_KEY` or the provider's
//!   JWKS (`CHAT_JWKS_URL`, by `kid`). The key decides which algorithms it
//!   accepts (see `keys.rs`); `none` and unknown algorithms verify against
//!   nothing.
//! - `exp` is required (integer or fractional seconds), `nbf` honoured,
//!   `iat` not needed; both with `CHAT_JWT_LEEWAY`. `aud` and `iss` are
//!   required and checked when `CHAT_JWT_AUDIENCE` / `CHAT_JWT_ISSUER` are
//!   set; every other claim is ignored.
//! - The user is the `CHAT_JWT_USER_CLAIM` claim (`sub` by default), a
//!   provider id (see `names.rs`); a display name comes from
//!   `CHAT_JWT_NAME_CLAIM` (`name`) when present.
//! - A token that parses gets a precise reason: `expired`, `not yet
//!   valid`, `bad signature`, `wrong audience`, `wrong issuer`, `unknown
//!   key`, `missing claim 'exp'`…; `malformed` only for one that does not.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde_json::Value;

use crate::AuthError;
use crate::jwks::{Jwks, Miss};
use crate::keys::Key;
use crate::names::{self, MAX_NAME_CHARS};

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The user id (the user claim).
    pub user: String,
    /// The display name, when the token carries one.
    pub name: Option<String>,
    /// When it was issued (`iat`, whole seconds since the Unix epoch), if it says.
    pub issued_at: Option<u64>,
}

/// The claims rules of this deployment.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) leeway: Duration,
    pub(crate) audience: Option<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) user_claim: String,
    pub(crate) name_claim: String,
}

/// Every key this deployment verifies tokens with.
pub(crate) struct Verifier {
    pub(crate) hmac: Option<(Key, EncodingKey)>,
    pub(crate) public: Option<Key>,
    pub(crate) jwks: Option<Jwks>,
    pub(crate) rules: Rules,
}

fn invalid(why: impl Into<String>) -> AuthError {
    AuthError::Invalid(why.into())
}

impl Verifier {
    /// Checks `token` and answers whom it names.
    pub(crate) async fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        let header = header(token)?;
        let key = self.key_for(&header).await?;
        if !key.algorithms.contains(&header.alg) {
            return Err(invalid(format!(
                "algorithm {:?} is not accepted for this key (it takes {})",
                header.alg,
                key.algorithms
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let data =
            jsonwebtoken::decode::<Value>(token, &key.decoding, &self.validation(header.alg))
                .map_err(|e| match e.kind() {
                    // The signature verified (jsonwebtoken reads the claims
                    // after it), but a claim it checks has the wrong JSON type:
                    // say which.
                    ErrorKind::Json(_) => invalid(self.mistyped_claim(token)),
                    kind => invalid(reason(kind)),
                })?;
        self.identify(&data.claims)
    }

    /// The key for a token with this header.
    async fn key_for(&self, header: &Header) -> Result<Key, AuthError> {
        let hmac = matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        );
        if hmac {
            return self
                .hmac
                .as_ref()
                .map(|(key, _)| key.clone())
                .ok_or_else(|| {
                    invalid(format!(
                        "{:?} tokens are not accepted here (no shared secret is configured)",
                        header.alg
                    ))
                });
        }
        if let Some(key) = &self.public {
            return Ok(key.clone());
        }
        let Some(jwks) = &self.jwks else {
            return Err(invalid(format!(
                "{:?} tokens are not accepted here (no public key or JWKS is configured)",
                header.alg
            )));
        };
        jwks.key(header.kid.as_deref())
            .await
            .map_err(|miss| match miss {
                Miss::UnknownKey(kid) => invalid(format!("unknown key '{kid}'")),
                Miss::NoKid => invalid("unknown key (the token names none)"),
                Miss::Unreachable(why) => invalid(format!(
                    "unknown key (the identity provider's keys are unavailable: {why})"
                )),
            })
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let rules = &self.rules;
        let mut validation = Validation::new(algorithm);
        validation.leeway = rules.leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        validation.validate_aud = false;
        if let Some(audience) = &rules.audience {
            validation.set_audience(&[audience]);
            validation.validate_aud = true;
            required.push("aud");
        }
        if let Some(issuer) = &rules.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// Which registered claim of a signed token has the wrong JSON type
    /// (RFC 7519 §4.1), in words; `malformed` when none does.
    fn mistyped_claim(&self, token: &str) -> String {
        let Ok(claims) = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token) else {
            return "malformed".into();
        };
        let user = self.rules.user_claim.as_str();
        let wrong = |name: &str| {
            let Some(value) = claims.get(name) else {
                return false;
            };
            match name {
                "exp" | "nbf" | "iat" => !value.is_number(),
                "aud" => {
                    !(value.is_string()
                        || value
                            .as_array()
                            .is_some_and(|a| a.iter().all(Value::is_string)))
                }
                _ if name == user => !(value.is_string() || value.is_number()),
                _ => !value.is_string(),
            }
        };
        match [user, "exp", "nbf", "iat", "iss", "aud", "sub"]
            .into_iter()
            .find(|name| wrong(name))
        {
            Some(name) => format!("claim '{name}' has the wrong type"),
            None => "malformed".into(),
        }
    }

    /// The user and display name a verified token names.
    fn identify(&self, claims: &Value) -> Result<Verified, AuthError> {
        let claim = &self.rules.user_claim;
        let user = match claims.get(claim) {
            Some(Value::String(user)) => user.clone(),
            // Some providers issue numeric user ids.
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(invalid(format!("claim '{claim}' is not a user id"))),
            None => return Err(invalid(format!("missing claim '{claim}'"))),
        };
        names::provider_id(&user)
            .map_err(|e| invalid(format!("claim '{claim}' is not a user id: {e}")))?;
        let name = claims
            .get(&self.rules.name_claim)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|n| {
                !n.is_empty()
                    && n.chars().count() <= MAX_NAME_CHARS
                    && !n.contains(char::is_control)
            })
            .map(str::to_owned);
        let issued_at = claims
            .get("iat")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| s as u64);
        Ok(Verified {
            user,
            name,
            issued_at,
        })
    }

    /// A token for `user` signed with the shared secret, valid for `ttl`
    /// (for `chatd token` and tests); `None` without a secret.
    pub(crate) fn mint(
        &self,
        user: &str,
        name: Option<&str>,
        ttl: Duration,
    ) -> Option<Result<String, AuthError>> {
        let (_, encoding) = self.hmac.as_ref()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut claims = serde_json::Map::new();
        claims.insert(self.rules.user_claim.clone(), user.into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + ttl.as_secs()).into());
        if let Some(name) = name {
            claims.insert(self.rules.name_claim.clone(), name.into());
        }
        if let Some(audience) = &self.rules.audience {
            claims.insert("aud".into(), audience.clone().into());
        }
        if let Some(issuer) = &self.rules.issuer {
            claims.insert("iss".into(), issuer.clone().into());
        }
        Some(
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding)
                .map_err(|e| invalid(e.to_string())),
        )
    }
}

/// The token's header, or why it has none we take.
fn header(token: &str) -> Result<Header, AuthError> {
    jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        // An algorithm jsonwebtoken does not know (`none`, say): name it.
        ErrorKind::Json(_) => match declared_algorithm(token) {
            Some(alg) => invalid(format!("algorithm '{alg}' is not accepted")),
            None => invalid("malformed"),
        },
        _ => invalid("malformed"),
    })
}

/// The `alg` a token's header declares, read without trusting it.
fn declared_algorithm(token: &str) -> Option<String> {
    use base64::Engine;
    let first = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first.trim_end_matches('='))
        .ok()?;
    let header: Value = serde_json::from_slice(&bytes).ok()?;
    let alg = header.get("alg")?.as_str()?;
    Some(alg.chars().take(16).collect())
}

/// Why a token that parsed did not verify, in words.
fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "expired".into(),
        ErrorKind::ImmatureSignature => "not yet valid".into(),
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_) => "bad signature".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim '{claim}'"),
        ErrorKind::InvalidClaimFormat(claim) => format!("claim '{claim}' has the wrong type"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "algorithm not accepted for this key".into()
        }
        _ => "malformed".into(),
    }
}
