//! The in-process engine: nodes on one [`MemoryBus`] deliver to each other
//! synchronously. It spans one process only — for `chatd` and for tests that
//! need several nodes without Redis.

use std::collections::HashSet;
use std::sync::{Arc, RwLock, Weak};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};

use crate::broker::{Broker, BrokerError, Handler};

/// A process-local bus that [`MemoryBroker`] nodes attach to.
#[derive(Default)]
pub struct MemoryBus {
    nodes: RwLock<Vec<Weak<Node>>>,
}

struct Node {
    channels: RwLock<HashSet<String>>,
    handler: Handler,
}

impl MemoryBus {
    /// A new, empty bus.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Attaches a node that delivers to `handler`.
    pub fn node(self: &Arc<Self>, handler: Handler) -> MemoryBroker {
        let node = Arc::new(Node {
            channels: RwLock::default(),
            handler,
        });
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|n| n.strong_count() > 0);
        nodes.push(Arc::downgrade(&node));
        MemoryBroker {
            bus: Arc::clone(self),
            node,
        }
    }

    fn deliver(&self, channel: &str, payload: Bytes) {
        // Collect the handlers first so no lock is held while they run.
        let handlers: Vec<Handler> = {
            let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
            nodes
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|n| {
                    n.channels
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(channel)
                })
                .map(|n| Arc::clone(&n.handler))
                .collect()
        };
        for handler in handlers {
            handler(channel, payload.clone());
        }
    }
}

/// One node on a [`MemoryBus`].
pub struct MemoryBroker {
    bus: Arc<MemoryBus>,
    node: Arc<Node>,
}

impl MemoryBroker {
    /// A single node on a bus of its own: the embedded default.
    pub fn standalone(handler: Handler) -> Self {
        MemoryBus::new().node(handler)
    }

    fn channels(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<String>> {
        self.node
            .channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Broker for MemoryBroker {
    fn publish(
        &self,
        channel: &str,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.bus.deliver(channel, payload);
        ready(Ok(())).boxed()
    }

    fn subscribe(&self, channel: &str) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.channels().insert(channel.to_owned());
        ready(Ok(())).boxed()
    }

    fn unsubscribe(&self, channel: &str) {
        self.channels().remove(channel);
    }

    fn check(&self) -> BoxFuture<'static, Result<(), BrokerError>> {
        ready(Ok(())).boxed()
    }
}
