//! What frame handlers share: the context they run in, the connection's
//! reply queue, and what a handled frame asks of the session.

use actix_ws::{CloseCode, CloseReason};
use chat_broker::envelope::Outbound;
use chat_protocol::{ErrorCode, ServerFrame};

use futures_util::future::BoxFuture;

use crate::Inner;
use crate::hub::Conn;
use crate::metrics::GatewayMetrics;

/// What the session does after a frame was handled.
pub(crate) enum Outcome {
    /// Nothing more: any answer went through the reply queue.
    Continue,
    /// Write these frames straight to the socket, in order (a `sync` page,
    /// which may be larger than the outbound queue).
    Write(Vec<String>),
    /// Close the connection with this reason.
    Close(CloseReason),
    /// Follow `room`, which the user is a member of since entry `seq` (0:
    /// unknown): the session holds live deliveries back while the
    /// connection subscribes and reads the room's entries
    /// ([`super::connection::Connection::follow`]), so `joined` and the
    /// entries go out first and in order (`id`: the `join` answered).
    Follow {
        id: Option<String>,
        room: String,
        seq: u64,
    },
    /// Write these frames (`joined` and a room's entries), then drop the
    /// live copies of that room's entries up to `until` that were queued
    /// meanwhile ([`super::fence`]).
    Followed {
        frames: Vec<String>,
        room: String,
        until: u64,
    },
    /// The frame has its place in the store's order; this finishes it (it
    /// waits for the store and queues the answer). The session runs these
    /// one after another, in the order of their frames, while it reads and
    /// queues the next direct `send`s ([`super::session`]).
    Queued(BoxFuture<'static, ()>),
}

/// Everything a handler of a user's frame may use.
pub(crate) struct Ctx<'a> {
    /// The gateway's services and settings.
    pub(crate) gw: &'a Inner,
    /// Where answers go.
    pub(crate) replies: &'a Replies,
    /// Whose connection this is (the user id).
    pub(crate) user: &'a str,
    /// How that user is shown (a nickname as typed, a token's name).
    pub(crate) name: Option<&'a str>,
}

impl Ctx<'_> {
    /// A user named in a frame, as the id it stands for; an `invalid_name`
    /// error answering frame `id` when it is none (naming the field).
    pub(crate) fn user_id(
        &self,
        name: &str,
        field: &str,
        id: Option<&str>,
    ) -> Result<String, Outcome> {
        self.gw.auth.user_names().id(name).map_err(|e| {
            self.replies
                .error(id, ErrorCode::InvalidName, &format!("{field}: {e}"))
        })
    }

    /// A room named in a frame, as the id it stands for (see [`Ctx::user_id`]).
    pub(crate) fn room_id(&self, name: &str, id: Option<&str>) -> Result<String, Outcome> {
        chat_auth::names::room(name).map_err(|e| {
            self.replies
                .error(id, ErrorCode::InvalidName, &format!("room: {e}"))
        })
    }
}

/// A connection's answers go through its outbound queue, so they keep their
/// place among deliveries and a client that does not read closes itself.
pub(crate) struct Replies {
    conn: Conn,
    metrics: GatewayMetrics,
    /// Answers held back while earlier frames are still queued in the
    /// store (`Some` while deferring): they go out after those frames'.
    deferred: std::sync::Mutex<Option<Vec<String>>>,
}

impl Clone for Replies {
    /// The same connection's replies, not deferring.
    fn clone(&self) -> Self {
        Self::new(self.conn.clone(), self.metrics.clone())
    }
}

impl Replies {
    pub(crate) fn new(conn: Conn, metrics: GatewayMetrics) -> Self {
        Self {
            conn,
            metrics,
            deferred: std::sync::Mutex::new(None),
        }
    }

    /// Queues `frame` for this connection only.
    pub(crate) fn send(&self, frame: &ServerFrame) -> Outcome {
        let text = frame.to_json();
        let mut deferred = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
        match deferred.as_mut() {
            Some(held) => held.push(text),
            None => {
                self.conn.push(Outbound::Text(text.into()), &self.metrics);
            }
        }
        Outcome::Continue
    }

    /// From now on, holds answers back until [`Self::take_deferred`].
    pub(crate) fn defer(&self) {
        *self.deferred.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    }

    /// Stops deferring: the answers held back, in order.
    pub(crate) fn take_deferred(&self) -> Vec<String> {
        self.deferred
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()
    }

    /// Queues `frames`, already rendered, in order.
    pub(crate) fn send_all(&self, frames: Vec<String>) {
        for text in frames {
            self.conn.push(Outbound::Text(text.into()), &self.metrics);
        }
    }

    /// Queues an `error` answering frame `id`, counted by code.
    pub(crate) fn error(&self, id: Option<&str>, code: ErrorCode, message: &str) -> Outcome {
        self.metrics
            .frame_errors
            .with_label_values(&[code.as_str()])
            .inc();
        self.send(&ServerFrame::error(id, code, message))
    }

    /// Queues `unavailable` for frame `id`: a store or broker failed.
    pub(crate) fn unavailable(&self, id: Option<&str>, e: &dyn std::fmt::Display) -> Outcome {
        self.error(id, ErrorCode::Unavailable, &e.to_string())
    }
}

/// A close reason with a description.
pub(crate) fn reason(code: CloseCode, description: &str) -> CloseReason {
    CloseReason {
        code,
        description: Some(description.to_owned()),
    }
}

/// What a send stored, for the file it carries ([`chat_store::MediaRefs`]).
pub(crate) enum Kept {
    /// Stored, as the message with this id (a repeated send: the first's).
    As(String),
    /// Refused: nothing stored.
    Nothing,
    /// The store did not answer: it may have stored it.
    Unknown,
}
