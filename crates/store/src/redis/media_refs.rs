//! [`MediaRefs`] on Redis: `media_refs:{media id}`, a set of the ids of
//! the messages that carry the file. Redis removes a set with its last
//! member, so a file nobody holds leaves no key behind.

use futures_util::future::BoxFuture;

use super::messages::RedisStore;
use super::with_conn;
use crate::{MediaRefs, StoreError};

impl MediaRefs for RedisStore {
    fn hold(&self, media: &str, message: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let inner = self.inner();
        let (key, message) = (inner.keys.of("media_refs", media), message.to_owned());
        with_conn(inner, &inner.redis, "SADD", move |_, mut conn| async move {
            redis::cmd("SADD")
                .arg(&key)
                .arg(&message)
                .query_async::<()>(&mut conn)
                .await
        })
    }

    fn release(&self, media: &str, message: &str) -> BoxFuture<'static, Result<bool, StoreError>> {
        let inner = self.inner();
        let (key, message) = (inner.keys.of("media_refs", media), message.to_owned());
        with_conn(inner, &inner.redis, "SREM", move |_, mut conn| async move {
            // Atomic (MULTI/EXEC): a hold between the two would otherwise
            // be missed, or two releases both see an empty set.
            let (removed, left): (u64, u64) = redis::pipe()
                .atomic()
                .cmd("SREM")
                .arg(&key)
                .arg(&message)
                .cmd("SCARD")
                .arg(&key)
                .query_async(&mut conn)
                .await?;
            Ok(removed == 1 && left == 0)
        })
    }
}
