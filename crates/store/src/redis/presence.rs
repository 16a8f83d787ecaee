//! Presence on Redis: gateway nodes count their connections under a lease
//! ([`RedisNode`]); anyone may read a user's state ([`RedisPresence`]).
//!
//! Each node renews `node:{id}` every third of its lease and notes the time
//! in the `nodes` hash; per-user counts live in `presence:{user}` by node.
//! A node that dies without a word stops renewing; once its lease lapses
//! its users stop counting, and every node's sweeper (every third of the
//! lease) looks for such nodes and announces their users offline, each
//! once (see `lua/sweep.lua`). A node that was only cut off from Redis
//! takes its users back when it next renews (`revive` in `lua/prelude.lua`).
//!
//! On a Redis Cluster (a `redis+cluster://` URL) the same happens in two
//! single-slot steps per change, the node's and the user's: `cluster.rs`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use chat_broker::redis::Connection;
use futures_util::future::BoxFuture;
use tracing::{debug, warn};

mod cluster;

use super::script::{Call, Loaded, Lua, flag, lua};
use super::{Keys, with_conn};
use crate::StoreError;
use crate::presence::{ConnId, Presence, PresenceNode, PresenceState, Swept};

/// How long a lapsed node's swept users are kept for it to take back.
const SWEPT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Users handed out per sweep call: bounds how long one call holds Redis.
const SWEEP_BATCH: usize = 500;

/// How a Redis presence node is set up.
#[derive(Clone, Debug)]
pub struct RedisNodeOptions {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prepended to every key and channel.
    pub prefix: String,
    /// How long this node's lease lasts without renewal (renewed, and
    /// other nodes swept, every third of it): a crashed node's users count
    /// as offline after it (`CHAT_PRESENCE_LEASE`).
    pub lease: Duration,
}

/// The keys and arguments every node script starts with (see `revive`).
struct NodeValues {
    lease: String,
    nodes: String,
    node_users: String,
    node_swept: String,
    node_conns: String,
    node: String,
    lease_ms: u64,
    node_prefix: String,
    presence_prefix: String,
    watch_prefix: String,
    envelope: Vec<u8>,
    webhooks: String,
    events: bool,
}

impl NodeValues {
    /// The webhooks stream: each script names it after its own keys.
    fn webhooks_key(&self, call: &mut Call) {
        call.key("webhooks", &self.webhooks);
    }

    /// Whether presence events are queued: each script's last argument.
    fn events_arg(&self, call: &mut Call) {
        call.arg("events", flag(self.events));
    }

    fn keys(&self, call: &mut Call) {
        call.key("lease", &self.lease)
            .key("nodes", &self.nodes)
            .key("node_users", &self.node_users)
            .key("node_swept", &self.node_swept)
            .key("node_conns", &self.node_conns);
    }

    fn args(&self, call: &mut Call) {
        call.arg("node_id", &self.node)
            .arg("lease_ms", self.lease_ms)
            .arg("node_prefix", &self.node_prefix)
            .arg("presence_prefix", &self.presence_prefix)
            .arg("watch_prefix", &self.watch_prefix)
            .arg("envelope", &self.envelope[..]);
    }
}

/// `connected.lua`: counts a connection in.
struct Connected {
    node: NodeValues,
    presence: String,
    user: String,
    conn: ConnId,
}

impl Lua for Connected {
    const NAME: &'static str = "connected";
    const SOURCE: &'static str = lua!("connected");

    fn push(&self, call: &mut Call) {
        self.node.keys(call);
        call.key("presence", &self.presence);
        self.node.webhooks_key(call);
        self.node.args(call);
        call.arg("user", &self.user).arg("conn", self.conn);
        self.node.events_arg(call);
    }
}

/// `disconnected.lua`: counts a connection out.
struct Disconnected {
    node: NodeValues,
    presence: String,
    last_seen: String,
    user: String,
    conn: ConnId,
}

impl Lua for Disconnected {
    const NAME: &'static str = "disconnected";
    const SOURCE: &'static str = lua!("disconnected");

    fn push(&self, call: &mut Call) {
        self.node.keys(call);
        call.key("presence", &self.presence)
            .key("last_seen", &self.last_seen);
        self.node.webhooks_key(call);
        self.node.args(call);
        call.arg("user", &self.user).arg("conn", self.conn);
        self.node.events_arg(call);
    }
}

/// `renew.lua`: renews the lease.
struct Renew {
    node: NodeValues,
}

impl Lua for Renew {
    const NAME: &'static str = "renew";
    const SOURCE: &'static str = lua!("renew");

    fn push(&self, call: &mut Call) {
        // renew.lua names only the first four common keys and the node_conns
        // key (to make it live again): the common set.
        self.node.keys(call);
        self.node.webhooks_key(call);
        self.node.args(call);
        self.node.events_arg(call);
    }
}

/// `sweep.lua`: announces the users of lapsed nodes.
struct Sweep {
    nodes: String,
    node_prefix: String,
    users_prefix: String,
    swept_prefix: String,
    conns_prefix: String,
    presence_prefix: String,
    last_seen_prefix: String,
    watch_prefix: String,
    envelope: Vec<u8>,
    batch: usize,
    self_id: String,
    swept_ttl_s: u64,
    webhooks: String,
    events: bool,
}

impl Lua for Sweep {
    const NAME: &'static str = "sweep";
    const SOURCE: &'static str = lua!("sweep");

    fn push(&self, call: &mut Call) {
        call.key("nodes", &self.nodes)
            .key("webhooks", &self.webhooks)
            .arg("node_prefix", &self.node_prefix)
            .arg("users_prefix", &self.users_prefix)
            .arg("swept_prefix", &self.swept_prefix)
            .arg("conns_prefix", &self.conns_prefix)
            .arg("presence_prefix", &self.presence_prefix)
            .arg("last_seen_prefix", &self.last_seen_prefix)
            .arg("watch_prefix", &self.watch_prefix)
            .arg("envelope", &self.envelope[..])
            .arg("batch", self.batch)
            .arg("self_id", &self.self_id)
            .arg("swept_ttl_s", self.swept_ttl_s)
            .arg("events", flag(self.events));
    }
}

/// `presence.lua`: a user's state.
struct StateOf {
    presence: String,
    last_seen: String,
    node_prefix: String,
}

impl Lua for StateOf {
    const NAME: &'static str = "presence";
    const SOURCE: &'static str = lua!("presence");

    fn push(&self, call: &mut Call) {
        call.key("presence", &self.presence)
            .key("last_seen", &self.last_seen)
            .arg("node_prefix", &self.node_prefix);
    }
}

/// Reads presence from Redis: what the `presence` service runs. It is not
/// a node: it holds no lease and counts no connections. Cloning shares it.
#[derive(Clone)]
pub struct RedisPresence {
    reader: Arc<Reader>,
}

struct Reader {
    redis: Connection,
    keys: Keys,
    state: Loaded<StateOf>,
}

impl RedisPresence {
    /// A reader of the presence kept under `prefix`. Connects lazily; must
    /// be called inside a tokio runtime.
    ///
    /// Errors: `url` is not a Redis URL (or cluster URL).
    pub fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let redis = chat_broker::redis::command_connection(url).map_err(StoreError::Unavailable)?;
        Ok(Self::on(redis, prefix))
    }

    /// A reader on an existing command connection.
    pub fn on(redis: Connection, prefix: &str) -> Self {
        Self {
            reader: Arc::new(Reader {
                keys: Keys::new(prefix, redis.is_cluster()),
                redis,
                state: Loaded::new(),
            }),
        }
    }
}

impl Presence for RedisPresence {
    fn connections(&self) -> BoxFuture<'static, Result<Vec<crate::NodeConnections>, StoreError>> {
        let keys = self.reader.keys.clone();
        with_conn(
            &self.reader,
            &self.reader.redis,
            "connections",
            move |_, mut conn| async move {
                let nodes: Vec<String> = redis::cmd("HKEYS")
                    .arg(keys.single("nodes"))
                    .query_async(&mut conn)
                    .await?;
                // For every node: its lease, its connections, its users (a
                // set on one Redis, a hash of counts on a cluster).
                let groups = nodes.iter().map(|node| {
                    let mut pipe = redis::pipe();
                    pipe.cmd("EXISTS").arg(keys.node("node", node));
                    pipe.cmd("SCARD").arg(keys.node("node_conns", node));
                    if keys.cluster() {
                        pipe.cmd("HLEN").arg(keys.node("node_counts", node));
                    } else {
                        pipe.cmd("SCARD").arg(keys.node("node_users", node));
                    }
                    pipe
                });
                let counts = super::grouped::<(u8, u64, u64)>(&conn, groups.collect()).await?;
                // A node whose lease lapsed holds nothing any more (its
                // users are swept).
                let live = nodes
                    .into_iter()
                    .zip(counts)
                    .filter(|(_, (lease, _, _))| *lease == 1)
                    .map(|(node, (_, connections, users))| crate::NodeConnections {
                        node,
                        connections,
                        users,
                    })
                    .collect();
                Ok(live)
            },
        )
    }

    fn state(&self, user: &str) -> BoxFuture<'static, Result<PresenceState, StoreError>> {
        let keys = &self.reader.keys;
        let call = StateOf {
            presence: keys.user("presence", user),
            last_seen: keys.user("last_seen", user),
            // On a cluster the leases are in other slots: every count
            // counts until a sweep takes a lapsed node's out.
            node_prefix: if keys.cluster() {
                String::new()
            } else {
                keys.prefix_of("node")
            },
        };
        with_conn(
            &self.reader,
            &self.reader.redis,
            "presence",
            move |reader, mut conn| async move {
                let (online, last_seen): (u8, Option<u64>) =
                    reader.state.invoke(&call, &mut conn).await?;
                Ok(PresenceState {
                    online: online == 1,
                    last_seen,
                })
            },
        )
    }

    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        super::ping(&self.reader.redis)
    }
}

struct Node {
    reader: RedisPresence,
    redis: Connection,
    keys: Keys,
    id: String,
    lease: Duration,
    connected: Loaded<Connected>,
    disconnected: Loaded<Disconnected>,
    renew: Loaded<Renew>,
    sweep: Loaded<Sweep>,
    /// Whether `user.online` / `user.offline` webhook events are queued.
    events: std::sync::atomic::AtomicBool,
}

/// A gateway node's presence on Redis: counts its connections under its
/// lease, renews the lease and sweeps lapsed nodes in the background until
/// dropped (as a killed process would stop: without a word).
pub struct RedisNode {
    node: Arc<Node>,
    background: tokio::task::JoinHandle<()>,
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.background.abort();
    }
}

impl RedisNode {
    /// A new node (a fresh id) on `options.url`. Connects lazily; must be
    /// called inside a tokio runtime.
    pub fn start(options: RedisNodeOptions) -> Result<Self, StoreError> {
        let redis = chat_broker::redis::command_connection(&options.url)
            .map_err(StoreError::Unavailable)?;
        Ok(Self::on(redis, &options.prefix, options.lease))
    }

    /// A new node on an existing command connection (shared with the
    /// message store).
    pub fn on(redis: Connection, prefix: &str, lease: Duration) -> Self {
        let reader = RedisPresence::on(redis, prefix);
        let node = Arc::new(Node {
            redis: reader.reader.redis.clone(),
            keys: reader.reader.keys.clone(),
            reader,
            id: ulid::Ulid::new().to_string(),
            lease,
            connected: Loaded::new(),
            disconnected: Loaded::new(),
            renew: Loaded::new(),
            sweep: Loaded::new(),
            events: std::sync::atomic::AtomicBool::new(false),
        });
        let background = tokio::spawn(keep_alive(Arc::downgrade(&node), lease / 3));
        Self { node, background }
    }

    /// This node's id in presence hashes.
    pub fn id(&self) -> &str {
        &self.node.id
    }

    /// Renews this node's lease now (the background task does it every
    /// third of the lease). If the lease had lapsed and a sweep took the
    /// node's users, takes them back and announces them online again;
    /// answers how many it took back.
    pub async fn renew(&self) -> Result<u64, StoreError> {
        self.node.renew().await
    }

    /// Announces to their watchers the users whose node died without a
    /// word (its lease lapsed), last seen when that node was last alive,
    /// and answers who they were. Each such user is announced once, by
    /// whichever node sweeps first (the background task sweeps every third
    /// of the lease).
    pub async fn sweep(&self) -> Result<Vec<Swept>, StoreError> {
        self.node.sweep().await
    }
}

impl Node {
    fn values(&self) -> NodeValues {
        let keys = &self.keys;
        NodeValues {
            lease: keys.node("node", &self.id),
            nodes: keys.single("nodes"),
            node_users: keys.node("node_users", &self.id),
            node_swept: keys.node("node_swept", &self.id),
            node_conns: keys.node("node_conns", &self.id),
            node: self.id.clone(),
            lease_ms: self.lease.as_millis() as u64,
            node_prefix: keys.prefix_of("node"),
            presence_prefix: keys.prefix_of("presence"),
            watch_prefix: keys.channel(&chat_broker::channel::watch("")),
            envelope: chat_broker::envelope::text_header(),
            webhooks: keys.queue("webhooks"),
            events: self.events.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn sweep_call(&self) -> Sweep {
        let keys = &self.keys;
        Sweep {
            nodes: keys.single("nodes"),
            node_prefix: keys.prefix_of("node"),
            users_prefix: keys.prefix_of("node_users"),
            swept_prefix: keys.prefix_of("node_swept"),
            conns_prefix: keys.prefix_of("node_conns"),
            presence_prefix: keys.prefix_of("presence"),
            last_seen_prefix: keys.prefix_of("last_seen"),
            watch_prefix: keys.channel(&chat_broker::channel::watch("")),
            envelope: chat_broker::envelope::text_header(),
            batch: SWEEP_BATCH,
            self_id: self.id.clone(),
            swept_ttl_s: SWEPT_TTL.as_secs(),
            webhooks: keys.queue("webhooks"),
            events: self.events.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    async fn renew(self: &Arc<Self>) -> Result<u64, StoreError> {
        if self.keys.cluster() {
            return self.renew_on_cluster().await;
        }
        let call = Renew {
            node: self.values(),
        };
        with_conn(
            self,
            &self.redis,
            "lease",
            move |node, mut conn| async move { node.renew.invoke(&call, &mut conn).await },
        )
        .await
    }

    async fn sweep(self: &Arc<Self>) -> Result<Vec<Swept>, StoreError> {
        if self.keys.cluster() {
            return self.sweep_on_cluster().await;
        }
        let mut swept = Vec::new();
        // One bounded call at a time: what a call announced stays announced
        // even if a later one fails.
        loop {
            let call = self.sweep_call();
            let (more, batch): (u8, Vec<(String, u64)>) = with_conn(
                self,
                &self.redis,
                "sweep",
                move |node, mut conn| async move { node.sweep.invoke(&call, &mut conn).await },
            )
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
}

/// Renews the node's lease and sweeps lapsed nodes every `every`, until the
/// node is dropped.
async fn keep_alive(node: Weak<Node>, every: Duration) {
    // The first renewal is the node's first count (every script renews).
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        match node.renew().await {
            Ok(0) => {}
            Ok(back) => warn!(
                users = back,
                "this node's presence lease had lapsed (Redis out of reach for longer than the lease?) \
                 and its users were announced offline; counted and announced again"
            ),
            Err(e) => warn!(error = %e, "cannot renew the presence lease"),
        }
        match node.sweep().await {
            Ok(swept) if !swept.is_empty() => {
                debug!(
                    users = swept.len(),
                    "announced offline: their gateway's lease lapsed"
                );
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot sweep the presence of crashed gateways"),
        }
    }
}

impl Presence for RedisNode {
    fn state(&self, user: &str) -> BoxFuture<'static, Result<PresenceState, StoreError>> {
        self.node.reader.state(user)
    }

    fn connections(&self) -> BoxFuture<'static, Result<Vec<crate::NodeConnections>, StoreError>> {
        self.node.reader.connections()
    }

    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.node.reader.check()
    }
}

impl PresenceNode for RedisNode {
    fn queue_presence_events(&self, _queue: Arc<dyn crate::WebhookQueue>) {
        // The scripts queue them on the store's stream, in their own step.
        let on = &self.node.events;
        on.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn connected(&self, user: &str, conn: ConnId) -> BoxFuture<'static, Result<bool, StoreError>> {
        if self.node.keys.cluster() {
            let (node, user) = (Arc::clone(&self.node), user.to_owned());
            return Box::pin(async move { node.connected_on_cluster(user, conn).await });
        }
        let call = Connected {
            node: self.node.values(),
            presence: self.node.keys.user("presence", user),
            user: user.to_owned(),
            conn,
        };
        with_conn(
            &self.node,
            &self.node.redis,
            "presence",
            move |node, mut conn| async move {
                // The lease is renewed too, so a fresh node counts at once.
                let (total, counted_in): (i64, u8) =
                    node.connected.invoke(&call, &mut conn).await?;
                Ok(total == 1 && counted_in == 1)
            },
        )
    }

    fn disconnected(
        &self,
        user: &str,
        conn: ConnId,
    ) -> BoxFuture<'static, Result<bool, StoreError>> {
        if self.node.keys.cluster() {
            let (node, user) = (Arc::clone(&self.node), user.to_owned());
            return Box::pin(async move { node.disconnected_on_cluster(user, conn).await });
        }
        let call = Disconnected {
            node: self.node.values(),
            presence: self.node.keys.user("presence", user),
            last_seen: self.node.keys.user("last_seen", user),
            user: user.to_owned(),
            conn,
        };
        with_conn(
            &self.node,
            &self.node.redis,
            "presence",
            move |node, mut conn| async move {
                let (total, counted_out): (i64, u8) =
                    node.disconnected.invoke(&call, &mut conn).await?;
                Ok(total == 0 && counted_out == 1)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::script::legend;

    #[tokio::test]
    async fn every_presence_script_is_called_as_its_legend_says() {
        let node = RedisNode {
            node: Arc::new(Node {
                reader: RedisPresence::connect("redis://127.0.0.1:1/", "p:").expect("lazy"),
                redis: chat_broker::redis::command_connection("redis://127.0.0.1:1/")
                    .expect("lazy"),
                keys: Keys::new("p:", false),
                id: "n1".into(),
                lease: Duration::from_secs(30),
                connected: Loaded::new(),
                disconnected: Loaded::new(),
                renew: Loaded::new(),
                sweep: Loaded::new(),
                events: false.into(),
            }),
            background: tokio::spawn(async {}),
        };
        legend::check(&Connected {
            node: node.node.values(),
            presence: "p".into(),
            user: "bob".into(),
            conn: 7,
        });
        legend::check(&Disconnected {
            node: node.node.values(),
            presence: "p".into(),
            last_seen: "l".into(),
            user: "bob".into(),
            conn: 7,
        });
        legend::check(&Renew {
            node: node.node.values(),
        });
        legend::check(&node.node.sweep_call());
        legend::check(&StateOf {
            presence: "p".into(),
            last_seen: "l".into(),
            node_prefix: "node:".into(),
        });
    }
}
