//! A WebSocket client for tests: every wait has a deadline, every typed frame
//! received on a user connection is checked against the committed schema.

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
pub use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::WAIT;
use crate::schema::Schemas;

/// One client connection.
pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Check received JSON against the protocol schema (user connections).
    check_schema: bool,
}

/// How a connection ended, seen from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The server sent a close frame with this code.
    Closed(u16),
    /// The TCP connection ended without a close frame.
    Dropped,
}

impl WsClient {
    /// Connects to `ws://addr/path`, answering pings automatically.
    pub async fn connect(addr: &str, path: &str) -> anyhow::Result<Self> {
        Self::connect_with(addr, path, &[]).await
    }

    /// Connects with extra handshake headers (`Authorization`, `Origin`).
    pub async fn connect_with(
        addr: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let url = format!("ws://{addr}{path}");
        let request = request(&url, headers)?;
        let (stream, _response) =
            tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
                .await
                .with_context(|| format!("connecting to {url} timed out"))?
                .with_context(|| format!("connecting to {url}"))?;
        let lobby = path == "/ws/" || path.starts_with("/ws/?");
        Ok(Self {
            stream,
            check_schema: !lobby,
        })
    }

    /// Wraps a stream taken with [`WsClient::into_silent`] to read it again.
    pub fn from_stream(stream: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self {
            stream,
            check_schema: true,
        }
    }

    /// Connects to the lobby, `/ws/`.
    pub async fn lobby(addr: &str) -> anyhow::Result<Self> {
        Self::connect(addr, "/ws/").await
    }

    /// Connects as `user`, `/ws/{user}/`.
    pub async fn user(addr: &str, user: &str) -> anyhow::Result<Self> {
        Self::connect(addr, &format!("/ws/{user}/")).await
    }

    /// Tries to connect and returns the HTTP status of a refused handshake.
    pub async fn refused_status(addr: &str, path: &str) -> anyhow::Result<u16> {
        Self::refused_status_with(addr, path, &[]).await
    }

    /// Like [`WsClient::refused_status`], with extra handshake headers.
    pub async fn refused_status_with(
        addr: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<u16> {
        let url = format!("ws://{addr}{path}");
        match tokio_tungstenite::connect_async(request(&url, headers)?).await {
            Ok(_) => bail!("{url} was accepted"),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Ok(response.status().as_u16())
            }
            Err(e) => Err(anyhow!("{url}: {e}")),
        }
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> anyhow::Result<()> {
        Ok(self.stream.send(Message::text(text.into())).await?)
    }

    /// Sends a JSON value as a text frame.
    pub async fn send_json(&mut self, value: &Value) -> anyhow::Result<()> {
        self.send_text(value.to_string()).await
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        Ok(self.stream.send(Message::binary(bytes)).await?)
    }

    /// The next text or binary frame (pings are answered on the way).
    pub async fn recv(&mut self) -> anyhow::Result<Message> {
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .context("no frame arrived in time")?;
            match next {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => return Ok(message),
                Some(Ok(Message::Close(frame))) => bail!("connection closed: {frame:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("connection failed: {e}"),
                None => bail!("connection ended"),
            }
        }
    }

    /// The next text frame, as text.
    pub async fn recv_text(&mut self) -> anyhow::Result<String> {
        match self.recv().await? {
            Message::Text(text) => Ok(text.as_str().to_owned()),
            other => bail!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text frame as JSON, checked against the schema.
    pub async fn recv_json(&mut self) -> anyhow::Result<Value> {
        let text = self.recv_text().await?;
        let value: Value =
            serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?;
        if self.check_schema {
            Schemas::get().check_server_frame(&value)?;
        }
        Ok(value)
    }

    /// The next JSON frame with `"type": kind`. `unread` frames before it
    /// are skipped (the server announces counters on connect and with every
    /// direct message; a test that cares asks for them by name).
    pub async fn recv_type(&mut self, kind: &str) -> anyhow::Result<Value> {
        loop {
            let frame = self.recv_json().await?;
            if frame["type"] == "unread" && kind != "unread" {
                continue;
            }
            anyhow::ensure!(
                frame["type"] == kind,
                "expected a '{kind}' frame, got {frame}"
            );
            return Ok(frame);
        }
    }

    /// The next `n` frames, `unread` skipped, sorted by type (for frames
    /// whose order is not promised: an `ack` and the sender's own copy, a
    /// `joined` and the room's `member_joined`).
    pub async fn recv_frames(&mut self, n: usize) -> anyhow::Result<Vec<Value>> {
        let mut frames = Vec::with_capacity(n);
        while frames.len() < n {
            let frame = self.recv_json().await?;
            if frame["type"] != "unread" {
                frames.push(frame);
            }
        }
        frames.sort_by_key(|f| f["type"].as_str().unwrap_or_default().to_owned());
        Ok(frames)
    }

    /// The types of the next `n` frames (`unread` skipped), sorted.
    pub async fn recv_kinds(&mut self, n: usize) -> anyhow::Result<Vec<String>> {
        Ok(self
            .recv_frames(n)
            .await?
            .iter()
            .map(|f| f["type"].as_str().unwrap_or_default().to_owned())
            .collect())
    }

    /// The next frame of type `kind`, skipping frames of any other type (for
    /// a test that does not care what else arrives meanwhile).
    pub async fn recv_until(&mut self, kind: &str) -> anyhow::Result<Value> {
        loop {
            let frame = self.recv_json().await?;
            if frame["type"] == kind {
                return Ok(frame);
            }
        }
    }

    /// The `ack` for the client id `id`, skipping `unread` frames, the
    /// `message` copies a sender's own connections receive and room
    /// membership entries.
    pub async fn recv_ack(&mut self, id: &str) -> anyhow::Result<Value> {
        loop {
            let frame = self.recv_json().await?;
            match frame["type"].as_str() {
                Some("unread" | "message" | "update" | "member_joined" | "member_left") => {
                    continue;
                }
                Some("ack") if frame["id"] == id => return Ok(frame),
                _ => anyhow::bail!("expected the ack of '{id}', got {frame}"),
            }
        }
    }

    /// The next seed frame's exact text, skipping typed frames (counters,
    /// copies of the connection's own messages), each still schema-checked.
    pub async fn recv_seed_text(&mut self) -> anyhow::Result<String> {
        loop {
            let text = self.recv_text().await?;
            let value: Value =
                serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?;
            if self.check_schema {
                Schemas::get().check_server_frame(&value)?;
            }
            if value.get("type").is_none() {
                return Ok(text);
            }
        }
    }

    /// The next seed frame as JSON, skipping typed frames.
    pub async fn recv_seed(&mut self) -> anyhow::Result<Value> {
        let text = self.recv_seed_text().await?;
        Ok(serde_json::from_str(&text)?)
    }

    /// The next text frame, or how the connection ended if it ended first.
    pub async fn recv_text_or_end(&mut self) -> anyhow::Result<Result<String, Ended>> {
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .context("neither a frame nor the end arrived in time")?;
            return Ok(match next {
                Some(Ok(Message::Text(text))) => Ok(text.as_str().to_owned()),
                Some(Ok(Message::Close(frame))) => {
                    Err(Ended::Closed(frame.map_or(1005, |f| u16::from(f.code))))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Err(Ended::Dropped),
            });
        }
    }

    /// The next JSON frame, or how the connection ended if it ended first.
    pub async fn recv_json_or_end(&mut self) -> anyhow::Result<Result<Value, Ended>> {
        let text = match self.recv_text_or_end().await? {
            Ok(text) => text,
            Err(ended) => return Ok(Err(ended)),
        };
        let value: Value = serde_json::from_str(&text)?;
        if self.check_schema {
            Schemas::get().check_server_frame(&value)?;
        }
        Ok(Ok(value))
    }

    /// Reads until the server ends the connection; returns how it ended.
    /// Frames still in flight before the close are skipped.
    pub async fn ended(&mut self) -> anyhow::Result<Ended> {
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .context("the server did not end the connection in time")?;
            match next {
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Ended::Closed(frame.map_or(1005, |f| u16::from(f.code))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(Ended::Dropped),
            }
        }
    }

    /// Sends a close frame and waits for the server's answer.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.stream.close(None).await.ok();
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.stream.next()).await {}
        Ok(())
    }

    /// Stops reading and answering entirely, without closing: from the
    /// server's side this connection has gone silent (a dead peer).
    pub fn into_silent(self) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        self.stream
    }

    /// The underlying stream, for tests that need raw frames.
    pub fn stream(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        &mut self.stream
    }
}

/// The close code the server used, as a number (for readable assertions).
pub fn code(c: CloseCode) -> u16 {
    u16::from(c)
}

fn request(
    url: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(HeaderName::try_from(*name)?, HeaderValue::try_from(*value)?);
    }
    Ok(request)
}
