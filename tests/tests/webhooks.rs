//! Webhooks from the real binaries to a receiver on loopback: a message
//! kept for a user with no connection is posted once, signed as Standard
//! Webhooks says; a receiver that fails gets it again until it takes it,
//! then never again; a receiver that is down gets it once back, from one
//! of two gateways.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use chat_testkit::eventually;
use chat_testkit::process::Service;
use chat_testkit::redis::TestRedis;
use chat_testkit::webhooks::{Delivery, Receiver};
use chat_testkit::ws::WsClient;
use serde_json::{Value, json};

/// `whsec_` and the base64 of 32 bytes.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/6eR8YHiFYY=";

/// Webhooks to `receiver`, for `events`, retried quickly.
fn webhook_env(receiver: &Receiver, events: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CHAT_WEBHOOK_URL", receiver.url()),
        ("CHAT_WEBHOOK_SECRET", SECRET.to_owned()),
        ("CHAT_WEBHOOK_RETRY_MIN", "50ms".to_owned()),
        ("CHAT_WEBHOOK_EVENTS", events.to_owned()),
    ]
}

/// The delivery's event, once its signature checks out.
fn verified(delivery: &Delivery) -> Value {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &delivery.headers {
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    standardwebhooks::Webhook::new(SECRET)
        .unwrap()
        .verify(delivery.body.as_bytes(), &headers)
        .unwrap_or_else(|e| panic!("a bad signature: {e}: {delivery:?}"));
    let event: Value = serde_json::from_str(&delivery.body).unwrap();
    chat_testkit::schema::Schemas::get()
        .check_webhook(&event)
        .unwrap();
    event
}

async fn send(from: &mut WsClient, id: &str, to: &str, body: &str) {
    from.send_json(&json!({"type": "send", "id": id, "to": to, "body": body}))
        .await
        .unwrap();
    from.recv_ack(id).await.unwrap();
}

/// `binary` started with `env` (owned values, as the tests build them).
async fn start(binary: &str, env: &[(&str, String)]) -> Service {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Service::start(binary, &[], &env).await.unwrap()
}

async fn chatd(receiver: &Receiver, data: &std::path::Path) -> Service {
    let mut env = webhook_env(receiver, "message.offline");
    env.push(("CHAT_DATA_DIR", data.to_str().unwrap().to_owned()));
    start("chatd", &env).await
}

/// What a test runs, for `engine`: `chatd` alone (`embedded`), or a
/// gateway and the presence binary sharing `redis` (open identities), each
/// with `env` and a data folder of its own.
struct Deployment {
    ws: Service,
    api: Option<Service>,
    _data: tempfile::TempDir,
}

impl Deployment {
    async fn start(engine: &str, redis: &TestRedis, mut env: Vec<(&'static str, String)>) -> Self {
        let data = tempfile::tempdir().unwrap();
        env.push(("CHAT_DATA_DIR", data.path().to_str().unwrap().to_owned()));
        if engine == "embedded" {
            return Self {
                ws: start("chatd", &env).await,
                api: None,
                _data: data,
            };
        }
        env.extend([
            ("REDIS_URL", redis.url().to_owned()),
            ("CHAT_REDIS_PREFIX", redis.prefix().to_owned()),
            ("CHAT_AUTH", "open".to_owned()),
        ]);
        Self {
            ws: start("gateway", &env).await,
            api: Some(start("presence", &env).await),
            _data: data,
        }
    }

    /// Where WebSockets connect.
    fn ws(&self) -> &str {
        self.ws.addr()
    }

    /// Where the HTTP APIs answer.
    fn api(&self) -> &str {
        self.api.as_ref().unwrap_or(&self.ws).addr()
    }
}

async fn deliveries(receiver: &Receiver, n: usize) -> Vec<Delivery> {
    eventually(&format!("{n} deliveries"), || {
        receiver.deliveries().len() >= n
    })
    .await
    .unwrap();
    receiver.deliveries()
}

#[tokio::test]
async fn a_message_for_a_user_with_no_connection_is_posted_once_and_signed() {
    let receiver = Receiver::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let chatd = chatd(&receiver, data.path()).await;
    let mut alice = WsClient::user(chatd.addr(), "alice").await.unwrap();
    send(&mut alice, "1", "bob", "are you there?").await;

    let event = verified(&deliveries(&receiver, 1).await[0]);
    assert_eq!(event["type"], "message.offline");
    assert_eq!(
        (
            event["data"]["user"].as_str(),
            event["data"]["unread"].as_u64()
        ),
        (Some("bob"), Some(1))
    );
    assert_eq!(event["data"]["message"]["body"], "are you there?");
    assert!(
        event["timestamp"].as_str().unwrap().ends_with('Z'),
        "{event}"
    );

    // Bob online: nothing to tell; carol offline: her event is the next one.
    let mut bob = WsClient::user(chatd.addr(), "bob").await.unwrap();
    bob.recv_type("message").await.unwrap();
    send(&mut alice, "2", "bob", "hello bob").await;
    bob.recv_type("message").await.unwrap();
    send(&mut alice, "3", "carol", "and you?").await;
    let all = deliveries(&receiver, 2).await;
    assert_eq!(
        verified(&all[1])["data"]["user"],
        "carol",
        "no event for a message delivered live"
    );
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_again_until_it_takes_it_then_never_again() {
    let receiver = Receiver::start().await.unwrap();
    receiver.plan(&[500, 500, 503]);
    let data = tempfile::tempdir().unwrap();
    let chatd = chatd(&receiver, data.path()).await;
    let mut alice = WsClient::user(chatd.addr(), "alice").await.unwrap();
    send(&mut alice, "1", "bob", "ping").await;

    let tries = deliveries(&receiver, 4).await;
    let id = tries[0].headers["webhook-id"].clone();
    assert!(
        tries.iter().all(|d| d.headers["webhook-id"] == id),
        "one event, the same id each time"
    );
    assert_eq!(
        tries.iter().map(|d| d.status).collect::<Vec<_>>(),
        [500, 500, 503, 204]
    );
    for attempt in &tries {
        verified(attempt);
    }
    // Taken: the next request is the next event, not the first again.
    send(&mut alice, "2", "carol", "pong").await;
    let all = deliveries(&receiver, 5).await;
    assert_ne!(all[4].headers["webhook-id"], id);
    assert_eq!(verified(&all[4])["data"]["user"], "carol");
    let metrics = reqwest::get(format!("http://{}/metrics", chatd.addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"chat_webhook_events_total{result="failed"} 3"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_the_event_once_from_one_of_two_gateways() {
    let redis = TestRedis::start().unwrap();
    let receiver = Receiver::start().await.unwrap();
    receiver.set_down(true);
    let mut env = webhook_env(&receiver, "message.offline");
    env.extend([
        ("REDIS_URL", redis.url().to_owned()),
        ("CHAT_REDIS_PREFIX", redis.prefix().to_owned()),
        ("CHAT_AUTH", "open".to_owned()),
    ]);
    let one = start("gateway", &env).await;
    let _two = start("gateway", &env).await;
    let mut alice = WsClient::user(one.addr(), "alice").await.unwrap();
    send(&mut alice, "1", "bob", "while you were out").await;

    // Tried (and refused) a few times, backing off; then the receiver is back.
    eventually("a few attempts on a receiver that is down", || {
        receiver.dropped() >= 3
    })
    .await
    .unwrap();
    receiver.set_down(false);
    let first = deliveries(&receiver, 1).await;
    let id = first[0].headers["webhook-id"].clone();
    assert_eq!(
        verified(&first[0])["data"]["message"]["body"],
        "while you were out"
    );
    // Two later events, the second sent once the first has arrived: had
    // both gateways sent the first event, the receiver would hold it twice
    // (and more than three deliveries).
    send(&mut alice, "2", "carol", "later").await;
    deliveries(&receiver, 2).await;
    send(&mut alice, "3", "dave", "later still").await;
    let all = deliveries(&receiver, 3).await;
    assert_eq!(
        all.iter().filter(|d| d.headers["webhook-id"] == id).count(),
        1,
        "{all:?}"
    );
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(verified(all.last().unwrap())["data"]["user"], "dave");
}

/// Presence events, on each engine: a user's first connection is
/// `user.online`, their last one closing `user.offline` with when; events
/// not asked for (`message.offline` here) are never posted.
#[tokio::test]
async fn users_coming_and_going_are_posted_and_nothing_else_when_only_they_are_asked_for() {
    let redis = TestRedis::start().unwrap();
    for engine in ["embedded", "redis"] {
        let receiver = Receiver::start().await.unwrap();
        let server = Deployment::start(
            engine,
            &redis,
            webhook_env(&receiver, "user.online,user.offline"),
        )
        .await;

        let mut bob = WsClient::user(server.ws(), "bob").await.unwrap();
        bob.recv_type("unread").await.unwrap();
        let online = verified(&deliveries(&receiver, 1).await[0]);
        assert_eq!(
            (online["type"].as_str(), online["data"]["user"].as_str()),
            (Some("user.online"), Some("bob")),
            "{engine}"
        );
        // A message for someone offline: not asked for, not posted.
        send(&mut bob, "1", "carol", "hi").await;
        bob.close().await.unwrap();
        let offline = verified(&deliveries(&receiver, 2).await[1]);
        assert_eq!(offline["type"], "user.offline", "{engine}: {offline}");
        assert!(offline["data"]["last_seen"].as_u64().unwrap() > 0);
        let _dave = WsClient::user(server.ws(), "dave").await.unwrap();
        let next = verified(&deliveries(&receiver, 3).await[2]);
        assert_eq!(
            (next["type"].as_str(), next["data"]["user"].as_str()),
            (Some("user.online"), Some("dave")),
            "{engine}: no message.offline between"
        );
    }
}

/// Room membership events, on each engine: a join (creating the room), an
/// addition by a member (through the rooms API: the presence binary on
/// Redis), and a leave.
#[tokio::test]
async fn room_memberships_are_posted_with_who_changed_them() {
    let redis = TestRedis::start().unwrap();
    for engine in ["embedded", "redis"] {
        let receiver = Receiver::start().await.unwrap();
        let server = Deployment::start(
            engine,
            &redis,
            webhook_env(&receiver, "room.member_joined,room.member_left"),
        )
        .await;
        let api_addr = server.api().to_owned();

        let mut alice = WsClient::user(server.ws(), "alice").await.unwrap();
        alice
            .send_json(&json!({"type": "join", "id": "j", "room": "ops"}))
            .await
            .unwrap();
        alice.recv_type("joined").await.unwrap();
        let added = reqwest::Client::new()
            .post(format!(
                "http://{api_addr}/api/v1/rooms/ops/members?user=alice"
            ))
            .json(&json!({"user": "bob"}))
            .send()
            .await
            .unwrap();
        assert_eq!(added.status().as_u16(), 200, "{engine}");
        let mut bob = WsClient::user(server.ws(), "bob").await.unwrap();
        bob.send_json(&json!({"type": "leave", "id": "l", "room": "ops"}))
            .await
            .unwrap();
        bob.recv_until("left").await.unwrap();

        // Posted in batches, in parallel: their order is the entries'.
        let mut events: Vec<Value> = deliveries(&receiver, 3)
            .await
            .iter()
            .map(verified)
            .collect();
        events.sort_by_key(|e| e["data"]["seq"].as_u64());
        let seen: Vec<(String, String, Option<String>)> = events
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_owned(),
                    e["data"]["user"].as_str().unwrap().to_owned(),
                    e["data"]["by"].as_str().map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("room.member_joined".into(), "alice".into(), None),
                (
                    "room.member_joined".into(),
                    "bob".into(),
                    Some("alice".into())
                ),
                ("room.member_left".into(), "bob".into(), None),
            ],
            "{engine}"
        );
        assert!(events.iter().all(|e| e["data"]["room"] == "ops"));
        let seqs: Vec<u64> = events
            .iter()
            .map(|e| e["data"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            [1, 2, 3],
            "{engine}: the room entries that record them"
        );
    }
}

/// A room message: one `message.offline` for each member with no
/// connection (a name in any script), none for the sender or a member
/// online; each under an id of its own, on both engines.
#[tokio::test]
async fn a_room_message_is_posted_for_each_member_with_no_connection() {
    let redis = TestRedis::start().unwrap();
    for engine in ["embedded", "redis"] {
        let receiver = Receiver::start().await.unwrap();
        let server =
            Deployment::start(engine, &redis, webhook_env(&receiver, "message.offline")).await;
        let api_addr = server.api().to_owned();

        let mut alice = WsClient::user(server.ws(), "alice").await.unwrap();
        alice
            .send_json(&json!({"type": "join", "id": "j", "room": "ops"}))
            .await
            .unwrap();
        alice.recv_type("joined").await.unwrap();
        for member in ["bob", "carol", "李雷"] {
            let added = reqwest::Client::new()
                .post(format!(
                    "http://{api_addr}/api/v1/rooms/ops/members?user=alice"
                ))
                .json(&json!({"user": member}))
                .send()
                .await
                .unwrap();
            assert_eq!(added.status().as_u16(), 200, "{engine}: {member}");
        }
        let mut carol = WsClient::user(server.ws(), "carol").await.unwrap();
        carol.recv_type("unread").await.unwrap();
        alice
            .send_json(&json!({"type": "send", "id": "m", "room": "ops", "body": "deploy at 5"}))
            .await
            .unwrap();
        let ack = alice.recv_ack("m").await.unwrap();
        carol.recv_until("message").await.unwrap();

        let events: Vec<(String, Value)> = deliveries(&receiver, 2)
            .await
            .iter()
            .map(|d| (d.headers["webhook-id"].clone(), verified(d)))
            .collect();
        let mut users: Vec<&str> = events
            .iter()
            .map(|(_, e)| e["data"]["user"].as_str().unwrap())
            .collect();
        users.sort_unstable();
        assert_eq!(users, ["bob", "李雷"], "{engine}: {events:?}");
        for (id, event) in &events {
            assert_eq!(event["type"], "message.offline");
            let data = &event["data"];
            // Entries since each joined: bob saw carol and 李雷 join.
            let room_unread = if data["user"] == "bob" { 3 } else { 1 };
            assert_eq!(
                (
                    data["room"].as_str(),
                    data["room_unread"].as_u64(),
                    data["unread"].as_u64()
                ),
                (Some("ops"), Some(room_unread), Some(0)),
                "{engine}: {event}"
            );
            assert_eq!(data["message"]["body"], "deploy at 5");
            assert_eq!(
                (&data["message"]["id"], &data["message"]["seq"]),
                (&ack["message"]["id"], &ack["message"]["seq"]),
                "{engine}: the frame members get"
            );
            let message_id = data["message"]["id"].as_str().unwrap();
            assert!(
                id.starts_with(&format!("msg_{message_id}_")) && id.is_ascii(),
                "{engine}: an id of its own, plain ASCII: {id}"
            );
        }
        assert_ne!(events[0].0, events[1].0);

        // Nothing else was made for that message: the next event is the
        // next message's (events made together are posted together).
        send(&mut alice, "d", "zed", "and you?").await;
        let all = deliveries(&receiver, 3).await;
        assert_eq!(all.len(), 3, "{engine}: {all:?}");
        assert_eq!(verified(&all[2])["data"]["user"], "zed", "{engine}");
    }
}

/// A room deleted through the server API is one `room.deleted` event
/// (its members are not each told `room.member_left`), on both engines.
#[tokio::test]
async fn a_deleted_room_is_one_event() {
    const KEY: &str = "webhooks-test-bootstrap-key-of-32-bytes";
    let redis = TestRedis::start().unwrap();
    for engine in ["embedded", "redis"] {
        let receiver = Receiver::start().await.unwrap();
        let mut env = webhook_env(&receiver, "room.deleted,room.member_left");
        env.push(("CHAT_SERVER_API_KEY", KEY.to_owned()));
        let server = Deployment::start(engine, &redis, env).await;
        let api_addr = server.api().to_owned();
        let client = reqwest::Client::new();
        for room in ["standup", "retro", "marker"] {
            let created = client
                .post(format!("http://{api_addr}/api/v1/server/rooms"))
                .bearer_auth(KEY)
                .json(&json!({"name": room, "owner": "alice", "members": ["bob", "李雷"]}))
                .send()
                .await
                .unwrap();
            assert_eq!(created.status().as_u16(), 201, "{engine}");
        }
        for room in ["standup", "retro"] {
            let deleted = client
                .delete(format!("http://{api_addr}/api/v1/server/rooms/{room}"))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(deleted.status().as_u16(), 200, "{engine}");
        }
        let events: Vec<Value> = deliveries(&receiver, 2)
            .await
            .iter()
            .map(verified)
            .collect();
        let mut rooms: Vec<&str> = events
            .iter()
            .map(|e| e["data"]["room"].as_str().unwrap())
            .collect();
        rooms.sort_unstable();
        assert_eq!(rooms, ["retro", "standup"], "{engine}: {events:?}");
        for event in &events {
            assert_eq!(event["type"], "room.deleted");
            assert_eq!(
                (
                    event["data"]["members"].as_u64(),
                    event["data"]["by"].as_str()
                ),
                (Some(3), Some("system")),
                "{engine}: {event}"
            );
        }
        // A last event, queued once those two were posted: whatever the
        // deletions queued came before it.
        let removed = client
            .delete(format!(
                "http://{api_addr}/api/v1/server/rooms/marker/members/bob"
            ))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(removed.status().as_u16(), 200, "{engine}");
        let all = deliveries(&receiver, 3).await;
        assert_eq!(
            all.len(),
            3,
            "{engine}: one each, no member_left for a deleted room"
        );
        let last = verified(&all[2]);
        assert_eq!(
            (last["type"].as_str(), last["data"]["room"].as_str()),
            (Some("room.member_left"), Some("marker")),
            "{engine}: {last}"
        );
    }
}

/// Only `user.online` asked for: the `user.offline` queued with it is
/// dropped unsent.
#[tokio::test]
async fn events_of_a_type_not_asked_for_are_dropped_unsent() {
    let receiver = Receiver::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut env = webhook_env(&receiver, "user.online");
    env.push(("CHAT_DATA_DIR", data.path().to_str().unwrap().to_owned()));
    let chatd = start("chatd", &env).await;
    let bob = WsClient::user(chatd.addr(), "bob").await.unwrap();
    deliveries(&receiver, 1).await;
    bob.close().await.unwrap();
    // Bob's offline is queued (presence queues both) and must be dropped.
    // Batches go out in parallel, so a wrongly sent offline could land
    // after dave's online: erin's, queued only once dave's has arrived,
    // comes after the batch that would have carried it.
    let _dave = WsClient::user(chatd.addr(), "dave").await.unwrap();
    deliveries(&receiver, 2).await;
    let _erin = WsClient::user(chatd.addr(), "erin").await.unwrap();
    let all = deliveries(&receiver, 3).await;
    let seen: Vec<(String, String)> = all
        .iter()
        .map(verified)
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["data"]["user"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("user.online".into(), "bob".into()),
            ("user.online".into(), "dave".into()),
            ("user.online".into(), "erin".into())
        ]
    );
}

/// A receiver down past the give-up time: the event goes to the dead
/// letters (counted) and is never posted; the next one is.
#[tokio::test]
async fn an_event_given_up_on_is_dead_lettered_and_never_posted() {
    let receiver = Receiver::start().await.unwrap();
    receiver.set_down(true);
    let data = tempfile::tempdir().unwrap();
    let mut env = webhook_env(&receiver, "message.offline");
    env.push(("CHAT_DATA_DIR", data.path().to_str().unwrap().to_owned()));
    env.push(("CHAT_WEBHOOK_GIVE_UP", "300ms".to_owned()));
    let chatd = start("chatd", &env).await;
    let mut alice = WsClient::user(chatd.addr(), "alice").await.unwrap();
    send(&mut alice, "1", "bob", "lost in the post").await;
    let metrics = || async {
        reqwest::get(format!("http://{}/metrics", chatd.addr()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    chat_testkit::eventually_async("the event is dead-lettered", || async {
        metrics()
            .await
            .contains(r#"chat_webhook_events_total{result="dead"} 1"#)
    })
    .await
    .unwrap();
    receiver.set_down(false);
    send(&mut alice, "2", "carol", "this one arrives").await;
    let all = deliveries(&receiver, 1).await;
    assert_eq!(verified(&all[0])["data"]["user"], "carol");
    assert_eq!(all.len(), 1, "{all:?}");
}

/// The server API's publish to a user with no connection: stored, counted,
/// and one signed `message.offline` for the application's own push.
#[tokio::test]
async fn a_published_message_for_an_offline_user_is_one_signed_event() {
    let receiver = Receiver::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let bootstrap = "bootstrap-key-for-the-webhook-tests-000";
    let mut env = webhook_env(&receiver, "message.offline");
    env.push(("CHAT_DATA_DIR", data.path().to_str().unwrap().to_owned()));
    env.push(("CHAT_SERVER_API_KEY", bootstrap.to_owned()));
    let chatd = start("chatd", &env).await;
    let published = reqwest::Client::new()
        .post(format!("http://{}/api/v1/server/publish", chatd.addr()))
        .bearer_auth(bootstrap)
        .json(&json!({"to": "bob", "body": "Your order has shipped.", "id": "order-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status().as_u16(), 201);
    let event = verified(&deliveries(&receiver, 1).await[0]);
    assert_eq!(
        (
            event["data"]["user"].as_str(),
            event["data"]["unread"].as_u64()
        ),
        (Some("bob"), Some(1))
    );
    assert_eq!(event["data"]["message"]["from"], "system");
    assert_eq!(event["data"]["message"]["body"], "Your order has shipped.");
}
