//! The message lifecycle through the gateway, on both engines: edits,
//! deletes, reactions and replies reach the other side live (across two
//! replicas sharing a real Redis) and survive a reconnect with `sync`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

#[macro_use]
mod support;

use chat_testkit::ws::WsClient;
use serde_json::{Value, json};
use support::{Kind, settings};

/// `client` sends `frame` (with client id `id`); answers the `ack`'s
/// message, the `update` the sender's own connection also gets skipped.
async fn acked(client: &mut WsClient, frame: Value) -> Value {
    let id = frame["id"].as_str().unwrap().to_owned();
    client.send_json(&frame).await.unwrap();
    let frames = client.recv_frames(2).await.unwrap();
    let ack = frames.iter().find(|f| f["type"] == "ack").unwrap();
    assert_eq!(ack["id"], id.as_str(), "{frames:?}");
    let echo = frames.iter().find(|f| f["type"] != "ack").unwrap();
    assert_eq!(
        echo["message"]["id"].as_str().or(echo["id"].as_str()),
        ack["message"]["id"].as_str()
    );
    ack["message"].clone()
}

/// The `error` code answering `frame`.
async fn refused(client: &mut WsClient, frame: Value) -> String {
    client.send_json(&frame).await.unwrap();
    let error = client.recv_type("error").await.unwrap();
    assert_eq!(error["id"], frame["id"], "{error}");
    error["code"].as_str().unwrap().to_owned()
}

/// Frames of a `sync` from `since` (with `room`, or the inbox), up to `synced`.
async fn synced(client: &mut WsClient, room: Option<&str>, since: u64) -> Vec<Value> {
    let mut frame = json!({"type": "sync", "id": "s", "since": since});
    if let Some(room) = room {
        frame["room"] = json!(room);
    }
    client.send_json(&frame).await.unwrap();
    let mut frames = Vec::new();
    loop {
        let frame = client.recv_json().await.unwrap();
        match frame["type"].as_str() {
            Some("synced") if frame["id"] == "s" => return frames,
            Some("unread") => {}
            _ => frames.push(frame),
        }
    }
}

/// The message `id` as the frames leave it, applied in order (a message
/// frame, then updates replacing it).
fn latest(frames: &[Value], id: &str) -> Value {
    frames
        .iter()
        .filter_map(|f| match f["type"].as_str() {
            Some("message") if f["id"] == id => Some(f.clone()),
            Some("update") if f["message"]["id"] == id => Some(f["message"].clone()),
            _ => None,
        })
        .next_back()
        .unwrap_or_else(|| panic!("no trace of {id} in {frames:?}"))
}

/// `client` joins `room`; answers the `seq` of its `member_joined` entry.
async fn join(client: &mut WsClient, room: &str) -> u64 {
    client
        .send_json(&json!({"type": "join", "id": "j", "room": room}))
        .await
        .unwrap();
    let frames = client.recv_frames(2).await.unwrap();
    assert_eq!(frames[1]["type"], "member_joined", "{frames:?}");
    frames[1]["seq"].as_u64().unwrap()
}

/// In a room across two replicas: an edit, a reaction, a reply and a
/// delete each reach the other member live, and a member who reconnects
/// and syncs from before them sees every message in its current state.
async fn a_room_message_is_edited_reacted_to_answered_and_deleted_live(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    let mut bob = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    join(&mut alice, "team").await;
    let cursor = join(&mut bob, "team").await;
    alice.recv_type("member_joined").await.unwrap();

    let send = json!({"type": "send", "id": "m1", "room": "team", "body": "helo"});
    let original = acked(&mut alice, send).await;
    let id = original["id"].as_str().unwrap().to_owned();
    assert_eq!(bob.recv_type("message").await.unwrap()["body"], "helo");

    let edit = json!({"type": "edit", "id": "e1", "room": "team", "message": id, "body": "hello"});
    let edited = acked(&mut alice, edit).await;
    assert_eq!(
        (edited["body"].as_str(), edited["seq"].clone()),
        (Some("hello"), original["seq"].clone())
    );
    let update = bob.recv_type("update").await.unwrap();
    assert_eq!(update["message"]["body"], "hello");
    assert!(update["message"]["edited_at"].as_u64().is_some());

    let react = json!({"type": "react", "id": "r1", "room": "team", "message": id, "emoji": "👍"});
    let reacted = acked(&mut bob, react).await;
    assert_eq!(
        reacted["reactions"]["👍"],
        json!({"count": 1, "users": ["bob"]})
    );
    let update = alice.recv_type("update").await.unwrap();
    assert_eq!(update["message"]["reactions"]["👍"]["count"], 1);

    let reply = json!({"type": "send", "id": "m2", "room": "team", "body": "ok", "reply_to": id});
    let answered = acked(&mut bob, reply).await;
    assert_eq!(answered["reply_to"]["excerpt"], "hello");
    let heard = alice.recv_type("message").await.unwrap();
    assert_eq!(
        (
            heard["reply_to"]["id"].as_str(),
            heard["reply_to"]["from"].as_str()
        ),
        (Some(id.as_str()), Some("alice"))
    );

    // Refusals: someone else's message, an unknown one, not one emoji.
    let edit = json!({"type": "edit", "id": "x1", "room": "team", "message": id, "body": "mine"});
    assert_eq!(refused(&mut bob, edit).await, "forbidden");
    let delete = json!({"type": "delete", "id": "x2", "room": "team", "message": "01NOTAMESSAGE"});
    assert_eq!(refused(&mut bob, delete).await, "not_found");
    let react = json!({"type": "react", "id": "x3", "room": "team", "message": id, "emoji": "ok"});
    assert_eq!(refused(&mut bob, react).await, "invalid_frame");
    let both =
        json!({"type": "delete", "id": "x4", "room": "team", "peer": "alice", "message": id});
    assert_eq!(refused(&mut bob, both).await, "invalid_frame");

    let delete = json!({"type": "delete", "id": "d1", "room": "team", "message": id});
    let deleted = acked(&mut alice, delete).await;
    assert!(deleted["deleted"].as_bool().unwrap() && deleted.get("body").is_none());
    assert_eq!(
        bob.recv_type("update").await.unwrap()["message"]["deleted"],
        true
    );

    // Back after a reconnect, from before all of it.
    bob.close().await.unwrap();
    let mut bob = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    let frames = synced(&mut bob, Some("team"), cursor).await;
    let now = latest(&frames, &id);
    assert_eq!(
        (
            now["deleted"].as_bool(),
            now.get("body"),
            now.get("reactions")
        ),
        (Some(true), None, None)
    );
    let reply = latest(&frames, answered["id"].as_str().unwrap());
    assert_eq!(reply["reply_to"]["deleted"], true);
    assert!(reply["reply_to"].get("excerpt").is_none(), "{reply}");
    let updates = frames.iter().filter(|f| f["type"] == "update").count();
    // One update per changed message; a reply's emptied quote is
    // rewritten in place, without an update of its own.
    assert_eq!(updates, 1, "one update per changed message: {frames:?}");
}

/// A direct message across two replicas: the edit and the delete reach the
/// receiver live, the receiver's reaction reaches the sender, a delete of
/// an unread message lowers the count, and `sync` returns them as they are.
async fn a_direct_message_is_edited_reacted_to_and_deleted_live(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    let mut bob = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    let send = json!({"type": "send", "id": "m1", "to": "bob", "body": "helo"});
    let id = acked(&mut alice, send).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(bob.recv_type("message").await.unwrap()["body"], "helo");

    let edit = json!({"type": "edit", "id": "e1", "peer": "bob", "message": id, "body": "hello"});
    assert_eq!(acked(&mut alice, edit).await["body"], "hello");
    let update = bob.recv_type("update").await.unwrap();
    assert_eq!(
        (
            update["message"]["body"].as_str(),
            update["message"]["seq"].as_u64()
        ),
        (Some("hello"), Some(1))
    );

    let react = json!({"type": "react", "id": "r1", "peer": "alice", "message": id, "emoji": "❤"});
    let reacted = acked(&mut bob, react).await;
    assert_eq!(
        reacted["reactions"]["❤️"]["users"],
        json!(["bob"]),
        "one form per emoji"
    );
    assert_eq!(
        alice.recv_type("update").await.unwrap()["message"]["reactions"]["❤️"]["count"],
        1
    );
    let edit = json!({"type": "edit", "id": "x1", "peer": "alice", "message": id, "body": "mine"});
    assert_eq!(refused(&mut bob, edit).await, "forbidden");
    let wrong = json!({"type": "delete", "id": "x2", "peer": "carol", "message": id});
    assert_eq!(refused(&mut alice, wrong).await, "not_found");

    let delete = json!({"type": "delete", "id": "d1", "peer": "bob", "message": id});
    acked(&mut alice, delete).await;
    let mut saw_count = None;
    loop {
        let frame = bob.recv_json().await.unwrap();
        match frame["type"].as_str() {
            Some("unread") => saw_count = frame["counts"]["alice"].as_u64(),
            Some("update") => {
                assert_eq!(frame["message"]["deleted"], true);
                break;
            }
            other => panic!("unexpected {other:?}: {frame}"),
        }
    }
    assert_eq!(
        saw_count,
        Some(0),
        "the deleted message was bob's only unread one"
    );

    bob.close().await.unwrap();
    let mut bob = WsClient::user(cluster.addr(0), "bob").await.unwrap();
    let frames = synced(&mut bob, None, 0).await;
    let now = latest(&frames, &id);
    assert_eq!(
        (now["deleted"].as_bool(), now.get("body")),
        (Some(true), None)
    );
}

suite!(
    a_room_message_is_edited_reacted_to_answered_and_deleted_live,
    a_direct_message_is_edited_reacted_to_and_deleted_live,
);
