//! The shipped binaries, run as an operator would run them.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location
#![allow(clippy::expect_used)] // a failed expect is a failed test, with its message

use chat_testkit::process::{Service, binary};
use chat_testkit::redis::TestRedis;
use chat_testkit::ws::{Ended, WsClient};
use chat_testkit::{http_get, unique};
use serde_json::json;

async fn chatd(data_dir: &std::path::Path) -> Service {
    let dir = data_dir.to_str().expect("utf-8 path");
    Service::start("chatd", &[], &[("CHAT_DATA_DIR", dir)])
        .await
        .expect("chatd starts")
}

#[tokio::test]
async fn chatd_serves_the_lobby_and_direct_messages_with_nothing_else_running() {
    let data = tempfile::tempdir().unwrap();
    let chatd = chatd(data.path()).await;
    let mut lobby = WsClient::lobby(chatd.addr()).await.unwrap();
    lobby.send_text("hello lobby").await.unwrap();
    assert_eq!(lobby.recv_text().await.unwrap(), "hello lobby");

    let mut alice = WsClient::user(chatd.addr(), "alice").await.unwrap();
    let mut bob = WsClient::user(chatd.addr(), "bob").await.unwrap();
    alice
        .send_json(&json!({"type":"send","id":"1","to":"bob","body":"hi"}))
        .await
        .unwrap();
    assert_eq!(alice.recv_ack("1").await.unwrap()["id"], "1");
    assert_eq!(bob.recv_type("message").await.unwrap()["body"], "hi");
    alice
        .send_text(r#"{"sender":"alice","receiver":"bob","message":"seed"}"#)
        .await
        .unwrap();
    assert_eq!(bob.recv_seed().await.unwrap()["message"], "seed");

    let (status, page) = http_get(chatd.addr(), "/").await.unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("<title>chat</title>"));
    let (status, _) = http_get(chatd.addr(), "/readyz").await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn sigterm_closes_connections_with_1001_and_exits_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let chatd = chatd(data.path()).await;
    let mut lobby = WsClient::lobby(chatd.addr()).await.unwrap();
    let mut bob = WsClient::user(chatd.addr(), "bob").await.unwrap();
    let code = chatd.terminate().await.unwrap();
    assert_eq!(lobby.ended().await.unwrap(), Ended::Closed(1001));
    assert_eq!(bob.ended().await.unwrap(), Ended::Closed(1001));
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn two_gateway_processes_sharing_redis_deliver_both_ways() {
    let redis = TestRedis::start().unwrap();
    let secret = "an-e2e-secret-of-at-least-32-bytes";
    let env = [
        ("REDIS_URL", redis.url()),
        ("CHAT_REDIS_PREFIX", redis.prefix()),
        ("CHAT_JWT_SECRET", secret),
    ];
    let one = Service::start("gateway", &[], &env).await.unwrap();
    let two = Service::start("gateway", &[], &env).await.unwrap();

    for (a, b) in [(&one, &two), (&two, &one)] {
        let lobby_path = format!("/ws/?token={}", token(secret, "carol"));
        let mut lobby_a = WsClient::connect(a.addr(), &lobby_path).await.unwrap();
        let mut lobby_b = WsClient::connect(b.addr(), &lobby_path).await.unwrap();
        let text = unique("lobby-");
        lobby_a.send_text(text.clone()).await.unwrap();
        assert_eq!(lobby_b.recv_text().await.unwrap(), text);
        assert_eq!(lobby_a.recv_text().await.unwrap(), text);

        let alice_path = format!("/ws/alice/?token={}", token(secret, "alice"));
        let bob_path = format!("/ws/bob/?token={}", token(secret, "bob"));
        let mut alice = WsClient::connect(a.addr(), &alice_path).await.unwrap();
        let mut bob = WsClient::connect(b.addr(), &bob_path).await.unwrap();
        alice
            .send_json(&json!({"type":"send","id":text,"to":"bob","body":text}))
            .await
            .unwrap();
        alice.recv_ack(&text).await.unwrap();
        assert_eq!(bob.recv_type("message").await.unwrap()["body"], text);
        bob.send_text(format!(
            r#"{{"sender":"bob","receiver":"alice","message":"{text}"}}"#
        ))
        .await
        .unwrap();
        assert_eq!(alice.recv_seed().await.unwrap()["message"], text);
    }
}

/// A token minted by `chatd token`, as a script would get one.
fn token(secret: &str, user: &str) -> String {
    let output = std::process::Command::new(binary("chatd").unwrap())
        .args(["token", user, "--ttl", "10m"])
        .env("CHAT_JWT_SECRET", secret)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn chatd_in_jwt_mode_takes_the_tokens_it_mints_and_refuses_others() {
    let data = tempfile::tempdir().unwrap();
    let secret = "chatd-jwt-secret-with-32-or-more-bytes";
    let env = [
        ("CHAT_AUTH", "jwt"),
        ("CHAT_JWT_SECRET", secret),
        ("CHAT_DATA_DIR", data.path().to_str().unwrap()),
    ];
    let chatd = Service::start("chatd", &[], &env).await.unwrap();
    let path = format!("/ws/alice/?token={}", token(secret, "alice"));
    WsClient::connect(chatd.addr(), &path).await.unwrap();
    assert_eq!(
        WsClient::refused_status(chatd.addr(), "/ws/alice/")
            .await
            .unwrap(),
        401
    );
    let other = format!("/ws/bob/?token={}", token(secret, "alice"));
    assert_eq!(
        WsClient::refused_status(chatd.addr(), &other)
            .await
            .unwrap(),
        403
    );
    let forged = format!(
        "/ws/alice/?token={}",
        token("another-secret-that-is-32-bytes-long", "alice")
    );
    assert_eq!(
        WsClient::refused_status(chatd.addr(), &forged)
            .await
            .unwrap(),
        401
    );
}

#[test]
fn unsafe_identity_settings_refuse_to_start() {
    let run = |name: &str, env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(binary(name).unwrap());
        command
            .env_remove("REDIS_URL")
            .env("CHAT_LISTEN", "127.0.0.1:0");
        for (k, v) in env {
            command.env(k, v);
        }
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (code, err) = run("gateway", &[("REDIS_URL", "redis://127.0.0.1:1/")]);
    assert_eq!(code, Some(2), "the gateway defaults to jwt: {err}");
    assert!(err.contains("CHAT_JWT_SECRET"), "{err}");
    let (code, err) = run(
        "chatd",
        &[("CHAT_AUTH", "jwt"), ("CHAT_JWT_SECRET", "too-short")],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("CHAT_JWT_SECRET") && err.contains("32 bytes"),
        "{err}"
    );
    let (code, err) = run("chatd", &[("CHAT_LISTEN", "0.0.0.0:0")]);
    assert_eq!(code, Some(2), "open mode on a public address: {err}");
    assert!(err.contains("CHAT_AUTH"), "{err}");
    let (code, err) = run("chatd", &[("CHAT_ALLOWED_ORIGINS", "not an origin")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("CHAT_ALLOWED_ORIGINS"), "{err}");
}

#[test]
fn help_lists_every_setting() {
    for name in ["chatd", "gateway"] {
        let output = std::process::Command::new(binary(name).unwrap())
            .arg("--help")
            .output()
            .unwrap();
        assert!(output.status.success());
        let help = String::from_utf8(output.stdout).unwrap();
        for setting in [
            "CHAT_LISTEN",
            "REDIS_URL",
            "CHAT_AUTH",
            "CHAT_LOG_FORMAT",
            "RUST_LOG",
            "CHAT_PING_INTERVAL",
            "CHAT_IDLE_TIMEOUT",
            "CHAT_MAX_FRAME_BYTES",
            "CHAT_RATE_PER_SEC",
            "CHAT_OUTBOUND_QUEUE",
            "--config",
            "CHAT_JWT_SECRET",
            "CHAT_ALLOWED_ORIGINS",
        ] {
            assert!(
                help.contains(setting),
                "{name} --help does not mention {setting}"
            );
        }
    }
    let chatd_help = std::process::Command::new(binary("chatd").unwrap())
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&chatd_help.stdout).contains("CHAT_DATA_DIR"));
}

#[test]
fn a_bad_setting_exits_non_zero_with_one_line_naming_it() {
    let cases = [
        ("chatd", "CHAT_LISTEN", "nowhere"),
        ("chatd", "CHAT_IDLE_TIMEOUT", "1s"),
        ("chatd", "CHAT_AUTH", "magic"),
        ("chatd", "CHAT_MAX_FRAME_BYTES", "lots"),
        ("gateway", "REDIS_URL", ""),
        ("gateway", "REDIS_URL", "redis+cluster://127.0.0.1"),
        ("gateway", "REDIS_URL", "127.0.0.1:6379"),
        ("presence", "REDIS_URL", "redis+cluster://127.0.0.1:7000/0"),
    ];
    for (name, setting, value) in cases {
        let mut command = std::process::Command::new(binary(name).unwrap());
        command
            .env_remove("REDIS_URL")
            .env("CHAT_LISTEN", "127.0.0.1:0");
        if !value.is_empty() {
            command.env(setting, value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{name} {setting}={value}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(setting),
            "{name}: '{stderr}' does not name {setting}"
        );
    }
}

#[tokio::test]
async fn a_config_file_is_read_and_the_environment_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chat.toml");
    std::fs::write(&file, "idle_timeout = \"1s\"\n").unwrap();
    let data = dir.path().to_str().unwrap();
    let path = file.to_str().unwrap();
    // The file's idle_timeout (1s) is not longer than the ping interval: refused, by name.
    let output = std::process::Command::new(binary("chatd").unwrap())
        .args(["--config", path])
        .env("CHAT_LISTEN", "127.0.0.1:0")
        .env("CHAT_DATA_DIR", data)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("CHAT_IDLE_TIMEOUT"));
    // The environment overrides the file, so the same file now starts.
    let chatd = Service::start(
        "chatd",
        &["--config", path],
        &[("CHAT_IDLE_TIMEOUT", "60s"), ("CHAT_DATA_DIR", data)],
    )
    .await
    .expect("starts with the override");
    assert_eq!(http_get(chatd.addr(), "/healthz").await.unwrap().0, 200);
    // A --config naming a missing file is refused.
    let missing = std::process::Command::new(binary("chatd").unwrap())
        .args(["--config", "/nonexistent/chat.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/chat.toml"));
}

/// `chatd vapid-key` prints the one line to set (a key the settings take)
/// on standard output, and the public key apart, so `$(chatd vapid-key)`
/// is the setting; each run makes a new key.
#[test]
fn chatd_vapid_key_prints_the_setting_alone() {
    let run = || {
        std::process::Command::new(binary("chatd").unwrap())
            .arg("vapid-key")
            .output()
            .unwrap()
    };
    let (one, two) = (run(), run());
    assert!(one.status.success());
    let line = String::from_utf8(one.stdout).unwrap();
    assert_eq!(line.lines().count(), 1, "{line}");
    let key = line
        .trim()
        .strip_prefix("CHAT_VAPID_PRIVATE_KEY=")
        .expect("the setting's name");
    assert!(chat_push::VapidKey::parse(key.as_bytes()).is_ok());
    assert!(String::from_utf8_lossy(&one.stderr).contains("public key"));
    assert_ne!(String::from_utf8(two.stdout).unwrap(), line);
}
