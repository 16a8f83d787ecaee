//! A real Redis Cluster for tests: six `redis-server` processes on
//! loopback (three masters, each with one replica), made a cluster with
//! `redis-cli --cluster create`, as an operator would. Nodes can be killed
//! with SIGKILL to test failover. Every process stops when this is dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a master may be silent before its replica takes over (ms):
/// short, so failover tests are quick; not so short that a node starved of
/// CPU on a loaded machine is voted out.
const NODE_TIMEOUT_MS: u32 = 2_000;

/// One node of the cluster.
struct Node {
    port: u16,
    child: std::sync::Mutex<Option<Child>>,
}

/// A six-node cluster (three masters, three replicas) on loopback.
pub struct TestRedisCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl TestRedisCluster {
    /// Starts six nodes, makes them a cluster, and waits until every slot
    /// is served (`cluster_state:ok` on every node) and every master has a
    /// synced replica. A cluster that does not form in time (a port taken
    /// between its choice and its use, a node starved long enough on a
    /// loaded machine to be voted out while forming) is stopped and made
    /// once more from new processes.
    ///
    /// Errors: `redis-server` or `redis-cli` missing, or the cluster not
    /// ready in time, twice.
    pub fn start() -> anyhow::Result<Self> {
        match Self::start_once() {
            Ok(cluster) => Ok(cluster),
            Err(first) => {
                eprintln!("a test Redis Cluster did not form ({first:#}); making another");
                Self::start_once()
            }
        }
    }

    fn start_once() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = cluster_port()?;
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                // Replicas sync at once (the default waits 5 s for more
                // replicas to share the transfer): a replica that never
                // synced cannot take its master's place.
                .args(["--repl-diskless-sync-delay", "0"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start redis-server: install it (Debian: redis-server)")?;
            nodes.push(Node {
                port,
                child: std::sync::Mutex::new(Some(child)),
            });
        }
        let this = Self { nodes, _dir: dir };
        for node in &this.nodes {
            wait_until(&format!("node {} answers", node.port), || {
                command(node.port, &["PING"]).is_ok_and(|o| o.trim() == "PONG")
            })?;
        }
        let addresses: Vec<String> = this
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let made = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("cannot run redis-cli: install it (Debian: redis-tools)")?;
        if !made.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&made.stdout)
            );
        }
        this.wait_ready()?;
        // Replicas are told whom they follow last; gossip spreads it.
        wait_until_long("three masters, each with a replica", || {
            this.roles().is_ok_and(|roles| {
                roles.len() == 6 && roles.iter().filter(|(_, m)| *m).count() == 3
            })
        })?;
        for (port, master) in this.roles()? {
            if !master {
                wait_until_long(&format!("replica {port} has synced"), || {
                    command(port, &["INFO", "replication"])
                        .is_ok_and(|info| info.contains("master_link_status:up"))
                })?;
            }
        }
        Ok(this)
    }

    /// Waits until every live node says `cluster_state:ok`.
    ///
    /// Errors: not so in time.
    pub fn wait_ready(&self) -> anyhow::Result<()> {
        for port in self.live_ports() {
            wait_until_long(&format!("node {port} says cluster_state:ok"), || {
                command(port, &["CLUSTER", "INFO"]).is_ok_and(|i| i.contains("cluster_state:ok"))
            })?;
        }
        Ok(())
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…`: every node, the way
    /// `REDIS_URL` names a cluster.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The ports of the nodes that are masters now (as a live node sees it).
    ///
    /// Errors: no live node answers.
    pub fn masters(&self) -> anyhow::Result<Vec<u16>> {
        Ok(self
            .roles()?
            .into_iter()
            .filter(|(_, master)| *master)
            .map(|(port, _)| port)
            .collect())
    }

    /// Each live node's port and whether it is a master, from `CLUSTER
    /// NODES` on one live node (nodes it marks `fail` left out).
    ///
    /// Errors: no live node answers.
    pub fn roles(&self) -> anyhow::Result<Vec<(u16, bool)>> {
        let port = *self.live_ports().first().context("no node is running")?;
        let nodes = command(port, &["CLUSTER", "NODES"])?;
        let mut roles: Vec<(u16, bool)> = nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let address = fields.get(1)?;
                let flags = fields.get(2)?;
                if flags.contains("fail") && !flags.contains("fail?") {
                    return None;
                }
                let port = address.split(['@', ':']).nth(1)?.parse().ok()?;
                Some((port, flags.contains("master")))
            })
            .collect();
        roles.sort_unstable();
        Ok(roles)
    }

    /// Kills the node on `port` with SIGKILL (no goodbye to the cluster).
    ///
    /// Errors: no such running node.
    pub fn kill(&self, port: u16) -> anyhow::Result<()> {
        let node = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .context("no node on that port")?;
        let taken = node.child.lock().map(|mut c| c.take()).unwrap_or_default();
        let mut child = taken.context("that node is not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// What `redis-cli -p {port} {args…}` prints: a test's own question
    /// to one node (`INFO stats`, `PUBSUB SHARDCHANNELS`).
    ///
    /// Errors: redis-cli fails (the node is down).
    pub fn cli(&self, port: u16, args: &[&str]) -> anyhow::Result<String> {
        command(port, args)
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.lock().is_ok_and(|c| c.is_some()))
            .map(|n| n.port)
            .collect()
    }
}

impl Drop for TestRedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let taken = node.child.get_mut().map(Option::take).unwrap_or_default();
            if let Some(mut child) = taken {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A free port whose cluster bus port (+10 000) is free too.
fn cluster_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let port = crate::redis::free_port()?;
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port pair (port and port + 10000) on loopback")
}

/// `redis-cli -p port args…`: its output. Errors: it could not run or failed.
fn command(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if !output.status.success() {
        bail!("redis-cli {args:?} on {port} failed");
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// How long a cluster may take to form: six processes meeting, electing
/// and syncing on a machine that runs other tests' clusters too.
const FORMING: Duration = Duration::from_secs(60);

/// Polls `condition` until it holds, for at most the test kit's wait.
fn wait_until(what: &str, condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    wait_for(crate::WAIT, what, condition)
}

/// [`wait_until`] for the steps of forming a cluster ([`FORMING`]).
fn wait_until_long(what: &str, condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    wait_for(FORMING, what, condition)
}

fn wait_for(
    limit: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !condition() {
        if Instant::now() > deadline {
            bail!("timed out waiting until {what}");
        }
        // Polling processes that are starting or electing: no event to wait on.
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture is a cluster of three masters with a replica each, and
    /// a master killed with SIGKILL is replaced by its replica by itself.
    #[test]
    fn six_nodes_make_three_masters_and_a_killed_master_fails_over() {
        let cluster = TestRedisCluster::start().unwrap();
        let roles = cluster.roles().unwrap();
        assert_eq!(roles.len(), 6, "{roles:?}");
        let masters = cluster.masters().unwrap();
        assert_eq!(masters.len(), 3, "{roles:?}");
        assert!(cluster.url().starts_with("redis+cluster://127.0.0.1:"));

        cluster.kill(masters[0]).unwrap();
        wait_until("a replica takes the killed master's slots", || {
            cluster
                .masters()
                .is_ok_and(|now| now.len() == 3 && !now.contains(&masters[0]))
        })
        .unwrap();
        cluster.wait_ready().unwrap();
    }
}
