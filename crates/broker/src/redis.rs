//! The Redis engine: pub/sub across processes.
//!
//! One subscriber connection per process carries every channel this node
//! wants. Subscribing is a wish, not a queued command: the handle records
//! which channels are wanted (a set bounded by the channels in use, however
//! fast they come and go), and the single task that owns the connection
//! brings Redis in line, a batch of SUBSCRIBE/UNSUBSCRIBE at a time, while
//! it keeps delivering — a subscription change never pauses the messages of
//! other channels, and a channel that goes 0→1→0→1 quickly ends as last
//! wished. Publishes and health checks go through one multiplexed command
//! connection (redis-rs's `ConnectionManager`: concurrent commands are
//! pipelined on it, and it reconnects by itself). When Redis goes away the
//! task reconnects with backoff and subscribes again to everything still
//! wanted; meanwhile calls fail fast with [`BrokerError::Unavailable`]
//! instead of hanging.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use tokio::sync::{Notify, oneshot};
use tracing::{debug, info, warn};

use crate::broker::{Broker, BrokerError, Handler};

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
    /// `redis://host:port/db`.
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
    /// This node's private channel for health round trips (full name).
    health_channel: String,
    prefix: String,
    errors: Option<prometheus::IntCounter>,
}

impl Shared {
    fn failed(&self, what: &str, error: &dyn std::fmt::Display) -> BrokerError {
        if let Some(errors) = &self.errors {
            errors.inc();
        }
        BrokerError::Unavailable(format!("{what}: {error}"))
    }
}

/// A node on Redis pub/sub. Dropping it stops its subscriber task.
pub struct RedisBroker {
    redis: ConnectionManager,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The connection for Redis commands, shared by every Redis engine of the
/// workspace: one multiplexed connection (cheap to clone; concurrent commands
/// are pipelined on it, with no per-use health check as a pool would make),
/// made on first use and remade after a failure. Connecting and each answer
/// give up after [`COMMAND_TIMEOUT`], so callers fail fast while Redis is
/// away. Must be called inside a tokio runtime.
pub fn command_connection(url: &str) -> Result<ConnectionManager, String> {
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

impl RedisBroker {
    /// Starts a node delivering to `handler`. Only the URL is checked here;
    /// the connection is made in the background and retried until it works,
    /// so a node can start while Redis is down (and reports not ready).
    /// Must be called inside a tokio runtime.
    pub fn start(options: RedisOptions, handler: Handler) -> Result<Self, BrokerError> {
        let client = redis::Client::open(options.url.as_str())
            .map_err(|e| BrokerError::Unavailable(format!("invalid Redis URL: {e}")))?;
        let redis = command_connection(&options.url).map_err(BrokerError::Unavailable)?;
        let shared = Arc::new(Shared {
            connected: AtomicBool::new(false),
            down: AtomicBool::new(false),
            wishes: Mutex::default(),
            wished: Notify::new(),
            health_waiters: Mutex::default(),
            health_channel: format!("{}health:{}", options.prefix, ulid::Ulid::new()),
            prefix: options.prefix,
            errors: options.errors,
        });
        let task = tokio::spawn(subscriber_task(client, handler, Arc::clone(&shared)));
        Ok(Self {
            redis,
            shared,
            task,
        })
    }

    /// The command connection, for callers that need other Redis commands.
    pub fn connection(&self) -> &ConnectionManager {
        &self.redis
    }
}

async fn publish_raw(
    mut conn: ConnectionManager,
    shared: &Shared,
    channel: &str,
    payload: &[u8],
) -> Result<(), BrokerError> {
    let attempt = async {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(|e| shared.failed("PUBLISH", &e))
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, attempt).await {
        Ok(result) => result.map(drop),
        Err(elapsed) => Err(shared.failed("PUBLISH", &elapsed)),
    }
}

impl Broker for RedisBroker {
    fn publish(
        &self,
        channel: &str,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<(), BrokerError>> {
        let conn = self.redis.clone();
        let shared = Arc::clone(&self.shared);
        let channel = format!("{}{channel}", self.shared.prefix);
        async move { publish_raw(conn, &shared, &channel, &payload).await }.boxed()
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
        let conn = self.redis.clone();
        let shared = Arc::clone(&self.shared);
        async move {
            if !shared.connected.load(Ordering::Acquire) {
                return Err(BrokerError::Unavailable(
                    "subscriber connection is down".into(),
                ));
            }
            // A round trip through pub/sub itself: a subscriber connection can
            // stall silently while plain commands still work.
            let nonce = ulid::Ulid::new().to_string();
            let (tx, rx) = oneshot::channel();
            lock(&shared.health_waiters).insert(nonce.clone(), tx);
            let result = async {
                publish_raw(conn, &shared, &shared.health_channel, nonce.as_bytes()).await?;
                match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
                    Ok(Ok(())) => Ok(()),
                    _ => Err(shared.failed("pub/sub round trip", &"no echo within 2s")),
                }
            }
            .await;
            lock(&shared.health_waiters).remove(&nonce);
            result
        }
        .boxed()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Owns the subscriber connection: brings its subscriptions in line with
/// the wishes, delivers messages, reconnects and re-subscribes when the
/// connection is lost. Ends when the broker is dropped (aborted).
async fn subscriber_task(client: redis::Client, handler: Handler, shared: Arc<Shared>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match connect(&client, &shared).await {
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
                serve(sink, &mut stream, &handler, &shared).await;
                shared.connected.store(false, Ordering::Release);
                shared.down.store(true, Ordering::Release);
                fail_waiters(&shared, "Redis subscriber connection lost");
                warn!("Redis subscriber connection lost; reconnecting");
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

async fn connect(
    client: &redis::Client,
    shared: &Shared,
) -> redis::RedisResult<(PubSubSink, redis::aio::PubSubStream)> {
    let pubsub = tokio::time::timeout(COMMAND_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    let (mut sink, stream) = pubsub.split();
    sink.subscribe(&shared.health_channel).await?;
    Ok((sink, stream))
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

/// Sends `batch` on a clone of the sink; answers the batch and whether Redis took it.
fn send_batch(
    mut sink: PubSubSink,
    prefix: String,
    batch: Batch,
) -> BoxFuture<'static, (Batch, Result<(), String>)> {
    async move {
        let full = |names: &[String]| -> Vec<String> {
            names.iter().map(|c| format!("{prefix}{c}")).collect()
        };
        let attempt = async {
            if !batch.subscribe.is_empty() {
                sink.subscribe(full(&batch.subscribe)).await?;
            }
            if !batch.unsubscribe.is_empty() {
                sink.unsubscribe(full(&batch.unsubscribe)).await?;
            }
            Ok::<(), redis::RedisError>(())
        };
        let result = match tokio::time::timeout(COMMAND_TIMEOUT, attempt).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        };
        (batch, result)
    }
    .boxed()
}

/// Runs one connection until it breaks.
async fn serve(
    sink: PubSubSink,
    stream: &mut redis::aio::PubSubStream,
    handler: &Handler,
    shared: &Shared,
) {
    let mut inflight: Option<BoxFuture<'static, (Batch, Result<(), String>)>> = None;
    loop {
        if inflight.is_none() {
            inflight = next_batch(shared)
                .map(|batch| send_batch(sink.clone(), shared.prefix.clone(), batch));
        }
        let idle = inflight.is_none();
        let done = async {
            match inflight.as_mut() {
                Some(batch) => batch.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            (batch, result) = done => {
                inflight = None;
                if let Err(why) = result {
                    let _ = shared.failed("SUBSCRIBE", &why);
                    // The reconnect subscribes everything wanted again.
                    return;
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
            message = stream.next() => {
                let Some(message) = message else { return };
                let channel = message.get_channel_name();
                if channel == shared.health_channel {
                    let nonce = String::from_utf8_lossy(message.get_payload_bytes()).into_owned();
                    if let Some(waiter) = lock(&shared.health_waiters).remove(&nonce) {
                        let _ = waiter.send(());
                    }
                } else if let Some(local) = channel.strip_prefix(shared.prefix.as_str()) {
                    handler(local, Bytes::copy_from_slice(message.get_payload_bytes()));
                }
            }
        }
    }
}
