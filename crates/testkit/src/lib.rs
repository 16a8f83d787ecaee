//! Test support shared by every crate's tests, so each test reads like the
//! behaviour it checks.
//!
//! - [`redis`]: a real Redis for a test — `REDIS_URL` when set, otherwise a
//!   private `redis-server` on a free port — with a unique key prefix.
//! - [`ws`]: a WebSocket client whose every wait is an event with a deadline,
//!   and whose every received typed frame is checked against `proto/schema`.
//! - [`schema`]: the committed JSON Schemas of the protocol.
//! - [`process`]: the workspace's real binaries, started as child processes.

pub mod process;
pub mod redis;
pub mod schema;
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
