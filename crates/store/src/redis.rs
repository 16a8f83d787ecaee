//! The Redis engine.
//!
//! Keys, after the configured prefix:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `seq:{user}` | string | the user's last inbox sequence number |
//! | `inbox:{user}` | stream, ids `0-{seq}` | frames as delivered (`f`) |
//! | `offline:{user}` | list | `"{seq} {frame}"` that arrived while the user had no connection |
//! | `conv:{a}:{b}` | stream (a ≤ b) | the conversation's messages as JSON (`m`) |
//! | `unread:{user}` | hash | sender → unread count (the seed's shape; part of the contract) |
//! | `read:{user}` | hash | peer → id of the last message read |
//! | `presence:{user}` | hash | gateway node id → open connections |
//! | `node:{id}` | string with TTL | a gateway's lease, renewed while it lives |
//! | `nodes` | hash | gateway node id → when it last renewed its lease (ms, Redis's clock) |
//! | `node_users:{id}` | set | users with a connection counted on that node |
//! | `node_swept:{id}` | hash, 1 day TTL | user → their connections on a lapsed node, moved out of `presence:{user}` by a sweep |
//! | `last_seen:{user}` | string | when the user's last connection on a node closed (ms) |
//!
//! The scripts touch keys they compute (a node's lease), so they need a
//! single Redis (or one hash slot), not a cluster.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::{Script, ScriptInvocation};
use tracing::warn;

use crate::store::{
    Appended, Direct, FrameText, HistoryEntry, InboxEntry, MessageStore, Presence, StoreError,
    Swept, Unread, conversation,
};

/// How long one store call may take before it counts as unavailable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

const APPEND: &str = r#"
-- KEYS: seq_r inbox_r offline_r unread_r conv presence_r chan_r seq_s inbox_s chan_s
-- ARGV: sender maxlen envelope head tail typed history node_prefix copy offline_max self
local function render(seq)
  if ARGV[6] == '1' then return ARGV[4] .. seq .. ARGV[5] end
  return ARGV[4]
end
local seq_r = redis.call('INCR', KEYS[1])
local frame_r = render(seq_r)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '0-' .. seq_r, 'f', frame_r)
local unread = -1
if ARGV[11] ~= '1' then unread = redis.call('HINCRBY', KEYS[4], ARGV[1], 1) end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[7])
local online = live_total(KEYS[6], ARGV[8]) > 0
if not online then
  redis.call('RPUSH', KEYS[3], seq_r .. ' ' .. frame_r)
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[10]), -1)
end
redis.call('PUBLISH', KEYS[7], ARGV[3] .. frame_r)
if unread >= 0 then
  -- names are [A-Za-z0-9_.-]: safe inside a JSON string as they are
  redis.call('PUBLISH', KEYS[7], ARGV[3] .. '{"type":"unread","counts":{"' .. ARGV[1] .. '":' .. unread .. '}}')
end
local seq_s = 0
if ARGV[9] == '1' then
  seq_s = redis.call('INCR', KEYS[8])
  local frame_s = render(seq_s)
  redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[2], '0-' .. seq_s, 'f', frame_s)
  redis.call('PUBLISH', KEYS[10], ARGV[3] .. frame_s)
end
if online then return {seq_r, seq_s, 0} end
return {seq_r, seq_s, 1}
"#;

const TAKE_OFFLINE: &str = r#"
local items = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return items
"#;

const MARK_READ: &str = r#"
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"#;

/// Presence frames for watchers, written by the scripts (user names are
/// `[A-Za-z0-9_.-]`: safe inside a JSON string as they are; the store
/// contract test pins them to `ServerFrame::Presence`), and Redis's clock.
const PRESENCE_FRAMES: &str = r#"
-- TIME and SPOP come before writes: replicate effects (the default since Redis 5).
redis.replicate_commands()
local function offline_frame(user, last_seen)
  return '{"type":"presence","user":"' .. user .. '","online":false,"last_seen":' .. last_seen .. '}'
end
local function online_frame(user)
  return '{"type":"presence","user":"' .. user .. '","online":true}'
end
local function now_ms()
  local t = redis.call('TIME')
  return t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
end
"#;

/// Sums a user's connections on live nodes (`node_prefix` .. id has a lease).
const LIVE_TOTAL: &str = r#"
local function live_total(presence_key, node_prefix)
  local total = 0
  local presence = redis.call('HGETALL', presence_key)
  for i = 1, #presence, 2 do
    local n = tonumber(presence[i + 1])
    if n > 0 and redis.call('EXISTS', node_prefix .. presence[i]) == 1 then total = total + n end
  end
  return total
end
"#;

/// What every presence script does first, as this node: renew its lease,
/// and if a sweep took its users while it was cut off from Redis, take them
/// back (their counts on this node), announcing online again those nobody
/// else counted meanwhile. Common keys: lease, nodes, node_users,
/// node_swept; common arguments: node, lease_ms, node_prefix,
/// presence_prefix, watch_prefix, envelope. Answers how many it took back.
const REVIVE: &str = r#"
local function revive()
  redis.call('SET', KEYS[1], 1, 'PX', ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[1], now_ms())
  local swept = redis.call('HGETALL', KEYS[4])
  if #swept == 0 then return 0 end
  redis.call('DEL', KEYS[4])
  for i = 1, #swept, 2 do
    local user, n = swept[i], tonumber(swept[i + 1])
    local presence_key = ARGV[4] .. user
    local here = redis.call('HINCRBY', presence_key, ARGV[1], n)
    redis.call('SADD', KEYS[3], user)
    if live_total(presence_key, ARGV[3]) == here then
      redis.call('PUBLISH', ARGV[5] .. user, ARGV[6] .. online_frame(user))
    end
  end
  return #swept / 2
end
"#;

/// Counts a connection in; a user's first anywhere is announced in the
/// same step, so watchers see announcements in the order of the counts.
const CONNECTED: &str = r#"
-- KEYS: (common) presence ; ARGV: (common) user
revive()
redis.call('SADD', KEYS[3], ARGV[7])
redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
local total = live_total(KEYS[5], ARGV[3])
if total == 1 then redis.call('PUBLISH', ARGV[5] .. ARGV[7], ARGV[6] .. online_frame(ARGV[7])) end
return total
"#;

/// Counts a connection out; a user's last anywhere sets their last-seen and
/// is announced in the same step.
const DISCONNECTED: &str = r#"
-- KEYS: (common) presence last_seen ; ARGV: (common) user
revive()
local left = redis.call('HINCRBY', KEYS[5], ARGV[1], -1)
if left <= 0 then
  redis.call('HDEL', KEYS[5], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[7])
end
local total = live_total(KEYS[5], ARGV[3])
if total == 0 then
  local now = now_ms()
  redis.call('SET', KEYS[6], now)
  redis.call('PUBLISH', ARGV[5] .. ARGV[7], ARGV[6] .. offline_frame(ARGV[7], now))
end
return total
"#;

/// Finds other nodes whose lease lapsed and hands out their users, at most
/// `batch` per call (`SPOP`: each user to one sweeper only); a
/// user counted on no live node any more is announced offline, last seen
/// when their node last renewed. Their counts on that node move to
/// `node_swept:{id}` (one day), so a node that was only cut off from Redis
/// takes them back the next time it touches Redis (`revive`), and a dead
/// node leaves nothing behind in the presence hashes. Publishing here, in
/// the same atomic step, keeps the announcement in order with a reconnect.
/// Answers whether users are left for another call, and who was announced.
const SWEEP: &str = r#"
-- KEYS: nodes ; ARGV: node_prefix users_prefix swept_prefix presence_prefix
--   last_seen_prefix watch_prefix envelope batch self swept_ttl_s
local swept, more, budget = {}, 0, tonumber(ARGV[8])
local nodes = redis.call('HGETALL', KEYS[1])
for i = 1, #nodes, 2 do
  local node, renewed = nodes[i], nodes[i + 1]
  if budget <= 0 then
    more = 1
    break
  end
  if node ~= ARGV[9] and redis.call('EXISTS', ARGV[1] .. node) == 0 then
    local users_key = ARGV[2] .. node
    local users = redis.call('SPOP', users_key, budget)
    budget = budget - #users
    for _, user in ipairs(users) do
      local presence_key = ARGV[4] .. user
      local n = tonumber(redis.call('HGET', presence_key, node) or '0')
      if n > 0 then
        redis.call('HDEL', presence_key, node)
        redis.call('HSET', ARGV[3] .. node, user, n)
        redis.call('EXPIRE', ARGV[3] .. node, ARGV[10])
      end
      if live_total(presence_key, ARGV[1]) == 0 then
        local seen = tonumber(redis.call('GET', ARGV[5] .. user) or '0')
        -- A clean goodbye elsewhere may already have said offline, later.
        if seen <= tonumber(renewed) then
          redis.call('SET', ARGV[5] .. user, renewed)
          redis.call('PUBLISH', ARGV[6] .. user, ARGV[7] .. offline_frame(user, renewed))
          table.insert(swept, user)
          table.insert(swept, renewed)
        end
      end
    end
    if redis.call('SCARD', users_key) == 0 then
      redis.call('HDEL', KEYS[1], node)
    else
      more = 1
    end
  end
end
return {more, swept}
"#;

/// Renews the node's lease (every third of it); see `revive`.
const RENEW: &str = r#"
-- KEYS: (common) ; ARGV: (common)
return revive()
"#;

/// How long a lapsed node's swept users are kept for it to take back.
const SWEPT_TTL_SECS: u64 = 24 * 60 * 60;

/// Users handed out per sweep call: bounds how long one call holds Redis.
const SWEEP_BATCH: usize = 500;

const PRESENCE: &str = r#"
local online = 0
if live_total(KEYS[1], ARGV[1]) > 0 then online = 1 end
return {online, redis.call('GET', KEYS[2])}
"#;

/// How the Redis store is set up.
#[derive(Clone, Debug)]
pub struct RedisStoreOptions {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prepended to every key and channel.
    pub prefix: String,
    /// Entries an inbox or conversation keeps (approximately; older ones are trimmed).
    pub max_len: u64,
    /// Entries an offline list keeps.
    pub offline_max: u64,
    /// How long this node's presence lease lasts without renewal (renewed
    /// every third of it): a crashed node's users count as offline after it.
    pub lease: Duration,
}

struct Inner {
    redis: redis::aio::ConnectionManager,
    prefix: String,
    node: String,
    max_len: u64,
    offline_max: u64,
    lease: Duration,
    append: Script,
    take_offline: Script,
    mark_read: Script,
    connected: Script,
    disconnected: Script,
    sweep: Script,
    renew: Script,
    presence: Script,
}

/// The Redis message store of one gateway node. Dropping it stops renewing
/// the node's presence lease.
pub struct RedisStore {
    inner: Arc<Inner>,
    lease: tokio::task::JoinHandle<()>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.lease.abort();
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

impl RedisStore {
    /// A store for the node `node` (unique per gateway process). Connects
    /// lazily; must be called inside a tokio runtime.
    pub fn start(options: RedisStoreOptions) -> Result<Self, StoreError> {
        let redis = chat_broker::redis::command_connection(&options.url)
            .map_err(StoreError::Unavailable)?;
        let inner = Arc::new(Inner {
            redis,
            prefix: options.prefix,
            node: ulid::Ulid::new().to_string(),
            max_len: options.max_len,
            offline_max: options.offline_max,
            lease: options.lease,
            append: Script::new(&format!("{LIVE_TOTAL}{APPEND}")),
            take_offline: Script::new(TAKE_OFFLINE),
            mark_read: Script::new(MARK_READ),
            connected: Script::new(&format!("{PRESENCE_FRAMES}{LIVE_TOTAL}{REVIVE}{CONNECTED}")),
            disconnected: Script::new(&format!(
                "{PRESENCE_FRAMES}{LIVE_TOTAL}{REVIVE}{DISCONNECTED}"
            )),
            sweep: Script::new(&format!("{PRESENCE_FRAMES}{LIVE_TOTAL}{SWEEP}")),
            renew: Script::new(&format!("{PRESENCE_FRAMES}{LIVE_TOTAL}{REVIVE}{RENEW}")),
            presence: Script::new(&format!("{LIVE_TOTAL}{PRESENCE}")),
        });
        let lease = tokio::spawn(renew_lease(Arc::clone(&inner)));
        Ok(Self { inner, lease })
    }

    /// This node's id in presence hashes.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Renews this node's presence lease now (a background task does it
    /// every third of the lease). If the lease had lapsed and the node's
    /// users were swept, takes them back and announces them online again;
    /// answers how many it took back.
    pub async fn renew(&self) -> Result<u64, StoreError> {
        renew(&self.inner).await
    }
}

impl Inner {
    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    fn conn(&self) -> redis::aio::ConnectionManager {
        self.redis.clone()
    }

    /// Adds the keys and arguments every presence script starts with (see
    /// `REVIVE`); a script's own keys and arguments follow.
    fn as_node<'s, 'c>(&self, call: &'c mut ScriptInvocation<'s>) -> &'c mut ScriptInvocation<'s> {
        call.key(self.key("node", &self.node))
            .key(format!("{}nodes", self.prefix))
            .key(self.key("node_users", &self.node))
            .key(self.key("node_swept", &self.node))
            .arg(&self.node)
            .arg(self.lease.as_millis() as u64)
            .arg(format!("{}node:", self.prefix))
            .arg(format!("{}presence:", self.prefix))
            .arg(self.watch_prefix())
            .arg(chat_broker::envelope::text_header())
    }

    /// `watch:` channels, prefixed as the broker publishes them.
    fn watch_prefix(&self) -> String {
        format!("{}{}", self.prefix, chat_broker::channel::watch(""))
    }
}

/// Keeps `node:{id}` alive while the node runs; a crashed node's users then
/// count as offline once the lease lapses (and are announced by a sweep).
async fn renew_lease(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.lease / 3);
    loop {
        tick.tick().await;
        match renew(&inner).await {
            Ok(0) => {}
            Ok(back) => warn!(
                users = back,
                "this node's presence lease had lapsed (Redis out of reach for longer than the lease?) \
                 and its users were announced offline; counted and announced again"
            ),
            Err(e) => warn!(error = %e, "cannot renew the presence lease"),
        }
    }
}

/// Renews the lease once; how many swept users the node took back.
async fn renew(inner: &Arc<Inner>) -> Result<u64, StoreError> {
    with_conn(inner, "lease", move |inner, mut conn| async move {
        let mut call = inner.renew.prepare_invoke();
        inner.as_node(&mut call);
        call.invoke_async(&mut conn).await
    })
    .await
}

/// Runs `f` with a connection, bounded by [`COMMAND_TIMEOUT`].
fn with_conn<T, F, Fut>(
    inner: &Arc<Inner>,
    what: &'static str,
    f: F,
) -> BoxFuture<'static, Result<T, StoreError>>
where
    T: Send + 'static,
    F: FnOnce(Arc<Inner>, redis::aio::ConnectionManager) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = redis::RedisResult<T>> + Send,
{
    let inner = Arc::clone(inner);
    async move {
        let attempt = async {
            let conn = inner.conn();
            f(Arc::clone(&inner), conn)
                .await
                .map_err(|e| unavailable(what, e))
        };
        tokio::time::timeout(COMMAND_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|e| Err(unavailable(what, e)))
    }
    .boxed()
}

fn inbox_entries(raw: Vec<(String, Vec<(String, String)>)>) -> Vec<InboxEntry> {
    raw.into_iter()
        .filter_map(|(id, fields)| {
            let seq = id.strip_prefix("0-")?.parse().ok()?;
            let frame = fields.into_iter().find(|(k, _)| k == "f")?.1;
            Some(InboxEntry { seq, frame })
        })
        .collect()
}

fn unread_map(flat: Vec<(String, u64)>) -> Unread {
    flat.into_iter().filter(|(_, n)| *n > 0).collect()
}

impl MessageStore for RedisStore {
    fn append_direct(&self, message: Direct) -> BoxFuture<'static, Result<Appended, StoreError>> {
        with_conn(&self.inner, "append", move |inner, mut conn| async move {
            let (a, b) = conversation(&message.from, &message.to);
            let (head, tail, typed) = match &message.frame {
                FrameText::Seed(text) => (text.as_str(), "", "0"),
                FrameText::Typed { head, tail } => (head.as_str(), tail.as_str(), "1"),
            };
            let to_self = message.from == message.to;
            let copy = message.copy_to_sender && !to_self;
            let (seq_r, seq_s, offline): (u64, u64, u64) = inner
                .append
                .key(inner.key("seq", &message.to))
                .key(inner.key("inbox", &message.to))
                .key(inner.key("offline", &message.to))
                .key(inner.key("unread", &message.to))
                .key(inner.key("conv", &format!("{a}:{b}")))
                .key(inner.key("presence", &message.to))
                .key(format!(
                    "{}{}",
                    inner.prefix,
                    chat_broker::channel::user(&message.to)
                ))
                .key(inner.key("seq", &message.from))
                .key(inner.key("inbox", &message.from))
                .key(format!(
                    "{}{}",
                    inner.prefix,
                    chat_broker::channel::user(&message.from)
                ))
                .arg(&message.from)
                .arg(inner.max_len)
                .arg(&message.envelope_header[..])
                .arg(head)
                .arg(tail)
                .arg(typed)
                .arg(&message.history)
                .arg(format!("{}node:", inner.prefix))
                .arg(if copy { "1" } else { "0" })
                .arg(inner.offline_max)
                .arg(if to_self { "1" } else { "0" })
                .invoke_async(&mut conn)
                .await?;
            Ok(Appended {
                receiver_seq: seq_r,
                sender_seq: copy.then_some(seq_s),
                offline: offline == 1,
            })
        })
    }

    fn inbox_since(
        &self,
        user: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<InboxEntry>, StoreError>> {
        let key = self.inner.key("inbox", user);
        with_conn(&self.inner, "XRANGE", move |_, mut conn| async move {
            let raw: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(&key)
                .arg(format!("(0-{after}"))
                .arg("+")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut conn)
                .await?;
            Ok(inbox_entries(raw))
        })
    }

    fn take_offline(&self, user: &str) -> BoxFuture<'static, Result<Vec<InboxEntry>, StoreError>> {
        let key = self.inner.key("offline", user);
        with_conn(
            &self.inner,
            "take offline",
            move |inner, mut conn| async move {
                let items: Vec<String> =
                    inner.take_offline.key(&key).invoke_async(&mut conn).await?;
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
        let key = self.inner.key("unread", user);
        with_conn(&self.inner, "HGETALL", move |_, mut conn| async move {
            let flat: Vec<(String, u64)> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await?;
            Ok(unread_map(flat))
        })
    }

    fn mark_read(
        &self,
        reader: &str,
        peer: &str,
        up_to: &str,
    ) -> BoxFuture<'static, Result<Unread, StoreError>> {
        let unread = self.inner.key("unread", reader);
        let read = self.inner.key("read", reader);
        let (peer, up_to) = (peer.to_owned(), up_to.to_owned());
        with_conn(
            &self.inner,
            "mark read",
            move |inner, mut conn| async move {
                let flat: Vec<(String, u64)> = inner
                    .mark_read
                    .key(&unread)
                    .key(&read)
                    .arg(&peer)
                    .arg(&up_to)
                    .invoke_async(&mut conn)
                    .await?;
                Ok(unread_map(flat))
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
        let (a, b) = conversation(a, b);
        let key = self.inner.key("conv", &format!("{a}:{b}"));
        let end = before.map_or_else(|| "+".to_owned(), |c| format!("({c}"));
        with_conn(&self.inner, "XREVRANGE", move |_, mut conn| async move {
            let raw: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
                .arg(&key)
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut conn)
                .await?;
            Ok(raw
                .into_iter()
                .filter_map(|(cursor, fields)| {
                    let message = fields.into_iter().find(|(k, _)| k == "m")?.1;
                    Some(HistoryEntry { cursor, message })
                })
                .collect())
        })
    }

    fn connected(&self, user: &str) -> BoxFuture<'static, Result<bool, StoreError>> {
        let key = self.inner.key("presence", user);
        let user = user.to_owned();
        with_conn(&self.inner, "presence", move |inner, mut conn| async move {
            // The lease is renewed too, so a fresh node counts at once.
            let mut call = inner.connected.prepare_invoke();
            inner.as_node(&mut call).key(&key).arg(&user);
            let total: i64 = call.invoke_async(&mut conn).await?;
            Ok(total == 1)
        })
    }

    fn disconnected(&self, user: &str) -> BoxFuture<'static, Result<bool, StoreError>> {
        let key = self.inner.key("presence", user);
        let seen = self.inner.key("last_seen", user);
        let user = user.to_owned();
        with_conn(&self.inner, "presence", move |inner, mut conn| async move {
            let mut call = inner.disconnected.prepare_invoke();
            inner.as_node(&mut call).key(&key).key(&seen).arg(&user);
            let total: i64 = call.invoke_async(&mut conn).await?;
            Ok(total == 0)
        })
    }

    fn sweep(&self) -> BoxFuture<'static, Result<Vec<Swept>, StoreError>> {
        let inner = Arc::clone(&self.inner);
        async move {
            let mut swept = Vec::new();
            // One bounded call at a time: what a call announced stays
            // announced even if a later one fails.
            loop {
                let (more, batch): (u8, Vec<(String, u64)>) =
                    with_conn(&inner, "sweep", move |inner, mut conn| async move {
                        inner
                            .sweep
                            .key(format!("{}nodes", inner.prefix))
                            .arg(format!("{}node:", inner.prefix))
                            .arg(format!("{}node_users:", inner.prefix))
                            .arg(format!("{}node_swept:", inner.prefix))
                            .arg(format!("{}presence:", inner.prefix))
                            .arg(format!("{}last_seen:", inner.prefix))
                            .arg(inner.watch_prefix())
                            .arg(chat_broker::envelope::text_header())
                            .arg(SWEEP_BATCH)
                            .arg(&inner.node)
                            .arg(SWEPT_TTL_SECS)
                            .invoke_async(&mut conn)
                            .await
                    })
                    .await?;
                swept.extend(
                    batch
                        .into_iter()
                        .map(|(user, last_seen)| Swept { user, last_seen }),
                );
                if more == 0 {
                    return Ok(swept);
                }
            }
        }
        .boxed()
    }

    fn presence(&self, user: &str) -> BoxFuture<'static, Result<Presence, StoreError>> {
        let key = self.inner.key("presence", user);
        let seen = self.inner.key("last_seen", user);
        with_conn(&self.inner, "presence", move |inner, mut conn| async move {
            let (online, last_seen): (u8, Option<u64>) = inner
                .presence
                .key(&key)
                .key(&seen)
                .arg(format!("{}node:", inner.prefix))
                .invoke_async(&mut conn)
                .await?;
            Ok(Presence {
                online: online == 1,
                last_seen,
            })
        })
    }

    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        with_conn(&self.inner, "PING", move |_, mut conn| async move {
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map(drop)
        })
    }
}
