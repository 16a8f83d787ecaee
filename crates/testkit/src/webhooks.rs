//! A webhook receiver on loopback, as an application's server would run
//! one: it records every request (headers and body) and answers each with
//! the next status of its plan (then 204), or drops the connection while
//! it is down. Tests verify the signatures themselves, with the Standard
//! Webhooks library. Stops when dropped.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the receiver took.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Header names (lowercase) and values.
    pub headers: HashMap<String, String>,
    /// The body, as sent.
    pub body: String,
    /// The status it was answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    plan: VecDeque<u16>,
    down: bool,
    taken: Vec<Delivery>,
    dropped: usize,
}

/// The receiver. Answers 204 unless its plan says otherwise.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    if state.lock().map(|s| s.down).unwrap_or(false) {
                        if let Ok(mut s) = state.lock() {
                            s.dropped += 1;
                        }
                        return; // dropped unanswered: as a receiver that is down
                    }
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    let (headers, body) = (
                        request.headers,
                        String::from_utf8_lossy(&request.body).into_owned(),
                    );
                    let status = {
                        let Ok(mut s) = state.lock() else { return };
                        let status = s.plan.pop_front().unwrap_or(204);
                        s.taken.push(Delivery {
                            headers,
                            body,
                            status,
                        });
                        status
                    };
                    let response = format!(
                        "HTTP/1.1 {status} Status\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Self {
            addr,
            state,
            accept,
        })
    }

    /// `http://127.0.0.1:{port}/hooks`.
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// The next requests are answered with these statuses, in order.
    pub fn plan(&self, statuses: &[u16]) {
        if let Ok(mut s) = self.state.lock() {
            s.plan.extend(statuses);
        }
    }

    /// While down, connections are dropped unanswered.
    pub fn set_down(&self, down: bool) {
        if let Ok(mut s) = self.state.lock() {
            s.down = down;
        }
    }

    /// Every request taken so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state
            .lock()
            .map(|s| s.taken.clone())
            .unwrap_or_default()
    }

    /// Connections dropped while down.
    pub fn dropped(&self) -> usize {
        self.state.lock().map(|s| s.dropped).unwrap_or(0)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A request as a loopback stand-in reads it.
pub(crate) struct Request {
    /// The request target (`/push/1`).
    pub path: String,
    /// Header names (lowercase) and values.
    pub headers: HashMap<String, String>,
    /// The body (by `content-length`).
    pub body: Vec<u8>,
}

/// The next request on `stream`, or `None`.
pub(crate) async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n".as_slice()) {
            break at;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default()
        .to_owned();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    body.truncate(length);
    Some(Request {
        path,
        headers,
        body,
    })
}
