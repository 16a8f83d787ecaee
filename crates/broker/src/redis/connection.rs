//! One command connection to Redis, whichever kind the URL names: a single
//! server (redis-rs's `ConnectionManager`) or a Redis Cluster (redis-rs's
//! cluster connection, which routes each command to the master owning its
//! keys' slot and follows `MOVED`/`ASK`, made again after a node is lost).
//! Both multiplex: concurrent commands are pipelined on them, and they
//! reconnect by themselves.

use std::sync::{Arc, Mutex};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::{BACKOFF_MAX, BACKOFF_MIN, COMMAND_TIMEOUT, Target};

/// A multiplexed command connection to one Redis or to a Redis Cluster.
/// Cheap to clone: clones share the connection.
#[derive(Clone)]
pub enum Connection {
    /// One server.
    Single(ConnectionManager),
    /// A Redis Cluster. A pipeline (or script) on it may only touch keys of
    /// one hash slot (`CROSSSLOT` otherwise).
    Cluster(Arc<Renewed>),
}

/// A cluster connection made again from the seeds after a node was lost.
///
/// redis-rs follows `MOVED` and `ASK`, but after a master dies it keeps
/// reconnecting to the dead address for that master's slots, which answers
/// no `MOVED`: a failover would go unnoticed. So a connection error
/// (refused, dropped, timed out) makes the next command use a fresh
/// connection, which reads the slots anew from the seeds. A command whose
/// connection was refused (never sent) is sent once more on it; one that
/// may have been sent fails (the caller reports `unavailable`).
pub struct Renewed {
    seeds: Vec<String>,
    /// The connection in use, and how many times it was made again.
    current: Mutex<(u64, ClusterConnection)>,
}

impl Renewed {
    fn current(&self) -> (u64, ClusterConnection) {
        lock(&self.current).clone()
    }

    /// Makes the connection again, unless that was done since `generation`.
    fn renew(&self, generation: u64) {
        let mut current = lock(&self.current);
        if current.0 != generation {
            return;
        }
        match fresh(&self.seeds) {
            Ok(conn) => {
                tracing::info!("a cluster node was lost; reading the cluster's slots again");
                *current = (generation + 1, conn);
            }
            Err(e) => tracing::warn!(error = %e, "cannot make the cluster connection again"),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `e` says a node was lost rather than a command refused.
fn lost(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout()
}

impl Connection {
    /// A cluster connection starting with `conn`, made again from `seeds`
    /// after a node was lost ([`Renewed`]).
    pub(super) fn cluster(seeds: Vec<String>, conn: ClusterConnection) -> Self {
        Self::Cluster(Arc::new(Renewed {
            seeds,
            current: Mutex::new((0, conn)),
        }))
    }

    /// On a cluster, waits up to `timeout_ms` until the writes made so far
    /// on the master owning `key`'s slot are on one of its replicas
    /// (`WAIT 1 {timeout_ms}`, sent to that master only), and answers how
    /// many replicas have them (0 when none did in time). On one Redis,
    /// answers 0 at once: there is no failover to survive here.
    ///
    /// Errors: the master does not answer.
    pub async fn wait_replicated(&self, key: &str, timeout_ms: u64) -> redis::RedisResult<u64> {
        let Self::Cluster(renewed) = self else {
            return Ok(0);
        };
        let (generation, mut conn) = renewed.current();
        let route = Route::new(super::partitions::slot(key.as_bytes()), SlotAddr::Master);
        let answer = conn
            .route_command(
                redis::cmd("WAIT").arg(1).arg(timeout_ms).clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
            )
            .await;
        if answer.as_ref().is_err_and(lost) {
            renewed.renew(generation);
        }
        redis::from_redis_value(answer?).map_err(Into::into)
    }

    /// Whether this is a cluster connection: keys and channels are then
    /// named by partition, and scripts publish with `SPUBLISH`.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(renewed) => Box::pin(async move {
                let (generation, mut conn) = renewed.current();
                let answer = conn.req_packed_command(cmd).await;
                if !answer.as_ref().is_err_and(lost) {
                    return answer;
                }
                renewed.renew(generation);
                // A refused connection never got the command: once more,
                // on the connection made again.
                if answer
                    .as_ref()
                    .is_err_and(redis::RedisError::is_connection_refusal)
                {
                    return renewed.current().1.req_packed_command(cmd).await;
                }
                answer
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(renewed) => Box::pin(async move {
                let (generation, mut conn) = renewed.current();
                let answer = conn.req_packed_commands(pipeline, offset, count).await;
                if !answer.as_ref().is_err_and(lost) {
                    return answer;
                }
                renewed.renew(generation);
                if answer
                    .as_ref()
                    .is_err_and(redis::RedisError::is_connection_refusal)
                {
                    return renewed
                        .current()
                        .1
                        .req_packed_commands(pipeline, offset, count)
                        .await;
                }
                answer
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(_) => 0,
        }
    }
}

/// A command connection for `url` ([`Target::parse`]), made on first use
/// and remade after a failure. Connecting and each answer give up after
/// 2 s, so callers fail fast while Redis is away. Must be called inside a
/// tokio runtime.
///
/// Errors: `url` is not a Redis URL (or not a valid cluster URL).
pub fn command_connection(url: &str) -> Result<Connection, String> {
    let target = Target::parse(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
    match target {
        Target::Single(url) => single(&url).map(Connection::Single),
        Target::Cluster(seeds) => fresh(&seeds)
            .map(|conn| Connection::cluster(seeds, conn))
            .map_err(|e| format!("invalid Redis Cluster URL: {e}")),
    }
}

/// A `ConnectionManager` for one server at `url`.
pub(super) fn single(url: &str) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        // One quick retry; beyond that the caller reports `unavailable`
        // and the next command tries again.
        .set_number_of_retries(1)
        .set_min_delay(BACKOFF_MIN)
        .set_max_delay(BACKOFF_MAX);
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| format!("cannot set up the Redis connection: {e}"))
}

/// A cluster connection made on first use from `seeds` (`redis://` URLs).
/// Errors: a seed is not a valid Redis URL.
pub(super) fn fresh(seeds: &[String]) -> redis::RedisResult<ClusterConnection> {
    Ok(cluster_builder(seeds)
        .build()?
        .get_pending_async_connection_with_config(redis::cluster::ClusterConfig::new()))
}

/// A cluster client's settings, knowing the cluster by `seeds` (`redis://`
/// URLs; `build` fails when one is not a valid Redis URL).
pub(super) fn cluster_builder(seeds: &[String]) -> ClusterClientBuilder {
    ClusterClient::builder(seeds.iter().map(String::as_str))
        .connection_timeout(COMMAND_TIMEOUT)
        .response_timeout(COMMAND_TIMEOUT)
        // Quick retries (MOVED, a node being replaced), within the
        // caller's COMMAND_TIMEOUT.
        .retries(3)
        .min_retry_wait(50)
        .max_retry_wait(400)
}
