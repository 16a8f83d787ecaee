//! The Redis engine: pub/sub across processes, on one Redis or on a Redis
//! Cluster.
//!
//! One subscriber connection per process carries every channel this node
//! wants (on a cluster: one per shard master, see `sharded.rs`).
//! Subscribing is a wish, not a queued command: the handle records which
//! channels are wanted (a set bounded by the channels in use, however fast
//! they come and go), and the single task that owns the subscriber
//! connection brings Redis in line, a batch of SUBSCRIBE/UNSUBSCRIBE at a
//! time, while it keeps delivering — a subscription change never pauses the
//! messages of other channels, and a channel that goes 0→1→0→1 quickly ends
//! as last wished. Publishes and health checks go through one multiplexed
//! command connection (redis-rs's `ConnectionManager`, or its cluster
//! connection: concurrent commands are pipelined, and it reconnects by
//! itself). When Redis goes away the task reconnects with backoff and
//! subscribes again to everything still wanted; meanwhile calls fail fast
//! with [`BrokerError::Unavailable`] instead of hanging.
//!
//! - `single.rs`: one Redis, `SUBSCRIBE`/`PUBLISH`;
//! - `sharded.rs`: a Redis Cluster, sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`)
//!   by partitions (`partitions.rs`), re-subscribed when the cluster's
//!   topology changes;
//! - `url.rs`: which of the two a URL names.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{Notify, oneshot};
use tracing::{debug, info, warn};

use crate::broker::{Broker, BrokerError, Handler};

mod connection;
pub mod partitions;
mod sharded;
mod single;
pub use crate::redis_url as url;

pub use connection::{Connection, command_connection};
pub use url::Target;

/// How long one Redis command may take before it counts as unavailable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// First and longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);
/// Channels per SUBSCRIBE or UNSUBSCRIBE.
const CHUNK: usize = 1000;

/// How to reach Redis.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// `redis://host:port/db`, or `redis+cluster://h1:p1,h2:p2` for a
    /// Redis Cluster (see [`Target::parse`]).
    pub url: String,
    /// Prepended to every channel name, so several deployments (or tests)
    /// can share one Redis without hearing each other.
    pub prefix: String,
    /// Counts failed Redis operations, for the `redis_errors_total` metric.
    pub errors: Option<prometheus::IntCounter>,
}

/// A waiter for a channel's subscription to be confirmed.
type Waiter = oneshot::Sender<Result<(), BrokerError>>;

/// Which channels the node wants, and which the subscriber connection has:
/// the handle writes wishes, the task brings Redis in line.
#[derive(Default)]
struct Wishes {
    /// Channels wanted (unprefixed), with who waits for their confirmation.
    wanted: HashMap<String, Vec<Waiter>>,
    /// Channels confirmed subscribed on the current connection.
    subscribed: HashSet<String>,
    /// Channels whose UNSUBSCRIBE is on its way: still in `subscribed`, but
    /// Redis is dropping them, so wanting one again must wait for its
    /// re-SUBSCRIBE (a message published in between would be lost).
    unsubscribing: HashSet<String>,
    /// Channels whose wish changed since the task last looked.
    changed: HashSet<String>,
}

/// How channel names look on the wire.
#[derive(Clone, Debug)]
enum Naming {
    /// `{prefix}{channel}`, for `SUBSCRIBE`/`PUBLISH` on one Redis.
    Plain,
    /// `{tag}{prefix}{channel}`, for sharded pub/sub on a cluster.
    Sharded,
}

/// State shared by the handle and the subscriber task.
struct Shared {
    /// The subscriber connection is up.
    connected: AtomicBool,
    /// The last attempt to connect failed, or the connection was lost: new
    /// subscriptions fail at once instead of waiting for Redis.
    down: AtomicBool,
    /// What is wanted and what is had.
    wishes: Mutex<Wishes>,
    /// Wakes the task when a wish changed.
    wished: Notify,
    /// Health-check nonces awaiting their round trip through pub/sub.
    health_waiters: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// This node's private channel for health round trips (prefixed; on a
    /// cluster one copy per partition, see [`Shared::health_channels`]).
    health_channel: String,
    prefix: String,
    naming: Naming,
    errors: Option<prometheus::IntCounter>,
}

impl Shared {
    fn failed(&self, what: &str, error: &dyn std::fmt::Display) -> BrokerError {
        if let Some(errors) = &self.errors {
            errors.inc();
        }
        BrokerError::Unavailable(format!("{what}: {error}"))
    }

    /// The wire name of `channel` (unprefixed).
    fn full(&self, channel: &str) -> String {
        match self.naming {
            Naming::Plain => format!("{}{channel}", self.prefix),
            Naming::Sharded => partitions::shard_channel(&self.prefix, channel),
        }
    }

    /// The wire names of this node's health channels: one on one Redis, one
    /// per partition on a cluster, so a check crosses every shard.
    fn health_channels(&self) -> Vec<String> {
        match self.naming {
            Naming::Plain => vec![self.health_channel.clone()],
            Naming::Sharded => (0..partitions::PARTITIONS)
                .map(|p| partitions::in_partition(p, &self.health_channel))
                .collect(),
        }
    }

    /// What arrived on the wire name `full`.
    fn arrival<'a>(&self, full: &'a str) -> Arrival<'a> {
        let prefixed = match self.naming {
            Naming::Plain => Some(full),
            Naming::Sharded => partitions::untagged(full),
        };
        match prefixed {
            Some(name) if name == self.health_channel => Arrival::Health,
            Some(name) => name
                .strip_prefix(self.prefix.as_str())
                .map_or(Arrival::Foreign, Arrival::Channel),
            None => Arrival::Foreign,
        }
    }
}

/// What a wire channel name is to this node.
enum Arrival<'a> {
    /// One of its health channels.
    Health,
    /// An application channel, unprefixed.
    Channel(&'a str),
    /// Not one of ours.
    Foreign,
}

/// A node on Redis pub/sub. Dropping it stops its background tasks.
pub struct RedisBroker {
    publisher: Connection,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RedisBroker {
    /// Starts a node delivering to `handler`. Only the URL is checked here;
    /// the connection is made in the background and retried until it works,
    /// so a node can start while Redis is down (and reports not ready).
    /// Must be called inside a tokio runtime.
    ///
    /// Errors: the URL is not a Redis URL ([`Target::parse`]).
    pub fn start(options: RedisOptions, handler: Handler) -> Result<Self, BrokerError> {
        let invalid = |e: String| BrokerError::Unavailable(format!("invalid Redis URL: {e}"));
        let target = Target::parse(&options.url).map_err(invalid)?;
        let naming = match target {
            Target::Single(_) => Naming::Plain,
            Target::Cluster(_) => Naming::Sharded,
        };
        let shared = Arc::new(Shared {
            connected: AtomicBool::new(false),
            down: AtomicBool::new(false),
            wishes: Mutex::default(),
            wished: Notify::new(),
            health_waiters: Mutex::default(),
            health_channel: format!("{}health:{}", options.prefix, ulid::Ulid::new()),
            prefix: options.prefix,
            naming,
            errors: options.errors,
        });
        match target {
            Target::Single(url) => {
                let client =
                    redis::Client::open(url.as_str()).map_err(|e| invalid(e.to_string()))?;
                let redis = connection::single(&url).map_err(BrokerError::Unavailable)?;
                let task = tokio::spawn(subscriber_task(
                    single::Connector { client },
                    handler,
                    Arc::clone(&shared),
                ));
                Ok(Self {
                    publisher: Connection::Single(redis),
                    shared,
                    tasks: vec![task],
                })
            }
            Target::Cluster(seeds) => {
                let (connector, publisher, watcher) =
                    sharded::start(seeds.clone(), &shared).map_err(|e| invalid(e.to_string()))?;
                let task = tokio::spawn(subscriber_task(connector, handler, Arc::clone(&shared)));
                Ok(Self {
                    publisher: Connection::cluster(seeds, publisher),
                    shared,
                    tasks: vec![task, watcher],
                })
            }
        }
    }
}

/// Publishes `payload` on the wire channel `channel`: `PUBLISH` on one
/// Redis, `SPUBLISH` (to the channel's shard) on a cluster.
async fn publish_raw(
    publisher: Connection,
    shared: &Shared,
    channel: &str,
    payload: &[u8],
) -> Result<(), BrokerError> {
    let name = if publisher.is_cluster() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    let mut conn = publisher;
    let command = redis::cmd(name).arg(channel).arg(payload).clone();
    let attempt = async move { command.query_async::<i64>(&mut conn).await };
    match tokio::time::timeout(COMMAND_TIMEOUT, attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(shared.failed(name, &e)),
        Err(elapsed) => Err(shared.failed(name, &elapsed)),
    }
}

impl Broker for RedisBroker {
    fn publish(
        &self,
        channel: &str,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<(), BrokerError>> {
        let publisher = self.publisher.clone();
        let shared = Arc::clone(&self.shared);
        let channel = self.shared.full(channel);
        async move { publish_raw(publisher, &shared, &channel, &payload).await }.boxed()
    }

    fn subscribe(&self, channel: &str) -> BoxFuture<'static, Result<(), BrokerError>> {
        if self.shared.down.load(Ordering::Acquire) {
            // Fail at once rather than hang until Redis returns.
            let e = self.shared.failed("SUBSCRIBE", &"Redis is unreachable");
            return futures_util::future::ready(Err(e)).boxed();
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut wishes = lock(&self.shared.wishes);
            let had =
                wishes.subscribed.contains(channel) && !wishes.unsubscribing.contains(channel);
            let waiters = wishes.wanted.entry(channel.to_owned()).or_default();
            if had {
                // Still subscribed (an unsubscribe not yet sent): wanted again.
                let _ = tx.send(Ok(()));
            } else {
                waiters.push(tx);
            }
            wishes.changed.insert(channel.to_owned());
        }
        self.shared.wished.notify_one();
        async move {
            rx.await
                .unwrap_or_else(|_| Err(BrokerError::Unavailable("broker stopped".into())))
        }
        .boxed()
    }

    fn unsubscribe(&self, channel: &str) {
        let mut wishes = lock(&self.shared.wishes);
        if let Some(waiters) = wishes.wanted.remove(channel) {
            // In call order their subscribe came first and is now undone:
            // answered as done, as it would be had it been confirmed.
            for waiter in waiters {
                let _ = waiter.send(Ok(()));
            }
        }
        wishes.changed.insert(channel.to_owned());
        drop(wishes);
        self.shared.wished.notify_one();
    }

    fn check(&self) -> BoxFuture<'static, Result<(), BrokerError>> {
        let publisher = self.publisher.clone();
        let shared = Arc::clone(&self.shared);
        async move {
            if !shared.connected.load(Ordering::Acquire) {
                return Err(BrokerError::Unavailable(
                    "subscriber connection is down".into(),
                ));
            }
            // A round trip through pub/sub itself (a subscriber connection
            // can stall silently while plain commands still work), through
            // every shard on a cluster.
            let trips = shared.health_channels().into_iter().map(|channel| {
                let publisher = publisher.clone();
                let shared = Arc::clone(&shared);
                async move { round_trip(publisher, &shared, &channel).await }
            });
            futures_util::future::try_join_all(trips).await.map(drop)
        }
        .boxed()
    }
}

/// Publishes a nonce on the health channel `channel` (wire name) and waits
/// for it to come back.
async fn round_trip(
    publisher: Connection,
    shared: &Shared,
    channel: &str,
) -> Result<(), BrokerError> {
    let nonce = ulid::Ulid::new().to_string();
    let (tx, rx) = oneshot::channel();
    lock(&shared.health_waiters).insert(nonce.clone(), tx);
    let result = async {
        publish_raw(publisher, shared, channel, nonce.as_bytes()).await?;
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(shared.failed("pub/sub round trip", &"no echo within 2s")),
        }
    }
    .await;
    lock(&shared.health_waiters).remove(&nonce);
    result
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a subscriber connection hands the task.
enum Incoming {
    /// A message on a wire channel.
    Message { channel: String, payload: Bytes },
    /// Redis dropped a subscription by itself (`sunsubscribe` when a slot
    /// moves to another shard): the wire channel it was.
    Dropped(String),
    /// The connection can no longer be trusted (lost, or the cluster's
    /// topology changed under it): the task makes a new one.
    Broken(String),
}

/// `attempt` (a subscription change) bounded by [`COMMAND_TIMEOUT`], its
/// error as text.
async fn bounded(
    attempt: impl std::future::Future<Output = redis::RedisResult<()>>,
) -> Result<(), String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// A batch on its way: answers the batch and whether Redis took it.
type Sent = BoxFuture<'static, (Batch, Result<(), String>)>;

/// A subscriber connection's sending half.
trait Sink: Send + Sync {
    /// Sends `batch`, every name a wire name, within [`COMMAND_TIMEOUT`].
    fn apply(&self, batch: Batch) -> Sent;
}

/// A new subscriber connection: its sending half and what arrives on it.
type Connected = (Arc<dyn Sink>, BoxStream<'static, Incoming>);

/// Makes subscriber connections, already subscribed to the health
/// channels.
trait Connector: Send + Sync + 'static {
    fn connect<'a>(&'a self, shared: &'a Shared) -> BoxFuture<'a, Result<Connected, String>>;
}

/// Owns the subscriber connection: brings its subscriptions in line with
/// the wishes, delivers messages, reconnects and re-subscribes when the
/// connection is lost. Ends when the broker is dropped (aborted).
async fn subscriber_task(connector: impl Connector, handler: Handler, shared: Arc<Shared>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match connector.connect(&shared).await {
            Ok((sink, mut stream)) => {
                backoff = BACKOFF_MIN;
                {
                    // A new connection has nothing: everything wanted is to do.
                    let mut wishes = lock(&shared.wishes);
                    wishes.subscribed.clear();
                    wishes.unsubscribing.clear();
                    let wanted: Vec<String> = wishes.wanted.keys().cloned().collect();
                    info!(channels = wanted.len(), "Redis subscriber connected");
                    wishes.changed.extend(wanted);
                }
                shared.down.store(false, Ordering::Release);
                shared.connected.store(true, Ordering::Release);
                let why = serve(sink.as_ref(), &mut stream, &handler, &shared).await;
                shared.connected.store(false, Ordering::Release);
                shared.down.store(true, Ordering::Release);
                fail_waiters(&shared, "Redis subscriber connection lost");
                warn!(why, "Redis subscriber connection lost; reconnecting");
            }
            Err(e) => {
                debug!(error = %e, ?backoff, "Redis subscriber cannot connect");
                shared.down.store(true, Ordering::Release);
                fail_waiters(&shared, "Redis is unreachable");
                let _ = shared.failed("subscriber connect", &e);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Answers everyone still waiting for a subscription: it failed.
fn fail_waiters(shared: &Shared, why: &str) {
    let mut wishes = lock(&shared.wishes);
    for waiters in wishes.wanted.values_mut() {
        for waiter in waiters.drain(..) {
            let _ = waiter.send(Err(BrokerError::Unavailable(why.to_owned())));
        }
    }
}

/// One batch of subscription changes, sent while deliveries go on.
struct Batch {
    subscribe: Vec<String>,
    unsubscribe: Vec<String>,
}

/// The changes the wishes call for now, at most [`CHUNK`] of each kind;
/// `None` when Redis already has what is wanted.
fn next_batch(shared: &Shared) -> Option<Batch> {
    let mut wishes = lock(&shared.wishes);
    let mut batch = Batch {
        subscribe: Vec::new(),
        unsubscribe: Vec::new(),
    };
    let mut looked = Vec::new();
    for channel in wishes.changed.iter() {
        if batch.subscribe.len() >= CHUNK || batch.unsubscribe.len() >= CHUNK {
            break;
        }
        looked.push(channel.clone());
        let wanted = wishes.wanted.contains_key(channel);
        let had = wishes.subscribed.contains(channel);
        if wanted && !had {
            batch.subscribe.push(channel.clone());
        } else if !wanted && had {
            batch.unsubscribe.push(channel.clone());
        }
    }
    for channel in &looked {
        wishes.changed.remove(channel);
    }
    wishes
        .unsubscribing
        .extend(batch.unsubscribe.iter().cloned());
    if batch.subscribe.is_empty() && batch.unsubscribe.is_empty() {
        return if wishes.changed.is_empty() {
            None
        } else {
            drop(wishes);
            next_batch(shared)
        };
    }
    Some(batch)
}

/// `batch` with wire names, as the sink sends it.
fn on_the_wire(shared: &Shared, batch: &Batch) -> Batch {
    let full = |names: &[String]| names.iter().map(|c| shared.full(c)).collect();
    Batch {
        subscribe: full(&batch.subscribe),
        unsubscribe: full(&batch.unsubscribe),
    }
}

/// Runs one connection until it breaks; answers why it ended.
async fn serve(
    sink: &dyn Sink,
    stream: &mut BoxStream<'static, Incoming>,
    handler: &Handler,
    shared: &Shared,
) -> String {
    // The batch in flight: its application names, and the sink's answer.
    let mut inflight: Option<(Batch, Sent)> = None;
    loop {
        if inflight.is_none() {
            inflight = next_batch(shared).map(|batch| {
                let sent = sink.apply(on_the_wire(shared, &batch));
                (batch, sent)
            });
        }
        let idle = inflight.is_none();
        let done = async {
            match inflight.as_mut() {
                Some((_, sent)) => sent.await.1,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = done => {
                let Some((batch, _)) = inflight.take() else { continue };
                if let Err(why) = result {
                    let _ = shared.failed("SUBSCRIBE", &why);
                    // The reconnect subscribes everything wanted again.
                    return format!("a subscription change failed: {why}");
                }
                let mut wishes = lock(&shared.wishes);
                for channel in batch.unsubscribe {
                    wishes.subscribed.remove(&channel);
                    wishes.unsubscribing.remove(&channel);
                }
                for channel in batch.subscribe {
                    wishes.subscribed.insert(channel.clone());
                    if let Some(waiters) = wishes.wanted.get_mut(&channel) {
                        for waiter in waiters.drain(..) {
                            let _ = waiter.send(Ok(()));
                        }
                    }
                }
            }
            () = shared.wished.notified(), if idle => {}
            incoming = stream.next() => match incoming {
                None => return "the connection closed".to_owned(),
                Some(Incoming::Broken(why)) => return why,
                Some(Incoming::Message { channel, payload }) => match shared.arrival(&channel) {
                    Arrival::Health => {
                        let nonce = String::from_utf8_lossy(&payload).into_owned();
                        if let Some(waiter) = lock(&shared.health_waiters).remove(&nonce) {
                            let _ = waiter.send(());
                        }
                    }
                    Arrival::Channel(local) => handler(local, payload),
                    Arrival::Foreign => {}
                },
                Some(Incoming::Dropped(channel)) => {
                    let lost = match shared.arrival(&channel) {
                        Arrival::Health => true,
                        Arrival::Channel(local) => {
                            let wishes = lock(&shared.wishes);
                            wishes.subscribed.contains(local)
                                && !wishes.unsubscribing.contains(local)
                        }
                        Arrival::Foreign => false,
                    };
                    if lost {
                        // Its slot moved: the new connection asks the new owner.
                        return format!("Redis dropped the subscription to {channel}");
                    }
                }
            },
        }
    }
}
