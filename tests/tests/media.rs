//! Media messages end to end: upload over HTTP, send the reference over the
//! WebSocket, the receiver gets everything it needs to render the file.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use chat_testkit::process::Service;
use chat_testkit::redis::TestRedis;
use chat_testkit::ws::WsClient;
use serde_json::{Value, json};

use chat_testkit::PNG_1X1 as PNG;

async fn upload(addr: &str, auth: &str) -> Value {
    let part = reqwest::multipart::Part::bytes(PNG.to_vec()).file_name("dot.png");
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/media?{auth}"))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    response.json().await.unwrap()
}

/// alice sends her upload to bob; bob gets it ready to render; a foreign or
/// unknown id is refused and nothing is delivered.
async fn exchange(gateway: &str, media: &str, auth: impl Fn(&str) -> String) {
    let mine = upload(media, &auth("alice")).await;
    let theirs = upload(media, &auth("carol")).await;
    let mut alice = WsClient::connect(gateway, &format!("/ws/alice/?{}", auth("alice")))
        .await
        .unwrap();
    let mut bob = WsClient::connect(gateway, &format!("/ws/bob/?{}", auth("bob")))
        .await
        .unwrap();

    alice
        .send_json(&json!({"type": "send", "id": "x", "to": "bob", "media": {"id": theirs["id"]}}))
        .await
        .unwrap();
    assert_eq!(
        alice.recv_until("error").await.unwrap()["code"],
        "forbidden"
    );
    alice
        .send_json(&json!({"type": "send", "id": "y", "to": "bob", "media": {"id": "01JDQZ7V8Y3M5T2K9W4XN6B1CE"}}))
        .await
        .unwrap();
    assert_eq!(
        alice.recv_until("error").await.unwrap()["code"],
        "not_found"
    );
    alice
        .send_json(
            &json!({"type": "send", "id": "w", "to": "bob", "media": {"id": "../../metrics?x"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        alice.recv_until("error").await.unwrap()["code"],
        "not_found",
        "never reaches a URL"
    );

    // A first send of the upload that is refused (it answers an unknown
    // message) leaves the file as it was: the next send takes it.
    let refused = json!({"type": "send", "id": "r", "to": "bob", "media": {"id": mine["id"]}, "reply_to": "01J00000000000000000000000"});
    alice.send_json(&refused).await.unwrap();
    assert_eq!(
        alice.recv_until("error").await.unwrap()["code"],
        "not_found"
    );
    let send = json!({"type": "send", "id": "z", "to": "bob", "body": "look", "media": {"id": mine["id"]}});
    alice.send_json(&send).await.unwrap();
    alice.recv_ack("z").await.unwrap();
    let got = bob.recv_type("message").await.unwrap();
    assert_eq!(
        got["body"], "look",
        "the refused sends delivered nothing before it"
    );
    let media_info = &got["media"];
    assert_eq!(
        (media_info["kind"].as_str(), media_info["mime"].as_str()),
        (Some("image"), Some("image/png"))
    );
    assert_eq!(
        (media_info["width"].as_u64(), media_info["height"].as_u64()),
        (Some(1), Some(1))
    );
    let url = format!("http://{media}{}", media_info["url"].as_str().unwrap());
    let bytes = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), PNG);
    forgotten_with_its_last_message(&mut alice, &url, &mine["id"], &got["id"]).await;
}

/// The file of message `first` (to bob) goes out again to carol: deleting
/// the first message keeps the file for the second; deleting the second,
/// the last message carrying it, deletes the file from the media service.
async fn forgotten_with_its_last_message(
    alice: &mut WsClient,
    url: &str,
    media: &Value,
    first: &Value,
) {
    let again = json!({"type": "send", "id": "again", "to": "carol", "media": {"id": media}});
    alice.send_json(&again).await.unwrap();
    let second = alice.recv_ack("again").await.unwrap()["message"]["id"].clone();
    let status = || async { reqwest::get(url).await.unwrap().status().as_u16() };

    let delete = |id: &str, peer: &str, message: &Value| json!({"type": "delete", "id": id, "peer": peer, "message": message});
    alice.send_json(&delete("d1", "bob", first)).await.unwrap();
    let tombstone = alice.recv_ack("d1").await.unwrap();
    assert_eq!(tombstone["message"]["deleted"], true);
    assert!(tombstone["message"].get("media").is_none());
    // The hold is let go before the ack: carol's message still holds it.
    assert_eq!(status().await, 200, "another message carries the file");

    alice
        .send_json(&delete("d2", "carol", &second))
        .await
        .unwrap();
    alice.recv_ack("d2").await.unwrap();
    chat_testkit::eventually_async("the file is deleted", || async { status().await == 404 })
        .await
        .unwrap();
}

#[tokio::test]
async fn chatd_delivers_a_media_message_ready_to_render() {
    let data = tempfile::tempdir().unwrap();
    let chatd = Service::start(
        "chatd",
        &[],
        &[("CHAT_DATA_DIR", data.path().to_str().unwrap())],
    )
    .await
    .unwrap();
    exchange(chatd.addr(), chatd.addr(), |user| format!("user={user}")).await;
}

#[tokio::test]
async fn a_gateway_checks_media_with_the_media_service_over_http() {
    let redis = TestRedis::start().unwrap();
    let data = tempfile::tempdir().unwrap();
    let secret = "media-e2e-secret-at-least-32-bytes!";
    let media = Service::start(
        "media",
        &[],
        &[
            ("CHAT_JWT_SECRET", secret),
            ("CHAT_DATA_DIR", data.path().to_str().unwrap()),
        ],
    )
    .await
    .unwrap();
    let media_url = format!("http://{}", media.addr());
    let gateway = Service::start(
        "gateway",
        &[],
        &[
            ("REDIS_URL", redis.url()),
            ("CHAT_REDIS_PREFIX", redis.prefix()),
            ("CHAT_JWT_SECRET", secret),
            ("CHAT_MEDIA_URL", &media_url),
        ],
    )
    .await
    .unwrap();
    let token = |user: &str| {
        let output = std::process::Command::new(chat_testkit::process::binary("chatd").unwrap())
            .args(["token", user])
            .env("CHAT_JWT_SECRET", secret)
            .output()
            .unwrap();
        format!("token={}", String::from_utf8(output.stdout).unwrap().trim())
    };
    exchange(gateway.addr(), media.addr(), token).await;
}

/// The media service restarts while people send pictures through a gateway:
/// sends while it is down are refused `unavailable` and nothing is
/// delivered; once it is back (same data, same address) the same upload
/// goes through — no gateway restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_service_restart_under_traffic_refuses_honestly_and_recovers() {
    let redis = TestRedis::start().unwrap();
    let data = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", chat_testkit::redis::free_port().unwrap());
    let media_env = [
        ("CHAT_AUTH", "open"),
        ("CHAT_LISTEN", listen.as_str()),
        ("CHAT_DATA_DIR", data.path().to_str().unwrap()),
    ];
    let media = Service::start("media", &[], &media_env).await.unwrap();
    let media_url = format!("http://{listen}");
    let gateway = Service::start(
        "gateway",
        &[],
        &[
            ("REDIS_URL", redis.url()),
            ("CHAT_REDIS_PREFIX", redis.prefix()),
            ("CHAT_AUTH", "open"),
            ("CHAT_MEDIA_URL", &media_url),
        ],
    )
    .await
    .unwrap();
    let picture = upload(&listen, "user=alice").await;
    let mut alice = WsClient::user(gateway.addr(), "alice").await.unwrap();
    let mut bob = WsClient::user(gateway.addr(), "bob").await.unwrap();
    bob.recv_type("unread").await.unwrap();
    let send =
        |id: &str| json!({"type": "send", "id": id, "to": "bob", "media": {"id": picture["id"]}});

    alice.send_json(&send("before")).await.unwrap();
    alice.recv_ack("before").await.unwrap();
    assert_eq!(
        bob.recv_type("message").await.unwrap()["media"]["id"],
        picture["id"]
    );

    assert_eq!(media.terminate().await.unwrap(), Some(0));
    alice.send_json(&send("down")).await.unwrap();
    let error = alice.recv_until("error").await.unwrap();
    assert_eq!(
        (error["id"].as_str(), error["code"].as_str()),
        (Some("down"), Some("unavailable"))
    );

    let _media = Service::start("media", &[], &media_env).await.unwrap();
    alice.send_json(&send("back")).await.unwrap();
    let ack = alice.recv_ack("back").await.unwrap();
    // Bob gets the message sent after the restart, and none sent while down.
    let got = bob.recv_type("message").await.unwrap();
    assert_eq!(got["id"], ack["message"]["id"]);
}
