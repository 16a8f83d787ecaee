//! Durable rooms through the gateway, on both engines: one gateway on the
//! embedded engines, and two replicas sharing a real Redis (a user's
//! devices on different replicas).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

#[macro_use]
mod support;

use chat_broker::channel;
use chat_broker::envelope::{self, Control};
use chat_runtime::settings::RoomSettings;
use chat_store::{Admission, Role};
use chat_testkit::ws::WsClient;
use serde_json::{Value, json};
use support::{Kind, settings};

/// `client` joins `room`; answers the `seq` of its `member_joined` entry.
async fn join(client: &mut WsClient, room: &str) -> u64 {
    client
        .send_json(&json!({"type": "join", "id": "j", "room": room}))
        .await
        .unwrap();
    let frames = client.recv_frames(2).await.unwrap();
    assert_eq!(frames[0]["type"], "joined", "{frames:?}");
    assert_eq!(frames[1]["type"], "member_joined", "{frames:?}");
    frames[1]["seq"].as_u64().unwrap()
}

/// `client` says `body` in `room` as send `id`; answers the acked message.
async fn say(client: &mut WsClient, id: &str, room: &str, body: &str) -> Value {
    client
        .send_json(&json!({"type": "send", "id": id, "room": room, "body": body}))
        .await
        .unwrap();
    // The ack, and the sender's own copy (either order).
    let frames = client.recv_frames(2).await.unwrap();
    assert_eq!(frames[0]["type"], "ack", "{frames:?}");
    assert_eq!(frames[1]["id"], frames[0]["message"]["id"]);
    frames[0]["message"].clone()
}

/// The `error` answering the next frame.
async fn refusal(client: &mut WsClient, frame: Value) -> (String, String) {
    client.send_json(&frame).await.unwrap();
    let error = client.recv_type("error").await.unwrap();
    (
        error["code"].as_str().unwrap().to_owned(),
        error["message"].as_str().unwrap().to_owned(),
    )
}

/// The acceptance scenario: a member away while three messages are said
/// learns `rooms.<name> = 3` when she comes back, syncs them once and in
/// order on the other replica, reads, and the count drops to 0 on every one
/// of her devices.
async fn a_member_away_catches_up_on_any_replica_and_reads_on_every_device(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut bob = WsClient::user(cluster.addr(0), "bob").await.unwrap();
    join(&mut bob, "team").await;
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    let cursor = join(&mut alice, "team").await;
    assert_eq!(
        bob.recv_type("member_joined").await.unwrap()["user"],
        "alice"
    );
    alice.close().await.unwrap();

    let mut said = Vec::new();
    for n in 1..=3 {
        let message = say(&mut bob, &format!("m{n}"), "team", &format!("n{n}")).await;
        assert_eq!(
            message["seq"].as_u64().unwrap(),
            cursor + n,
            "seq grows by one"
        );
        said.push(message);
    }

    // Two devices, on the other replica (one replica: the same one).
    let mut phone = WsClient::user(cluster.addr(1), "alice").await.unwrap();
    let mut laptop = WsClient::user(cluster.addr(1), "alice").await.unwrap();
    for device in [&mut phone, &mut laptop] {
        let unread = device.recv_type("unread").await.unwrap();
        assert_eq!(unread["rooms"], json!({"team": 3}), "{unread}");
        assert_eq!(unread["counts"], json!({}));
    }
    phone
        .send_json(&json!({"type": "sync", "id": "s", "room": "team", "since": cursor}))
        .await
        .unwrap();
    for message in &said {
        let got = phone.recv_type("message").await.unwrap();
        assert_eq!((&got["id"], &got["seq"]), (&message["id"], &message["seq"]));
        assert_eq!(got["room"], "team");
    }
    let synced = phone.recv_type("synced").await.unwrap();
    assert_eq!(
        synced,
        json!({"type": "synced", "id": "s", "room": "team", "until": cursor + 3, "more": false})
    );
    // Synced again from the end: nothing more, each message came once.
    phone
        .send_json(&json!({"type": "sync", "room": "team", "since": cursor + 3}))
        .await
        .unwrap();
    assert_eq!(
        phone.recv_type("synced").await.unwrap()["until"],
        cursor + 3
    );

    phone
        .send_json(&json!({"type": "read", "room": "team", "up_to": said[2]["id"]}))
        .await
        .unwrap();
    for device in [&mut phone, &mut laptop] {
        let unread = device.recv_until("unread").await.unwrap();
        assert_eq!(unread["rooms"], json!({"team": 0}), "{unread}");
    }
    // bob hears who read (a small room sends receipts).
    let receipt = bob.recv_until("receipt").await.unwrap();
    assert_eq!(
        receipt,
        json!({"type": "receipt", "from": "alice", "up_to": said[2]["id"], "room": "team"})
    );
    // A new connection counts 0 too: the count is derived, not kept.
    let mut tablet = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    assert_eq!(
        tablet.recv_type("unread").await.unwrap()["rooms"],
        json!({"team": 0})
    );
}

/// Joining on one device makes every device of the user follow the room
/// (`joined` without an id on the others); leaving stops them all.
async fn membership_belongs_to_the_user_on_every_connection(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut carol = WsClient::user(cluster.addr(0), "carol").await.unwrap();
    join(&mut carol, "plaza").await;
    let mut here = WsClient::user(cluster.addr(0), "dave").await.unwrap();
    let mut there = WsClient::user(cluster.addr(1), "dave").await.unwrap();
    join(&mut here, "plaza").await;
    // The other device follows the room from dave's own entry on.
    let frames = there.recv_frames(2).await.unwrap();
    assert_eq!(frames[0], json!({"type": "joined", "room": "plaza"}));
    assert_eq!(
        (frames[1]["type"].as_str(), frames[1]["user"].as_str()),
        (Some("member_joined"), Some("dave"))
    );
    assert_eq!(
        carol.recv_type("member_joined").await.unwrap()["user"],
        "dave"
    );
    let message = say(&mut carol, "c1", "plaza", "to every device").await;
    for device in [&mut here, &mut there] {
        assert_eq!(
            device.recv_type("message").await.unwrap()["id"],
            message["id"]
        );
    }
    there
        .send_json(&json!({"type": "leave", "id": "l", "room": "plaza"}))
        .await
        .unwrap();
    // The answer (the room's entry may come before it, never after); the
    // other device gets the entry, then `left` (no id).
    there.recv_until("left").await.unwrap();
    let left = here.recv_frames(2).await.unwrap();
    assert_eq!(left[0], json!({"type": "left", "room": "plaza"}));
    assert_eq!(left[1]["type"], "member_left");
    assert_eq!(
        carol.recv_type("member_left").await.unwrap()["user"],
        "dave"
    );
    // Nothing of the room reaches dave now; a direct message does, first.
    say(&mut carol, "c2", "plaza", "dave is gone").await;
    carol
        .send_json(&json!({"type": "send", "id": "d", "to": "dave", "body": "direct"}))
        .await
        .unwrap();
    for device in [&mut here, &mut there] {
        assert_eq!(device.recv_type("message").await.unwrap()["body"], "direct");
    }
}

/// A private room: outsiders cannot join, read or write it; a member adds
/// them, and their connections follow it at once.
async fn a_private_room_refuses_outsiders_until_a_member_adds_them(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let rooms = cluster.nodes[0].gateway.rooms();
    rooms.create_room("council", "erin", true).await.unwrap();
    let mut mallory = WsClient::user(cluster.addr(1), "mallory").await.unwrap();
    let (code, why) = refusal(
        &mut mallory,
        json!({"type": "join", "id": "j", "room": "council"}),
    )
    .await;
    assert_eq!(code, "forbidden", "{why}");
    assert!(why.contains("private"), "{why}");
    for frame in [
        json!({"type": "send", "id": "s", "room": "council", "body": "let me in"}),
        json!({"type": "sync", "id": "y", "room": "council", "since": 0}),
        json!({"type": "read", "id": "r", "room": "council", "up_to": "01J"}),
    ] {
        assert_eq!(
            refusal(&mut mallory, frame.clone()).await.0,
            "forbidden",
            "{frame}"
        );
    }
    // erin adds frank; frank's open connection follows the room at once.
    let mut frank = WsClient::user(cluster.addr(1), "frank").await.unwrap();
    let added = Admission::Added {
        by: "erin".into(),
        role: Role::Member,
    };
    assert!(
        rooms
            .join_room("council", "frank", added)
            .await
            .unwrap()
            .is_some()
    );
    // `joined`, then the room from his entry on, which says who added him.
    let frames = frank.recv_frames(2).await.unwrap();
    assert_eq!(frames[0], json!({"type": "joined", "room": "council"}));
    assert_eq!(
        (frames[1]["user"].as_str(), frames[1]["by"].as_str()),
        (Some("frank"), Some("erin")),
        "{frames:?}"
    );
    say(&mut frank, "f1", "council", "thanks").await;
    // mallory, not a member, cannot add herself through frank's room either.
    let by_mallory = Admission::Added {
        by: "mallory".into(),
        role: Role::Member,
    };
    assert!(
        rooms
            .join_room("council", "mallory", by_mallory)
            .await
            .is_err()
    );
}

/// Every bad room frame gets its own code; nothing is stored.
async fn bad_room_frames_are_answered_precisely(kind: Kind) {
    support::set_room_settings(RoomSettings {
        room_max_members: 2,
        ..RoomSettings::default()
    });
    let cluster = kind.start(settings()).await;
    let mut gina = WsClient::user(cluster.addr(0), "gina").await.unwrap();
    let cases = [
        (
            json!({"type": "send", "id": "a", "room": "nowhere", "body": "x"}),
            "not_found",
        ),
        (
            json!({"type": "sync", "id": "b", "room": "nowhere", "since": 0}),
            "not_found",
        ),
        (
            json!({"type": "join", "id": "c", "room": "no spaces"}),
            "invalid_name",
        ),
        (
            json!({"type": "read", "id": "d", "room": "x", "peer": "y", "up_to": "z"}),
            "invalid_frame",
        ),
        (
            json!({"type": "typing", "to": "y", "room": "x"}),
            "invalid_frame",
        ),
    ];
    for (frame, code) in cases {
        assert_eq!(refusal(&mut gina, frame.clone()).await.0, code, "{frame}");
    }
    let cursor = join(&mut gina, "small").await;
    let mut hank = WsClient::user(cluster.addr(1), "hank").await.unwrap();
    join(&mut hank, "small").await;
    assert_eq!(
        gina.recv_type("member_joined").await.unwrap()["user"],
        "hank"
    );
    let mut ivan = WsClient::user(cluster.addr(1), "ivan").await.unwrap();
    let (code, why) = refusal(
        &mut ivan,
        json!({"type": "join", "id": "j", "room": "small"}),
    )
    .await;
    assert_eq!(code, "room_full", "{why}");
    for frame in [
        json!({"type": "send", "id": "s", "room": "small", "body": "x"}),
        json!({"type": "typing", "room": "small"}),
    ] {
        assert_eq!(
            refusal(&mut ivan, frame.clone()).await.0,
            "forbidden",
            "{frame}"
        );
    }
    // An entry id that is none of the room's.
    let (code, _) = refusal(
        &mut gina,
        json!({"type": "read", "id": "r", "room": "small", "up_to": "01JNOTANENTRY0000000000000"}),
    )
    .await;
    assert_eq!(code, "not_found");
    // A cursor beyond the end: an empty page.
    gina.send_json(&json!({"type": "sync", "room": "small", "since": cursor + 100}))
        .await
        .unwrap();
    assert_eq!(
        gina.recv_until("synced").await.unwrap(),
        json!({"type": "synced", "room": "small", "until": cursor + 100, "more": false})
    );
}

/// A send retried with its id (after a timeout, a reconnect) is stored once
/// and answered with the first ack; typing reaches the other members only.
async fn retries_are_stored_once_and_typing_skips_the_typist(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut jo = WsClient::user(cluster.addr(0), "jo").await.unwrap();
    join(&mut jo, "den").await;
    let mut kim = WsClient::user(cluster.addr(1), "kim").await.unwrap();
    join(&mut kim, "den").await;
    assert_eq!(jo.recv_type("member_joined").await.unwrap()["user"], "kim");
    let first = say(&mut jo, "once", "den", "only once").await;
    let mut jo_again = WsClient::user(cluster.addr(1), "jo").await.unwrap();
    jo_again
        .send_json(&json!({"type": "send", "id": "once", "room": "den", "body": "only once"}))
        .await
        .unwrap();
    let retried = jo_again.recv_type("ack").await.unwrap();
    assert_eq!(retried["message"], first);
    jo.send_json(&json!({"type": "typing", "room": "den"}))
        .await
        .unwrap();
    assert_eq!(
        kim.recv_until("typing").await.unwrap(),
        json!({"type": "typing", "from": "jo", "room": "den"})
    );
    // The typist's own devices do not hear it: the next thing jo_again
    // hears is kim's message.
    say(&mut kim, "k", "den", "after the typing").await;
    assert_eq!(
        jo_again.recv_type("message").await.unwrap()["body"],
        "after the typing"
    );
    kim.send_json(&json!({"type": "sync", "room": "den", "since": 0}))
        .await
        .unwrap();
    let mut bodies = Vec::new();
    loop {
        let frame = kim.recv_json().await.unwrap();
        match frame["type"].as_str() {
            Some("message") => bodies.push(frame["body"].as_str().unwrap().to_owned()),
            Some("synced") => break,
            _ => {}
        }
    }
    assert_eq!(bodies, ["only once", "after the typing"]);
}

/// A `join` and a `leave` sent back to back, many times: the store's
/// control for the join may come after the leave, and must not make the
/// connection follow the room again (nor answer an error). Each round
/// reads `joined`, the user's `member_joined`, `left` — never an `error`
/// or a second `joined` — up to a `sync` answered after it.
async fn a_join_then_a_leave_leaves_the_room_unfollowed(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut erin = WsClient::user(cluster.addr(0), "erin").await.unwrap();
    erin.recv_type("unread").await.unwrap();
    for round in 0..20 {
        let room = format!("flip{round}");
        for frame in [
            json!({"type": "join", "id": "j", "room": room}),
            json!({"type": "leave", "id": "l", "room": room}),
            json!({"type": "sync", "id": "b", "since": 0}),
        ] {
            erin.send_json(&frame).await.unwrap();
        }
        let mut kinds = Vec::new();
        loop {
            let frame = erin.recv_json().await.unwrap();
            let kind = frame["type"].as_str().unwrap().to_owned();
            if kind == "synced" && frame["id"] == "b" {
                break;
            }
            // The room's `member_left` may come live before the
            // unsubscription takes; nothing else of the room may.
            if kind != "member_left" && kind != "unread" {
                kinds.push(kind);
            }
        }
        assert_eq!(kinds, ["joined", "member_joined", "left"], "round {round}");
    }
    // A join control that comes late, after the leave it preceded (as a
    // slow broker may deliver it), changes nothing: no `joined`, no error.
    let seq = join(&mut erin, "late").await;
    erin.send_json(&json!({"type": "leave", "id": "l", "room": "late"}))
        .await
        .unwrap();
    erin.recv_until("left").await.unwrap();
    let late = Control::Joined {
        room: "late".into(),
        seq,
    };
    cluster.nodes[0]
        .gateway
        .broker()
        .publish(&channel::user("erin"), envelope::control(&late))
        .await
        .unwrap();
    erin.send_json(&json!({"type": "sync", "id": "b", "since": 0}))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    loop {
        let frame = erin.recv_json().await.unwrap();
        if frame["type"] == "synced" && frame["id"] == "b" {
            break;
        }
        kinds.push(frame["type"].as_str().unwrap().to_owned());
    }
    assert!(
        kinds.iter().all(|k| k == "member_left" || k == "unread"),
        "{kinds:?}"
    );
    // No control left behind makes the connection follow any of them: a
    // message said in one now does not reach erin.
    let mut frank = WsClient::user(cluster.addr(0), "frank").await.unwrap();
    join(&mut frank, "flip0").await;
    say(&mut frank, "f1", "flip0", "is anyone here").await;
    frank
        .send_json(&json!({"type": "send", "id": "d1", "to": "erin", "body": "direct"}))
        .await
        .unwrap();
    assert_eq!(erin.recv_type("message").await.unwrap()["body"], "direct");
}

suite!(
    a_join_then_a_leave_leaves_the_room_unfollowed,
    a_member_away_catches_up_on_any_replica_and_reads_on_every_device,
    membership_belongs_to_the_user_on_every_connection,
    a_private_room_refuses_outsiders_until_a_member_adds_them,
    bad_room_frames_are_answered_precisely,
    retries_are_stored_once_and_typing_skips_the_typist,
);
