//! One command connection to Redis, whichever kind the URL names: a single
//! server (redis-rs's `ConnectionManager`) or a Redis Cluster (redis-rs's
//! cluster connection, which routes each command to the master owning its
//! keys' slot and follows `MOVED`/`ASK`). Both multiplex: concurrent
//! commands are pipelined on them, and they reconnect by themselves.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
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
    Cluster(ClusterConnection),
}

impl Connection {
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
            Self::Cluster(conn) => conn.req_packed_command(cmd),
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
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
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
        Target::Cluster(seeds) => {
            let client = cluster_builder(&seeds)
                .build()
                .map_err(|e| format!("invalid Redis Cluster URL: {e}"))?;
            Ok(Connection::Cluster(
                client
                    .get_pending_async_connection_with_config(redis::cluster::ClusterConfig::new()),
            ))
        }
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
