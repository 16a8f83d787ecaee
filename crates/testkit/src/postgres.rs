//! A real PostgreSQL for tests: a fresh database per test on the server
//! named by `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! dropped afterwards. The test script starts the server when it is not running.

use std::process::Command;

use anyhow::{Context, bail};

/// A database of this test's own.
pub struct TestPostgres {
    base: String,
    name: String,
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("cannot run psql: install it (Debian: postgresql-client)")?;
    if !output.status.success() {
        bail!(
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

impl TestPostgres {
    /// Creates an empty database. Never skips: if the server is not there,
    /// the test fails saying so.
    pub fn start() -> anyhow::Result<Self> {
        let base = std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let name = crate::unique("t_");
        psql(&base, &format!("CREATE DATABASE {name}")).with_context(|| {
            format!("PostgreSQL at {base} (start it, or set TEST_POSTGRES_URL)")
        })?;
        Ok(Self { base, name })
    }

    /// `postgres://…/{database}` of this test's database.
    pub fn url(&self) -> String {
        match self.base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{}", self.name),
            None => format!("{}/{}", self.base, self.name),
        }
    }
}

impl TestPostgres {
    /// Takes the database away from its clients, as an outage would: no
    /// new connections, and the open ones are ended.
    pub fn cut_off(&self) -> anyhow::Result<()> {
        psql(
            &self.base,
            &format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", self.name),
        )?;
        psql(
            &self.base,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                self.name
            ),
        )
    }

    /// Ends an outage started by [`TestPostgres::cut_off`].
    pub fn restore(&self) -> anyhow::Result<()> {
        psql(
            &self.base,
            &format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", self.name),
        )
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = psql(
            &self.base,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}
