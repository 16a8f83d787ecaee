//! The local registry: which connections of this process want which
//! channel, and delivery from the broker to them.
//!
//! A channel's list of local connections is its reference count: the first
//! connection subscribes the channel at the broker, the last one to go
//! unsubscribes it. Both requests are queued while the registry lock is held,
//! so they reach the broker in the order the transitions happened. Delivery
//! never waits on a connection: a full outbound queue marks that connection
//! as a slow consumer (it is closed with 1013) and fan-out moves on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};

use bytes::Bytes;
use chat_broker::{Broker, BrokerError, Handler};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::{Notify, mpsc};

use crate::metrics::GatewayMetrics;
use chat_broker::envelope::{self, Outbound};

type Ready = Shared<BoxFuture<'static, Result<(), BrokerError>>>;

/// One connection as the hub sees it.
#[derive(Clone)]
pub struct Conn {
    id: u64,
    tx: mpsc::Sender<Outbound>,
    /// Signalled when the connection's queue overflowed.
    overflow: Arc<Notify>,
}

impl Conn {
    /// A new connection with an outbound queue of `capacity` frames; returns
    /// the receiving end and the overflow signal for its session.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Outbound>, Arc<Notify>) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = mpsc::channel(capacity);
        let overflow = Arc::new(Notify::new());
        let conn = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            tx,
            overflow: Arc::clone(&overflow),
        };
        (conn, rx, overflow)
    }

    /// Unique id within this process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queues a frame for this connection only; `false` if it had to be
    /// refused (queue full: the connection is then closed as a slow consumer).
    pub fn push(&self, frame: Outbound, metrics: &GatewayMetrics) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics.queue_overflows.inc();
                self.overflow.notify_one();
                false
            }
            // The session is ending; it removes itself from every channel.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

struct Channel {
    conns: Vec<Conn>,
    ready: Ready,
}

/// The registry of one gateway process.
pub struct Hub {
    broker: OnceLock<Arc<dyn Broker>>,
    channels: RwLock<HashMap<String, Channel>>,
    metrics: GatewayMetrics,
}

impl Hub {
    /// A hub with no broker yet: see [`Hub::attach`].
    pub fn new(metrics: GatewayMetrics) -> Arc<Self> {
        Arc::new(Self {
            broker: OnceLock::new(),
            channels: RwLock::default(),
            metrics,
        })
    }

    /// The callback a broker delivers to. It holds the hub weakly, so the
    /// broker (owned by the hub) does not keep the hub alive.
    pub fn handler(self: &Arc<Self>) -> Handler {
        let hub: Weak<Hub> = Arc::downgrade(self);
        Arc::new(move |channel: &str, payload: Bytes| {
            if let Some(hub) = hub.upgrade() {
                hub.deliver(channel, payload);
            }
        })
    }

    /// Attaches the broker built with [`Hub::handler`]. Only the first call counts.
    pub fn attach(&self, broker: Arc<dyn Broker>) {
        let _ = self.broker.set(broker);
    }

    /// The attached broker.
    pub fn broker(&self) -> Result<&Arc<dyn Broker>, BrokerError> {
        self.broker
            .get()
            .ok_or_else(|| BrokerError::Unavailable("no broker attached".into()))
    }

    /// Checks the broker end to end.
    pub async fn check(&self) -> Result<(), BrokerError> {
        self.broker()?.check().await
    }

    /// Adds `conn` to `channel`; resolves once the broker delivers it here.
    /// On error the connection is not registered.
    pub async fn join(&self, channel: &str, conn: &Conn) -> Result<(), BrokerError> {
        let broker = Arc::clone(self.broker()?);
        let ready = {
            let mut channels = self.write();
            let entry = channels
                .entry(channel.to_owned())
                .or_insert_with(|| Channel {
                    conns: Vec::new(),
                    ready: broker.subscribe(channel).shared(),
                });
            if !entry.conns.iter().any(|c| c.id == conn.id) {
                entry.conns.push(conn.clone());
            }
            entry.ready.clone()
        };
        let result = ready.await;
        if result.is_err() {
            self.leave(channel, conn.id);
        }
        result
    }

    /// Removes a connection from `channel`; the last one out unsubscribes it.
    pub fn leave(&self, channel: &str, conn_id: u64) {
        let mut channels = self.write();
        let Some(entry) = channels.get_mut(channel) else {
            return;
        };
        entry.conns.retain(|c| c.id != conn_id);
        if entry.conns.is_empty() {
            channels.remove(channel);
            if let Ok(broker) = self.broker() {
                broker.unsubscribe(channel);
            }
        }
    }

    /// Publishes an envelope on `channel`, to every replica.
    pub async fn publish(&self, channel: &str, envelope: Bytes) -> Result<(), BrokerError> {
        self.broker()?.publish(channel, envelope).await
    }

    /// Channels with at least one local connection (for tests and metrics).
    pub fn channel_count(&self) -> usize {
        self.channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Local connections on `channel`.
    pub fn members(&self, channel: &str) -> usize {
        self.channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(channel)
            .map_or(0, |c| c.conns.len())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Channel>> {
        self.channels.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a published envelope to every local connection on `channel`.
    fn deliver(&self, channel: &str, payload: Bytes) {
        let Some((frame, published)) = envelope::decode(payload) else {
            self.metrics.dropped_envelopes.inc();
            return;
        };
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = channels.get(channel) else {
            return;
        };
        for conn in &entry.conns {
            conn.push(frame.clone(), &self.metrics);
        }
        drop(channels);
        let latency = envelope::now_micros().saturating_sub(published);
        self.metrics.fanout_latency.observe(latency as f64 / 1e6);
    }
}
