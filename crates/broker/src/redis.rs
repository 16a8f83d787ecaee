//! The Redis engine: pub/sub across processes.
//!
//! One subscriber connection per process carries every channel this node
//! wants; a single task owns it, so subscribe/unsubscribe requests apply in
//! the order they were made. Publishes and health checks go through one
//! multiplexed command connection (redis-rs's `ConnectionManager`: concurrent
//! commands are pipelined on it, and it reconnects by itself). When Redis
//! goes away the task reconnects with
//! backoff and subscribes again to everything still wanted; meanwhile calls
//! fail fast with [`BrokerError::Unavailable`] instead of hanging.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::broker::{Broker, BrokerError, Handler};

/// How long one Redis command may take before it counts as unavailable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// First and longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);
/// Channels per SUBSCRIBE when re-subscribing after a reconnect.
const RESUBSCRIBE_CHUNK: usize = 1000;

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

enum Command {
    Subscribe(String, oneshot::Sender<Result<(), BrokerError>>),
    Unsubscribe(String),
}

/// State shared by the handle and the subscriber task.
struct Shared {
    /// The subscriber connection is up and subscribed to what is wanted.
    connected: AtomicBool,
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
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
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
            health_waiters: Mutex::default(),
            health_channel: format!("{}health:{}", options.prefix, ulid::Ulid::new()),
            prefix: options.prefix,
            errors: options.errors,
        });
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(subscriber_task(client, rx, handler, Arc::clone(&shared)));
        Ok(Self {
            redis,
            commands,
            shared,
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
        let (tx, rx) = oneshot::channel();
        let queued = self
            .commands
            .send(Command::Subscribe(channel.to_owned(), tx));
        async move {
            queued.map_err(|_| BrokerError::Unavailable("broker stopped".into()))?;
            rx.await
                .unwrap_or_else(|_| Err(BrokerError::Unavailable("broker stopped".into())))
        }
        .boxed()
    }

    fn unsubscribe(&self, channel: &str) {
        // A stopped task has no subscriptions left to drop.
        let _ = self.commands.send(Command::Unsubscribe(channel.to_owned()));
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

/// Owns the subscriber connection: applies commands in order, delivers
/// messages, reconnects and re-subscribes when the connection is lost.
async fn subscriber_task(
    client: redis::Client,
    mut commands: mpsc::UnboundedReceiver<Command>,
    handler: Handler,
    shared: Arc<Shared>,
) {
    let mut wanted: HashSet<String> = HashSet::new();
    let mut backoff = BACKOFF_MIN;
    loop {
        match connect(&client, &shared, &wanted).await {
            Ok((mut sink, mut stream)) => {
                backoff = BACKOFF_MIN;
                shared.connected.store(true, Ordering::Release);
                info!(channels = wanted.len(), "Redis subscriber connected");
                let open = serve(
                    &mut sink,
                    &mut stream,
                    &mut commands,
                    &handler,
                    &shared,
                    &mut wanted,
                )
                .await;
                shared.connected.store(false, Ordering::Release);
                if !open {
                    return;
                }
                warn!("Redis subscriber connection lost; reconnecting");
            }
            Err(e) => {
                debug!(error = %e, ?backoff, "Redis subscriber cannot connect");
                let _ = shared.failed("subscriber connect", &e);
            }
        }
        // Wait before the next attempt, answering requests meanwhile: a
        // subscribe fails at once rather than hanging until Redis returns.
        let deadline = tokio::time::sleep(backoff);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => break,
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Subscribe(_, reply)) => {
                        let _ = reply.send(Err(BrokerError::Unavailable("Redis is unreachable".into())));
                    }
                    Some(Command::Unsubscribe(channel)) => { wanted.remove(&channel); }
                },
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn connect(
    client: &redis::Client,
    shared: &Shared,
    wanted: &HashSet<String>,
) -> redis::RedisResult<(redis::aio::PubSubSink, redis::aio::PubSubStream)> {
    let pubsub = tokio::time::timeout(COMMAND_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    let (mut sink, stream) = pubsub.split();
    sink.subscribe(&shared.health_channel).await?;
    let full: Vec<String> = wanted
        .iter()
        .map(|c| format!("{}{c}", shared.prefix))
        .collect();
    for chunk in full.chunks(RESUBSCRIBE_CHUNK) {
        sink.subscribe(chunk).await?;
    }
    Ok((sink, stream))
}

/// Runs one connection until it breaks (returns true) or the broker is
/// dropped (returns false).
async fn serve(
    sink: &mut redis::aio::PubSubSink,
    stream: &mut redis::aio::PubSubStream,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    handler: &Handler,
    shared: &Shared,
    wanted: &mut HashSet<String>,
) -> bool {
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return false,
                Some(Command::Subscribe(channel, reply)) => {
                    let full = format!("{}{channel}", shared.prefix);
                    match tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(&full)).await {
                        Ok(Ok(())) => {
                            wanted.insert(channel);
                            let _ = reply.send(Ok(()));
                        }
                        failed => {
                            let why = match failed { Ok(Err(e)) => e.to_string(), _ => "timed out".into() };
                            let _ = reply.send(Err(shared.failed("SUBSCRIBE", &why)));
                            return true;
                        }
                    }
                }
                Some(Command::Unsubscribe(channel)) => {
                    let full = format!("{}{channel}", shared.prefix);
                    wanted.remove(&channel);
                    match tokio::time::timeout(COMMAND_TIMEOUT, sink.unsubscribe(&full)).await {
                        Ok(Ok(())) => {}
                        // The reconnect will not re-subscribe it, which is the same result.
                        _ => return true,
                    }
                }
            },
            message = stream.next() => {
                let Some(message) = message else { return true };
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
