//! The broker contract, run against every engine: the in-process bus and
//! Redis pub/sub (a real Redis — `REDIS_URL`, or a private `redis-server`),
//! and sharded pub/sub on a real six-node Redis Cluster.

#![allow(clippy::expect_used)] // a failed expect is a failed test (or benchmark), with its message
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::sync::Arc;

use bytes::Bytes;
use chat_broker::memory::MemoryBus;
use chat_broker::redis::{RedisBroker, RedisOptions};
use chat_broker::{Broker, Handler};
use chat_testkit::WAIT;
use chat_testkit::redis::TestRedis;
use chat_testkit::redis_cluster::TestRedisCluster;
use tokio::sync::mpsc;

/// A node and what it receives.
struct Node {
    broker: Box<dyn Broker>,
    inbox: mpsc::UnboundedReceiver<(String, Bytes)>,
}

impl Node {
    async fn next(&mut self) -> (String, String) {
        let (channel, payload) = tokio::time::timeout(WAIT, self.inbox.recv())
            .await
            .expect("a message arrives in time")
            .expect("broker alive");
        (channel, String::from_utf8(payload.to_vec()).expect("utf-8"))
    }
}

fn handler() -> (Handler, mpsc::UnboundedReceiver<(String, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |channel: &str, payload: Bytes| {
        let _ = tx.send((channel.to_owned(), payload));
    });
    (handler, rx)
}

/// Two nodes that can hear each other, and whatever keeps them alive.
struct Pair {
    a: Node,
    b: Node,
    _redis: Option<TestRedis>,
}

fn memory() -> Pair {
    let bus = MemoryBus::new();
    let (ha, ia) = handler();
    let (hb, ib) = handler();
    Pair {
        a: Node {
            broker: Box::new(bus.node(ha)),
            inbox: ia,
        },
        b: Node {
            broker: Box::new(bus.node(hb)),
            inbox: ib,
        },
        _redis: None,
    }
}

fn redis_node(redis: &TestRedis) -> Node {
    let (h, inbox) = handler();
    let options = RedisOptions {
        url: redis.url().into(),
        prefix: redis.prefix().into(),
        errors: None,
    };
    Node {
        broker: Box::new(RedisBroker::start(options, h).expect("valid URL")),
        inbox,
    }
}

fn redis() -> Pair {
    let redis = TestRedis::start().expect("a Redis for the test");
    Pair {
        a: redis_node(&redis),
        b: redis_node(&redis),
        _redis: Some(redis),
    }
}

async fn publish(node: &Node, channel: &str, text: &str) {
    node.broker
        .publish(channel, Bytes::from(text.to_owned()))
        .await
        .expect("publish");
}

async fn a_subscriber_receives_what_any_node_publishes(mut p: Pair) {
    p.a.broker.subscribe("room:x").await.expect("subscribe");
    publish(&p.b, "room:x", "from b").await;
    publish(&p.a, "room:x", "from a").await;
    assert_eq!(p.a.next().await, ("room:x".into(), "from b".into()));
    assert_eq!(p.a.next().await, ("room:x".into(), "from a".into()));
}

async fn messages_arrive_in_publish_order(mut p: Pair) {
    p.a.broker.subscribe("c").await.expect("subscribe");
    for i in 0..200 {
        publish(&p.b, "c", &i.to_string()).await;
    }
    for i in 0..200 {
        assert_eq!(p.a.next().await.1, i.to_string());
    }
}

async fn a_node_hears_only_its_channels(mut p: Pair) {
    p.a.broker.subscribe("mine").await.expect("subscribe");
    p.b.broker.subscribe("theirs").await.expect("subscribe");
    publish(&p.b, "theirs", "not for a").await;
    publish(&p.b, "mine", "for a").await;
    assert_eq!(p.a.next().await, ("mine".into(), "for a".into()));
    assert_eq!(p.b.next().await, ("theirs".into(), "not for a".into()));
}

async fn nothing_arrives_after_unsubscribe(mut p: Pair) {
    p.a.broker.subscribe("gone").await.expect("subscribe");
    p.a.broker.subscribe("marker").await.expect("subscribe");
    p.a.broker.unsubscribe("gone");
    // Make sure the unsubscribe has been applied: a later subscribe resolves after it.
    p.a.broker.subscribe("barrier").await.expect("subscribe");
    publish(&p.b, "gone", "must not arrive").await;
    publish(&p.b, "marker", "arrives").await;
    // Same publisher, so order is kept: had "gone" arrived, it would come first.
    assert_eq!(p.a.next().await, ("marker".into(), "arrives".into()));
}

async fn subscription_changes_apply_in_call_order(mut p: Pair) {
    // Neither future is awaited before the next call: order comes from the calls.
    let first = p.a.broker.subscribe("flip");
    p.a.broker.unsubscribe("flip");
    let last = p.a.broker.subscribe("flip");
    first.await.expect("subscribe");
    last.await.expect("subscribe");
    publish(&p.b, "flip", "still subscribed").await;
    assert_eq!(p.a.next().await, ("flip".into(), "still subscribed".into()));
}

async fn the_check_passes_on_a_working_engine(p: Pair) {
    // A subscribe resolves once the node is connected, like any real use.
    p.a.broker.subscribe("any").await.expect("subscribe");
    p.b.broker.subscribe("any").await.expect("subscribe");
    p.a.broker.check().await.expect("ready");
    p.b.broker.check().await.expect("ready");
}

macro_rules! contract {
    ($engine:ident) => {
        mod $engine {
            #[tokio::test]
            async fn a_subscriber_receives_what_any_node_publishes() {
                super::a_subscriber_receives_what_any_node_publishes(super::$engine()).await;
            }
            #[tokio::test]
            async fn messages_arrive_in_publish_order() {
                super::messages_arrive_in_publish_order(super::$engine()).await;
            }
            #[tokio::test]
            async fn a_node_hears_only_its_channels() {
                super::a_node_hears_only_its_channels(super::$engine()).await;
            }
            #[tokio::test]
            async fn nothing_arrives_after_unsubscribe() {
                super::nothing_arrives_after_unsubscribe(super::$engine()).await;
            }
            #[tokio::test]
            async fn subscription_changes_apply_in_call_order() {
                super::subscription_changes_apply_in_call_order(super::$engine()).await;
            }
            #[tokio::test]
            async fn the_check_passes_on_a_working_engine() {
                super::the_check_passes_on_a_working_engine(super::$engine()).await;
            }
        }
    };
}

contract!(memory);
contract!(redis);

/// Redis only: losing Redis is reported, and the node heals by itself.
#[tokio::test]
async fn a_redis_node_recovers_its_subscriptions_after_redis_restarts() {
    let mut redis = TestRedis::private().expect("private redis-server");
    let mut a = redis_node(&redis);
    let b = redis_node(&redis);
    a.broker.subscribe("survivor").await.expect("subscribe");

    redis.stop().expect("stop redis");
    let down = tokio::time::timeout(WAIT, async {
        loop {
            if a.broker.check().await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
    });
    down.await.expect("the check notices Redis is gone");
    assert!(
        b.broker
            .publish("survivor", Bytes::from_static(b"x"))
            .await
            .is_err()
    );

    redis.resume().expect("restart redis");
    tokio::time::timeout(WAIT, async {
        while a.broker.check().await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the node reconnects by itself");
    publish(&b, "survivor", "after restart").await;
    assert_eq!(a.next().await, ("survivor".into(), "after restart".into()));
}

/// Redis only: a channel wanted again while its UNSUBSCRIBE is still on its
/// way (a user's last tab closed and they reconnected at once) is confirmed
/// only once Redis has it again, so nothing published after the
/// confirmation is lost to the late UNSUBSCRIBE.
#[tokio::test]
async fn a_channel_wanted_again_during_its_unsubscribe_is_confirmed_after_the_resubscribe() {
    let redis = TestRedis::start().expect("a Redis for the test");
    let proxy = chat_testkit::proxy::DelayProxy::start(redis.socket_addr().expect("address"))
        .await
        .expect("proxy");
    let (h, inbox) = handler();
    let options = RedisOptions {
        url: format!("redis://{}/", proxy.addr()),
        prefix: redis.prefix().into(),
        errors: None,
    };
    let mut a = Node {
        broker: Box::new(RedisBroker::start(options, h).expect("valid URL")),
        inbox,
    };
    let b = redis_node(&redis);
    a.broker.subscribe("user:bob").await.expect("subscribe");
    // Redis takes the UNSUBSCRIBE at once; its answer is held on the way back.
    proxy.hold();
    a.broker.unsubscribe("user:bob");
    let mut conn = redis.connection().expect("a direct connection");
    let channel = format!("{}user:bob", redis.prefix());
    tokio::time::timeout(WAIT, async {
        loop {
            let (_, subscribers): (String, u64) = ::redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query(&mut conn)
                .expect("PUBSUB NUMSUB");
            if subscribers == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the UNSUBSCRIBE reaches Redis");
    let again = a.broker.subscribe("user:bob");
    proxy.release();
    tokio::time::timeout(WAIT, again)
        .await
        .expect("confirmed in time")
        .expect("subscribed");
    publish(&b, "user:bob", "after the reconnect").await;
    assert_eq!(
        a.next().await,
        ("user:bob".into(), "after the reconnect".into())
    );
}

/// Two nodes on a Redis Cluster (sharded pub/sub), under their own prefix.
fn cluster_pair(cluster: &TestRedisCluster) -> (Node, Node) {
    let prefix = chat_testkit::unique("test:");
    let node = || {
        let (h, inbox) = handler();
        let options = RedisOptions {
            url: cluster.url(),
            prefix: prefix.clone(),
            errors: None,
        };
        Node {
            broker: Box::new(RedisBroker::start(options, h).expect("valid URL")),
            inbox,
        }
    };
    (node(), node())
}

/// The whole contract on one Redis Cluster (one cluster for every case:
/// six processes are slow to start), each case with fresh nodes.
#[tokio::test]
async fn the_contract_holds_on_a_redis_cluster() {
    let cluster = TestRedisCluster::start().expect("a Redis Cluster");
    let pair = || {
        let (a, b) = cluster_pair(&cluster);
        Pair { a, b, _redis: None }
    };
    a_subscriber_receives_what_any_node_publishes(pair()).await;
    messages_arrive_in_publish_order(pair()).await;
    a_node_hears_only_its_channels(pair()).await;
    nothing_arrives_after_unsubscribe(pair()).await;
    subscription_changes_apply_in_call_order(pair()).await;
    the_check_passes_on_a_working_engine(pair()).await;
}

/// Channel names that land in every partition, and so on every shard.
fn spread_channels() -> Vec<String> {
    (0..300).map(|i| format!("user:李雷{i}")).collect()
}

/// Receives `expected` messages (any order), each `channel` → `channel`.
async fn receive_each(node: &mut Node, channels: &[String]) {
    let mut missing: std::collections::HashSet<&String> = channels.iter().collect();
    while !missing.is_empty() {
        let (channel, payload) = node.next().await;
        assert_eq!(channel, payload, "each message names its channel");
        assert!(
            missing.remove(&channel),
            "{channel} arrived twice or unasked"
        );
    }
}

/// Sharded pub/sub spreads the channels over the shards: each master holds
/// about a third of the subscriptions and takes about a third of the
/// publishes (its own `INFO commandstats`), each message on one shard only.
#[tokio::test]
async fn a_cluster_spreads_channels_over_its_shards() {
    let cluster = TestRedisCluster::start().expect("a Redis Cluster");
    let (mut a, b) = cluster_pair(&cluster);
    let channels = spread_channels();
    for channel in &channels {
        a.broker.subscribe(channel).await.expect("subscribe");
    }
    let masters = cluster.masters().expect("masters");
    assert_eq!(masters.len(), 3);
    for port in &masters {
        let shard_channels = cluster
            .cli(*port, &["PUBSUB", "SHARDCHANNELS", "*user:*"])
            .expect("PUBSUB SHARDCHANNELS");
        let held = shard_channels.lines().filter(|l| !l.is_empty()).count();
        // 100 each if perfectly even; partitions give 21, 22 and 21 of 64.
        assert!(
            (70..=130).contains(&held),
            "master {port} holds {held} of 300"
        );
    }
    for channel in &channels {
        publish(&b, channel, channel).await;
    }
    receive_each(&mut a, &channels).await;
    let mut total = 0;
    for port in &masters {
        let stats = cluster
            .cli(*port, &["INFO", "commandstats"])
            .expect("INFO commandstats");
        let calls: usize = stats
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_spublish:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|calls| calls.parse().ok())
            .unwrap_or(0);
        assert!(
            (70..=130).contains(&calls),
            "master {port} took {calls} of 300 publishes"
        );
        total += calls;
    }
    assert_eq!(total, 300, "each message is published on one shard");
}

/// A master killed with SIGKILL: the node sees its subscriptions broken
/// (not ready), then by itself finds the replica that took over, subscribes
/// again (ready), and hears every channel again.
#[tokio::test]
async fn a_cluster_node_subscribes_again_after_a_master_fails_over() {
    let cluster = TestRedisCluster::start().expect("a Redis Cluster");
    let (mut a, b) = cluster_pair(&cluster);
    let channels = spread_channels();
    for channel in &channels {
        a.broker.subscribe(channel).await.expect("subscribe");
    }
    a.broker.check().await.expect("ready before the failure");
    let victim = cluster.masters().expect("masters")[0];
    cluster.kill(victim).expect("kill a master");

    let failover = std::time::Duration::from_secs(30);
    tokio::time::timeout(failover, async {
        while a.broker.check().await.is_ok() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the check notices the lost master");
    tokio::time::timeout(failover, async {
        while a.broker.check().await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("ready again by itself after the failover");
    assert!(!cluster.masters().expect("masters").contains(&victim));

    for channel in &channels {
        publish(&b, channel, channel).await;
    }
    receive_each(&mut a, &channels).await;
}
