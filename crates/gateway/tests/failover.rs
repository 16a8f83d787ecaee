//! Failover: a Redis Cluster master killed with SIGKILL while direct and
//! room messages flow through two gateway replicas. Nothing acknowledged
//! is lost, nothing is stored twice, and once a replica took over the
//! gateways are ready again by themselves, their subscriptions with them.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

#[allow(unused_macros)]
#[macro_use]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_gateway::Access;
use chat_testkit::http_get;
use chat_testkit::redis_cluster::TestRedisCluster;
use chat_testkit::ws::WsClient;
use serde_json::{Value, json};
use support::{Cluster, settings};

/// How long the cluster may take to promote a replica and the gateways to
/// see it (the test cluster's node timeout is 2 s).
const FAILOVER: Duration = Duration::from_secs(60);

/// Sends `frame` (whose `id` is `id`) and answers whether it was
/// acknowledged: `false` for an `unavailable` error (the store did not
/// answer in time, as while a master is down), anything else fails.
async fn acked(client: &mut WsClient, frame: Value, id: &str) -> bool {
    client.send_json(&frame).await.unwrap();
    loop {
        let got = client.recv_json().await.unwrap();
        if got["id"] != id {
            continue; // copies, counters, room entries
        }
        match got["type"].as_str() {
            Some("ack") => return true,
            Some("error") => {
                assert_eq!(got["code"], "unavailable", "{got}");
                eprintln!("{id}: {got}");
                return false;
            }
            _ => continue,
        }
    }
}

/// The bodies of the messages kept for `user` (their inbox from the start,
/// replayed on a connection with `?since=0`), in order.
async fn inbox_ids(addr: &str, user: &str) -> Vec<String> {
    let mut client = WsClient::connect(addr, &format!("/ws/{user}/?since=0"))
        .await
        .unwrap();
    messages_until_synced(&mut client, None, None).await
}

/// The bodies of the messages `client` receives until the `synced` that ends
/// a replay or a `sync` (of `room` when given); one asked with `sync_id`
/// when the replay had more, from where it stopped, until none is left.
async fn messages_until_synced(
    client: &mut WsClient,
    room: Option<&str>,
    sync_id: Option<&str>,
) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let frame = client.recv_json().await.unwrap();
        match frame["type"].as_str() {
            Some("message") if frame["room"].as_str() == room => {
                ids.push(frame["body"].as_str().unwrap().to_owned());
            }
            Some("synced") if frame["id"].as_str() == sync_id => {
                if frame["more"] != true {
                    return ids;
                }
                let mut ask = json!({"type": "sync", "id": "more", "since": frame["until"]});
                if let Some(room) = room {
                    ask["room"] = room.into();
                }
                client.send_json(&ask).await.unwrap();
                ids.extend(Box::pin(messages_until_synced(client, room, Some("more"))).await);
                return ids;
            }
            _ => {}
        }
    }
}

/// Asserts that `kept` (message bodies, each sent once) holds each of
/// `acked` once, in order, and nothing twice (a send answered
/// `unavailable` may be kept, once).
fn each_kept_once(kept: &[String], acked: &[String], whose: &str) {
    let kept_acked: Vec<&String> = kept.iter().filter(|id| acked.contains(id)).collect();
    assert_eq!(kept_acked, acked.iter().collect::<Vec<_>>(), "{whose}");
    let distinct: std::collections::HashSet<&String> = kept.iter().collect();
    assert_eq!(
        distinct.len(),
        kept.len(),
        "{whose}: stored twice: {kept:?}"
    );
}

/// Whether `/readyz` of `addr` answers 200.
async fn ready(addr: &str) -> bool {
    matches!(http_get(addr, "/readyz").await, Ok((200, _)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_under_traffic_fails_over_and_nothing_acked_is_lost() {
    let redis = Arc::new(TestRedisCluster::start().unwrap());
    let cluster = Cluster::redis_cluster_with(settings(), Access::open(), Arc::clone(&redis)).await;
    let (first, second) = (cluster.addr(0).to_owned(), cluster.addr(1).to_owned());
    chat_testkit::until_ready(&first).await.unwrap();
    chat_testkit::until_ready(&second).await.unwrap();
    // Receivers spread over every shard; they read their inboxes at the end.
    let receivers: Vec<String> = (0..12).map(|i| format!("receiver{i}")).collect();
    let mut sender = WsClient::user(&first, "sender").await.unwrap();
    let mut member = WsClient::user(&second, "member").await.unwrap();
    for (client, id) in [(&mut sender, "j1"), (&mut member, "j2")] {
        let join = json!({"type": "join", "id": id, "room": "ops"});
        client.send_json(&join).await.unwrap();
        client.recv_type("joined").await.unwrap();
    }
    // One receiver stays connected: live delivery must come back.
    let mut watcher = WsClient::user(&second, "watcher").await.unwrap();
    watcher.recv_type("unread").await.unwrap();

    let mut direct: HashMap<String, Vec<String>> = HashMap::new();
    let mut room = Vec::new();
    let mut n = 0;
    let mut send_round = async |sender: &mut WsClient| -> (bool, bool) {
        n += 1;
        let to = &receivers[n % receivers.len()];
        let (id, body) = (format!("d{n}"), format!("direct {n}"));
        let sent_direct = json!({"type": "send", "id": id, "to": to, "body": body});
        let direct_acked = acked(sender, sent_direct, &id).await;
        if direct_acked {
            direct.entry(to.clone()).or_default().push(body);
        }
        let (id, body) = (format!("r{n}"), format!("room {n}"));
        let sent_room = json!({"type": "send", "id": id, "room": "ops", "body": body});
        let room_acked = acked(sender, sent_room, &id).await;
        if room_acked {
            room.push(body);
        }
        (direct_acked, room_acked)
    };
    for _ in 0..30 {
        assert_eq!(
            send_round(&mut sender).await,
            (true, true),
            "before the failure"
        );
    }

    let victim = redis.masters().unwrap()[0];
    redis.kill(victim).unwrap();
    // Traffic goes on until a replica took the dead master's place and
    // both gateways say they are ready again, by themselves. (Whether a
    // probe catches them not ready depends on when it comes: the broker's
    // own failover test sees that.)
    let start = Instant::now();
    let (mut failed, mut came_back) = (0, false);
    while !came_back {
        assert!(
            start.elapsed() < FAILOVER,
            "no failover within {FAILOVER:?}"
        );
        let (direct_acked, room_acked) = send_round(&mut sender).await;
        failed += usize::from(!direct_acked) + usize::from(!room_acked);
        let now_ready = ready(&first).await && ready(&second).await;
        // Back once a replica took the dead master's place and both
        // gateways say so.
        let promoted = redis.roles().is_ok_and(|roles| {
            let masters = roles
                .iter()
                .filter(|(port, master)| *master && *port != victim);
            masters.count() == 3
        });
        came_back = promoted && now_ready;
    }
    assert!(
        failed > 0,
        "the lost master's slots were out of reach for a while"
    );
    for _ in 0..30 {
        assert_eq!(
            send_round(&mut sender).await,
            (true, true),
            "after the failover"
        );
    }

    // Live delivery and room subscriptions are back.
    let live = json!({"type": "send", "id": "live", "to": "watcher", "body": "still there?"});
    assert!(acked(&mut sender, live, "live").await);
    let got = watcher.recv_until("message").await.unwrap();
    assert_eq!(got["body"], "still there?");
    let mut heard = None;
    while heard.is_none() {
        let frame = member.recv_until("message").await.unwrap();
        heard = (frame["body"] == *room.last().unwrap()).then_some(());
    }

    // Every acknowledged message is kept once, in order of sending.
    for receiver in &receivers {
        let kept = inbox_ids(&second, receiver).await;
        let acked = direct.get(receiver).cloned().unwrap_or_default();
        each_kept_once(&kept, &acked, receiver);
    }
    let ask = json!({"type": "sync", "id": "room", "since": 0, "room": "ops"});
    member.send_json(&ask).await.unwrap();
    let kept = messages_until_synced(&mut member, Some("ops"), Some("room")).await;
    each_kept_once(&kept, &room, "the room");
    assert!(room.len() >= 60 && direct.values().map(Vec::len).sum::<usize>() >= 60);
}
