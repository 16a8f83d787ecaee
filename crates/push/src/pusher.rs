//! Sending one push: the notification encrypted for the subscription
//! (RFC 8291, `aes128gcm` content coding of RFC 8188, by `web-push-native`),
//! posted to its push service with VAPID authorization (RFC 8292) and the
//! `TTL`, `Urgency` and `Topic` headers of RFC 8030.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::services::PushServices;
use crate::vapid::VapidKey;

/// How long a push service may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A push waiting in the queue: JSON `{"type": "push", "data": PushJob}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushJob {
    /// Whose subscription it is.
    pub user: String,
    /// The subscription's push service URL.
    pub endpoint: String,
    /// The browser's public key (base64url).
    pub p256dh: String,
    /// The browser's authentication secret (base64url).
    pub auth: String,
    /// The notification ([`crate::notification`]).
    pub notification: serde_json::Value,
    /// The conversation's key: pushes of one conversation waiting at the
    /// push service for a device that is off replace each other (`Topic`).
    pub topic: String,
}

/// What the push service made of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Taken (2xx).
    Sent,
    /// The subscription is no more (404, 410): forget it.
    Gone,
    /// Not now (no answer, 408, 429, 5xx): try again later.
    Retry(String),
    /// Never (a bad subscription, a refused key, a payload too large).
    Rejected(String),
}

/// Sends pushes, signed with the application server's key.
#[derive(Clone)]
pub struct Pusher {
    key: VapidKey,
    subject: Option<String>,
    ttl: Duration,
    services: PushServices,
    client: reqwest::Client,
}

impl Pusher {
    /// A pusher signing with `key` as `subject` (a `mailto:` or `https:`
    /// address), asking push services to keep notifications for `ttl`,
    /// posting only to `services`.
    ///
    /// Errors: the HTTP client cannot be built.
    pub fn new(
        key: VapidKey,
        subject: Option<String>,
        ttl: Duration,
        services: PushServices,
    ) -> Result<Self, String> {
        // No redirects: the push service is checked against the allowed
        // list (`services`), a redirect's target would not be.
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self {
            key,
            subject,
            ttl,
            services,
            client,
        })
    }

    /// The public half of the key, as the page hands it to the browser.
    pub fn public_key(&self) -> &str {
        self.key.public_base64()
    }

    /// Encrypts `job`'s notification for its subscription and posts it.
    pub async fn send(&self, job: &PushJob) -> Delivery {
        let request = match self.request(job) {
            Ok(request) => request,
            Err(why) => return Delivery::Rejected(why),
        };
        match request.send().await {
            Err(e) => Delivery::Retry(e.without_url().to_string()),
            Ok(response) => {
                let status = response.status();
                match status.as_u16() {
                    200..=299 => Delivery::Sent,
                    404 | 410 => Delivery::Gone,
                    408 | 429 | 500..=599 => {
                        Delivery::Retry(format!("the push service answered {status}"))
                    }
                    _ => Delivery::Rejected(format!("the push service answered {status}")),
                }
            }
        }
    }

    /// The request carrying `job`. Errors: what makes it unsendable.
    fn request(&self, job: &PushJob) -> Result<reqwest::RequestBuilder, String> {
        // Checked when subscribing too; again here, as the list may have
        // changed since.
        self.services.check(&job.endpoint)?;
        let endpoint = reqwest::Url::parse(&job.endpoint)
            .map_err(|e| format!("the endpoint is no URL: {e}"))?;
        let public = crate::base64url(&job.p256dh)
            .and_then(|bytes| web_push_native::p256::PublicKey::from_sec1_bytes(&bytes).ok())
            .ok_or("the subscription's p256dh is no P-256 public key")?;
        let auth = crate::base64url(&job.auth)
            .filter(|bytes| bytes.len() == 16)
            .ok_or("the subscription's auth is not 16 bytes of base64url")?;
        let body = serde_json::to_vec(&job.notification).map_err(|e| e.to_string())?;
        let payload = web_push_native::encrypt(
            body,
            &public,
            &web_push_native::Auth::clone_from_slice(&auth),
        )
        .map_err(|e| format!("cannot encrypt: {e}"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let authorization = self
            .key
            .authorization(&endpoint, self.subject.as_deref(), now)?;
        Ok(self
            .client
            .post(endpoint)
            .header("authorization", authorization)
            .header("ttl", self.ttl.as_secs().to_string())
            .header("urgency", "normal")
            .header("topic", self.topic(&job.user, &job.topic))
            .header("content-encoding", "aes128gcm")
            .header("content-type", "application/octet-stream")
            .body(payload))
    }
}

impl Pusher {
    /// The `Topic` header of `user`'s pushes for `conversation`: RFC 8030
    /// allows 32 base64url characters, so a digest (any name fits), keyed
    /// with the server's VAPID key so that a push service cannot tell from
    /// it who talks with whom (a plain hash of `user:bob` is guessed).
    fn topic(&self, user: &str, conversation: &str) -> String {
        use hmac::Mac as _;
        // unwrap: HMAC takes a key of any length.
        #[allow(clippy::unwrap_used)]
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.key.secret_bytes()).unwrap();
        mac.update(b"chat push topic\0");
        mac.update(user.as_bytes());
        mac.update(b"\0");
        mac.update(conversation.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..24])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_fit_the_header_whatever_the_name_and_say_nothing_without_the_key() {
        let pusher =
            |key| Pusher::new(key, None, Duration::from_secs(60), PushServices::parse("")).unwrap();
        let (one, other) = (
            pusher(VapidKey::generate().unwrap()),
            pusher(VapidKey::generate().unwrap()),
        );
        for name in [
            "user:bob",
            "room:运维",
            &format!("room:{}", "x".repeat(255)),
        ] {
            let topic = one.topic("alice", name);
            assert_eq!(topic.len(), 32, "{topic}");
            assert!(
                topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(
                topic,
                one.topic("alice", name),
                "the same for the same conversation"
            );
            assert_ne!(topic, other.topic("alice", name), "keyed");
        }
        assert_ne!(
            one.topic("alice", "user:bob"),
            one.topic("carol", "user:bob")
        );
    }
}
