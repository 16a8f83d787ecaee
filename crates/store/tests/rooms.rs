//! The room store contract, run against both engines: Redis (a real Redis)
//! and embedded SQLite (a real file).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::sync::Arc;

use bytes::Bytes;
use chat_broker::envelope::{self, Control, Outbound};
use chat_broker::memory::MemoryBus;
use chat_broker::redis::{RedisBroker, RedisOptions};
use chat_broker::{Broker, Handler, channel};
use chat_protocol::{ChatMessage, ServerFrame};
use chat_store::memory::MemoryPresence;
use chat_store::redis::messages::{RedisStore, RedisStoreOptions};
use chat_store::sqlite::SqliteStore;
use chat_store::{Admission, Limits, Role, RoomError, RoomLimits, RoomRead, RoomSend, RoomStore};
use chat_testkit::WAIT;
use chat_testkit::redis::TestRedis;
use chat_testkit::redis_cluster::TestRedisCluster;
use tokio::sync::mpsc;

/// A room store and a broker node that hears what it publishes.
struct Fixture {
    rooms: Box<dyn RoomStore>,
    observer: Arc<dyn Broker>,
    heard: mpsc::UnboundedReceiver<(String, Outbound)>,
    _redis: Option<TestRedis>,
    _dir: tempfile::TempDir,
}

fn observer_handler() -> (Handler, mpsc::UnboundedReceiver<(String, Outbound)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |channel: &str, payload: Bytes| {
        if let Some((out, _)) = envelope::decode(payload) {
            let _ = tx.send((channel.to_owned(), out));
        }
    });
    (handler, rx)
}

const SMALL: Limits = Limits {
    history_max: 20,
    rooms: RoomLimits {
        max_members: 3,
        rooms_per_user: 2,
    },
    ..Limits::DEFAULT
};

async fn sqlite() -> Fixture {
    sqlite_with(Limits::DEFAULT).await
}

async fn sqlite_small() -> Fixture {
    sqlite_with(SMALL).await
}

async fn sqlite_with(limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let bus = MemoryBus::new();
    let (handler, heard) = observer_handler();
    let observer = Arc::new(bus.node(handler));
    let publisher: Arc<dyn Broker> = Arc::new(bus.node(Arc::new(|_: &str, _: Bytes| {})));
    let presence = MemoryPresence::new(Arc::clone(&publisher));
    let store = SqliteStore::open(&dir.path().join("rooms.db"), publisher, presence, limits)
        .await
        .unwrap();
    Fixture {
        rooms: Box::new(store),
        observer,
        heard,
        _redis: None,
        _dir: dir,
    }
}

async fn redis() -> Fixture {
    redis_with(Limits::DEFAULT)
}

async fn redis_small() -> Fixture {
    redis_with(SMALL)
}

fn redis_with(limits: Limits) -> Fixture {
    let redis = TestRedis::start().unwrap();
    let (url, prefix) = (redis.url().to_owned(), redis.prefix().to_owned());
    redis_at(url, prefix, limits, Some(redis))
}

/// A fixture on `cluster` (shared by the cases: six processes are slow to
/// start), under a prefix of its own.
fn cluster_with(cluster: &TestRedisCluster, limits: Limits) -> Fixture {
    redis_at(cluster.url(), chat_testkit::unique("test:"), limits, None)
}

/// A Redis room store and an observer on `url`, under `prefix`.
fn redis_at(url: String, prefix: String, limits: Limits, redis: Option<TestRedis>) -> Fixture {
    let (handler, heard) = observer_handler();
    let options = RedisOptions {
        url: url.clone(),
        prefix: prefix.clone(),
        errors: None,
    };
    let observer = Arc::new(RedisBroker::start(options, handler).unwrap());
    let store = RedisStore::start(RedisStoreOptions {
        url,
        prefix,
        limits,
    })
    .unwrap();
    Fixture {
        rooms: Box::new(store),
        observer,
        heard,
        _redis: redis,
        _dir: tempfile::tempdir().unwrap(),
    }
}

fn send(room: &str, from: &str, client_id: &str, body: &str) -> RoomSend {
    let message = ChatMessage {
        seq: None,
        id: ulid::Ulid::new().to_string(),
        from: from.into(),
        from_name: None,
        to: None,
        room: Some(room.into()),
        body: body.into(),
        media: None,
        ts: 1,
        ..Default::default()
    };
    let (head, tail) = ServerFrame::Message(message.clone()).room_template();
    RoomSend {
        room: room.into(),
        id: message.id,
        from: from.into(),
        client_id: client_id.into(),
        head,
        tail,
        envelope_header: envelope::text_header(),
        reply_to: None,
        as_server: false,
    }
}

fn join() -> Admission {
    Admission::Join
}

fn added_by(by: &str, role: Role) -> Admission {
    Admission::Added {
        by: by.into(),
        role,
    }
}

impl Fixture {
    /// The next two things heard, one on a room channel and one on a user
    /// channel, in whichever order they came: (the room's, the user's).
    async fn heard_on_room_and_user(&mut self) -> (Outbound, Outbound) {
        let (first, second) = (self.heard().await, self.heard().await);
        let ((on_room, room), (on_user, user)) = if first.0.starts_with("room:") {
            (first, second)
        } else {
            (second, first)
        };
        assert!(on_room.starts_with("room:"), "{on_room}");
        assert!(on_user.starts_with("user:"), "{on_user}");
        (room, user)
    }

    /// Says `body` in `room` as `from`; answers the message's id and seq.
    async fn said(&self, room: &str, from: &str, body: &str) -> (String, u64) {
        let message = send(room, from, &ulid::Ulid::new().to_string(), body);
        let id = message.id.clone();
        let appended = self.rooms.append_room(message).await.unwrap();
        (id, appended.seq)
    }

    async fn unread(&self, user: &str) -> Vec<(String, u64)> {
        self.rooms
            .room_unread(user)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    async fn heard(&mut self) -> (String, Outbound) {
        tokio::time::timeout(WAIT, self.heard.recv())
            .await
            .unwrap()
            .unwrap()
    }

    /// The entries of `room` as `user` syncs them from 0: (type, seq).
    async fn entries(&self, room: &str, user: &str) -> Vec<(String, u64)> {
        self.rooms
            .room_since(room, user, 0, 1_000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                let frame: serde_json::Value = serde_json::from_str(&e.frame).unwrap();
                assert_eq!(frame["seq"].as_u64(), Some(e.seq), "{frame}");
                (frame["type"].as_str().unwrap().to_owned(), e.seq)
            })
            .collect()
    }
}

/// Counts are the room's last seq minus each member's marker: they follow
/// every message and membership change, move forward only, and a member's
/// own message reads everything before it.
async fn unread_counts_are_derived_and_markers_only_move_forward(f: Fixture) {
    f.rooms.join_room("team", "ann", join()).await.unwrap();
    f.rooms.join_room("team", "ben", join()).await.unwrap();
    assert_eq!(
        f.unread("ann").await,
        [("team".to_owned(), 1)],
        "ben joined"
    );
    assert_eq!(f.unread("ben").await, [("team".to_owned(), 0)]);
    let (first, _) = f.said("team", "ann", "1").await;
    let (second, _) = f.said("team", "ann", "2").await;
    let (third, seq3) = f.said("team", "ann", "3").await;
    assert_eq!(f.unread("ann").await, [("team".to_owned(), 0)], "her own");
    assert_eq!(f.unread("ben").await, [("team".to_owned(), 3)]);
    assert_eq!(
        f.rooms
            .mark_room_read("team", "ben", &second)
            .await
            .unwrap(),
        RoomRead::Moved {
            unread: 1,
            members: 2
        }
    );
    assert_eq!(
        f.rooms.mark_room_read("team", "ben", &first).await.unwrap(),
        RoomRead::Stale { unread: 1 }
    );
    assert_eq!(
        f.rooms
            .mark_room_read("team", "ben", "01JNOTANENTRY0000000000000")
            .await
            .unwrap(),
        RoomRead::NotFound
    );
    // ben writes: he has read everything before his own message.
    f.said("team", "ben", "me too").await;
    assert_eq!(f.unread("ben").await, [("team".to_owned(), 0)]);
    assert_eq!(f.unread("ann").await, [("team".to_owned(), 1)]);
    assert!(matches!(
        f.rooms.mark_room_read("team", "ben", &third).await.unwrap(),
        RoomRead::Stale { unread: 0 }
    ));
    let list = f.rooms.room_list("ann").await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].role, list[0].unread, list[0].private),
        (Role::Owner, 1, false)
    );
    assert!(list[0].last.as_deref().unwrap().contains("me too"));
    assert!(seq3 > 0);
}

/// Entries come in seq order, from any cursor; history pages newest first;
/// a cursor beyond the end is an empty page; non-members see nothing.
async fn entries_page_forward_and_back_for_members_only(f: Fixture) {
    f.rooms.join_room("log", "cat", join()).await.unwrap();
    for n in 1..=5 {
        f.said("log", "cat", &format!("{n}")).await;
    }
    let kinds: Vec<String> = f
        .entries("log", "cat")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        kinds,
        [
            "member_joined",
            "message",
            "message",
            "message",
            "message",
            "message"
        ]
    );
    let after = f.rooms.room_since("log", "cat", 4, 10).await.unwrap();
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 6]);
    assert!(
        f.rooms
            .room_since("log", "cat", 60, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let page = f.rooms.room_history("log", "cat", None, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 5]);
    let older = f
        .rooms
        .room_history("log", "cat", Some(5), 10)
        .await
        .unwrap();
    assert_eq!(
        older.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [4, 3, 2, 1]
    );
    for refused in [
        f.rooms.room_since("log", "dog", 0, 10).await,
        f.rooms.room_history("log", "dog", None, 10).await,
    ] {
        assert!(
            matches!(refused, Err(RoomError::Forbidden(_))),
            "{refused:?}"
        );
    }
    assert!(matches!(
        f.rooms.room_since("nowhere", "cat", 0, 10).await,
        Err(RoomError::NotFound(_))
    ));
    assert!(matches!(
        f.rooms.append_room(send("log", "dog", "x", "let me")).await,
        Err(RoomError::Forbidden(_))
    ));
    assert!(matches!(
        f.rooms
            .append_room(send("nowhere", "cat", "x", "hello?"))
            .await,
        Err(RoomError::NotFound(_))
    ));
}

/// Who may do what: private rooms take members only by a member; only the
/// owner adds admins; the owner removes anyone, an admin members only; an
/// owner leaving hands the room on.
async fn roles_decide_who_joins_adds_and_removes(f: Fixture) {
    f.rooms.create_room("board", "olga", true).await.unwrap();
    assert!(matches!(
        f.rooms.create_room("board", "pete", false).await,
        Err(RoomError::Exists(_))
    ));
    assert!(matches!(
        f.rooms.join_room("board", "pete", join()).await,
        Err(RoomError::Forbidden(_))
    ));
    assert!(matches!(
        f.rooms
            .join_room("board", "pete", added_by("quin", Role::Member))
            .await,
        Err(RoomError::Forbidden(_))
    ));
    assert!(matches!(
        f.rooms
            .join_room("nowhere", "pete", added_by("olga", Role::Member))
            .await,
        Err(RoomError::NotFound(_))
    ));
    assert!(
        f.rooms
            .join_room("board", "pete", added_by("olga", Role::Admin))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        f.unread("olga").await,
        [("board".to_owned(), 0)],
        "what she did herself"
    );
    assert_eq!(
        f.unread("pete").await,
        [("board".to_owned(), 0)],
        "from his own entry on"
    );
    assert!(
        f.rooms
            .join_room("board", "pete", added_by("olga", Role::Member))
            .await
            .unwrap()
            .is_none(),
        "a member already"
    );
    assert!(
        f.rooms
            .join_room("board", "quin", added_by("pete", Role::Member))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        matches!(
            f.rooms
                .join_room("board", "rosa", added_by("pete", Role::Admin))
                .await,
            Err(RoomError::Forbidden(_))
        ),
        "only the owner adds admins"
    );
    assert!(
        f.rooms
            .join_room("board", "rosa", added_by("quin", Role::Member))
            .await
            .unwrap()
            .is_some()
    );
    // quin (member) removes nobody; pete (admin) removes members, not the owner.
    assert!(matches!(
        f.rooms.leave_room("board", "rosa", Some("quin")).await,
        Err(RoomError::Forbidden(_))
    ));
    assert!(matches!(
        f.rooms.leave_room("board", "olga", Some("pete")).await,
        Err(RoomError::Forbidden(_))
    ));
    assert!(
        f.rooms
            .leave_room("board", "rosa", Some("pete"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        f.rooms
            .leave_room("board", "rosa", None)
            .await
            .unwrap()
            .is_none(),
        "gone already"
    );
    // The owner leaves: the admin (pete) owns the room now.
    assert!(
        f.rooms
            .leave_room("board", "olga", None)
            .await
            .unwrap()
            .is_some()
    );
    let (info, members) = f.rooms.room_info("board", Some("quin")).await.unwrap();
    assert_eq!(
        (info.owner.as_deref(), info.members, info.private),
        (Some("pete"), 2, true)
    );
    assert_eq!(
        members
            .iter()
            .map(|m| (m.user.as_str(), m.role))
            .collect::<Vec<_>>(),
        [("pete", Role::Owner), ("quin", Role::Member)]
    );
    assert!(
        matches!(
            f.rooms.room_info("board", Some("olga")).await,
            Err(RoomError::Forbidden(_))
        ),
        "private"
    );
    assert_eq!(
        f.rooms.room_names("olga").await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(f.rooms.room_names("quin").await.unwrap(), ["board"]);
    // Removal is an entry of the room, with who removed.
    let kinds: Vec<String> = f
        .entries("board", "quin")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        kinds,
        [
            "member_joined",
            "member_joined",
            "member_joined",
            "member_joined",
            "member_left",
            "member_left"
        ]
    );
}

/// Limits: members per room, rooms per user, entries kept.
async fn limits_refuse_and_trim(f: Fixture) {
    for user in ["u1", "u2", "u3"] {
        f.rooms.join_room("full", user, join()).await.unwrap();
    }
    assert!(matches!(
        f.rooms.join_room("full", "u4", join()).await,
        Err(RoomError::Full(_, 3))
    ));
    f.rooms.join_room("second", "u1", join()).await.unwrap();
    assert!(matches!(
        f.rooms.join_room("third", "u1", join()).await,
        Err(RoomError::TooManyRooms(_, 2))
    ));
    assert!(matches!(
        f.rooms.create_room("third", "u1", false).await,
        Err(RoomError::TooManyRooms(_, 2))
    ));
    // The refused creation left nothing behind.
    assert!(matches!(
        f.rooms.room_info("third", Some("u4")).await,
        Err(RoomError::NotFound(_))
    ));
    f.rooms.join_room("third", "u4", join()).await.unwrap();
    for n in 0..30 {
        f.said("second", "u1", &format!("{n}")).await;
    }
    let kept = f.rooms.room_since("second", "u1", 0, 1_000).await.unwrap();
    assert_eq!(kept.len(), 20, "the last history_max entries");
    assert_eq!(kept.last().unwrap().seq, 31);
}

/// A send repeated with its client id stores nothing and answers the first.
async fn a_repeated_room_send_is_stored_once(f: Fixture) {
    f.rooms.join_room("dup", "vic", join()).await.unwrap();
    let first = f
        .rooms
        .append_room(send("dup", "vic", "c1", "once"))
        .await
        .unwrap();
    let again = f
        .rooms
        .append_room(send("dup", "vic", "c1", "once"))
        .await
        .unwrap();
    assert_eq!(again.seq, first.seq);
    let frame = again.repeated.unwrap();
    assert!(frame.contains("\"body\":\"once\""), "{frame}");
    // Another sender may use the same client id.
    f.rooms.join_room("dup", "wes", join()).await.unwrap();
    let other = f
        .rooms
        .append_room(send("dup", "wes", "c1", "mine"))
        .await
        .unwrap();
    assert!(other.repeated.is_none());
    assert_eq!(f.entries("dup", "vic").await.len(), 4);
}

/// Every change is published: the entry on the room's channel, the
/// membership as a control on the user's.
async fn changes_are_published_to_the_room_and_the_user(mut f: Fixture) {
    f.observer.subscribe(&channel::room("news")).await.unwrap();
    f.observer.subscribe(&channel::user("xia")).await.unwrap();
    let joined = f.rooms.join_room("news", "xia", join()).await.unwrap();
    assert_eq!(joined, Some(1), "the first entry of a new room");
    // The room's entry and the user's control, on two channels: in either
    // order (on a Redis Cluster two shards may deliver them).
    let (entry, control) = f.heard_on_room_and_user().await;
    let Outbound::Text(entry) = entry else {
        panic!("{entry:?}")
    };
    let entry: serde_json::Value = serde_json::from_str(&entry).unwrap();
    assert_eq!(
        (entry["type"].as_str(), entry["user"].as_str()),
        (Some("member_joined"), Some("xia"))
    );
    assert_eq!(
        control,
        Outbound::Control(Control::Joined {
            room: "news".into(),
            seq: 1
        })
    );
    let (id, _) = f.said("news", "xia", "extra").await;
    let (on, Outbound::Text(message)) = f.heard().await else {
        panic!("a text frame")
    };
    assert_eq!(on, "room:news");
    assert!(message.contains(&id));
    let left = f.rooms.leave_room("news", "xia", None).await.unwrap();
    assert_eq!(left, Some(3));
    let (entry, control) = f.heard_on_room_and_user().await;
    assert!(matches!(entry, Outbound::Text(t) if t.contains("member_left")));
    assert_eq!(
        control,
        Outbound::Control(Control::Left {
            room: "news".into(),
            seq: 3
        })
    );
}

/// An outsider learns nothing of who is in a room: adding or removing
/// someone is refused for the caller's lack of right, the same whether the
/// user named is a member or not.
async fn an_outsider_learns_nothing_of_who_is_in(f: Fixture) {
    f.rooms.create_room("cabal", "yan", true).await.unwrap();
    f.rooms
        .join_room("cabal", "zoe", added_by("yan", Role::Member))
        .await
        .unwrap();
    for user in ["zoe", "nobody"] {
        let add = f
            .rooms
            .join_room("cabal", user, added_by("eve", Role::Member))
            .await;
        assert!(
            matches!(add, Err(RoomError::Forbidden(_))),
            "{user}: {add:?}"
        );
        let remove = f.rooms.leave_room("cabal", user, Some("eve")).await;
        assert!(
            matches!(remove, Err(RoomError::Forbidden(_))),
            "{user}: {remove:?}"
        );
        // A member who may not remove anyone learns nothing either.
        let remove = f.rooms.leave_room("cabal", user, Some("zoe")).await;
        if user != "zoe" {
            assert!(
                matches!(remove, Err(RoomError::Forbidden(_))),
                "{user}: {remove:?}"
            );
        }
    }
}

/// Client ids are the sender's own: user `a` sending id `b c` is not user
/// `a b` sending id `c` (ids may hold spaces in jwt mode).
async fn client_ids_of_different_senders_never_collide(f: Fixture) {
    f.rooms.join_room("spaces", "a", join()).await.unwrap();
    f.rooms.join_room("spaces", "a b", join()).await.unwrap();
    let first = f
        .rooms
        .append_room(send("spaces", "a", "b c", "one"))
        .await
        .unwrap();
    let second = f
        .rooms
        .append_room(send("spaces", "a b", "c", "two"))
        .await
        .unwrap();
    assert!(first.repeated.is_none() && second.repeated.is_none());
    assert_ne!(first.seq, second.seq);
}

/// The application adds to a private room, as an admin, without being a
/// member; it removes the owner; entries name it; nobody's marker moves
/// for it.
async fn the_application_adds_and_removes_with_its_own_power(f: Fixture) {
    f.rooms.create_room("vault", "olga", true).await.unwrap();
    let server = |role| Admission::Server { role };
    let seq = f
        .rooms
        .join_room("vault", "rita", server(Role::Admin))
        .await
        .unwrap();
    assert!(seq.is_some());
    assert!(
        f.rooms
            .join_room("vault", "rita", server(Role::Member))
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        f.rooms
            .join_room("nowhere", "rita", server(Role::Member))
            .await,
        Err(RoomError::NotFound(_))
    ));
    let entries = f.rooms.room_since("vault", "rita", 0, 10).await.unwrap();
    let last: serde_json::Value = serde_json::from_str(&entries.last().unwrap().frame).unwrap();
    assert_eq!(
        (last["user"].as_str(), last["by"].as_str()),
        (Some("rita"), Some(chat_store::SYSTEM))
    );
    assert!(
        f.rooms
            .remove_as_server("vault", "olga")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        f.rooms
            .remove_as_server("vault", "olga")
            .await
            .unwrap()
            .is_none()
    );
    let (info, members) = f.rooms.room_info("vault", Some("rita")).await.unwrap();
    assert_eq!(
        info.owner.as_deref(),
        Some("rita"),
        "the admin takes the room"
    );
    assert_eq!(members.len(), 1);
    assert!(
        matches!(
            f.rooms.room_info("vault", Some("olga")).await,
            Err(RoomError::Forbidden(_))
        ),
        "olga is out of the private room"
    );
    let (seen, listed) = f.rooms.room_info("vault", None).await.unwrap();
    assert_eq!(
        (seen, listed),
        (info, members),
        "the application sees the private room as its member does"
    );
    assert_eq!(
        f.unread("rita").await,
        [("vault".to_owned(), 1)],
        "olga's removal, unread for rita"
    );
    assert!(matches!(
        f.rooms.remove_as_server("nowhere", "rita").await,
        Err(RoomError::NotFound(_))
    ));
}

/// A deleted room keeps nothing: not found, in nobody's rooms, and its
/// name starts over; each member's connections are told to stop
/// following it.
async fn a_deleted_room_is_gone_for_everyone(mut f: Fixture) {
    for user in ["olga", "pete"] {
        f.observer
            .subscribe(&chat_broker::channel::user(user))
            .await
            .unwrap();
    }
    f.rooms.create_room("gone", "olga", false).await.unwrap();
    f.rooms.join_room("gone", "pete", join()).await.unwrap();
    f.said("gone", "pete", "soon forgotten").await;
    let mut members = f.rooms.delete_room("gone").await.unwrap();
    members.sort();
    assert_eq!(members, ["olga", "pete"]);
    assert!(matches!(
        f.rooms.room_info("gone", Some("olga")).await,
        Err(RoomError::NotFound(_))
    ));
    assert!(f.rooms.room_names("pete").await.unwrap().is_empty());
    assert!(matches!(
        f.rooms.delete_room("gone").await,
        Err(RoomError::NotFound(_))
    ));
    let mut left = Vec::new();
    while left.len() < 2 {
        if let (channel, Outbound::Control(Control::Left { room, .. })) = f.heard().await {
            assert_eq!(room, "gone");
            left.push(channel);
        }
    }
    left.sort();
    assert_eq!(
        left,
        [
            chat_broker::channel::user("olga"),
            chat_broker::channel::user("pete")
        ]
    );
    f.rooms.create_room("gone", "quin", false).await.unwrap();
    let entries = f.rooms.room_since("gone", "quin", 0, 10).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1],
        "a fresh start"
    );
}

/// The application gives a member another role; the owner's stays.
async fn the_application_changes_a_members_role(f: Fixture) {
    use chat_store::RoleChange;
    f.rooms.create_room("desk", "olga", true).await.unwrap();
    f.rooms
        .join_room("desk", "pete", added_by("olga", Role::Member))
        .await
        .unwrap();
    let role_of = |members: &[chat_store::Member], user: &str| {
        members.iter().find(|m| m.user == user).map(|m| m.role)
    };
    assert_eq!(
        f.rooms.set_role("desk", "pete", Role::Admin).await.unwrap(),
        RoleChange::Changed
    );
    let (_, members) = f.rooms.room_info("desk", None).await.unwrap();
    assert_eq!(role_of(&members, "pete"), Some(Role::Admin));
    assert_eq!(
        f.rooms.set_role("desk", "pete", Role::Admin).await.unwrap(),
        RoleChange::Same
    );
    assert_eq!(
        f.rooms
            .set_role("desk", "olga", Role::Member)
            .await
            .unwrap(),
        RoleChange::Owner
    );
    assert_eq!(
        f.rooms.set_role("desk", "quin", Role::Admin).await.unwrap(),
        RoleChange::NotMember
    );
    assert!(matches!(
        f.rooms.set_role("nowhere", "pete", Role::Admin).await,
        Err(RoomError::NotFound(_))
    ));
    assert_eq!(
        f.rooms
            .set_role("desk", "pete", Role::Member)
            .await
            .unwrap(),
        RoleChange::Changed
    );
    let (info, members) = f.rooms.room_info("desk", None).await.unwrap();
    assert_eq!(
        (
            role_of(&members, "pete"),
            role_of(&members, "olga"),
            info.members
        ),
        (Some(Role::Member), Some(Role::Owner), 2),
        "the role alone changed"
    );
}

chat_testkit::contract!(sqlite:
    a_deleted_room_is_gone_for_everyone,
    the_application_adds_and_removes_with_its_own_power,
    unread_counts_are_derived_and_markers_only_move_forward,
    entries_page_forward_and_back_for_members_only,
    roles_decide_who_joins_adds_and_removes,
    a_repeated_room_send_is_stored_once,
    changes_are_published_to_the_room_and_the_user,
    an_outsider_learns_nothing_of_who_is_in,
    client_ids_of_different_senders_never_collide,
    the_application_changes_a_members_role,
);
chat_testkit::contract!(redis:
    a_deleted_room_is_gone_for_everyone,
    the_application_adds_and_removes_with_its_own_power,
    unread_counts_are_derived_and_markers_only_move_forward,
    entries_page_forward_and_back_for_members_only,
    roles_decide_who_joins_adds_and_removes,
    a_repeated_room_send_is_stored_once,
    changes_are_published_to_the_room_and_the_user,
    an_outsider_learns_nothing_of_who_is_in,
    client_ids_of_different_senders_never_collide,
    the_application_changes_a_members_role,
);
chat_testkit::contract!(sqlite_small: limits_refuse_and_trim);
chat_testkit::contract!(redis_small: limits_refuse_and_trim);

/// The whole room contract on one Redis Cluster (three masters), each case
/// under its own prefix: a room's keys live in the slot of its channel's
/// partition, its scripts publish with `SPUBLISH`, and a member's control
/// (follow, stop following) is published after the room's script, the
/// member's channel being in another slot.
#[tokio::test]
async fn the_room_contract_holds_on_a_redis_cluster() {
    let cluster = TestRedisCluster::start().unwrap();
    let f = || cluster_with(&cluster, Limits::DEFAULT);
    a_deleted_room_is_gone_for_everyone(f()).await;
    the_application_adds_and_removes_with_its_own_power(f()).await;
    unread_counts_are_derived_and_markers_only_move_forward(f()).await;
    entries_page_forward_and_back_for_members_only(f()).await;
    roles_decide_who_joins_adds_and_removes(f()).await;
    a_repeated_room_send_is_stored_once(f()).await;
    changes_are_published_to_the_room_and_the_user(f()).await;
    an_outsider_learns_nothing_of_who_is_in(f()).await;
    client_ids_of_different_senders_never_collide(f()).await;
    the_application_changes_a_members_role(f()).await;
    limits_refuse_and_trim(cluster_with(&cluster, SMALL)).await;
}

/// Redis only: what a message costs the store does not depend on how many
/// members the room has (one history, one marker each; fan-out on read):
/// the same commands for a room of one member as for one of a thousand.
/// (A private Redis: `INFO commandstats` counts every client's commands.)
#[tokio::test]
async fn a_room_message_costs_redis_the_same_commands_for_one_member_or_a_thousand() {
    let redis = TestRedis::private().unwrap();
    let store = RedisStore::start(RedisStoreOptions {
        url: redis.url().into(),
        prefix: redis.prefix().into(),
        limits: Limits::DEFAULT,
    })
    .unwrap();
    // Both rooms with a thousand messages of history (so each send also
    // forgets the client id of the send a thousand entries back).
    store.join_room("tiny", "m0", join()).await.unwrap();
    for n in 0..1_000 {
        store
            .join_room("huge", &format!("m{n}"), join())
            .await
            .unwrap();
    }
    for room in ["tiny", "huge"] {
        for n in 0..1_000 {
            store
                .append_room(send(room, "m0", &n.to_string(), "filler"))
                .await
                .unwrap();
        }
    }
    // Once each first: the script is loaded (NOSCRIPT, then EVAL) once.
    for room in ["tiny", "huge"] {
        store
            .append_room(send(room, "m0", "warm", "warm"))
            .await
            .unwrap();
    }
    let mut conn = redis.connection().unwrap();
    let mut stats = || -> String {
        ::redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut conn)
            .unwrap()
    };
    let mut costs = Vec::new();
    for room in ["tiny", "huge"] {
        let before = stats();
        store
            .append_room(send(room, "m0", room, "the same message"))
            .await
            .unwrap();
        costs.push(commands(&stats()) - commands(&before));
    }
    assert_eq!(costs[0], costs[1], "commands per message: {costs:?}");
    assert!(costs[0] > 0 && costs[0] < 30, "{costs:?}");
}

/// Every command Redis ran but `INFO` (by name), from `INFO commandstats`.
fn commands(info: &str) -> i64 {
    info.lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<i64>()
                .ok()
        })
        .sum()
}
