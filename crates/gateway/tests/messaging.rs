//! Durable direct messages: offline delivery, unread counters, sync, read
//! receipts — on the embedded engines and on two replicas sharing Redis.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

#[macro_use]
mod support;

use chat_testkit::ws::WsClient;
use serde_json::{Value, json};
use support::{Kind, settings};

fn send(id: &str, to: &str, body: &str) -> Value {
    json!({"type": "send", "id": id, "to": to, "body": body})
}

async fn a_message_to_an_offline_user_is_kept_counted_and_delivered_once_on_connect(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    alice.send_json(&send("1", "bob", "first")).await.unwrap();
    alice.recv_ack("1").await.unwrap();
    alice.send_json(&send("2", "bob", "second")).await.unwrap();
    alice.recv_ack("2").await.unwrap();
    let seed = r#"{"sender":"alice","receiver":"bob","message":"third, the seed's way"}"#;
    alice.send_text(seed).await.unwrap();
    // A later typed send is acked after the seed frame was stored.
    alice
        .send_json(&send("4", "carol", "sync point"))
        .await
        .unwrap();
    alice.recv_ack("4").await.unwrap();

    if let Some(redis) = &cluster.redis {
        let mut conn = redis.connection().unwrap();
        let key = format!("{}unread:bob", redis.prefix());
        let counted: u64 = ::redis::cmd("HGET")
            .arg(&key)
            .arg("alice")
            .query(&mut conn)
            .unwrap();
        assert_eq!(counted, 3, "HGET unread:bob alice");
    }

    // bob connects to the other replica, as a seed client would (no sync).
    let mut bob = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    let unread = bob.recv_type("unread").await.unwrap();
    assert_eq!(unread["counts"], json!({"alice": 3}));
    let first = bob.recv_type("message").await.unwrap();
    assert_eq!(
        (first["seq"].as_u64(), first["body"].as_str()),
        (Some(1), Some("first"))
    );
    let second = bob.recv_type("message").await.unwrap();
    assert_eq!(
        (second["seq"].as_u64(), second["body"].as_str()),
        (Some(2), Some("second"))
    );
    assert_eq!(bob.recv_seed_text().await.unwrap(), seed, "byte for byte");
    bob.close().await.unwrap();

    // Once: the next connection gets the counters, not the messages again.
    let mut bob = WsClient::user(cluster.addr(0), "bob").await.unwrap();
    assert_eq!(
        bob.recv_type("unread").await.unwrap()["counts"],
        json!({"alice": 3})
    );
    alice.send_json(&send("5", "bob", "live")).await.unwrap();
    let next = bob.recv_type("message").await.unwrap();
    assert_eq!(next["body"], "live", "nothing replayed before it");
    assert_eq!(next["seq"], 4);
}

async fn a_client_that_syncs_gets_everything_after_its_cursor_in_order(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    for i in 1..=3 {
        alice
            .send_json(&send(&i.to_string(), "bob", &format!("m{i}")))
            .await
            .unwrap();
        alice.recv_ack(&i.to_string()).await.unwrap();
    }
    let mut bob = WsClient::connect(cluster.addr(1), "/ws/bob/?since=1")
        .await
        .unwrap();
    assert_eq!(bob.recv_type("unread").await.unwrap()["counts"]["alice"], 3);
    for seq in [2, 3] {
        assert_eq!(bob.recv_type("message").await.unwrap()["seq"], seq);
    }
    let synced = bob.recv_type("synced").await.unwrap();
    assert_eq!(
        (synced["until"].as_u64(), synced["more"].as_bool()),
        (Some(3), Some(false))
    );

    bob.send_json(&json!({"type": "sync", "id": "s", "since": 0, "limit": 2}))
        .await
        .unwrap();
    for seq in [1, 2] {
        assert_eq!(bob.recv_type("message").await.unwrap()["seq"], seq);
    }
    let synced = bob.recv_type("synced").await.unwrap();
    assert_eq!(
        synced,
        json!({"type": "synced", "id": "s", "until": 2, "more": true})
    );
    assert_eq!(
        WsClient::refused_status(cluster.addr(0), "/ws/bob/?since=x")
            .await
            .unwrap(),
        400
    );
}

async fn the_senders_other_connections_see_what_it_sent(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut phone = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    let mut laptop = WsClient::user(cluster.addr(1), "alice").await.unwrap();
    laptop.recv_type("unread").await.unwrap();
    phone
        .send_json(&send("p1", "bob", "sent from my phone"))
        .await
        .unwrap();
    let ack = phone.recv_ack("p1").await.unwrap();
    let copy = laptop.recv_type("message").await.unwrap();
    assert_eq!(copy["id"], ack["message"]["id"]);
    assert_eq!(
        copy["seq"], ack["message"]["seq"],
        "the sender's inbox position"
    );
    assert_eq!(
        (copy["from"].as_str(), copy["to"].as_str()),
        (Some("alice"), Some("bob"))
    );
}

async fn reading_clears_the_counter_on_every_device_and_sends_a_receipt(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut bob_phone = WsClient::user(cluster.addr(0), "bob").await.unwrap();
    let mut bob_laptop = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    let mut alice = WsClient::user(cluster.addr(1), "alice").await.unwrap();
    alice.send_json(&send("a", "bob", "one")).await.unwrap();
    alice.send_json(&send("b", "bob", "two")).await.unwrap();
    alice.recv_ack("a").await.unwrap();
    alice.recv_ack("b").await.unwrap();
    bob_phone.recv_type("message").await.unwrap();
    let last = bob_phone.recv_type("message").await.unwrap();
    let counts = bob_phone.recv_type("unread").await.unwrap();
    assert_eq!(
        counts["counts"],
        json!({"alice": 2}),
        "counted as they arrive"
    );

    let up_to = last["id"].as_str().unwrap();
    bob_phone
        .send_json(&json!({"type": "read", "peer": "alice", "up_to": up_to}))
        .await
        .unwrap();
    // The laptop sees the counters change (after the per-message ones).
    loop {
        let unread = bob_laptop.recv_type("unread").await.unwrap();
        if unread["counts"] == json!({}) {
            break;
        }
    }
    let receipt = alice.recv_until("receipt").await.unwrap(); // past copies of its own sends
    assert_eq!(
        receipt,
        json!({"type": "receipt", "from": "bob", "up_to": up_to})
    );
    let mut later = WsClient::user(cluster.addr(0), "bob").await.unwrap();
    assert_eq!(
        later.recv_type("unread").await.unwrap()["counts"],
        json!({}),
        "stored"
    );
    // A message that is not of this conversation is not found; reading it
    // again is no news; then a new message and an older read: nothing moves
    // back, the new message stays unread.
    for (id, up_to) in [("r1", "01JDQZ7V8Y3M5T2K9W4XN6B1CE"), ("r2", up_to)] {
        later
            .send_json(&json!({"type": "read", "id": id, "peer": "alice", "up_to": up_to}))
            .await
            .unwrap();
    }
    let error = later.recv_type("error").await.unwrap();
    assert_eq!(
        (error["id"].as_str(), error["code"].as_str()),
        (Some("r1"), Some("not_found"))
    );
    alice.send_json(&send("c", "bob", "three")).await.unwrap();
    let third = alice.recv_ack("c").await.unwrap()["message"]["id"].clone();
    // The next frame bob gets is the message: the stale read sent no counters.
    assert_eq!(later.recv_type("message").await.unwrap()["id"], third);
    assert_eq!(
        later.recv_type("unread").await.unwrap()["counts"],
        json!({"alice": 1}),
        "the new message is unread"
    );
    later
        .send_json(&json!({"type": "read", "peer": "alice", "up_to": third}))
        .await
        .unwrap();
    // Had the stale read sent a receipt, it would come first.
    assert_eq!(
        alice.recv_until("receipt").await.unwrap(),
        json!({"type": "receipt", "from": "bob", "up_to": third})
    );
}

async fn watchers_learn_when_a_user_comes_and_goes(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    // A name given twice is watched (and answered) once.
    alice
        .send_json(&json!({"type": "watch", "users": ["bob", "bob", "carol"]}))
        .await
        .unwrap();
    for user in ["bob", "carol"] {
        assert_eq!(
            alice.recv_type("presence").await.unwrap(),
            json!({"type": "presence", "user": user, "online": false})
        );
    }
    let bob = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    let online = alice.recv_type("presence").await.unwrap();
    assert_eq!(
        (online["user"].as_str(), online["online"].as_bool()),
        (Some("bob"), Some(true))
    );
    // A second tab is not news; the last one closing is.
    let tab = WsClient::user(cluster.addr(0), "bob").await.unwrap();
    tab.close().await.unwrap();
    bob.close().await.unwrap();
    let offline = alice.recv_type("presence").await.unwrap();
    assert_eq!(offline["online"], false, "{offline}");
    assert!(offline["last_seen"].as_u64().unwrap() > 0);
}

async fn typing_reaches_the_peer_without_an_answer(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    let mut bob = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    alice
        .send_json(&json!({"type": "typing", "to": "bob"}))
        .await
        .unwrap();
    assert_eq!(
        bob.recv_type("typing").await.unwrap(),
        json!({"type": "typing", "from": "alice"})
    );
    alice
        .send_json(&json!({"type": "typing", "to": "not valid"}))
        .await
        .unwrap();
    assert_eq!(
        alice.recv_type("error").await.unwrap()["code"],
        "invalid_name"
    );
}

async fn a_sync_larger_than_the_outbound_queue_arrives_whole(kind: Kind) {
    let mut s = settings();
    s.rate_per_sec = 10_000.try_into().unwrap();
    s.rate_burst = 10_000.try_into().unwrap();
    let total = s.outbound_queue + 44;
    let cluster = kind.start(s).await;
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    for i in 0..total {
        alice
            .send_json(&send(&format!("m{i}"), "bob", "x"))
            .await
            .unwrap();
        alice.recv_ack(&format!("m{i}")).await.unwrap();
    }
    let mut bob = WsClient::connect(cluster.addr(1), &format!("/ws/bob/?since={total}"))
        .await
        .unwrap();
    assert_eq!(
        bob.recv_type("synced").await.unwrap()["until"],
        total,
        "nothing after the cursor"
    );
    bob.send_json(&json!({"type": "sync", "since": 0}))
        .await
        .unwrap();
    for seq in 1..=total {
        assert_eq!(bob.recv_type("message").await.unwrap()["seq"], seq);
    }
    let synced = bob.recv_type("synced").await.unwrap();
    assert_eq!(
        (synced["until"].as_u64(), synced["more"].as_bool()),
        (Some(total as u64), Some(false))
    );
}

/// A client that sends again with the same `id` (it lost the ack, or it
/// reconnected through another replica) gets the first `ack` back and the
/// receiver gets the message once.
async fn a_send_repeated_with_its_id_is_acked_as_the_first_and_delivered_once(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut bob = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    bob.recv_type("unread").await.unwrap();
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    alice
        .send_json(&send("once", "bob", "hello"))
        .await
        .unwrap();
    let first = alice.recv_ack("once").await.unwrap();
    let mut again = WsClient::user(cluster.addr(1), "alice").await.unwrap();
    again
        .send_json(&send("once", "bob", "hello?"))
        .await
        .unwrap();
    let second = again.recv_ack("once").await.unwrap();
    assert_eq!(second["message"], first["message"], "the first ack, whole");
    assert_eq!(bob.recv_type("message").await.unwrap()["body"], "hello");
    bob.recv_type("unread").await.unwrap();
    // The next thing bob gets is the next message, not a copy.
    alice
        .send_json(&send("twice", "bob", "next"))
        .await
        .unwrap();
    assert_eq!(bob.recv_type("message").await.unwrap()["body"], "next");
}

/// A client may send without waiting for each `ack` (the gateway reads the
/// next `send` while the last is being stored): the answers come back in
/// the frames' order, a refused frame's `error` in its place among the
/// `ack`s, every message is stored once in order, and a frame of another
/// kind is handled only after the sends before it are stored.
async fn a_burst_of_sends_is_answered_in_order_and_stored_before_the_next_frame(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut bob = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    bob.recv_type("unread").await.unwrap();
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    alice.recv_type("unread").await.unwrap();
    let mut expected = Vec::new();
    for i in 1..=40 {
        let id = i.to_string();
        if i == 20 {
            // Refused at once (no body), answered in its place.
            alice.send_json(&send(&id, "bob", "")).await.unwrap();
            expected.push(("error".to_owned(), id));
        } else {
            let body = format!("m{i}");
            alice.send_json(&send(&id, "bob", &body)).await.unwrap();
            expected.push(("ack".to_owned(), id));
        }
    }
    alice
        .send_json(&json!({"type": "sync", "id": "s", "since": 38, "limit": 10}))
        .await
        .unwrap();
    expected.push(("synced".to_owned(), "s".to_owned()));

    let mut answers = Vec::new();
    let mut acked_seqs = Vec::new();
    let mut synced = Value::Null;
    while answers.len() < expected.len() {
        let frame = alice.recv_json().await.unwrap();
        let kind = frame["type"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "ack" => acked_seqs.push(frame["message"]["seq"].as_u64().unwrap()),
            "error" => assert_eq!(frame["code"], "invalid_frame", "{frame}"),
            "synced" => synced = frame.clone(),
            // Live copies of alice's own messages, the sync's page, counters.
            _ => continue,
        }
        answers.push((kind, frame["id"].as_str().unwrap_or_default().to_owned()));
    }
    assert_eq!(answers, expected, "answers in the frames' order");
    assert_eq!(
        acked_seqs,
        (1..=39).collect::<Vec<u64>>(),
        "the sender's copies"
    );
    // The sync ran once every send before it was stored.
    assert_eq!(synced["until"], 39);
    assert_eq!(synced["more"], false);

    let mut bodies = Vec::new();
    while bodies.len() < 39 {
        let message = bob.recv_type("message").await.unwrap();
        assert_eq!(message["seq"].as_u64(), Some(bodies.len() as u64 + 1));
        bodies.push(message["body"].as_str().unwrap().to_owned());
    }
    let sent: Vec<String> = (1..=40)
        .filter(|&i| i != 20)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(bodies, sent, "stored once each, in order");
}

suite!(
    a_burst_of_sends_is_answered_in_order_and_stored_before_the_next_frame,
    a_send_repeated_with_its_id_is_acked_as_the_first_and_delivered_once,
    a_message_to_an_offline_user_is_kept_counted_and_delivered_once_on_connect,
    a_client_that_syncs_gets_everything_after_its_cursor_in_order,
    the_senders_other_connections_see_what_it_sent,
    reading_clears_the_counter_on_every_device_and_sends_a_receipt,
    watchers_learn_when_a_user_comes_and_goes,
    typing_reaches_the_peer_without_an_answer,
    a_sync_larger_than_the_outbound_queue_arrives_whole,
);
