//! One connection's task.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError};
use chat_protocol::{ErrorCode, ServerFrame};
use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use prometheus::IntCounter;
use tokio::sync::{Notify, mpsc};
use tracing::debug;

use super::Endpoint;
use super::presence::Presence;
use super::upgrade::Replay;
use crate::Inner;
use crate::hub::{Conn, Hub};
use chat_broker::channel;
use chat_broker::envelope::{self, Outbound};

/// Application close code for a peer that stopped answering pings
/// (4000–4999 is the application range; 408 as in HTTP's Request Timeout).
pub(crate) const CLOSE_IDLE: u16 = 4408;
/// How long a close frame may take to queue before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The channels a connection is registered on. Dropping it leaves them all,
/// so the registry is cleaned however the session ends — even by a panic.
pub(crate) struct Registration {
    hub: Arc<Hub>,
    conn: Conn,
    channels: HashSet<String>,
}

impl Registration {
    pub(crate) fn new(hub: Arc<Hub>, conn: Conn) -> Self {
        Self {
            hub,
            conn,
            channels: HashSet::new(),
        }
    }

    pub(crate) fn conn(&self) -> &Conn {
        &self.conn
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Joins `channel`; resolves once deliveries on it reach this connection.
    pub(crate) async fn join(&mut self, channel: String) -> Result<(), chat_broker::BrokerError> {
        if self.channels.contains(&channel) {
            return Ok(());
        }
        self.hub.join(&channel, &self.conn).await?;
        self.channels.insert(channel);
        Ok(())
    }

    pub(crate) fn leave(&mut self, channel: &str) {
        if self.channels.remove(channel) {
            self.hub.leave(channel, self.conn.id());
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        for channel in self.channels.drain() {
            self.hub.leave(&channel, self.conn.id());
        }
    }
}

/// Everything one session task owns.
pub(crate) struct Session {
    pub(crate) gw: Arc<Inner>,
    pub(crate) ws: actix_ws::Session,
    pub(crate) endpoint: Endpoint,
    pub(crate) registration: Registration,
    /// Counts a user connection online while the session lives.
    presence: Option<Presence>,
    /// Rooms joined, counted separately from the user's own channel.
    pub(crate) rooms: HashSet<String>,
    /// Users whose online state this connection follows.
    pub(crate) watching: HashSet<String>,
    limiter: DefaultDirectRateLimiter,
    /// Frames refused by the rate limit since the last accepted one.
    strikes: u32,
    frames_in: IntCounter,
    frames_out: IntCounter,
}

/// What woke a connection's loop.
enum Event {
    /// A frame to write (`None`: the queue closed).
    Out(Option<Outbound>),
    /// A frame read (`None`: the client went away).
    In(Option<Result<AggregatedMessage, ProtocolError>>),
    /// Time to ping.
    Tick,
}

/// What the session should do after handling a client frame.
pub(crate) enum Flow {
    Continue,
    Close(CloseReason),
    /// The socket is gone; nothing more can be sent.
    Gone,
}

impl Session {
    pub(crate) fn new(
        gw: Arc<Inner>,
        ws: actix_ws::Session,
        endpoint: Endpoint,
        registration: Registration,
        presence: Option<Presence>,
    ) -> Self {
        let quota = Quota::per_second(gw.settings.rate_per_sec).allow_burst(gw.settings.rate_burst);
        let label = endpoint.label();
        Self {
            frames_in: gw.metrics.frames_in.with_label_values(&[label]),
            frames_out: gw.metrics.frames_out.with_label_values(&[label]),
            limiter: RateLimiter::direct(quota),
            strikes: 0,
            rooms: HashSet::new(),
            watching: HashSet::new(),
            gw,
            ws,
            endpoint,
            registration,
            presence,
        }
    }

    /// Runs the connection to its end and closes it with the reason found.
    pub(crate) async fn run(
        mut self,
        mut stream: AggregatedMessageStream,
        mut outbound: mpsc::Receiver<Outbound>,
        overflow: Arc<Notify>,
        replay: Replay,
    ) {
        let gauge = self
            .gw
            .metrics
            .connections
            .with_label_values(&[self.endpoint.label()]);
        gauge.inc();
        let shutdown = self.gw.shutdown.clone();
        let ping_every = self.gw.settings.ping_interval;
        let idle_timeout = self.gw.settings.idle_timeout;
        let mut heartbeat =
            tokio::time::interval_at((Instant::now() + ping_every).into(), ping_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        // Counters and missed messages go out before anything live queued
        // meanwhile, so a client sees its inbox in order.
        let early = match self.catch_up(replay).await {
            Flow::Continue => None,
            Flow::Close(reason) => Some(Some(reason)),
            Flow::Gone => Some(None),
        };

        let close = if let Some(early) = early {
            early
        } else {
            loop {
                // Shutdown and overflow first; then, without bias, whichever
                // of writing, reading or the heartbeat is ready: a client that
                // sends fast still gets its acks in time, and a busy outbound
                // queue cannot stop the reading of its pongs and frames.
                let event = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break Some(reason(CloseCode::Away, "server shutting down")),
                    () = overflow.notified() => break Some(self.slow_consumer()),
                    event = async {
                        tokio::select! {
                            frame = outbound.recv() => Event::Out(frame),
                            message = stream.next() => Event::In(message),
                            _ = heartbeat.tick() => Event::Tick,
                        }
                    } => event,
                };
                match event {
                    Event::Out(frame) => {
                        let Some(frame) = frame else { break None };
                        // A client that does not read blocks this write; stay
                        // responsive to overflow and shutdown meanwhile.
                        tokio::select! {
                            biased;
                            () = shutdown.cancelled() => break Some(reason(CloseCode::Away, "server shutting down")),
                            () = overflow.notified() => break Some(self.slow_consumer()),
                            written = write(&mut self.ws, frame) => {
                                if written.is_err() { break None }
                                self.frames_out.inc();
                            }
                        }
                    }
                    Event::In(message) => {
                        let flow = match message {
                            None => Flow::Gone,
                            Some(Ok(message)) => {
                                last_heard = Instant::now();
                                let flow = self.on_message(message).await;
                                self.gw
                                    .metrics
                                    .frame_handling
                                    .observe(last_heard.elapsed().as_secs_f64());
                                flow
                            }
                            // The connection ended under the stream (the peer
                            // hung up right after its last frames): those frames
                            // are still buffered and come out of the next reads,
                            // then the stream ends. Keep reading, lose nothing.
                            Some(Err(ProtocolError::Io(e)))
                                if e.kind() != std::io::ErrorKind::InvalidData =>
                            {
                                Flow::Continue
                            }
                            Some(Err(ProtocolError::Overflow)) => Flow::Close(reason(
                                CloseCode::Size,
                                &format!(
                                    "frame larger than {} bytes",
                                    self.gw.settings.max_frame_bytes
                                ),
                            )),
                            Some(Err(e)) => {
                                Flow::Close(reason(CloseCode::Protocol, &e.to_string()))
                            }
                        };
                        match flow {
                            Flow::Continue => {}
                            Flow::Close(r) => break Some(r),
                            Flow::Gone => break None,
                        }
                    }
                    Event::Tick => {
                        if last_heard.elapsed() > idle_timeout {
                            self.gw.metrics.idle_disconnects.inc();
                            break Some(reason(
                                CloseCode::Other(CLOSE_IDLE),
                                "no pong within the idle timeout",
                            ));
                        }
                        if self.ws.ping(b"").await.is_err() {
                            break None;
                        }
                    }
                }
            }
        };

        debug!(
            endpoint = self.endpoint.label(),
            ?close,
            "connection ending"
        );
        gauge.dec();
        if let Some(presence) = self.presence.take() {
            presence.leave().await;
        }
        drop(self.registration);
        if let Some(close) = close {
            let mut ws = self.ws;
            let flush_and_close = async move {
                // What was queued before the close (an `error` explaining a
                // rate-limit close, say) goes out first — unless the queue
                // overflowed, which means this client is not reading anyway.
                if close.code != CloseCode::Again {
                    outbound.close();
                    while let Some(frame) = outbound.recv().await {
                        if write(&mut ws, frame).await.is_err() {
                            return;
                        }
                    }
                }
                let _ = ws.close(Some(close)).await;
            };
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, flush_and_close).await;
        }
    }

    fn slow_consumer(&self) -> CloseReason {
        self.gw.metrics.slow_consumer_disconnects.inc();
        reason(
            CloseCode::Again,
            "outbound queue full: the client reads too slowly",
        )
    }

    async fn on_message(&mut self, message: AggregatedMessage) -> Flow {
        match message {
            AggregatedMessage::Text(text) => {
                self.frames_in.inc();
                if let Some(flow) = self.rate_limit() {
                    return flow;
                }
                match &self.endpoint {
                    Endpoint::Lobby => self.publish(channel::LOBBY, envelope::text(&text)).await,
                    Endpoint::User(_) => self.on_user_text(&text).await,
                }
            }
            AggregatedMessage::Binary(bytes) => {
                self.frames_in.inc();
                if let Some(flow) = self.rate_limit() {
                    return flow;
                }
                match &self.endpoint {
                    Endpoint::Lobby => self.publish(channel::LOBBY, envelope::binary(&bytes)).await,
                    Endpoint::User(_) => self.reply_error(
                        None,
                        ErrorCode::Unsupported,
                        "user connections take JSON text frames",
                    ),
                }
            }
            AggregatedMessage::Ping(bytes) => {
                if self.ws.pong(&bytes).await.is_err() {
                    Flow::Gone
                } else {
                    Flow::Continue
                }
            }
            AggregatedMessage::Pong(_) => Flow::Continue,
            AggregatedMessage::Close(reason) => {
                Flow::Close(reason.unwrap_or_else(|| CloseCode::Normal.into()))
            }
        }
    }

    /// `Some(flow)` when the frame must be refused by the rate limit.
    fn rate_limit(&mut self) -> Option<Flow> {
        if self.limiter.check().is_ok() {
            self.strikes = 0;
            return None;
        }
        self.strikes += 1;
        self.gw.metrics.rate_limited_frames.inc();
        if self.strikes > self.gw.settings.rate_strikes {
            return Some(Flow::Close(reason(
                CloseCode::Policy,
                "rate limit exceeded",
            )));
        }
        if self.endpoint == Endpoint::Lobby {
            // The lobby speaks the seed's raw protocol: no JSON error frames.
            return Some(Flow::Continue);
        }
        // Queued like any delivery: a flooder that does not read closes itself.
        Some(self.reply_error(None, ErrorCode::RateLimited, "too many frames; slow down"))
    }

    /// Publishes to every replica; a broker failure is reported on user
    /// connections and ends nothing.
    pub(crate) async fn publish(&mut self, channel: &str, envelope: bytes::Bytes) -> Flow {
        match self.registration.hub().publish(channel, envelope).await {
            Ok(()) => Flow::Continue,
            Err(e) => match self.endpoint {
                // The lobby speaks the seed's raw protocol: no error frames.
                Endpoint::Lobby => Flow::Continue,
                Endpoint::User(_) => self.reply_error(None, ErrorCode::Unavailable, &e.to_string()),
            },
        }
    }

    /// Sends a frame to this connection only, through its queue (so it keeps
    /// its place among deliveries).
    pub(crate) fn reply(&self, frame: &ServerFrame) -> Flow {
        self.registration
            .conn()
            .push(Outbound::Text(frame.to_json().into()), &self.gw.metrics);
        Flow::Continue
    }

    pub(crate) fn reply_error(&self, id: Option<&str>, code: ErrorCode, message: &str) -> Flow {
        self.gw
            .metrics
            .frame_errors
            .with_label_values(&[code.as_str()])
            .inc();
        self.reply(&ServerFrame::error(id, code, message))
    }
}

async fn write(ws: &mut actix_ws::Session, frame: Outbound) -> Result<(), actix_ws::Closed> {
    match frame {
        Outbound::Text(text) => ws.text(text).await,
        Outbound::Binary(bytes) => ws.binary(bytes).await,
    }
}

fn reason(code: CloseCode, description: &str) -> CloseReason {
    CloseReason {
        code,
        description: Some(description.to_owned()),
    }
}
