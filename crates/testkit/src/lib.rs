//! Test support shared by every crate's tests, so each test reads like the
//! behaviour it checks.
//!
//! - [`redis`]: a real Redis for a test — `REDIS_URL` when set, otherwise a
//!   private `redis-server` on a free port — with a unique key prefix.
//! - [`ws`]: a WebSocket client whose every wait is an event with a deadline,
//!   and whose every received typed frame is checked against `proto/schema`.
//! - [`schema`]: the committed JSON Schemas of the protocol.
//! - [`postgres`]: a fresh PostgreSQL database per test.
//! - [`process`]: the workspace's real binaries, started as child processes.
//! - [`raw`]: a WebSocket client writing raw frames, for protocol errors.
//! - [`identity`]: a stand-in identity provider: keys of every kind,
//!   tokens signed with them, a JWKS endpoint that rotates and goes down.
//! - [`proxy`]: a TCP proxy that holds back a server's answers (a slow
//!   network), to show what a client does when it gives up waiting.

pub mod identity;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod push;
pub mod raw;
pub mod redis;
pub mod redis_cluster;
pub mod schema;
pub mod webhooks;
pub mod ws;

use std::time::Duration;

/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(10);

/// A name unique to this call, for users, rooms and key prefixes.
pub fn unique(stem: &str) -> String {
    format!("{stem}{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// The workspace root.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Waits until `condition` holds, checking every 10 ms, for at most [`WAIT`].
/// For state that changes without an event the test can subscribe to
/// (a registry emptied by a background task): never a fixed sleep.
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut condition: F) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// [`eventually`] for a condition that needs I/O to check (a store or an
/// HTTP endpoint asked again every 10 ms, for at most [`WAIT`]).
pub async fn eventually_async<F, Fut>(what: &str, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// `GET http://{addr}{path}`: status and body.
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(WAIT)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// Waits until `GET /readyz` on `addr` answers 200, for at most [`WAIT`]:
/// a service coming back after a dependency returned.
pub async fn until_ready(addr: &str) -> anyhow::Result<()> {
    eventually_async(&format!("{addr} is ready again"), || async {
        matches!(http_get(addr, "/readyz").await, Ok((200, _)))
    })
    .await
}

/// A 1×1 transparent PNG: the smallest real image, for upload tests.
pub const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

/// One test module per engine running the same scenarios: `contract!(redis:
/// a, b)` makes `redis::a` and `redis::b`, each calling the scenario `a`
/// with the fixture `redis().await`. The way each contract suite (rooms,
/// presence, the message store, the lifecycle) runs on every engine.
#[macro_export]
macro_rules! contract {
    ($engine:ident: $($scenario:ident),* $(,)?) => {
        mod $engine {
            $( #[tokio::test]
               async fn $scenario() { super::$scenario(super::$engine().await).await } )*
        }
    };
}
