//! A stand-in identity provider: signing keys of every kind providers use,
//! tokens signed with them, and a JWKS endpoint on loopback that can
//! rotate its keys and go down.
//!
//! The keys in `crates/testkit/keys/` were made once with OpenSSL for the
//! tests (they sign nothing else): RSA 2048 (two of them), P-256, P-384 and
//! Ed25519, each with its public half in PEM.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One of the test signing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestKey {
    /// RSA 2048.
    Rsa,
    /// Another RSA 2048 (a rotated key, or a stranger's).
    RsaOther,
    /// ECDSA on P-256.
    Ec256,
    /// ECDSA on P-384.
    Ec384,
    /// Ed25519.
    Ed25519,
}

impl TestKey {
    /// Every key.
    pub const ALL: [TestKey; 5] = [
        TestKey::Rsa,
        TestKey::RsaOther,
        TestKey::Ec256,
        TestKey::Ec384,
        TestKey::Ed25519,
    ];

    /// The algorithms tokens signed with this key may use.
    pub fn algorithms(self) -> &'static [Algorithm] {
        match self {
            TestKey::Rsa | TestKey::RsaOther => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            TestKey::Ec256 => &[Algorithm::ES256],
            TestKey::Ec384 => &[Algorithm::ES384],
            TestKey::Ed25519 => &[Algorithm::EdDSA],
        }
    }

    /// The public key, PEM (SPKI).
    pub fn public_pem(self) -> &'static str {
        match self {
            TestKey::Rsa => include_str!("../keys/rsa.pub.pem"),
            TestKey::RsaOther => include_str!("../keys/rsa-other.pub.pem"),
            TestKey::Ec256 => include_str!("../keys/ec256.pub.pem"),
            TestKey::Ec384 => include_str!("../keys/ec384.pub.pem"),
            TestKey::Ed25519 => include_str!("../keys/ed25519.pub.pem"),
        }
    }

    fn encoding(self) -> EncodingKey {
        match self {
            TestKey::Rsa => EncodingKey::from_rsa_der(include_bytes!("../keys/rsa.pkcs1.der")),
            TestKey::RsaOther => {
                EncodingKey::from_rsa_der(include_bytes!("../keys/rsa-other.pkcs1.der"))
            }
            TestKey::Ec256 => EncodingKey::from_ec_der(include_bytes!("../keys/ec256.pk8.der")),
            TestKey::Ec384 => EncodingKey::from_ec_der(include_bytes!("../keys/ec384.pk8.der")),
            TestKey::Ed25519 => EncodingKey::from_ed_der(include_bytes!("../keys/ed25519.pk8.der")),
        }
    }

    /// The public key as a JWK (RFC 7517) with key id `kid`.
    pub fn jwk(self, kid: &str) -> Value {
        if self == TestKey::Ed25519 {
            // The SPKI of an Ed25519 key ends with the 32-byte key (RFC 8410).
            let der = pem_body(self.public_pem());
            let x = &der[der.len() - 32..];
            return json!({
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": kid,
                "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x),
            });
        }
        let alg = self.algorithms()[0];
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&self.encoding(), alg)
            .unwrap_or_else(|e| panic!("a JWK of {self:?}: {e}"));
        let mut value = serde_json::to_value(jwk).unwrap_or(Value::Null);
        value["kid"] = json!(kid);
        value["use"] = json!("sig");
        // Providers often leave `alg` out: the key's type must do.
        if let Some(object) = value.as_object_mut() {
            object.remove("alg");
        }
        value
    }

    /// A token with `claims`, signed with this key by `alg`, naming key `kid`.
    pub fn sign(self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding())
            .unwrap_or_else(|e| panic!("signing with {self:?} as {alg:?}: {e}"))
    }
}

fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap_or_default()
}

/// A token signed with the shared secret `secret` by `alg` (HS256/384/512).
pub fn sign_hmac(secret: &[u8], alg: Algorithm, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
        .unwrap_or_else(|e| panic!("signing with a secret as {alg:?}: {e}"))
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Served {
    /// The JWK Set served, or `None` while the provider is down (503).
    body: Option<String>,
    /// Requests are taken and never answered (a provider that hangs).
    hang: bool,
}

/// A JWKS endpoint on loopback: `GET /jwks.json` answers the current key
/// set, or 503 while down. Stops when dropped.
pub struct JwksServer {
    addr: SocketAddr,
    served: Arc<Mutex<Served>>,
    fetches: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Serves `keys` (each with its key id).
    pub async fn start(keys: &[(TestKey, &str)]) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let served = Arc::new(Mutex::new(Served {
            body: Some(set_of(keys)),
            hang: false,
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (state, count) = (Arc::clone(&served), Arc::clone(&fetches));
        let accept = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (state, count) = (Arc::clone(&state), Arc::clone(&count));
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let (body, hang) = state
                        .lock()
                        .map(|s| (s.body.clone(), s.hang))
                        .unwrap_or((None, false));
                    if hang {
                        // Hold the connection open, answering nothing.
                        std::future::pending::<()>().await;
                    }
                    let response = match body {
                        Some(body) => format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Self {
            addr,
            served,
            fetches,
            accept,
        })
    }

    /// `http://…/jwks.json`.
    pub fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// From now on, serves `keys` (a rotation).
    pub fn rotate(&self, keys: &[(TestKey, &str)]) {
        if let Ok(mut served) = self.served.lock() {
            served.body = Some(set_of(keys));
            served.hang = false;
        }
    }

    /// From now on, takes requests and never answers them (until
    /// [`JwksServer::rotate`]).
    pub fn hang(&self) {
        if let Ok(mut served) = self.served.lock() {
            served.hang = true;
        }
    }

    /// From now on, answers 503 (until [`JwksServer::rotate`]).
    pub fn go_down(&self) {
        if let Ok(mut served) = self.served.lock() {
            served.body = None;
        }
    }

    /// How many times the set was asked for.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn set_of(keys: &[(TestKey, &str)]) -> String {
    json!({"keys": keys.iter().map(|(key, kid)| key.jwk(kid)).collect::<Vec<_>>()}).to_string()
}
