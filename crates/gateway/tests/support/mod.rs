//! Starting gateways for the behavioural suite: one process-local gateway on
//! the in-process broker, or two replicas sharing a real Redis.

#![allow(dead_code)] // each test binary uses its own part of the support
#![allow(clippy::expect_used)] // a failed expect is a failed test, with its message

/// Runs each scenario `fn(Kind)` on the embedded engines (as `chatd` runs),
/// on two gateway replicas sharing a real Redis, and on two sharing a real
/// Redis Cluster.
#[allow(unused_macros)] // identity.rs runs one engine only
macro_rules! suite {
    ($($scenario:ident),* $(,)?) => {
        /// On the embedded engines: in-process broker, SQLite store.
        mod memory {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::$scenario(super::Kind::Memory).await } )*
        }
        /// On two gateway replicas sharing a real Redis.
        mod redis {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::$scenario(super::Kind::Redis).await } )*
        }
        /// On two gateway replicas sharing a real Redis Cluster: every
        /// scenario in turn on one cluster (six processes are slow to
        /// start), each under a prefix of its own.
        mod redis_cluster {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_suite_holds_on_a_redis_cluster() {
                let cluster = std::sync::Arc::new(
                    chat_testkit::redis_cluster::TestRedisCluster::start()
                        .expect("a Redis Cluster"),
                );
                $( super::$scenario(super::Kind::Cluster(cluster.clone())).await; )*
            }
        }
    };
}

use std::time::Duration;

use chat_broker::redis::RedisOptions;
use chat_gateway::{Access, Engine, Gateway, GatewaySettings};
use chat_runtime::settings::{RoomSettings, ServerSettings};
use std::sync::Arc;

use chat_testkit::redis::TestRedis;
use chat_testkit::redis_cluster::TestRedisCluster;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

thread_local! {
    /// The room limits of gateways started on this thread (a test sets them
    /// before starting its cluster).
    static ROOMS: std::cell::RefCell<RoomSettings> = std::cell::RefCell::new(RoomSettings::default());
}

/// Room limits for the gateways this test starts from now on.
pub fn set_room_settings(rooms: RoomSettings) {
    ROOMS.with(|r| *r.borrow_mut() = rooms);
}

fn rooms() -> RoomSettings {
    ROOMS.with(|r| r.borrow().clone())
}

/// One running gateway.
pub struct Node {
    /// `host:port` it listens on.
    pub addr: String,
    /// Its gateway, to inspect registries.
    pub gateway: Gateway,
    stop: Option<oneshot::Sender<()>>,
    done: Option<JoinHandle<std::io::Result<()>>>,
}

impl Node {
    /// Starts a gateway on a free port.
    pub async fn start(settings: GatewaySettings, engine: Engine) -> Self {
        Self::start_with(settings, engine, Access::open()).await
    }

    /// Starts a gateway with the given identity mode.
    pub async fn start_with(settings: GatewaySettings, engine: Engine, access: Access) -> Self {
        let server = ServerSettings {
            listen: "127.0.0.1:0".parse().expect("address"),
            workers: 2,
            shutdown_grace: Duration::from_secs(5),
            ..ServerSettings::default()
        };
        let webhooks = chat_webhooks::WebhookSettings::default();
        let (app, gateway) =
            Gateway::alone(&server, settings, rooms(), engine, access, &webhooks, None)
                .await
                .expect("gateway builds");
        let addr = app.addr().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            gateway,
            stop: Some(stop),
            done: Some(done),
        }
    }

    /// Stops the node as SIGTERM would, and waits for it to exit.
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.done.take() {
            Some(done) => done.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The gateways of one test and the Redis they share, if any.
pub struct Cluster {
    /// The gateways.
    pub nodes: Vec<Node>,
    /// The Redis they share, for replicated clusters.
    pub redis: Option<TestRedis>,
    /// The Redis Cluster they share, and the test's prefix there.
    pub redis_cluster: Option<(Arc<TestRedisCluster>, String)>,
    /// The embedded store's folder, for the in-process cluster.
    _dir: Option<tempfile::TempDir>,
}

/// Options for a gateway on the test's Redis, with its unique prefix.
pub fn redis_options(redis: &TestRedis) -> RedisOptions {
    RedisOptions {
        url: redis.url().into(),
        prefix: redis.prefix().into(),
        errors: None,
    }
}

/// Which engines a scenario runs on.
#[derive(Clone)]
pub enum Kind {
    /// One gateway, in-process broker, SQLite store ([`Cluster::memory`]).
    Memory,
    /// Two gateways sharing a real Redis ([`Cluster::redis`]).
    Redis,
    /// Two gateways sharing this Redis Cluster, under a prefix of their own.
    Cluster(Arc<TestRedisCluster>),
}

impl Kind {
    /// Starts the cluster.
    pub async fn start(self, settings: GatewaySettings) -> Cluster {
        self.start_with(settings, Access::open()).await
    }

    /// Starts the cluster, its gateways letting in whom `access` says.
    pub async fn start_with(self, settings: GatewaySettings, access: Access) -> Cluster {
        match self {
            Kind::Memory => Cluster::memory_with(settings, access).await,
            Kind::Redis => Cluster::redis_with(settings, access).await,
            Kind::Cluster(cluster) => Cluster::redis_cluster_with(settings, access, cluster).await,
        }
    }
}

impl Cluster {
    /// One gateway on the embedded engines (`chatd`'s).
    pub async fn memory(settings: GatewaySettings) -> Self {
        Self::memory_with(settings, Access::open()).await
    }

    /// One gateway on the embedded engines, letting in whom `access` says.
    pub async fn memory_with(settings: GatewaySettings, access: Access) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::Embedded {
            bus: chat_broker::memory::MemoryBus::new(),
            data_dir: dir.path().to_owned(),
        };
        Self {
            nodes: vec![Node::start_with(settings, engine, access).await],
            redis: None,
            redis_cluster: None,
            _dir: Some(dir),
        }
    }

    /// Two gateway replicas sharing a real Redis.
    pub async fn redis(settings: GatewaySettings) -> Self {
        Self::redis_with(settings, Access::open()).await
    }

    /// Two gateway replicas sharing a real Redis, letting in whom `access` says.
    pub async fn redis_with(settings: GatewaySettings, access: Access) -> Self {
        let redis = TestRedis::start().expect("a Redis for the test");
        let mut nodes = Vec::new();
        for _ in 0..2 {
            let engine = Engine::Redis(redis_options(&redis));
            nodes.push(Node::start_with(settings.clone(), engine, access.clone()).await);
        }
        Self {
            nodes,
            redis: Some(redis),
            redis_cluster: None,
            _dir: None,
        }
    }

    /// Two gateway replicas sharing `cluster`, under a prefix of their own.
    pub async fn redis_cluster_with(
        settings: GatewaySettings,
        access: Access,
        cluster: Arc<TestRedisCluster>,
    ) -> Self {
        let prefix = chat_testkit::unique("test:");
        let mut nodes = Vec::new();
        for _ in 0..2 {
            let engine = Engine::Redis(RedisOptions {
                url: cluster.url(),
                prefix: prefix.clone(),
                errors: None,
            });
            nodes.push(Node::start_with(settings.clone(), engine, access.clone()).await);
        }
        Self {
            nodes,
            redis: None,
            redis_cluster: Some((cluster, prefix)),
            _dir: None,
        }
    }

    /// Address of node `i`; with one node every index is that node.
    pub fn addr(&self, i: usize) -> &str {
        &self.nodes[i % self.nodes.len()].addr
    }

    /// Every `(from, to)` pair of node indexes: with two replicas both
    /// directions and both same-node cases.
    pub fn directions(&self) -> Vec<(usize, usize)> {
        let n = self.nodes.len();
        (0..n).flat_map(|a| (0..n).map(move |b| (a, b))).collect()
    }

    /// True when no node holds a local channel and Redis has no subscriber
    /// left on any channel but the nodes' own health channels.
    pub fn registries_empty(&self) -> bool {
        if self
            .nodes
            .iter()
            .any(|n| n.gateway.hub().channel_count() > 0)
        {
            return false;
        }
        if let Some((cluster, prefix)) = &self.redis_cluster {
            // Shard channels, on every master: `{tag}{prefix}…`.
            let Ok(masters) = cluster.masters() else {
                return false;
            };
            return masters.iter().all(|port| {
                let Ok(listed) =
                    cluster.cli(*port, &["PUBSUB", "SHARDCHANNELS", &format!("*{prefix}*")])
                else {
                    return false;
                };
                listed
                    .lines()
                    .filter(|l| !l.is_empty())
                    .all(|c| c.contains(&format!("{prefix}health:")))
            });
        }
        match &self.redis {
            None => true,
            Some(redis) => {
                let Ok(mut conn) = redis.connection() else {
                    return false;
                };
                let channels: Vec<String> = redis::cmd("PUBSUB")
                    .arg("CHANNELS")
                    .arg(format!("{}*", redis.prefix()))
                    .query(&mut conn)
                    .unwrap_or_else(|_| vec!["<error>".into()]);
                channels
                    .iter()
                    .all(|c| c.starts_with(&format!("{}health:", redis.prefix())))
            }
        }
    }
}

/// Default settings for tests: production defaults.
pub fn settings() -> GatewaySettings {
    GatewaySettings::default()
}
