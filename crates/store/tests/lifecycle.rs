//! The message lifecycle contract (edits, deletes, reactions, replies),
//! run against both engines: Redis (a real Redis) and embedded SQLite (a
//! real file). A deleted message's text is looked for in the storage
//! itself: every key under the test's prefix, every byte of the database
//! files.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::sync::Arc;

use chat_broker::envelope;
use chat_protocol::{ChatMessage, ServerFrame};
use chat_store::redis::messages::{RedisStore, RedisStoreOptions};
use chat_store::sqlite::SqliteStore;
use chat_store::{
    Admission, Change, ChangeError, ChangeRequest, Changed, Conversation, Direct, FrameText,
    InboxEntry, Lifecycle, Limits, MediaRefs, MessageStore, RoomSend, RoomStore,
};
use chat_testkit::redis::TestRedis;
use chat_testkit::redis_cluster::TestRedisCluster;

/// One store behind every interface, and how to look at its raw storage.
struct Fixture {
    store: Arc<dyn Store>,
    redis: Option<TestRedis>,
    /// On a cluster: its masters' ports and the test's prefix.
    cluster: Option<(Vec<u16>, String)>,
    dir: tempfile::TempDir,
}

trait Store: MessageStore + RoomStore + Lifecycle + MediaRefs {}
impl<T: MessageStore + RoomStore + Lifecycle + MediaRefs> Store for T {}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_alone(&dir.path().join("messages.db"), Limits::DEFAULT)
        .await
        .unwrap();
    Fixture {
        store: Arc::new(store),
        redis: None,
        cluster: None,
        dir,
    }
}

async fn redis() -> Fixture {
    let redis = TestRedis::start().unwrap();
    let store = RedisStore::start(RedisStoreOptions {
        url: redis.url().into(),
        prefix: redis.prefix().into(),
        limits: Limits::DEFAULT,
    })
    .unwrap();
    Fixture {
        store: Arc::new(store),
        redis: Some(redis),
        cluster: None,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn message(from: &str, to: Option<&str>, room: Option<&str>, body: &str) -> ChatMessage {
    ChatMessage {
        id: ulid::Ulid::new().to_string(),
        from: from.into(),
        to: to.map(Into::into),
        room: room.map(Into::into),
        body: body.into(),
        ts: chat_store::now_millis(),
        ..ChatMessage::default()
    }
}

impl Fixture {
    /// `from` says `body` in `room`, answering `reply_to` (a message id).
    async fn say(&self, room: &str, from: &str, body: &str, reply_to: Option<&str>) -> String {
        let mut m = message(from, None, Some(room), body);
        let mut at = None;
        if let Some(original) = reply_to {
            let conv = Conversation::Room(room.into());
            let (quote, seq) = self.store.quote(from, &conv, original).await.unwrap();
            m.reply_to = Some(quote);
            at = Some(seq);
        }
        let (head, tail) = ServerFrame::Message(m.clone()).room_template();
        self.store
            .append_room(RoomSend {
                room: room.into(),
                id: m.id.clone(),
                from: from.into(),
                client_id: m.id.clone(),
                head,
                tail,
                envelope_header: envelope::text_header(),
                reply_to: at,
                as_server: false,
            })
            .await
            .unwrap();
        m.id
    }

    /// `from` writes `body` to `to`, answering `reply_to`.
    async fn write(&self, from: &str, to: &str, body: &str, reply_to: Option<&str>) -> String {
        let mut m = message(from, Some(to), None, body);
        let mut at = None;
        if let Some(original) = reply_to {
            let conv = Conversation::Direct(to.into());
            let (quote, pos) = self.store.quote(from, &conv, original).await.unwrap();
            m.reply_to = Some(quote);
            at = Some(pos);
        }
        self.deliver(m, at).await
    }

    /// Stores direct message `m` (to `m.to`), answering the message at
    /// conversation position `reply_to`; answers its id.
    async fn deliver(&self, m: ChatMessage, reply_to: Option<u64>) -> String {
        let (from, to) = (m.from.clone(), m.to.clone().unwrap());
        let (head, tail) = chat_protocol::message_template(&m);
        self.store
            .append_direct(Direct {
                id: m.id.clone(),
                from,
                client_id: Some(m.id.clone()),
                to,
                frame: FrameText::Typed { head, tail },
                history: serde_json::to_string(&m).unwrap(),
                copy_to_sender: true,
                envelope_header: envelope::text_header(),
                reply_to,
            })
            .await
            .unwrap();
        m.id
    }

    async fn change(
        &self,
        actor: &str,
        conversation: Conversation,
        id: &str,
        change: Change,
    ) -> Result<Changed, ChangeError> {
        self.store
            .change(ChangeRequest {
                actor: actor.into(),
                conversation,
                message: id.into(),
                change,
                now: chat_store::now_millis(),
                envelope_header: envelope::text_header(),
            })
            .await
    }

    /// `user`'s view of `room` from the start: each entry parsed.
    async fn room(&self, room: &str, user: &str) -> Vec<(u64, ServerFrame)> {
        parsed(self.store.room_since(room, user, 0, 500).await.unwrap())
    }

    /// `user`'s inbox from the start: each entry parsed.
    async fn inbox(&self, user: &str) -> Vec<(u64, ServerFrame)> {
        parsed(self.store.inbox_since(user, 0, 500).await.unwrap())
    }

    /// Whether `text` is anywhere in the raw storage: every key under the
    /// test's prefix (Redis), every byte of the database files (SQLite).
    fn stored_anywhere(&self, text: &str) -> Option<String> {
        if let Some((masters, prefix)) = &self.cluster {
            // Each master's keys: on a cluster, keys start with a hash tag.
            return masters.iter().find_map(|port| {
                let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
                let mut conn = client.get_connection().unwrap();
                holding(&mut conn, &format!("*{prefix}*"), text)
            });
        }
        match &self.redis {
            Some(redis) => {
                let mut conn = redis.connection().unwrap();
                holding(&mut conn, &format!("{}*", redis.prefix()), text)
            }
            None => std::fs::read_dir(self.dir.path())
                .unwrap()
                .map(|file| file.unwrap().path())
                .find(|path| contains(&std::fs::read(path).unwrap(), text.as_bytes()))
                .map(|path| path.display().to_string()),
        }
    }
}

/// The first key matching `pattern` whose value holds `text`.
fn holding(conn: &mut ::redis::Connection, pattern: &str, text: &str) -> Option<String> {
    let keys: Vec<String> = ::redis::cmd("KEYS").arg(pattern).query(conn).unwrap();
    {
        {
            {
                keys.into_iter().find(|key| {
                    let kind: String = ::redis::cmd("TYPE").arg(key).query(&mut *conn).unwrap();
                    let values: Vec<Vec<u8>> = match kind.as_str() {
                        "string" => vec![::redis::cmd("GET").arg(key).query(&mut *conn).unwrap()],
                        "hash" => ::redis::cmd("HGETALL").arg(key).query(&mut *conn).unwrap(),
                        "zset" => ::redis::cmd("ZRANGE")
                            .arg(key)
                            .arg(0)
                            .arg(-1)
                            .query(&mut *conn)
                            .unwrap(),
                        "list" => ::redis::cmd("LRANGE")
                            .arg(key)
                            .arg(0)
                            .arg(-1)
                            .query(&mut *conn)
                            .unwrap(),
                        "set" => ::redis::cmd("SMEMBERS").arg(key).query(&mut *conn).unwrap(),
                        "stream" => Vec::new(),
                        other => panic!("unexpected key type {other} at {key}"),
                    };
                    values.iter().any(|v| contains(v, text.as_bytes()))
                })
            }
        }
    }
}

/// Each entry's `seq` and frame.
fn parsed(entries: Vec<InboxEntry>) -> Vec<(u64, ServerFrame)> {
    entries
        .into_iter()
        .map(|e| (e.seq, serde_json::from_str(&e.frame).unwrap()))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn message_of(frame: &ServerFrame) -> &ChatMessage {
    match frame {
        ServerFrame::Message(m) | ServerFrame::Update { message: m, .. } => m,
        other => panic!("not a message: {other:?}"),
    }
}

fn room(name: &str) -> Conversation {
    Conversation::Room(name.into())
}

fn peer(name: &str) -> Conversation {
    Conversation::Direct(name.into())
}

fn edit(body: &str) -> Change {
    Change::Edit {
        body: body.into(),
        window_ms: None,
    }
}

/// An edit rewrites the message in place (same seq) and appends one
/// update; a second edit moves the update to the end (one per message).
/// Only the author edits; unknown ids, other rooms and outsiders are refused.
async fn a_room_edit_rewrites_in_place_and_keeps_one_update(f: Fixture) {
    for user in ["ann", "ben"] {
        f.store
            .join_room("team", user, Admission::Join)
            .await
            .unwrap();
    }
    f.store
        .join_room("other", "ann", Admission::Join)
        .await
        .unwrap();
    let id = f.say("team", "ann", "helo", None).await;
    let elsewhere = f.say("other", "ann", "x", None).await;
    let first = f
        .change("ann", room("team"), &id, edit("hello"))
        .await
        .unwrap();
    assert_eq!(first.message.body, "hello");
    assert!(first.message.edited_at.is_some());
    let second = f
        .change("ann", room("team"), &id, edit("hello!"))
        .await
        .unwrap();
    assert!(second.update_seq > first.update_seq);
    let entries = f.room("team", "ben").await;
    let original = entries
        .iter()
        .find(|(_, e)| matches!(e, ServerFrame::Message(m) if m.id == id))
        .unwrap();
    assert_eq!(message_of(&original.1).body, "hello!");
    assert_eq!(
        Some(original.0),
        message_of(&original.1).seq,
        "kept its seq"
    );
    let updates: Vec<_> = entries
        .iter()
        .filter(|(_, e)| matches!(e, ServerFrame::Update { .. }))
        .collect();
    assert_eq!(updates.len(), 1, "one update per message: {entries:?}");
    assert_eq!(Some(updates[0].0), second.update_seq);
    assert_eq!(message_of(&updates[0].1).body, "hello!");
    assert_eq!(message_of(&updates[0].1).seq, Some(original.0));
    // The same text again changes nothing and appends nothing.
    let same = f
        .change("ann", room("team"), &id, edit("hello!"))
        .await
        .unwrap();
    assert_eq!(same.update_seq, None);
    assert!(matches!(
        f.change("ben", room("team"), &id, edit("mine")).await,
        Err(ChangeError::Forbidden(_))
    ));
    assert!(matches!(
        f.change("ann", room("team"), "01NOSUCHMESSAGE", edit("x"))
            .await,
        Err(ChangeError::NotFound(_))
    ));
    assert!(matches!(
        f.change("ann", room("team"), &elsewhere, edit("x")).await,
        Err(ChangeError::NotFound(_))
    ));
    assert!(matches!(
        f.change("cat", room("team"), &id, Change::React("👍".into()))
            .await,
        Err(ChangeError::Forbidden(_))
    ));
}

/// Reactions are one per user per emoji and never unread; a delete (by an
/// admin here) leaves a tombstone, takes the message off unread counts,
/// empties the quotes of replies, and leaves its text nowhere in storage.
async fn a_room_delete_leaves_a_tombstone_and_no_text(f: Fixture) {
    f.store
        .join_room("team", "ann", Admission::Join)
        .await
        .unwrap();
    f.store
        .join_room("team", "ben", Admission::Join)
        .await
        .unwrap();
    let secret = "the launch code is 0000";
    let id = f.say("team", "ben", secret, None).await;
    let reply = f.say("team", "ann", "noted", Some(&id)).await;
    let before = f.store.room_unread("ben").await.unwrap()["team"];
    let reacted = f
        .change("ann", room("team"), &id, Change::React("👍".into()))
        .await
        .unwrap();
    assert_eq!(reacted.message.reactions["👍"].users, ["ann"]);
    let again = f
        .change("ann", room("team"), &id, Change::React("👍".into()))
        .await
        .unwrap();
    assert_eq!(
        (again.update_seq, again.message.reactions["👍"].count),
        (None, 1)
    );
    assert_eq!(
        f.store.room_unread("ben").await.unwrap()["team"],
        before,
        "a reaction is not unread"
    );
    let quoted = f.room("team", "ann").await;
    let quote = quoted
        .iter()
        .find_map(|(_, e)| match e {
            ServerFrame::Message(m) if m.id == reply => m.reply_to.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (quote.id.as_str(), quote.excerpt.as_str()),
        (id.as_str(), secret)
    );
    // ann unread: ben's message and nothing after it (her own reply read it).
    let ann_before = f.store.room_unread("ann").await.unwrap()["team"];
    let deleted = f
        .change("ann", room("team"), &id, Change::Delete)
        .await
        .unwrap();
    assert!(deleted.message.deleted && deleted.message.body.is_empty());
    assert_eq!(ann_before, 0);
    assert_eq!(
        f.store.room_unread("ben").await.unwrap()["team"],
        before,
        "updates and tombstones are not unread"
    );
    let entries = f.room("team", "ben").await;
    let tomb = entries
        .iter()
        .find(|(_, e)| matches!(e, ServerFrame::Message(m) if m.id == id))
        .unwrap();
    assert!(message_of(&tomb.1).deleted && message_of(&tomb.1).reactions.is_empty());
    let reply_now = entries
        .iter()
        .find_map(|(_, e)| match e {
            ServerFrame::Message(m) if m.id == reply => m.reply_to.clone(),
            _ => None,
        })
        .unwrap();
    assert!(reply_now.deleted && reply_now.excerpt.is_empty());
    assert_eq!(f.stored_anywhere(secret), None, "the deleted text is gone");
    assert!(matches!(
        f.change("ann", room("team"), &id, Change::React("👍".into()))
            .await,
        Err(ChangeError::Forbidden(_))
    ));
    assert!(matches!(
        f.change("ben", room("team"), &id, edit("back")).await,
        Err(ChangeError::Forbidden(_))
    ));
}

/// A deleted unread message comes off the reader's count at once.
async fn a_deleted_unread_room_message_is_unread_no_more(f: Fixture) {
    f.store
        .join_room("team", "ann", Admission::Join)
        .await
        .unwrap();
    f.store
        .join_room("team", "ben", Admission::Join)
        .await
        .unwrap();
    let id = f.say("team", "ann", "oops", None).await;
    let before = f.store.room_unread("ben").await.unwrap()["team"];
    f.change("ann", room("team"), &id, Change::Delete)
        .await
        .unwrap();
    assert_eq!(
        f.store.room_unread("ben").await.unwrap()["team"],
        before - 1
    );
    assert!(
        matches!(
            f.change(
                "ben",
                room("team"),
                &f.say("team", "ann", "x", None).await,
                Change::Delete
            )
            .await,
            Err(ChangeError::Forbidden(_))
        ),
        "a plain member deletes only their own"
    );
}

/// A direct message: the edit reaches both inboxes (in place and as an
/// update at each inbox's next seq); the history returns the edited text;
/// a delete takes an unread message off the receiver's count and leaves
/// its text nowhere; the receiver may react but not edit.
async fn a_direct_message_changes_in_both_inboxes(f: Fixture) {
    let secret = "meet me at the old mill";
    let id = f.write("ann", "ben", "hi", None).await;
    let edited = f
        .change("ann", peer("ben"), &id, edit("hi!"))
        .await
        .unwrap();
    assert_eq!(edited.message.seq, Some(1), "ann's own inbox position");
    for user in ["ann", "ben"] {
        let inbox = f.inbox(user).await;
        assert_eq!(inbox.len(), 2, "{user}: {inbox:?}");
        assert_eq!(message_of(&inbox[0].1).body, "hi!");
        assert!(matches!(
            inbox[1].1,
            ServerFrame::Update { seq: Some(2), .. }
        ));
        assert_eq!(message_of(&inbox[1].1).seq, Some(1));
    }
    let history = f.store.history("ann", "ben", None, 10).await.unwrap();
    assert!(history[0].message.contains("hi!"));
    assert!(matches!(
        f.change("ben", peer("ann"), &id, edit("mine")).await,
        Err(ChangeError::Forbidden(_))
    ));
    assert!(
        matches!(
            f.change("cat", peer("ann"), &id, Change::React("👍".into()))
                .await,
            Err(ChangeError::NotFound(_))
        ),
        "another conversation's message"
    );
    let reacted = f
        .change("ben", peer("ann"), &id, Change::React("❤️".into()))
        .await
        .unwrap();
    assert_eq!(reacted.message.reactions["❤️"].users, ["ben"]);
    assert_eq!(
        f.inbox("ben").await.len(),
        2,
        "still one update per message"
    );
    let secret_id = f.write("ann", "ben", secret, None).await;
    let reply = f.write("ben", "ann", "ok", Some(&secret_id)).await;
    assert_eq!(f.store.unread("ben").await.unwrap()["ann"], 2);
    f.change("ann", peer("ben"), &secret_id, Change::Delete)
        .await
        .unwrap();
    assert_eq!(f.store.unread("ben").await.unwrap()["ann"], 1);
    let inbox = f.inbox("ann").await;
    let quote = inbox
        .iter()
        .find_map(|(_, e)| match e {
            ServerFrame::Message(m) if m.id == reply => m.reply_to.clone(),
            _ => None,
        })
        .unwrap();
    assert!(quote.deleted && quote.excerpt.is_empty());
    assert_eq!(f.stored_anywhere(secret), None, "the deleted text is gone");
}

/// A file sent in two messages stays while either holds it: deleting the
/// first reports the file and lets go of its hold, but the file is only
/// free with the second; an edit keeps the file; releasing what was never
/// held, or twice, frees nothing.
async fn a_file_goes_with_the_last_message_that_carries_it(f: Fixture) {
    let media = ulid::Ulid::new().to_string();
    let with_file = |to: &str| ChatMessage {
        media: Some(chat_protocol::MediaInfo {
            id: media.clone(),
            kind: "image".into(),
            mime: "image/png".into(),
            size: 68,
            url: format!("/media/{media}"),
            width: Some(1),
            height: Some(1),
            thumbnail_url: None,
        }),
        ..message("ann", Some(to), None, "look")
    };
    let (first, second) = (with_file("ben"), with_file("cat"));
    for m in [&first, &second, &first] {
        assert!(f.store.hold(&media, &m.id).await.unwrap());
    }
    let first = f.deliver(first, None).await;
    let second = f.deliver(second, None).await;

    let edited = f
        .change("ann", peer("ben"), &first, edit("look!"))
        .await
        .unwrap();
    assert_eq!(edited.removed_media, None, "an edit keeps the file");
    let deleted = f
        .change("ann", peer("ben"), &first, Change::Delete)
        .await
        .unwrap();
    assert_eq!(deleted.removed_media.as_deref(), Some(media.as_str()));
    assert!(deleted.message.media.is_none());
    assert!(
        !f.store.release(&media, &first).await.unwrap(),
        "the other message holds it"
    );
    assert!(!f.store.release(&media, "never-held").await.unwrap());

    let again = f
        .change("ann", peer("ben"), &first, Change::Delete)
        .await
        .unwrap();
    assert_eq!(again.removed_media, None, "a second delete removes nothing");
    let deleted = f
        .change("ann", peer("cat"), &second, Change::Delete)
        .await
        .unwrap();
    assert_eq!(deleted.removed_media.as_deref(), Some(media.as_str()));
    assert!(
        f.store.release(&media, &second).await.unwrap(),
        "the last one lets it go"
    );
    assert!(
        !f.store.hold(&media, "a-late-send").await.unwrap(),
        "a file being deleted is not taken up again"
    );
    assert!(
        !f.store.release(&media, &second).await.unwrap(),
        "only once"
    );
    assert!(!f.store.release(&media, &first).await.unwrap());
    // Deleted: its notes go, and the id is a plain unknown one again.
    f.store.forget(&media).await.unwrap();
    assert!(f.store.hold(&media, "another").await.unwrap());
}

/// The whole lifecycle contract on one Redis Cluster (three masters), each
/// case under its own prefix: a room changes in its slot, a direct message
/// in each user's copy, one step each.
#[tokio::test]
async fn the_lifecycle_contract_holds_on_a_redis_cluster() {
    let cluster = TestRedisCluster::start().unwrap();
    let masters = cluster.masters().unwrap();
    let f = || {
        let prefix = chat_testkit::unique("test:");
        let store = RedisStore::start(RedisStoreOptions {
            url: cluster.url(),
            prefix: prefix.clone(),
            limits: Limits::DEFAULT,
        })
        .unwrap();
        Fixture {
            store: Arc::new(store),
            redis: None,
            cluster: Some((masters.clone(), prefix)),
            dir: tempfile::tempdir().unwrap(),
        }
    };
    a_file_goes_with_the_last_message_that_carries_it(f()).await;
    a_room_edit_rewrites_in_place_and_keeps_one_update(f()).await;
    a_room_delete_leaves_a_tombstone_and_no_text(f()).await;
    a_deleted_unread_room_message_is_unread_no_more(f()).await;
    a_direct_message_changes_in_both_inboxes(f()).await;
}

chat_testkit::contract!(sqlite:
    a_file_goes_with_the_last_message_that_carries_it,
    a_room_edit_rewrites_in_place_and_keeps_one_update,
    a_room_delete_leaves_a_tombstone_and_no_text,
    a_deleted_unread_room_message_is_unread_no_more,
    a_direct_message_changes_in_both_inboxes,
);
chat_testkit::contract!(redis:
    a_file_goes_with_the_last_message_that_carries_it,
    a_room_edit_rewrites_in_place_and_keeps_one_update,
    a_room_delete_leaves_a_tombstone_and_no_text,
    a_deleted_unread_room_message_is_unread_no_more,
    a_direct_message_changes_in_both_inboxes,
);
