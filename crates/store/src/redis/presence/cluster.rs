//! Presence on a Redis Cluster: every step touches one hash slot.
//!
//! On one Redis a connection is counted by one script that touches the
//! node's keys and the user's (`connected.lua`). On a cluster those live in
//! different slots, so each change is two steps:
//!
//! 1. the node's step (`node_touch.lua`, in the slot of `{node:{id}}`):
//!    renew the lease, take back what a sweep took while the node was cut
//!    off, count the connection in or out of `node_conns` and
//!    `node_counts` (user → connections on this node);
//! 2. the user's step (`user_in.lua`, `user_close.lua`, in the slot of the
//!    user's channel, where the watch channel lives too): the per-node count
//!    in `presence:{user}`, and the announcement in the same step, so
//!    announcements keep the order of the counts.
//!
//! The registry of nodes (`nodes`) is a key of its own: every node call
//! notes the node there too (`node_seen.lua`). A sweeper reads it, and for
//! each node whose lease lapsed hands out its users one by one: the user's
//! step first (`user_swept.lua`: out of their presence, announced offline
//! once), then the node's (`node_release.lua`: kept in `node_swept` for the
//! node to take back). Leases are in the nodes' slots, so a user's scripts
//! cannot look at them: on a cluster a user's count on a lapsed node counts
//! until a sweep takes it out (within a third of a lease after it lapsed).
//!
//! The user's step counts each connection once (`presence_conns:{user}`)
//! and runs whatever the node's step answered: a call retried after its
//! user step failed completes it, and nothing is counted twice. A user's
//! count on a node that died is taken out by the sweep.

use std::sync::{Arc, LazyLock};

use chat_broker::redis::Connection;

use super::super::script::{Call, Loaded, Lua, lua};
use super::super::{unavailable, with_conn};
use super::{Node, SWEEP_BATCH, SWEPT_TTL};
use crate::StoreError;
use crate::presence::{ConnId, Swept};

static NODE_SEEN: LazyLock<Loaded<NodeSeen>> = LazyLock::new(Loaded::new);
static NODE_FORGET: LazyLock<Loaded<NodeForget>> = LazyLock::new(Loaded::new);
static NODE_TOUCH: LazyLock<Loaded<NodeTouch>> = LazyLock::new(Loaded::new);
static NODE_RELEASE: LazyLock<Loaded<NodeRelease>> = LazyLock::new(Loaded::new);
static USER_IN: LazyLock<Loaded<UserIn>> = LazyLock::new(Loaded::new);
static USER_CLOSE: LazyLock<Loaded<UserClose>> = LazyLock::new(Loaded::new);
static USER_SWEPT: LazyLock<Loaded<UserSwept>> = LazyLock::new(Loaded::new);

/// `node_seen.lua`: notes the node alive in the registry.
struct NodeSeen {
    nodes: String,
    node_id: String,
}

impl Lua for NodeSeen {
    const NAME: &'static str = "node_seen";
    const SOURCE: &'static str = lua!("node_seen");

    fn push(&self, call: &mut Call) {
        call.key("nodes", &self.nodes).arg("node_id", &self.node_id);
    }
}

/// `node_forget.lua`: takes a swept node out of the registry.
struct NodeForget {
    nodes: String,
    node_id: String,
    renewed: u64,
}

impl Lua for NodeForget {
    const NAME: &'static str = "node_forget";
    const SOURCE: &'static str = lua!("node_forget");

    fn push(&self, call: &mut Call) {
        call.key("nodes", &self.nodes)
            .arg("node_id", &self.node_id)
            .arg("renewed", self.renewed);
    }
}

/// How `node_touch.lua` counts: a connection in, out, or neither.
#[derive(Clone, Copy)]
enum Touch {
    In,
    Out,
    Renew,
}

/// `node_touch.lua`: the node's own step.
struct NodeTouch {
    lease: String,
    node_counts: String,
    node_swept: String,
    node_conns: String,
    lease_ms: u64,
    mode: Touch,
    user: String,
    conn: String,
}

impl Lua for NodeTouch {
    const NAME: &'static str = "node_touch";
    const SOURCE: &'static str = lua!("node_touch");

    fn push(&self, call: &mut Call) {
        let mode = match self.mode {
            Touch::In => "in",
            Touch::Out => "out",
            Touch::Renew => "renew",
        };
        call.key("lease", &self.lease)
            .key("node_counts", &self.node_counts)
            .key("node_swept", &self.node_swept)
            .key("node_conns", &self.node_conns)
            .arg("lease_ms", self.lease_ms)
            .arg("mode", mode)
            .arg("user", &self.user)
            .arg("conn", &self.conn);
    }
}

/// `node_release.lua`: a lapsed node's side of sweeping one user.
struct NodeRelease {
    node_counts: String,
    node_swept: String,
    node_conns: String,
    user: String,
    taken: u64,
    swept_ttl_s: u64,
}

impl Lua for NodeRelease {
    const NAME: &'static str = "node_release";
    const SOURCE: &'static str = lua!("node_release");

    fn push(&self, call: &mut Call) {
        call.key("node_counts", &self.node_counts)
            .key("node_swept", &self.node_swept)
            .key("node_conns", &self.node_conns)
            .arg("user", &self.user)
            .arg("taken", self.taken)
            .arg("swept_ttl_s", self.swept_ttl_s);
    }
}

/// `user_in.lua`: the user's step of counting connections in.
struct UserIn {
    presence: String,
    presence_conns: String,
    node_id: String,
    conn_ids: String,
    user: String,
    watch_channel: String,
    envelope: Vec<u8>,
}

impl Lua for UserIn {
    const NAME: &'static str = "user_in";
    const SOURCE: &'static str = lua!("user_in");

    fn push(&self, call: &mut Call) {
        call.key("presence", &self.presence)
            .key("presence_conns", &self.presence_conns)
            .arg("node_id", &self.node_id)
            .arg("conn_ids", &self.conn_ids)
            .arg("user", &self.user)
            .arg("watch_channel", &self.watch_channel)
            .arg("envelope", &self.envelope[..]);
    }
}

/// `user_close.lua`: the user's step of counting a connection out.
struct UserClose {
    presence: String,
    last_seen: String,
    presence_conns: String,
    node_id: String,
    conn: ConnId,
    user: String,
    watch_channel: String,
    envelope: Vec<u8>,
}

impl Lua for UserClose {
    const NAME: &'static str = "user_close";
    const SOURCE: &'static str = lua!("user_close");

    fn push(&self, call: &mut Call) {
        call.key("presence", &self.presence)
            .key("last_seen", &self.last_seen)
            .key("presence_conns", &self.presence_conns)
            .arg("node_id", &self.node_id)
            .arg("conn", self.conn)
            .arg("user", &self.user)
            .arg("watch_channel", &self.watch_channel)
            .arg("envelope", &self.envelope[..]);
    }
}

/// `user_swept.lua`: the user's step of a sweep.
struct UserSwept {
    presence: String,
    last_seen: String,
    presence_conns: String,
    node_id: String,
    renewed: u64,
    user: String,
    watch_channel: String,
    envelope: Vec<u8>,
}

impl Lua for UserSwept {
    const NAME: &'static str = "user_swept";
    const SOURCE: &'static str = lua!("user_swept");

    fn push(&self, call: &mut Call) {
        call.key("presence", &self.presence)
            .key("last_seen", &self.last_seen)
            .key("presence_conns", &self.presence_conns)
            .arg("node_id", &self.node_id)
            .arg("renewed", self.renewed)
            .arg("user", &self.user)
            .arg("watch_channel", &self.watch_channel)
            .arg("envelope", &self.envelope[..]);
    }
}

impl Node {
    fn touch(&self, mode: Touch, user: &str, conn: Option<ConnId>) -> NodeTouch {
        let keys = &self.keys;
        NodeTouch {
            lease: keys.node("node", &self.id),
            node_counts: keys.node("node_counts", &self.id),
            node_swept: keys.node("node_swept", &self.id),
            node_conns: keys.node("node_conns", &self.id),
            lease_ms: u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX),
            mode,
            user: user.to_owned(),
            conn: conn.map(|c| c.to_string()).unwrap_or_default(),
        }
    }

    /// The user's step counting `conns` (their ids on this node) in.
    fn user_in(&self, user: &str, conns: &[String]) -> UserIn {
        UserIn {
            presence: self.keys.user("presence", user),
            presence_conns: self.keys.user("presence_conns", user),
            node_id: self.id.clone(),
            conn_ids: conns.join(" "),
            user: user.to_owned(),
            watch_channel: self.keys.channel(&chat_broker::channel::watch(user)),
            envelope: chat_broker::envelope::text_header(),
        }
    }

    /// Queues a `user.online` / `user.offline` event after the user's step
    /// (the `webhooks` stream is in another slot), when asked to. A crash
    /// in between loses it. Best effort: logged when it fails.
    async fn presence_event(&self, conn: &mut Connection, user: &str, last_seen: Option<u64>) {
        if !self.events.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let queued = redis::cmd("XADD")
            .arg(self.keys.queue("webhooks"))
            .arg("*")
            .arg("e")
            .arg(crate::presence::presence_event(user, last_seen))
            .query_async::<()>(conn)
            .await;
        if let Err(e) = queued {
            tracing::warn!(user, error = %e, "a presence webhook event was not queued");
        }
    }

    /// The node's step (with its note in the registry), then each user it
    /// took back from a sweep counted in again (announced online when
    /// nobody else counted them). Answers whether the step counted the
    /// connection in or out, and how many users it took back.
    async fn node_step(
        &self,
        conn: &mut Connection,
        mode: Touch,
        user: &str,
        id: Option<ConnId>,
    ) -> redis::RedisResult<(bool, u64)> {
        let seen = NodeSeen {
            nodes: self.keys.single("nodes"),
            node_id: self.id.clone(),
        };
        let touch = self.touch(mode, user, id);
        let mut other = conn.clone();
        let (_, (changed, back)): (i64, (u8, Vec<(String, u64)>)) = futures_util::future::try_join(
            NODE_SEEN.invoke(&seen, &mut other),
            NODE_TOUCH.invoke(&touch, conn),
        )
        .await?;
        let taken_back = back.len() as u64;
        if !back.is_empty() {
            // Which connections are whose: "{conn} {user}" on this node.
            let counted: Vec<String> = redis::cmd("SMEMBERS")
                .arg(self.keys.node("node_conns", &self.id))
                .query_async(conn)
                .await?;
            let mut conns: std::collections::HashMap<&str, Vec<String>> =
                std::collections::HashMap::new();
            for member in &counted {
                if let Some((id, user)) = member.split_once(' ') {
                    conns.entry(user).or_default().push(id.to_owned());
                }
            }
            for (user, _) in &back {
                let theirs = conns.get(user.as_str()).cloned().unwrap_or_default();
                let (before, after): (u64, u64) =
                    USER_IN.invoke(&self.user_in(user, &theirs), conn).await?;
                if before == 0 && after > 0 {
                    self.presence_event(conn, user, None).await;
                }
            }
        }
        Ok((changed == 1, taken_back))
    }

    /// [`crate::PresenceNode::connected`] on a cluster.
    pub(super) async fn connected_on_cluster(
        self: &Arc<Self>,
        user: String,
        id: ConnId,
    ) -> Result<bool, StoreError> {
        with_conn(
            self,
            &self.redis,
            "presence",
            move |node, mut conn| async move {
                // The user's step runs whatever the node's says: a retry
                // after it failed completes it (it counts each connection
                // once).
                node.node_step(&mut conn, Touch::In, &user, Some(id))
                    .await?;
                let ids = [id.to_string()];
                let (before, after): (u64, u64) = USER_IN
                    .invoke(&node.user_in(&user, &ids), &mut conn)
                    .await?;
                let first = before == 0 && after > 0;
                if first {
                    node.presence_event(&mut conn, &user, None).await;
                }
                Ok(first)
            },
        )
        .await
    }

    /// [`crate::PresenceNode::disconnected`] on a cluster.
    pub(super) async fn disconnected_on_cluster(
        self: &Arc<Self>,
        user: String,
        id: ConnId,
    ) -> Result<bool, StoreError> {
        with_conn(
            self,
            &self.redis,
            "presence",
            move |node, mut conn| async move {
                // The user's step runs whatever the node's says (see
                // connected).
                node.node_step(&mut conn, Touch::Out, &user, Some(id))
                    .await?;
                let close = UserClose {
                    presence: node.keys.user("presence", &user),
                    last_seen: node.keys.user("last_seen", &user),
                    presence_conns: node.keys.user("presence_conns", &user),
                    node_id: node.id.clone(),
                    conn: id,
                    user: user.clone(),
                    watch_channel: node.keys.channel(&chat_broker::channel::watch(&user)),
                    envelope: chat_broker::envelope::text_header(),
                };
                let (left, last_seen): (u64, u64) = USER_CLOSE.invoke(&close, &mut conn).await?;
                let last = left == 0 && last_seen > 0;
                if last {
                    node.presence_event(&mut conn, &user, Some(last_seen)).await;
                }
                Ok(last)
            },
        )
        .await
    }

    /// [`super::RedisNode::renew`] on a cluster.
    pub(super) async fn renew_on_cluster(self: &Arc<Self>) -> Result<u64, StoreError> {
        with_conn(
            self,
            &self.redis,
            "lease",
            move |node, mut conn| async move {
                let (_, back) = node.node_step(&mut conn, Touch::Renew, "", None).await?;
                Ok(back)
            },
        )
        .await
    }

    /// [`super::RedisNode::sweep`] on a cluster: every other node whose
    /// lease lapsed, its users one at a time (the user's step, then the
    /// node's), at most [`SWEEP_BATCH`] users per node and call of
    /// `HRANDFIELD`, until none is left.
    pub(super) async fn sweep_on_cluster(self: &Arc<Self>) -> Result<Vec<Swept>, StoreError> {
        let mut conn = self.redis.clone();
        let nodes: Vec<(String, u64)> = bounded(
            "sweep",
            redis::cmd("HGETALL")
                .arg(self.keys.single("nodes"))
                .query_async(&mut conn),
        )
        .await?;
        let mut swept = Vec::new();
        for (node, renewed) in nodes {
            if node == self.id {
                continue;
            }
            let lapsed: bool = bounded(
                "sweep",
                redis::cmd("EXISTS")
                    .arg(self.keys.node("node", &node))
                    .query_async::<u8>(&mut conn),
            )
            .await
            .map(|n| n == 0)?;
            if lapsed {
                self.sweep_node(&mut conn, &node, renewed, &mut swept)
                    .await?;
            }
        }
        Ok(swept)
    }

    /// Hands out every user of the lapsed `node`, last renewed at
    /// `renewed` (ms), adding those announced offline to `swept`; then
    /// takes the node out of the registry, unless it renewed meanwhile.
    async fn sweep_node(
        &self,
        conn: &mut Connection,
        node: &str,
        renewed: u64,
        swept: &mut Vec<Swept>,
    ) -> Result<(), StoreError> {
        let keys = &self.keys;
        loop {
            // A node that renewed meanwhile (it was only cut off) keeps
            // the users it still holds.
            let renewed_since: bool = bounded(
                "sweep",
                redis::cmd("EXISTS")
                    .arg(keys.node("node", node))
                    .query_async::<u8>(conn),
            )
            .await
            .map(|n| n == 1)?;
            if renewed_since {
                return Ok(());
            }
            let users: Vec<String> = bounded(
                "sweep",
                redis::cmd("HRANDFIELD")
                    .arg(keys.node("node_counts", node))
                    .arg(SWEEP_BATCH)
                    .query_async(conn),
            )
            .await?;
            if users.is_empty() {
                let forget = NodeForget {
                    nodes: keys.single("nodes"),
                    node_id: node.to_owned(),
                    renewed,
                };
                bounded("sweep", NODE_FORGET.invoke::<u8>(&forget, conn)).await?;
                return Ok(());
            }
            for user in users {
                let out = UserSwept {
                    presence: keys.user("presence", &user),
                    last_seen: keys.user("last_seen", &user),
                    presence_conns: keys.user("presence_conns", &user),
                    node_id: node.to_owned(),
                    renewed,
                    user: user.clone(),
                    watch_channel: keys.channel(&chat_broker::channel::watch(&user)),
                    envelope: chat_broker::envelope::text_header(),
                };
                let (taken, announced): (u64, u8) =
                    bounded("sweep", USER_SWEPT.invoke(&out, conn)).await?;
                let release = NodeRelease {
                    node_counts: keys.node("node_counts", node),
                    node_swept: keys.node("node_swept", node),
                    node_conns: keys.node("node_conns", node),
                    user: user.clone(),
                    taken,
                    swept_ttl_s: SWEPT_TTL.as_secs(),
                };
                bounded("sweep", NODE_RELEASE.invoke::<u64>(&release, conn)).await?;
                if announced == 1 {
                    self.presence_event(conn, &user, Some(renewed)).await;
                    swept.push(Swept {
                        user,
                        last_seen: renewed,
                    });
                }
            }
        }
    }
}

/// `attempt`, given up after the store's command timeout.
async fn bounded<T>(
    what: &str,
    attempt: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(super::super::COMMAND_TIMEOUT, attempt).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(unavailable(what, e)),
        Err(e) => Err(unavailable(what, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::script::legend;

    #[test]
    fn every_cluster_presence_script_is_called_as_its_legend_says() {
        legend::check(&NodeSeen {
            nodes: "n".into(),
            node_id: "a".into(),
        });
        legend::check(&NodeForget {
            nodes: "n".into(),
            node_id: "a".into(),
            renewed: 1,
        });
        legend::check(&NodeTouch {
            lease: "l".into(),
            node_counts: "c".into(),
            node_swept: "s".into(),
            node_conns: "k".into(),
            lease_ms: 1,
            mode: Touch::In,
            user: "bob".into(),
            conn: "1".into(),
        });
        legend::check(&NodeRelease {
            node_counts: "c".into(),
            node_swept: "s".into(),
            node_conns: "k".into(),
            user: "bob".into(),
            taken: 1,
            swept_ttl_s: 1,
        });
        legend::check(&UserIn {
            presence: "p".into(),
            presence_conns: "c".into(),
            node_id: "a".into(),
            conn_ids: "1 2".into(),
            user: "bob".into(),
            watch_channel: "w".into(),
            envelope: Vec::new(),
        });
        legend::check(&UserClose {
            presence: "p".into(),
            last_seen: "l".into(),
            presence_conns: "c".into(),
            node_id: "a".into(),
            conn: 1,
            user: "bob".into(),
            watch_channel: "w".into(),
            envelope: Vec::new(),
        });
        legend::check(&UserSwept {
            presence: "p".into(),
            last_seen: "l".into(),
            presence_conns: "c".into(),
            node_id: "a".into(),
            renewed: 1,
            user: "bob".into(),
            watch_channel: "w".into(),
            envelope: Vec::new(),
        });
    }
}
