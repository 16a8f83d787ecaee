//! Web Push from the real binaries to a push service stand-in on loopback
//! (`chat_testkit::push`), which checks the VAPID token and decrypts every
//! push with the browser's private key: a message for a user with no
//! connection is pushed once to each of their browsers, with the text and
//! their unread total; an online user gets none; a muted conversation
//! sends nothing; the quiet preview carries no text; a subscription the
//! push service forgot (410) is forgotten; a push service that is down is
//! tried again.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use chat_testkit::eventually;
use chat_testkit::process::Service;
use chat_testkit::push::{Browser, PushService};
use chat_testkit::redis::TestRedis;
use chat_testkit::ws::WsClient;
use serde_json::{Value, json};

/// Settings for pushes to `service`, retried quickly.
fn push_env(service: &PushService) -> Vec<(&'static str, String)> {
    vec![
        ("CHAT_PUSH_SERVICES", service.host()),
        ("CHAT_VAPID_SUBJECT", "mailto:ops@example.com".to_owned()),
        ("CHAT_WEBHOOK_RETRY_MIN", "50ms".to_owned()),
    ]
}

async fn start(binary: &str, env: &[(&str, String)]) -> Service {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Service::start(binary, &[], &env).await.unwrap()
}

/// `chatd` on the data folder `data`, pushing to `service`.
async fn chatd(service: &PushService, data: &std::path::Path) -> Service {
    let mut env = push_env(service);
    env.push(("CHAT_DATA_DIR", data.to_str().unwrap().to_owned()));
    start("chatd", &env).await
}

/// `method path?user={user}` on `addr` with a JSON body: status, answer.
async fn call(
    addr: &str,
    method: &str,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let separator = if path.contains('?') { '&' } else { '?' };
    let url = format!("http://{addr}{path}{separator}user={user}");
    let mut request = reqwest::Client::new().request(method.parse().unwrap(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn subscribe(addr: &str, user: &str, browser: &Browser) {
    let (status, kept) = call(
        addr,
        "POST",
        "/api/v1/push/subscriptions",
        user,
        Some(browser.subscription_json()),
    )
    .await;
    assert_eq!(status, 201, "{kept}");
}

async fn send(from: &mut WsClient, id: &str, to: &str, body: &str) {
    from.send_json(&json!({"type": "send", "id": id, "to": to, "body": body}))
        .await
        .unwrap();
    from.recv_ack(id).await.unwrap();
}

/// Waits until `service` has taken `n` pushes: all of them.
async fn pushes(service: &PushService, n: usize) -> Vec<chat_testkit::push::Push> {
    eventually(&format!("{n} pushes"), || service.pushes().len() >= n)
        .await
        .unwrap_or_else(|e| panic!("{e}; refused: {:?}", service.refused()));
    service.pushes()
}

#[tokio::test]
async fn an_offline_user_gets_one_push_per_browser_and_nothing_else_is_pushed() {
    let service = PushService::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let chatd = chatd(&service, data.path()).await;
    let addr = chatd.addr();

    let (status, key) = call(addr, "GET", "/api/v1/push/vapid-public-key", "x", None).await;
    assert_eq!(status, 200);
    let key = key["key"].as_str().unwrap().to_owned();
    let (phone, laptop, carols) = (service.browser(), service.browser(), service.browser());
    subscribe(addr, "bob", &phone).await;
    subscribe(addr, "bob", &laptop).await;
    subscribe(addr, "carol", &carols).await;

    // bob has no connection: one push to each of his browsers.
    let mut alice = WsClient::user(addr, "alice").await.unwrap();
    send(&mut alice, "1", "bob", "dinner at 8?").await;
    let first = pushes(&service, 2).await;
    for browser in [&phone, &laptop] {
        let taken = service.pushes_for(browser);
        assert_eq!(taken.len(), 1, "one push per browser");
        let push = &taken[0];
        assert_eq!(
            push.notification,
            json!({
                "id": push.notification["id"],
                "from": "alice", "from_name": "alice",
                "text": "dinner at 8?", "peer": "alice", "unread": 1,
            })
        );
        assert_eq!(
            push.vapid_key, key,
            "signed with the key the page subscribes with"
        );
        assert_eq!(push.subject.as_deref(), Some("mailto:ops@example.com"));
        assert_eq!(push.headers["ttl"], "86400");
        assert_eq!(push.headers["urgency"], "normal");
        assert_eq!(push.headers["topic"].len(), 32);
    }
    assert_eq!(first.len(), 2);

    // Online: nothing for bob. (Carol's push is the next one taken.)
    let mut bob = WsClient::user(addr, "bob").await.unwrap();
    bob.recv_type("message").await.unwrap();
    send(&mut alice, "2", "bob", "see you").await;
    bob.recv_type("message").await.unwrap();
    send(&mut alice, "3", "carol", "are you in?").await;
    let all = pushes(&service, 3).await;
    assert_eq!(all.len(), 3, "no push for a user online");
    assert_eq!(all[2].subscription, carols.id);
    drop(bob);

    // Muted: nothing for that conversation; the quiet preview has no text.
    let (status, _) = call(addr, "PUT", "/api/v1/push/muted/users/alice", "bob", None).await;
    assert_eq!(status, 204);
    let (status, settings) = call(
        addr,
        "PUT",
        "/api/v1/push/settings",
        "carol",
        Some(json!({"quiet": true})),
    )
    .await;
    assert_eq!((status, settings["quiet"].as_bool()), (200, Some(true)));
    let (_, bobs) = call(addr, "GET", "/api/v1/push/settings", "bob", None).await;
    assert_eq!(bobs["muted"], json!({"users": ["alice"], "rooms": []}));
    chat_testkit::eventually_async("bob is offline", || async {
        let (_, state) = call(addr, "GET", "/api/v1/presence/bob", "alice", None).await;
        state["online"] == false
    })
    .await
    .unwrap();
    send(&mut alice, "4", "bob", "muted, this").await;
    send(&mut alice, "5", "carol", "secret plans").await;
    let all = pushes(&service, 4).await;
    let quiet = &all[3].notification;
    assert_eq!(
        (quiet["quiet"].as_bool(), quiet.get("text")),
        (Some(true), None)
    );
    assert_eq!(quiet["unread"], 2, "carol's unread total");

    // bob turns his laptop off; carol's browser is gone at its push
    // service (404): each is forgotten.
    let (status, _) = call(
        addr,
        "DELETE",
        &format!("/api/v1/push/subscriptions?endpoint={}", laptop.endpoint),
        "bob",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        addr,
        "DELETE",
        "/api/v1/push/muted/users/alice",
        "bob",
        None,
    )
    .await;
    assert_eq!(status, 204);
    service.drop_browser(&carols);
    send(&mut alice, "6", "bob", "unmuted again").await;
    send(&mut alice, "7", "carol", "still there?").await;
    chat_testkit::eventually_async("carol's subscription is forgotten", || async {
        let (_, list) = call(addr, "GET", "/api/v1/push/subscriptions", "carol", None).await;
        list["subscriptions"] == json!([])
    })
    .await
    .unwrap();
    // A last push, taken after everything above was sent (the sender takes
    // the next items only once the ones it holds are done): the totals are
    // final.
    let last = service.browser();
    subscribe(addr, "dora", &last).await;
    send(&mut alice, "8", "dora", "the end").await;
    pushes(&service, 6).await;
    assert_eq!(
        service.pushes_for(&phone).len(),
        2,
        "bob's phone: the first, and unmuted"
    );
    assert_eq!(
        service.pushes_for(&laptop).len(),
        1,
        "nothing after it was deleted"
    );
    assert_eq!(
        service.pushes_for(&carols).len(),
        2,
        "nothing online, nothing after 404"
    );
    assert_eq!(service.pushes().len(), 6, "nothing online, nothing muted");
    assert!(service.refused().is_empty(), "{:?}", service.refused());
}

/// The sum of `chat_push_total{result}` over `servers`' metrics.
async fn pushed(servers: &[&Service], result: &str) -> u64 {
    let mut total = 0;
    let line = format!("chat_push_total{{result=\"{result}\"}} ");
    for server in servers {
        let text = reqwest::get(format!("http://{}/metrics", server.addr()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        total += text
            .lines()
            .filter_map(|l| l.strip_prefix(&line))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// Two gateways and the presence binary on Redis: a room message pushes
/// once to each member with no connection (one gateway sends each), a
/// muted room nothing; a subscription the push service forgot (410) is
/// forgotten; a push service that is down gets the push once it is back.
#[tokio::test]
async fn replicas_push_room_messages_once_forget_expired_subscriptions_and_retry() {
    let redis = TestRedis::start().unwrap();
    let service = PushService::start().await.unwrap();
    let key = chat_push::VapidKey::generate().unwrap();
    let mut env = push_env(&service);
    env.extend([
        ("REDIS_URL", redis.url().to_owned()),
        ("CHAT_REDIS_PREFIX", redis.prefix().to_owned()),
        ("CHAT_AUTH", "open".to_owned()),
        ("CHAT_VAPID_PRIVATE_KEY", key.private_base64()),
    ]);
    let one = start("gateway", &env).await;
    let two = start("gateway", &env).await;
    let presence = start("presence", &env).await;
    let api = presence.addr();
    let (_, served) = call(api, "GET", "/api/v1/push/vapid-public-key", "x", None).await;
    assert_eq!(served["key"], key.public_base64());

    let (bobs, daves) = (service.browser(), service.browser());
    subscribe(api, "bob", &bobs).await;
    subscribe(api, "dave", &daves).await;
    let mut alice = WsClient::user(one.addr(), "alice").await.unwrap();
    alice
        .send_json(&json!({"type": "join", "id": "j", "room": "ops"}))
        .await
        .unwrap();
    alice.recv_type("joined").await.unwrap();
    for member in ["bob", "dave"] {
        let (status, _) = call(
            api,
            "POST",
            "/api/v1/rooms/ops/members",
            "alice",
            Some(json!({"user": member})),
        )
        .await;
        assert_eq!(status, 200);
    }
    let say = |id: &'static str, body: &'static str| json!({"type": "send", "id": id, "room": "ops", "body": body});
    alice.send_json(&say("r1", "deploy at 5")).await.unwrap();
    alice.recv_ack("r1").await.unwrap();
    let first = pushes(&service, 2).await;
    for browser in [&bobs, &daves] {
        let taken = service.pushes_for(browser);
        assert_eq!(taken.len(), 1, "once, though two gateways send");
        let n = &taken[0].notification;
        assert_eq!(
            (n["room"].as_str(), n["text"].as_str(), n["from"].as_str()),
            (Some("ops"), Some("deploy at 5"), Some("alice"))
        );
        assert_eq!(
            n["unread"],
            if browser.id == bobs.id { 2 } else { 1 },
            "{n}"
        );
    }
    assert_eq!(first.len(), 2);

    // dave mutes the room; bob's browser is forgotten by its push service.
    let (status, _) = call(api, "PUT", "/api/v1/push/muted/rooms/ops", "dave", None).await;
    assert_eq!(status, 204);
    service.forget(&bobs);
    alice.send_json(&say("r2", "moved to 6")).await.unwrap();
    alice.recv_ack("r2").await.unwrap();
    chat_testkit::eventually_async("bob's subscription is forgotten", || async {
        let (_, list) = call(api, "GET", "/api/v1/push/subscriptions", "bob", None).await;
        list["subscriptions"] == json!([])
    })
    .await
    .unwrap();
    assert_eq!(service.pushes().len(), 2, "nothing for dave's muted room");

    // The push service is down: the push waits, and comes once it is back.
    service.set_down(true);
    send(&mut alice, "d1", "dave", "are you there?").await;
    eventually("a push attempted while down", || service.dropped() >= 2)
        .await
        .unwrap();
    service.set_down(false);
    let all = pushes(&service, 3).await;
    assert_eq!(all[2].subscription, daves.id);
    assert_eq!(all[2].notification["text"], "are you there?");
    assert_eq!(all[2].notification["peer"], "alice");

    // A push waiting for its service while its user turns notifications
    // off is never sent.
    let erins = service.browser();
    subscribe(api, "erin", &erins).await;
    service.set_down(true);
    let dropped = service.dropped();
    send(&mut alice, "e1", "erin", "before you go").await;
    eventually("erin's push attempted while down", || {
        service.dropped() > dropped
    })
    .await
    .unwrap();
    let (status, _) = call(
        api,
        "DELETE",
        &format!("/api/v1/push/subscriptions?endpoint={}", erins.endpoint),
        "erin",
        None,
    )
    .await;
    assert_eq!(status, 204);
    service.set_down(false);
    chat_testkit::eventually_async("erin's push is dropped unsent", || async {
        pushed(&[&one, &two], "unsubscribed").await == 1
    })
    .await
    .unwrap();
    assert!(service.pushes_for(&erins).is_empty());

    assert_eq!(pushed(&[&one, &two], "expired").await, 1);
    assert!(pushed(&[&one, &two], "failed").await >= 3);
    assert_eq!(pushed(&[&one, &two], "sent").await, 3);
}

/// Every boundary of the push API answers precisely: a subscription that
/// is not one, keys of the wrong size, an endpoint on no allowed push
/// service (the server would post there), no sign-in; a replica without a
/// VAPID key says Web Push is off.
#[tokio::test]
async fn the_push_api_refuses_what_it_cannot_use() {
    let service = PushService::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let chatd = chatd(&service, data.path()).await;
    let addr = chatd.addr();
    let browser = service.browser();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut subscription = browser.subscription_json();
        f(&mut subscription);
        subscription
    };
    let zeros = format!("BA{}", "A".repeat(85));
    for (body, why) in [
        (json!({"endpoint": browser.endpoint}), "no keys"),
        (
            with(&|s| s["keys"]["p256dh"] = zeros.clone().into()),
            "a key that is no P-256 point",
        ),
        (
            with(&|s| {
                s["endpoint"] =
                    format!("{}/{}", s["endpoint"].as_str().unwrap(), "x".repeat(3000)).into()
            }),
            "an endpoint of 3 KB",
        ),
        (
            with(&|s| s["keys"]["auth"] = "c2hvcnQ".into()),
            "a short auth",
        ),
        (
            with(&|s| s["keys"]["p256dh"] = "!!".into()),
            "a key that is not base64url",
        ),
        (
            with(&|s| s["endpoint"] = "https://10.0.0.7/admin".into()),
            "an internal address",
        ),
        (
            with(&|s| s["endpoint"] = "http://fcm.googleapis.com/fcm/send/x".into()),
            "plain http",
        ),
        (json!([1]), "not an object"),
    ] {
        let (status, answer) = call(
            addr,
            "POST",
            "/api/v1/push/subscriptions",
            "bob",
            Some(body),
        )
        .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_frame")),
            "{why}: {answer}"
        );
    }
    let (status, _) = call(addr, "GET", "/api/v1/push/settings", "", None).await;
    assert_eq!(status, 400, "open mode: a user names themselves");
    let (status, _) = call(
        addr,
        "DELETE",
        &format!("/api/v1/push/subscriptions?endpoint={}", browser.endpoint),
        "bob",
        None,
    )
    .await;
    assert_eq!(status, 404, "bob has no such subscription");
    let (status, _) = call(addr, "PUT", "/api/v1/push/muted/teams/x", "bob", None).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        addr,
        "PUT",
        "/api/v1/push/settings",
        "bob",
        Some(json!({"quiet": "yes"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        data.path().join("vapid.key").exists(),
        "chatd made its key once"
    );

    // In jwt mode the push API is a signed-in user's only.
    let secure_data = tempfile::tempdir().unwrap();
    let secure = start(
        "chatd",
        &[
            (
                "CHAT_DATA_DIR",
                secure_data.path().to_str().unwrap().to_owned(),
            ),
            ("CHAT_AUTH", "jwt".to_owned()),
            (
                "CHAT_JWT_SECRET",
                "push-test-secret-of-at-least-32-bytes".to_owned(),
            ),
        ],
    )
    .await;
    for credential in ["", "Bearer not-a-token"] {
        let mut request =
            reqwest::Client::new().get(format!("http://{}/api/v1/push/settings", secure.addr()));
        if !credential.is_empty() {
            request = request.header("authorization", credential);
        }
        let status = request.send().await.unwrap().status().as_u16();
        assert_eq!(status, 401, "{credential:?}");
    }

    // A replica with no key: Web Push is off, and says so.
    let redis = TestRedis::start().unwrap();
    let presence = start(
        "presence",
        &[
            ("REDIS_URL", redis.url().to_owned()),
            ("CHAT_REDIS_PREFIX", redis.prefix().to_owned()),
            ("CHAT_AUTH", "open".to_owned()),
        ],
    )
    .await;
    for (method, path) in [
        ("GET", "/api/v1/push/vapid-public-key"),
        ("GET", "/api/v1/push/settings"),
    ] {
        let (status, answer) = call(presence.addr(), method, path, "bob", None).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (501, Some("unsupported")),
            "{path}: {answer}"
        );
    }
}
