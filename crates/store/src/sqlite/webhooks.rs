//! [`WebhookQueue`] on SQLite: the `webhooks` table (one row per event,
//! its attempts and the time of its next one) and `webhooks_dead`.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sea_orm::{ConnectionTrait, TransactionTrait};

use super::{SqliteStore, failed, int, stmt};
use crate::StoreError;

/// Dead letters kept (older ones are dropped).
const DEAD_KEPT: u64 = 10_000;
use crate::webhooks::{Queued, WebhookQueue};

impl SqliteStore {
    /// Runs one statement under the writer lock.
    async fn queue_write(
        &self,
        what: &str,
        sql: &str,
        values: Vec<sea_orm::Value>,
    ) -> Result<(), StoreError> {
        let _writer = self.inner.writer().await;
        self.inner
            .db
            .execute_raw(stmt(sql, values))
            .await
            .map_err(|e| failed(what, e))?;
        Ok(())
    }
}

/// An event's id: `{queued at, ms}-{row id}`, shaped like a Redis stream
/// id, so that ids stay unique for a receiver even if the database starts
/// over (its row ids would repeat, not with the same times).
fn event_id(queued_at: i64, row: i64) -> String {
    format!("{queued_at}-{row}")
}

/// An event id's row id.
fn row_id(id: &str) -> i64 {
    id.rsplit('-')
        .next()
        .and_then(|row| row.parse().ok())
        .unwrap_or(-1)
}

impl WebhookQueue for SqliteStore {
    fn enqueue(&self, payload: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, payload) = (self.clone(), payload.to_owned());
        async move {
            this.queue_write(
                "queueing a webhook event",
                "INSERT INTO webhooks (payload, queued_at) VALUES (?, ?)",
                vec![payload.into(), int(crate::now_millis())],
            )
            .await
        }
        .boxed()
    }

    fn due(
        &self,
        _consumer: &str,
        max: usize,
        now: u64,
        lease_ms: u64,
    ) -> BoxFuture<'static, Result<Vec<Queued>, StoreError>> {
        let this = self.clone();
        async move {
            let _writer = this.inner.writer().await;
            let run = async {
                let txn = this.inner.db.begin().await?;
                let rows = txn
                    .query_all_raw(stmt(
                        "UPDATE webhooks SET attempts = attempts + 1, next_at = ?
                           WHERE id IN (SELECT id FROM webhooks WHERE next_at <= ? ORDER BY id LIMIT ?)
                           RETURNING id, payload, attempts, queued_at",
                        vec![int(now.saturating_add(lease_ms)), int(now), int(max.max(1) as u64)],
                    ))
                    .await?;
                txn.commit().await?;
                let mut taken = rows
                    .iter()
                    .map(|r| {
                        let queued_at: i64 = r.try_get("", "queued_at")?;
                        Ok(Queued {
                            id: event_id(queued_at, r.try_get("", "id")?),
                            payload: r.try_get("", "payload")?,
                            attempt: r.try_get::<i64>("", "attempts")?.max(1) as u32,
                            queued_at: queued_at.max(0) as u64,
                        })
                    })
                    .collect::<Result<Vec<_>, sea_orm::DbErr>>()?;
                taken.sort_by_key(|q| row_id(&q.id));
                Ok::<_, sea_orm::DbErr>(taken)
            };
            run.await.map_err(|e| failed("taking webhook events", e))
        }
        .boxed()
    }

    fn delivered(&self, id: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, id) = (self.clone(), row_id(id));
        async move {
            this.queue_write(
                "dropping a delivered event",
                "DELETE FROM webhooks WHERE id = ?",
                vec![id.into()],
            )
            .await
        }
        .boxed()
    }

    fn replace(
        &self,
        id: &str,
        items: Vec<String>,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let (this, id) = (self.clone(), row_id(id));
        async move {
            let _writer = this.inner.writer().await;
            let run = async {
                let txn = this.inner.db.begin().await?;
                let gone = txn
                    .execute_raw(stmt("DELETE FROM webhooks WHERE id = ?", vec![id.into()]))
                    .await?;
                if gone.rows_affected() == 0 {
                    return Ok(false);
                }
                let now = int(crate::now_millis());
                for item in items {
                    txn.execute_raw(stmt(
                        "INSERT INTO webhooks (payload, queued_at) VALUES (?, ?)",
                        vec![item.into(), now.clone()],
                    ))
                    .await?;
                }
                txn.commit().await?;
                Ok::<_, sea_orm::DbErr>(true)
            };
            run.await.map_err(|e| failed("replacing a job", e))
        }
        .boxed()
    }

    fn retry(&self, id: &str, at: u64) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, id) = (self.clone(), row_id(id));
        async move {
            this.queue_write(
                "scheduling a webhook retry",
                "UPDATE webhooks SET next_at = ? WHERE id = ?",
                vec![int(at), id.into()],
            )
            .await
        }
        .boxed()
    }

    fn queue_room_events(&self) {
        let on = &self.inner.room_events;
        on.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn queue_offline_events(&self) {
        let on = &self.inner.offline_events;
        on.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn dead(&self, id: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, id) = (self.clone(), row_id(id));
        async move {
            let _writer = this.inner.writer().await;
            let run = async {
                let txn = this.inner.db.begin().await?;
                txn.execute_raw(stmt(
                    "INSERT INTO webhooks_dead (id, payload, dead_at)
                       SELECT id, payload, ? FROM webhooks WHERE id = ?",
                    vec![int(crate::now_millis()), id.into()],
                ))
                .await?;
                txn.execute_raw(stmt("DELETE FROM webhooks WHERE id = ?", vec![id.into()]))
                    .await?;
                // The last DEAD_KEPT dead letters, as on Redis.
                txn.execute_raw(stmt(
                    "DELETE FROM webhooks_dead WHERE rowid <= (SELECT MAX(rowid) FROM webhooks_dead) - ?",
                    vec![int(DEAD_KEPT)],
                ))
                .await?;
                txn.commit().await
            };
            run.await
                .map_err(|e| failed("giving up on a webhook event", e))
        }
        .boxed()
    }
}
