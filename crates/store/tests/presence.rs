//! The presence contract, run against both engines: Redis nodes (a real
//! Redis) and the in-process presence; then what only Redis has: leases,
//! sweeps of nodes that died, nodes that come back.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chat_broker::envelope::{self, Outbound};
use chat_broker::memory::MemoryBus;
use chat_broker::redis::partitions;
use chat_broker::redis::{RedisBroker, RedisOptions};
use chat_broker::{Broker, Handler, channel};
use chat_protocol::ServerFrame;
use chat_store::memory::MemoryPresence;
use chat_store::redis::messages::{RedisStore, RedisStoreOptions};
use chat_store::redis::presence::{RedisNode, RedisNodeOptions, RedisPresence};
use chat_store::{Limits, MessageStore, Presence, PresenceNode, PresenceState};
use chat_testkit::WAIT;
use chat_testkit::redis::TestRedis;
use chat_testkit::redis_cluster::TestRedisCluster;
use tokio::sync::mpsc;

/// A presence node, a reader of the same presence, and a broker node that
/// hears the announcements.
struct Fixture {
    node: Box<dyn PresenceNode>,
    reader: Box<dyn Presence>,
    observer: Box<dyn Broker>,
    heard: mpsc::UnboundedReceiver<(String, String)>,
    _redis: Option<TestRedis>,
}

impl Fixture {
    /// Asserts nothing more was announced for `user`: a marker published
    /// now on `watch:{user}` is the next thing heard (anything announced
    /// before it, still on its way through Redis, would come first).
    async fn nothing_more(&mut self, user: &str, why: &str) {
        self.observer
            .publish(&channel::watch(user), envelope::text("marker"))
            .await
            .unwrap();
        assert_eq!(
            tokio::time::timeout(WAIT, self.heard.recv()).await.unwrap(),
            Some((channel::watch(user), "marker".to_owned())),
            "{why}"
        );
    }
}

fn observer_handler() -> (Handler, mpsc::UnboundedReceiver<(String, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |channel: &str, payload: Bytes| {
        if let Some((Outbound::Text(text), _)) = envelope::decode(payload) {
            let _ = tx.send((channel.to_owned(), text.to_string()));
        }
    });
    (handler, rx)
}

async fn memory() -> Fixture {
    let bus = MemoryBus::new();
    let (handler, heard) = observer_handler();
    let publisher: Arc<dyn Broker> = Arc::new(bus.node(Arc::new(|_: &str, _: Bytes| {})));
    let presence = MemoryPresence::new(publisher);
    Fixture {
        node: Box::new(presence.clone()),
        reader: Box::new(presence),
        observer: Box::new(bus.node(handler)),
        heard,
        _redis: None,
    }
}

async fn redis() -> Fixture {
    redis_at(Site::single()).await
}

/// A fixture on `site`.
async fn redis_at(site: Site) -> Fixture {
    let (observer, heard) = watching(&site, &[]).await;
    Fixture {
        node: Box::new(RedisNode::start(site.options(Duration::from_secs(30))).unwrap()),
        reader: Box::new(RedisPresence::connect(&site.url, &site.prefix).unwrap()),
        observer: Box::new(observer),
        heard,
        _redis: site.redis,
    }
}

/// Where a Redis test runs: one Redis of its own, or a Redis Cluster
/// shared by the cases (six processes are slow to start), under a prefix
/// of its own.
struct Site {
    url: String,
    prefix: String,
    cluster: bool,
    redis: Option<TestRedis>,
}

impl Site {
    fn single() -> Self {
        let redis = TestRedis::start().unwrap();
        Self {
            url: redis.url().into(),
            prefix: redis.prefix().into(),
            cluster: false,
            redis: Some(redis),
        }
    }

    fn on(cluster: &TestRedisCluster) -> Self {
        Self {
            url: cluster.url(),
            prefix: chat_testkit::unique("test:"),
            cluster: true,
            redis: None,
        }
    }

    /// Options for one more gateway node here, with a lease of `lease`.
    fn options(&self, lease: Duration) -> RedisNodeOptions {
        RedisNodeOptions {
            url: self.url.clone(),
            prefix: self.prefix.clone(),
            lease,
        }
    }

    /// The lease key of node `id`, as the store names it (the key table in
    /// `chat_store::redis`): on a cluster, in the node's own slot.
    fn lease_key(&self, id: &str) -> String {
        let key = format!("{}node:{id}", self.prefix);
        if self.cluster {
            return format!("{{node:{id}}}{key}");
        }
        key
    }

    /// The presence hash of `user`: on a cluster, in the slot of the
    /// user's channel.
    fn presence_key(&self, user: &str) -> String {
        let key = format!("{}presence:{user}", self.prefix);
        if self.cluster {
            let tag = &partitions::tags()[partitions::of(&channel::user(user))];
            return format!("{{{tag}}}{key}");
        }
        key
    }

    /// Runs `cmd` here.
    async fn run<T: ::redis::FromRedisValue>(&self, cmd: &::redis::Cmd) -> T {
        let mut conn = chat_broker::redis::command_connection(&self.url).unwrap();
        cmd.query_async(&mut conn).await.unwrap()
    }
}

impl Fixture {
    async fn heard(&mut self) -> (String, String) {
        tokio::time::timeout(WAIT, self.heard.recv())
            .await
            .unwrap()
            .unwrap()
    }
}

async fn presence_follows_connections_and_remembers_the_last_one(mut f: Fixture) {
    f.observer.subscribe(&channel::watch("bob")).await.unwrap();
    assert_eq!(
        f.reader.state("bob").await.unwrap(),
        PresenceState {
            online: false,
            last_seen: None
        }
    );
    assert!(f.node.connected("bob", 1).await.unwrap(), "came online");
    let online = ServerFrame::Presence {
        user: "bob".into(),
        online: true,
        last_seen: None,
    };
    assert_eq!(f.heard().await, (channel::watch("bob"), online.to_json()));
    assert!(!f.node.connected("bob", 2).await.unwrap(), "already online");
    assert!(
        !f.node.disconnected("bob", 1).await.unwrap(),
        "one connection left"
    );
    assert!(f.reader.state("bob").await.unwrap().online);
    let before = chat_store::now_millis();
    assert!(f.node.disconnected("bob", 2).await.unwrap(), "went offline");
    let presence = f.reader.state("bob").await.unwrap();
    assert!(!presence.online);
    assert!(presence.last_seen.unwrap() >= before);
    // Only the two changes were announced, the second with that last-seen.
    let offline = ServerFrame::Presence {
        user: "bob".into(),
        online: false,
        last_seen: presence.last_seen,
    };
    assert_eq!(f.heard().await, (channel::watch("bob"), offline.to_json()));
    f.nothing_more("bob", "a second tab is not news").await;
}

/// A retried call (its first attempt landed after all) changes nothing.
async fn counting_a_connection_twice_changes_nothing(mut f: Fixture) {
    f.observer.subscribe(&channel::watch("bob")).await.unwrap();
    assert!(f.node.connected("bob", 7).await.unwrap());
    f.heard().await;
    assert!(!f.node.connected("bob", 7).await.unwrap(), "counted once");
    assert!(
        f.node.disconnected("bob", 7).await.unwrap(),
        "one connection: gone"
    );
    f.heard().await;
    assert!(!f.node.disconnected("bob", 7).await.unwrap(), "already out");
    assert!(
        !f.node.disconnected("bob", 8).await.unwrap(),
        "never counted in"
    );
    assert!(!f.reader.state("bob").await.unwrap().online);
    // A retried goodbye after a new connection does not count it out.
    assert!(f.node.connected("bob", 9).await.unwrap());
    f.heard().await;
    assert!(!f.node.disconnected("bob", 7).await.unwrap());
    assert!(f.reader.state("bob").await.unwrap().online);
    f.nothing_more("bob", "nothing announced by the repeats")
        .await;
}

async fn announcements_for_any_name_are_the_protocols_bytes(mut f: Fixture) {
    let user = "a\"b\\c/\u{1}\t张三";
    f.observer.subscribe(&channel::watch(user)).await.unwrap();
    f.node.connected(user, 1).await.unwrap();
    let online = ServerFrame::Presence {
        user: user.into(),
        online: true,
        last_seen: None,
    };
    assert_eq!(f.heard().await, (channel::watch(user), online.to_json()));
    f.node.disconnected(user, 1).await.unwrap();
    let last_seen = f.reader.state(user).await.unwrap().last_seen;
    let offline = ServerFrame::Presence {
        user: user.into(),
        online: false,
        last_seen,
    };
    assert_eq!(f.heard().await, (channel::watch(user), offline.to_json()));
}

async fn the_check_passes_on_a_working_engine(f: Fixture) {
    f.reader.check().await.unwrap();
}

macro_rules! both {
    ($($scenario:ident),* $(,)?) => {
        chat_testkit::contract!(memory: $($scenario),*);
        chat_testkit::contract!(redis: $($scenario),*);
    };
}

both!(
    presence_follows_connections_and_remembers_the_last_one,
    counting_a_connection_twice_changes_nothing,
    announcements_for_any_name_are_the_protocols_bytes,
    the_check_passes_on_a_working_engine,
);

/// A broker node that hears what is published on `watch:{user}` for `users`.
async fn watching(
    site: &Site,
    users: &[&str],
) -> (RedisBroker, mpsc::UnboundedReceiver<(String, String)>) {
    let (handler, heard) = observer_handler();
    let observer = RedisBroker::start(
        RedisOptions {
            url: site.url.clone(),
            prefix: site.prefix.clone(),
            errors: None,
        },
        handler,
    )
    .unwrap();
    for user in users {
        observer.subscribe(&channel::watch(user)).await.unwrap();
    }
    (observer, heard)
}

#[tokio::test]
async fn a_crashed_nodes_users_go_offline_when_its_lease_lapses() {
    a_crashed_nodes_users_go_offline(Site::single()).await;
}

async fn a_crashed_nodes_users_go_offline(site: Site) {
    let options = site.options(Duration::from_millis(300));
    let (observer, mut heard) = watching(&site, &["bob", "carol", "dave"]).await;
    let crashed = RedisNode::start(options.clone()).unwrap();
    let watcher = RedisNode::start(options.clone()).unwrap();
    let other = RedisNode::start(options).unwrap();
    let store = RedisStore::start(RedisStoreOptions {
        url: site.url.clone(),
        prefix: site.prefix.clone(),
        limits: Limits::default(),
    })
    .unwrap();
    let before = chat_store::now_millis();
    crashed.connected("bob", 1).await.unwrap();
    crashed.connected("bob", 2).await.unwrap();
    crashed.connected("carol", 3).await.unwrap();
    crashed.connected("dave", 4).await.unwrap();
    crashed.disconnected("dave", 4).await.unwrap();
    watcher.connected("carol", 1).await.unwrap(); // carol also has a live tab
    // Clean changes are announced as they are counted.
    let online = |user: &str| ServerFrame::Presence {
        user: user.into(),
        online: true,
        last_seen: None,
    };
    for expected in [online("bob"), online("carol"), online("dave")] {
        let (_, frame) = tokio::time::timeout(WAIT, heard.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame, expected.to_json());
    }
    let (_, frame) = tokio::time::timeout(WAIT, heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        frame.starts_with(r#"{"type":"presence","user":"dave","online":false,"last_seen":"#),
        "{frame}"
    );
    assert!(watcher.state("bob").await.unwrap().online);
    assert!(
        watcher.sweep().await.unwrap().is_empty(),
        "nobody has crashed yet"
    );
    drop(crashed); // stops renewing, as a killed process would, and says nothing
    // Announced once by a sweep (every node sweeps every third of its
    // lease), with when his node was last alive; not carol (still online
    // elsewhere), not dave (who left cleanly).
    let (to, frame) = tokio::time::timeout(WAIT, heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(to, channel::watch("bob"));
    let Ok(ServerFrame::Presence {
        online: false,
        last_seen: Some(last_seen),
        ..
    }) = serde_json::from_str::<ServerFrame>(&frame)
    else {
        panic!("not an offline announcement: {frame}")
    };
    assert!(last_seen >= before && last_seen <= chat_store::now_millis());
    let expected = ServerFrame::Presence {
        user: "bob".into(),
        online: false,
        last_seen: Some(last_seen),
    };
    assert_eq!(frame, expected.to_json(), "the protocol's bytes");
    let state = watcher.state("bob").await.unwrap();
    assert_eq!((state.online, state.last_seen), (false, Some(last_seen)));
    assert!(
        store
            .append_direct(direct("alice", "bob", "x"))
            .await
            .unwrap()
            .offline
    );
    assert!(watcher.state("carol").await.unwrap().online);
    // Nobody is left to sweep, and nothing else was announced: a marker
    // published after these sweeps is the next thing heard.
    assert!(watcher.sweep().await.unwrap().is_empty(), "swept twice");
    assert!(other.sweep().await.unwrap().is_empty(), "swept twice");
    assert_marker_is_next(&observer, &mut heard, "dave").await;
    // The dead node's counts left the presence hashes.
    let fields: Vec<String> = site
        .run(::redis::cmd("HKEYS").arg(site.presence_key("bob")))
        .await;
    assert!(fields.is_empty(), "{fields:?}");
}

/// Publishes a marker on `watch:{user}` and checks it is the next frame
/// heard: nothing else was announced before it.
async fn assert_marker_is_next(
    observer: &RedisBroker,
    heard: &mut mpsc::UnboundedReceiver<(String, String)>,
    user: &str,
) {
    observer
        .publish(&channel::watch(user), envelope::text("marker"))
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, heard.recv()).await.unwrap(),
        Some((channel::watch(user), "marker".to_owned())),
        "announced more than expected"
    );
}

/// A node that was only cut off from Redis for longer than its lease is
/// swept like a dead one; when it renews, it takes its users back and they
/// are announced online again, their counts intact.
#[tokio::test]
async fn a_node_swept_while_cut_off_takes_its_users_back() {
    a_node_swept_while_cut_off_takes_back(Site::single()).await;
}

async fn a_node_swept_while_cut_off_takes_back(site: Site) {
    let options = site.options(Duration::from_secs(60));
    let (_observer, mut heard) = watching(&site, &["bob"]).await;
    let cut_off = RedisNode::start(options.clone()).unwrap();
    let sweeper = RedisNode::start(options).unwrap();
    assert!(cut_off.connected("bob", 1).await.unwrap());
    assert!(!cut_off.connected("bob", 2).await.unwrap(), "a second tab");
    let (_, online) = tokio::time::timeout(WAIT, heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(online.contains(r#""online":true"#), "{online}");
    // The lease lapses as if Redis had been out of reach for a minute.
    let lapse = ::redis::cmd("DEL")
        .arg(site.lease_key(cut_off.id()))
        .clone();
    site.run::<()>(&lapse).await;
    let swept = sweeper.sweep().await.unwrap();
    assert_eq!(swept.len(), 1);
    assert!(!sweeper.state("bob").await.unwrap().online);
    let (_, offline) = tokio::time::timeout(WAIT, heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(offline.contains(r#""online":false"#), "{offline}");

    assert_eq!(cut_off.renew().await.unwrap(), 1, "bob taken back");
    assert!(sweeper.state("bob").await.unwrap().online);
    let online = ServerFrame::Presence {
        user: "bob".into(),
        online: true,
        last_seen: None,
    };
    assert_eq!(
        tokio::time::timeout(WAIT, heard.recv()).await.unwrap(),
        Some((channel::watch("bob"), online.to_json()))
    );
    assert_eq!(cut_off.renew().await.unwrap(), 0, "taken back once");
    assert!(sweeper.sweep().await.unwrap().is_empty());
    // Both tabs still count: the first to close is not a goodbye.
    assert!(!cut_off.disconnected("bob", 1).await.unwrap());
    assert!(cut_off.disconnected("bob", 2).await.unwrap());

    // Lapsed again, and a tab closes before the node renews: whether or not
    // a sweep came first, the node's other tab still counts.
    for swept_first in [false, true] {
        let tabs = if swept_first { (13, 14) } else { (11, 12) };
        cut_off.connected("carol", tabs.0).await.unwrap();
        cut_off.connected("carol", tabs.1).await.unwrap();
        site.run::<()>(&lapse).await;
        if swept_first {
            assert_eq!(sweeper.sweep().await.unwrap().len(), 1);
        }
        assert!(
            !cut_off.disconnected("carol", tabs.0).await.unwrap(),
            "carol's other tab is open (swept first: {swept_first})"
        );
        assert!(sweeper.state("carol").await.unwrap().online);
        assert!(cut_off.disconnected("carol", tabs.1).await.unwrap());
    }
}

/// Many users on a crashed node are handed out over several sweep calls
/// (bounded work per call), by whichever nodes sweep first, and every one
/// of them is announced offline, once.
#[tokio::test]
async fn a_crashed_node_with_many_users_is_swept_completely() {
    a_crashed_node_with_many_users_is_swept(Site::single()).await;
}

async fn a_crashed_node_with_many_users_is_swept(site: Site) {
    let options = site.options(Duration::from_millis(300));
    let users: Vec<String> = (0..1_200).map(|i| format!("user{i}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let (observer, mut heard) = watching(&site, &names).await;
    let crashed = RedisNode::start(options.clone()).unwrap();
    for (conn, user) in users.iter().enumerate() {
        crashed.connected(user, conn as u64).await.unwrap();
    }
    for _ in &users {
        tokio::time::timeout(WAIT, heard.recv()).await.unwrap(); // online
    }
    let _sweepers = [
        RedisNode::start(options.clone()).unwrap(),
        RedisNode::start(options).unwrap(),
    ];
    drop(crashed);
    let mut announced = std::collections::BTreeSet::new();
    while announced.len() < users.len() {
        let (to, frame) = tokio::time::timeout(WAIT, heard.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(frame.contains(r#""online":false"#), "{frame}");
        assert!(announced.insert(to.clone()), "{to} announced twice");
    }
    assert_marker_is_next(&observer, &mut heard, "user0").await;
}

/// The presence contract and the leases, sweeps and returns on one Redis
/// Cluster (three masters), each case under its own prefix: a node's keys
/// in its slot, each user's in the slot of their channel, every change in
/// two single-slot steps.
#[tokio::test]
async fn presence_holds_on_a_redis_cluster() {
    let cluster = TestRedisCluster::start().unwrap();
    let f = || redis_at(Site::on(&cluster));
    presence_follows_connections_and_remembers_the_last_one(f().await).await;
    counting_a_connection_twice_changes_nothing(f().await).await;
    announcements_for_any_name_are_the_protocols_bytes(f().await).await;
    the_check_passes_on_a_working_engine(f().await).await;
    a_crashed_nodes_users_go_offline(Site::on(&cluster)).await;
    a_node_swept_while_cut_off_takes_back(Site::on(&cluster)).await;
    a_crashed_node_with_many_users_is_swept(Site::on(&cluster)).await;
    a_retried_goodbye_completes_the_users_step(Site::on(&cluster)).await;
}

/// On a cluster a goodbye is two steps, the node's then the user's. One
/// whose node step landed and whose user step failed (here: the node's
/// step done by hand) is completed by the retry: the connection is counted
/// out of the user's presence once, and the other tab still counts.
async fn a_retried_goodbye_completes_the_users_step(site: Site) {
    let node = RedisNode::start(site.options(Duration::from_secs(30))).unwrap();
    let (_observer, mut heard) = watching(&site, &["bob"]).await;
    assert!(node.connected("bob", 1).await.unwrap());
    assert!(!node.connected("bob", 2).await.unwrap());
    assert!(
        !node.connected("bob", 2).await.unwrap(),
        "a retry counts nothing"
    );
    tokio::time::timeout(WAIT, heard.recv()).await.unwrap(); // online
    let conns = format!(
        "{{node:{id}}}{}node_conns:{id}",
        site.prefix,
        id = node.id()
    );
    let removed: u8 = site
        .run(::redis::cmd("SREM").arg(&conns).arg("1 bob"))
        .await;
    assert_eq!(removed, 1, "the node's step of the first attempt");
    assert!(!node.disconnected("bob", 1).await.unwrap(), "tab 2 is open");
    assert!(node.state("bob").await.unwrap().online);
    assert!(node.disconnected("bob", 2).await.unwrap(), "the last tab");
    assert!(!node.state("bob").await.unwrap().online);
    assert!(
        !node.disconnected("bob", 1).await.unwrap(),
        "counted out once"
    );
}

/// A direct message, as a gateway would store it.
fn direct(from: &str, to: &str, body: &str) -> chat_store::Direct {
    chat_store::Direct {
        id: ulid::Ulid::new().to_string(),
        from: from.into(),
        to: to.into(),
        client_id: None,
        frame: chat_store::FrameText::Seed(format!(
            r#"{{"sender":"{from}","receiver":"{to}","message":"{body}"}}"#
        )),
        history: "{}".into(),
        copy_to_sender: false,
        envelope_header: envelope::text_header(),
        reply_to: None,
    }
}
