//! Where load goes: loopback servers only, reached from one or more loopback
//! source addresses, with the credentials the server expects.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use chat_auth::Authenticator;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How long one connection attempt (TCP and upgrade) may take.
const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// A client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// One server under load (a gateway or `chatd`).
pub struct Target {
    addr: SocketAddr,
    host: String,
    sources: Vec<IpAddr>,
    next_source: AtomicUsize,
    auth: Option<std::sync::Arc<Authenticator>>,
}

/// How a connection attempt ended when it did not open.
#[derive(Debug)]
pub enum Refusal {
    /// The server answered the upgrade with this HTTP status.
    Status(u16),
    /// Anything else: refused, reset, timed out.
    Other(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Status(code) => write!(f, "HTTP {code}"),
            Refusal::Other(e) => f.write_str(e),
        }
    }
}

impl Clone for Target {
    fn clone(&self) -> Self {
        Self {
            addr: self.addr,
            host: self.host.clone(),
            sources: self.sources.clone(),
            next_source: AtomicUsize::new(self.next_source.load(Ordering::Relaxed)),
            auth: self.auth.clone(),
        }
    }
}

impl Target {
    /// `host:port` of a server on this machine; `sources` extra loopback
    /// source addresses (127.0.0.2, 127.0.0.3, …) to spread connections
    /// over, each with its own ephemeral ports; `secret` mints jwt tokens.
    pub fn new(target: &str, sources: usize, secret: Option<&str>) -> anyhow::Result<Self> {
        let addr = loopback(target)?;
        if sources > 0 && !addr.is_ipv4() {
            bail!("--sources needs an IPv4 target (127.0.0.1)");
        }
        if sources > 250 {
            bail!("--sources is at most 250 (127.0.0.2 to 127.0.0.251)");
        }
        let auth = match secret {
            Some(s) if s.len() < 32 => {
                bail!("--jwt-secret must be at least 32 bytes, as on the server")
            }
            Some(s) => Some(std::sync::Arc::new(Authenticator::jwt(s.as_bytes()))),
            None => None,
        };
        Ok(Self {
            addr,
            host: target.to_owned(),
            sources: (0..sources as u8)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i)))
                .collect(),
            next_source: AtomicUsize::new(0),
            auth,
        })
    }

    /// The `http://host:port` base of this server.
    pub fn base(&self) -> String {
        format!("http://{}", self.host)
    }

    /// A token for `user` in jwt mode, `None` in open mode.
    pub fn token(&self, user: &str) -> anyhow::Result<Option<String>> {
        match &self.auth {
            Some(auth) => Ok(Some(auth.mint(user, None, Duration::from_secs(3600))?)),
            None => Ok(None),
        }
    }

    /// `path` with the credentials for `user` added as a query.
    fn with_credentials(&self, path: &str, user: &str) -> anyhow::Result<String> {
        Ok(match self.token(user)? {
            Some(token) => format!("{path}?token={token}"),
            None => path.to_owned(),
        })
    }

    /// Opens `/ws/` (the lobby).
    pub async fn lobby(&self) -> Result<Ws, Refusal> {
        let path = self
            .with_credentials("/ws/", "load")
            .map_err(|e| Refusal::Other(e.to_string()))?;
        self.open(&path).await
    }

    /// Opens `/ws/{user}` (a typed user connection).
    pub async fn user(&self, user: &str) -> Result<Ws, Refusal> {
        let path = self
            .with_credentials(&format!("/ws/{user}"), user)
            .map_err(|e| Refusal::Other(e.to_string()))?;
        self.open(&path).await
    }

    /// [`Target::user`] for a name the caller gives away.
    pub async fn user_owned(&self, user: String) -> Result<Ws, Refusal> {
        self.user(&user).await
    }

    /// Connects and upgrades, giving up after [`OPEN_TIMEOUT`]: a dropped
    /// SYN is retried by the kernel for minutes, far past any useful run.
    /// Opens `/ws/{user}/?since={since}`: a user connection that catches up
    /// from a sequence number.
    pub async fn user_since(&self, user: &str, since: u64) -> Result<Ws, Refusal> {
        let path = match self
            .token(user)
            .map_err(|e| Refusal::Other(e.to_string()))?
        {
            Some(token) => format!("/ws/{user}/?since={since}&token={token}"),
            None => format!("/ws/{user}/?since={since}"),
        };
        self.open(&path).await
    }

    async fn open(&self, path: &str) -> Result<Ws, Refusal> {
        tokio::time::timeout(OPEN_TIMEOUT, self.open_now(path))
            .await
            .unwrap_or_else(|_| {
                Err(Refusal::Other(format!(
                    "no upgrade within {OPEN_TIMEOUT:?}"
                )))
            })
    }

    async fn open_now(&self, path: &str) -> Result<Ws, Refusal> {
        let other = |e: std::io::Error| Refusal::Other(e.to_string());
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(other)?;
        if !self.sources.is_empty() {
            let i = self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len();
            socket
                .bind(SocketAddr::new(self.sources[i], 0))
                .map_err(other)?;
        }
        let stream = socket.connect(self.addr).await.map_err(other)?;
        stream.set_nodelay(true).map_err(other)?;
        let url = format!("ws://{}{path}", self.host);
        // A small read buffer: tungstenite's default of 128 KiB per socket
        // would make 19 000 idle connections cost the generator 2.4 GiB.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        match tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(response)) => {
                Err(Refusal::Status(response.status().as_u16()))
            }
            Err(e) => Err(Refusal::Other(e.to_string())),
        }
    }
}

/// Refuses anything but this machine: load goes to loopback only.
pub fn loopback(target: &str) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<_> = target
        .to_socket_addrs()
        .with_context(|| format!("resolving {target}"))?
        .collect();
    match addrs.first() {
        Some(first) if addrs.iter().all(|a| a.ip().is_loopback()) => Ok(*first),
        _ => bail!("{target} is not a loopback address: chat-load only loads this machine"),
    }
}

/// Raises this process's open-file limit to its hard limit and answers it:
/// every connection is a descriptor.
pub fn raise_open_files() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_loaded() {
        assert!(loopback("127.0.0.1:8080").is_ok());
        assert!(loopback("[::1]:8080").is_ok());
        assert!(loopback("localhost:8080").is_ok());
        assert!(loopback("10.0.0.1:80").is_err());
        assert!(loopback("192.168.1.1:80").is_err());
    }

    #[test]
    fn source_addresses_stay_on_loopback_and_need_ipv4() {
        let target = Target::new("127.0.0.1:1", 3, None).expect("valid");
        assert_eq!(
            target.sources,
            ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
                .map(|a| a.parse::<IpAddr>().expect("ip"))
                .to_vec()
        );
        assert!(target.sources.iter().all(IpAddr::is_loopback));
        assert!(Target::new("[::1]:1", 2, None).is_err());
        assert!(Target::new("127.0.0.1:1", 251, None).is_err());
        assert!(Target::new("127.0.0.1:1", 0, Some("short")).is_err());
    }

    #[test]
    fn jwt_targets_put_a_token_for_the_user_in_the_query() {
        let open = Target::new("127.0.0.1:1", 0, None).expect("valid");
        assert_eq!(
            open.with_credentials("/ws/ann", "ann").expect("path"),
            "/ws/ann"
        );
        let jwt = Target::new("127.0.0.1:1", 0, Some(&"s".repeat(32))).expect("valid");
        let path = jwt.with_credentials("/ws/ann", "ann").expect("path");
        assert!(path.starts_with("/ws/ann?token=ey"), "{path}");
    }
}
