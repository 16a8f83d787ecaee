//! The Redis message store: inboxes, histories, unread counters, offline
//! lists and read markers (key layout in [`crate::redis`]).

use std::sync::Arc;

use chat_broker::redis::Connection;
use futures_util::future::BoxFuture;

mod cluster;

use super::script::{Call, Loaded, Lua, flag, lua};
use super::{Keys, with_conn};
use crate::messages::{
    Appended, Direct, FrameText, HistoryEntry, InboxEntry, MessageStore, ReadMarker, SENT_IDS_KEPT,
    SENT_IDS_TTL, Unread, conversation,
};
use crate::{Limits, StoreError, frames};

/// How the Redis message store is set up.
#[derive(Clone, Debug)]
pub struct RedisStoreOptions {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prepended to every key and channel.
    pub prefix: String,
    /// How many entries each list keeps.
    pub limits: Limits,
}

/// `append.lua`: stores, counts and publishes one direct message.
struct Append {
    seq_r: String,
    inbox_r: String,
    offline_r: String,
    unread_r: String,
    conv: String,
    conv_seq: String,
    posts: String,
    presence_r: String,
    seq_s: String,
    inbox_s: String,
    sent: String,
    sent_order: String,
    msgs: String,
    replies: String,
    webhooks: String,
    sender: String,
    id: String,
    client_id: String,
    max_len: u64,
    offline_max: u64,
    sent_max: usize,
    sent_ttl_s: u64,
    envelope: Vec<u8>,
    head: String,
    tail: String,
    typed: bool,
    history: String,
    node_prefix: String,
    copy: bool,
    to_self: bool,
    unread_head: String,
    unread_tail: String,
    channel_r: String,
    channel_s: String,
    reply_pos: String,
    events: bool,
    receiver: String,
}

impl Lua for Append {
    const NAME: &'static str = "append";
    const SOURCE: &'static str = lua!("append");

    fn push(&self, call: &mut Call) {
        call.key("seq_r", &self.seq_r)
            .key("inbox_r", &self.inbox_r)
            .key("offline_r", &self.offline_r)
            .key("unread_r", &self.unread_r)
            .key("conv", &self.conv)
            .key("conv_seq", &self.conv_seq)
            .key("posts", &self.posts)
            .key("presence_r", &self.presence_r)
            .key("seq_s", &self.seq_s)
            .key("inbox_s", &self.inbox_s)
            .key("sent", &self.sent)
            .key("sent_order", &self.sent_order)
            .key("msgs", &self.msgs)
            .key("replies", &self.replies)
            .key("webhooks", &self.webhooks)
            .arg("sender", &self.sender)
            .arg("id", &self.id)
            .arg("client_id", &self.client_id)
            .arg("max_len", self.max_len)
            .arg("offline_max", self.offline_max)
            .arg("sent_max", self.sent_max)
            .arg("sent_ttl_s", self.sent_ttl_s)
            .arg("envelope", &self.envelope[..])
            .arg("head", &self.head)
            .arg("tail", &self.tail)
            .arg("typed", flag(self.typed))
            .arg("history", &self.history)
            .arg("node_prefix", &self.node_prefix)
            .arg("copy", flag(self.copy))
            .arg("to_self", flag(self.to_self))
            .arg("unread_head", &self.unread_head)
            .arg("unread_tail", &self.unread_tail)
            .arg("channel_r", &self.channel_r)
            .arg("channel_s", &self.channel_s)
            .arg("reply_pos", &self.reply_pos)
            .arg("events", flag(self.events))
            .arg("receiver", &self.receiver);
    }
}

/// `take_offline.lua`: hands over a user's offline entries once.
struct TakeOffline {
    offline: String,
}

impl Lua for TakeOffline {
    const NAME: &'static str = "take_offline";
    const SOURCE: &'static str = lua!("take_offline");

    fn push(&self, call: &mut Call) {
        call.key("offline", &self.offline);
    }
}

/// `mark_read.lua`: moves a read marker forward.
struct MarkRead {
    unread: String,
    read: String,
    read_pos: String,
    posts_in: String,
    posts_out: String,
    peer: String,
    up_to: String,
}

impl Lua for MarkRead {
    const NAME: &'static str = "mark_read";
    const SOURCE: &'static str = lua!("mark_read");

    fn push(&self, call: &mut Call) {
        call.key("unread", &self.unread)
            .key("read", &self.read)
            .key("read_pos", &self.read_pos)
            .key("posts_in", &self.posts_in)
            .key("posts_out", &self.posts_out)
            .arg("peer", &self.peer)
            .arg("up_to", &self.up_to);
    }
}

pub(crate) struct Inner {
    pub(crate) redis: Connection,
    pub(crate) keys: Keys,
    pub(crate) limits: Limits,
    append: Loaded<Append>,
    take_offline: Loaded<TakeOffline>,
    mark_read: Loaded<MarkRead>,
    /// Whether data an older version stored is converted ([`super::upgrade`]).
    upgraded: std::sync::atomic::AtomicBool,
    /// Whether jobs of messages for someone offline are queued ([`crate::WebhookQueue`]).
    pub(crate) offline_events: std::sync::atomic::AtomicBool,
    /// Whether room membership events are queued.
    pub(crate) room_events: std::sync::atomic::AtomicBool,
}

/// The Redis message store. Cloning shares it.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl RedisStore {
    /// A store on `options.url`. Connects lazily (calls fail with
    /// [`StoreError::Unavailable`] while Redis is away); must be called
    /// inside a tokio runtime. In the background it converts what an
    /// older version stored ([`super::upgrade`]); until that is done its
    /// readiness check answers [`StoreError::Unavailable`].
    pub fn start(options: RedisStoreOptions) -> Result<Self, StoreError> {
        let redis = chat_broker::redis::command_connection(&options.url)
            .map_err(StoreError::Unavailable)?;
        let store = Self::built(redis, &options.prefix, options.limits, false);
        let inner = Arc::clone(&store.inner);
        tokio::spawn(async move {
            super::upgrade::upgrade(&inner.redis, &inner.keys).await;
            inner
                .upgraded
                .store(true, std::sync::atomic::Ordering::Release);
        });
        Ok(store)
    }

    /// A store on an existing command connection (shared with presence).
    /// It does not look for older data: [`Self::start`] does.
    pub fn on(redis: Connection, prefix: &str, limits: Limits) -> Self {
        Self::built(redis, prefix, limits, true)
    }

    fn built(redis: Connection, prefix: &str, limits: Limits, upgraded: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                keys: Keys::new(prefix, redis.is_cluster()),
                redis,
                limits,
                append: Loaded::new(),
                take_offline: Loaded::new(),
                mark_read: Loaded::new(),
                upgraded: std::sync::atomic::AtomicBool::new(upgraded),
                offline_events: std::sync::atomic::AtomicBool::new(false),
                room_events: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The command connection, to share with presence.
    pub fn connection(&self) -> &Connection {
        &self.inner.redis
    }
}

impl Inner {
    fn append_call(&self, message: Direct) -> Append {
        let keys = &self.keys;
        let (a, b) = conversation(&message.from, &message.to);
        let (head, tail, typed) = match message.frame {
            FrameText::Seed(text) => (text, String::new(), false),
            FrameText::Typed { head, tail } => (head, tail, true),
        };
        let to_self = message.from == message.to;
        let (unread_head, unread_tail) = frames::unread_template(&message.from);
        Append {
            seq_r: keys.user("seq", &message.to),
            inbox_r: keys.user("inbox", &message.to),
            offline_r: keys.user("offline", &message.to),
            unread_r: keys.user("unread", &message.to),
            conv: keys.pair("conv", &a, &b),
            conv_seq: keys.pair("conv_seq", &a, &b),
            posts: keys.pair("posts", &message.from, &message.to),
            presence_r: keys.user("presence", &message.to),
            seq_s: keys.user("seq", &message.from),
            inbox_s: keys.user("inbox", &message.from),
            sent: keys.user("sent", &message.from),
            sent_order: keys.user("sent_order", &message.from),
            msgs: keys.pair("msgs", &a, &b),
            replies: keys.pair("replies", &a, &b),
            reply_pos: message.reply_to.map(|p| p.to_string()).unwrap_or_default(),
            webhooks: keys.queue("webhooks"),
            events: self
                .offline_events
                .load(std::sync::atomic::Ordering::Relaxed)
                && typed
                && !to_self,
            receiver: message.to.clone(),
            client_id: message.client_id.unwrap_or_default(),
            max_len: self.limits.history_max,
            offline_max: self.limits.offline_max,
            sent_max: SENT_IDS_KEPT,
            sent_ttl_s: SENT_IDS_TTL.as_secs(),
            envelope: message.envelope_header,
            head,
            tail,
            typed,
            history: message.history,
            node_prefix: keys.prefix_of("node"),
            copy: message.copy_to_sender && !to_self,
            to_self,
            unread_head,
            unread_tail,
            channel_r: keys.channel(&chat_broker::channel::user(&message.to)),
            channel_s: keys.channel(&chat_broker::channel::user(&message.from)),
            sender: message.from,
            id: message.id,
        }
    }
}

/// Entries of an inbox or history sorted set, whose members are
/// `"{seq} {text}"` (the seq makes equal frames distinct members).
pub(crate) fn scored_entries(raw: Vec<String>) -> Vec<(u64, String)> {
    raw.into_iter()
        .filter_map(|member| {
            let (seq, text) = member.split_once(' ')?;
            Some((seq.parse().ok()?, text.to_owned()))
        })
        .collect()
}

fn unread_map(flat: Vec<(String, u64)>) -> Unread {
    flat.into_iter().filter(|(_, n)| *n > 0).collect()
}

impl MessageStore for RedisStore {
    fn append_direct(&self, message: Direct) -> BoxFuture<'static, Result<Appended, StoreError>> {
        let inner = &self.inner;
        with_conn(
            inner,
            &inner.redis,
            "append",
            move |inner, mut conn| async move {
                if inner.keys.cluster() {
                    return inner.append_on_cluster(&mut conn, message).await;
                }
                let call = inner.append_call(message);
                let (seq_r, seq_s, offline, repeated): (u64, u64, u64, Option<String>) =
                    inner.append.invoke(&call, &mut conn).await?;
                Ok(Appended {
                    receiver_seq: seq_r,
                    sender_seq: (seq_s > 0).then_some(seq_s),
                    offline: offline == 1,
                    repeated,
                })
            },
        )
    }

    fn inbox_since(
        &self,
        user: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<InboxEntry>, StoreError>> {
        let key = self.inner.keys.user("inbox", user);
        with_conn(
            &self.inner,
            &self.inner.redis,
            "ZRANGEBYSCORE",
            move |_, mut conn| async move {
                let raw: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                    .arg(&key)
                    .arg(format!("({after}"))
                    .arg("+inf")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut conn)
                    .await?;
                Ok(scored_entries(raw)
                    .into_iter()
                    .map(|(seq, frame)| InboxEntry { seq, frame })
                    .collect())
            },
        )
    }

    fn take_offline(&self, user: &str) -> BoxFuture<'static, Result<Vec<InboxEntry>, StoreError>> {
        let call = TakeOffline {
            offline: self.inner.keys.user("offline", user),
        };
        with_conn(
            &self.inner,
            &self.inner.redis,
            "take offline",
            move |inner, mut conn| async move {
                let items: Vec<String> = inner.take_offline.invoke(&call, &mut conn).await?;
                Ok(items
                    .into_iter()
                    .filter_map(|item| {
                        let (seq, frame) = item.split_once(' ')?;
                        Some(InboxEntry {
                            seq: seq.parse().ok()?,
                            frame: frame.to_owned(),
                        })
                    })
                    .collect())
            },
        )
    }

    fn unread(&self, user: &str) -> BoxFuture<'static, Result<Unread, StoreError>> {
        let key = self.inner.keys.user("unread", user);
        with_conn(
            &self.inner,
            &self.inner.redis,
            "HGETALL",
            move |_, mut conn| async move {
                let flat: Vec<(String, u64)> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await?;
                Ok(unread_map(flat))
            },
        )
    }

    fn mark_read(
        &self,
        reader: &str,
        peer: &str,
        up_to: &str,
    ) -> BoxFuture<'static, Result<ReadMarker, StoreError>> {
        let keys = &self.inner.keys;
        let (reader, peer, up_to) = (reader.to_owned(), peer.to_owned(), up_to.to_owned());
        let (unread, read, read_pos) = (
            keys.user("unread", &reader),
            keys.user("read", &reader),
            keys.user("read_pos", &reader),
        );
        // The reader's copy (on one Redis, the only one).
        let posts_in = keys.copy(&reader, "posts", &peer, &reader);
        let posts_out = keys.copy(&reader, "posts", &reader, &peer);
        with_conn(
            &self.inner,
            &self.inner.redis,
            "mark read",
            move |inner, mut conn| async move {
                let call = MarkRead {
                    unread,
                    read,
                    read_pos,
                    posts_in,
                    posts_out,
                    peer,
                    up_to,
                };
                let (outcome, flat): (String, Vec<(String, u64)>) =
                    inner.mark_read.invoke(&call, &mut conn).await?;
                Ok(match outcome.as_str() {
                    "moved" => ReadMarker::Moved(unread_map(flat)),
                    "stale" => ReadMarker::Stale(unread_map(flat)),
                    _ => ReadMarker::NotFound,
                })
            },
        )
    }

    fn history(
        &self,
        a: &str,
        b: &str,
        before: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<HistoryEntry>, StoreError>> {
        // `a`'s copy (on one Redis, the only one): both hold each message
        // at the same position, so a cursor means the same for both.
        let key = {
            let (first, second) = conversation(a, b);
            self.inner.keys.copy(a, "conv", &first, &second)
        };
        // Positions are `0-{position}` cursors, as on SQLite.
        let end = match before {
            None => "+inf".to_owned(),
            Some(cursor) => match crate::messages::cursor_parts(cursor) {
                Some((_, 0)) => return Box::pin(async { Ok(Vec::new()) }),
                Some((_, position)) => format!("({position}"),
                None => {
                    let error = StoreError::InvalidCursor(cursor.to_owned());
                    return Box::pin(async move { Err(error) });
                }
            },
        };
        with_conn(
            &self.inner,
            &self.inner.redis,
            "ZREVRANGEBYSCORE",
            move |_, mut conn| async move {
                let raw: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
                    .arg(&key)
                    .arg(&end)
                    .arg("-inf")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut conn)
                    .await?;
                Ok(scored_entries(raw)
                    .into_iter()
                    .map(|(position, message)| HistoryEntry {
                        cursor: format!("0-{position}"),
                        message,
                    })
                    .collect())
            },
        )
    }

    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let (ping, inner) = (super::ping(&self.inner.redis), Arc::clone(&self.inner));
        Box::pin(async move {
            ping.await?;
            if !inner.upgraded.load(std::sync::atomic::Ordering::Acquire) {
                return Err(StoreError::Unavailable(
                    "converting data an older version stored".into(),
                ));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::script::legend;

    #[tokio::test]
    async fn every_message_script_is_called_as_its_legend_says() {
        let direct = Direct {
            id: "01J".into(),
            from: "alice".into(),
            to: "bob".into(),
            client_id: Some("c1".into()),
            frame: FrameText::Seed("{}".into()),
            history: "{}".into(),
            copy_to_sender: true,
            envelope_header: vec![b'T'],
            reply_to: Some(3),
        };
        let inner = Inner {
            redis: chat_broker::redis::command_connection("redis://127.0.0.1:1/")
                .expect("a lazy connection"),
            keys: Keys::new("p:", false),
            limits: Limits::default(),
            append: Loaded::new(),
            take_offline: Loaded::new(),
            mark_read: Loaded::new(),
            upgraded: true.into(),
            offline_events: false.into(),
            room_events: false.into(),
        };
        legend::check(&inner.append_call(direct));
        legend::check(&TakeOffline {
            offline: "o".into(),
        });
        legend::check(&MarkRead {
            unread: "u".into(),
            read: "r".into(),
            read_pos: "rp".into(),
            posts_in: "pi".into(),
            posts_out: "po".into(),
            peer: "bob".into(),
            up_to: "01J".into(),
        });
    }
}
