//! Who may open which connection: the jwt matrix and the Origin check.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

mod support;

use std::sync::Arc;
use std::time::Duration;

use chat_auth::{Authenticator, OriginPolicy};
use chat_gateway::{Access, Engine};
use chat_testkit::ws::WsClient;
use serde_json::json;
use support::{Node, settings};

const SECRET: &[u8] = b"a-test-secret-that-is-long-enough!";

async fn jwt_node(origins: &str) -> (Node, tempfile::TempDir) {
    let access = Access {
        auth: Arc::new(Authenticator::jwt(SECRET)),
        origins: OriginPolicy::parse(origins).unwrap(),
        proxies: Default::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::Embedded {
        bus: chat_broker::memory::MemoryBus::new(),
        data_dir: dir.path().to_owned(),
    };
    (Node::start_with(settings(), engine, access).await, dir)
}

fn token(user: &str) -> String {
    Authenticator::jwt(SECRET)
        .mint(user, None, Duration::from_secs(300))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_opens_its_user_by_header_or_query() {
    let (node, _dir) = jwt_node("").await;
    let bearer = format!("Bearer {}", token("alice"));
    let mut alice = WsClient::connect_with(&node.addr, "/ws/alice/", &[("Authorization", &bearer)])
        .await
        .unwrap();
    let mut bob = WsClient::connect(&node.addr, &format!("/ws/bob/?token={}", token("bob")))
        .await
        .unwrap();
    alice
        .send_json(&json!({"type":"send","id":"1","to":"bob","body":"signed"}))
        .await
        .unwrap();
    assert_eq!(bob.recv_type("message").await.unwrap()["from"], "alice");
    let mut lobby = WsClient::connect(&node.addr, &format!("/ws/?token={}", token("carol")))
        .await
        .unwrap();
    lobby
        .send_text("any valid user may use the lobby")
        .await
        .unwrap();
    assert_eq!(
        lobby.recv_text().await.unwrap(),
        "any valid user may use the lobby"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bad_expired_or_unsigned_tokens_are_refused_before_the_upgrade() {
    let (node, _dir) = jwt_node("").await;
    let foreign = Authenticator::jwt(b"some-other-secret-also-32-bytes-long")
        .mint("alice", None, Duration::from_secs(300))
        .unwrap();
    // {"alg":"none"} with sub alice and a far exp, no signature.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.";
    let cases = [
        ("/ws/alice/".to_owned(), 401, "no token"),
        (
            format!("/ws/alice/?token={foreign}"),
            401,
            "wrong signature",
        ),
        (format!("/ws/alice/?token={none}"), 401, "alg none"),
        ("/ws/alice/?token=garbage".to_owned(), 401, "malformed"),
        (
            format!("/ws/bob/?token={}", token("alice")),
            403,
            "alice's token on bob's path",
        ),
        ("/ws/".to_owned(), 401, "lobby without a token"),
    ];
    for (path, status, why) in cases {
        assert_eq!(
            WsClient::refused_status(&node.addr, &path).await.unwrap(),
            status,
            "{why}"
        );
    }
    // The expiry check has a few seconds of leeway for clock skew; a token
    // that expired well before that is refused.
    let long_expired = expired_by(3600);
    let path = format!("/ws/alice/?token={long_expired}");
    assert_eq!(
        WsClient::refused_status(&node.addr, &path).await.unwrap(),
        401,
        "expired"
    );
}

/// A properly signed token for alice that expired `seconds` ago.
fn expired_by(seconds: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "alice", "iat": now - seconds - 60, "exp": now - seconds}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_another_origin_cannot_open_a_connection() {
    let (node, _dir) = jwt_node("").await;
    let path = format!("/ws/alice/?token={}", token("alice"));
    let evil = [("Origin", "https://evil.example")];
    assert_eq!(
        WsClient::refused_status_with(&node.addr, &path, &evil)
            .await
            .unwrap(),
        403
    );
    let same = format!("http://{}", node.addr);
    WsClient::connect_with(&node.addr, &path, &[("Origin", &same)])
        .await
        .unwrap();

    let (listed, _dir2) = jwt_node("https://app.example.com").await;
    let ok = [("Origin", "https://app.example.com")];
    WsClient::connect_with(&listed.addr, &path, &ok)
        .await
        .unwrap();
    assert_eq!(
        WsClient::refused_status_with(&listed.addr, &path, &evil)
            .await
            .unwrap(),
        403
    );
}

/// `name` percent-encoded for a URL path segment (RFC 3986: every byte but
/// the unreserved ones).
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Ids as identity providers issue them (`|`, `@`, `/`, `%`, `:`, spaces,
/// 255 characters) open their own connections on two replicas, reach each other
/// named exactly, and each pair of users keeps to its own Redis keys even
/// where names could spell another pair's (`a:b`+`c`, `a`+`b:c`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_ids_of_every_shape_round_trip_and_keep_to_their_own_keys() {
    let redis = chat_testkit::redis::TestRedis::start().unwrap();
    let access = Access {
        auth: Arc::new(Authenticator::jwt(SECRET)),
        origins: OriginPolicy::default(),
        proxies: Default::default(),
    };
    let a = Node::start_with(
        settings(),
        Engine::Redis(support::redis_options(&redis)),
        access.clone(),
    )
    .await;
    let b = Node::start_with(
        settings(),
        Engine::Redis(support::redis_options(&redis)),
        access,
    )
    .await;
    let long = format!("{}x", "é".repeat(127));
    assert_eq!(long.len(), 255);
    let pairs = [
        ("auth0|5f3c9a", "alice@example.com"),
        ("x/y z", "a%b"),
        ("a:b", "c"),
        ("a", "b:c"),
        (long.as_str(), "auth0|5f3c9a"),
    ];
    for (i, (from, to)) in pairs.iter().enumerate() {
        let mut receiver = WsClient::connect(
            &b.addr,
            &format!("/ws/{}/?token={}", segment(to), token(to)),
        )
        .await
        .unwrap();
        receiver.recv_type("unread").await.unwrap();
        let mut sender = WsClient::connect(
            &a.addr,
            &format!("/ws/{}/?token={}", segment(from), token(from)),
        )
        .await
        .unwrap();
        sender
            .send_json(&json!({"type": "send", "id": format!("m{i}"), "to": to, "body": "hi"}))
            .await
            .unwrap();
        let ack = sender.recv_ack(&format!("m{i}")).await.unwrap();
        assert_eq!(ack["message"]["to"], *to);
        let got = receiver.recv_type("message").await.unwrap();
        assert_eq!(
            (got["from"].as_str(), got["to"].as_str()),
            (Some(*from), Some(*to))
        );
    }
    let mut conn = redis.connection().unwrap();
    let prefix = redis.prefix();
    for (key, messages) in [("conv:a%3Ab:c", 1), ("conv:a:b%3Ac", 1)] {
        let len: u64 = ::redis::cmd("ZCARD")
            .arg(format!("{prefix}{key}"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(len, messages, "{key}");
    }
    // A token for one id never opens another's path, however alike they look.
    assert_eq!(
        WsClient::refused_status(
            &a.addr,
            &format!("/ws/{}/?token={}", segment("A:b"), token("a:b"))
        )
        .await
        .unwrap(),
        403
    );
}
