//! A real Redis for tests.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A Redis a test can use: the shared one named by `REDIS_URL`, or a private
/// `redis-server` this value owns (stopped when dropped).
pub struct TestRedis {
    url: String,
    prefix: String,
    private: Option<Private>,
}

struct Private {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Append-only file, fsynced on every write (as deployed): what Redis
    /// acknowledged survives a kill -9.
    durable: bool,
}

impl TestRedis {
    /// `REDIS_URL` if set, else a private server. Never skips: if neither
    /// works the test fails, naming what is missing.
    pub fn start() -> anyhow::Result<Self> {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => Ok(Self {
                url,
                prefix: crate::unique("test:"),
                private: None,
            }),
            _ => Self::private(),
        }
    }

    /// Always a private server, for tests that stop and restart Redis.
    pub fn private() -> anyhow::Result<Self> {
        Self::private_with(false)
    }

    /// A private server that keeps what it acknowledged across a kill -9:
    /// an append-only file with `appendfsync everysec`, as the compose file
    /// runs it. Redis writes the file before it answers, so a killed process
    /// loses nothing it acknowledged; only a machine crash can lose the last
    /// second.
    pub fn private_durable() -> anyhow::Result<Self> {
        Self::private_with(true)
    }

    fn private_with(durable: bool) -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = tempfile::tempdir()?;
        let mut this = Self {
            url: format!("redis://127.0.0.1:{port}/"),
            prefix: crate::unique("test:"),
            private: Some(Private {
                port,
                dir,
                child: None,
                durable,
            }),
        };
        this.resume()?;
        Ok(this)
    }

    /// `redis://…` of this server.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's TCP address (`redis://host:port/…` without the rest).
    pub fn socket_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        let rest = self
            .url
            .strip_prefix("redis://")
            .context("REDIS_URL must be redis://host:port/")?;
        let host_port = rest.split(['/', '?']).next().unwrap_or(rest);
        let host_port = host_port.rsplit('@').next().unwrap_or(host_port);
        use std::net::ToSocketAddrs;
        host_port
            .to_socket_addrs()?
            .next()
            .with_context(|| format!("no address for {host_port}"))
    }

    /// A key/channel prefix unique to this test, ending in `:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A synchronous connection for assertions on Redis state.
    pub fn connection(&self) -> anyhow::Result<redis::Connection> {
        let client = redis::Client::open(self.url.as_str())?;
        Ok(client.get_connection_with_timeout(Duration::from_secs(5))?)
    }

    /// Stops a private server (kill -9: no chance to save or say goodbye).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let private = self
            .private
            .as_mut()
            .context("only a private Redis can be stopped")?;
        if let Some(mut child) = private.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// (Re)starts a private server on the same port.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        let private = self
            .private
            .as_mut()
            .context("only a private Redis can be started")?;
        let child = Command::new("redis-server")
            .args(["--port", &private.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(if private.durable {
                ["--appendonly", "yes", "--appendfsync", "everysec"].as_slice()
            } else {
                ["--appendonly", "no"].as_slice()
            })
            .arg("--dir")
            .arg(private.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "cannot start redis-server: install it (Debian: redis-server) or set REDIS_URL",
            )?;
        private.child = Some(child);
        let deadline = Instant::now() + crate::WAIT;
        loop {
            if let Ok(mut conn) = self.connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer PING on {}", self.url);
            }
            // Polling a server that is starting: there is no event to wait on.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if self.private.is_some() {
            let _ = self.stop();
        }
    }
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
