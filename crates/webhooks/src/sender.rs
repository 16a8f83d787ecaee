//! The sender: takes due events from the queue, posts them signed, and
//! marks each delivered, to be retried, or dead.

use std::sync::Arc;
use std::time::Duration;

use chat_store::{Queued, WebhookQueue};
use futures_util::future::join_all;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::WebhookSettings;

/// Events taken from the queue at once.
const BATCH: usize = 32;
/// How long a taken event is this sender's before another may take it (a
/// sender that died mid-send): longer than any attempt.
const LEASE_EXTRA: Duration = Duration::from_secs(30);
/// How often an idle sender looks at the queue again.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// The longest wait between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// The sender's counters, registered once per process.
#[derive(Clone)]
pub struct SenderMetrics {
    /// `chat_webhook_events_total{result}`: `delivered`, `failed` (an
    /// attempt that will be retried), `dead` (given up on).
    events: IntCounterVec,
}

impl SenderMetrics {
    /// Registers the counters in `registry`.
    ///
    /// Errors: a counter of that name is registered already.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let events = IntCounterVec::new(
            Opts::new(
                "chat_webhook_events_total",
                "webhook attempts by result: delivered, failed (retried later), dead (given up on)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(events.clone()))?;
        Ok(Self { events })
    }
}

/// Posts queued events to the receiver; one per gateway process.
pub struct Sender {
    queue: Arc<dyn WebhookQueue>,
    settings: WebhookSettings,
    signer: standardwebhooks::Webhook,
    client: reqwest::Client,
    consumer: String,
    metrics: SenderMetrics,
}

impl Sender {
    /// A sender for `queue` as consumer `consumer` (a name of this
    /// process's own in the queue's group), or `None` when `settings` name
    /// no URL.
    ///
    /// Errors: the secret or the HTTP client cannot be set up (the
    /// settings' `validate` refuses such secrets first).
    pub fn new(
        queue: Arc<dyn WebhookQueue>,
        settings: &WebhookSettings,
        consumer: &str,
        metrics: SenderMetrics,
    ) -> anyhow::Result<Option<Self>> {
        if settings.webhook_url.is_none() {
            return Ok(None);
        }
        let secret = settings
            .webhook_secret
            .as_ref()
            .map(|s| String::from_utf8_lossy(s.expose()).into_owned())
            .unwrap_or_default();
        let signer = standardwebhooks::Webhook::new(&secret)
            .map_err(|e| anyhow::anyhow!("CHAT_WEBHOOK_SECRET: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(settings.webhook_timeout)
            .build()?;
        Ok(Some(Self {
            queue,
            settings: settings.clone(),
            signer,
            client,
            consumer: consumer.to_owned(),
            metrics,
        }))
    }

    /// Runs until `stop` is cancelled: takes due events and sends them.
    pub async fn run(self, stop: CancellationToken) {
        let lease = (self.settings.webhook_timeout + LEASE_EXTRA).as_millis() as u64;
        loop {
            let due = self
                .queue
                .due(&self.consumer, BATCH, chat_store::now_millis(), lease)
                .await;
            let full = match due {
                Ok(events) => {
                    let full = events.len() == BATCH;
                    join_all(events.into_iter().map(|e| self.attempt(e))).await;
                    full
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: cannot read the queue");
                    false
                }
            };
            if full && !stop.is_cancelled() {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    /// One attempt at `event`, and what follows from its answer. An event
    /// of a type not asked for (`user.offline` queued with `user.online`)
    /// leaves the queue unsent.
    async fn attempt(&self, event: Queued) {
        if !self.settings.wants(&kind(&event.payload)) {
            if let Err(e) = self.queue.delivered(&event.id).await {
                tracing::warn!(event = %event.id, error = %e, "webhooks: cannot drop an unwanted event");
            }
            return;
        }
        let outcome = self.post(&event).await;
        let result = match outcome {
            Ok(()) => match self.queue.delivered(&event.id).await {
                Ok(()) => "delivered",
                Err(e) => {
                    // Sent, but still queued: it will be sent again (at
                    // least once; receivers drop it by its id).
                    tracing::warn!(event = %event.id, error = %e, "webhooks: delivered, not yet dropped");
                    "delivered"
                }
            },
            Err(Failure::Unsendable(why)) => {
                // Never sendable: no point trying all day.
                tracing::warn!(event = %event.id, why, "webhooks: an event that cannot be sent");
                if let Err(e) = self.queue.dead(&event.id).await {
                    tracing::warn!(event = %event.id, error = %e, "webhooks: cannot move an event to the dead letters");
                }
                "dead"
            }
            Err(Failure::Refused(why)) => {
                let now = chat_store::now_millis();
                let give_up = event.queued_at + self.settings.webhook_give_up.as_millis() as u64;
                if now >= give_up {
                    tracing::warn!(event = %event.id, attempts = event.attempt, why, "webhooks: giving up on an event");
                    if let Err(e) = self.queue.dead(&event.id).await {
                        tracing::warn!(event = %event.id, error = %e, "webhooks: cannot move an event to the dead letters");
                    }
                    "dead"
                } else {
                    let wait = backoff(self.settings.webhook_retry_min, event.attempt);
                    tracing::warn!(event = %event.id, attempt = event.attempt, why, ?wait, "webhooks: the receiver did not take an event; trying again");
                    if let Err(e) = self
                        .queue
                        .retry(&event.id, now + wait.as_millis() as u64)
                        .await
                    {
                        // Its lease still runs out: it is tried again then.
                        tracing::warn!(event = %event.id, error = %e, "webhooks: cannot schedule a retry");
                    }
                    "failed"
                }
            }
        };
        self.metrics.events.with_label_values(&[result]).inc();
    }

    /// Posts `event`, signed. Errors: why the receiver did not take it
    /// (no 2xx within the timeout; the URL is left out of the reason, as it
    /// may carry credentials), or why it cannot be sent at all.
    async fn post(&self, event: &Queued) -> Result<(), Failure> {
        let body = body(event).map_err(Failure::Unsendable)?;
        let id = format!("evt_{}", event.id);
        let timestamp = (chat_store::now_millis() / 1000) as i64;
        let signature = self
            .signer
            .sign(&id, timestamp, body.as_bytes())
            .map_err(|e| Failure::Unsendable(e.to_string()))?;
        let url = self.settings.webhook_url.as_deref().unwrap_or_default();
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, &id)
            .header(
                standardwebhooks::HEADER_WEBHOOK_TIMESTAMP,
                timestamp.to_string(),
            )
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Refused(e.without_url().to_string()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            let why = format!("the receiver answered {}", response.status());
            Err(Failure::Refused(why))
        }
    }
}

/// Why an attempt failed.
enum Failure {
    /// The receiver did not take it: tried again later.
    Refused(String),
    /// It cannot be sent at all (unreadable): dead at once.
    Unsendable(String),
}

/// The `type` of a queued event (empty when it has none).
fn kind(payload: &str) -> String {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The body sent: the queued `{"type", "data"}` with the `timestamp` it
/// was queued at (RFC 3339), as Standard Webhooks recommends.
fn body(event: &Queued) -> Result<String, String> {
    let mut value: serde_json::Value =
        serde_json::from_str(&event.payload).map_err(|e| format!("unreadable event: {e}"))?;
    let at = std::time::UNIX_EPOCH + Duration::from_millis(event.queued_at);
    let timestamp = humantime::format_rfc3339_millis(at).to_string();
    let serde_json::Value::Object(fields) = &mut value else {
        return Err("an event is not a JSON object".into());
    };
    fields.insert("timestamp".into(), timestamp.into());
    Ok(value.to_string())
}

/// The wait after failed attempt `attempt` (1 for the first): `min`
/// doubling each time up to an hour, ±25 % so that senders spread out.
fn backoff(min: Duration, attempt: u32) -> Duration {
    let doubled = min.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    doubled.min(RETRY_MAX).mul_f64(0.75 + fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_first_up_to_an_hour_with_jitter() {
        let min = Duration::from_secs(1);
        for (attempt, base) in [(1, 1), (2, 2), (3, 4), (10, 512), (13, 3600), (40, 3600)] {
            let wait = backoff(min, attempt);
            let base = Duration::from_secs(base);
            assert!(
                wait >= base.mul_f64(0.75) && wait <= base.mul_f64(1.25),
                "{attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn the_body_is_the_event_with_its_time() {
        let event = Queued {
            id: "1-0".into(),
            payload: r#"{"type":"user.online","data":{"user":"bob"}}"#.into(),
            attempt: 1,
            queued_at: 1_796_000_000_123,
        };
        let body: serde_json::Value = serde_json::from_str(&body(&event).unwrap()).unwrap();
        assert_eq!(body["type"], "user.online");
        assert_eq!(body["data"]["user"], "bob");
        assert_eq!(body["timestamp"], "2026-11-30T00:53:20.123Z");
    }
}
