//! The sender: takes due events from the queue, posts them signed, and
//! marks each delivered, to be retried, or dead.

use std::sync::Arc;
use std::time::Duration;

use chat_store::{Presence, Queued, StoreEngine, WebhookQueue};
use futures_util::future::join_all;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::WebhookSettings;
use crate::expand::Expander;

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
    expander: Expander,
    settings: WebhookSettings,
    signer: standardwebhooks::Webhook,
    client: reqwest::Client,
    consumer: String,
    metrics: SenderMetrics,
}

impl Sender {
    /// A sender for the queue of `store` as consumer `consumer` (a name of
    /// this process's own in the queue's group), or `None` when `settings`
    /// name no URL; room messages' jobs are expanded with `store` and
    /// `presence`.
    ///
    /// Errors: the secret or the HTTP client cannot be set up (the
    /// settings' `validate` refuses such secrets first).
    pub fn new(
        store: Arc<dyn StoreEngine>,
        presence: Arc<dyn Presence>,
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
            queue: Arc::clone(&store) as Arc<dyn WebhookQueue>,
            expander: Expander::new(store, presence),
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
    /// leaves the queue unsent; a room message's job is expanded into its
    /// members' events ([`Expander`]).
    async fn attempt(&self, event: Queued) {
        let (outcome, counted) = match prepare(&event) {
            Err(why) => (Err(Failure::Unsendable(why)), true),
            Ok(Prepared::Job(data)) => (self.expand(data).await, false),
            Ok(Prepared::Event { kind, id, body }) => {
                if !self.settings.wants(&kind) {
                    if let Err(e) = self.queue.delivered(&event.id).await {
                        tracing::warn!(event = %event.id, error = %e, "webhooks: cannot drop an unwanted event");
                    }
                    return;
                }
                (self.post(&id, body).await, true)
            }
        };
        let result = self.settle(&event, outcome).await;
        if counted {
            self.metrics.events.with_label_values(&[result]).inc();
        }
    }

    /// Queues the events of a room message's job (`data`).
    async fn expand(&self, data: serde_json::Value) -> Result<(), Failure> {
        if !self.settings.wants("message.offline") {
            return Ok(());
        }
        let events = self.expander.events(data).await.map_err(|why| match why {
            None => Failure::Unsendable("an unreadable room message job".into()),
            Some(why) => Failure::Refused(why),
        })?;
        for event in events {
            self.queue
                .enqueue(&event)
                .await
                .map_err(|e| Failure::Refused(e.to_string()))?;
        }
        Ok(())
    }

    /// What follows from an attempt's `outcome`: `event` leaves the queue,
    /// waits for its next attempt, or goes to the dead letters. Answers
    /// which, as the metric counts it.
    async fn settle(&self, event: &Queued, outcome: Result<(), Failure>) -> &'static str {
        match outcome {
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
        }
    }

    /// Posts `body` signed as event `id`. Errors: why the receiver did not
    /// take it (no 2xx within the timeout; the URL is left out of the
    /// reason, as it may carry credentials), or why it cannot be sent.
    async fn post(&self, id: &str, body: String) -> Result<(), Failure> {
        let timestamp = (chat_store::now_millis() / 1000) as i64;
        let signature = self
            .signer
            .sign(id, timestamp, body.as_bytes())
            .map_err(|e| Failure::Unsendable(e.to_string()))?;
        let url = self.settings.webhook_url.as_deref().unwrap_or_default();
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, id)
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

/// A queued payload, read once.
enum Prepared {
    /// A room message's job: its `data`.
    Job(serde_json::Value),
    /// An event to post.
    Event {
        /// Its `type`.
        kind: String,
        /// Its `webhook-id`: the payload's own `id` when it has one (a room
        /// message's events), else `evt_{queue id}`.
        id: String,
        /// The body sent: the queued `{"type", "data"}` with the
        /// `timestamp` it was queued at (RFC 3339), as Standard Webhooks
        /// recommends.
        body: String,
    },
}

/// Reads `event`'s payload. Errors: it is no JSON object (never sendable).
fn prepare(event: &Queued) -> Result<Prepared, String> {
    let value: serde_json::Value =
        serde_json::from_str(&event.payload).map_err(|e| format!("unreadable event: {e}"))?;
    let serde_json::Value::Object(mut fields) = value else {
        return Err("an event is not a JSON object".into());
    };
    let kind = fields
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if kind == chat_store::webhooks::ROOM_MESSAGE {
        return Ok(Prepared::Job(fields.remove("data").unwrap_or_default()));
    }
    let id = match fields.remove("id") {
        Some(serde_json::Value::String(id)) => id,
        _ => format!("evt_{}", event.id),
    };
    let at = std::time::UNIX_EPOCH + Duration::from_millis(event.queued_at);
    let timestamp = humantime::format_rfc3339_millis(at).to_string();
    fields.insert("timestamp".into(), timestamp.into());
    Ok(Prepared::Event {
        kind,
        id,
        body: serde_json::Value::Object(fields).to_string(),
    })
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
        let Ok(Prepared::Event { kind, id, body }) = prepare(&event) else {
            panic!("an event")
        };
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((kind.as_str(), id.as_str()), ("user.online", "evt_1-0"));
        assert_eq!(body["type"], "user.online");
        assert_eq!(body["data"]["user"], "bob");
        assert_eq!(body["timestamp"], "2026-11-30T00:53:20.123Z");
    }

    #[test]
    fn an_event_with_an_id_of_its_own_is_sent_under_it() {
        let event = Queued {
            id: "7-0".into(),
            payload: r#"{"id":"msg_1_ab","type":"message.offline","data":{}}"#.into(),
            attempt: 1,
            queued_at: 0,
        };
        let Ok(Prepared::Event { id, body, .. }) = prepare(&event) else {
            panic!("an event")
        };
        assert_eq!(id, "msg_1_ab");
        assert!(
            !body.contains("msg_1_ab"),
            "the id travels in its header: {body}"
        );
    }

    #[test]
    fn a_room_message_job_is_expanded_not_sent() {
        let event = Queued {
            id: "8-0".into(),
            payload: r#"{"type":"room.message","data":{"room":"r"}}"#.into(),
            attempt: 1,
            queued_at: 0,
        };
        assert!(matches!(prepare(&event), Ok(Prepared::Job(data)) if data["room"] == "r"));
        let junk = Queued {
            payload: "[1]".into(),
            ..event
        };
        assert!(prepare(&junk).is_err());
    }
}
