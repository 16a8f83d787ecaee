//! The application server's VAPID key (RFC 8292): a P-256 key pair whose
//! public half the page hands the browser when subscribing
//! (`applicationServerKey`), and whose private half signs the short JWT
//! every push carries, so a push service takes pushes for a subscription
//! only from the server it was made for.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::pkcs8::EncodePrivateKey;
use serde::Serialize;

/// How long a VAPID token is good for: RFC 8292 allows at most 24 hours.
const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not a P-256 private scalar in base64url.
    #[error("{0}")]
    Invalid(String),
    /// The kept key could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A VAPID key pair, ready to sign.
#[derive(Clone)]
pub struct VapidKey {
    secret: p256::SecretKey,
    signing: jsonwebtoken::EncodingKey,
    /// The public key: the uncompressed point, base64url (65 bytes).
    public: String,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A VAPID token's claims (RFC 8292 §2).
#[derive(Serialize)]
struct Claims<'a> {
    /// The push resource's origin (RFC 6454: scheme, host, and a port that
    /// is not the scheme's default).
    aud: &'a str,
    /// Seconds since the Unix epoch after which it is refused.
    exp: u64,
    /// Who to contact: a `mailto:` or `https:` address.
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
}

impl VapidKey {
    /// The key `text` stands for: the 32-byte P-256 private scalar in
    /// base64url (padding and surrounding blanks allowed).
    ///
    /// Errors: [`KeyError::Invalid`], saying what is wrong (never the key).
    pub fn parse(text: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(text).map_err(|_| KeyError::Invalid("not text".into()))?;
        let bytes =
            crate::base64url(text).ok_or_else(|| KeyError::Invalid("not base64url".into()))?;
        if bytes.len() != 32 {
            return Err(KeyError::Invalid(format!(
                "a P-256 private key is 32 bytes, this is {}",
                bytes.len()
            )));
        }
        let secret = p256::SecretKey::from_slice(&bytes)
            .map_err(|_| KeyError::Invalid("not a P-256 private key".into()))?;
        Self::from_secret(secret)
    }

    /// A new random key (from the operating system's random source).
    ///
    /// Errors: [`KeyError::Invalid`] when the random source fails.
    pub fn generate() -> Result<Self, KeyError> {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes)
                .map_err(|e| KeyError::Invalid(format!("no random source: {e}")))?;
            // A scalar of zero or past the group order (odds about 2^-32)
            // is no key: draw again.
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
                return Self::from_secret(secret);
            }
        }
    }

    /// `setting` when given, else the key kept in `data_dir/vapid.key`
    /// (made there, readable by this user only, on first use).
    ///
    /// Errors: the setting or the kept file is no key; the file cannot be
    /// written.
    pub fn load_or_generate(setting: Option<&[u8]>, data_dir: &Path) -> Result<Self, KeyError> {
        let path = data_dir.join("vapid.key");
        if let Some(text) = setting {
            let key = Self::parse(text)?;
            if let Ok(kept) = std::fs::read(&path)
                && Self::parse(&kept).is_ok_and(|kept| kept.public != key.public)
            {
                tracing::warn!(
                    kept = %path.display(),
                    "CHAT_VAPID_PRIVATE_KEY differs from the key kept in CHAT_DATA_DIR: \
                     browsers subscribed with the kept one get no pushes until they subscribe again"
                );
            }
            return Ok(key);
        }
        match std::fs::read(&path) {
            Ok(text) => Self::parse(&text).map_err(|e| {
                KeyError::Invalid(format!(
                    "{}: {e} (remove the file to make a new key; browsers then subscribe again)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                #[cfg(unix)]
                use std::os::unix::fs::OpenOptionsExt;
                let key = Self::generate()?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                options.mode(0o600);
                options
                    .open(&path)?
                    .write_all(key.private_base64().as_bytes())?;
                Ok(key)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn from_secret(secret: p256::SecretKey) -> Result<Self, KeyError> {
        let der = secret
            .to_pkcs8_der()
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let signing = jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes());
        let public = URL_SAFE_NO_PAD.encode(
            p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &secret.public_key(),
                false,
            )
            .as_bytes(),
        );
        Ok(Self {
            secret,
            signing,
            public,
        })
    }

    /// The public key as the browser's `applicationServerKey` takes it:
    /// the uncompressed P-256 point (65 bytes), base64url.
    pub fn public_base64(&self) -> &str {
        &self.public
    }

    /// The private scalar's 32 bytes (a secret: to key digests with).
    pub(crate) fn secret_bytes(&self) -> Vec<u8> {
        self.secret.to_bytes().to_vec()
    }

    /// The private scalar, base64url (what `CHAT_VAPID_PRIVATE_KEY` takes).
    pub fn private_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.secret.to_bytes())
    }

    /// The `Authorization` header of a push to `endpoint` at `now` (s):
    /// `vapid t=<ES256 JWT>, k=<public key>` (RFC 8292 §3), the token's
    /// `aud` the endpoint's origin, valid for 12 hours.
    ///
    /// Errors: the endpoint is no URL with a host, or signing failed.
    pub fn authorization(
        &self,
        endpoint: &reqwest::Url,
        subject: Option<&str>,
        now: u64,
    ) -> Result<String, String> {
        let origin = endpoint.origin();
        if !origin.is_tuple() {
            return Err("the endpoint has no origin".into());
        }
        let aud = origin.ascii_serialization();
        let claims = Claims {
            aud: &aud,
            exp: now + TOKEN_TTL.as_secs(),
            sub: subject,
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        let token = jsonwebtoken::encode(&header, &claims, &self.signing)
            .map_err(|e| format!("cannot sign the VAPID token: {e}"))?;
        Ok(format!("vapid t={token}, k={}", self.public))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_and_is_kept_once() {
        let key = VapidKey::generate().unwrap();
        let again = VapidKey::parse(key.private_base64().as_bytes()).unwrap();
        assert_eq!(key.public_base64(), again.public_base64());
        assert_eq!(
            URL_SAFE_NO_PAD.decode(key.public_base64()).unwrap().len(),
            65
        );

        let dir = tempfile::tempdir().unwrap();
        let made = VapidKey::load_or_generate(None, dir.path()).unwrap();
        let kept = VapidKey::load_or_generate(None, dir.path()).unwrap();
        assert_eq!(made.public_base64(), kept.public_base64());
        let set = VapidKey::load_or_generate(Some(key.private_base64().as_bytes()), dir.path());
        assert_eq!(set.unwrap().public_base64(), key.public_base64());
    }

    #[test]
    fn the_token_names_the_origin_with_its_port_and_verifies_with_the_public_key() {
        let key = VapidKey::generate().unwrap();
        let endpoint = reqwest::Url::parse("http://127.0.0.1:4567/push/abc").unwrap();
        let header = key
            .authorization(&endpoint, Some("mailto:ops@example.com"), 1_000)
            .unwrap();
        let (token, public) = header
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .unwrap();
        assert_eq!(public, key.public_base64());
        let point = URL_SAFE_NO_PAD.decode(public).unwrap();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..]),
        );
        let verifying = jsonwebtoken::DecodingKey::from_ec_components(&x, &y).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.validate_exp = false;
        validation.set_audience(&["http://127.0.0.1:4567"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &verifying, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["exp"], 1_000 + 12 * 3600);
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        assert!(VapidKey::parse(b"not base64!").is_err());
    }
}
