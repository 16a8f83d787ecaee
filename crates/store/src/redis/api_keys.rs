//! [`ApiKeys`] on Redis: the hash `api_keys`, key id → the key's record
//! (JSON, no secret).

use futures_util::future::BoxFuture;

use super::messages::RedisStore;
use super::with_conn;
use crate::api_keys::{parse, record};
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
        let all = self.hash_values(self.inner().keys.single("api_keys"));
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
        crate::api_keys::revoke_by_rewrite(self, id, at)
    }
}

/// Token revocations on Redis: the sorted set `revoked`, user → the time
/// (ms) before which their tokens are refused; `ZADD … GT` keeps the later
/// time in one step (Redis 6.2 or later).
impl crate::TokenRevocations for RedisStore {
    fn revoke_tokens(&self, user: &str, at: u64) -> BoxFuture<'static, Result<(), StoreError>> {
        let inner = self.inner();
        let (key, user) = (inner.keys.single("revoked"), user.to_owned());
        with_conn(inner, &inner.redis, "ZADD", move |_, mut conn| async move {
            redis::cmd("ZADD")
                .arg(&key)
                .arg("GT")
                .arg(at)
                .arg(&user)
                .query_async::<()>(&mut conn)
                .await
        })
    }
}

impl chat_auth::Revocations for RedisStore {
    fn revoked_before(&self, user: &str) -> BoxFuture<'static, Result<Option<u64>, String>> {
        let inner = self.inner();
        let (key, user) = (inner.keys.single("revoked"), user.to_owned());
        let read = with_conn(
            inner,
            &inner.redis,
            "ZSCORE",
            move |_, mut conn| async move {
                let score: Option<f64> = redis::cmd("ZSCORE")
                    .arg(&key)
                    .arg(&user)
                    .query_async(&mut conn)
                    .await?;
                // Scores are doubles: whole milliseconds are exact below 2^53.
                Ok(score.map(|ms| ms as u64))
            },
        );
        Box::pin(async move { read.await.map_err(|e| e.to_string()) })
    }
}
