//! The engine interface.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

/// Receives every message published on a channel this node subscribed to:
/// `(channel, payload)`, the channel without any backend prefix. Called from
/// the engine's delivery path, so it must not block: hand work off, don't do it.
pub type Handler = Arc<dyn Fn(&str, Bytes) + Send + Sync>;

/// Why a broker call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The backend cannot be reached now; the call had no effect.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// A publish/subscribe engine.
///
/// Contract (checked by `tests/contract.rs` for every engine):
/// - after `subscribe(c)` resolves, every later `publish(c, p)` from any node
///   reaches this node's handler once, in publish order per publisher;
/// - after `unsubscribe(c)`, nothing more arrives on `c`;
/// - subscribe/unsubscribe calls on one node apply in call order, even when
///   the futures they return are awaited later or not at all.
pub trait Broker: Send + Sync + 'static {
    /// Publishes `payload` on `channel` to every subscribed node.
    fn publish(&self, channel: &str, payload: Bytes)
    -> BoxFuture<'static, Result<(), BrokerError>>;

    /// Starts receiving `channel`. The request is queued before this returns
    /// (fixing its order); the future resolves once it is active.
    fn subscribe(&self, channel: &str) -> BoxFuture<'static, Result<(), BrokerError>>;

    /// Stops receiving `channel`, queued in call order.
    fn unsubscribe(&self, channel: &str);

    /// Checks that the engine works end to end (for readiness probes).
    fn check(&self) -> BoxFuture<'static, Result<(), BrokerError>>;
}
