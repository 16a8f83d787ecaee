//! [`ApiKeys`] on Redis: the hash `api_keys`, key id → the key's record
//! (JSON, no secret).

use futures_util::future::BoxFuture;

use super::messages::RedisStore;
use super::with_conn;
use crate::api_keys::{parse, record, revoked};
use crate::{ApiKey, ApiKeys, StoreError};

impl ApiKeys for RedisStore {
    fn create_key(&self, key: ApiKey) -> BoxFuture<'static, Result<(), StoreError>> {
        let inner = self.inner();
        let hash = inner.keys.single("api_keys");
        with_conn(inner, &inner.redis, "HSET", move |_, mut conn| async move {
            redis::cmd("HSET")
                .arg(&hash)
                .arg(&key.id)
                .arg(record(&key))
                .query_async::<()>(&mut conn)
                .await
        })
    }

    fn keys(&self) -> BoxFuture<'static, Result<Vec<ApiKey>, StoreError>> {
        let inner = self.inner();
        let hash = inner.keys.single("api_keys");
        let all = with_conn(
            inner,
            &inner.redis,
            "HVALS",
            move |_, mut conn| async move {
                redis::cmd("HVALS")
                    .arg(&hash)
                    .query_async::<Vec<String>>(&mut conn)
                    .await
            },
        );
        Box::pin(async move {
            let mut keys = all
                .await?
                .iter()
                .map(|r| parse(r))
                .collect::<Result<Vec<_>, _>>()?;
            keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(keys)
        })
    }

    fn key(&self, id: &str) -> BoxFuture<'static, Result<Option<ApiKey>, StoreError>> {
        let inner = self.inner();
        let (hash, id) = (inner.keys.single("api_keys"), id.to_owned());
        let one = with_conn(inner, &inner.redis, "HGET", move |_, mut conn| async move {
            redis::cmd("HGET")
                .arg(&hash)
                .arg(&id)
                .query_async::<Option<String>>(&mut conn)
                .await
        });
        Box::pin(async move { one.await?.map(|r| parse(&r)).transpose() })
    }

    fn revoke_key(
        &self,
        id: &str,
        at: u64,
    ) -> BoxFuture<'static, Result<Option<ApiKey>, StoreError>> {
        let (found, this) = (self.key(id), self.clone());
        Box::pin(async move {
            let Some(key) = found.await? else {
                return Ok(None);
            };
            // Two revokes at once write the same record but for the time:
            // either is a true revocation time.
            let key = revoked(key, at);
            this.create_key(key.clone()).await?;
            Ok(Some(key))
        })
    }
}

/// Token revocations on Redis: `revoked:{user}`, the time (ms) before
/// which the user's tokens are refused.
impl crate::TokenRevocations for RedisStore {
    fn revoke_tokens(&self, user: &str, at: u64) -> BoxFuture<'static, Result<(), StoreError>> {
        let inner = self.inner();
        let key = inner.keys.of("revoked", user);
        with_conn(inner, &inner.redis, "SET", move |_, mut conn| async move {
            // Keep the later of the two times (a late, older revocation
            // must not let tokens back in).
            let kept: Option<u64> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
            if kept.is_none_or(|kept| kept < at) {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(at)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            Ok(())
        })
    }
}

impl chat_auth::Revocations for RedisStore {
    fn revoked_before(&self, user: &str) -> BoxFuture<'static, Result<Option<u64>, String>> {
        let inner = self.inner();
        let key = inner.keys.of("revoked", user);
        let read = with_conn(inner, &inner.redis, "GET", move |_, mut conn| async move {
            redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<u64>>(&mut conn)
                .await
        });
        Box::pin(async move { read.await.map_err(|e| e.to_string()) })
    }
}
