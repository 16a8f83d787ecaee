//! The presence service as its own process, beside real gateways.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use chat_testkit::process::Service;
use chat_testkit::redis::TestRedis;
use chat_testkit::ws::WsClient;
use chat_testkit::{eventually_async, http_get};
use serde_json::{Value, json};

async fn presence_of(service: &Service, user: &str) -> Value {
    let (status, body) = http_get(
        service.addr(),
        &format!("/api/v1/presence/{user}?user=alice"),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A gateway killed with no goodbye: its users count as offline once its
/// lease lapses, and watchers on other gateways are told so.
#[tokio::test]
async fn a_killed_gateways_users_go_offline_when_its_lease_lapses() {
    let redis = TestRedis::start().unwrap();
    let env = [
        ("REDIS_URL", redis.url()),
        ("CHAT_REDIS_PREFIX", redis.prefix()),
        ("CHAT_AUTH", "open"),
        ("CHAT_PRESENCE_LEASE", "1s"),
    ];
    let gateway = Service::start("gateway", &[], &env).await.unwrap();
    let survivor = Service::start("gateway", &[], &env).await.unwrap();
    let presence = Service::start("presence", &[], &env).await.unwrap();

    let mut alice = WsClient::user(survivor.addr(), "alice").await.unwrap();
    alice
        .send_json(&json!({"type": "watch", "users": ["bob"]}))
        .await
        .unwrap();
    assert_eq!(alice.recv_type("presence").await.unwrap()["online"], false);
    let connected_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut bob = WsClient::user(gateway.addr(), "bob").await.unwrap();
    bob.recv_type("unread").await.unwrap();
    assert_eq!(presence_of(&presence, "bob").await["online"], true);
    assert_eq!(alice.recv_type("presence").await.unwrap()["online"], true);
    let (status, body) = http_get(presence.addr(), "/api/v1/unread?user=bob")
        .await
        .unwrap();
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({}))
    );

    gateway.kill().await.unwrap(); // no goodbye: only the lease tells
    eventually_async("bob is offline after the lease", || async {
        presence_of(&presence, "bob").await["online"] == false
    })
    .await
    .unwrap();
    // The surviving gateway's sweeper tells bob's watchers, once, with when
    // his gateway was last alive.
    let offline = alice.recv_type("presence").await.unwrap();
    assert_eq!(
        (offline["user"].as_str(), offline["online"].as_bool()),
        (Some("bob"), Some(false))
    );
    let last_seen = offline["last_seen"].as_u64().unwrap();
    assert!(last_seen >= connected_at, "{offline}");
    assert_eq!(presence_of(&presence, "bob").await["last_seen"], last_seen);
    chat_testkit::until_ready(presence.addr()).await.unwrap();
    let (status, body) = http_get(presence.addr(), "/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = http_get(presence.addr(), "/metrics").await.unwrap();
    assert!(
        metrics.contains(r#"chat_http_requests_total{status="2xx"}"#),
        "{metrics}"
    );
}

/// The presence service keeps nothing of its own: killed while a
/// conversation goes on and started again, it answers from Redis as before —
/// the counters of messages sent while it was down included.
#[tokio::test]
async fn a_presence_restart_under_traffic_loses_nothing() {
    let redis = TestRedis::start().unwrap();
    let env = [
        ("REDIS_URL", redis.url()),
        ("CHAT_REDIS_PREFIX", redis.prefix()),
        ("CHAT_AUTH", "open"),
    ];
    let gateway = Service::start("gateway", &[], &env).await.unwrap();
    let presence = Service::start("presence", &[], &env).await.unwrap();
    let mut alice = WsClient::user(gateway.addr(), "alice").await.unwrap();
    let unread = |service: &Service| {
        let addr = service.addr().to_owned();
        async move {
            let (status, body) = http_get(&addr, "/api/v1/unread?user=bob").await.unwrap();
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    let send = |n: u32| json!({"type": "send", "id": format!("m{n}"), "to": "bob", "body": "hi"});
    alice.send_json(&send(1)).await.unwrap();
    alice.recv_ack("m1").await.unwrap();
    assert_eq!(unread(&presence).await, json!({"alice": 1}));

    presence.kill().await.unwrap();
    for n in 2..=4 {
        alice.send_json(&send(n)).await.unwrap();
        alice.recv_ack(&format!("m{n}")).await.unwrap();
    }
    let presence = Service::start("presence", &[], &env).await.unwrap();
    assert_eq!(unread(&presence).await, json!({"alice": 4}));
}
