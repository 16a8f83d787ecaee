//! Publish/subscribe by channel, the way gateway replicas reach each other.
//!
//! - [`Broker`]: the engine interface (`broker.rs`).
//! - [`memory::MemoryBus`]: the in-process engine, for `chatd` and tests. Its
//!   limit is one process: nodes on one bus see each other, nothing else does.
//! - [`redis::RedisBroker`]: Redis pub/sub, one multiplexed subscriber
//!   connection per process plus one multiplexed command connection, so any number of
//!   gateway replicas can share one Redis; or sharded pub/sub on a Redis
//!   Cluster (`redis+cluster://`), one subscriber connection per shard master
//!   and channels grouped into hash-tagged partitions
//!   ([`redis::partitions`]), so each shard carries its part of the traffic.
//!
//! A node receives what is published on the channels it subscribed to
//! through the [`Handler`] it was built with. Reference counting of local
//! interest lives with the caller (the gateway's hub): it subscribes a
//! channel when its first local connection wants it and unsubscribes when
//! the last one goes. Subscribe and unsubscribe calls take effect in the
//! order they are made, so such transitions never race.
//!
//! The same contract suite (`tests/contract.rs`) runs against every engine:
//! the in-process bus, one Redis, and a six-node Redis Cluster.

mod broker;
pub mod channel;
pub mod envelope;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
pub mod redis_url;

pub use broker::{Broker, BrokerError, Handler};
