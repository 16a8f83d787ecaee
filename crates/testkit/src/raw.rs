//! A WebSocket client that writes raw frames (RFC 6455 §5.2), so a test can
//! send what no well-behaved client library would: reserved bits and
//! opcodes, broken continuations, bad UTF-8, unmasked or oversized frames.

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Frame opcodes (RFC 6455 §5.2), and two reserved ones.
pub mod opcode {
    /// Continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// Text.
    pub const TEXT: u8 = 0x1;
    /// Binary.
    pub const BINARY: u8 = 0x2;
    /// A reserved data opcode.
    pub const RESERVED_DATA: u8 = 0x3;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// A reserved control opcode.
    pub const RESERVED_CONTROL: u8 = 0xB;
}

/// One frame as the client writes it.
#[derive(Clone, Debug)]
pub struct Frame {
    /// FIN: the last frame of a message.
    pub fin: bool,
    /// RSV1–RSV3 as the three bits `0b0rrr` (must be 0 without an extension).
    pub rsv: u8,
    /// The opcode (4 bits).
    pub opcode: u8,
    /// Whether the client masks the payload (clients must).
    pub masked: bool,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A final, masked frame.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            fin: true,
            rsv: 0,
            opcode,
            masked: true,
            payload: payload.into(),
        }
    }

    /// The same frame, not final (more fragments follow).
    pub fn more(mut self) -> Self {
        self.fin = false;
        self
    }

    /// The same frame with reserved bits set.
    pub fn rsv(mut self, bits: u8) -> Self {
        self.rsv = bits;
        self
    }

    /// The same frame, unmasked.
    pub fn unmasked(mut self) -> Self {
        self.masked = false;
        self
    }

    /// The frame's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            vec![(u8::from(self.fin) << 7) | ((self.rsv & 0x7) << 4) | (self.opcode & 0xF)];
        let mask_bit = if self.masked { 0x80 } else { 0 };
        let len = self.payload.len();
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if len <= u16::MAX as usize {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if self.masked {
            let key = [0x37, 0xfa, 0x21, 0x3d];
            out.extend_from_slice(&key);
            out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            out.extend_from_slice(&self.payload);
        }
        out
    }
}

/// How a raw connection ended, as seen by the client.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The server sent a close frame with this code.
    Closed(u16),
    /// The server closed the TCP connection without a close frame.
    Dropped,
}

/// A WebSocket connection that speaks raw frames.
pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Opens `path` on `addr` with a plain HTTP/1.1 upgrade.
    pub async fn connect(addr: &str, path: &str) -> anyhow::Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut this = Self {
            stream,
            buf: Vec::new(),
        };
        let head = loop {
            if let Some(end) = this.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&this.buf[..end]).into_owned();
                this.buf.drain(..end + 4);
                break head;
            }
            if !this.fill().await? {
                bail!("the server closed during the handshake");
            }
        };
        if !head.starts_with("HTTP/1.1 101") {
            bail!("not upgraded: {}", head.lines().next().unwrap_or_default());
        }
        Ok(this)
    }

    /// Writes frames as they are.
    pub async fn send(&mut self, frames: &[Frame]) -> anyhow::Result<()> {
        for frame in frames {
            self.stream.write_all(&frame.encode()).await?;
        }
        Ok(())
    }

    /// Shuts the client's side of the TCP connection (a hang-up).
    pub async fn hang_up(&mut self) -> anyhow::Result<()> {
        self.stream.shutdown().await?;
        Ok(())
    }

    /// Reads server frames until a close frame or the end of the
    /// connection, within `crate::WAIT`. Data frames on the way are skipped.
    pub async fn end(&mut self) -> anyhow::Result<End> {
        tokio::time::timeout(crate::WAIT, self.read_until_end())
            .await
            .context("the server neither closed nor hung up in time")?
    }

    /// Reads one server data frame's payload (skipping pings), within
    /// `crate::WAIT`; `None` when the connection ended instead.
    pub async fn next_text(&mut self) -> anyhow::Result<Option<String>> {
        let read = async {
            loop {
                let Some((opcode, payload)) = self.frame().await? else {
                    return Ok(None);
                };
                match opcode {
                    opcode::TEXT => return Ok(Some(String::from_utf8(payload)?)),
                    opcode::CLOSE => return Ok(None),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(crate::WAIT, read)
            .await
            .context("no frame in time")?
    }

    async fn read_until_end(&mut self) -> anyhow::Result<End> {
        loop {
            let Some((opcode, payload)) = self.frame().await? else {
                return Ok(End::Dropped);
            };
            if opcode == opcode::CLOSE {
                let code = payload
                    .get(..2)
                    .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                return Ok(End::Closed(code));
            }
        }
    }

    /// One unmasked server frame: `(opcode, payload)`; `None` at the end.
    async fn frame(&mut self) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        loop {
            if let Some((len, frame)) = parse(&self.buf) {
                self.buf.drain(..len);
                return Ok(Some(frame));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Reads more bytes; `false` at the end of the connection.
    async fn fill(&mut self) -> anyhow::Result<bool> {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            // A reset after the server's close is the end too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// A whole server frame at the start of `buf`: its length and content.
fn parse(buf: &[u8]) -> Option<(usize, (u8, Vec<u8>))> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0F;
    let (len, mut at) = match buf[1] & 0x7F {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        n => (n as usize, 2),
    };
    if buf[1] & 0x80 != 0 {
        at += 4; // a masked server frame: not expected, but skip the key
    }
    let payload = buf.get(at..at + len)?.to_vec();
    Some((at + len, (opcode, payload)))
}
