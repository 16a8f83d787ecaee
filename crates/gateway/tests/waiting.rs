//! What a connection does while something it depends on is slow or away:
//! it keeps writing to its client while its own frame waits, and a
//! goodbye that Redis cannot take yet is counted once Redis can.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

mod support;

use std::sync::Arc;

use chat_gateway::Engine;
use chat_gateway::media::{MediaDirectory, MediaLookupError};
use chat_protocol::MediaInfo;
use chat_testkit::redis::TestRedis;
use chat_testkit::ws::WsClient;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::json;
use support::{Cluster, Node, redis_options, settings};
use tokio::sync::Notify;

/// A media service that answers only when told to.
struct HeldMedia(Arc<Notify>);

impl MediaDirectory for HeldMedia {
    fn lookup(
        &self,
        _: Option<&str>,
        id: &str,
    ) -> BoxFuture<'static, Result<MediaInfo, MediaLookupError>> {
        let (release, id) = (Arc::clone(&self.0), id.to_owned());
        async move {
            release.notified().await;
            Err(MediaLookupError::NotFound(id))
        }
        .boxed()
    }

    fn delete(&self, _: &str) -> BoxFuture<'static, Result<(), MediaLookupError>> {
        futures_util::future::ready(Ok(())).boxed()
    }
}

/// Bob's outbound queue holds 8 frames. While his own `send` waits on the
/// media service, alice sends him 30 messages (60 frames with the
/// counters): he gets every one as it comes, and is not closed as a slow
/// reader; his `send` is answered when the media service answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_on_its_own_send_keeps_receiving() {
    let mut s = settings();
    s.outbound_queue = 8;
    let cluster = Cluster::memory(s).await;
    let release = Arc::new(Notify::new());
    cluster.nodes[0]
        .gateway
        .set_media(Arc::new(HeldMedia(Arc::clone(&release))));
    let addr = cluster.addr(0);
    let mut bob = WsClient::user(addr, "bob").await.unwrap();
    bob.recv_type("unread").await.unwrap();
    let mut alice = WsClient::user(addr, "alice").await.unwrap();
    alice.recv_type("unread").await.unwrap();
    bob.send_json(&json!({
        "type": "send", "id": "slow", "to": "alice", "body": "with a file",
        "media": {"id": "01JDQZ7V8Y3M5T2K9W4XN6B1CE"}
    }))
    .await
    .unwrap();
    for i in 0..30 {
        let id = format!("m{i}");
        alice
            .send_json(&json!({"type": "send", "id": id, "to": "bob", "body": id}))
            .await
            .unwrap();
        alice.recv_ack(&id).await.unwrap();
        let message = bob.recv_type("message").await.unwrap();
        assert_eq!(message["body"], id, "delivered while bob's send waits");
    }
    release.notify_one();
    let error = bob.recv_type("error").await.unwrap();
    assert_eq!(
        (error["id"].as_str(), error["code"].as_str()),
        (Some("slow"), Some("not_found"))
    );
    // Still open: bob's next frame is answered.
    bob.send_json(&json!({"type": "send", "id": "next", "to": "alice", "body": "still here"}))
        .await
        .unwrap();
    bob.recv_ack("next").await.unwrap();
}

/// Redis holds every command for 3 s (longer than a call waits) while bob
/// closes his only connection: the count-out is retried until it lands, so
/// his watcher hears he went offline, and what is sent to him meanwhile is
/// kept for his next connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goodbye_while_redis_is_paused_is_counted_once_redis_answers() {
    let redis = TestRedis::private().unwrap();
    let node = Node::start(settings(), Engine::Redis(redis_options(&redis))).await;
    let mut carol = WsClient::user(&node.addr, "carol").await.unwrap();
    carol.recv_type("unread").await.unwrap();
    carol
        .send_json(&json!({"type": "watch", "users": ["bob"]}))
        .await
        .unwrap();
    assert_eq!(carol.recv_type("presence").await.unwrap()["online"], false);
    let mut bob = WsClient::user(&node.addr, "bob").await.unwrap();
    bob.recv_type("unread").await.unwrap();
    assert_eq!(carol.recv_type("presence").await.unwrap()["online"], true);

    let mut admin = redis.connection().unwrap();
    ::redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(3_000)
        .arg("ALL")
        .query::<()>(&mut admin)
        .unwrap();
    bob.close().await.unwrap();
    let offline = carol.recv_type("presence").await.unwrap();
    assert_eq!(
        (offline["user"].as_str(), offline["online"].as_bool()),
        (Some("bob"), Some(false))
    );

    let mut alice = WsClient::user(&node.addr, "alice").await.unwrap();
    alice.recv_type("unread").await.unwrap();
    alice
        .send_json(&json!({"type": "send", "id": "a1", "to": "bob", "body": "while away"}))
        .await
        .unwrap();
    alice.recv_ack("a1").await.unwrap();
    // A client that does not sync (the seed's) gets it from the offline list.
    let mut bob = WsClient::user(&node.addr, "bob").await.unwrap();
    bob.recv_type("unread").await.unwrap();
    assert_eq!(
        bob.recv_type("message").await.unwrap()["body"],
        "while away"
    );
}
