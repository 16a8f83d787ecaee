//! [`PushStore`] on SQLite: the tables `push_subscriptions` (one row per
//! user and endpoint, with the subscription's record) and `push_flags`.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sea_orm::ConnectionTrait;

use super::{SqliteStore, failed, stmt};
use crate::StoreError;
use crate::push::{MAX_SUBSCRIPTIONS, PushStore, PushSubscription, parse, record};

impl PushStore for SqliteStore {
    fn subscribe(
        &self,
        user: &str,
        subscription: PushSubscription,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            let _writer = this.inner.writer().await;
            let db = &this.inner.db;
            let run = async {
                // A browser's subscription is one user's: the last who
                // subscribed it (a shared browser's earlier user gets no
                // more of the later one's notifications, nor they theirs).
                db.execute_raw(stmt(
                    "DELETE FROM push_subscriptions WHERE endpoint = ? AND user != ?",
                    vec![subscription.endpoint.clone().into(), user.clone().into()],
                ))
                .await?;
                db.execute_raw(stmt(
                    "INSERT INTO push_subscriptions (user, endpoint, created_at, record)
                     VALUES (?, ?, ?, ?)
                     ON CONFLICT (user, endpoint) DO UPDATE SET
                       created_at = excluded.created_at, record = excluded.record",
                    vec![
                        user.clone().into(),
                        subscription.endpoint.clone().into(),
                        super::int(subscription.created_at),
                        record(&subscription).into(),
                    ],
                ))
                .await?;
                // Over the limit: the oldest go.
                db.execute_raw(stmt(
                    "DELETE FROM push_subscriptions WHERE user = ?1 AND endpoint NOT IN
                       (SELECT endpoint FROM push_subscriptions WHERE user = ?1
                        ORDER BY created_at DESC, endpoint DESC LIMIT ?2)",
                    vec![user.clone().into(), super::int(MAX_SUBSCRIPTIONS as u64)],
                ))
                .await
            };
            run.await
                .map_err(|e| failed("keeping a push subscription", e))?;
            Ok(())
        }
        .boxed()
    }

    fn unsubscribe(
        &self,
        user: &str,
        endpoint: &str,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let (this, user, endpoint) = (self.clone(), user.to_owned(), endpoint.to_owned());
        async move {
            let _writer = this.inner.writer().await;
            let done = this
                .inner
                .db
                .execute_raw(stmt(
                    "DELETE FROM push_subscriptions WHERE user = ? AND endpoint = ?",
                    vec![user.into(), endpoint.into()],
                ))
                .await
                .map_err(|e| failed("forgetting a push subscription", e))?;
            Ok(done.rows_affected() > 0)
        }
        .boxed()
    }

    fn subscriptions(
        &self,
        user: &str,
    ) -> BoxFuture<'static, Result<Vec<PushSubscription>, StoreError>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            let rows = this
                .inner
                .db
                .query_all_raw(stmt(
                    "SELECT record FROM push_subscriptions WHERE user = ?
                     ORDER BY created_at, endpoint",
                    vec![user.into()],
                ))
                .await
                .map_err(|e| failed("reading push subscriptions", e))?;
            rows.iter()
                .map(|row| {
                    let text: String = row
                        .try_get_by_index(0)
                        .map_err(|e| failed("reading push subscriptions", e))?;
                    parse(&text)
                })
                .collect()
        }
        .boxed()
    }

    fn set_push_flag(
        &self,
        user: &str,
        flag: &str,
        on: bool,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, user, flag) = (self.clone(), user.to_owned(), flag.to_owned());
        async move {
            let _writer = this.inner.writer().await;
            let sql = if on {
                "INSERT OR IGNORE INTO push_flags (user, flag) VALUES (?, ?)"
            } else {
                "DELETE FROM push_flags WHERE user = ? AND flag = ?"
            };
            this.inner
                .db
                .execute_raw(stmt(sql, vec![user.into(), flag.into()]))
                .await
                .map_err(|e| failed("keeping a push setting", e))?;
            Ok(())
        }
        .boxed()
    }

    fn push_flags(&self, user: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            let rows = this
                .inner
                .db
                .query_all_raw(stmt(
                    "SELECT flag FROM push_flags WHERE user = ? ORDER BY flag",
                    vec![user.into()],
                ))
                .await
                .map_err(|e| failed("reading push settings", e))?;
            rows.iter()
                .map(|row| {
                    row.try_get_by_index::<String>(0)
                        .map_err(|e| failed("reading push settings", e))
                })
                .collect()
        }
        .boxed()
    }
}
