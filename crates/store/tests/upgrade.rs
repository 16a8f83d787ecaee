//! A Redis store that starts on data an older version stored (inboxes and
//! conversation histories as streams) converts it before it says it is
//! ready: the messages read back the same, and the older direct messages
//! can be edited like new ones.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use chat_broker::envelope;
use chat_protocol::{ChatMessage, ServerFrame};
use chat_store::redis::messages::{RedisStore, RedisStoreOptions};
use chat_store::{Change, ChangeRequest, Conversation, Lifecycle, Limits, MessageStore};
use chat_testkit::redis::TestRedis;

fn start(redis: &TestRedis) -> RedisStore {
    RedisStore::start(RedisStoreOptions {
        url: redis.url().into(),
        prefix: redis.prefix().into(),
        limits: Limits::DEFAULT,
    })
    .unwrap()
}

/// Writes `from`'s message to `to` as the older version did: a stream
/// entry `0-{seq}` in each inbox, one in the conversation's stream.
fn write_as_before(
    conn: &mut redis::Connection,
    prefix: &str,
    from: &str,
    to: &str,
    body: &str,
) -> ChatMessage {
    let message = ChatMessage {
        id: ulid::Ulid::new().to_string(),
        from: from.into(),
        to: Some(to.into()),
        body: body.into(),
        ts: chat_store::now_millis(),
        ..ChatMessage::default()
    };
    for user in [to, from] {
        let seq: u64 = redis::cmd("INCR")
            .arg(format!("{prefix}seq:{user}"))
            .query(conn)
            .unwrap();
        let frame = ServerFrame::Message(ChatMessage {
            seq: Some(seq),
            ..message.clone()
        })
        .to_json();
        let _: String = redis::cmd("XADD")
            .arg(format!("{prefix}inbox:{user}"))
            .arg(format!("0-{seq}"))
            .arg("f")
            .arg(frame)
            .query(conn)
            .unwrap();
    }
    let pair = "alice:bob";
    let position: u64 = redis::cmd("INCR")
        .arg(format!("{prefix}conv_seq:{pair}"))
        .query(conn)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(format!("{prefix}conv:{pair}"))
        .arg("*")
        .arg("m")
        .arg(serde_json::to_string(&message).unwrap())
        .query(conn)
        .unwrap();
    let _: u64 = redis::cmd("ZADD")
        .arg(format!("{prefix}posts:{from}:{to}"))
        .arg(position)
        .arg(&message.id)
        .query(conn)
        .unwrap();
    message
}

fn bodies(entries: &[chat_store::InboxEntry]) -> Vec<String> {
    entries
        .iter()
        .map(
            |e| match serde_json::from_str::<ServerFrame>(&e.frame).unwrap() {
                ServerFrame::Message(m) => m.body,
                ServerFrame::Update { message, .. } => format!("update: {}", message.body),
                other => panic!("{other:?}"),
            },
        )
        .collect()
}

#[tokio::test]
async fn streams_of_an_older_version_are_converted_before_the_store_is_ready() {
    let redis = TestRedis::start().unwrap();
    let prefix = redis.prefix().to_owned();
    let mut conn = redis.connection().unwrap();
    let first = write_as_before(&mut conn, &prefix, "alice", "bob", "first");
    write_as_before(&mut conn, &prefix, "bob", "alice", "second");
    // An earlier start was cut short: it had converted bob's inbox, but
    // not yet noted where its copies are.
    let inbox = format!("{prefix}inbox:bob");
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&inbox)
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    let _: u64 = redis::cmd("DEL").arg(&inbox).query(&mut conn).unwrap();
    for (id, fields) in entries {
        let seq: u64 = id.trim_start_matches("0-").parse().unwrap();
        let member = format!("{seq} {}", fields[0].1);
        let _: u64 = redis::cmd("ZADD")
            .arg(&inbox)
            .arg(seq)
            .arg(member)
            .query(&mut conn)
            .unwrap();
    }

    let store = start(&redis);
    chat_testkit::eventually_async("the store is ready", || async {
        store.check().await.is_ok()
    })
    .await
    .unwrap();
    for key in ["inbox:alice", "inbox:bob", "conv:alice:bob"] {
        let kind: String = redis::cmd("TYPE")
            .arg(format!("{prefix}{key}"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(kind, "zset", "{key}");
    }
    let inbox = store.inbox_since("bob", 0, 10).await.unwrap();
    assert_eq!(inbox.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(bodies(&inbox), ["first", "second"]);
    let history = store.history("alice", "bob", None, 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert!(
        history[0].message.contains("second"),
        "newest first: {history:?}"
    );

    // The older message is found and changed in both inboxes.
    let edited = store
        .change(ChangeRequest {
            actor: "alice".into(),
            conversation: Conversation::Direct("bob".into()),
            message: first.id.clone(),
            change: Change::Edit {
                body: "first!".into(),
                window_ms: None,
            },
            now: chat_store::now_millis(),
            envelope_header: envelope::text_header(),
        })
        .await
        .unwrap();
    assert_eq!(edited.message.seq, Some(1), "alice's own copy");
    assert_eq!(edited.update_seq, Some(3));
    for user in ["alice", "bob"] {
        let inbox = store.inbox_since(user, 0, 10).await.unwrap();
        assert_eq!(
            bodies(&inbox),
            ["first!", "second", "update: first!"],
            "{user}"
        );
    }

    let schema: u32 = redis::cmd("GET")
        .arg(format!("{prefix}schema"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        schema, 2,
        "the layout is marked, so later starts skip the scan"
    );

    // A second start finds nothing more to convert and changes nothing.
    let again = start(&redis);
    chat_testkit::eventually_async("the second store is ready", || async {
        again.check().await.is_ok()
    })
    .await
    .unwrap();
    assert_eq!(again.inbox_since("bob", 0, 10).await.unwrap().len(), 3);
}
