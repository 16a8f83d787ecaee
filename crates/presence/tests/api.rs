//! The presence API over real HTTP, on both store engines.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chat_auth::Authenticator;
use chat_broker::memory::MemoryBus;
use chat_broker::redis::{RedisBroker, RedisOptions};
use chat_broker::{Broker, Handler, channel, envelope};
use chat_presence::PresenceService;
use chat_runtime::settings::ServerSettings;
use chat_store::memory::MemoryPresence;
use chat_store::redis::messages::{RedisStore, RedisStoreOptions};
use chat_store::redis::presence::{RedisNode, RedisNodeOptions, RedisPresence};
use chat_store::sqlite::SqliteStore;
use chat_store::{Direct, FrameText, Limits, MessageStore, Presence, PresenceNode, RoomStore};
use chat_testkit::WAIT;
use chat_testkit::redis::TestRedis;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const SECRET: &[u8] = b"presence-tests-secret-32-bytes-long!";

struct Api {
    addr: String,
    store: Arc<dyn MessageStore>,
    rooms: Arc<dyn RoomStore>,
    /// Counts connections, as a gateway would.
    node: Box<dyn PresenceNode>,
    observer: Box<dyn Broker>,
    heard: mpsc::UnboundedReceiver<(String, String)>,
    jwt: bool,
    _keep: (Option<TestRedis>, tempfile::TempDir),
}

#[derive(Clone, Copy)]
enum Kind {
    Sqlite,
    Redis,
}

fn observer_handler() -> (Handler, mpsc::UnboundedReceiver<(String, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |channel: &str, payload: Bytes| {
        if let Some((envelope::Outbound::Text(text), _)) = envelope::decode(payload) {
            let _ = tx.send((channel.to_owned(), text.to_string()));
        }
    });
    (handler, rx)
}

/// A store, a presence node and a reader of the same presence, the broker
/// they publish on, an observer node, and the Redis if any.
type Engines = (
    Arc<dyn MessageStore>,
    Arc<dyn RoomStore>,
    Box<dyn PresenceNode>,
    Arc<dyn Presence>,
    Arc<dyn Broker>,
    Box<dyn Broker>,
    Option<TestRedis>,
);

async fn start(kind: Kind, jwt: bool) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let (handler, heard) = observer_handler();
    let (store, rooms, node, presence, broker, observer, redis): Engines = match kind {
        Kind::Sqlite => {
            let bus = MemoryBus::new();
            let broker: Arc<dyn Broker> = Arc::new(bus.node(Arc::new(|_: &str, _| {})));
            let presence = MemoryPresence::new(Arc::clone(&broker));
            let store = SqliteStore::open(
                &dir.path().join("m.db"),
                Arc::clone(&broker),
                presence.clone(),
                Limits::default(),
            )
            .await
            .unwrap();
            (
                Arc::new(store.clone()),
                Arc::new(store),
                Box::new(presence.clone()),
                Arc::new(presence),
                broker,
                Box::new(bus.node(handler)),
                None,
            )
        }
        Kind::Redis => {
            let redis = TestRedis::start().unwrap();
            let options = RedisOptions {
                url: redis.url().into(),
                prefix: redis.prefix().into(),
                errors: None,
            };
            let store = RedisStore::start(RedisStoreOptions {
                url: redis.url().into(),
                prefix: redis.prefix().into(),
                limits: Limits::default(),
            })
            .unwrap();
            let node = RedisNode::start(RedisNodeOptions {
                url: redis.url().into(),
                prefix: redis.prefix().into(),
                lease: Duration::from_secs(30),
            })
            .unwrap();
            let presence = RedisPresence::connect(redis.url(), redis.prefix()).unwrap();
            let broker: Arc<dyn Broker> =
                Arc::new(RedisBroker::start(options.clone(), Arc::new(|_: &str, _| {})).unwrap());
            let observer = Box::new(RedisBroker::start(options, handler).unwrap());
            (
                Arc::new(store.clone()),
                Arc::new(store),
                Box::new(node),
                Arc::new(presence),
                broker,
                observer,
                Some(redis),
            )
        }
    };
    let auth = Arc::new(if jwt {
        Authenticator::jwt(SECRET)
    } else {
        Authenticator::open()
    });
    let service = PresenceService::new(
        Arc::clone(&store),
        Arc::clone(&rooms),
        presence,
        broker,
        auth,
        100,
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = ServerSettings {
        workers: 1,
        ..ServerSettings::default()
    };
    let http = chat_runtime::server::http_server(
        listener,
        &server,
        chat_runtime::server::HttpMetrics::register(&prometheus::Registry::new()).unwrap(),
        move |cfg| service.configure(cfg),
    )
    .unwrap();
    tokio::spawn(http);
    Api {
        addr,
        store,
        rooms,
        node,
        observer,
        heard,
        jwt,
        _keep: (redis, dir),
    }
}

impl Api {
    fn url(&self, path: &str, user: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        if self.jwt {
            let token = Authenticator::jwt(SECRET)
                .mint(user, None, Duration::from_secs(60))
                .unwrap();
            format!("http://{}{path}{sep}token={token}", self.addr)
        } else {
            format!("http://{}{path}{sep}user={user}", self.addr)
        }
    }

    async fn get(&self, path: &str, user: &str) -> (u16, Value) {
        let response = reqwest::get(self.url(path, user)).await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, user: &str, body: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(self.url(path, user))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn delete(&self, path: &str, user: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .delete(self.url(path, user))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn message(&self, from: &str, to: &str, body: &str) -> String {
        let id = ulid::Ulid::new().to_string();
        let message = json!({"id": id, "from": from, "to": to, "body": body, "ts": 1});
        let direct = Direct {
            id: id.clone(),
            from: from.into(),
            to: to.into(),
            client_id: None,
            frame: FrameText::Seed(
                json!({"sender": from, "receiver": to, "message": body}).to_string(),
            ),
            history: message.to_string(),
            copy_to_sender: false,
            envelope_header: envelope::text_header(),
            reply_to: None,
        };
        self.store.append_direct(direct).await.unwrap();
        id
    }
}

async fn unread_answers_for_the_caller_only(kind: Kind) {
    for jwt in [false, true] {
        let api = start(kind, jwt).await;
        api.message("alice", "bob", "1").await;
        api.message("alice", "bob", "2").await;
        api.message("carol", "bob", "3").await;
        assert_eq!(
            api.get("/api/v1/unread", "bob").await,
            (200, json!({"alice": 2, "carol": 1}))
        );
        assert_eq!(api.get("/api/v1/unread", "alice").await, (200, json!({})));
        let bare = reqwest::get(format!("http://{}/api/v1/unread", api.addr))
            .await
            .unwrap();
        assert_eq!(bare.status().as_u16(), 401, "no credentials");
    }
}

async fn reading_clears_the_counter_and_tells_both_sides(kind: Kind) {
    let mut api = start(kind, true).await;
    let id = api.message("alice", "bob", "read me").await;
    api.message("carol", "bob", "later").await;
    // Listening from now on: only what the read publishes is heard.
    api.observer.subscribe(&channel::user("bob")).await.unwrap();
    api.observer
        .subscribe(&channel::user("alice"))
        .await
        .unwrap();

    let body = json!({"peer": "alice", "up_to": id}).to_string();
    assert_eq!(
        api.post("/api/v1/read", "bob", &body).await,
        (200, json!({"carol": 1}))
    );
    let mut heard = Vec::new();
    for _ in 0..2 {
        heard.push(
            tokio::time::timeout(WAIT, api.heard.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    heard.sort();
    assert_eq!(heard[0].0, "user:alice");
    assert_eq!(
        serde_json::from_str::<Value>(&heard[0].1).unwrap(),
        json!({"type": "receipt", "from": "bob", "up_to": id})
    );
    assert_eq!(heard[1].0, "user:bob");
    assert_eq!(
        serde_json::from_str::<Value>(&heard[1].1).unwrap(),
        json!({"type": "unread", "counts": {"carol": 1}})
    );
    assert_eq!(
        api.get("/api/v1/unread", "bob").await,
        (200, json!({"carol": 1}))
    );
    // Reading the same message again changes nothing and says so with the
    // counters; a message that is not in the conversation is not found.
    assert_eq!(
        api.post("/api/v1/read", "bob", &body).await,
        (200, json!({"carol": 1}))
    );
    let carols = api.message("carol", "dave", "elsewhere").await;
    let (status, error) = api
        .post(
            "/api/v1/read",
            "bob",
            &json!({"peer": "alice", "up_to": carols}).to_string(),
        )
        .await;
    assert_eq!((status, error["error"].as_str()), (404, Some("not_found")));
    // Neither read was news: a marker published now is the next thing heard.
    api.observer
        .publish(&channel::user("bob"), envelope::text("marker"))
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, api.heard.recv()).await.unwrap(),
        Some((channel::user("bob"), "marker".to_owned())),
        "neither read was news"
    );
}

async fn presence_reports_online_and_last_seen(kind: Kind) {
    let api = start(kind, false).await;
    assert_eq!(
        api.get("/api/v1/presence/bob", "alice").await,
        (200, json!({"user": "bob", "online": false}))
    );
    api.node.connected("bob", 1).await.unwrap();
    assert_eq!(
        api.get("/api/v1/presence/bob", "alice").await,
        (200, json!({"user": "bob", "online": true}))
    );
    api.node.disconnected("bob", 1).await.unwrap();
    let (status, view) = api.get("/api/v1/presence/bob", "alice").await;
    assert_eq!((status, view["online"].as_bool()), (200, Some(false)));
    assert!(view["last_seen"].as_u64().unwrap() > 0);
}

async fn history_pages_through_the_callers_conversation(kind: Kind) {
    let api = start(kind, true).await;
    for i in 1..=5 {
        let (from, to) = if i % 2 == 1 {
            ("alice", "bob")
        } else {
            ("bob", "alice")
        };
        api.message(from, to, &format!("h{i}")).await;
    }
    let (status, page) = api
        .get("/api/v1/conversations/alice/messages?limit=2", "bob")
        .await;
    assert_eq!(status, 200);
    let bodies = |page: &Value| {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(bodies(&page), ["h5", "h4"]);
    let next = page["next_before"].as_str().unwrap().to_owned();
    let (_, page) = api
        .get(
            &format!("/api/v1/conversations/alice/messages?limit=2&before={next}"),
            "bob",
        )
        .await;
    assert_eq!(bodies(&page), ["h3", "h2"]);
    let next = page["next_before"].as_str().unwrap().to_owned();
    let (_, page) = api
        .get(
            &format!("/api/v1/conversations/bob/messages?limit=2&before={next}"),
            "alice",
        )
        .await;
    assert_eq!(bodies(&page), ["h1"]);
    assert!(
        page.get("next_before").is_none(),
        "the start of the conversation"
    );
    let (_, theirs) = api
        .get("/api/v1/conversations/alice/messages", "carol")
        .await;
    assert_eq!(
        theirs["messages"],
        json!([]),
        "carol sees only her own conversations"
    );
}

async fn bad_requests_get_precise_errors(kind: Kind) {
    let api = start(kind, false).await;
    let (status, body) = api
        .get("/api/v1/conversations/no%20spaces/messages", "bob")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_name"))
    );
    let (status, _) = api.post("/api/v1/read", "bob", "{not json").await;
    assert_eq!(status, 400);
    let (status, _) = api
        .post(
            "/api/v1/read",
            "bob",
            r#"{"peer":"alice","up_to":"x","extra":1}"#,
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = api.get("/api/v1/unread", "bad%20name").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_name"))
    );
    // Cursors and page sizes the store cannot take are refused here, as
    // invalid requests, not passed on to fail there as 503 (schemathesis
    // found a cursor over 64 bits doing that).
    for query in [
        "before=69719920967809587250",
        "before=1-99999999999999999999",
        "before=%2B5",
        "before=1-",
        "before=5",
        "before=x-1",
        "limit=0",
        "limit=201",
        "limit=-1",
    ] {
        let (status, body) = api
            .get(
                &format!("/api/v1/conversations/alice/messages?{query}"),
                "bob",
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_frame")),
            "{query}: {body}"
        );
    }
    // Methods a path does not take: 405, with what it takes.
    let response = reqwest::Client::new()
        .put(format!("http://{}/api/v1/unread?user=bob", api.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
}

/// Rooms over HTTP: a private room created with members, listed with
/// counts, its history paged, read, members added and removed by the
/// rules; outsiders refused.
async fn rooms_are_created_listed_paged_and_read_over_http(kind: Kind) {
    let api = start(kind, true).await;
    let (status, room) = api
        .post(
            "/api/v1/rooms",
            "alice",
            &json!({"name": "Board", "private": true, "members": ["bob", "bad\u{1}name"]})
                .to_string(),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    assert_eq!(room["room"], "board", "named by its id");
    assert_eq!(room["owner"], "alice");
    assert_eq!(
        room["members"],
        json!([{"user": "alice", "role": "owner"}, {"user": "bob", "role": "member"}])
    );
    assert_eq!(room["not_added"][0]["error"], "invalid_name");
    let (status, again) = api
        .post(
            "/api/v1/rooms",
            "carol",
            &json!({"name": "board"}).to_string(),
        )
        .await;
    assert_eq!((status, again["error"].as_str()), (409, Some("conflict")));
    // Outsiders: not the room, not its history, not its members.
    for (status, body) in [
        api.get("/api/v1/rooms/board", "carol").await,
        api.get("/api/v1/rooms/board/messages", "carol").await,
        api.post(
            "/api/v1/rooms/board/members",
            "carol",
            &json!({"user": "carol"}).to_string(),
        )
        .await,
    ] {
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("forbidden")),
            "{body}"
        );
    }
    assert_eq!(api.get("/api/v1/rooms/nowhere", "carol").await.0, 404);

    // Entries said in the room count for bob; alice's own do not.
    let rooms = api.rooms.clone();
    let mut last = String::new();
    for n in 0..3 {
        let message = chat_protocol::ChatMessage {
            seq: None,
            id: ulid::Ulid::new().to_string(),
            from: "alice".into(),
            from_name: None,
            to: None,
            room: Some("board".into()),
            body: format!("m{n}"),
            media: None,
            ts: 1,
            ..Default::default()
        };
        let (head, tail) = chat_protocol::ServerFrame::Message(message.clone()).room_template();
        last = message.id.clone();
        rooms
            .append_room(chat_store::RoomSend {
                room: "board".into(),
                id: message.id,
                from: "alice".into(),
                client_id: format!("c{n}"),
                head,
                tail,
                envelope_header: envelope::text_header(),
                reply_to: None,
                as_server: false,
            })
            .await
            .unwrap();
    }
    let (status, list) = api.get("/api/v1/rooms", "bob").await;
    assert_eq!(status, 200);
    assert_eq!(list["rooms"][0]["room"], "board");
    assert_eq!(list["rooms"][0]["unread"], 3);
    assert_eq!(list["rooms"][0]["private"], true);
    assert_eq!(list["rooms"][0]["last"]["body"], "m2");
    assert_eq!(
        api.get("/api/v1/unread?include=rooms", "bob").await,
        (200, json!({"counts": {}, "rooms": {"board": 3}}))
    );
    assert_eq!(
        api.get("/api/v1/unread", "bob").await,
        (200, json!({})),
        "the seed's shape"
    );
    assert_eq!(api.get("/api/v1/unread?include=all", "bob").await.0, 400);

    // History pages newest first, back to the room's first entry.
    let (status, page) = api.get("/api/v1/rooms/board/messages?limit=2", "bob").await;
    assert_eq!(status, 200);
    let bodies: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(bodies, ["m2", "m1"]);
    let before = page["next_before"].as_u64().unwrap();
    let (_, older) = api
        .get(
            &format!("/api/v1/rooms/board/messages?limit=10&before={before}"),
            "bob",
        )
        .await;
    let kinds: Vec<&str> = older["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["message", "member_joined", "member_joined"]);
    assert!(older.get("next_before").is_none());
    for before in ["0", "9223372036854775808", "18446744073709551616", "x"] {
        let (status, body) = api
            .get(
                &format!("/api/v1/rooms/board/messages?before={before}"),
                "bob",
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_frame")),
            "{before}: {body}"
        );
    }

    let (status, read) = api
        .post(
            "/api/v1/rooms/board/read",
            "bob",
            &json!({"up_to": last}).to_string(),
        )
        .await;
    assert_eq!((status, read), (200, json!({"room": "board", "unread": 0})));
    let (status, _) = api
        .post(
            "/api/v1/rooms/board/read",
            "bob",
            &json!({"up_to": "01JNOTANENTRY0000000000000"}).to_string(),
        )
        .await;
    assert_eq!(status, 404);

    // Members: bob (a member) adds carol; only the owner adds an admin;
    // bob cannot remove carol; alice can; bob leaves by himself.
    assert_eq!(
        api.post(
            "/api/v1/rooms/board/members",
            "bob",
            &json!({"user": "carol"}).to_string()
        )
        .await,
        (200, json!({"user": "carol", "added": true}))
    );
    let (status, body) = api
        .post(
            "/api/v1/rooms/board/members",
            "bob",
            &json!({"user": "dave", "role": "admin"}).to_string(),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    assert_eq!(
        api.delete("/api/v1/rooms/board/members/carol", "bob")
            .await
            .0,
        403
    );
    assert_eq!(
        api.delete("/api/v1/rooms/board/members/carol", "alice")
            .await
            .0,
        204
    );
    assert_eq!(
        api.delete("/api/v1/rooms/board/members/carol", "alice")
            .await
            .0,
        404,
        "gone already"
    );
    assert_eq!(
        api.delete("/api/v1/rooms/board/members/bob", "bob").await.0,
        204
    );
    let (_, list) = api.get("/api/v1/rooms", "bob").await;
    assert_eq!(list, json!({"rooms": []}));
}

macro_rules! suite {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::$scenario(super::Kind::Sqlite).await } )*
        }
        mod redis {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::$scenario(super::Kind::Redis).await } )*
        }
    };
}

suite!(
    unread_answers_for_the_caller_only,
    reading_clears_the_counter_and_tells_both_sides,
    presence_reports_online_and_last_seen,
    history_pages_through_the_callers_conversation,
    bad_requests_get_precise_errors,
    rooms_are_created_listed_paged_and_read_over_http,
);

#[tokio::test]
async fn every_endpoint_refuses_tokens_that_do_not_verify() {
    let api = start(Kind::Sqlite, true).await;
    let foreign = Authenticator::jwt(b"not-the-service-secret-but-32-bytes")
        .mint("bob", None, Duration::from_secs(60))
        .unwrap();
    let now = chat_store::now_millis() / 1000;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "bob", "iat": now - 7200, "exp": now - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJib2IiLCJleHAiOjQxMDI0NDQ4MDB9.";
    let client = reqwest::Client::new();
    for path in [
        "/api/v1/unread",
        "/api/v1/presence/alice",
        "/api/v1/conversations/alice/messages",
        "/api/v1/rooms",
        "/api/v1/rooms/board",
        "/api/v1/rooms/board/messages",
    ] {
        for token in [
            None,
            Some(foreign.as_str()),
            Some(expired.as_str()),
            Some(none),
        ] {
            let mut request = client.get(format!("http://{}{path}", api.addr));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 401, "{path} with {token:?}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized");
        }
    }
    let read = client
        .post(format!("http://{}/api/v1/read", api.addr))
        .bearer_auth(&foreign)
        .json(&json!({"peer": "alice", "up_to": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 401);
}

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/openapi/presence.json");
    let generated = chat_presence::openapi_json() + "\n";
    if std::env::var_os("UPDATE_PROTO").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date; run UPDATE_PROTO=1 cargo test -p chat-presence",
        path.display()
    );
}

#[tokio::test]
async fn the_openapi_document_is_served() {
    let api = start(Kind::Sqlite, false).await;
    let doc: Value = reqwest::get(format!("http://{}/api/v1/presence/openapi.json", api.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/unread"]["get"].is_object());
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
}
