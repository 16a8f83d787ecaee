//! The sender: takes due items from the queue and sends them: webhook
//! events posted signed to the application's receiver, pushes posted to
//! push services, jobs of messages for someone with no connection turned
//! into both (`expand.rs`). Each item is then marked delivered, to be
//! retried, or dead.

use std::sync::Arc;
use std::time::Duration;

use chat_push::{Delivery, PushJob, Pusher};
use chat_store::{Presence, PushStore, Queued, StoreEngine, WebhookQueue};
use futures_util::future::join_all;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::WebhookSettings;
use crate::expand::{ExpandError, Expander};

/// Items taken from the queue at once.
const BATCH: usize = 32;
/// How long a taken item is this sender's before another may take it (a
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
    /// `chat_push_total{result}`: `sent`, `failed` (an attempt that will be
    /// retried), `expired` (the push service forgot the subscription: so
    /// do we), `unsubscribed` (deleted since it was queued: not sent), `dead`
    /// (given up on, or refused for good).
    pushes: IntCounterVec,
    /// `chat_notify_jobs_total{result}`: jobs of messages for someone with
    /// no connection: `expanded` (into events and pushes), `failed` (tried
    /// again later), `dead` (given up on: their events and pushes are lost).
    jobs: IntCounterVec,
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
        let pushes = IntCounterVec::new(
            Opts::new(
                "chat_push_total",
                "Web Push attempts by result: sent, failed (retried later), expired (the push service forgot the subscription), unsubscribed (deleted since queued, not sent), dead (given up on)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(pushes.clone()))?;
        let jobs = IntCounterVec::new(
            Opts::new(
                "chat_notify_jobs_total",
                "jobs of messages for someone offline: expanded (into events and pushes), failed (retried later), dead (given up on)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(jobs.clone()))?;
        Ok(Self {
            events,
            pushes,
            jobs,
        })
    }
}

/// Posts webhook events to the receiver.
struct Poster {
    signer: standardwebhooks::Webhook,
    client: reqwest::Client,
    url: String,
}

/// Sends what the queue holds; one per gateway process.
pub struct Sender {
    queue: Arc<dyn WebhookQueue>,
    subscriptions: Arc<dyn PushStore>,
    expander: Expander,
    settings: WebhookSettings,
    poster: Option<Poster>,
    pusher: Option<Pusher>,
    consumer: String,
    metrics: SenderMetrics,
}

impl Sender {
    /// A sender for the queue of `store` as consumer `consumer` (a name of
    /// this process's own in the queue's group): webhooks when `settings`
    /// name a URL, pushes with `pusher`; `None` when neither. Jobs are
    /// expanded with `store` and `presence`.
    ///
    /// Errors: the secret or the HTTP client cannot be set up (the
    /// settings' `validate` refuses such secrets first).
    pub fn new(
        store: Arc<dyn StoreEngine>,
        presence: Arc<dyn Presence>,
        settings: &WebhookSettings,
        pusher: Option<Pusher>,
        consumer: &str,
        metrics: SenderMetrics,
    ) -> anyhow::Result<Option<Self>> {
        let poster = match &settings.webhook_url {
            None => None,
            Some(url) => {
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
                Some(Poster {
                    signer,
                    client,
                    url: url.clone(),
                })
            }
        };
        if poster.is_none() && pusher.is_none() {
            return Ok(None);
        }
        let expander = Expander::new(
            Arc::clone(&store),
            presence,
            settings.wants("message.offline"),
            pusher.is_some(),
        );
        Ok(Some(Self {
            queue: Arc::clone(&store) as Arc<dyn WebhookQueue>,
            subscriptions: store as Arc<dyn PushStore>,
            expander,
            settings: settings.clone(),
            poster,
            pusher,
            consumer: consumer.to_owned(),
            metrics,
        }))
    }

    /// Runs until `stop` is cancelled: takes due items and sends them.
    pub async fn run(self, stop: CancellationToken) {
        let longest = self
            .settings
            .webhook_timeout
            .max(chat_push::pusher::TIMEOUT);
        let lease = (longest + LEASE_EXTRA).as_millis() as u64;
        loop {
            let due = self
                .queue
                .due(&self.consumer, BATCH, chat_store::now_millis(), lease)
                .await;
            let full = match due {
                Ok(items) => {
                    let full = items.len() == BATCH;
                    join_all(items.into_iter().map(|e| self.attempt(e))).await;
                    full
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: cannot read the queue");
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

    /// One attempt at `item`, and what follows from its answer. An event
    /// of a type not asked for (`user.offline` queued with `user.online`)
    /// leaves the queue unsent; a job is expanded ([`Expander`]).
    async fn attempt(&self, item: Queued) {
        let outcome = match prepare(&item) {
            Err(why) => Outcome::Event(Err(Failure::Unsendable(why))),
            Ok(Prepared::Direct(data)) => {
                let made = self.expander.direct(data, item.queued_at).await;
                self.expand(&item, made).await
            }
            Ok(Prepared::Room(data)) => {
                let made = self.expander.room(data, item.queued_at).await;
                self.expand(&item, made).await
            }
            Ok(Prepared::Push(data)) => self.push(data).await,
            Ok(Prepared::Event { kind, id, body }) => match &self.poster {
                Some(poster) if self.settings.wants(&kind) => {
                    Outcome::Event(self.post(poster, &id, body).await)
                }
                _ => Outcome::Job(Ok(())),
            },
        };
        match outcome {
            Outcome::Expanded => self.metrics.jobs.with_label_values(&["expanded"]).inc(),
            Outcome::Job(result) => {
                let result = self.settle(&item, result).await;
                if result != "delivered" {
                    self.metrics.jobs.with_label_values(&[result]).inc();
                }
            }
            Outcome::Event(result) => {
                let result = self.settle(&item, result).await;
                self.metrics.events.with_label_values(&[result]).inc();
            }
            Outcome::Push { result, taken } => {
                let result = match self.settle(&item, result).await {
                    "delivered" => taken,
                    other => other,
                };
                self.metrics.pushes.with_label_values(&[result]).inc();
            }
        }
    }

    /// Replaces job `item` by what it made, in one step (so what it made
    /// is queued once, however often the job is taken).
    async fn expand(&self, item: &Queued, made: Result<Vec<String>, ExpandError>) -> Outcome {
        let items = match made {
            Ok(items) => items,
            Err(ExpandError::Unreadable) => {
                return Outcome::Job(Err(Failure::Unsendable("an unreadable job".into())));
            }
            Err(ExpandError::Unavailable(why)) => return Outcome::Job(Err(Failure::Refused(why))),
        };
        match self.queue.replace(&item.id, items).await {
            Ok(true) => Outcome::Expanded,
            Ok(false) => {
                tracing::debug!(job = %item.id, "outbox: a job another sender expanded already");
                Outcome::Expanded
            }
            Err(e) => Outcome::Job(Err(Failure::Refused(e.to_string()))),
        }
    }

    /// Sends one push; a subscription the push service no longer knows is
    /// forgotten.
    async fn push(&self, data: serde_json::Value) -> Outcome {
        let Some(pusher) = &self.pusher else {
            // Queued by a process with Web Push on; this one has it off.
            tracing::warn!("outbox: a push, and Web Push is off here (CHAT_VAPID_PRIVATE_KEY)");
            let result = Err(Failure::Refused("Web Push is off on this sender".into()));
            return Outcome::Push {
                result,
                taken: "sent",
            };
        };
        let Ok(job) = serde_json::from_value::<PushJob>(data) else {
            let result = Err(Failure::Unsendable("an unreadable push".into()));
            return Outcome::Push {
                result,
                taken: "sent",
            };
        };
        // Unsubscribed (or taken by another user) since it was queued:
        // nothing more goes to that browser.
        match self.subscriptions.subscriptions(&job.user).await {
            Ok(kept) if !kept.iter().any(|s| s.endpoint == job.endpoint) => {
                let result = Ok(());
                return Outcome::Push {
                    result,
                    taken: "unsubscribed",
                };
            }
            Ok(_) => {}
            Err(e) => {
                let result = Err(Failure::Refused(e.to_string()));
                return Outcome::Push {
                    result,
                    taken: "sent",
                };
            }
        }
        let (result, taken) = match pusher.send(&job).await {
            Delivery::Sent => (Ok(()), "sent"),
            Delivery::Gone => {
                if let Err(e) = self
                    .subscriptions
                    .unsubscribe(&job.user, &job.endpoint)
                    .await
                {
                    tracing::warn!(user = job.user, error = %e, "push: an expired subscription stays");
                } else {
                    tracing::info!(
                        user = job.user,
                        "push: the push service forgot a subscription; so do we"
                    );
                }
                (Ok(()), "expired")
            }
            Delivery::Retry(why) => (Err(Failure::Refused(why)), "sent"),
            Delivery::Rejected(why) => (Err(Failure::Unsendable(why)), "sent"),
        };
        Outcome::Push { result, taken }
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
                    tracing::warn!(event = %event.id, error = %e, "outbox: delivered, not yet dropped");
                    "delivered"
                }
            },
            Err(Failure::Unsendable(why)) => {
                // Never sendable: no point trying all day.
                tracing::warn!(event = %event.id, why, "outbox: an item that cannot be sent");
                if let Err(e) = self.queue.dead(&event.id).await {
                    tracing::warn!(event = %event.id, error = %e, "outbox: cannot move an item to the dead letters");
                }
                "dead"
            }
            Err(Failure::Refused(why)) => {
                let now = chat_store::now_millis();
                let give_up = event.queued_at + self.settings.webhook_give_up.as_millis() as u64;
                if now >= give_up {
                    tracing::warn!(event = %event.id, attempts = event.attempt, why, "outbox: giving up on an item");
                    if let Err(e) = self.queue.dead(&event.id).await {
                        tracing::warn!(event = %event.id, error = %e, "outbox: cannot move an item to the dead letters");
                    }
                    "dead"
                } else {
                    let wait = backoff(self.settings.webhook_retry_min, event.attempt);
                    tracing::warn!(event = %event.id, attempt = event.attempt, why, ?wait, "outbox: not taken (webhook receiver or push service); trying again");
                    if let Err(e) = self
                        .queue
                        .retry(&event.id, now + wait.as_millis() as u64)
                        .await
                    {
                        // Its lease still runs out: it is tried again then.
                        tracing::warn!(event = %event.id, error = %e, "outbox: cannot schedule a retry");
                    }
                    "failed"
                }
            }
        }
    }

    /// Posts `body` signed as event `id`. Errors: why the receiver did not
    /// take it (no 2xx within the timeout; the URL is left out of the
    /// reason, as it may carry credentials), or why it cannot be sent.
    async fn post(&self, poster: &Poster, id: &str, body: String) -> Result<(), Failure> {
        let timestamp = (chat_store::now_millis() / 1000) as i64;
        let signature = poster
            .signer
            .sign(id, timestamp, body.as_bytes())
            .map_err(|e| Failure::Unsendable(e.to_string()))?;
        let response = poster
            .client
            .post(&poster.url)
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

/// What an attempt came to, by what was attempted.
enum Outcome {
    /// A job replaced by what it made (or found done by another sender).
    Expanded,
    /// A job that could not be expanded, or an event dropped unsent.
    Job(Result<(), Failure>),
    /// A webhook event posted.
    Event(Result<(), Failure>),
    /// A push attempted; `taken`: what its leaving the queue counts as
    /// (`sent`, `expired`: the push service forgot the subscription,
    /// `unsubscribed`: the user deleted it since it was queued).
    Push {
        result: Result<(), Failure>,
        taken: &'static str,
    },
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
    /// A direct message's job: its `data`.
    Direct(serde_json::Value),
    /// A room message's job: its `data`.
    Room(serde_json::Value),
    /// A push: its `data` ([`PushJob`]).
    Push(serde_json::Value),
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
    let data = || fields.get("data").cloned().unwrap_or_default();
    match kind.as_str() {
        chat_store::webhooks::DIRECT_MESSAGE => return Ok(Prepared::Direct(data())),
        chat_store::webhooks::ROOM_MESSAGE => return Ok(Prepared::Room(data())),
        crate::PUSH => return Ok(Prepared::Push(data())),
        _ => {}
    }
    let id = match fields.remove("id") {
        Some(serde_json::Value::String(id)) => id,
        _ => format!("evt_{}", event.id),
    };
    // An event made from a job is timed when the job was queued.
    let queued_at = fields
        .remove("at")
        .and_then(|at| at.as_u64())
        .unwrap_or(event.queued_at);
    let at = std::time::UNIX_EPOCH + Duration::from_millis(queued_at);
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
    fn an_event_made_from_a_job_is_timed_when_the_job_was_queued() {
        let event = Queued {
            id: "9-0".into(),
            payload: r#"{"id":"msg_1_ab","at":1796000000123,"type":"message.offline","data":{}}"#
                .into(),
            attempt: 1,
            queued_at: 1_796_000_999_000,
        };
        let Ok(Prepared::Event { body, .. }) = prepare(&event) else {
            panic!("an event")
        };
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["timestamp"], "2026-11-30T00:53:20.123Z");
        assert!(body.get("at").is_none(), "{body}");
    }

    #[test]
    fn a_room_message_job_is_expanded_not_sent() {
        let event = Queued {
            id: "8-0".into(),
            payload: r#"{"type":"room.message","data":{"room":"r"}}"#.into(),
            attempt: 1,
            queued_at: 0,
        };
        assert!(matches!(prepare(&event), Ok(Prepared::Room(data)) if data["room"] == "r"));
        let junk = Queued {
            payload: "[1]".into(),
            ..event
        };
        assert!(prepare(&junk).is_err());
    }
}
