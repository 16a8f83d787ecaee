//! Nothing acknowledged is lost when a process dies or restarts.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use chat_testkit::process::Service;
use chat_testkit::redis::TestRedis;
use chat_testkit::ws::WsClient;
use serde_json::json;

#[tokio::test]
async fn a_message_acked_just_before_its_gateway_is_killed_still_reaches_the_receiver() {
    let redis = TestRedis::start().unwrap();
    let env = [
        ("REDIS_URL", redis.url()),
        ("CHAT_REDIS_PREFIX", redis.prefix()),
        ("CHAT_AUTH", "open"),
    ];
    let doomed = Service::start("gateway", &[], &env).await.unwrap();
    let survivor = Service::start("gateway", &[], &env).await.unwrap();

    let mut alice = WsClient::user(doomed.addr(), "alice").await.unwrap();
    alice
        .send_json(&json!({"type":"send","id":"k","to":"bob","body":"acked, then kill -9"}))
        .await
        .unwrap();
    let ack = alice.recv_ack("k").await.unwrap();
    doomed.kill().await.unwrap();

    let mut bob = WsClient::user(survivor.addr(), "bob").await.unwrap();
    assert_eq!(
        bob.recv_type("unread").await.unwrap()["counts"],
        json!({"alice": 1})
    );
    let got = bob.recv_type("message").await.unwrap();
    assert_eq!(got["id"], ack["message"]["id"]);
}

#[tokio::test]
async fn restarting_chatd_between_send_and_receive_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let env = [("CHAT_DATA_DIR", data.path().to_str().unwrap())];
    let chatd = Service::start("chatd", &[], &env).await.unwrap();
    let mut alice = WsClient::user(chatd.addr(), "alice").await.unwrap();
    alice
        .send_json(&json!({"type":"send","id":"r","to":"bob","body":"before the restart"}))
        .await
        .unwrap();
    let ack = alice.recv_ack("r").await.unwrap();
    let seed = r#"{"sender":"alice","receiver":"bob","message":"seed, before the restart"}"#;
    alice.send_text(seed).await.unwrap();
    alice
        .send_json(&json!({"type":"send","id":"s","to":"carol","body":"sync point"}))
        .await
        .unwrap();
    alice.recv_ack("s").await.unwrap();
    assert_eq!(chatd.terminate().await.unwrap(), Some(0));

    let chatd = Service::start("chatd", &[], &env).await.unwrap();
    let mut bob = WsClient::user(chatd.addr(), "bob").await.unwrap();
    assert_eq!(
        bob.recv_type("unread").await.unwrap()["counts"],
        json!({"alice": 2})
    );
    assert_eq!(
        bob.recv_type("message").await.unwrap()["id"],
        ack["message"]["id"]
    );
    assert_eq!(bob.recv_seed_text().await.unwrap(), seed);
}
