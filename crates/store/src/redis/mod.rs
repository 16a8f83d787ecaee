//! The Redis engines: messages ([`messages::RedisStore`]) and presence
//! ([`presence::RedisNode`] for gateways, [`presence::RedisPresence`] for
//! readers), on one multiplexed command connection each.
//!
//! Keys, after the configured prefix:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `seq:{user}` | string | the user's last inbox sequence number |
//! | `inbox:{user}` | sorted set | `"{seq} {frame}"` scored by seq: frames as delivered (messages, updates) |
//! | `offline:{user}` | list | `"{seq} {frame}"` that arrived while the user had no connection |
//! | `conv:{a}:{b}` | sorted set (a ≤ b) | `"{position} {JSON}"` scored by position: the conversation's messages, in their current state |
//! | `msgs:{a}:{b}` | hash | message id → `"{position} {seq_r} {seq_s} {update seq_r} {update seq_s}"`: where its copies and its update are |
//! | `replies:{a}:{b}` | sorted set | reply id → position of the message it answers |
//! | `conv_seq:{a}:{b}` | string | the conversation's last position |
//! | `posts:{from}:{to}` | sorted set | message id → conversation position, of `from`'s messages to `to` (where read markers point) |
//! | `unread:{user}` | hash | sender → unread count (the seed's shape; part of the contract) |
//! | `read:{user}` | hash | peer → id of the message read up to |
//! | `read_pos:{user}` | hash | peer → conversation position of that message |
//! | `sent:{user}` | hash | client id → `"{seq_r} {seq_s} {offline} {history}"` of the user's last sends |
//! | `sent_order:{user}` | list | those client ids, oldest first |
//! | `presence:{user}` | hash | gateway node id → open connections |
//! | `last_seen:{user}` | string | when the user's last connection on a node closed (ms) |
//! | `node:{id}` | string with TTL | a gateway's lease, renewed while it lives |
//! | `nodes` | hash | gateway node id → when it last renewed its lease (ms, Redis's clock) |
//! | `node_users:{id}` | set | users with a connection counted on that node |
//! | `node_conns:{id}` | set | `"{conn} {user}"` of each connection counted on that node |
//! | `node_swept:{id}` | hash, 1 day TTL | user → their connections on a lapsed node, moved out of `presence:{user}` by a sweep |
//! | `node_counts:{id}` | hash | user → their connections on that node (Redis Cluster only, in place of `node_users`) |
//! | `{room:NAME}:meta` | hash | `private` (0/1), `owner`, `seq` (the last entry's), `members` (how many) |
//! | `{room:NAME}:members` | hash | user → `"{role} {seq joined at}"` (role: `owner`, `admin`, `member`) |
//! | `{room:NAME}:read` | hash | member → seq read up to (unread = `seq` − this − quiet seqs after it) |
//! | `{room:NAME}:log` | sorted set | the room's history: entry frames (messages, membership events) scored by seq |
//! | `{room:NAME}:ids` | sorted set | entry id → seq (where read markers point) |
//! | `{room:NAME}:updates` | sorted set | message id → seq of its update entry |
//! | `{room:NAME}:quiet` | sorted set | seqs that are never unread (updates, deleted messages) |
//! | `{room:NAME}:replies` | sorted set | reply id → seq of the message it answers |
//! | `{room:NAME}:sent` | hash, 7-day TTL | `"{user} {client id}"` → `"{seq} {frame}"` of the room's last sends |
//! | `{room:NAME}:sent_order` | sorted set, 7-day TTL | those fields → seq, to forget the old ones |
//! | `rooms:{user}` | set | the rooms the user is a member of |
//! | `api_keys` | hash | API key id → its record (JSON: name, scopes, SHA-256 of the secret, created, revoked) |
//! | `revoked` | sorted set | user → ms: their tokens issued before are refused (the server API's revoke; only ever later) |
//! | `webhooks` | stream | events for the webhook receiver (field `e`), read by the consumer group `senders` |
//! | `webhooks:retry_at` | sorted set | event ids by the ms of their next attempt (a retry, or a lease's end) |
//! | `webhooks:dead` | stream | events given up on (`id`, `e`), the last 10 000 |
//! | `schema` | string | the data layout last upgraded to (`upgrade.rs`): 2 = sorted-set inboxes and histories |
//! | `media_refs:{media id}` | set | ids of the messages that carry the file (a delete of the last one deletes the file) |
//! | `push_subs:{user}` | hash | Web Push endpoint → the subscription's record (JSON: keys, when kept) |
//! | `push_endpoints` | hash | Web Push endpoint → the user it belongs to (the last who subscribed it) |
//! | `push_flags:{user}` | set | the user's push settings: `quiet`, `mute:user:{peer}`, `mute:room:{room}` |
//!
//! A key is the kind, then the name(s): a single name as it is (the user
//! id, any string: `unread:auth0|5f3c` is that user's counters; no other
//! name spells it, the kind coming first); in keys naming two users
//! (`conv`, `conv_seq`, `posts`) each name has `%` and `:` percent-encoded
//! so the pair cannot be read two ways.
//!
//! A room's keys share the hash tag `{room:NAME}`, and the room scripts
//! touch only those: one hash slot each. On a Redis Cluster (a
//! `redis+cluster://` URL) every room key starts with the hash tag of the
//! room channel's partition instead (`{p17-2041}{prefix}{room:NAME}:log`),
//! so a room script's `SPUBLISH` to its room stays on its node; the
//! scripts run with `SPUBLISH` for `PUBLISH` (`script.rs`), a member's
//! control is published after the script (the user's channel is in
//! another slot), and reads over many rooms go one pipeline per room
//! ([`grouped`]).
//!
//! On a cluster a user's keys ([`Keys::user`]) start with the hash tag of
//! their channel's partition (`{p17-2041}{prefix}presence:alice`; the
//! user's watch channel is placed in that partition too), and a gateway
//! node's keys ([`Keys::node`]) with `{node:{id}}`. Presence runs there in
//! two single-slot steps per change (`presence/cluster.rs`), and so does a
//! direct message (`messages/cluster.rs`), each user keeping their own copy
//! of a conversation ([`Keys::copy`]), and a change of one
//! (`lifecycle/cluster.rs`, one step per copy). The webhook queue's keys
//! share the tag `{webhooks}` ([`Keys::queue`]).
//!
//! | key (Redis Cluster only) | type | holds |
//! |---|---|---|
//! | `received:{user}` | hash, 7-day TTL | `"{len}:{sender} {client id}"` → `"{seq} {offline} {position} {id} {history}"` of the user's last received sends |
//! | `received_order:{user}` | sorted set, 7-day TTL | those fields by seq, to forget the oldest |
//! | `presence_conns:{user}` | set | `"{node} {conn}"` of each connection counted in `presence:{user}` |

mod api_keys;
mod lifecycle;
mod media_refs;
pub mod messages;
pub mod presence;
mod push;
mod rooms;
mod script;
mod upgrade;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use chat_broker::redis::{Connection, partitions};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::StoreError;

/// How long one store call may take before it counts as unavailable.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Key and channel names under one prefix, laid out for one Redis or for
/// a Redis Cluster.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
    /// Names for a cluster: a room's keys carry the hash tag of its
    /// channel's partition, channels are shard channels.
    cluster: bool,
}

impl Keys {
    /// Names under `prefix`, for a cluster when `cluster`.
    pub(crate) fn new(prefix: &str, cluster: bool) -> Self {
        Self {
            prefix: prefix.to_owned(),
            cluster,
        }
    }

    /// Whether names are laid out for a Redis Cluster.
    pub(crate) fn cluster(&self) -> bool {
        self.cluster
    }

    /// `{prefix}{kind}:{name}`.
    pub(crate) fn of(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// `{prefix}{kind}:{user}`: a key of one user's. On a cluster it starts
    /// with the hash tag of the partition of the user's channel (where their
    /// watch channel lives too), `{p17-2041}{prefix}{kind}:{user}`, so a
    /// script on the user's keys can publish to both channels.
    pub(crate) fn user(&self, kind: &str, user: &str) -> String {
        if self.cluster {
            let partition = partitions::of(&chat_broker::channel::user(user));
            return format!(
                "{{{}}}{}",
                partitions::tags()[partition],
                self.of(kind, user)
            );
        }
        self.of(kind, user)
    }

    /// `{prefix}{kind}:{id}`: a key of one gateway node's. On a cluster it
    /// starts with the hash tag `{node:{id}}`, so the node's keys share a
    /// slot (node ids are ULIDs: no brace).
    pub(crate) fn node(&self, kind: &str, id: &str) -> String {
        if self.cluster {
            return format!("{{node:{id}}}{}", self.of(kind, id));
        }
        self.of(kind, id)
    }

    /// `{prefix}{kind}:{a}:{b}` for a key naming two users, each with `%`
    /// and `:` percent-encoded, so no pair of names spells another pair's
    /// key (`a:b` + `c` and `a` + `b:c` would). Names without either
    /// character, every name of earlier versions, are unchanged.
    pub(crate) fn pair(&self, kind: &str, a: &str, b: &str) -> String {
        format!("{}{kind}:{}:{}", self.prefix, escape(a), escape(b))
    }

    /// `owner`'s copy of a key naming two users ([`Keys::pair`]). On one
    /// Redis both users share one key (there is one copy); on a cluster
    /// each keeps their own, in their slot ([`Keys::user`]'s tag): a
    /// conversation is written to the receiver's copy, then the sender's.
    pub(crate) fn copy(&self, owner: &str, kind: &str, a: &str, b: &str) -> String {
        if self.cluster {
            let partition = partitions::of(&chat_broker::channel::user(owner));
            return format!(
                "{{{}}}{}",
                partitions::tags()[partition],
                self.pair(kind, a, b)
            );
        }
        self.pair(kind, a, b)
    }

    /// `{prefix}{room:{name}}:{kind}`: a key of one room. Every key of a
    /// room carries the hash tag `{room:{name}}`, so they share one hash
    /// slot (a Redis Cluster keeps them on one node and a script may touch
    /// them all). A name holding `}` ends the tag early, the same way for
    /// every key of that room: they still share a slot.
    ///
    /// On a cluster the key starts with the hash tag of the room channel's
    /// partition instead (`{p17-2041}{prefix}{room:{name}}:{kind}`; the
    /// first tag is the one Redis hashes): the room's scripts `SPUBLISH` to
    /// that channel, and a script may only publish to a shard channel its
    /// node serves. Rooms of one partition share a slot.
    pub(crate) fn room(&self, kind: &str, name: &str) -> String {
        if self.cluster {
            let partition = partitions::of(&chat_broker::channel::room(name));
            return format!(
                "{{{}}}{}{{room:{name}}}:{kind}",
                partitions::tags()[partition],
                self.prefix
            );
        }
        format!("{}{{room:{name}}}:{kind}", self.prefix)
    }

    /// A user's channel as a room script takes it: its wire name on one
    /// Redis, and `''` on a cluster, where the channel lives in another slot
    /// than the room's keys and the caller publishes after the script.
    pub(crate) fn user_channel_in_script(&self, user: &str) -> String {
        if self.cluster {
            return String::new();
        }
        self.channel(&chat_broker::channel::user(user))
    }

    /// `{prefix}{kind}:`: what scripts put in front of names they compute.
    pub(crate) fn prefix_of(&self, kind: &str) -> String {
        format!("{}{kind}:", self.prefix)
    }

    /// A key of the webhook queue (`webhooks`, `webhooks:retry_at`,
    /// `webhooks:dead`): [`Keys::single`] on one Redis; on a cluster they
    /// share the hash tag `{webhooks}`, so the queue's scripts, which touch
    /// the stream and its retry times at once, stay in one slot.
    pub(crate) fn queue(&self, kind: &str) -> String {
        if self.cluster {
            return format!("{{webhooks}}{}", self.single(kind));
        }
        self.single(kind)
    }

    /// A key without a name part (`nodes`).
    pub(crate) fn single(&self, kind: &str) -> String {
        format!("{}{kind}", self.prefix)
    }

    /// A broker channel's wire name, as the broker publishes it: prefixed,
    /// and on a cluster the shard channel of its partition.
    pub(crate) fn channel(&self, channel: &str) -> String {
        if self.cluster {
            return partitions::shard_channel(&self.prefix, channel);
        }
        format!("{}{channel}", self.prefix)
    }
}

/// `name` with `%` and `:` percent-encoded (for keys holding two names).
fn escape(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.contains(['%', ':']) {
        return std::borrow::Cow::Borrowed(name);
    }
    std::borrow::Cow::Owned(name.replace('%', "%25").replace(':', "%3A"))
}

pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

/// Runs `f` with a clone of `conn`, bounded by [`COMMAND_TIMEOUT`].
pub(crate) fn with_conn<S, T, F, Fut>(
    state: &Arc<S>,
    conn: &Connection,
    what: &'static str,
    f: F,
) -> BoxFuture<'static, Result<T, StoreError>>
where
    S: Send + Sync + 'static,
    T: Send + 'static,
    F: FnOnce(Arc<S>, Connection) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = redis::RedisResult<T>> + Send,
{
    let state = Arc::clone(state);
    let conn = conn.clone();
    async move {
        let attempt = async { f(state, conn).await.map_err(|e| unavailable(what, e)) };
        tokio::time::timeout(COMMAND_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|e| Err(unavailable(what, e)))
    }
    .boxed()
}

impl messages::RedisStore {
    /// Every value of the hash `key` (`HVALS`), in no order.
    pub(crate) fn hash_values(
        &self,
        key: String,
    ) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        let inner = self.inner();
        with_conn(
            inner,
            &inner.redis,
            "HVALS",
            move |_, mut conn| async move {
                redis::cmd("HVALS")
                    .arg(&key)
                    .query_async::<Vec<String>>(&mut conn)
                    .await
            },
        )
    }
}

/// Runs `groups`, each a pipeline whose commands touch one hash slot (one
/// room's keys, say), and answers each group's replies as one `T` (a tuple,
/// one element per command), in order. On one Redis every group goes in a
/// single pipeline (one round trip); on a cluster, where a pipeline may
/// only touch one slot (`CROSSSLOT` otherwise), each group is a pipeline of
/// its own, all sent at once. Not bounded in time: callers are.
///
/// Errors: Redis's, or a group's replies do not read as `T`.
pub(crate) async fn grouped<T: redis::FromRedisValue>(
    conn: &Connection,
    groups: Vec<redis::Pipeline>,
) -> redis::RedisResult<Vec<T>> {
    if conn.is_cluster() {
        let queries = groups.into_iter().map(|group| {
            let mut conn = conn.clone();
            async move { group.query_async::<T>(&mut conn).await }
        });
        return futures_util::future::try_join_all(queries).await;
    }
    let sizes: Vec<usize> = groups.iter().map(redis::Pipeline::len).collect();
    let mut all = redis::pipe();
    for cmd in groups.iter().flat_map(redis::Pipeline::cmd_iter) {
        all.add_command(cmd.clone());
    }
    let mut replies = all
        .query_async::<Vec<redis::Value>>(&mut conn.clone())
        .await?
        .into_iter();
    sizes
        .into_iter()
        .map(|n| {
            let group = redis::Value::Array(replies.by_ref().take(n).collect());
            redis::from_redis_value(group).map_err(Into::into)
        })
        .collect()
}

/// Runs `cmds` and answers their replies, in order: in one transaction
/// (`MULTI`) on one Redis; one after the other on a cluster, where a
/// transaction may only touch one slot (callers there accept that a crash
/// in between leaves the first ones done).
///
/// Errors: Redis's (on a cluster, those after a failed command are not run).
pub(crate) async fn in_order(
    conn: &mut Connection,
    cmds: Vec<redis::Cmd>,
) -> redis::RedisResult<Vec<redis::Value>> {
    if conn.is_cluster() {
        let mut replies = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            replies.push(cmd.query_async(conn).await?);
        }
        return Ok(replies);
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    for cmd in cmds {
        pipe.add_command(cmd);
    }
    pipe.query_async(conn).await
}

/// How long a write on a cluster waits for a replica to have it (ms,
/// [`replicated`]).
const REPLICA_WAIT_MS: u64 = 100;

/// On a cluster, waits until the writes made on the master owning each of
/// `keys` are on one of its replicas (`WAIT 1 100` on those masters), so an
/// acknowledged write survives its master's failover: Redis replicates
/// asynchronously, and a replica promoted before it had a write would lose
/// it. A master with no live replica holds its writes 100 ms each, then
/// they are acknowledged anyway (logged). Nothing on one Redis (a failover
/// there is the operator's, with its own rules).
///
/// Errors: a master does not answer (the writes may still be there: the
/// caller answers `unavailable`, and a retry with the same client id is
/// answered as the first).
pub(crate) async fn replicated(conn: &Connection, keys: &[&str]) -> redis::RedisResult<()> {
    if !conn.is_cluster() {
        return Ok(());
    }
    let waits = keys
        .iter()
        .map(|key| conn.wait_replicated(key, REPLICA_WAIT_MS));
    let replicas = futures_util::future::try_join_all(waits).await?;
    if replicas.contains(&0) {
        tracing::warn!(
            "a write was acknowledged before any replica had it (a master without a live replica?)"
        );
    }
    Ok(())
}

/// Answers a readiness check with `PING`.
pub(crate) fn ping(conn: &Connection) -> BoxFuture<'static, Result<(), StoreError>> {
    let mut conn = conn.clone();
    async move {
        let ping = redis::cmd("PING");
        match tokio::time::timeout(COMMAND_TIMEOUT, ping.query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unavailable("PING", e)),
            Err(e) => Err(unavailable("PING", e)),
        }
    }
    .boxed()
}
