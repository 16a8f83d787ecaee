//! [`PushStore`] on Redis: the hash `push_subs:{user}` (endpoint → the
//! subscription's record, JSON) and the set `push_flags:{user}`.

use futures_util::future::BoxFuture;

use super::messages::RedisStore;
use super::with_conn;
use crate::StoreError;
use crate::push::{MAX_SUBSCRIPTIONS, PushStore, PushSubscription, parse, record};

impl PushStore for RedisStore {
    fn subscribe(
        &self,
        user: &str,
        subscription: PushSubscription,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let inner = self.inner();
        let hash = inner.keys.of("push_subs", user);
        let index = inner.keys.single("push_endpoints");
        let owner_of = |who: &str| inner.keys.of("push_subs", who);
        let prefix = owner_of("");
        let user = user.to_owned();
        let all = with_conn(inner, &inner.redis, "HSET", move |_, mut conn| async move {
            // A browser's subscription is one user's: the last who
            // subscribed it (a shared browser's earlier user gets no more
            // of the later one's notifications, nor they theirs).
            let before: Option<String> = redis::cmd("HGET")
                .arg(&index)
                .arg(&subscription.endpoint)
                .query_async(&mut conn)
                .await?;
            let mut cmds = Vec::new();
            if let Some(before) = before.filter(|b| *b != user) {
                let mut hdel = redis::cmd("HDEL");
                hdel.arg(format!("{prefix}{before}"))
                    .arg(&subscription.endpoint);
                cmds.push(hdel);
            }
            let mut index_set = redis::cmd("HSET");
            index_set.arg(&index).arg(&subscription.endpoint).arg(&user);
            let mut set = redis::cmd("HSET");
            set.arg(&hash)
                .arg(&subscription.endpoint)
                .arg(record(&subscription));
            let mut all = redis::cmd("HVALS");
            all.arg(&hash);
            cmds.extend([index_set, set, all]);
            let replies = super::in_order(&mut conn, cmds).await?;
            let all: Vec<String> = match replies.into_iter().last() {
                Some(value) => redis::from_redis_value(value)?,
                None => Vec::new(),
            };
            Ok((hash, index, all, conn))
        });
        Box::pin(async move {
            let (hash, index, all, mut conn) = all.await?;
            if all.len() <= MAX_SUBSCRIPTIONS {
                return Ok(());
            }
            // Over the limit: the oldest go (two subscribing at once may
            // both trim; the newest stay either way).
            let mut kept = all
                .iter()
                .map(|r| parse(r))
                .collect::<Result<Vec<_>, _>>()?;
            kept.sort_by(|a, b| (b.created_at, &b.endpoint).cmp(&(a.created_at, &a.endpoint)));
            let old: Vec<&str> = kept[MAX_SUBSCRIPTIONS..]
                .iter()
                .map(|s| s.endpoint.as_str())
                .collect();
            let (mut from_user, mut from_index) = (redis::cmd("HDEL"), redis::cmd("HDEL"));
            from_user.arg(&hash).arg(&old);
            from_index.arg(&index).arg(&old);
            super::in_order(&mut conn, vec![from_user, from_index])
                .await
                .map(drop)
                .map_err(|e| super::unavailable("HDEL", e))
        })
    }

    fn unsubscribe(
        &self,
        user: &str,
        endpoint: &str,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        let inner = self.inner();
        let (hash, endpoint) = (inner.keys.of("push_subs", user), endpoint.to_owned());
        let index = inner.keys.single("push_endpoints");
        let user = user.to_owned();
        with_conn(inner, &inner.redis, "HDEL", move |_, mut conn| async move {
            let removed: u64 = redis::cmd("HDEL")
                .arg(&hash)
                .arg(&endpoint)
                .query_async(&mut conn)
                .await?;
            if removed > 0 {
                // The index names this user unless another took it since.
                let owner: Option<String> = redis::cmd("HGET")
                    .arg(&index)
                    .arg(&endpoint)
                    .query_async(&mut conn)
                    .await?;
                if owner.as_deref() == Some(user.as_str()) {
                    redis::cmd("HDEL")
                        .arg(&index)
                        .arg(&endpoint)
                        .query_async::<()>(&mut conn)
                        .await?;
                }
            }
            Ok(removed > 0)
        })
    }

    fn subscriptions(
        &self,
        user: &str,
    ) -> BoxFuture<'static, Result<Vec<PushSubscription>, StoreError>> {
        let all = self.hash_values(self.inner().keys.of("push_subs", user));
        Box::pin(async move {
            let mut all = all
                .await?
                .iter()
                .map(|r| parse(r))
                .collect::<Result<Vec<_>, _>>()?;
            all.sort_by(|a, b| (a.created_at, &a.endpoint).cmp(&(b.created_at, &b.endpoint)));
            Ok(all)
        })
    }

    fn set_push_flag(
        &self,
        user: &str,
        flag: &str,
        on: bool,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let inner = self.inner();
        let (set, flag) = (inner.keys.of("push_flags", user), flag.to_owned());
        let command = if on { "SADD" } else { "SREM" };
        with_conn(
            inner,
            &inner.redis,
            command,
            move |_, mut conn| async move {
                redis::cmd(command)
                    .arg(&set)
                    .arg(&flag)
                    .query_async::<()>(&mut conn)
                    .await
            },
        )
    }

    fn push_flags(&self, user: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        let inner = self.inner();
        let set = inner.keys.of("push_flags", user);
        let all = with_conn(
            inner,
            &inner.redis,
            "SMEMBERS",
            move |_, mut conn| async move {
                redis::cmd("SMEMBERS")
                    .arg(&set)
                    .query_async::<Vec<String>>(&mut conn)
                    .await
            },
        );
        Box::pin(async move {
            let mut flags = all.await?;
            flags.sort();
            Ok(flags)
        })
    }
}
