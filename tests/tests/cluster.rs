//! The compose topology as processes on loopback (`scripts/cluster`): three
//! gateways behind Debian's nginx rendered from the compose template.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chat_testkit::http_get;
use chat_testkit::process::binary;
use chat_testkit::ws::{Ended, WsClient};
use serde_json::json;

/// A running cluster, stopped when dropped.
struct Cluster {
    dir: PathBuf,
    env: HashMap<String, String>,
}

impl Cluster {
    fn start() -> Self {
        for name in ["gateway", "media", "presence", "chatd"] {
            binary(name).unwrap(); // built by the test script; builds here if missing
        }
        let dir = tempfile::tempdir().unwrap().keep();
        let status = Command::new(chat_testkit::workspace_root().join("scripts/cluster"))
            .arg("start")
            .arg(&dir)
            .env("CLUSTER_NO_BUILD", "1")
            .status()
            .unwrap();
        let cluster = Self {
            env: read_env(&dir.join("cluster.env")),
            dir,
        };
        assert!(status.success(), "scripts/cluster start failed");
        cluster
    }

    fn lb(&self) -> &str {
        &self.env["LB"]
    }

    fn token(&self, user: &str) -> String {
        let output = Command::new(binary("chatd").unwrap())
            .args(["token", user])
            .env("CHAT_JWT_SECRET", &self.env["CHAT_JWT_SECRET"])
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    fn gateways(&self) -> Vec<(String, String)> {
        let ports = self.env["GATEWAY_PORTS"].split_whitespace();
        let pids = self.env["GATEWAY_PIDS"].split_whitespace();
        ports
            .zip(pids)
            .map(|(port, pid)| (format!("127.0.0.1:{port}"), pid.to_owned()))
            .collect()
    }

    /// User connections each gateway holds, by its address.
    async fn user_connections(&self) -> HashMap<String, u64> {
        let mut counts = HashMap::new();
        for (addr, _) in self.gateways() {
            let (_, metrics) = http_get(&addr, "/metrics").await.unwrap_or_default();
            let count = metrics
                .lines()
                .find_map(|l| l.strip_prefix(r#"chat_gateway_connections{endpoint="user"} "#))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            counts.insert(addr, count);
        }
        counts
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(chat_testkit::workspace_root().join("scripts/cluster"))
            .arg("stop")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_env(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_through_the_balancer_spans_replicas_and_survives_losing_one() {
    let cluster = Cluster::start();
    let (page_status, page) = http_get(cluster.lb(), "/").await.unwrap();
    assert_eq!(page_status, 200);
    assert!(
        page.contains("<title>chat</title>"),
        "the page through the balancer"
    );
    // Web Push through the one origin: the service worker from a gateway,
    // the key from the presence service, the same key every replica signs with.
    let (worker_status, worker) = http_get(cluster.lb(), "/sw.js").await.unwrap();
    assert_eq!(worker_status, 200);
    assert!(worker.contains("showNotification"), "the service worker");
    let (key_status, key) = http_get(cluster.lb(), "/api/v1/push/vapid-public-key")
        .await
        .unwrap();
    assert_eq!(key_status, 200, "{key}");
    let key: serde_json::Value = serde_json::from_str(&key).unwrap();
    assert_eq!(key["key"].as_str().map(str::len), Some(87), "{key}");

    let bob_path = format!("/ws/bob/?token={}", cluster.token("bob"));
    let mut bob = WsClient::connect(cluster.lb(), &bob_path).await.unwrap();
    bob.recv_type("unread").await.unwrap();
    let counts = cluster.user_connections().await;
    let bobs = counts
        .iter()
        .find(|(_, n)| **n == 1)
        .map(|(a, _)| a.clone())
        .unwrap();
    let mut alice = WsClient::connect(
        cluster.lb(),
        &format!("/ws/alice/?token={}", cluster.token("alice")),
    )
    .await
    .unwrap();
    alice.recv_type("unread").await.unwrap();
    let counts = cluster.user_connections().await;
    assert_eq!(counts.values().sum::<u64>(), 2);
    assert_eq!(
        counts[&bobs], 1,
        "alice landed on another replica than bob: {counts:?}"
    );

    // A media message across replicas, through the one origin.
    let png = chat_testkit::PNG_1X1;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(png.to_vec()).file_name("dot.png"),
    );
    let uploaded: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{}/api/v1/media", cluster.lb()))
        .bearer_auth(cluster.token("alice"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let send = json!({"type": "send", "id": "m", "to": "bob", "body": "via the balancer", "media": {"id": uploaded["id"]}});
    alice.send_json(&send).await.unwrap();
    alice.recv_ack("m").await.unwrap();
    let got = bob.recv_type("message").await.unwrap();
    assert_eq!(got["media"]["kind"], "image");
    let url = format!(
        "http://{}{}",
        cluster.lb(),
        got["media"]["url"].as_str().unwrap()
    );
    assert_eq!(
        reqwest::get(url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        png
    );

    // bob's gateway dies; he comes back through the balancer to another one
    // and, syncing from the last `seq` he saw (as the reference client
    // does), gets what alice sent meanwhile.
    let last_seq = got["seq"].as_u64().unwrap();
    let (_, pid) = cluster
        .gateways()
        .into_iter()
        .find(|(a, _)| *a == bobs)
        .unwrap();
    Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert_eq!(bob.ended().await.unwrap(), Ended::Dropped);
    alice
        .send_json(&json!({"type": "send", "id": "g", "to": "bob", "body": "while you were away"}))
        .await
        .unwrap();
    alice.recv_ack("g").await.unwrap();
    let mut bob = WsClient::connect(cluster.lb(), &format!("{bob_path}&since={last_seq}"))
        .await
        .unwrap();
    assert_eq!(
        bob.recv_type("message").await.unwrap()["body"],
        "while you were away"
    );
    assert_eq!(bob.recv_type("synced").await.unwrap()["more"], false);
    let counts = cluster.user_connections().await;
    assert_eq!(
        counts.get(&bobs).copied().unwrap_or(0),
        0,
        "not on the dead one"
    );
    assert_eq!(
        counts.values().sum::<u64>(),
        2,
        "both connected again: {counts:?}"
    );
}
