//! The gateway's behaviour, run twice: on the in-process broker (one
//! gateway) and on two replicas sharing a real Redis, in every direction.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location
#![allow(clippy::expect_used)] // a failed expect is a failed test, with its message

#[macro_use]
mod support;

use std::time::Duration;

use chat_gateway::GatewaySettings;
use chat_runtime::settings::RoomSettings;
use chat_testkit::ws::{Ended, Message, WsClient};
use chat_testkit::{WAIT, eventually, http_get};
use serde_json::{Value, json};
use support::{Kind, settings};

fn send(id: &str, to: &str, body: &str) -> Value {
    json!({"type": "send", "id": id, "to": to, "body": body})
}

async fn the_lobby_reaches_every_connection_sender_included(kind: Kind) {
    let cluster = kind.start(settings()).await;
    for (a, b) in cluster.directions() {
        let mut sender = WsClient::lobby(cluster.addr(a)).await.unwrap();
        let mut other = WsClient::lobby(cluster.addr(b)).await.unwrap();
        sender.send_text(format!("hello from {a}")).await.unwrap();
        assert_eq!(sender.recv_text().await.unwrap(), format!("hello from {a}"));
        assert_eq!(other.recv_text().await.unwrap(), format!("hello from {a}"));

        sender.send_binary(vec![0, 1, 2, 255]).await.unwrap();
        for client in [&mut sender, &mut other] {
            assert_eq!(
                client.recv().await.unwrap(),
                Message::binary(vec![0, 1, 2, 255])
            );
        }
    }
}

/// A client that sends and hangs up at once (a seed client, a script) has
/// its last frames delivered, on the lobby and on user connections.
async fn frames_sent_just_before_hanging_up_are_not_lost(kind: Kind) {
    let cluster = kind.start(settings()).await;
    for (a, b) in cluster.directions() {
        let mut listener = WsClient::lobby(cluster.addr(b)).await.unwrap();
        let mut bob = WsClient::user(cluster.addr(b), "bob").await.unwrap();
        bob.recv_type("unread").await.unwrap();
        let mut lobby = WsClient::lobby(cluster.addr(a)).await.unwrap();
        let mut alice = WsClient::user(cluster.addr(a), "alice").await.unwrap();
        lobby.send_text(format!("last words {a}")).await.unwrap();
        alice
            .send_json(&send(&format!("c{a}{b}"), "bob", &format!("bye {a}")))
            .await
            .unwrap();
        // Close frame and TCP FIN straight after, without waiting for anything.
        let mut lobby = lobby.into_silent();
        lobby.close(None).await.unwrap();
        drop(lobby);
        let mut alice = alice.into_silent();
        alice.close(None).await.unwrap();
        drop(alice);
        assert_eq!(
            listener.recv_text().await.unwrap(),
            format!("last words {a}")
        );
        let message = bob.recv_type("message").await.unwrap();
        assert_eq!(message["body"], format!("bye {a}"));
    }
}

async fn a_direct_message_reaches_every_connection_of_the_receiver(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut bob_0 = WsClient::user(cluster.addr(0), "bob").await.unwrap();
    let mut bob_1 = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    for from in 0..cluster.nodes.len() {
        let mut alice = WsClient::user(cluster.addr(from), "alice").await.unwrap();
        alice
            .send_json(&send(
                &format!("c{from}"),
                "bob",
                &format!("hi from node {from}"),
            ))
            .await
            .unwrap();
        let ack = alice.recv_ack(&format!("c{from}")).await.unwrap();
        let message = &ack["message"];
        assert_eq!(message["from"], "alice");
        assert_eq!(message["to"], "bob");
        assert_eq!(message["body"], format!("hi from node {from}"));
        assert_eq!(message["id"].as_str().unwrap().len(), 26, "a ULID");
        for bob in [&mut bob_0, &mut bob_1] {
            let got = bob.recv_type("message").await.unwrap();
            assert_eq!(got["id"], message["id"], "the same message, same server id");
            assert_eq!(got["body"], message["body"]);
            assert_eq!(got["ts"], message["ts"]);
        }
    }
}

async fn seed_frames_reach_the_receiver_unchanged(kind: Kind) {
    let cluster = kind.start(settings()).await;
    for (a, b) in cluster.directions() {
        let mut alice = WsClient::user(cluster.addr(a), "alice").await.unwrap();
        let mut bob = WsClient::user(cluster.addr(b), "bob").await.unwrap();
        let frame = r#"{"sender": "alice", "receiver": "bob", "message": {"url": "/media/1", "kind": "image"}}"#;
        alice.send_text(frame).await.unwrap();
        assert_eq!(bob.recv_seed_text().await.unwrap(), frame, "byte for byte");
        alice
            .send_text(r#"{"sender":"alice","receiver":"bob","message":"plain"}"#)
            .await
            .unwrap();
        assert_eq!(bob.recv_seed().await.unwrap()["message"], "plain");
    }
}

async fn a_spoofed_sender_is_refused_and_not_delivered(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut mallory = WsClient::user(cluster.addr(0), "mallory").await.unwrap();
    let mut bob = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    mallory
        .send_text(r#"{"sender":"alice","receiver":"bob","message":"I am alice"}"#)
        .await
        .unwrap();
    let error = mallory.recv_type("error").await.unwrap();
    assert_eq!(error["code"], "sender_mismatch");
    mallory
        .send_text(r#"{"sender":"mallory","receiver":"bob","message":"honest"}"#)
        .await
        .unwrap();
    // Same sender, same channel: had the spoofed frame been delivered, it would come first.
    assert_eq!(bob.recv_seed().await.unwrap()["message"], "honest");
}

async fn an_unknown_or_offline_receiver_is_harmless(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    alice
        .send_text(r#"{"sender":"alice","receiver":"nobody","message":"hello?"}"#)
        .await
        .unwrap();
    alice
        .send_json(&send("c1", "nobody", "anyone?"))
        .await
        .unwrap();
    assert_eq!(alice.recv_ack("c1").await.unwrap()["id"], "c1");
    let mut bob = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    alice
        .send_json(&send("c2", "bob", "still here"))
        .await
        .unwrap();
    assert_eq!(alice.recv_ack("c2").await.unwrap()["id"], "c2");
    assert_eq!(
        bob.recv_type("message").await.unwrap()["body"],
        "still here"
    );
}

async fn bad_frames_are_answered_and_the_connection_lives_on(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    let cases = [
        ("{oops", "bad_json", Value::Null),
        (r#"{"type":"dance","id":"d1"}"#, "unknown_type", json!("d1")),
        (
            r#"{"type":"send","id":"s1","to":"bob"}"#,
            "invalid_frame",
            json!("s1"),
        ),
        (
            r#"{"type":"send","id":"s2","to":"bob","room":"r","body":"x"}"#,
            "invalid_frame",
            json!("s2"),
        ),
        (
            r#"{"type":"send","id":"s3","to":"no spaces","body":"x"}"#,
            "invalid_name",
            json!("s3"),
        ),
        (
            r#"{"type":"send","id":"s4","room":"nowhere","body":"x"}"#,
            "not_found",
            json!("s4"),
        ),
        (r#"{"hello":"world"}"#, "invalid_frame", Value::Null),
    ];
    for (frame, code, id) in cases {
        alice.send_text(frame).await.unwrap();
        let error = alice.recv_type("error").await.unwrap();
        assert_eq!(error["code"], code, "{frame}");
        assert_eq!(
            error.get("id").cloned().unwrap_or(Value::Null),
            id,
            "{frame}"
        );
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    alice.send_binary(vec![1, 2, 3]).await.unwrap();
    assert_eq!(
        alice.recv_type("error").await.unwrap()["code"],
        "unsupported"
    );
    alice
        .send_json(&send("ok", "alice", "to myself"))
        .await
        .unwrap();
    let first = alice.recv_json().await.unwrap();
    let second = alice.recv_json().await.unwrap();
    let mut types = [
        first["type"].as_str().unwrap(),
        second["type"].as_str().unwrap(),
    ];
    types.sort_unstable();
    assert_eq!(
        types,
        ["ack", "message"],
        "still served after seven bad frames"
    );
}

async fn an_oversized_frame_closes_with_1009(kind: Kind) {
    let cluster = kind.start(settings()).await;
    for addr in [cluster.addr(0), cluster.addr(1)] {
        let mut lobby = WsClient::lobby(addr).await.unwrap();
        lobby.send_text("x".repeat(64 * 1024 + 1)).await.unwrap();
        assert_eq!(lobby.ended().await.unwrap(), Ended::Closed(1009));
        let mut alice = WsClient::user(addr, "alice").await.unwrap();
        let body = "y".repeat(64 * 1024);
        alice.send_json(&send("big", "bob", &body)).await.unwrap();
        assert_eq!(alice.ended().await.unwrap(), Ended::Closed(1009));
    }
}

async fn a_flood_is_rate_limited_then_closed_with_1008(kind: Kind) {
    let mut s = settings();
    s.rate_per_sec = 5.try_into().unwrap();
    s.rate_burst = 5.try_into().unwrap();
    s.rate_strikes = 10;
    let cluster = kind.start(s).await;
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    for i in 0..40 {
        // The server may close mid-flood; later sends may then fail.
        if alice
            .send_json(&send(&format!("f{i}"), "bob", "flood"))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut rate_limited = 0;
    let ended = loop {
        match alice.recv_json_or_end().await.unwrap() {
            Ok(frame) if frame["code"] == "rate_limited" => rate_limited += 1,
            Ok(frame) => assert!(
                ["ack", "message", "unread"].contains(&frame["type"].as_str().unwrap()),
                "{frame}"
            ),
            Err(ended) => break ended,
        }
    };
    assert!(
        rate_limited >= 1,
        "the flood was answered with rate_limited"
    );
    assert_eq!(ended, Ended::Closed(1008));

    // The lobby speaks raw text: a flooder there is closed the same way, but
    // never sent a JSON error it did not ask for.
    let mut lobby = WsClient::lobby(cluster.addr(0)).await.unwrap();
    for _ in 0..40 {
        if lobby.send_text("flood").await.is_err() {
            break;
        }
    }
    let ended = loop {
        match lobby.recv_text_or_end().await.unwrap() {
            Ok(text) => assert_eq!(text, "flood", "only our own echoes, never an error frame"),
            Err(ended) => break ended,
        }
    };
    assert_eq!(ended, Ended::Closed(1008));
}

async fn a_slow_reader_is_disconnected_while_others_keep_receiving(kind: Kind) {
    const MESSAGES: usize = 400;
    let mut s = settings();
    s.outbound_queue = 16;
    s.rate_per_sec = 10_000.try_into().unwrap();
    s.rate_burst = 10_000.try_into().unwrap();
    let cluster = kind.start(s).await;
    let slow = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    let mut fast = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    let reader = tokio::spawn(async move {
        let mut bodies = Vec::new();
        while bodies.len() < MESSAGES {
            let frame = fast
                .recv_type("message")
                .await
                .expect("the fast reader keeps receiving");
            bodies.push(frame["body"].as_str().unwrap()[..8].to_owned());
        }
        bodies
    });
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    let padding = "p".repeat(30 * 1024);
    for i in 0..MESSAGES {
        alice
            .send_json(&send(&format!("m{i}"), "bob", &format!("{i:08}{padding}")))
            .await
            .unwrap();
        alice.recv_ack(&format!("m{i}")).await.unwrap();
    }
    let bodies = tokio::time::timeout(WAIT, reader)
        .await
        .expect("in time")
        .unwrap();
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("{i:08}")).collect();
    assert_eq!(
        bodies, expected,
        "every message, in order, to the reader that keeps up"
    );

    let mut slow = WsClient::from_stream(slow.into_silent());
    let ended = slow.ended().await.unwrap();
    assert!(
        matches!(ended, Ended::Closed(1013) | Ended::Dropped),
        "slow reader: {ended:?}"
    );
    let (_, metrics) = http_get(cluster.addr(1), "/metrics").await.unwrap();
    assert!(
        metrics.contains("chat_gateway_slow_consumer_disconnects_total 1"),
        "{metrics}"
    );
}

async fn room_messages_reach_members_on_every_replica(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    let mut bob = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    let mut carol = WsClient::user(cluster.addr(1), "carol").await.unwrap();
    for (client, id, user) in [(&mut alice, "j-a", "alice"), (&mut bob, "j-b", "bob")] {
        client
            .send_json(&json!({"type": "join", "id": id, "room": "general"}))
            .await
            .unwrap();
        // The answer, and the room's entry saying who joined (either order).
        let frames = client.recv_frames(2).await.unwrap();
        assert_eq!(
            (frames[0]["type"].as_str(), frames[0]["id"].as_str()),
            (Some("joined"), Some(id))
        );
        assert_eq!(
            (frames[1]["type"].as_str(), frames[1]["user"].as_str()),
            (Some("member_joined"), Some(user))
        );
    }
    assert_eq!(
        alice.recv_type("member_joined").await.unwrap()["user"],
        "bob"
    );
    alice
        .send_json(&json!({"type":"send","id":"r1","room":"general","body":"hi room"}))
        .await
        .unwrap();
    let alice_frames = alice.recv_frames(2).await.unwrap();
    assert_eq!(alice_frames[0]["type"], "ack");
    assert_eq!(
        alice_frames[1]["type"], "message",
        "the sender's own connection gets it too"
    );
    let got = bob.recv_type("message").await.unwrap();
    assert_eq!(
        (got["room"].as_str(), got["from"].as_str()),
        (Some("general"), Some("alice"))
    );

    bob.send_json(&json!({"type":"send","id":"r2","room":"general","body":"hi alice"}))
        .await
        .unwrap();
    assert_eq!(
        alice.recv_type("message").await.unwrap()["body"],
        "hi alice"
    );

    // bob's ack and bob's own copy of r2 may come in either order.
    let bob_frames = bob.recv_frames(2).await.unwrap();
    assert_eq!(
        (bob_frames[0]["type"].as_str(), bob_frames[0]["id"].as_str()),
        (Some("ack"), Some("r2"))
    );
    assert_eq!(bob_frames[1]["body"], "hi alice");
    bob.send_json(&json!({"type": "leave", "room": "general"}))
        .await
        .unwrap();
    // The answer (the room's entry may come before it, never after).
    bob.recv_until("left").await.unwrap();
    assert_eq!(alice.recv_type("member_left").await.unwrap()["user"], "bob");
    alice
        .send_json(&json!({"type":"send","id":"r3","room":"general","body":"bob left"}))
        .await
        .unwrap();
    alice.send_json(&send("d1", "bob", "direct")).await.unwrap();
    alice
        .send_json(&send("d2", "carol", "direct"))
        .await
        .unwrap();
    // Order per publisher is kept, so the first thing bob and carol see
    // after leaving / never joining is the direct message.
    let to_bob = bob.recv_type("message").await.unwrap();
    assert_eq!(
        (to_bob["to"].as_str(), to_bob["body"].as_str()),
        (Some("bob"), Some("direct"))
    );
    let to_carol = carol.recv_type("message").await.unwrap();
    assert_eq!(
        (to_carol["to"].as_str(), to_carol["body"].as_str()),
        (Some("carol"), Some("direct"))
    );
}

async fn too_many_rooms_are_refused(kind: Kind) {
    support::set_room_settings(RoomSettings {
        rooms_per_user: 3,
        ..RoomSettings::default()
    });
    let cluster = kind.start(settings()).await;
    let mut alice = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    for i in 0..3 {
        alice
            .send_json(&json!({"type": "join", "room": format!("r{i}")}))
            .await
            .unwrap();
        assert_eq!(
            alice.recv_kinds(2).await.unwrap(),
            ["joined", "member_joined"]
        );
    }
    alice
        .send_json(&json!({"type": "join", "id": "j4", "room": "r4"}))
        .await
        .unwrap();
    let error = alice.recv_type("error").await.unwrap();
    assert_eq!(
        (error["code"].as_str(), error["id"].as_str()),
        (Some("too_many_rooms"), Some("j4"))
    );

    // 10 000 joins in a burst: bounded by the room limit, then by the rate
    // limit, which ends the connection with 1008 — memory stays bounded.
    let mut mallory = WsClient::user(cluster.addr(0), "mallory").await.unwrap();
    for i in 0..10_000 {
        let join = json!({"type": "join", "room": format!("spam{i}")});
        if mallory.send_json(&join).await.is_err() {
            break; // closed under us: that is the bound
        }
    }
    loop {
        match mallory.recv_json_or_end().await.unwrap() {
            Ok(_) => continue,
            Err(ended) => {
                assert_eq!(ended, Ended::Closed(1008), "the flood ends the connection");
                break;
            }
        }
    }
}

async fn a_dead_peer_is_cleaned_up_by_the_heartbeat(kind: Kind) {
    let mut s = settings();
    s.ping_interval = Duration::from_millis(100);
    s.idle_timeout = Duration::from_millis(300);
    let cluster = kind.start(s).await;
    let silent = WsClient::user(cluster.addr(1), "bob")
        .await
        .unwrap()
        .into_silent();
    let node = &cluster.nodes[1 % cluster.nodes.len()];
    assert_eq!(node.gateway.open_connections(), 1);
    eventually("the silent connection is closed", || {
        node.gateway.open_connections() == 0
    })
    .await
    .unwrap();
    eventually("every registry is empty", || cluster.registries_empty())
        .await
        .unwrap();
    let mut silent = WsClient::from_stream(silent);
    assert!(matches!(
        silent.ended().await.unwrap(),
        Ended::Closed(4408) | Ended::Dropped
    ));
    let (_, metrics) = http_get(cluster.addr(1), "/metrics").await.unwrap();
    assert!(
        metrics.contains("chat_gateway_idle_disconnects_total 1"),
        "{metrics}"
    );
}

async fn every_registry_is_cleaned_however_connections_end(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut polite = WsClient::user(cluster.addr(0), "alice").await.unwrap();
    polite
        .send_json(&json!({"type": "join", "room": "general"}))
        .await
        .unwrap();
    polite.recv_until("joined").await.unwrap();
    let mut rude = WsClient::user(cluster.addr(1), "bob").await.unwrap();
    rude.send_json(&json!({"type": "join", "room": "general"}))
        .await
        .unwrap();
    rude.recv_until("joined").await.unwrap();
    let lobby = WsClient::lobby(cluster.addr(1)).await.unwrap();
    assert!(!cluster.registries_empty());

    polite.close().await.unwrap();
    drop(rude); // TCP gone, no close frame
    drop(lobby);
    eventually("every registry is empty", || cluster.registries_empty())
        .await
        .unwrap();
}

/// At its connection cap a gateway refuses new upgrades with 503 (before the
/// upgrade, so no descriptor is held for them) and keeps serving the
/// connections it has; a closed connection frees its place.
async fn at_the_connection_cap_upgrades_get_503_and_the_others_carry_on(kind: Kind) {
    let cluster = kind
        .start(GatewaySettings {
            max_connections: 3,
            ..settings()
        })
        .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(WsClient::lobby(cluster.addr(0)).await.unwrap());
    }
    for path in ["/ws/", "/ws/alice/"] {
        assert_eq!(
            WsClient::refused_status(cluster.addr(0), path)
                .await
                .unwrap(),
            503,
            "{path}"
        );
    }
    let (status, body) = http_get(cluster.addr(0), "/ws/").await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "over_capacity"
    );
    held[0].send_text("still here").await.unwrap();
    for client in &mut held {
        assert_eq!(client.recv_text().await.unwrap(), "still here");
    }
    held.pop().unwrap().close().await.unwrap();
    // The place frees once the closed session has ended: try until then.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match WsClient::lobby(cluster.addr(0)).await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::task::yield_now().await,
            Err(e) => panic!("the freed place was not given again: {e}"),
        }
    }
}

/// Upgrades are counted per client address: past the allowance a client
/// gets 429 with Retry-After (before any token is looked at), others are
/// not affected; behind a trusted proxy the address is the forwarded one.
async fn too_many_connection_attempts_from_one_address_get_429(kind: Kind) {
    let behind_a_proxy = chat_gateway::Access {
        proxies: chat_runtime::per_ip::TrustedProxies::parse("127.0.0.1").unwrap(),
        ..chat_gateway::Access::open()
    };
    let cluster = kind
        .start_with(
            GatewaySettings {
                connects_per_ip_per_min: 3,
                ..settings()
            },
            behind_a_proxy,
        )
        .await;
    let addr = cluster.addr(0);
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            WsClient::connect_with(addr, "/ws/", &from("198.51.100.1"))
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        WsClient::refused_status_with(addr, "/ws/alice/", &from("198.51.100.1"))
            .await
            .unwrap(),
        429
    );
    // Another client (as the proxy names it) has its own allowance, and a
    // client cannot borrow one by naming itself: only the last hop counts.
    WsClient::connect_with(addr, "/ws/", &from("198.51.100.2"))
        .await
        .unwrap();
    assert_eq!(
        WsClient::refused_status_with(addr, "/ws/", &from("203.0.113.7, 198.51.100.1"))
            .await
            .unwrap(),
        429
    );
    let (status, body) = http_get(addr, "/ws/").await.unwrap();
    assert_eq!(
        status, 400,
        "a plain GET from the proxy itself is counted apart: {body}"
    );
    // The connections already open carry on.
    held[0].send_text("unaffected").await.unwrap();
    assert_eq!(held[2].recv_text().await.unwrap(), "unaffected");
}

async fn names_outside_the_rules_are_refused_before_the_upgrade(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let long = format!("/ws/{}/", "a".repeat(256));
    for path in [
        "/ws/bad%20name/",
        "/ws/%E2%80%8Bzw/",
        // Latin p, y, l with Cyrillic р and а: a look-alike of "paypal".
        "/ws/%D1%80%D0%B0ypal/",
        "/ws/a%07b/",
        long.as_str(),
    ] {
        assert_eq!(
            WsClient::refused_status(cluster.addr(0), path)
                .await
                .unwrap(),
            400,
            "{path}"
        );
    }
    let (status, body) = http_get(cluster.addr(0), "/ws/bad%20name/").await.unwrap();
    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "invalid_name");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("U+0020") && message.contains("position 3"),
        "{message}"
    );
}

/// Open mode: a nickname in any script is a user; `Bob`, `bob` and `ｂｏｂ`
/// are one user (PRECIS, RFC 8265), reached however a sender types the
/// name, and messages carry the sender's name as typed.
async fn a_name_in_any_script_or_case_reaches_one_user(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let mut tabs = Vec::new();
    for path in ["/ws/Bob/", "/ws/bob/", "/ws/%EF%BD%82%EF%BD%8F%EF%BD%82/"] {
        let mut tab = WsClient::connect(cluster.addr(tabs.len()), path)
            .await
            .unwrap();
        tab.recv_type("unread").await.unwrap();
        tabs.push(tab);
    }
    let mut zhang = WsClient::connect(cluster.addr(1), "/ws/%E5%BC%A0%E4%B8%89/")
        .await
        .unwrap();
    zhang.send_json(&send("c1", "BOB", "你好")).await.unwrap();
    let ack = zhang.recv_ack("c1").await.unwrap();
    assert_eq!(
        (
            ack["message"]["from"].as_str(),
            ack["message"]["to"].as_str()
        ),
        (Some("张三"), Some("bob"))
    );
    for tab in &mut tabs {
        let message = tab.recv_type("message").await.unwrap();
        assert_eq!(message["body"], "你好");
        assert_eq!(message["from_name"], "张三", "the sender's name as typed");
    }
    // The seed's frame names users as typed too.
    let mut alisa = WsClient::connect(cluster.addr(0), "/ws/%D0%90%D0%BB%D0%B8%D1%81%D0%B0/")
        .await
        .unwrap();
    alisa
        .send_text(r#"{"sender": "алиса", "receiver": "Bob", "message": "привет"}"#)
        .await
        .unwrap();
    assert_eq!(
        tabs[0].recv_seed().await.unwrap()["message"],
        "привет",
        "a seed frame from алиса (typed lower-case) to Bob"
    );
}

async fn health_readiness_and_metrics_are_served(kind: Kind) {
    let cluster = kind.start(settings()).await;
    let _bob = WsClient::user(cluster.addr(0), "bob").await.unwrap();
    let (status, _) = http_get(cluster.addr(0), "/healthz").await.unwrap();
    assert_eq!(status, 200);
    // Ready once the store has looked for older data to convert (at start).
    chat_testkit::until_ready(cluster.addr(0)).await.unwrap();
    let (status, body) = http_get(cluster.addr(0), "/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""broker":"ok""#), "{body}");
    let (status, metrics) = http_get(cluster.addr(0), "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"chat_gateway_connections{endpoint="user"} 1"#),
        "{metrics}"
    );
}

async fn shutdown_closes_every_connection_with_1001(kind: Kind) {
    let mut cluster = kind.start(settings()).await;
    let mut lobby = WsClient::lobby(cluster.addr(0)).await.unwrap();
    let mut bob = WsClient::user(cluster.addr(0), "bob").await.unwrap();
    cluster.nodes[0].shutdown().await.expect("a clean stop");
    assert_eq!(lobby.ended().await.unwrap(), Ended::Closed(1001));
    assert_eq!(bob.ended().await.unwrap(), Ended::Closed(1001));
}

/// Redis only: losing Redis degrades the gateway, it does not kill it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_gateway_stays_up_refuses_honestly_and_recovers() {
    let mut redis = chat_testkit::redis::TestRedis::private().unwrap();
    let options = chat_broker::redis::RedisOptions {
        url: redis.url().into(),
        prefix: redis.prefix().into(),
        errors: None,
    };
    let node = support::Node::start(settings(), chat_gateway::Engine::Redis(options)).await;
    let mut alice = WsClient::user(&node.addr, "alice").await.unwrap();
    let mut lobby = WsClient::lobby(&node.addr).await.unwrap();
    alice.recv_type("unread").await.unwrap(); // connected and caught up

    redis.stop().unwrap();
    alice
        .send_json(&send("lost", "bob", "while Redis is down"))
        .await
        .unwrap();
    let error = alice.recv_type("error").await.unwrap();
    assert_eq!(
        (error["code"].as_str(), error["id"].as_str()),
        (Some("unavailable"), Some("lost"))
    );
    let (status, body) = http_get(&node.addr, "/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        WsClient::refused_status(&node.addr, "/ws/bob/")
            .await
            .unwrap(),
        503
    );
    assert_eq!(
        http_get(&node.addr, "/healthz").await.unwrap().0,
        200,
        "alive all along"
    );

    redis.resume().unwrap();
    // Ready again without a restart.
    chat_testkit::until_ready(&node.addr).await.unwrap();
    let mut bob = WsClient::user(&node.addr, "bob").await.unwrap();
    alice
        .send_json(&send("back", "bob", "Redis is back"))
        .await
        .unwrap();
    assert_eq!(alice.recv_ack("back").await.unwrap()["id"], "back");
    assert_eq!(
        bob.recv_type("message").await.unwrap()["body"],
        "Redis is back"
    );
    lobby.send_text("lobby too").await.unwrap();
    assert_eq!(
        lobby.recv_text().await.unwrap(),
        "lobby too",
        "old subscriptions were restored"
    );
}

suite!(
    the_lobby_reaches_every_connection_sender_included,
    frames_sent_just_before_hanging_up_are_not_lost,
    a_direct_message_reaches_every_connection_of_the_receiver,
    seed_frames_reach_the_receiver_unchanged,
    a_spoofed_sender_is_refused_and_not_delivered,
    an_unknown_or_offline_receiver_is_harmless,
    bad_frames_are_answered_and_the_connection_lives_on,
    an_oversized_frame_closes_with_1009,
    a_flood_is_rate_limited_then_closed_with_1008,
    a_slow_reader_is_disconnected_while_others_keep_receiving,
    room_messages_reach_members_on_every_replica,
    too_many_rooms_are_refused,
    a_dead_peer_is_cleaned_up_by_the_heartbeat,
    every_registry_is_cleaned_however_connections_end,
    names_outside_the_rules_are_refused_before_the_upgrade,
    a_name_in_any_script_or_case_reaches_one_user,
    at_the_connection_cap_upgrades_get_503_and_the_others_carry_on,
    too_many_connection_attempts_from_one_address_get_429,
    health_readiness_and_metrics_are_served,
    shutdown_closes_every_connection_with_1001,
);
