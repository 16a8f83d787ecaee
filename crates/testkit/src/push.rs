//! A Web Push service on loopback, standing in for a browser vendor's (the
//! real ones are out of reach here), with the browsers subscribed to it.
//!
//! It checks what a push service checks, and decrypts what only the
//! browser can: the VAPID token (RFC 8292: an ES256 JWT for this origin,
//! expiring within 24 hours, verified with the `k` key it carries), the
//! `TTL` header and the `aes128gcm` content coding; then it decrypts the
//! payload with the subscription's private key (RFC 8291 key derivation
//! and RFC 8188 record, written here from the RFCs with the RustCrypto
//! primitives: independent of the server's `web-push-native`). A push that
//! fails a check is answered 400 and recorded with why.
//!
//! Each subscription answers 201, unless its plan or the service being
//! down says otherwise; a subscription marked gone answers 410.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use sha2::Sha256;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::webhooks::read_request;

/// A browser subscribed to the stand-in: what `PushManager.subscribe`
/// would give the page, and the private key only the browser holds.
#[derive(Clone)]
pub struct Browser {
    /// The subscription's id at the stand-in.
    pub id: String,
    /// Its push endpoint.
    pub endpoint: String,
    /// The public key, base64url (`keys.p256dh`).
    pub p256dh: String,
    /// The authentication secret, base64url (`keys.auth`).
    pub auth: String,
    secret: p256::SecretKey,
    auth_bytes: [u8; 16],
}

impl Browser {
    /// The subscription as `JSON.stringify(subscription)` gives it.
    pub fn subscription_json(&self) -> serde_json::Value {
        serde_json::json!({
            "endpoint": self.endpoint,
            "expirationTime": null,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        })
    }
}

/// One push the stand-in took.
#[derive(Debug, Clone)]
pub struct Push {
    /// The subscription it was for.
    pub subscription: String,
    /// Header names (lowercase) and values.
    pub headers: HashMap<String, String>,
    /// The VAPID public key (`k`) it was signed with.
    pub vapid_key: String,
    /// The VAPID token's `sub`, if any.
    pub subject: Option<String>,
    /// The decrypted payload, as JSON.
    pub notification: serde_json::Value,
    /// The status it was answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    browsers: HashMap<String, Browser>,
    plan: VecDeque<u16>,
    gone: HashSet<String>,
    down: bool,
    taken: Vec<Push>,
    refused: Vec<String>,
    dropped: usize,
}

/// The stand-in push service. Stops when dropped.
pub struct PushService {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl PushService {
    /// Listens on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let origin = format!("http://{addr}");
        let accept = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (state, origin) = (Arc::clone(&shared), origin.clone());
                tokio::spawn(async move {
                    if let Ok(mut s) = state.lock()
                        && s.down
                    {
                        s.dropped += 1;
                        return; // dropped unanswered: as a service that is down
                    }
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    let status = answer(&state, &origin, request);
                    let response = format!(
                        "HTTP/1.1 {status} Status\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Self {
            addr,
            state,
            accept,
        })
    }

    /// The host to allow (`CHAT_PUSH_SERVICES`): its loopback address.
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    /// A new browser subscribed here: fresh P-256 keys and secret.
    pub fn browser(&self) -> Browser {
        let id = ulid::Ulid::new().to_string();
        let secret = loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).unwrap_or_default();
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
                break secret;
            }
        };
        let mut auth_bytes = [0u8; 16];
        getrandom::fill(&mut auth_bytes).unwrap_or_default();
        let public = secret.public_key().to_encoded_point(false);
        let browser = Browser {
            endpoint: format!("http://{}/push/{id}", self.addr),
            p256dh: URL_SAFE_NO_PAD.encode(public.as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(auth_bytes),
            id: id.clone(),
            secret,
            auth_bytes,
        };
        if let Ok(mut s) = self.state.lock() {
            s.browsers.insert(id, browser.clone());
        }
        browser
    }

    /// The next pushes (to any subscription) are answered with these.
    pub fn plan(&self, statuses: &[u16]) {
        if let Ok(mut s) = self.state.lock() {
            s.plan.extend(statuses);
        }
    }

    /// From now on, pushes to `browser` are answered 410 (unsubscribed).
    pub fn forget(&self, browser: &Browser) {
        if let Ok(mut s) = self.state.lock() {
            s.gone.insert(browser.id.clone());
        }
    }

    /// From now on the stand-in knows `browser` no more: its pushes are
    /// answered 404.
    pub fn drop_browser(&self, browser: &Browser) {
        if let Ok(mut s) = self.state.lock() {
            s.browsers.remove(&browser.id);
        }
    }

    /// While down, connections are dropped unanswered.
    pub fn set_down(&self, down: bool) {
        if let Ok(mut s) = self.state.lock() {
            s.down = down;
        }
    }

    /// Every push taken so far (decrypted), in order.
    pub fn pushes(&self) -> Vec<Push> {
        self.state
            .lock()
            .map(|s| s.taken.clone())
            .unwrap_or_default()
    }

    /// Pushes taken for `browser`.
    pub fn pushes_for(&self, browser: &Browser) -> Vec<Push> {
        self.pushes()
            .into_iter()
            .filter(|p| p.subscription == browser.id)
            .collect()
    }

    /// Why pushes were refused (400): failed checks.
    pub fn refused(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.refused.clone())
            .unwrap_or_default()
    }

    /// Connections dropped while down.
    pub fn dropped(&self) -> usize {
        self.state.lock().map(|s| s.dropped).unwrap_or(0)
    }
}

impl Drop for PushService {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Checks and records one push: its status.
fn answer(state: &Mutex<State>, origin: &str, request: crate::webhooks::Request) -> u16 {
    let Ok(mut s) = state.lock() else { return 500 };
    let id = request.path.trim_start_matches("/push/").to_owned();
    let Some(browser) = s.browsers.get(&id).cloned() else {
        return 404;
    };
    if s.gone.contains(&id) {
        return 410;
    }
    match check(&browser, origin, &request) {
        Err(why) => {
            s.refused.push(why);
            400
        }
        Ok((vapid_key, subject, notification)) => {
            let status = s.plan.pop_front().unwrap_or(201);
            s.taken.push(Push {
                subscription: id,
                headers: request.headers,
                vapid_key,
                subject,
                notification,
                status,
            });
            status
        }
    }
}

/// The VAPID key, subject and decrypted payload of a push that passes
/// every check; else why not.
fn check(
    browser: &Browser,
    origin: &str,
    request: &crate::webhooks::Request,
) -> Result<(String, Option<String>, serde_json::Value), String> {
    let header = |name: &str| request.headers.get(name).map(String::as_str);
    header("ttl")
        .and_then(|ttl| ttl.parse::<u64>().ok())
        .ok_or("no TTL header (RFC 8030 §5.2)")?;
    if header("content-encoding") != Some("aes128gcm") {
        return Err("the content coding is not aes128gcm (RFC 8291 §4)".into());
    }
    let (token, key) = header("authorization")
        .and_then(|a| a.strip_prefix("vapid "))
        .and_then(|rest| {
            let mut token = None;
            let mut key = None;
            for part in rest.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", value)) => token = Some(value),
                    Some(("k", value)) => key = Some(value),
                    _ => {}
                }
            }
            Some((token?, key?))
        })
        .ok_or("no 'Authorization: vapid t=…, k=…' (RFC 8292 §3)")?;
    let subject = verify_vapid(token, key, origin)?;
    let plaintext = decrypt(browser, &request.body)?;
    let notification =
        serde_json::from_slice(&plaintext).map_err(|e| format!("the payload is not JSON: {e}"))?;
    Ok((key.to_owned(), subject, notification))
}

/// Verifies a VAPID token with key `k`: ES256, `aud` this origin, `exp`
/// within 24 hours. The token's `sub`.
fn verify_vapid(token: &str, key: &str, origin: &str) -> Result<Option<String>, String> {
    let point = URL_SAFE_NO_PAD
        .decode(key)
        .map_err(|_| "k is not base64url")?;
    if point.len() != 65 || point[0] != 4 {
        return Err("k is not an uncompressed P-256 point".into());
    }
    let (x, y) = (
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..]),
    );
    let verifying =
        jsonwebtoken::DecodingKey::from_ec_components(&x, &y).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[origin]);
    validation.set_required_spec_claims(&["exp", "aud"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(token, &verifying, &validation)
        .map_err(|e| format!("the VAPID token does not verify: {e}"))?
        .claims;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let exp = claims["exp"].as_u64().unwrap_or(0);
    if exp > now + 24 * 3600 {
        return Err("the VAPID token expires more than 24 hours ahead (RFC 8292 §2)".into());
    }
    Ok(claims["sub"].as_str().map(str::to_owned))
}

/// The plaintext of an `aes128gcm` body for `browser` (one record).
fn decrypt(browser: &Browser, body: &[u8]) -> Result<Vec<u8>, String> {
    // RFC 8188 §2.1: salt (16) | rs (4) | idlen (1) | keyid (the
    // server's ephemeral public key, RFC 8291 §4) | the record.
    if body.len() < 21 {
        return Err("the body is shorter than its header".into());
    }
    let salt = &body[..16];
    let rs = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
    let idlen = body[20] as usize;
    let keyid = body.get(21..21 + idlen).ok_or("a cut key id")?;
    let record = &body[21 + idlen..];
    if record.len() > rs {
        return Err("more than one record: a push is one".into());
    }
    let server =
        p256::PublicKey::from_sec1_bytes(keyid).map_err(|_| "the key id is no P-256 key")?;
    // RFC 8291 §3.3-3.4: the input keying material from the shared secret.
    let shared = p256::ecdh::diffie_hellman(browser.secret.to_nonzero_scalar(), server.as_affine());
    let mut info = b"WebPush: info\0".to_vec();
    info.extend_from_slice(
        browser
            .secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes(),
    );
    info.extend_from_slice(keyid);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(
        Some(&browser.auth_bytes),
        shared.raw_secret_bytes().as_slice(),
    )
    .expand(&info, &mut ikm)
    .map_err(|e| e.to_string())?;
    // RFC 8188 §2.2-2.3: the content key and nonce.
    let content = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let (mut key, mut nonce) = ([0u8; 16], [0u8; 12]);
    content
        .expand(b"Content-Encoding: aes128gcm\0", &mut key)
        .map_err(|e| e.to_string())?;
    content
        .expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|e| e.to_string())?;
    let cipher = aes_gcm::Aes128Gcm::new_from_slice(&key).map_err(|e| e.to_string())?;
    let mut padded = cipher
        .decrypt(aes_gcm::Nonce::from_slice(&nonce), record)
        .map_err(|_| "the record does not decrypt with the browser's keys")?;
    // The last record ends with a 2 delimiter, then any zeros (§2).
    while padded.last() == Some(&0) {
        padded.pop();
    }
    if padded.pop() != Some(2) {
        return Err("the record lacks the last record's delimiter".into());
    }
    Ok(padded)
}
