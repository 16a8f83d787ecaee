//! [`WebhookQueue`] on Redis: the stream `webhooks` (field `e`: the event)
//! with the consumer group `senders` shared by every gateway, the sorted
//! set `webhooks:retry_at` (event ids scored by the ms of their next
//! attempt) and the stream
//! `webhooks:dead` of events given up on (its last 10 000).

use futures_util::future::BoxFuture;

use super::messages::RedisStore;
use super::script::{Call, Loaded, Lua, lua};
use super::with_conn;
use crate::StoreError;
use crate::webhooks::{Queued, WebhookQueue};

/// The consumer group every gateway reads the queue in.
const GROUP: &str = "senders";

/// Dead letters kept (approximately; older ones are dropped).
const DEAD_KEPT: u64 = 10_000;

/// `webhook_due.lua`.
pub(crate) struct Due {
    stream: String,
    retry_at: String,
    consumer: String,
    max: usize,
    now: u64,
    lease_ms: u64,
}

impl Lua for Due {
    const NAME: &'static str = "webhook_due";
    const SOURCE: &'static str = lua!("webhook_due");

    fn push(&self, call: &mut Call) {
        call.key("stream", &self.stream)
            .key("retry_at", &self.retry_at)
            .arg("group", GROUP)
            .arg("consumer", &self.consumer)
            .arg("max", self.max)
            .arg("now", self.now)
            .arg("lease_ms", self.lease_ms);
    }
}

/// `webhook_replace.lua`.
pub(crate) struct Replace {
    stream: String,
    retry_at: String,
    id: String,
    /// JSON array of the items.
    items: String,
}

impl Lua for Replace {
    const NAME: &'static str = "webhook_replace";
    const SOURCE: &'static str = lua!("webhook_replace");

    fn push(&self, call: &mut Call) {
        call.key("stream", &self.stream)
            .key("retry_at", &self.retry_at)
            .arg("group", GROUP)
            .arg("id", &self.id)
            .arg("items", &self.items);
    }
}

/// The ms a stream id (`{ms}-{n}`) was made at.
fn stream_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// Adds to `pipe` what takes event `id` out of the queue: acknowledged in
/// the group, deleted from the stream, its retry time forgotten.
fn take_out(pipe: &mut redis::Pipeline, stream: &str, retry_at: &str, id: &str) {
    pipe.cmd("XACK").arg(stream).arg(GROUP).arg(id);
    pipe.cmd("XDEL").arg(stream).arg(id);
    pipe.cmd("ZREM").arg(retry_at).arg(id);
}

impl RedisStore {
    fn queue_keys(&self) -> (String, String, String) {
        let keys = &self.inner().keys;
        (
            keys.queue("webhooks"),
            keys.queue("webhooks:retry_at"),
            keys.queue("webhooks:dead"),
        )
    }
}

impl WebhookQueue for RedisStore {
    fn enqueue(&self, payload: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let (stream, _, _) = self.queue_keys();
        let payload = payload.to_owned();
        let inner = self.inner();
        with_conn(inner, &inner.redis, "XADD", move |_, mut conn| async move {
            redis::cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("e")
                .arg(&payload)
                .query_async::<()>(&mut conn)
                .await
        })
    }

    fn due(
        &self,
        consumer: &str,
        max: usize,
        now: u64,
        lease_ms: u64,
    ) -> BoxFuture<'static, Result<Vec<Queued>, StoreError>> {
        let (stream, retry_at, _) = self.queue_keys();
        let call = Due {
            stream,
            retry_at,
            consumer: consumer.to_owned(),
            max: max.max(1),
            now,
            lease_ms,
        };
        let inner = self.inner();
        with_conn(
            inner,
            &inner.redis,
            "webhook due",
            move |_, mut conn| async move {
                let flat: Vec<redis::Value> = Loaded::<Due>::new().invoke(&call, &mut conn).await?;
                let text = |v: &redis::Value| {
                    redis::from_redis_value::<String>(v.clone()).unwrap_or_default()
                };
                Ok(flat
                    .chunks_exact(3)
                    .map(|e| {
                        let id = text(&e[0]);
                        Queued {
                            queued_at: stream_ms(&id),
                            payload: text(&e[1]),
                            attempt: redis::from_redis_value(e[2].clone()).unwrap_or(1),
                            id,
                        }
                    })
                    .collect())
            },
        )
    }

    fn delivered(&self, id: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let (stream, retry_at, _) = self.queue_keys();
        let id = id.to_owned();
        let inner = self.inner();
        with_conn(inner, &inner.redis, "XACK", move |_, mut conn| async move {
            let mut pipe = redis::pipe();
            take_out(pipe.atomic(), &stream, &retry_at, &id);
            pipe.query_async::<()>(&mut conn).await
        })
    }

    fn replace(
        &self,
        id: &str,
        items: Vec<String>,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let (stream, retry_at, _) = self.queue_keys();
        let call = Replace {
            stream,
            retry_at,
            id: id.to_owned(),
            // unwrap: a list of strings always serialises.
            #[allow(clippy::unwrap_used)]
            items: serde_json::to_string(&items).unwrap(),
        };
        let inner = self.inner();
        with_conn(
            inner,
            &inner.redis,
            "webhook replace",
            move |_, mut conn| async move {
                let replaced: i64 = Loaded::<Replace>::new().invoke(&call, &mut conn).await?;
                Ok(replaced == 1)
            },
        )
    }

    fn retry(&self, id: &str, at: u64) -> BoxFuture<'static, Result<(), StoreError>> {
        let (_, retry_at, _) = self.queue_keys();
        let id = id.to_owned();
        let inner = self.inner();
        with_conn(inner, &inner.redis, "ZADD", move |_, mut conn| async move {
            // XX: only an event still queued (a slow sender's retry must
            // not bring back one another sender delivered meanwhile).
            redis::cmd("ZADD")
                .arg(&retry_at)
                .arg("XX")
                .arg(at)
                .arg(&id)
                .query_async::<()>(&mut conn)
                .await
        })
    }

    fn queue_room_events(&self) {
        let on = &self.inner().room_events;
        on.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn queue_offline_events(&self) {
        let on = &self.inner().offline_events;
        on.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn dead(&self, id: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let (stream, retry_at, dead) = self.queue_keys();
        let id = id.to_owned();
        let inner = self.inner();
        with_conn(
            inner,
            &inner.redis,
            "dead letter",
            move |_, mut conn| async move {
                let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                    .arg(&stream)
                    .arg(&id)
                    .arg(&id)
                    .query_async(&mut conn)
                    .await?;
                let payload = entries
                    .first()
                    .and_then(|(_, fields)| fields.iter().find(|(k, _)| k == "e"))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let mut pipe = redis::pipe();
                pipe.atomic();
                // Gone already (delivered by another sender): nothing to keep.
                if !payload.is_empty() {
                    pipe.cmd("XADD")
                        .arg(&dead)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(DEAD_KEPT)
                        .arg("*")
                        .arg("id")
                        .arg(&id)
                        .arg("e")
                        .arg(&payload);
                }
                take_out(&mut pipe, &stream, &retry_at, &id);
                pipe.query_async::<()>(&mut conn).await
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::legend;
    use super::*;

    #[test]
    fn calls_match_their_legends() {
        legend::check(&Due {
            stream: "s".into(),
            retry_at: "r".into(),
            consumer: "c".into(),
            max: 1,
            now: 1,
            lease_ms: 1,
        });
        legend::check(&Replace {
            stream: "s".into(),
            retry_at: "r".into(),
            id: "1-0".into(),
            items: "[]".into(),
        });
    }
}
