//! An identity provider's signing keys, from its JWKS URL (RFC 7517),
//! cached.
//!
//! The set is fetched on first use and again when a token names a key id
//! (`kid`) the set does not hold (the provider rotated its keys), or when
//! the set is older than [`JwksOptions::max_age`] — never more often than
//! once per [`JwksOptions::floor`], so tokens with made-up key ids cannot
//! make the gateway hammer the provider. While the provider is down the
//! last set is kept and used.
//!
//! Each key is taken for what it is, not for what it claims: keys meant for
//! encryption (`use: enc`, or `key_ops` without `verify`) are skipped; so
//! are symmetric (`oct`) keys, which a public document must never hold,
//! EC keys on curves other than P-256 and P-384, Ed25519 keys of the wrong
//! size, and keys whose `alg` does not fit their type. Its algorithms
//! follow from its type and curve (or its `alg`, when given).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tracing::{debug, warn};

use crate::keys::{self, Key};

/// How the key set is fetched.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// The provider's JWKS URL.
    pub url: String,
    /// The least time between two fetches.
    pub floor: Duration,
    /// A set older than this is fetched again when next used.
    pub max_age: Duration,
    /// How long one fetch may take.
    pub timeout: Duration,
}

/// Largest key set accepted, in bytes.
const MAX_BYTES: usize = 1 << 20;

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Key>,
    /// Keys without a `kid`: used for tokens without one.
    anonymous: Vec<Key>,
    fetched: Option<Instant>,
}

/// A provider's keys, fetched and cached. Cloning shares the cache.
#[derive(Clone)]
pub(crate) struct Jwks {
    inner: Arc<Cache>,
}

struct Cache {
    options: JwksOptions,
    client: reqwest::Client,
    set: RwLock<Arc<KeySet>>,
    /// When the last fetch was tried; held while fetching, so one caller
    /// fetches and the others wait for its result.
    last_try: tokio::sync::Mutex<Option<Instant>>,
}

/// Why no key could be found for a token.
#[derive(Debug)]
pub(crate) enum Miss {
    /// The set (as fetched) holds no key with that id.
    UnknownKey(String),
    /// The token names no key, and the set holds no single anonymous key.
    NoKid,
    /// The set was never fetched.
    Unreachable(String),
}

impl Jwks {
    pub(crate) fn new(options: JwksOptions) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(Self {
            inner: Arc::new(Cache {
                options,
                client,
                set: RwLock::default(),
                last_try: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// The key a token with header `kid` is verified with. A known key is
    /// answered at once, even from a set past its age (which is then
    /// fetched again in the background): only a key the set does not hold
    /// waits for a fetch, so a provider that is down or slow never stalls
    /// tokens signed with keys already known.
    pub(crate) async fn key(&self, kid: Option<&str>) -> Result<Key, Miss> {
        let cache = &self.inner;
        let set = cache.current();
        if let Some(key) = find(&set, kid) {
            let stale = set
                .fetched
                .is_none_or(|at| at.elapsed() > cache.options.max_age);
            if stale && let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let cache = Arc::clone(cache);
                runtime.spawn(async move {
                    let _ = cache.refresh().await;
                });
            }
            return Ok(key);
        }
        let fetch_error = cache.refresh().await.err();
        let set = cache.current();
        if let Some(key) = find(&set, kid) {
            return Ok(key);
        }
        if set.fetched.is_none() {
            return Err(Miss::Unreachable(
                fetch_error.unwrap_or_else(|| "not fetched yet".into()),
            ));
        }
        match kid {
            Some(kid) => Err(Miss::UnknownKey(kid.to_owned())),
            None => Err(Miss::NoKid),
        }
    }
}

impl Cache {
    fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.set.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Fetches the set again unless the last try was within the floor;
    /// keeps the old set when the fetch fails.
    async fn refresh(&self) -> Result<(), String> {
        let mut last_try = self.last_try.lock().await;
        if last_try.is_some_and(|at| at.elapsed() < self.options.floor) {
            return Ok(());
        }
        *last_try = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                debug!(
                    keys = set.by_kid.len() + set.anonymous.len(),
                    "fetched the identity provider's keys"
                );
                *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                Ok(())
            }
            Err(e) => {
                warn!(url = %self.options.url, error = %e, "cannot fetch the identity provider's keys; keeping the last ones");
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let response = self
            .client
            .get(&self.options.url)
            .send()
            .await
            .map_err(|e| format!("GET {}: {e}", self.options.url))?;
        if !response.status().is_success() {
            return Err(format!("GET {}: {}", self.options.url, response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BYTES as u64)
        {
            return Err("the key set is larger than 1 MiB".into());
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("GET {}: {e}", self.options.url))?;
        if body.len() > MAX_BYTES {
            return Err("the key set is larger than 1 MiB".into());
        }
        parse(&body)
    }
}

fn find(set: &KeySet, kid: Option<&str>) -> Option<Key> {
    match kid {
        Some(kid) => set.by_kid.get(kid).cloned(),
        None => match set.anonymous.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        },
    }
}

/// A JWK Set's usable signing keys; unusable entries are skipped one by
/// one, so a key of a kind we do not know never hides the others.
fn parse(body: &[u8]) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a JWK Set: {e}"))?;
    let mut set = KeySet {
        fetched: Some(Instant::now()),
        ..KeySet::default()
    };
    for entry in document.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry) else {
            continue;
        };
        let Some(key) = signing_key(&jwk) else {
            continue;
        };
        match &jwk.common.key_id {
            Some(kid) => {
                set.by_kid.entry(kid.clone()).or_insert(key);
            }
            None => set.anonymous.push(key),
        }
    }
    Ok(set)
}

/// The key `jwk` verifies signatures with, if it is a signing key we take.
fn signing_key(jwk: &Jwk) -> Option<Key> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops
            .iter()
            .any(|op| matches!(op, jsonwebtoken::jwk::KeyOperations::Verify))
    {
        return None;
    }
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            keys::check_rsa_modulus(&base64_url(&rsa.n)?).ok()?;
            keys::RSA_ALGORITHMS.to_vec()
        }
        AlgorithmParameters::EllipticCurve(ec) => match &ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => {
            // jsonwebtoken takes the first 32 bytes of `x` on faith.
            let x = base64_url(&okp.x)?;
            if okp.curve != EllipticCurve::Ed25519 || x.len() != keys::ED25519_KEY_BYTES {
                return None;
            }
            vec![Algorithm::EdDSA]
        }
        // A symmetric key in a public document would let anyone sign.
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => family,
        Some(declared) => {
            let declared = algorithm_of(declared)?;
            if !family.contains(&declared) {
                return None;
            }
            vec![declared]
        }
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        decoding,
        algorithms,
    })
}

fn algorithm_of(declared: KeyAlgorithm) -> Option<Algorithm> {
    Some(match declared {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

fn base64_url(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signing_keys_of_known_kinds_are_taken() {
        let set = parse(
            br#"{"keys": [
                {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"},
                {"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AAAA"},
                {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
                {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
                {"kty": "OKP", "crv": "Ed25519", "kid": "ops", "key_ops": ["encrypt"], "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
                {"kty": "OKP", "crv": "Ed25519", "kid": "mislabelled", "alg": "RS256", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
                {"kty": "AKP", "kid": "future", "alg": "ML-DSA-44"},
                {"not": "a key"}
            ]}"#,
        )
        .expect("a set");
        let kids: Vec<&str> = set.by_kid.keys().map(String::as_str).collect();
        assert_eq!(kids, ["ed"]);
        assert_eq!(set.by_kid["ed"].algorithms, [Algorithm::EdDSA]);
        assert!(parse(b"[1]").is_err());
    }
}
