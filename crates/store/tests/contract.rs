//! The message store contract, run against both engines: Redis (a real
//! Redis) and embedded SQLite (a real file).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::sync::Arc;

use bytes::Bytes;
use chat_broker::envelope::{self, Outbound};
use chat_broker::memory::MemoryBus;
use chat_broker::redis::partitions;
use chat_broker::redis::{RedisBroker, RedisOptions};
use chat_broker::{Broker, Handler, channel};
use chat_protocol::ServerFrame;
use chat_store::memory::MemoryPresence;
use chat_store::redis::messages::{RedisStore, RedisStoreOptions};
use chat_store::redis::presence::{RedisNode, RedisNodeOptions};
use chat_store::sqlite::SqliteStore;
use chat_store::{Direct, FrameText, Limits, MessageStore, PresenceNode, ReadMarker, StoreError};
use chat_testkit::WAIT;
use chat_testkit::redis::TestRedis;
use chat_testkit::redis_cluster::TestRedisCluster;
use tokio::sync::mpsc;

/// A store, the presence it asks who is online, and a broker node that
/// hears what it publishes.
struct Fixture {
    store: Box<dyn MessageStore>,
    presence: Box<dyn PresenceNode>,
    observer: Arc<dyn Broker>,
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

const LIMITS: Limits = Limits::DEFAULT;

async fn sqlite() -> Fixture {
    sqlite_with(LIMITS).await
}

async fn sqlite_with(limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let bus = MemoryBus::new();
    let (handler, heard) = observer_handler();
    let observer = Arc::new(bus.node(handler));
    let publisher: Arc<dyn Broker> = Arc::new(bus.node(Arc::new(|_: &str, _: Bytes| {})));
    let presence = MemoryPresence::new(Arc::clone(&publisher));
    let store = SqliteStore::open(
        &dir.path().join("store.db"),
        publisher,
        presence.clone(),
        limits,
    )
    .await
    .unwrap();
    Fixture {
        store: Box::new(store),
        presence: Box::new(presence),
        observer,
        heard,
        redis: None,
        _dir: dir,
    }
}

async fn redis() -> Fixture {
    redis_on(TestRedis::start().unwrap(), LIMITS)
}

fn redis_with(limits: Limits) -> Fixture {
    redis_on(TestRedis::start().unwrap(), limits)
}

fn redis_on(redis: TestRedis, limits: Limits) -> Fixture {
    let (url, prefix) = (redis.url().to_owned(), redis.prefix().to_owned());
    redis_at(&url, &prefix, limits, Some(redis))
}

/// A fixture on `cluster` (shared by the cases: six processes are slow to
/// start), under a prefix of its own.
fn cluster_with(cluster: &TestRedisCluster, limits: Limits) -> Fixture {
    redis_at(&cluster.url(), &chat_testkit::unique("test:"), limits, None)
}

/// A Redis message store, presence and observer on `url` under `prefix`.
fn redis_at(url: &str, prefix: &str, limits: Limits, redis: Option<TestRedis>) -> Fixture {
    let (handler, heard) = observer_handler();
    let options = RedisOptions {
        url: url.into(),
        prefix: prefix.into(),
        errors: None,
    };
    let observer = Arc::new(RedisBroker::start(options, handler).unwrap());
    let store = RedisStore::start(RedisStoreOptions {
        url: url.into(),
        prefix: prefix.into(),
        limits,
    })
    .unwrap();
    let presence = RedisNode::start(RedisNodeOptions {
        url: url.into(),
        prefix: prefix.into(),
        lease: std::time::Duration::from_secs(30),
    })
    .unwrap();
    Fixture {
        store: Box::new(store),
        presence: Box::new(presence),
        observer,
        heard,
        redis,
        _dir: tempfile::tempdir().unwrap(),
    }
}

fn typed(from: &str, to: &str, body: &str) -> Direct {
    let id = ulid::Ulid::new().to_string();
    let message = chat_protocol::ChatMessage {
        seq: None,
        id: id.clone(),
        from: from.into(),
        from_name: None,
        to: Some(to.into()),
        room: None,
        body: body.into(),
        media: None,
        ts: 1,
        ..Default::default()
    };
    let (head, tail) = chat_protocol::message_template(&message);
    Direct {
        id,
        from: from.into(),
        to: to.into(),
        client_id: Some(ulid::Ulid::new().to_string()),
        frame: FrameText::Typed { head, tail },
        history: serde_json::to_string(&message).unwrap(),
        copy_to_sender: true,
        envelope_header: envelope::text_header(),
        reply_to: None,
    }
}

impl Fixture {
    async fn heard(&mut self) -> (String, String) {
        tokio::time::timeout(WAIT, self.heard.recv())
            .await
            .unwrap()
            .unwrap()
    }

    /// Stores a message and answers its id.
    async fn said(&self, from: &str, to: &str, body: &str) -> String {
        let message = typed(from, to, body);
        let id = message.id.clone();
        self.store.append_direct(message).await.unwrap();
        id
    }

    async fn unread(&self, user: &str) -> Vec<(String, u64)> {
        self.store.unread(user).await.unwrap().into_iter().collect()
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

async fn unread_counts_per_sender_and_a_read_keeps_what_came_after_it(f: Fixture) {
    let first = f.said("alice", "bob", "1").await;
    let second = f.said("alice", "bob", "2").await;
    f.said("alice", "bob", "3").await;
    f.said("carol", "bob", "4").await;
    f.said("bob", "bob", "note to self").await;
    assert_eq!(
        f.unread("bob").await,
        [("alice".into(), 3), ("carol".into(), 1)]
    );
    assert!(
        f.unread("alice").await.is_empty(),
        "sending counts nothing for the sender"
    );
    // Up to the second of alice's three: the third stays unread.
    let marker = f.store.mark_read("bob", "alice", &second).await.unwrap();
    let expected = [("alice".to_owned(), 1), ("carol".to_owned(), 1)];
    assert_eq!(
        marker,
        ReadMarker::Moved(expected.clone().into_iter().collect())
    );
    assert_eq!(f.unread("bob").await, expected);
    // An older read after a newer one changes nothing.
    let stale = f.store.mark_read("bob", "alice", &first).await.unwrap();
    assert_eq!(
        stale,
        ReadMarker::Stale(expected.clone().into_iter().collect())
    );
    let again = f.store.mark_read("bob", "alice", &second).await.unwrap();
    assert!(matches!(again, ReadMarker::Stale(_)), "{again:?}");
    assert_eq!(f.unread("bob").await, expected);
    // A message after the marker arrives: counted on top of what was left.
    let fourth = f.said("alice", "bob", "5").await;
    assert_eq!(f.unread("bob").await[0], ("alice".into(), 2));
    let marker = f.store.mark_read("bob", "alice", &fourth).await.unwrap();
    assert_eq!(
        marker,
        ReadMarker::Moved([("carol".to_owned(), 1)].into_iter().collect())
    );
    // Reading one's notes: nothing was unread, nothing becomes unread.
    let note = f.said("bob", "bob", "another note").await;
    f.said("bob", "bob", "a later note").await;
    let marker = f.store.mark_read("bob", "bob", &note).await.unwrap();
    assert_eq!(
        marker,
        ReadMarker::Moved([("carol".to_owned(), 1)].into_iter().collect())
    );
}

async fn a_read_must_name_a_message_of_that_conversation(f: Fixture) {
    let to_bob = f.said("alice", "bob", "for bob").await;
    let to_carol = f.said("alice", "carol", "for carol").await;
    for up_to in [to_carol.as_str(), "01JUNKNOWN0000000000000000", ""] {
        assert_eq!(
            f.store.mark_read("bob", "alice", up_to).await.unwrap(),
            ReadMarker::NotFound,
            "{up_to:?}"
        );
    }
    assert_eq!(
        f.store.mark_read("bob", "carol", &to_bob).await.unwrap(),
        ReadMarker::NotFound,
        "a message of another conversation"
    );
    assert_eq!(
        f.unread("bob").await,
        [("alice".into(), 1)],
        "nothing changed"
    );
}

async fn reading_up_to_ones_own_message_reads_what_came_before_it(f: Fixture) {
    f.said("alice", "bob", "1").await;
    f.said("alice", "bob", "2").await;
    let reply = f.said("bob", "alice", "answer").await;
    f.said("alice", "bob", "3").await;
    let marker = f.store.mark_read("bob", "alice", &reply).await.unwrap();
    assert_eq!(
        marker,
        ReadMarker::Moved([("alice".to_owned(), 1)].into_iter().collect())
    );
}

async fn a_read_tells_every_device_of_both_sides_once(mut f: Fixture) {
    f.observer.subscribe(&channel::user("bob")).await.unwrap();
    f.observer.subscribe(&channel::user("alice")).await.unwrap();
    let first = f.said("alice", "bob", "1").await;
    let second = f.said("alice", "bob", "2").await;
    for _ in 0..6 {
        f.heard().await; // each message: to bob, bob's counters, alice's copy
    }
    let broker = Arc::clone(&f.observer);
    let marker = chat_store::read::mark_read(&*f.store, &broker, "bob", "alice", &first)
        .await
        .unwrap();
    assert!(matches!(marker, ReadMarker::Moved(_)));
    let unread = ServerFrame::Unread {
        counts: [("alice".to_owned(), 1)].into_iter().collect(),
        rooms: Default::default(),
    };
    let receipt = ServerFrame::Receipt {
        from: "bob".into(),
        up_to: first.clone(),
        room: None,
    };
    let mut heard = [f.heard().await, f.heard().await];
    heard.sort();
    assert_eq!(
        heard,
        [
            (channel::user("alice"), receipt.to_json()),
            (channel::user("bob"), unread.to_json()),
        ]
    );
    // A stale read is not news to anyone; the next real one is.
    chat_store::read::mark_read(&*f.store, &broker, "bob", "alice", &first)
        .await
        .unwrap();
    chat_store::read::mark_read(&*f.store, &broker, "bob", "alice", &second)
        .await
        .unwrap();
    let mut heard = [f.heard().await, f.heard().await];
    heard.sort();
    assert_eq!(
        heard[0],
        (
            channel::user("alice"),
            ServerFrame::Receipt {
                from: "bob".into(),
                up_to: second,
                room: None,
            }
            .to_json()
        ),
        "the stale read sent no receipt"
    );
}

async fn a_repeated_send_is_stored_once_and_answered_as_the_first(mut f: Fixture) {
    f.observer.subscribe(&channel::user("bob")).await.unwrap();
    let first = typed("alice", "bob", "once");
    let mut retry = typed("alice", "bob", "once, again");
    retry.client_id = first.client_id.clone();
    let stored = f.store.append_direct(first.clone()).await.unwrap();
    assert_eq!(stored.repeated, None);
    let repeated = f.store.append_direct(retry).await.unwrap();
    assert_eq!(
        (repeated.receiver_seq, repeated.sender_seq, repeated.offline),
        (stored.receiver_seq, stored.sender_seq, stored.offline)
    );
    assert_eq!(repeated.repeated.as_deref(), Some(first.history.as_str()));
    assert_eq!(f.store.inbox_since("bob", 0, 10).await.unwrap().len(), 1);
    assert_eq!(f.store.inbox_since("alice", 0, 10).await.unwrap().len(), 1);
    assert_eq!(f.unread("bob").await, [("alice".into(), 1)]);
    assert_eq!(
        f.store
            .history("alice", "bob", None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // The same client id from another sender is another send.
    let mut carols = typed("carol", "bob", "mine");
    carols.client_id = first.client_id.clone();
    assert_eq!(f.store.append_direct(carols).await.unwrap().repeated, None);
    // Only the first was published (message, then unread; carol's two after).
    let (_, frame) = f.heard().await;
    assert!(frame.contains(r#""body":"once""#), "{frame}");
    f.heard().await;
    let (_, frame) = f.heard().await;
    assert!(frame.contains(r#""body":"mine""#), "{frame}");
}

async fn offline_messages_are_handed_over_once_in_order(f: Fixture) {
    for body in ["while away 1", "while away 2"] {
        assert!(
            f.store
                .append_direct(typed("alice", "bob", body))
                .await
                .unwrap()
                .offline
        );
    }
    let offline = f.store.take_offline("bob").await.unwrap();
    assert_eq!(offline.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert!(offline[1].frame.contains("while away 2"));
    assert!(
        f.store.take_offline("bob").await.unwrap().is_empty(),
        "once"
    );

    f.presence.connected("bob", 1).await.unwrap();
    assert!(
        !f.store
            .append_direct(typed("alice", "bob", "live"))
            .await
            .unwrap()
            .offline
    );
    f.presence.connected("bob", 2).await.unwrap();
    f.presence.disconnected("bob", 1).await.unwrap();
    assert!(
        !f.store
            .append_direct(typed("alice", "bob", "one tab left"))
            .await
            .unwrap()
            .offline
    );
    f.presence.disconnected("bob", 2).await.unwrap();
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

async fn frames_for_any_name_are_the_protocols_bytes(mut f: Fixture) {
    let sender = "a\"b\\c/\u{1}\t张三 18446744073709551615";
    f.observer.subscribe(&channel::user("bob")).await.unwrap();
    f.store
        .append_direct(typed(sender, "bob", "hi"))
        .await
        .unwrap();
    f.heard().await;
    let unread = ServerFrame::Unread {
        counts: [(sender.to_owned(), 1)].into_iter().collect(),
        rooms: Default::default(),
    };
    assert_eq!(f.heard().await, (channel::user("bob"), unread.to_json()));
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
    let before_start = f
        .store
        .history("alice", "bob", Some(&last[0].cursor), 10)
        .await
        .unwrap();
    assert!(before_start.is_empty(), "{before_start:?}");
    // Every cursor of the one form means something to either engine: the
    // very start gives an empty page, the far end the newest page; any
    // other form is refused as such, never an outage.
    for cursor in ["0-0", "00-0", "0-1"] {
        let page = f.store.history("alice", "bob", Some(cursor), 10).await;
        assert!(page.unwrap().is_empty(), "{cursor}");
    }
    let newest = f.store.history("alice", "bob", None, 10).await.unwrap();
    let far = "9999999999999999999-9999999999999999999";
    assert_eq!(
        f.store
            .history("alice", "bob", Some(far), 10)
            .await
            .unwrap(),
        newest
    );
    for cursor in [
        "",
        "-",
        "x",
        "1",
        "1-",
        "-1",
        "1-2-3",
        " 1-1",
        "99999999999999999999-1",
    ] {
        let answer = f.store.history("alice", "bob", Some(cursor), 10).await;
        assert!(
            matches!(answer, Err(StoreError::InvalidCursor(_))),
            "{cursor:?}: {answer:?}"
        );
    }
    assert!(
        f.store
            .history("alice", "carol", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Once a Redis store has looked for older data to convert (at start, in
/// the background), its check passes; SQLite's passes at once.
async fn the_check_passes_on_a_working_engine(f: Fixture) {
    chat_testkit::eventually_async("the check passes", || async {
        f.store.check().await.is_ok()
    })
    .await
    .unwrap();
    f.store.check().await.unwrap();
}

macro_rules! both {
    ($($scenario:ident),* $(,)?) => {
        chat_testkit::contract!(sqlite: $($scenario),*);
        chat_testkit::contract!(redis: $($scenario),*);
    };
}

both!(
    messages_get_consecutive_sequence_numbers_and_are_published,
    seed_frames_are_kept_byte_for_byte_for_the_receiver_only,
    unread_counts_per_sender_and_a_read_keeps_what_came_after_it,
    a_read_must_name_a_message_of_that_conversation,
    reading_up_to_ones_own_message_reads_what_came_before_it,
    a_read_tells_every_device_of_both_sides_once,
    a_repeated_send_is_stored_once_and_answered_as_the_first,
    offline_messages_are_handed_over_once_in_order,
    frames_for_any_name_are_the_protocols_bytes,
    history_pages_newest_first_for_both_sides,
    the_check_passes_on_a_working_engine,
);

/// The whole message store contract on one Redis Cluster (three masters),
/// each case under its own prefix: each user's keys in the slot of their
/// channel, each keeping a copy of the conversation, every message written
/// in two single-slot steps (the receiver's, then the sender's).
#[tokio::test]
async fn the_message_contract_holds_on_a_redis_cluster() {
    let cluster = TestRedisCluster::start().unwrap();
    let f = || cluster_with(&cluster, LIMITS);
    messages_get_consecutive_sequence_numbers_and_are_published(f()).await;
    seed_frames_are_kept_byte_for_byte_for_the_receiver_only(f()).await;
    unread_counts_per_sender_and_a_read_keeps_what_came_after_it(f()).await;
    a_read_must_name_a_message_of_that_conversation(f()).await;
    reading_up_to_ones_own_message_reads_what_came_before_it(f()).await;
    a_read_tells_every_device_of_both_sides_once(f()).await;
    a_repeated_send_is_stored_once_and_answered_as_the_first(f()).await;
    offline_messages_are_handed_over_once_in_order(f()).await;
    frames_for_any_name_are_the_protocols_bytes(f()).await;
    history_pages_newest_first_for_both_sides(f()).await;
    the_check_passes_on_a_working_engine(f()).await;
    lists_are_kept_to_their_limits(cluster_with(&cluster, SMALL)).await;
    a_send_cut_between_its_two_steps_is_completed_by_its_retry(&cluster).await;
}

/// On a cluster a direct message is two steps, the receiver's side then
/// the sender's. A send whose process died between them (here: the
/// sender's side taken away after the fact, as if it never ran) and that
/// the client retries with the same client id is stored once for the
/// receiver, and the retry writes the sender's side for the first send.
async fn a_send_cut_between_its_two_steps_is_completed_by_its_retry(cluster: &TestRedisCluster) {
    let prefix = chat_testkit::unique("test:");
    let f = redis_at(&cluster.url(), &prefix, LIMITS, None);
    let (sender, receiver) = ("alice", "bob");
    let partition = |user: &str| partitions::of(&channel::user(user));
    assert_ne!(partition(sender), partition(receiver), "two slots");
    let message = typed(sender, receiver, "cut");
    let first = f.store.append_direct(message.clone()).await.unwrap();
    assert_eq!((first.receiver_seq, first.sender_seq), (1, Some(1)));
    // Every key of the sender's side, in the sender's slot (the key table
    // of `chat_store::redis`): the sender's step never ran.
    let tag = &partitions::tags()[partition(sender)];
    let mut conn = chat_broker::redis::command_connection(&cluster.url()).unwrap();
    for key in [
        format!("seq:{sender}"),
        format!("inbox:{sender}"),
        format!("sent:{sender}"),
        format!("sent_order:{sender}"),
        format!("conv:{sender}:{receiver}"),
        format!("msgs:{sender}:{receiver}"),
        format!("posts:{sender}:{receiver}"),
    ] {
        let deleted: u8 = ::redis::cmd("DEL")
            .arg(format!("{{{tag}}}{prefix}{key}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(deleted == 1 || key.starts_with("sent_order"), "{key}");
    }
    assert!(f.store.inbox_since(sender, 0, 10).await.unwrap().is_empty());

    let retry = Direct {
        id: ulid::Ulid::new().to_string(),
        ..message.clone()
    };
    let retried = f.store.append_direct(retry).await.unwrap();
    assert_eq!(retried.repeated.as_deref(), Some(message.history.as_str()));
    assert_eq!((retried.receiver_seq, retried.sender_seq), (1, Some(1)));
    assert_eq!(f.store.inbox_since(receiver, 0, 10).await.unwrap().len(), 1);
    assert_eq!(f.store.unread(receiver).await.unwrap()[sender], 1);
    // The sender's copy is the first send's, at the same place in both
    // histories.
    let copy = f.store.inbox_since(sender, 0, 10).await.unwrap();
    assert_eq!(copy.len(), 1);
    assert!(copy[0].frame.contains(&message.id), "{}", copy[0].frame);
    let mine = f.store.history(sender, receiver, None, 10).await.unwrap();
    let theirs = f.store.history(receiver, sender, None, 10).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].cursor.as_str(), mine[0].message.as_str()),
        (theirs[0].cursor.as_str(), theirs[0].message.as_str())
    );
    // Once written, a third try is answered from the sent record.
    let again = f.store.append_direct(message.clone()).await.unwrap();
    assert_eq!((again.receiver_seq, again.sender_seq), (1, Some(1)));
    assert_eq!(f.store.inbox_since(sender, 0, 10).await.unwrap().len(), 1);
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

async fn lists_are_kept_to_their_limits(f: Fixture) {
    // Two conversations taking turns: each is trimmed by its own count.
    for i in 1..=300 {
        f.said("alice", "bob", &format!("m{i}")).await;
        f.said("carol", "dave", &format!("m{i}")).await;
    }
    let other = f.store.history("carol", "dave", None, 1_000).await.unwrap();
    assert!((50..150).contains(&other.len()), "{}", other.len());
    // Inboxes and histories are trimmed like Redis's `MAXLEN ~ 50`: to at
    // least 50 and at most one more stream node (100 entries).
    let inbox = f.store.inbox_since("bob", 0, 1_000).await.unwrap();
    assert!((50..150).contains(&inbox.len()), "{}", inbox.len());
    assert_eq!(inbox.last().unwrap().seq, 300);
    let history = f.store.history("alice", "bob", None, 1_000).await.unwrap();
    assert!((50..150).contains(&history.len()), "{}", history.len());
    // Offline lists exactly: the newest five.
    let offline = f.store.take_offline("bob").await.unwrap();
    assert_eq!(
        offline.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [296, 297, 298, 299, 300]
    );
}

const SMALL: Limits = Limits {
    history_max: 50,
    offline_max: 5,
    ..Limits::DEFAULT
};

#[tokio::test]
async fn the_embedded_store_keeps_its_lists_to_their_limits() {
    lists_are_kept_to_their_limits(sqlite_with(SMALL).await).await;
}

#[tokio::test]
async fn redis_keeps_its_lists_to_their_limits() {
    lists_are_kept_to_their_limits(redis_with(SMALL)).await;
}

/// A send whose call timed out although Redis ran it (the answer was held
/// up on the way back, as on a slow network), retried by the client with
/// the same id: one message, and the retry is answered as the first send.
#[tokio::test]
async fn a_send_retried_after_its_call_timed_out_is_stored_once() {
    let redis = TestRedis::start().unwrap();
    let proxy = chat_testkit::proxy::DelayProxy::start(redis.socket_addr().unwrap())
        .await
        .unwrap();
    let store = RedisStore::start(RedisStoreOptions {
        url: format!("redis://{}/", proxy.addr()),
        prefix: redis.prefix().into(),
        limits: LIMITS,
    })
    .unwrap();
    let message = typed("alice", "bob", "slow");
    // The script is loaded first (a fresh Redis answers the first EVALSHA
    // with NOSCRIPT, which would be held too and the send never run).
    store
        .append_direct(typed("carol", "dave", "warm"))
        .await
        .unwrap();
    proxy.hold();
    let first = store.append_direct(message.clone()).await;
    assert!(first.is_err(), "the call gave up waiting: {first:?}");
    let mut conn = redis.connection().unwrap();
    let inbox = format!("{}inbox:bob", redis.prefix());
    let stored: u64 = ::redis::cmd("ZCARD").arg(&inbox).query(&mut conn).unwrap();
    assert_eq!(stored, 1, "Redis ran the send");
    proxy.release();
    let retried = store.append_direct(message.clone()).await.unwrap();
    assert_eq!(retried.repeated.as_deref(), Some(message.history.as_str()));
    assert_eq!((retried.receiver_seq, retried.sender_seq), (1, Some(1)));
    assert_eq!(store.inbox_since("bob", 0, 10).await.unwrap().len(), 1);
    assert_eq!(store.unread("bob").await.unwrap()["alice"], 1);
}

#[tokio::test]
async fn the_embedded_store_keeps_everything_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let bus = MemoryBus::new();
    let node = || -> Arc<dyn Broker> { Arc::new(bus.node(Arc::new(|_: &str, _: Bytes| {}))) };
    let open = || async {
        let broker = node();
        let presence = MemoryPresence::new(Arc::clone(&broker));
        SqliteStore::open(&path, broker, presence, LIMITS)
            .await
            .unwrap()
    };
    let store = open().await;
    store
        .append_direct(typed("alice", "bob", "durable"))
        .await
        .unwrap();
    drop(store);
    let store = open().await;
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

/// A data folder written before read markers had positions (schema version
/// 0) opens, keeps its messages, and takes new ones with every feature.
#[tokio::test]
async fn an_embedded_store_from_an_earlier_version_is_upgraded_in_place() {
    use sea_orm::{ConnectionTrait, Database};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let old = Database::connect(format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE inbox (user TEXT NOT NULL, seq INTEGER NOT NULL, frame TEXT NOT NULL,
            offline INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user, seq))",
        "CREATE TABLE history (pos INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT NOT NULL,
            b TEXT NOT NULL, message TEXT NOT NULL)",
        "CREATE TABLE unread (receiver TEXT NOT NULL, sender TEXT NOT NULL,
            count INTEGER NOT NULL, PRIMARY KEY (receiver, sender))",
        "CREATE TABLE read_marker (reader TEXT NOT NULL, peer TEXT NOT NULL,
            up_to TEXT NOT NULL, PRIMARY KEY (reader, peer))",
        "INSERT INTO inbox VALUES ('bob', 1, '{\"old\":true}', 1)",
        "INSERT INTO history (a, b, message) VALUES ('alice', 'bob', '{}')",
        "INSERT INTO unread VALUES ('bob', 'alice', 1)",
    ] {
        old.execute_unprepared(sql).await.unwrap();
    }
    drop(old);
    let bus = MemoryBus::new();
    let broker: Arc<dyn Broker> = Arc::new(bus.node(Arc::new(|_: &str, _: Bytes| {})));
    let presence = MemoryPresence::new(Arc::clone(&broker));
    let store = SqliteStore::open(&path, broker, presence, LIMITS)
        .await
        .unwrap();
    assert_eq!(
        store.inbox_since("bob", 0, 10).await.unwrap()[0].frame,
        r#"{"old":true}"#
    );
    let message = typed("alice", "bob", "new");
    let id = message.id.clone();
    assert_eq!(store.append_direct(message).await.unwrap().receiver_seq, 2);
    assert_eq!(store.unread("bob").await.unwrap()["alice"], 2);
    assert_eq!(
        store.mark_read("bob", "alice", &id).await.unwrap(),
        ReadMarker::Moved(Default::default())
    );
}

/// The embedded writer commits a batch in one transaction; a message that
/// fails there (here a trigger refuses it) is refused alone, and the rest of
/// its batch is stored and acked.
#[tokio::test]
async fn a_message_that_fails_in_an_embedded_batch_fails_alone() {
    let f = sqlite_with(Limits::DEFAULT).await;
    let db = rusqlite::Connection::open(f._dir.path().join("store.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER poison BEFORE INSERT ON history WHEN NEW.message LIKE '%poison%'
         BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
    )
    .unwrap();
    // Queued together before the writer runs (one thread): one batch.
    let (first, poisoned, last) = tokio::join!(
        f.store.append_direct(typed("alice", "bob", "before")),
        f.store.append_direct(typed("alice", "bob", "poison")),
        f.store.append_direct(typed("alice", "bob", "after")),
    );
    assert_eq!(first.unwrap().receiver_seq, 1);
    assert!(
        matches!(poisoned, Err(StoreError::Unavailable(_))),
        "{poisoned:?}"
    );
    assert_eq!(last.unwrap().receiver_seq, 2);
    let inbox = f.store.inbox_since("bob", 0, 10).await.unwrap();
    let bodies: Vec<bool> = inbox.iter().map(|e| e.frame.contains("poison")).collect();
    assert_eq!(bodies, [false, false]);
    assert_eq!(inbox.len(), 2);
}
