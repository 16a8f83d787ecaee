//! The workspace's real binaries, run as child processes.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Path of a workspace binary, built with cargo if it is not there yet.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .context("test executable has no parent")?;
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build
            .args(["build", "--bin", name])
            .current_dir(crate::workspace_root());
        if dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().context("running cargo build")?;
        anyhow::ensure!(status.success(), "cargo build --bin {name} failed");
    }
    Ok(path)
}

/// A running service process, killed when dropped.
pub struct Service {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts binary `name` with `args` and `envs`, listening on port 0, and
    /// waits until it logs the address it bound (`listening on http://…`).
    pub async fn start(name: &str, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut command = Command::new(binary(name)?);
        command
            .args(args)
            .env("CHAT_LISTEN", "127.0.0.1:0")
            .env("CHAT_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env_remove("REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + crate::WAIT;
        let addr = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(remaining, lines.next_line())
                .await
                .with_context(|| format!("{name} did not report its address in time"))??;
            let Some(line) = line else {
                bail!("{name} exited before listening")
            };
            let addr = listening_addr(&line);
            lock(&log).push(line);
            if let Some(addr) = addr {
                break addr;
            }
        };
        // Keep draining the log so the child never blocks on a full pipe,
        // and keep it for tests that read it.
        let kept = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                lock(&kept).push(line);
            }
        });
        Ok(Self { child, addr, log })
    }

    /// `host:port` the service listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Everything the service has logged (stdout) so far.
    pub fn log(&self) -> String {
        lock(&self.log).join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status code.
    pub async fn terminate(mut self) -> anyhow::Result<Option<i32>> {
        let pid = self.child.id().context("already exited")?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(crate::WAIT, self.child.wait()).await??;
        Ok(status.code())
    }

    /// Kills the process with SIGKILL.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Finds `listening on http://ADDR` in a JSON log line.
fn listening_addr(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let message = value.pointer("/fields/message")?.as_str()?;
    let url = message.strip_prefix("listening on http://")?;
    Some(url.trim_end_matches('/').to_owned())
}
