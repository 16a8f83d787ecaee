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
    /// Whose connection it is (`None` on the lobby), for envelopes that
    /// skip one user's connections.
    user: Option<Arc<str>>,
    tx: mpsc::Sender<Outbound>,
    /// Signalled when the connection's queue overflowed.
    overflow: Arc<Notify>,
}

impl Conn {
    /// A new connection of `user` (`None` on the lobby) with an outbound
    /// queue of `capacity` frames; returns the receiving end and the
    /// overflow signal for its session.
    pub fn new(
        capacity: usize,
        user: Option<&str>,
    ) -> (Self, mpsc::Receiver<Outbound>, Arc<Notify>) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = mpsc::channel(capacity);
        let overflow = Arc::new(Notify::new());
        let conn = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            user: user.map(Arc::from),
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

/// A channel's local connections: a dense list for fan-out, and where each
/// connection sits in it, so joining and leaving cost the same however many
/// connections the channel has (19 000 lobby connections closing at once
/// must not hold the registry lock for a quadratic time).
struct Channel {
    conns: Vec<Conn>,
    index: HashMap<u64, usize>,
    ready: Ready,
}

impl Channel {
    /// Adds `conn` unless it is there already.
    fn add(&mut self, conn: &Conn) {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.index.entry(conn.id) {
            slot.insert(self.conns.len());
            self.conns.push(conn.clone());
        }
    }

    /// Removes connection `id` (the last one takes its place).
    fn remove(&mut self, id: u64) {
        let Some(at) = self.index.remove(&id) else {
            return;
        };
        self.conns.swap_remove(at);
        if let Some(moved) = self.conns.get(at) {
            self.index.insert(moved.id, at);
        }
    }
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
                    index: HashMap::new(),
                    ready: broker.subscribe(channel).shared(),
                });
            entry.add(conn);
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
        entry.remove(conn_id);
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
        match frame {
            Outbound::TextExcept { text, except } => {
                let text = Outbound::Text(text);
                for conn in &entry.conns {
                    if conn.user.as_deref() != Some(&*except) {
                        conn.push(text.clone(), &self.metrics);
                    }
                }
            }
            frame => {
                for conn in &entry.conns {
                    conn.push(frame.clone(), &self.metrics);
                }
            }
        }
        drop(channels);
        let latency = envelope::now_micros().saturating_sub(published);
        self.metrics.fanout_latency.observe(latency as f64 / 1e6);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_broker::memory::MemoryBroker;

    #[tokio::test]
    async fn leaving_from_anywhere_in_a_channel_keeps_the_others_receiving() {
        let metrics = GatewayMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let hub = Hub::new(metrics);
        hub.attach(Arc::new(MemoryBroker::standalone(hub.handler())));
        let mut conns = Vec::new();
        for _ in 0..5 {
            let (conn, queue, _overflow) = Conn::new(8, None);
            hub.join("room:x", &conn).await.expect("join");
            hub.join("room:x", &conn)
                .await
                .expect("joining twice is once");
            conns.push((conn, queue));
        }
        assert_eq!(hub.members("room:x"), 5);
        // The middle one, then the last, then the first: every place in the list.
        for at in [2, 4, 0] {
            hub.leave("room:x", conns[at].0.id());
        }
        hub.leave("room:x", conns[2].0.id()); // again: nothing
        assert_eq!(hub.members("room:x"), 2);
        hub.deliver("room:x", chat_broker::envelope::text("hello"));
        for (i, (_, queue)) in conns.iter_mut().enumerate() {
            let got = queue.try_recv().is_ok();
            assert_eq!(got, i == 1 || i == 3, "connection {i}");
        }
        for at in [1, 3] {
            hub.leave("room:x", conns[at].0.id());
        }
        assert_eq!(
            hub.channel_count(),
            0,
            "the last one out removes the channel"
        );
    }
}
