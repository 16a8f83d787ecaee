//! [`MediaRefs`] on Redis: `media_refs:{media id}`, a set of the ids of
//! the messages that carry the file, plus the mark of a file being deleted
//! (`media_hold.lua`, `media_release.lua`: each one atomic step).

use futures_util::future::BoxFuture;

use super::messages::RedisStore;
use super::script::{Call, Loaded, Lua, lua};
use super::with_conn;
use crate::media_refs::DELETING;
use crate::{MediaRefs, StoreError};

/// `media_hold.lua`.
pub(crate) struct Hold {
    refs: String,
    message: String,
}

impl Lua for Hold {
    const NAME: &'static str = "media_hold";
    const SOURCE: &'static str = lua!("media_hold");

    fn push(&self, call: &mut Call) {
        call.key("refs", &self.refs)
            .arg("message", &self.message)
            .arg("deleting", DELETING);
    }
}

/// `media_release.lua` (the same values as [`Hold`]).
pub(crate) struct Release(Hold);

impl Lua for Release {
    const NAME: &'static str = "media_release";
    const SOURCE: &'static str = lua!("media_release");

    fn push(&self, call: &mut Call) {
        self.0.push(call);
    }
}

impl RedisStore {
    fn refs(&self, media: &str, message: &str) -> Hold {
        Hold {
            refs: self.inner().keys.of("media_refs", media),
            message: message.to_owned(),
        }
    }
}

impl MediaRefs for RedisStore {
    fn hold(&self, media: &str, message: &str) -> BoxFuture<'static, Result<bool, StoreError>> {
        let call = self.refs(media, message);
        let inner = self.inner();
        with_conn(inner, &inner.redis, "hold", move |_, mut conn| async move {
            let noted: u8 = Loaded::<Hold>::new().invoke(&call, &mut conn).await?;
            Ok(noted == 1)
        })
    }

    fn release(&self, media: &str, message: &str) -> BoxFuture<'static, Result<bool, StoreError>> {
        let call = Release(self.refs(media, message));
        let inner = self.inner();
        with_conn(
            inner,
            &inner.redis,
            "release",
            move |_, mut conn| async move {
                let last: u8 = Loaded::<Release>::new().invoke(&call, &mut conn).await?;
                Ok(last == 1)
            },
        )
    }

    fn unhold(&self, media: &str, message: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let inner = self.inner();
        let (key, message) = (inner.keys.of("media_refs", media), message.to_owned());
        with_conn(inner, &inner.redis, "SREM", move |_, mut conn| async move {
            // An empty set is no key: nothing is left behind.
            redis::cmd("SREM")
                .arg(&key)
                .arg(&message)
                .query_async::<()>(&mut conn)
                .await
        })
    }

    fn forget(&self, media: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let inner = self.inner();
        let key = inner.keys.of("media_refs", media);
        with_conn(inner, &inner.redis, "DEL", move |_, mut conn| async move {
            redis::cmd("DEL")
                .arg(&key)
                .query_async::<()>(&mut conn)
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::legend;
    use super::*;

    #[test]
    fn calls_match_their_legends() {
        let hold = || Hold {
            refs: "r".into(),
            message: "m".into(),
        };
        legend::check(&hold());
        legend::check(&Release(hold()));
    }
}
