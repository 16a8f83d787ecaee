//! The server API as an application's backend uses it, on the real
//! binaries: `chatd` (embedded) and the `presence` binary beside a gateway
//! (Redis). API keys from the bootstrap key, the API and the command line;
//! every refusal of the key matrix; a published message stored, counted and
//! delivered like a user's.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use chat_testkit::process::{Service, binary};
use chat_testkit::redis::TestRedis;
use chat_testkit::ws::{Ended, WsClient};
use serde_json::{Value, json};

const SECRET: &str = "server-api-test-secret-of-32-bytes!";
const BOOTSTRAP: &str = "bootstrap-key-for-the-server-api-tests";

/// `method path` on `addr` with `Authorization: Bearer {key}` (none when
/// `key` is empty) and a JSON body: status and JSON answer.
async fn call(
    addr: &str,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), format!("http://{addr}{path}"));
    if !key.is_empty() {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `POST /api/v1/server/rooms` on `addr`: a public room `name` owned by
/// `owner`, made with the bootstrap key; panics unless it is made.
async fn create_room(addr: &str, name: &str, owner: &str) {
    let body = json!({"name": name, "owner": owner});
    let (status, answer) = call(addr, "POST", "/api/v1/server/rooms", BOOTSTRAP, Some(body)).await;
    assert_eq!(status, 201, "room {name}: {answer}");
}

/// `POST /api/v1/server/publish` on `addr` with `key`: status and answer.
async fn publish(addr: &str, key: &str, body: Value) -> (u16, Value) {
    call(addr, "POST", "/api/v1/server/publish", key, Some(body)).await
}

fn token(user: &str) -> String {
    let output = std::process::Command::new(binary("chatd").unwrap())
        .args(["token", user])
        .env("CHAT_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// `chatd api-key ARGS` on the data folder `data`: its standard output.
fn cli(data: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new(binary("chatd").unwrap())
        .arg("api-key")
        .args(args)
        .env("CHAT_DATA_DIR", data)
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn chatd(data: &std::path::Path) -> Service {
    chatd_with(data, &[]).await
}

/// `chatd` on the data folder `data`, in jwt mode with the bootstrap key,
/// and `extra` settings.
async fn chatd_with(data: &std::path::Path, extra: &[(&str, &str)]) -> Service {
    let mut env = vec![
        ("CHAT_DATA_DIR", data.to_str().unwrap()),
        ("CHAT_AUTH", "jwt"),
        ("CHAT_JWT_SECRET", SECRET),
        ("CHAT_SERVER_API_KEY", BOOTSTRAP),
    ];
    env.extend_from_slice(extra);
    Service::start("chatd", &[], &env).await.unwrap()
}

/// `binary` (a gateway, or the presence binary) on `redis`, in jwt mode
/// with the bootstrap key, and `extra` settings.
async fn replica(binary: &str, redis: &TestRedis, extra: &[(&str, &str)]) -> Service {
    let mut env = vec![
        ("REDIS_URL", redis.url()),
        ("CHAT_REDIS_PREFIX", redis.prefix()),
        ("CHAT_JWT_SECRET", SECRET),
        ("CHAT_SERVER_API_KEY", BOOTSTRAP),
    ];
    env.extend_from_slice(extra);
    Service::start(binary, &[], &env).await.unwrap()
}

/// Makes a key with `scopes` through the API: the key.
async fn key(addr: &str, name: &str, scopes: &[&str]) -> (String, String) {
    let (status, made) = call(
        addr,
        "POST",
        "/api/v1/server/api-keys",
        BOOTSTRAP,
        Some(json!({"name": name, "scopes": scopes})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    (
        made["key"].as_str().unwrap().to_owned(),
        made["id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn every_wrong_credential_is_refused_on_every_endpoint() {
    let data = tempfile::tempdir().unwrap();
    let chatd = chatd(data.path()).await;
    let addr = chatd.addr();
    let (publisher, _) = key(addr, "shop", &["publish"]).await;
    let (reader, _) = key(addr, "dashboard", &["read"]).await;
    let (revoked, revoked_id) = key(addr, "old", &["publish"]).await;
    let (status, _) = call(
        addr,
        "DELETE",
        &format!("/api/v1/server/api-keys/{revoked_id}"),
        BOOTSTRAP,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let unknown = format!("ck_01J00000000000000000000001.{}", "x".repeat(43));
    let tampered = format!("{}x", publisher);

    let message = json!({"to": "bob", "body": "hello"});
    let endpoints: [(&str, &str, Option<Value>); 14] = [
        ("POST", "/api/v1/server/publish", Some(message)),
        (
            "POST",
            "/api/v1/server/api-keys",
            Some(json!({"name": "n", "scopes": ["read"]})),
        ),
        ("GET", "/api/v1/server/api-keys", None),
        (
            "DELETE",
            "/api/v1/server/api-keys/01J00000000000000000000000",
            None,
        ),
        ("GET", "/api/v1/server/users/bob", None),
        ("POST", "/api/v1/server/users/bob/disconnect", None),
        ("GET", "/api/v1/server/connections", None),
        (
            "POST",
            "/api/v1/server/rooms",
            Some(json!({"name": "r", "owner": "alice"})),
        ),
        (
            "POST",
            "/api/v1/server/rooms/r/members",
            Some(json!({"user": "bob"})),
        ),
        ("DELETE", "/api/v1/server/rooms/r/members/bob", None),
        ("DELETE", "/api/v1/server/rooms/r", None),
        ("GET", "/api/v1/server/rooms/r", None),
        ("GET", "/api/v1/server/users/bob/rooms", None),
        (
            "PATCH",
            "/api/v1/server/rooms/r/members/bob",
            Some(json!({"role": "admin"})),
        ),
    ];
    let user_token = token("alice");
    // Credentials are checked before the body is read: a stranger learns
    // nothing of the schema.
    let (status, answer) = publish(addr, "", json!({"nonsense": 1})).await;
    assert_eq!(status, 401, "{answer}");
    for (method, path, body) in &endpoints {
        for (credential, why) in [
            ("", "no key"),
            ("hello", "not a key"),
            (unknown.as_str(), "an unknown key"),
            (tampered.as_str(), "a key with a wrong secret"),
            (revoked.as_str(), "a revoked key"),
            (user_token.as_str(), "a user's token"),
        ] {
            let (status, answer) = call(addr, method, path, credential, body.clone()).await;
            assert_eq!(
                (status, answer["error"].as_str()),
                (401, Some("unauthorized")),
                "{method} {path}: {why}: {answer}"
            );
            if why == "a user's token" {
                assert!(
                    answer["message"].as_str().unwrap().contains("user's token"),
                    "{answer}"
                );
            }
        }
    }
    // The right kind of key, without the power.
    let (status, answer) = publish(addr, &reader, json!({"to": "bob", "body": "x"})).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some("forbidden")),
        "{answer}"
    );
    for (method, path, body) in &endpoints[1..] {
        let (status, answer) = call(addr, method, path, &publisher, body.clone()).await;
        assert_eq!(
            status, 403,
            "{method} {path}: a publish key opens nothing else (keys, users, connections, rooms): {answer}"
        );
    }
    // What opens the server API opens no user's WebSocket.
    for credential in [publisher.as_str(), BOOTSTRAP] {
        let path = format!("/ws/alice/?token={credential}");
        assert_eq!(WsClient::refused_status(addr, &path).await.unwrap(), 401);
    }
    // The scheme's name is case-insensitive (RFC 9110).
    let listed = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/server/api-keys"))
        .header("authorization", format!("bearer {BOOTSTRAP}"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    // The command line never makes a store of its own in a wrong folder.
    let elsewhere = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(binary("chatd").unwrap())
        .args(["api-key", "list"])
        .env("CHAT_DATA_DIR", elsewhere.path())
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no store at"));
    assert!(!elsewhere.path().join("messages.db").exists());
    // The listing never shows a secret.
    let (status, list) = call(addr, "GET", "/api/v1/server/api-keys", BOOTSTRAP, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["keys"].as_array().unwrap().len(), 3);
    assert!(
        !list
            .to_string()
            .contains(publisher.split('.').nth(1).unwrap()),
        "{list}"
    );
    let listed = |id: &str| {
        list["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .cloned()
            .unwrap()
    };
    assert!(listed(&revoked_id)["revoked_at"].is_u64(), "{list}");
    assert!(listed(&publisher[3..29])["revoked_at"].is_null(), "{list}");
}

#[tokio::test]
async fn a_message_published_for_an_offline_user_is_stored_counted_and_delivered_once() {
    let data = tempfile::tempdir().unwrap();
    let chatd = chatd(data.path()).await;
    let addr = chatd.addr();
    // A key made on the command line, beside the running server.
    let made = cli(
        data.path(),
        &["create", "--name", "orders", "--scope", "publish,read"],
    );
    let publisher = made.lines().next().unwrap().to_owned();
    assert!(publisher.starts_with("ck_"), "{made}");

    let order = json!({"to": "bob", "body": "Your order has shipped.", "id": "order-1042"});
    let (status, first) = publish(addr, &publisher, order.clone()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["message"]["from"], "system");
    // A request over 512 KiB is refused whole, before anything is parsed.
    let huge = json!({"to": "bob", "body": "x".repeat(512 * 1024)});
    let (status, answer) = publish(addr, &publisher, huge).await;
    assert_eq!(status, 413, "{answer}");
    let (status, again) = publish(addr, &publisher, order.clone()).await;
    assert_eq!(
        (status, again["repeated"].as_bool()),
        (200, Some(true)),
        "{again}"
    );
    assert_eq!(
        again["message"]["id"], first["message"]["id"],
        "a retry stores nothing new"
    );
    // The same id for another user is another message.
    let mut other = order.clone();
    other["to"] = "carol".into();
    let (status, to_carol) = publish(addr, &publisher, other).await;
    assert_eq!(
        (status, to_carol["repeated"].as_bool()),
        (201, Some(false)),
        "{to_carol}"
    );
    assert_ne!(to_carol["message"]["id"], first["message"]["id"]);

    // Counted once, kept, and delivered when bob comes.
    let bob_token = token("bob");
    let (status, unread) = call(
        addr,
        "GET",
        &format!("/api/v1/unread?token={bob_token}"),
        "",
        None,
    )
    .await;
    assert_eq!((status, unread), (200, json!({"system": 1})));
    let mut bob = WsClient::connect(addr, &format!("/ws/bob/?token={bob_token}"))
        .await
        .unwrap();
    let message = bob.recv_type("message").await.unwrap();
    chat_testkit::eventually_async("chatd counts bob's connection", || async {
        let (_, counts) = call(addr, "GET", "/api/v1/server/connections", &publisher, None).await;
        counts["gateways"][0]["node"] == "chatd" && counts["connections"] == 1
    })
    .await
    .unwrap();
    assert_eq!(
        (message["id"].clone(), message["body"].as_str()),
        (
            first["message"]["id"].clone(),
            Some("Your order has shipped.")
        )
    );

    // As a named user: the sender keeps a copy, as if they had sent it.
    let (status, sent) = publish(
        addr,
        &publisher,
        json!({"to": "bob", "from": "shop", "body": "Thanks!"}),
    )
    .await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(bob.recv_type("message").await.unwrap()["from"], "shop");
    let mut shop = WsClient::connect(addr, &format!("/ws/shop/?token={}&since=0", token("shop")))
        .await
        .unwrap();
    assert_eq!(
        shop.recv_type("message").await.unwrap()["id"],
        sent["message"]["id"]
    );

    // A line to the lobby, as the seed's raw text.
    let mut lobby = WsClient::connect(addr, &format!("/ws/?token={bob_token}"))
        .await
        .unwrap();
    let (status, _) = publish(
        addr,
        &publisher,
        json!({"lobby": true, "body": "maintenance at 22:00"}),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(lobby.recv_text().await.unwrap(), "maintenance at 22:00");

    // Bad requests say what is wrong.
    for (body, code) in [
        (json!({"body": "no target"}), "invalid_frame"),
        (
            json!({"to": "bob", "lobby": true, "body": "two"}),
            "invalid_frame",
        ),
        (json!({"to": "bob", "body": ""}), "invalid_frame"),
        (
            json!({"to": "bob", "body": "x", "id": "y".repeat(65)}),
            "invalid_frame",
        ),
    ] {
        let (status, answer) = publish(addr, &publisher, body.clone()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(code)),
            "{body}: {answer}"
        );
    }

    // To a room: from the application, which is no member; a named user
    // must be one. The members get it live and counted.
    let mut alice = WsClient::connect(addr, &format!("/ws/alice/?token={}", token("alice")))
        .await
        .unwrap();
    alice
        .send_json(&json!({"type": "join", "id": "j", "room": "ops"}))
        .await
        .unwrap();
    alice.recv_type("joined").await.unwrap();
    let notice = json!({"room": "ops", "body": "deploy at five", "id": "deploy-5"});
    let (status, posted) = publish(addr, &publisher, notice.clone()).await;
    assert_eq!(status, 201, "{posted}");
    let live = alice.recv_until("message").await.unwrap();
    assert_eq!(
        (
            live["from"].as_str(),
            live["room"].as_str(),
            live["id"].clone()
        ),
        (Some("system"), Some("ops"), posted["message"]["id"].clone())
    );
    let (status, again) = publish(addr, &publisher, notice).await;
    assert_eq!(
        (status, again["message"]["id"].clone()),
        (200, posted["message"]["id"].clone())
    );
    let (_, unread) = call(
        addr,
        "GET",
        &format!("/api/v1/unread?include=rooms&token={}", token("alice")),
        "",
        None,
    )
    .await;
    assert_eq!(
        unread["rooms"]["ops"], 1,
        "counted once for the member: {unread}"
    );
    for (body, status, code) in [
        (json!({"room": "nowhere", "body": "x"}), 404, "not_found"),
        (
            json!({"room": "ops", "from": "bob", "body": "x"}),
            403,
            "forbidden",
        ),
        (
            json!({"room": "ops", "to": "bob", "body": "x"}),
            400,
            "invalid_frame",
        ),
    ] {
        let (got, answer) = publish(addr, &publisher, body.clone()).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }

    // Revoked on the command line: refused from then on.
    let id = made
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches([',', ':'])
        .to_owned();
    assert!(cli(data.path(), &["list"]).contains(&id));
    cli(data.path(), &["revoke", &id]);
    let (status, _) = publish(addr, &publisher, json!({"to": "bob", "body": "late"})).await;
    assert_eq!(status, 401);
}

/// Distributed: the `presence` binary serves the server API on the
/// gateways' Redis; a message published there reaches bob on a gateway,
/// live.
#[tokio::test]
async fn the_presence_binary_serves_the_server_api_beside_gateways() {
    let redis = TestRedis::start().unwrap();
    let gateway = replica("gateway", &redis, &[]).await;
    let presence = replica("presence", &redis, &[]).await;
    let mut bob = WsClient::connect(gateway.addr(), &format!("/ws/bob/?token={}", token("bob")))
        .await
        .unwrap();
    bob.recv_type("unread").await.unwrap();
    let (status, published) = publish(
        presence.addr(),
        BOOTSTRAP,
        json!({"to": "bob", "body": "from the backend"}),
    )
    .await;
    assert_eq!(status, 201, "{published}");
    let message = bob.recv_type("message").await.unwrap();
    assert_eq!(
        (message["from"].as_str(), message["body"].as_str()),
        (Some("system"), Some("from the backend"))
    );
    assert_eq!(
        bob.recv_type("unread").await.unwrap()["counts"]["system"],
        1
    );

    // A room, through Redis's script: no membership asked of the application.
    bob.send_json(&json!({"type": "join", "id": "j", "room": "ops"}))
        .await
        .unwrap();
    bob.recv_type("joined").await.unwrap();
    let (status, posted) = publish(
        presence.addr(),
        BOOTSTRAP,
        json!({"room": "ops", "body": "deploy at five"}),
    )
    .await;
    assert_eq!(status, 201, "{posted}");
    assert_eq!(
        bob.recv_until("message").await.unwrap()["id"],
        posted["message"]["id"]
    );
    let (_, unread) = call(
        presence.addr(),
        "GET",
        &format!("/api/v1/unread?include=rooms&token={}", token("bob")),
        "",
        None,
    )
    .await;
    assert_eq!(
        unread["rooms"]["ops"], 1,
        "counted for the member: {unread}"
    );
}

/// A user who sends without waiting for acks keeps sends queued in the
/// embedded store all the time; a disconnect still closes their connection
/// (4403), after the sends before it are answered.
#[tokio::test]
async fn a_user_sending_without_pause_is_still_thrown_out() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let data = tempfile::tempdir().unwrap();
    // Faster than a person: the flood must not be rate limited.
    let unlimited = [
        ("CHAT_RATE_PER_SEC", "1000000"),
        ("CHAT_RATE_BURST", "1000000"),
    ];
    let chatd = chatd_with(data.path(), &unlimited).await;
    let addr = chatd.addr().to_owned();
    let (bouncer, _) = key(&addr, "moderation", &["users"]).await;
    let bob = WsClient::connect(&addr, &format!("/ws/bob/?token={}", token("bob")))
        .await
        .unwrap();
    let (mut sink, mut stream) = bob.into_silent().split();
    let flood = tokio::spawn(async move {
        for n in 0u64.. {
            let frame =
                json!({"type": "send", "id": n.to_string(), "to": "alice", "body": "again"});
            if sink.send(Message::text(frame.to_string())).await.is_err() {
                break;
            }
        }
    });
    let mut acks = 0;
    let mut removal = None;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Text(text)) if text.as_str().contains(r#""type":"ack""#) => {
                    acks += 1;
                    // Well into the flood: removed while sends are queued.
                    if acks == 500 {
                        let (addr, bouncer) = (addr.clone(), bouncer.clone());
                        removal = Some(tokio::spawn(async move {
                            let path = "/api/v1/server/users/bob/disconnect";
                            call(&addr, "POST", path, &bouncer, None).await.0
                        }));
                    }
                }
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(e) => panic!("the connection broke instead of closing: {e}"),
            }
        }
        None
    })
    .await
    .expect("closed while the client kept sending");
    flood.abort();
    assert_eq!(closed, Some(4403), "after {acks} acks");
    assert_eq!(removal.expect("500 acks came").await.unwrap(), 202);
}

/// Disconnect closes every connection of the user, on every gateway, with
/// 4403; the presence and unread counts of any user are readable.
#[tokio::test]
async fn a_user_is_thrown_out_of_every_gateway_and_read_by_the_server() {
    let redis = TestRedis::start().unwrap();
    let (one, two) = (
        replica("gateway", &redis, &[]).await,
        replica("gateway", &redis, &[]).await,
    );
    let presence = replica("presence", &redis, &[]).await;
    let (reader, _) = key(presence.addr(), "dashboard", &["read"]).await;
    let (bouncer, _) = key(presence.addr(), "moderation", &["users"]).await;
    let bob_token = token("bob");
    let mut phone = WsClient::connect(one.addr(), &format!("/ws/bob/?token={bob_token}"))
        .await
        .unwrap();
    let mut laptop = WsClient::connect(two.addr(), &format!("/ws/bob/?token={bob_token}"))
        .await
        .unwrap();
    let mut alice = WsClient::connect(one.addr(), &format!("/ws/alice/?token={}", token("alice")))
        .await
        .unwrap();
    for socket in [&mut phone, &mut laptop, &mut alice] {
        socket.recv_type("unread").await.unwrap();
    }
    alice
        .send_json(&json!({"type": "send", "id": "a", "to": "bob", "body": "hi"}))
        .await
        .unwrap();
    alice.recv_ack("a").await.unwrap();
    phone.recv_until("message").await.unwrap();

    // Two on the first gateway (bob's phone, alice), one on the second.
    chat_testkit::eventually_async("every connection is counted", || async {
        let (status, counts) = call(
            presence.addr(),
            "GET",
            "/api/v1/server/connections",
            &reader,
            None,
        )
        .await;
        let mut per_gateway: Vec<u64> = counts["gateways"]
            .as_array()
            .map(|g| g.iter().filter_map(|n| n["connections"].as_u64()).collect())
            .unwrap_or_default();
        per_gateway.sort_unstable();
        status == 200 && counts["connections"] == 3 && per_gateway == [1, 2]
    })
    .await
    .unwrap();
    let (status, state) = call(
        presence.addr(),
        "GET",
        "/api/v1/server/users/bob",
        &reader,
        None,
    )
    .await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(
        (state["online"].as_bool(), state["unread"]["alice"].as_u64()),
        (Some(true), Some(1)),
        "{state}"
    );

    let (status, _) = call(
        presence.addr(),
        "POST",
        "/api/v1/server/users/bob/disconnect",
        &reader,
        None,
    )
    .await;
    assert_eq!(status, 403, "reading is not removing");
    let (status, answer) = call(
        presence.addr(),
        "POST",
        "/api/v1/server/users/bob/disconnect",
        &bouncer,
        None,
    )
    .await;
    assert_eq!(
        (status, answer["user"].as_str()),
        (202, Some("bob")),
        "{answer}"
    );
    for socket in [&mut phone, &mut laptop] {
        assert_eq!(socket.ended().await.unwrap(), Ended::Closed(4403));
    }
    // Without revoke, bob's token still opens; with it, no token issued
    // before does, anywhere; a token issued later does.
    let mut back = WsClient::connect(one.addr(), &format!("/ws/bob/?token={bob_token}"))
        .await
        .unwrap();
    let (status, answer) = call(
        presence.addr(),
        "POST",
        "/api/v1/server/users/bob/disconnect",
        &bouncer,
        Some(json!({"revoke": true})),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer["revoked_before"].is_u64(), "{answer}");
    assert_eq!(back.ended().await.unwrap(), Ended::Closed(4403));
    for gateway in [&one, &two] {
        let path = format!("/ws/bob/?token={bob_token}");
        assert_eq!(
            WsClient::refused_status(gateway.addr(), &path)
                .await
                .unwrap(),
            401
        );
    }
    let (status, _) = call(
        presence.addr(),
        "GET",
        &format!("/api/v1/unread?token={bob_token}"),
        "",
        None,
    )
    .await;
    assert_eq!(status, 401, "the presence API refuses it too");
    // Tokens carry whole seconds: one minted in the revocation's second is
    // refused as well, a later one passes.
    chat_testkit::eventually_async("a token minted after the revocation opens", || async {
        let path = format!("/ws/bob/?token={}", token("bob"));
        WsClient::connect(two.addr(), &path).await.is_ok()
    })
    .await
    .unwrap();
    let (status, _) = call(
        presence.addr(),
        "GET",
        &format!("/api/v1/unread?token={}", token("alice")),
        "",
        None,
    )
    .await;
    assert_eq!(status, 200, "alice's tokens are not touched");
    // Only bob: alice's connection lives on.
    alice
        .send_json(&json!({"type": "send", "id": "b", "to": "carol", "body": "still here"}))
        .await
        .unwrap();
    alice.recv_ack("b").await.unwrap();
}

/// Rooms with the application's power, through the presence binary on
/// Redis: created for a user, a private room joined by someone its members
/// did not add, a member made admin, the owner removed; each member hears
/// of it live.
#[tokio::test]
async fn the_application_manages_rooms_with_its_own_power() {
    let redis = TestRedis::start().unwrap();
    let gateway = replica("gateway", &redis, &[]).await;
    let presence = replica("presence", &redis, &[]).await;
    let (rooms, _) = key(presence.addr(), "rooms", &["rooms"]).await;
    let (publisher, _) = key(presence.addr(), "shop", &["publish"]).await;
    let mut carol = WsClient::connect(
        gateway.addr(),
        &format!("/ws/carol/?token={}", token("carol")),
    )
    .await
    .unwrap();
    carol.recv_type("unread").await.unwrap();

    let new = json!({"name": "Order-1042", "owner": "alice", "private": true, "members": ["bob", "bob", "alice", "bad\u{0}name"]});
    let (status, answer) = call(
        presence.addr(),
        "POST",
        "/api/v1/server/rooms",
        &publisher,
        Some(new.clone()),
    )
    .await;
    assert_eq!(status, 403, "a publish key manages no rooms: {answer}");
    let (status, created) = call(
        presence.addr(),
        "POST",
        "/api/v1/server/rooms",
        &rooms,
        Some(new.clone()),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["room"].as_str(), created["owner"].as_str()),
        (Some("order-1042"), Some("alice"))
    );
    assert_eq!(created["added"], json!(["bob"]));
    assert_eq!(created["not_added"][0]["error"], "invalid_name");
    let (status, _) = call(
        presence.addr(),
        "POST",
        "/api/v1/server/rooms",
        &rooms,
        Some(new),
    )
    .await;
    assert_eq!(status, 409, "the name is taken");

    // Carol joins the private room: its members could not have added her
    // without being asked; the application can, as an admin.
    let path = "/api/v1/server/rooms/order-1042/members";
    let (status, added) = call(
        presence.addr(),
        "POST",
        path,
        &rooms,
        Some(json!({"user": "carol", "role": "admin"})),
    )
    .await;
    assert_eq!(
        (status, added["changed"].as_bool()),
        (200, Some(true)),
        "{added}"
    );
    let joined = carol.recv_type("joined").await.unwrap();
    assert_eq!(joined["room"], "order-1042");
    let entry = carol.recv_type("member_joined").await.unwrap();
    assert_eq!(
        (entry["user"].as_str(), entry["by"].as_str()),
        (Some("carol"), Some("system"))
    );
    let (status, again) = call(
        presence.addr(),
        "POST",
        path,
        &rooms,
        Some(json!({"user": "carol"})),
    )
    .await;
    assert_eq!((status, again["changed"].as_bool()), (200, Some(false)));
    let (status, _) = call(
        presence.addr(),
        "POST",
        path,
        &rooms,
        Some(json!({"user": "dave", "role": "owner"})),
    )
    .await;
    assert_eq!(status, 400, "the owner is who created the room");
    let (status, _) = call(
        presence.addr(),
        "POST",
        "/api/v1/server/rooms/nowhere/members",
        &rooms,
        Some(json!({"user": "dave"})),
    )
    .await;
    assert_eq!(status, 404);

    // The owner removed: carol hears it, and the room goes on.
    let (status, removed) = call(
        presence.addr(),
        "DELETE",
        &format!("{path}/alice"),
        &rooms,
        None,
    )
    .await;
    assert_eq!(
        (status, removed["changed"].as_bool()),
        (200, Some(true)),
        "{removed}"
    );
    let left = carol.recv_until("member_left").await.unwrap();
    assert_eq!(
        (left["user"].as_str(), left["by"].as_str()),
        (Some("alice"), Some("system"))
    );
    let (status, info) = call(
        presence.addr(),
        "GET",
        &format!("/api/v1/rooms/order-1042?token={}", token("carol")),
        "",
        None,
    )
    .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(
        info["owner"], "carol",
        "the admin who joined first takes the room: {info}"
    );
    // The application makes bob an admin; the owner's role stays.
    let member = "/api/v1/server/rooms/order-1042/members";
    let (status, promoted) = call(
        presence.addr(),
        "PATCH",
        &format!("{member}/bob"),
        &rooms,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(
        (status, promoted["changed"].as_bool()),
        (200, Some(true)),
        "{promoted}"
    );
    for (user, role, want) in [
        ("carol", "member", 409),
        ("dave", "admin", 404),
        ("bob", "owner", 400),
    ] {
        let (status, answer) = call(
            presence.addr(),
            "PATCH",
            &format!("{member}/{user}"),
            &rooms,
            Some(json!({"role": role})),
        )
        .await;
        assert_eq!(status, want, "{user} {role}: {answer}");
    }

    // The application reads the private room, and each member's rooms.
    let (reader, _) = key(presence.addr(), "dashboard", &["read"]).await;
    let (status, _) = call(
        presence.addr(),
        "GET",
        "/api/v1/server/rooms/order-1042",
        &rooms,
        None,
    )
    .await;
    assert_eq!(status, 403, "reading needs the read scope");
    let (status, seen) = call(
        presence.addr(),
        "GET",
        "/api/v1/server/rooms/Order-1042",
        &reader,
        None,
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        (seen["private"].as_bool(), seen["owner"].as_str()),
        (Some(true), Some("carol"))
    );
    assert_eq!(
        seen["members"],
        json!([{"user": "carol", "role": "owner"}, {"user": "bob", "role": "admin"}])
    );
    let (status, listed) = call(
        presence.addr(),
        "GET",
        "/api/v1/server/users/carol/rooms",
        &reader,
        None,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["rooms"][0]["room"], "order-1042");
    assert_eq!(listed["rooms"][0]["role"], "owner");
    assert_eq!(
        listed["rooms"][0]["unread"], 1,
        "alice's removal is unread for carol: {listed}"
    );
    // Deleted: carol's connection is told, the room is no more.
    let (status, deleted) = call(
        presence.addr(),
        "DELETE",
        "/api/v1/server/rooms/order-1042",
        &rooms,
        None,
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    let mut members: Vec<&str> = deleted["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["bob", "carol"]);
    assert_eq!(
        carol.recv_until("left").await.unwrap()["room"],
        "order-1042"
    );
    let (status, _) = call(
        presence.addr(),
        "GET",
        "/api/v1/server/rooms/order-1042",
        &reader,
        None,
    )
    .await;
    assert_eq!(status, 404, "a deleted room is gone");
    let (status, listed) = call(
        presence.addr(),
        "GET",
        "/api/v1/server/users/bob/rooms",
        &reader,
        None,
    )
    .await;
    assert_eq!((status, listed["rooms"].clone()), (200, json!([])));
    let (status, _) = call(
        presence.addr(),
        "DELETE",
        "/api/v1/server/rooms/order-1042",
        &rooms,
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// An upload of `user`'s to the media service at `media`: its id.
async fn upload(media: &str, user: &str) -> String {
    let part = reqwest::multipart::Part::bytes(chat_testkit::PNG_1X1.to_vec()).file_name("dot.png");
    let response = reqwest::Client::new()
        .post(format!("http://{media}/api/v1/media"))
        .bearer_auth(token(user))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let made: Value = response.json().await.unwrap();
    made["id"].as_str().unwrap().to_owned()
}

/// The application publishes files: any file as itself, only the named
/// sender's own in their name; the file is held like a user's send holds
/// it, and deleted once the last message carrying it is (as its uploader,
/// whoever sent the message). On `chatd` (media in process) and on the
/// presence binary beside a gateway and the media service over HTTP.
#[tokio::test]
async fn a_published_message_carries_a_file() {
    let redis = TestRedis::start().unwrap();
    let (data, files) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for setup in ["chatd", "replicas"] {
        let mut running = Vec::new();
        let (api, gateway, media) = if setup == "chatd" {
            let chatd = chatd(data.path()).await;
            let addr = chatd.addr().to_owned();
            running.push(chatd);
            (addr.clone(), addr.clone(), addr)
        } else {
            let media = Service::start(
                "media",
                &[],
                &[
                    ("CHAT_JWT_SECRET", SECRET),
                    ("CHAT_DATA_DIR", files.path().to_str().unwrap()),
                ],
            )
            .await
            .unwrap();
            let url = format!("http://{}", media.addr());
            let media_url = [("CHAT_MEDIA_URL", url.as_str())];
            let gateway = replica("gateway", &redis, &media_url).await;
            let presence = replica("presence", &redis, &media_url).await;
            let addrs = (
                presence.addr().to_owned(),
                gateway.addr().to_owned(),
                media.addr().to_owned(),
            );
            running.extend([media, gateway, presence]);
            addrs
        };
        let alices = upload(&media, "alice").await;
        let mut bob = WsClient::connect(&gateway, &format!("/ws/bob/?token={}", token("bob")))
            .await
            .unwrap();
        bob.recv_type("unread").await.unwrap();

        // As the application: alice's file, no text.
        let (status, published) = publish(
            &api,
            BOOTSTRAP,
            json!({"to": "bob", "media": {"id": alices}}),
        )
        .await;
        assert_eq!(status, 201, "{setup}: {published}");
        let got = bob.recv_type("message").await.unwrap();
        assert_eq!(
            (got["from"].as_str(), got["media"]["id"].as_str()),
            (Some("system"), Some(alices.as_str())),
            "{setup}: {got}"
        );
        assert!(got["media"]["url"].is_string(), "{setup}: ready to render");

        // In a user's name: only their own file.
        let (status, answer) = publish(
            &api,
            BOOTSTRAP,
            json!({"to": "bob", "from": "carol", "body": "look", "media": {"id": alices}}),
        )
        .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (403, Some("forbidden")),
            "{setup}: {answer}"
        );
        let (status, answer) = publish(
            &api,
            BOOTSTRAP,
            json!({"to": "bob", "from": "alice", "body": "mine", "media": {"id": alices}}),
        )
        .await;
        assert_eq!(status, 201, "{setup}: {answer}");
        for (body, want) in [
            (json!({"to": "bob", "media": {"id": "0".repeat(26)}}), 404),
            (json!({"to": "bob", "media": {"id": "../etc"}}), 404),
            (json!({"to": "bob", "body": ""}), 400),
            (json!({"to": "bob", "media": {"id": alices, "x": 1}}), 400),
            (
                json!({"lobby": true, "body": "x", "media": {"id": alices}}),
                400,
            ),
        ] {
            let (status, answer) = publish(&api, BOOTSTRAP, body.clone()).await;
            assert_eq!(status, want, "{setup}: {body} → {answer}");
        }

        // A room's owner deletes the application's message carrying her
        // other file, its only message: the file goes from the media service.
        let room = format!("news-{setup}");
        create_room(&api, &room, "alice").await;
        let other = upload(&media, "alice").await;
        let (status, posted) = publish(
            &api,
            BOOTSTRAP,
            json!({"room": room, "body": "the new menu", "media": {"id": other}}),
        )
        .await;
        assert_eq!(status, 201, "{setup}: {posted}");
        let mut alice =
            WsClient::connect(&gateway, &format!("/ws/alice/?token={}", token("alice")))
                .await
                .unwrap();
        alice.recv_type("unread").await.unwrap();
        let delete =
            json!({"type": "delete", "id": "d", "room": room, "message": posted["message"]["id"]});
        alice.send_json(&delete).await.unwrap();
        assert_eq!(
            alice.recv_ack("d").await.unwrap()["message"]["deleted"],
            true,
            "{setup}"
        );
        let metadata = |id: String| {
            let url = format!("http://{media}/api/v1/media/{id}");
            async move {
                reqwest::Client::new()
                    .get(url)
                    .bearer_auth(token("bob"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        chat_testkit::eventually_async(&format!("{setup}: the file is deleted"), || {
            let status = metadata(other.clone());
            async move { status.await == 404 }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            metadata(alices.clone()).await,
            200,
            "{setup}: messages still carry the first file"
        );

        // A deleted room's files go with it, once nothing else carries them.
        let archive = format!("archive-{setup}");
        create_room(&api, &archive, "alice").await;
        let third = upload(&media, "alice").await;
        for target in [
            json!({"room": archive}),
            json!({"room": archive, "from": "alice"}),
        ] {
            let mut body = target;
            body["media"] = json!({"id": third});
            let (status, answer) = publish(&api, BOOTSTRAP, body).await;
            assert_eq!(status, 201, "{setup}: {answer}");
        }
        let (status, answer) = publish(
            &api,
            BOOTSTRAP,
            json!({"room": archive, "media": {"id": alices}}),
        )
        .await;
        assert_eq!(status, 201, "{setup}: {answer}");
        let (status, _) = call(
            &api,
            "DELETE",
            &format!("/api/v1/server/rooms/{archive}"),
            BOOTSTRAP,
            None,
        )
        .await;
        assert_eq!(status, 200);
        chat_testkit::eventually_async(&format!("{setup}: the room's file is deleted"), || {
            let status = metadata(third.clone());
            async move { status.await == 404 }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            metadata(alices.clone()).await,
            200,
            "{setup}: a file other messages carry stays"
        );
        drop(running);
    }
}
