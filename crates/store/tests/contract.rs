//! The message store contract, run against both engines: Redis (a real
//! Redis) and embedded SQLite (a real file).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::sync::Arc;

use bytes::Bytes;
use chat_broker::envelope::{self, Outbound};
use chat_broker::memory::MemoryBus;
use chat_broker::redis::{RedisBroker, RedisOptions};
use chat_broker::{Broker, Handler, channel};
use chat_protocol::ServerFrame;
use chat_store::redis::{RedisStore, RedisStoreOptions};
use chat_store::sqlite::SqliteStore;
use chat_store::{Direct, FrameText, MessageStore, Presence};
use chat_testkit::redis::TestRedis;
use chat_testkit::{WAIT, eventually_async};
use tokio::sync::mpsc;

/// A store, and a broker node that hears what it publishes.
struct Fixture {
    store: Box<dyn MessageStore>,
    observer: Box<dyn Broker>,
    heard: mpsc::UnboundedReceiver<(String, String)>,
    redis: Option<TestRedis>,
    _dir: tempfile::TempDir,
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

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let bus = MemoryBus::new();
    let (handler, heard) = observer_handler();
    let observer = Box::new(bus.node(handler));
    let publisher: Arc<dyn Broker> = Arc::new(bus.node(Arc::new(|_: &str, _: Bytes| {})));
    let store = SqliteStore::open(&dir.path().join("store.db"), publisher)
        .await
        .unwrap();
    Fixture {
        store: Box::new(store),
        observer,
        heard,
        redis: None,
        _dir: dir,
    }
}

async fn redis() -> Fixture {
    let redis = TestRedis::start().unwrap();
    let (handler, heard) = observer_handler();
    let options = RedisOptions {
        url: redis.url().into(),
        prefix: redis.prefix().into(),
        errors: None,
    };
    let observer = Box::new(RedisBroker::start(options, handler).unwrap());
    let store = RedisStore::start(RedisStoreOptions {
        url: redis.url().into(),
        prefix: redis.prefix().into(),
        max_len: 10_000,
        offline_max: 1_000,
        lease: std::time::Duration::from_secs(30),
    })
    .unwrap();
    Fixture {
        store: Box::new(store),
        observer,
        heard,
        redis: Some(redis),
        _dir: tempfile::tempdir().unwrap(),
    }
}

fn typed(from: &str, to: &str, body: &str) -> Direct {
    let id = ulid::Ulid::new().to_string();
    Direct {
        id: id.clone(),
        from: from.into(),
        to: to.into(),
        frame: FrameText::Typed {
            head: r#"{"type":"message","seq":"#.into(),
            tail: format!(r#","id":"{id}","from":"{from}","to":"{to}","body":"{body}","ts":1}}"#),
        },
        history: format!(r#"{{"id":"{id}","body":"{body}"}}"#),
        copy_to_sender: true,
        envelope_header: envelope::text_header(),
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

async fn messages_get_consecutive_sequence_numbers_and_are_published(mut f: Fixture) {
    f.observer.subscribe(&channel::user("bob")).await.unwrap();
    f.observer.subscribe(&channel::user("alice")).await.unwrap();
    for i in 1..=3u64 {
        let appended = f
            .store
            .append_direct(typed("alice", "bob", &format!("m{i}")))
            .await
            .unwrap();
        assert_eq!((appended.receiver_seq, appended.sender_seq), (i, Some(i)));
        let (channel, frame) = f.heard().await;
        assert_eq!(channel, "user:bob");
        assert!(
            frame.starts_with(&format!(r#"{{"type":"message","seq":{i},"#)),
            "{frame}"
        );
        let unread = f.heard().await;
        assert_eq!(
            unread,
            (
                "user:bob".into(),
                format!(r#"{{"type":"unread","counts":{{"alice":{i}}}}}"#)
            )
        );
        let (channel, _) = f.heard().await;
        assert_eq!(
            channel, "user:alice",
            "the sender's other devices hear it too"
        );
    }
    let all = f.store.inbox_since("bob", 0, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(all[2].frame.contains(r#""body":"m3""#));
    let after_two = f.store.inbox_since("bob", 2, 100).await.unwrap();
    assert_eq!(after_two.len(), 1);
    assert_eq!(
        f.store.inbox_since("alice", 0, 2).await.unwrap().len(),
        2,
        "limit holds"
    );
}

async fn seed_frames_are_kept_byte_for_byte_for_the_receiver_only(f: Fixture) {
    let frame = r#"{"sender": "alice", "receiver": "bob", "message": {"url": "/m/1"}}"#;
    let mut seed = typed("alice", "bob", "x");
    seed.frame = FrameText::Seed(frame.into());
    seed.copy_to_sender = false;
    let appended = f.store.append_direct(seed).await.unwrap();
    assert_eq!(appended.sender_seq, None);
    assert_eq!(
        f.store.inbox_since("bob", 0, 10).await.unwrap()[0].frame,
        frame
    );
    assert!(
        f.store
            .inbox_since("alice", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn unread_counts_per_sender_and_reading_clears_one(f: Fixture) {
    f.store
        .append_direct(typed("alice", "bob", "1"))
        .await
        .unwrap();
    let last = typed("alice", "bob", "2");
    let last_id = last.id.clone();
    f.store.append_direct(last).await.unwrap();
    f.store
        .append_direct(typed("carol", "bob", "3"))
        .await
        .unwrap();
    f.store
        .append_direct(typed("bob", "bob", "note to self"))
        .await
        .unwrap();
    let unread = f.store.unread("bob").await.unwrap();
    assert_eq!(
        unread.into_iter().collect::<Vec<_>>(),
        [("alice".into(), 2), ("carol".into(), 1)]
    );
    assert!(
        f.store.unread("alice").await.unwrap().is_empty(),
        "sending counts nothing for the sender"
    );
    let after = f.store.mark_read("bob", "alice", &last_id).await.unwrap();
    assert_eq!(after.into_iter().collect::<Vec<_>>(), [("carol".into(), 1)]);
    assert_eq!(f.store.unread("bob").await.unwrap().len(), 1);
}

async fn offline_messages_are_handed_over_once_in_order(f: Fixture) {
    assert!(
        f.store
            .append_direct(typed("alice", "bob", "while away 1"))
            .await
            .unwrap()
            .offline
    );
    assert!(
        f.store
            .append_direct(typed("alice", "bob", "while away 2"))
            .await
            .unwrap()
            .offline
    );
    let offline = f.store.take_offline("bob").await.unwrap();
    assert_eq!(offline.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert!(offline[1].frame.contains("while away 2"));
    assert!(
        f.store.take_offline("bob").await.unwrap().is_empty(),
        "once"
    );

    f.store.connected("bob").await.unwrap();
    assert!(
        !f.store
            .append_direct(typed("alice", "bob", "live"))
            .await
            .unwrap()
            .offline
    );
    f.store.connected("bob").await.unwrap();
    f.store.disconnected("bob").await.unwrap();
    assert!(
        !f.store
            .append_direct(typed("alice", "bob", "one tab left"))
            .await
            .unwrap()
            .offline
    );
    f.store.disconnected("bob").await.unwrap();
    assert!(
        f.store
            .append_direct(typed("alice", "bob", "gone"))
            .await
            .unwrap()
            .offline
    );
    let offline = f.store.take_offline("bob").await.unwrap();
    assert_eq!(offline.iter().map(|e| e.seq).collect::<Vec<_>>(), [5]);
}

async fn history_pages_newest_first_for_both_sides(f: Fixture) {
    for i in 1..=5 {
        let (from, to) = if i % 2 == 0 {
            ("bob", "alice")
        } else {
            ("alice", "bob")
        };
        f.store
            .append_direct(typed(from, to, &format!("h{i}")))
            .await
            .unwrap();
    }
    let page = f.store.history("alice", "bob", None, 2).await.unwrap();
    assert!(page[0].message.contains("h5") && page[1].message.contains("h4"));
    let next = f
        .store
        .history("bob", "alice", Some(&page[1].cursor), 2)
        .await
        .unwrap();
    assert!(next[0].message.contains("h3") && next[1].message.contains("h2"));
    let last = f
        .store
        .history("alice", "bob", Some(&next[1].cursor), 10)
        .await
        .unwrap();
    assert_eq!(last.len(), 1);
    assert!(
        f.store
            .history("alice", "carol", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn presence_follows_connections_and_remembers_the_last_one(mut f: Fixture) {
    f.observer.subscribe(&channel::watch("bob")).await.unwrap();
    assert_eq!(
        f.store.presence("bob").await.unwrap(),
        Presence {
            online: false,
            last_seen: None
        }
    );
    assert!(f.store.connected("bob").await.unwrap(), "came online");
    let online = ServerFrame::Presence {
        user: "bob".into(),
        online: true,
        last_seen: None,
    };
    assert_eq!(f.heard().await, (channel::watch("bob"), online.to_json()));
    assert!(!f.store.connected("bob").await.unwrap(), "already online");
    assert!(
        !f.store.disconnected("bob").await.unwrap(),
        "one connection left"
    );
    assert!(f.store.presence("bob").await.unwrap().online);
    let before = chat_store::now_millis();
    assert!(f.store.disconnected("bob").await.unwrap(), "went offline");
    let presence = f.store.presence("bob").await.unwrap();
    assert!(!presence.online);
    assert!(presence.last_seen.unwrap() >= before);
    // Only the two changes were announced, the second with that last-seen.
    let offline = ServerFrame::Presence {
        user: "bob".into(),
        online: false,
        last_seen: presence.last_seen,
    };
    assert_eq!(f.heard().await, (channel::watch("bob"), offline.to_json()));
    assert!(f.heard.try_recv().is_err(), "a second tab is not news");
}

async fn the_check_passes_on_a_working_engine(f: Fixture) {
    f.store.check().await.unwrap();
}

macro_rules! contract {
    ($engine:ident: $($scenario:ident),* $(,)?) => {
        mod $engine {
            $( #[tokio::test]
               async fn $scenario() { super::$scenario(super::$engine().await).await } )*
        }
    };
}

macro_rules! both {
    ($($scenario:ident),* $(,)?) => {
        contract!(sqlite: $($scenario),*);
        contract!(redis: $($scenario),*);
    };
}

both!(
    messages_get_consecutive_sequence_numbers_and_are_published,
    seed_frames_are_kept_byte_for_byte_for_the_receiver_only,
    unread_counts_per_sender_and_reading_clears_one,
    offline_messages_are_handed_over_once_in_order,
    history_pages_newest_first_for_both_sides,
    presence_follows_connections_and_remembers_the_last_one,
    the_check_passes_on_a_working_engine,
);

/// Options for one more gateway node on `redis`, with a lease of `lease`.
fn node_options(redis: &TestRedis, lease: std::time::Duration) -> RedisStoreOptions {
    RedisStoreOptions {
        url: redis.url().into(),
        prefix: redis.prefix().into(),
        max_len: 100,
        offline_max: 100,
        lease,
    }
}

/// A broker node that hears what is published on `watch:{user}` for `users`.
async fn watching(
    redis: &TestRedis,
    users: &[&str],
) -> (RedisBroker, mpsc::UnboundedReceiver<(String, String)>) {
    let (handler, heard) = observer_handler();
    let observer = RedisBroker::start(
        RedisOptions {
            url: redis.url().into(),
            prefix: redis.prefix().into(),
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
    let redis = TestRedis::start().unwrap();
    let options = node_options(&redis, std::time::Duration::from_millis(300));
    let (_observer, mut heard) = watching(&redis, &["bob", "carol", "dave"]).await;
    let crashed = RedisStore::start(options.clone()).unwrap();
    let watcher = RedisStore::start(options.clone()).unwrap();
    let other = RedisStore::start(options).unwrap();
    let before = chat_store::now_millis();
    crashed.connected("bob").await.unwrap();
    crashed.connected("bob").await.unwrap();
    crashed.connected("carol").await.unwrap();
    crashed.connected("dave").await.unwrap();
    crashed.disconnected("dave").await.unwrap();
    watcher.connected("carol").await.unwrap(); // carol also has a live tab
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
    assert!(watcher.presence("bob").await.unwrap().online);
    assert!(
        watcher.sweep().await.unwrap().is_empty(),
        "nobody has crashed yet"
    );
    drop(crashed); // stops renewing, as a killed process would, and says nothing
    eventually_async("bob is offline after the lease", || async {
        !watcher.presence("bob").await.unwrap().online
    })
    .await
    .unwrap();
    assert!(
        watcher
            .append_direct(typed("alice", "bob", "x"))
            .await
            .unwrap()
            .offline
    );
    // Sweeping finds bob once (not carol, still online; not dave, who left
    // cleanly), whichever node sweeps, with when his gateway was last alive.
    let swept = watcher.sweep().await.unwrap();
    assert!(other.sweep().await.unwrap().is_empty(), "swept twice");
    assert!(watcher.sweep().await.unwrap().is_empty(), "swept twice");
    assert_eq!(
        swept.iter().map(|s| s.user.as_str()).collect::<Vec<_>>(),
        ["bob"]
    );
    let last_seen = swept[0].last_seen;
    assert!(last_seen >= before && last_seen <= chat_store::now_millis());
    assert_eq!(
        watcher.presence("bob").await.unwrap().last_seen,
        Some(last_seen)
    );
    assert!(watcher.presence("carol").await.unwrap().online);
    // The dead node's counts left the presence hashes.
    let mut conn = redis.connection().unwrap();
    let fields: Vec<String> = ::redis::cmd("HKEYS")
        .arg(format!("{}presence:bob", redis.prefix()))
        .query(&mut conn)
        .unwrap();
    assert!(fields.is_empty(), "{fields:?}");
    // Announced by the sweep itself, as the gateways would have said it.
    let frame = ServerFrame::Presence {
        user: "bob".into(),
        online: false,
        last_seen: Some(last_seen),
    };
    assert_eq!(
        tokio::time::timeout(WAIT, heard.recv()).await.unwrap(),
        Some((channel::watch("bob"), frame.to_json()))
    );
    assert!(heard.try_recv().is_err(), "announced more than bob");
}

/// A node that was only cut off from Redis for longer than its lease is
/// swept like a dead one; when it renews, it takes its users back and they
/// are announced online again, their counts intact.
#[tokio::test]
async fn a_node_swept_while_cut_off_takes_its_users_back() {
    let redis = TestRedis::start().unwrap();
    let options = node_options(&redis, std::time::Duration::from_secs(60));
    let (_observer, mut heard) = watching(&redis, &["bob"]).await;
    let cut_off = RedisStore::start(options.clone()).unwrap();
    let sweeper = RedisStore::start(options).unwrap();
    assert!(cut_off.connected("bob").await.unwrap());
    assert!(!cut_off.connected("bob").await.unwrap(), "a second tab");
    let (_, online) = tokio::time::timeout(WAIT, heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(online.contains(r#""online":true"#), "{online}");
    // The lease lapses as if Redis had been out of reach for a minute.
    let mut conn = redis.connection().unwrap();
    ::redis::cmd("DEL")
        .arg(format!("{}node:{}", redis.prefix(), cut_off.node()))
        .query::<()>(&mut conn)
        .unwrap();
    let swept = sweeper.sweep().await.unwrap();
    assert_eq!(swept.len(), 1);
    assert!(!sweeper.presence("bob").await.unwrap().online);
    let (_, offline) = tokio::time::timeout(WAIT, heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(offline.contains(r#""online":false"#), "{offline}");

    assert_eq!(cut_off.renew().await.unwrap(), 1, "bob taken back");
    assert!(sweeper.presence("bob").await.unwrap().online);
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
    assert!(!cut_off.disconnected("bob").await.unwrap());
    assert!(cut_off.disconnected("bob").await.unwrap());

    // Lapsed again, and a tab closes before the node renews: whether or not
    // a sweep came first, the node's other tab still counts.
    for swept_first in [false, true] {
        cut_off.connected("carol").await.unwrap();
        cut_off.connected("carol").await.unwrap();
        ::redis::cmd("DEL")
            .arg(format!("{}node:{}", redis.prefix(), cut_off.node()))
            .query::<()>(&mut conn)
            .unwrap();
        if swept_first {
            assert_eq!(sweeper.sweep().await.unwrap().len(), 1);
        }
        assert!(
            !cut_off.disconnected("carol").await.unwrap(),
            "carol's other tab is open (swept first: {swept_first})"
        );
        assert!(sweeper.presence("carol").await.unwrap().online);
        assert!(cut_off.disconnected("carol").await.unwrap());
    }
}

/// Many users on a crashed node are handed out over several sweep calls
/// (bounded work per call) and all of them in the end, each once.
#[tokio::test]
async fn a_crashed_node_with_many_users_is_swept_completely() {
    let redis = TestRedis::start().unwrap();
    let options = node_options(&redis, std::time::Duration::from_millis(300));
    let crashed = RedisStore::start(options.clone()).unwrap();
    let users: Vec<String> = (0..1_200).map(|i| format!("user{i}")).collect();
    for user in &users {
        crashed.connected(user).await.unwrap();
    }
    drop(crashed);
    let sweepers = [
        RedisStore::start(options.clone()).unwrap(),
        RedisStore::start(options).unwrap(),
    ];
    eventually_async("the crashed node's lease lapsed", || async {
        !sweepers[0].presence("user0").await.unwrap().online
    })
    .await
    .unwrap();
    let (a, b) = tokio::join!(sweepers[0].sweep(), sweepers[1].sweep());
    let mut swept: Vec<String> = a
        .unwrap()
        .into_iter()
        .chain(b.unwrap())
        .map(|s| s.user)
        .collect();
    swept.sort();
    let mut expected = users.clone();
    expected.sort();
    assert_eq!(swept, expected);
}

#[tokio::test]
async fn redis_keeps_unread_counters_in_the_seeds_hash_shape() {
    let f = redis().await;
    f.store
        .append_direct(typed("alice", "bob", "1"))
        .await
        .unwrap();
    f.store
        .append_direct(typed("alice", "bob", "2"))
        .await
        .unwrap();
    let redis = f.redis.as_ref().unwrap();
    let mut conn = redis.connection().unwrap();
    let count: u64 = ::redis::cmd("HGET")
        .arg(format!("{}unread:bob", redis.prefix()))
        .arg("alice")
        .query(&mut conn)
        .unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn the_embedded_store_keeps_everything_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let bus = MemoryBus::new();
    let node = || -> Arc<dyn Broker> { Arc::new(bus.node(Arc::new(|_: &str, _: Bytes| {}))) };
    let store = SqliteStore::open(&path, node()).await.unwrap();
    store
        .append_direct(typed("alice", "bob", "durable"))
        .await
        .unwrap();
    drop(store);
    let store = SqliteStore::open(&path, node()).await.unwrap();
    assert!(
        store.inbox_since("bob", 0, 10).await.unwrap()[0]
            .frame
            .contains("durable")
    );
    assert_eq!(store.unread("bob").await.unwrap()["alice"], 1);
    assert_eq!(store.take_offline("bob").await.unwrap().len(), 1);
    assert_eq!(
        store
            .append_direct(typed("alice", "bob", "next"))
            .await
            .unwrap()
            .receiver_seq,
        2
    );
}
