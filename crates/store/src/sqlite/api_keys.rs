//! [`ApiKeys`] on SQLite: the `api_keys` table, one row per key with its
//! record (JSON, no secret).

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sea_orm::ConnectionTrait;

use super::{SqliteStore, failed, stmt};
use crate::api_keys::{parse, record};
use crate::{ApiKey, ApiKeys, StoreError};

impl ApiKeys for SqliteStore {
    fn create_key(&self, key: ApiKey) -> BoxFuture<'static, Result<(), StoreError>> {
        let this = self.clone();
        async move {
            let _writer = this.inner.writer().await;
            this.inner
                .db
                .execute_raw(stmt(
                    "INSERT OR REPLACE INTO api_keys (id, record) VALUES (?, ?)",
                    vec![key.id.clone().into(), record(&key).into()],
                ))
                .await
                .map_err(|e| failed("keeping an API key", e))?;
            Ok(())
        }
        .boxed()
    }

    fn keys(&self) -> BoxFuture<'static, Result<Vec<ApiKey>, StoreError>> {
        let this = self.clone();
        async move {
            let rows = this
                .inner
                .db
                .query_all_raw(stmt(
                    "SELECT record FROM api_keys ORDER BY json_extract(record, '$.created_at'), id",
                    vec![],
                ))
                .await
                .map_err(|e| failed("reading API keys", e))?;
            rows.iter()
                .map(|row| {
                    let text: String = row
                        .try_get_by_index(0)
                        .map_err(|e| failed("reading API keys", e))?;
                    parse(&text)
                })
                .collect()
        }
        .boxed()
    }

    fn key(&self, id: &str) -> BoxFuture<'static, Result<Option<ApiKey>, StoreError>> {
        let (this, id) = (self.clone(), id.to_owned());
        async move {
            let row = this
                .inner
                .db
                .query_one_raw(stmt(
                    "SELECT record FROM api_keys WHERE id = ?",
                    vec![id.into()],
                ))
                .await
                .map_err(|e| failed("reading an API key", e))?;
            let Some(row) = row else { return Ok(None) };
            let text: String = row
                .try_get_by_index(0)
                .map_err(|e| failed("reading an API key", e))?;
            parse(&text).map(Some)
        }
        .boxed()
    }

    fn revoke_key(
        &self,
        id: &str,
        at: u64,
    ) -> BoxFuture<'static, Result<Option<ApiKey>, StoreError>> {
        crate::api_keys::revoke_by_rewrite(self, id, at)
    }
}

/// Token revocations on SQLite: the `revocations` table.
impl crate::TokenRevocations for SqliteStore {
    fn revoke_tokens(&self, user: &str, at: u64) -> BoxFuture<'static, Result<(), StoreError>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            let _writer = this.inner.writer().await;
            this.inner
                .db
                .execute_raw(stmt(
                    "INSERT INTO revocations (user, before) VALUES (?, ?)
                     ON CONFLICT (user) DO UPDATE SET before = MAX(before, excluded.before)",
                    vec![user.into(), super::int(at)],
                ))
                .await
                .map_err(|e| failed("revoking tokens", e))?;
            Ok(())
        }
        .boxed()
    }
}

impl chat_auth::Revocations for SqliteStore {
    fn revoked_before(&self, user: &str) -> BoxFuture<'static, Result<Option<u64>, String>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            let row = this
                .inner
                .db
                .query_one_raw(stmt(
                    "SELECT before FROM revocations WHERE user = ?",
                    vec![user.into()],
                ))
                .await
                .map_err(|e| e.to_string())?;
            match row {
                Some(row) => row
                    .try_get_by_index::<i64>(0)
                    .map(|at| Some(at.max(0) as u64))
                    .map_err(|e| e.to_string()),
                None => Ok(None),
            }
        }
        .boxed()
    }
}
