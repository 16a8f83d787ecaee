//! Signed, expiring file links: `/media/{id}?exp={unix seconds}&sig={hex}`,
//! where `sig` = HMAC-SHA256(secret, "{id}.{exp}"). They work in `<img src>`
//! and `<video src>`, which cannot send headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks links.
pub struct Signer {
    secret: Vec<u8>,
    ttl: Duration,
}

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// No `exp` or `sig`, or not in the expected form.
    Missing,
    /// The signature does not match (tampered, or for another file).
    BadSignature,
    /// The link's time is over.
    Expired,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Signer {
    /// A signer whose links last `ttl`.
    pub fn new(secret: Vec<u8>, ttl: Duration) -> Self {
        Self { secret, ttl }
    }

    fn mac(&self, id: &str, exp: u64) -> HmacSha256 {
        // unwrap: HMAC takes keys of any length.
        #[allow(clippy::unwrap_used)]
        let mut mac = HmacSha256::new_from_slice(&self.secret).unwrap();
        mac.update(format!("{id}.{exp}").as_bytes());
        mac
    }

    /// A fresh link to `path`: a file id, or `{id}/thumbnail`.
    pub fn url(&self, id: &str) -> String {
        let exp = now() + self.ttl.as_secs();
        let sig = hex::encode(self.mac(id, exp).finalize().into_bytes());
        format!("/media/{id}?exp={exp}&sig={sig}")
    }

    /// Checks a link's `exp` and `sig` for `id` (a path as given to
    /// [`Signer::url`]), in constant time.
    pub fn verify(&self, id: &str, exp: Option<&str>, sig: Option<&str>) -> Result<(), LinkError> {
        let exp: u64 = exp.and_then(|e| e.parse().ok()).ok_or(LinkError::Missing)?;
        let sig = sig
            .and_then(|s| hex::decode(s).ok())
            .ok_or(LinkError::Missing)?;
        self.mac(id, exp)
            .verify_slice(&sig)
            .map_err(|_| LinkError::BadSignature)?;
        if exp < now() {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, String) {
        let query = url.split_once('?').unwrap().1;
        let (exp, sig) = query.split_once('&').unwrap();
        (
            exp.trim_start_matches("exp=").to_owned(),
            sig.trim_start_matches("sig=").to_owned(),
        )
    }

    #[test]
    fn a_link_opens_its_file_only_until_it_expires() {
        let signer = Signer::new(b"k".repeat(32), Duration::from_secs(60));
        let (exp, sig) = parts(&signer.url("abc"));
        assert_eq!(signer.verify("abc", Some(&exp), Some(&sig)), Ok(()));
        assert_eq!(
            signer.verify("other", Some(&exp), Some(&sig)),
            Err(LinkError::BadSignature)
        );
        let later = (exp.parse::<u64>().unwrap() + 1).to_string();
        assert_eq!(
            signer.verify("abc", Some(&later), Some(&sig)),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            signer.verify("abc", None, Some(&sig)),
            Err(LinkError::Missing)
        );
        assert_eq!(
            signer.verify("abc", Some(&exp), Some("zz")),
            Err(LinkError::Missing)
        );

        let expired = Signer::new(b"k".repeat(32), Duration::ZERO);
        let (exp, sig) = parts(&expired.url("abc"));
        let past = (exp.parse::<u64>().unwrap() - 10).to_string();
        let sig_past = hex::encode(
            expired
                .mac("abc", past.parse().unwrap())
                .finalize()
                .into_bytes(),
        );
        assert_eq!(
            expired.verify("abc", Some(&past), Some(&sig_past)),
            Err(LinkError::Expired)
        );
        assert_eq!(
            expired.verify("abc", Some(&exp), Some(&sig)),
            Ok(()),
            "valid through its second"
        );
    }
}
