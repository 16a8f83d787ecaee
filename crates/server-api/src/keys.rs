//! API keys: their shape, how they are made and checked, and what each
//! may do.
//!
//! A key reads `ck_{id}.{secret}`: `id` is a ULID (public: listed, logged,
//! named in revocations), `secret` is 32 bytes from the operating system's
//! random source, base64url without padding. The store keeps the id and a
//! SHA-256 of the secret ([`chat_store::ApiKey`]); the key itself is shown
//! once. The bootstrap key (`CHAT_SERVER_API_KEY`) is any string of at
//! least 32 bytes; it has every scope and alone may manage keys.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chat_store::ApiKey;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a key's prefix says it is.
const PREFIX: &str = "ck_";

/// The fewest bytes the bootstrap key may have.
pub const BOOTSTRAP_MIN_BYTES: usize = 32;

/// What a key may do. Each endpoint needs one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Post messages (`/api/v1/server/publish`).
    Publish,
    /// Create and delete rooms, add and remove members.
    Rooms,
    /// Disconnect users, revoke their tokens.
    Users,
    /// Read presence, unread counts, connections.
    Read,
}

impl Scope {
    /// Every scope, in the order they are listed.
    pub const ALL: [Scope; 4] = [Scope::Publish, Scope::Rooms, Scope::Users, Scope::Read];

    /// The scope's name, as keys list it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Publish => "publish",
            Scope::Rooms => "rooms",
            Scope::Users => "users",
            Scope::Read => "read",
        }
    }

    /// The scope named `name`, if any.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// Hex SHA-256 of `text`.
fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A new key named `name` with `scopes`, made at `now` (ms): what to keep,
/// and the key to hand out (once).
///
/// Errors: the operating system's random source failed (its message).
pub fn generate(name: &str, scopes: &[Scope], now: u64) -> Result<(ApiKey, String), String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("no random bytes for a key: {e}"))?;
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let id = ulid::Ulid::new().to_string();
    let key = format!("{PREFIX}{id}.{secret}");
    let record = ApiKey {
        id,
        name: name.to_owned(),
        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        secret_sha256: sha256_hex(&secret),
        created_at: now,
        revoked_at: None,
    };
    Ok((record, key))
}

/// What a presented credential is, before the store is asked.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// The shape of a key: its id and secret.
    Key {
        /// The key's id.
        id: &'a str,
        /// Its secret part.
        secret: &'a str,
    },
    /// Three dot-separated parts: a user's JWT, which never opens this API.
    UserToken,
    /// Anything else.
    Unknown,
}

/// Reads what a caller presented.
pub fn presented(credential: &str) -> Presented<'_> {
    if let Some(rest) = credential.strip_prefix(PREFIX)
        && let Some((id, secret)) = rest.split_once('.')
        && id.len() == 26
        && !secret.is_empty()
    {
        return Presented::Key { id, secret };
    }
    if credential.split('.').count() == 3 {
        return Presented::UserToken;
    }
    Presented::Unknown
}

/// Whether `secret` is the one `key` was made with (constant time).
pub fn matches(key: &ApiKey, secret: &str) -> bool {
    sha256_hex(secret)
        .as_bytes()
        .ct_eq(key.secret_sha256.as_bytes())
        .into()
}

/// Whether `credential` is the bootstrap key `bootstrap` (constant time:
/// both are hashed first, so neither length nor content leaks).
pub fn is_bootstrap(bootstrap: &[u8], credential: &str) -> bool {
    let (a, b) = (
        Sha256::digest(bootstrap),
        Sha256::digest(credential.as_bytes()),
    );
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_recognised_by_its_record_and_nothing_else() {
        let (record, key) = generate("shop", &[Scope::Publish], 1).unwrap();
        let Presented::Key { id, secret } = presented(&key) else {
            panic!("{key} is not read as a key");
        };
        assert_eq!(id, record.id);
        assert!(matches(&record, secret));
        assert!(!matches(&record, &format!("{secret}x")));
        assert!(
            !record.secret_sha256.contains(secret),
            "only a hash is kept"
        );
        let (other, _) = generate("shop", &[Scope::Publish], 1).unwrap();
        assert!(!matches(&other, secret));
        assert_eq!(record.scopes, ["publish"]);
    }

    #[test]
    fn user_tokens_and_junk_are_told_apart_from_keys() {
        assert_eq!(
            presented("eyJhbGciOi.eyJzdWIiOi.c2ln"),
            Presented::UserToken
        );
        assert_eq!(presented("ck_short.secret"), Presented::Unknown);
        assert_eq!(presented(""), Presented::Unknown);
        assert!(matches!(
            presented("ck_01J00000000000000000000000.x"),
            Presented::Key { .. }
        ));
    }

    #[test]
    fn the_bootstrap_key_is_compared_whole() {
        let bootstrap = b"a-bootstrap-key-of-at-least-32-bytes";
        assert!(is_bootstrap(
            bootstrap,
            "a-bootstrap-key-of-at-least-32-bytes"
        ));
        assert!(!is_bootstrap(
            bootstrap,
            "a-bootstrap-key-of-at-least-32-byte"
        ));
        assert!(!is_bootstrap(bootstrap, ""));
    }
}
