//! The socket of one connection and its wait for the next event.
//!
//! [`Socket::next`] is the connection's one `select!`: shutdown and an
//! overflowing outbound queue first, then, without bias, the frame being
//! handled finishing, the first queued frame answered, an outbound frame
//! (written at once), a client frame (read only when the session asks:
//! never while a frame is being handled, so frames are handled in order),
//! and the heartbeat. While a handler waits on the store or the
//! media service, deliveries and its own earlier replies keep flowing out:
//! a healthy client is never closed as a slow reader because its own
//! `send` was slow.
//!
//! WebSocket protocol errors (RFC 6455 §7.4.1) end the connection with
//! their close code — 1002 for a protocol violation (reserved bits or
//! opcodes, a bad continuation, an unmasked frame), 1007 for text that is
//! not UTF-8 (§8.1), 1009 for a message over `CHAT_MAX_FRAME_BYTES`,
//! whole or in fragments — and are counted in
//! `chat_gateway_frame_errors_total{code}`; only the end of the stream is a
//! hang-up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError};
use bytes::Bytes;
use bytestring::ByteString;
use chat_broker::envelope::{Control, Outbound};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use prometheus::IntCounter;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::fence::Fences;
use super::handler::reason;
use crate::metrics::GatewayMetrics;

/// Application close code for a peer that stopped answering pings
/// (4000–4999 is the application range; 408 as in HTTP's Request Timeout).
pub(crate) const CLOSE_IDLE: u16 = 4408;
/// Close code: the application's server removed the user (its server
/// API's `disconnect`): 4000 + HTTP's 403, as 4408 is 4000 + 408.
pub(crate) const CLOSE_REMOVED: u16 = 4403;
/// How long the goodbye (queued frames, then the close frame) may take
/// before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A message from the client that a handler takes.
pub(crate) enum Message {
    /// A text frame (or text message in fragments).
    Text(ByteString),
    /// A binary frame (or binary message in fragments).
    Binary(Bytes),
}

/// What woke the connection.
pub(crate) enum Event<T> {
    /// The client sent a message.
    Message(Message),
    /// The work in flight finished.
    Done(T),
    /// The first of the queued frames ([`super::handler::Outcome::Queued`])
    /// was answered.
    Answered,
    /// A change of what the connection follows (its user joined or left a
    /// room elsewhere), for the connection to apply.
    Control(Control),
    /// The connection is over: close with this reason (`None`: the socket
    /// is gone, nothing can be sent).
    End(Option<CloseReason>),
}

/// What one wait found, before it is turned into an [`Event`].
enum Wake<T> {
    Shutdown,
    Overflow,
    Done(T),
    Answered,
    Out(Option<Outbound>),
    In(Option<Result<AggregatedMessage, ProtocolError>>),
    Tick,
}

/// The socket of one connection, with what decides when it ends.
pub(crate) struct Socket {
    ws: actix_ws::Session,
    stream: AggregatedMessageStream,
    outbound: mpsc::Receiver<Outbound>,
    /// Signalled when the outbound queue overflowed (a slow reader).
    overflow: Arc<Notify>,
    shutdown: CancellationToken,
    heartbeat: tokio::time::Interval,
    idle_timeout: Duration,
    /// When the client was last heard (any frame, a pong included).
    last_heard: Instant,
    max_frame_bytes: usize,
    frames_out: IntCounter,
    metrics: GatewayMetrics,
    /// Live copies of room entries a replay wrote, to drop.
    fences: Fences,
}

/// How the socket is set up.
pub(crate) struct SocketSettings {
    pub(crate) ping_interval: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_frame_bytes: usize,
}

impl Socket {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        ws: actix_ws::Session,
        stream: actix_ws::MessageStream,
        outbound: mpsc::Receiver<Outbound>,
        overflow: Arc<Notify>,
        shutdown: CancellationToken,
        settings: SocketSettings,
        frames_out: IntCounter,
        metrics: GatewayMetrics,
    ) -> Self {
        let max = settings.max_frame_bytes;
        let stream = stream
            .max_frame_size(max)
            .aggregate_continuations()
            .max_continuation_size(max);
        let every = settings.ping_interval;
        let mut heartbeat = tokio::time::interval_at((Instant::now() + every).into(), every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            ws,
            stream,
            outbound,
            overflow,
            shutdown,
            heartbeat,
            idle_timeout: settings.idle_timeout,
            last_heard: Instant::now(),
            max_frame_bytes: max,
            frames_out,
            metrics,
            fences: Fences::default(),
        }
    }

    /// Drops the live copies of `room`'s entries up to `until` still to
    /// come (see [`super::fence`]).
    pub(crate) fn fence(&mut self, room: String, until: u64) {
        if until > 0 {
            self.fences.add(room, until);
        }
    }

    /// Waits for the next event, writing outbound frames as they come
    /// (unless `hold_outbound`: the catch-up, or a followed room's entries,
    /// go first), and finishing the first `queued` frame. A client frame is
    /// read only when `read` (never while `work` is in flight).
    pub(crate) async fn next<T>(
        &mut self,
        mut work: Option<&mut BoxFuture<'static, T>>,
        mut queued: Option<&mut BoxFuture<'static, ()>>,
        hold_outbound: bool,
        read: bool,
    ) -> Event<T> {
        let busy = work.is_some();
        if !busy && !hold_outbound {
            // What handling the last frame queued (its answers) goes out
            // before the next client frame is read, so answers keep the
            // order of the frames they answer (a `left` before the
            // `synced` of a `sync` sent after the `leave`). Only what is
            // queued now: new deliveries do not hold the client's frames back.
            for _ in 0..self.outbound.len() {
                if self.shutdown.is_cancelled() {
                    return Event::End(Some(going_away()));
                }
                let Ok(frame) = self.outbound.try_recv() else {
                    break;
                };
                match frame {
                    Outbound::Control(control) => return Event::Control(control),
                    frame if self.fences.drops(&frame) => {}
                    frame => {
                        if let Err(end) = self.write_guarded(frame).await {
                            return Event::End(end);
                        }
                    }
                }
            }
        }
        loop {
            let work_done = async {
                match work.as_mut() {
                    Some(work) => work.await,
                    None => std::future::pending().await,
                }
            };
            let answered = async {
                match queued.as_mut() {
                    Some(queued) => queued.await,
                    None => std::future::pending().await,
                }
            };
            let read = read && !busy;
            let (stream, outbound, heartbeat) =
                (&mut self.stream, &mut self.outbound, &mut self.heartbeat);
            let (shutdown, overflow) = (&self.shutdown, &self.overflow);
            let wake = tokio::select! {
                biased;
                () = shutdown.cancelled() => Wake::Shutdown,
                () = overflow.notified() => Wake::Overflow,
                wake = async {
                    tokio::select! {
                        done = work_done => Wake::Done(done),
                        () = answered => Wake::Answered,
                        frame = outbound.recv(), if !hold_outbound => Wake::Out(frame),
                        message = stream.next(), if read => Wake::In(message),
                        _ = heartbeat.tick() => Wake::Tick,
                    }
                } => wake,
            };
            match wake {
                Wake::Shutdown => return Event::End(Some(going_away())),
                Wake::Overflow => return Event::End(Some(self.slow_consumer())),
                Wake::Done(done) => return Event::Done(done),
                Wake::Answered => return Event::Answered,
                Wake::Out(None) => return Event::End(None),
                Wake::Out(Some(Outbound::Control(control))) => return Event::Control(control),
                Wake::Out(Some(frame)) => {
                    if self.fences.drops(&frame) {
                        continue;
                    }
                    if let Err(end) = self.write_guarded(frame).await {
                        return Event::End(end);
                    }
                }
                Wake::In(None) => return Event::End(None),
                Wake::In(Some(Ok(message))) => {
                    self.last_heard = Instant::now();
                    match message {
                        AggregatedMessage::Text(text) => {
                            return Event::Message(Message::Text(text));
                        }
                        AggregatedMessage::Binary(bytes) => {
                            return Event::Message(Message::Binary(bytes));
                        }
                        AggregatedMessage::Ping(bytes) => {
                            if self.ws.pong(&bytes).await.is_err() {
                                return Event::End(None);
                            }
                        }
                        AggregatedMessage::Pong(_) => {}
                        AggregatedMessage::Close(why) => {
                            return Event::End(Some(
                                why.unwrap_or_else(|| CloseCode::Normal.into()),
                            ));
                        }
                    }
                }
                Wake::In(Some(Err(error))) => match self.protocol_error(&error) {
                    // The connection ended under the stream (the peer hung up
                    // right after its last frames): those frames are still
                    // buffered and come out of the next reads, then the
                    // stream ends. Keep reading, lose nothing.
                    None => {}
                    Some(close) => return Event::End(Some(close)),
                },
                Wake::Tick => {
                    if self.last_heard.elapsed() > self.idle_timeout {
                        self.metrics.idle_disconnects.inc();
                        return Event::End(Some(reason(
                            CloseCode::Other(CLOSE_IDLE),
                            "no pong within the idle timeout",
                        )));
                    }
                    if self.ws.ping(b"").await.is_err() {
                        return Event::End(None);
                    }
                }
            }
        }
    }

    /// The close an error of the WebSocket layer calls for, counted; `None`
    /// when it only means the peer's side of the connection ended.
    fn protocol_error(&self, error: &ProtocolError) -> Option<CloseReason> {
        let (code, why): (CloseCode, String) = match error {
            ProtocolError::Overflow => (
                CloseCode::Size,
                format!("frame larger than {} bytes", self.max_frame_bytes),
            ),
            ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                // actix-http reports reserved bits as invalid data, like
                // text that is not UTF-8 (until its next major version).
                if e.to_string().contains("reserved bits") {
                    (CloseCode::Protocol, e.to_string())
                } else {
                    (CloseCode::Invalid, format!("text is not valid UTF-8: {e}"))
                }
            }
            // actix-ws's aggregation reports a message in fragments over
            // its limit as an I/O error of its own.
            ProtocolError::Io(e) if e.to_string().contains("maximum continuation size") => (
                CloseCode::Size,
                format!("message larger than {} bytes", self.max_frame_bytes),
            ),
            ProtocolError::Io(_) => return None,
            other => (CloseCode::Protocol, other.to_string()),
        };
        self.metrics
            .frame_errors
            .with_label_values(&[&u16::from(code).to_string()])
            .inc();
        Some(reason(code, &why))
    }

    fn slow_consumer(&self) -> CloseReason {
        self.metrics.slow_consumer_disconnects.inc();
        reason(
            CloseCode::Again,
            "outbound queue full: the client reads too slowly",
        )
    }

    /// Writes one frame. A client that does not read blocks the write, so
    /// shutdown and an overflowing queue are still heard meanwhile, and a
    /// write that waits longer than the idle timeout ends the connection as
    /// a slow consumer (the heartbeat cannot run while it waits).
    ///
    /// Errors: how the connection ends (`None`: the socket is gone).
    async fn write_guarded(&mut self, frame: Outbound) -> Result<(), Option<CloseReason>> {
        let patience = self.idle_timeout;
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Err(Some(going_away())),
            () = self.overflow.notified() => Err(Some(self.slow_consumer())),
            written = tokio::time::timeout(patience, write(&mut self.ws, frame)) => match written {
                Ok(Ok(())) => {
                    self.frames_out.inc();
                    Ok(())
                }
                Ok(Err(_)) => Err(None),
                Err(_) => Err(Some(self.slow_consumer())),
            },
        }
    }

    /// Writes what the outbound queue holds now, in order, and hands back
    /// the controls among it (in order, for the session to apply): what was
    /// queued before a room is followed goes out before the room's replay.
    /// Only what is queued when it starts, so a busy queue cannot keep it.
    ///
    /// Errors: how the connection ends (`None`: the socket is gone).
    pub(crate) async fn flush(&mut self) -> Result<Vec<Control>, Option<CloseReason>> {
        let mut controls = Vec::new();
        for _ in 0..self.outbound.len() {
            let Ok(frame) = self.outbound.try_recv() else {
                break;
            };
            match frame {
                Outbound::Control(control) => controls.push(control),
                frame if self.fences.drops(&frame) => {}
                frame => self.write_guarded(frame).await?,
            }
        }
        Ok(controls)
    }

    /// Writes `frames` straight to the socket, in order, each guarded as
    /// [`Socket::write_guarded`] says.
    ///
    /// Errors: how the connection ends (`None`: the socket is gone).
    pub(crate) async fn write_all(
        &mut self,
        frames: Vec<String>,
    ) -> Result<(), Option<CloseReason>> {
        for frame in frames {
            self.write_guarded(Outbound::Text(frame.into())).await?;
        }
        Ok(())
    }

    /// Ends the connection: the answer of the frame that was being handled
    /// (`last`: a catch-up or `sync` page), then what was queued before the
    /// close (an `error` explaining a rate-limit close, say) go out first —
    /// unless the queue overflowed, which means this client is not reading
    /// anyway — then the close frame; all within [`CLOSE_TIMEOUT`].
    pub(crate) async fn close(mut self, close: Option<CloseReason>, last: Vec<String>) {
        let Some(close) = close else { return };
        let goodbye = async move {
            if close.code != CloseCode::Again {
                for frame in last {
                    if self.ws.text(frame).await.is_err() {
                        return;
                    }
                }
                self.outbound.close();
                while let Some(frame) = self.outbound.recv().await {
                    if self.fences.drops(&frame) {
                        continue;
                    }
                    if write(&mut self.ws, frame).await.is_err() {
                        return;
                    }
                }
            }
            let _ = self.ws.close(Some(close)).await;
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, goodbye).await;
    }
}

fn going_away() -> CloseReason {
    reason(CloseCode::Away, "server shutting down")
}

async fn write(ws: &mut actix_ws::Session, frame: Outbound) -> Result<(), actix_ws::Closed> {
    match frame {
        Outbound::Text(text) | Outbound::TextExcept { text, .. } => ws.text(text).await,
        Outbound::Binary(bytes) => ws.binary(bytes).await,
        // Applied by the session, never written.
        Outbound::Control(_) => Ok(()),
    }
}
