//! Sharded pub/sub on a Redis Cluster (`SSUBSCRIBE`/`SPUBLISH`, Redis ≥ 7):
//! a message is copied only within the shard that owns its channel's slot,
//! so the cluster's pub/sub capacity adds up shard by shard (classic
//! `PUBLISH` on a cluster is broadcast to every node).
//!
//! - **Names.** Channels are grouped into partitions (`partitions.rs`);
//!   each wire name starts with its partition's hash tag, so one
//!   `SSUBSCRIBE` per partition carries a whole batch.
//! - **Connections.** The subscriber is a redis-rs cluster connection in
//!   RESP3: one connection per shard master, carrying the subscriptions of
//!   the slots that master owns; messages come back as RESP3 pushes.
//!   Publishes and checks go through a second cluster connection (plain
//!   requests, retried by redis-rs on `MOVED`/`ASK`).
//! - **Topology.** A watcher reads `CLUSTER SLOTS` every
//!   [`TOPOLOGY_INTERVAL`]; when the owner of a partition's slot changed (a
//!   failover, a resharding that moved it), or when Redis drops a subscription by itself
//!   (`sunsubscribe` on a slot migration), or a node's connection is lost,
//!   the subscriber connection is made again and every wanted channel is
//!   subscribed again, partition by partition, with the new owners.
//!   Messages published between the loss and the re-subscription are lost,
//!   as on one Redis (pub/sub is at most once; durable data is caught up
//!   from the store).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use redis::cluster::ClusterConfig;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info};

use super::connection::cluster_builder;
use super::{Batch, COMMAND_TIMEOUT, Connected, Incoming, Sent, Shared, Sink, bounded, partitions};

/// How often the watcher reads the cluster's slot owners.
pub(super) const TOPOLOGY_INTERVAL: Duration = Duration::from_secs(1);

/// The master (`host:port`) owning each partition's slot, by partition:
/// the only slots whose owner matters to the subscriptions.
type Topology = Vec<String>;

/// Makes the subscriber's cluster connections.
pub(super) struct Connector {
    seeds: Vec<String>,
    /// Told by the watcher when the topology changed under the connection.
    moved: Arc<Notify>,
}

/// The publishing connection, the subscriber's connector, and the
/// topology watcher's task. Errors: a seed is not a valid Redis URL.
pub(super) fn start(
    seeds: Vec<String>,
    shared: &Arc<Shared>,
) -> redis::RedisResult<(Connector, ClusterConnection, tokio::task::JoinHandle<()>)> {
    let client = cluster_builder(&seeds).build()?;
    let publisher = client.get_pending_async_connection_with_config(ClusterConfig::new());
    let moved = Arc::new(Notify::new());
    let watcher = tokio::spawn(watch(
        publisher.clone(),
        Arc::clone(&moved),
        Arc::clone(shared),
    ));
    Ok((Connector { seeds, moved }, publisher, watcher))
}

/// Reads the topology every [`TOPOLOGY_INTERVAL`] and tells the subscriber
/// when it changed.
async fn watch(mut conn: ClusterConnection, moved: Arc<Notify>, shared: Arc<Shared>) {
    let mut known: Option<Topology> = None;
    let mut ticks = tokio::time::interval(TOPOLOGY_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let read = tokio::time::timeout(COMMAND_TIMEOUT, topology(&mut conn)).await;
        let now = match read {
            Ok(Ok(now)) => now,
            Ok(Err(e)) => {
                debug!(error = %e, "cannot read the cluster's topology");
                continue;
            }
            Err(_) => {
                debug!("reading the cluster's topology timed out");
                continue;
            }
        };
        if known.as_ref().is_some_and(|known| *known != now) {
            info!(masters = ?masters(&now), "the cluster's topology changed; subscribing again");
            let _ = shared.failed("topology", &"slots changed owner");
            moved.notify_one();
        }
        known = Some(now);
    }
}

/// The distinct masters of `topology`, for the log.
fn masters(topology: &Topology) -> Vec<&str> {
    let mut masters: Vec<&str> = topology.iter().map(String::as_str).collect();
    masters.sort_unstable();
    masters.dedup();
    masters
}

/// `CLUSTER SLOTS` from one master, as the owner of each partition's slot.
async fn topology(conn: &mut ClusterConnection) -> redis::RedisResult<Topology> {
    let reply = conn
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
        )
        .await?;
    owners(&reply).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::Parse,
            "CLUSTER SLOTS: an answer of an unknown shape",
        ))
    })
}

/// The owner of each partition's slot in a `CLUSTER SLOTS` reply (ranges
/// of `[first, last, [host, port, id, …], replicas…]`); an unserved slot's
/// owner is empty. `None` when the reply has another shape.
fn owners(reply: &Value) -> Option<Topology> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut owned = Vec::new();
    for range in ranges {
        let Value::Array(parts) = range else {
            return None;
        };
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            return None;
        };
        let (Some(Value::BulkString(host)), Some(Value::Int(port))) =
            (master.first(), master.get(1))
        else {
            return None;
        };
        let owner = format!("{}:{port}", String::from_utf8_lossy(host));
        owned.push((*first, *last, owner));
    }
    Some(
        (0..partitions::PARTITIONS)
            .map(|p| {
                let slot = i64::from(partitions::slot_of(p));
                owned
                    .iter()
                    .find(|(first, last, _)| (*first..=*last).contains(&slot))
                    .map(|(_, _, owner)| owner.clone())
                    .unwrap_or_default()
            })
            .collect(),
    )
}

impl super::Connector for Connector {
    fn connect<'a>(&'a self, shared: &'a Shared) -> BoxFuture<'a, Result<Connected, String>> {
        async move {
            let (tx, rx) = mpsc::unbounded_channel::<PushInfo>();
            let client = cluster_builder(&self.seeds)
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(tx)
                .build()
                .map_err(|e| e.to_string())?;
            let conn = tokio::time::timeout(COMMAND_TIMEOUT, client.get_async_connection())
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            let subscriber = Arc::new(Subscriber { conn });
            // A change seen before this connection was made is already in it.
            let moved = Arc::clone(&self.moved);
            let _ = moved.notified().now_or_never();
            let health = Batch {
                subscribe: shared.health_channels(),
                unsubscribe: Vec::new(),
            };
            subscriber.apply(health).await.1?;
            let pushes = tokio_stream(rx).filter_map(|push| std::future::ready(incoming(push)));
            let broken = futures_util::stream::once(async move {
                moved.notified().await;
                Incoming::Broken("the cluster's topology changed".to_owned())
            });
            let stream = futures_util::stream::select(pushes, broken).boxed();
            Ok((subscriber as Arc<dyn Sink>, stream))
        }
        .boxed()
    }
}

/// The pushes of an unbounded receiver, as a stream.
fn tokio_stream(
    mut rx: mpsc::UnboundedReceiver<PushInfo>,
) -> impl futures_util::Stream<Item = PushInfo> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// What a RESP3 push means to the subscriber task.
fn incoming(push: PushInfo) -> Option<Incoming> {
    let text = |value: Option<&Value>| match value {
        Some(Value::BulkString(bytes)) => Some(bytes.clone()),
        _ => None,
    };
    match push.kind {
        PushKind::SMessage => {
            let channel = String::from_utf8(text(push.data.first())?).ok()?;
            let payload = Bytes::from(text(push.data.get(1))?);
            Some(Incoming::Message { channel, payload })
        }
        PushKind::SUnsubscribe => {
            let channel = String::from_utf8(text(push.data.first())?).ok()?;
            Some(Incoming::Dropped(channel))
        }
        PushKind::Disconnection => Some(Incoming::Broken(
            "the connection to a cluster node was lost".to_owned(),
        )),
        _ => None,
    }
}

/// The subscriber's cluster connection.
struct Subscriber {
    conn: ClusterConnection,
}

impl Sink for Subscriber {
    /// One `SSUBSCRIBE` (then `SUNSUBSCRIBE`) per partition the batch
    /// touches, all at once: each goes to the master owning the
    /// partition's slot.
    fn apply(&self, batch: Batch) -> Sent {
        let conn = self.conn.clone();
        async move {
            let attempt = async {
                for (subscribe, names) in [(true, &batch.subscribe), (false, &batch.unsubscribe)] {
                    let groups = by_partition(names).into_iter().map(|group| {
                        let mut conn = conn.clone();
                        async move {
                            if subscribe {
                                conn.ssubscribe(group).await
                            } else {
                                conn.sunsubscribe(group).await
                            }
                        }
                    });
                    futures_util::future::try_join_all(groups).await?;
                }
                Ok::<(), redis::RedisError>(())
            };
            let result = bounded(attempt).await;
            (batch, result)
        }
        .boxed()
    }
}

/// Wire names grouped by their hash slot (one group per partition).
fn by_partition(names: &[String]) -> Vec<Vec<String>> {
    let mut groups: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
    for name in names {
        groups
            .entry(partitions::slot(name.as_bytes()))
            .or_default()
            .push(name.clone());
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: i64, last: i64, port: i64) -> Value {
        Value::Array(vec![
            Value::Int(first),
            Value::Int(last),
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ]),
        ])
    }

    #[test]
    fn each_partition_is_owned_by_the_master_of_its_slot() {
        let reply = Value::Array(vec![
            range(0, 5460, 7000),
            range(5461, 10922, 7001),
            range(10923, 16383, 7002),
        ]);
        let owners = owners(&reply).expect("a CLUSTER SLOTS reply");
        assert_eq!(owners.len(), partitions::PARTITIONS);
        assert_eq!(owners[0], "127.0.0.1:7000");
        assert_eq!(owners[21], "127.0.0.1:7001");
        assert_eq!(owners[63], "127.0.0.1:7002");
        assert_eq!(masters(&owners).len(), 3);
        // A slot moving that no partition lives in changes nothing.
        let moved = Value::Array(vec![
            range(0, 0, 7002),
            range(1, 5460, 7000),
            range(5461, 10922, 7001),
            range(10923, 16383, 7002),
        ]);
        assert_eq!(super::owners(&moved), Some(owners));
    }

    #[test]
    fn an_answer_of_another_shape_is_no_topology() {
        assert_eq!(owners(&Value::Int(1)), None);
        assert_eq!(owners(&Value::Array(vec![Value::Int(1)])), None);
    }
}
