//! The typed protocol: JSON text frames tagged by `"type"`.
//!
//! Every frame a client sends that answers something carries the client's
//! `id`, and the server's `ack` or `error` echoes it, so a client can match
//! replies to requests without ordering assumptions.

use serde::{Deserialize, Serialize};

/// A frame from client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Send a message to a user (`to`) or to a room (`room`): exactly one of
    /// the two; a text `body`, an uploaded `media` file, or both. Answered by
    /// `ack` (or `error`) carrying the same `id`.
    Send {
        /// Client-chosen id (1–64 characters), echoed in the answer.
        id: String,
        /// The receiving user, for a direct message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// The receiving room; the sender must be a member.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The text of the message (may be empty when `media` is given). As
        /// in every text field, an escaped lone UTF-16 surrogate (`"\ud83d"`,
        /// as `JSON.stringify` writes half an emoji) is read as U+FFFD.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        body: String,
        /// A file the sender uploaded to the media service.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media: Option<MediaRef>,
        /// The server id of a message of the same conversation this one
        /// answers: delivered messages quote it (`reply_to`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    /// Replace the text of one's own message (`peer` or `room` names its
    /// conversation: exactly one of the two). The message keeps its id and
    /// `seq` and gains `edited_at`; everyone who can see it gets an
    /// `update`. Answered by `ack` with the message as it now is.
    Edit {
        /// Client-chosen id (1–64 characters), echoed in the answer.
        id: String,
        /// The other user of the direct conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// The room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The server id of the message.
        message: String,
        /// The new text (may be empty when the message has a file).
        body: String,
    },
    /// Delete a message for everyone: its author may, and in a room its
    /// admins and owner. The text and file are removed from storage; a
    /// tombstone (`deleted: true`) keeps its place. Answered by `ack`.
    Delete {
        /// Client-chosen id (1–64 characters), echoed in the answer.
        id: String,
        /// The other user of the direct conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// The room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The server id of the message.
        message: String,
    },
    /// Add this user's reaction `emoji` (one emoji grapheme) to a message;
    /// reacting twice with one emoji changes nothing. Answered by `ack`.
    React {
        /// Client-chosen id (1–64 characters), echoed in the answer.
        id: String,
        /// The other user of the direct conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// The room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The server id of the message.
        message: String,
        /// The reaction: a single emoji (`👍`, `👍🏽`, `🏳️‍🌈`).
        emoji: String,
    },
    /// Take this user's reaction `emoji` back. Answered by `ack`.
    Unreact {
        /// Client-chosen id (1–64 characters), echoed in the answer.
        id: String,
        /// The other user of the direct conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// The room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The server id of the message.
        message: String,
        /// The reaction to take back.
        emoji: String,
    },
    /// Join a room: this user becomes a member (a public room that does not
    /// exist yet is created, with this user as its owner), and every
    /// connection of the user, now and later, receives the room. Answered
    /// by `joined`; the user's other connections get `joined` too.
    Join {
        /// Optional client id, echoed in the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room to join.
        room: String,
    },
    /// Leave a room: the user is a member no more, on every connection.
    /// Answered by `left`.
    Leave {
        /// Optional client id, echoed in the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room to leave.
        room: String,
    },
    /// Fetch what came after `since` (a `seq`), oldest first: this user's
    /// inbox of direct messages, or with `room`, that room's history
    /// (messages and membership events; members only). Answered by those
    /// frames, then `synced`.
    Sync {
        /// Optional client id, echoed in `synced`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// A room this user is a member of; absent for the inbox.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The last `seq` the client has; 0 for everything kept.
        since: u64,
        /// At most this many frames (default and maximum 500).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Tell `to` (or the other members of `room`) that this user is typing
    /// (not stored; send it every few seconds while typing). Exactly one of
    /// the two. Nothing is answered.
    Typing {
        /// The user being written to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// The room being written to; the sender must be a member.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// Follow users' online state: answered by one `presence` frame per user
    /// now, then another each time one of them comes or goes.
    Watch {
        /// Optional client id, echoed in an `error` if refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The users to follow.
        users: Vec<String>,
    },
    /// Stop following users' online state. Nothing is answered.
    Unwatch {
        /// The users to stop following.
        users: Vec<String>,
    },
    /// Mark the conversation with `peer` (or the room `room`: exactly one of
    /// the two) read up to message `up_to` (a server id). Every connection
    /// of this user gets the new `unread`; the peer gets a `receipt` (a
    /// small room's members get one too).
    Read {
        /// Optional client id, echoed in an `error` if refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The other user of the conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// The room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The id of the last message read.
        up_to: String,
    },
}

impl ServerFrame {
    /// `frame` (a room message or membership event) as it reads at `seq`,
    /// cut where the room writes it: `head` + seq + `tail`.
    pub fn room_template(&self) -> (String, String) {
        const MARK: u64 = u64::MAX;
        let marked = match self {
            ServerFrame::Message(message) => ServerFrame::Message(ChatMessage {
                seq: Some(MARK),
                ..message.clone()
            }),
            ServerFrame::Update { message, .. } => ServerFrame::Update {
                seq: Some(MARK),
                message: message.clone(),
            },
            ServerFrame::MemberJoined(event) => ServerFrame::MemberJoined(RoomEvent {
                seq: MARK,
                ..event.clone()
            }),
            ServerFrame::MemberLeft(event) => ServerFrame::MemberLeft(RoomEvent {
                seq: MARK,
                ..event.clone()
            }),
            other => return (other.to_json(), String::new()),
        };
        cut_at_seq(&marked.to_json(), MARK)
    }
}

/// `json` cut around its `"seq":{mark}` (the first: `seq` comes before
/// every string field of these frames).
fn cut_at_seq(json: &str, mark: u64) -> (String, String) {
    let needle = format!("\"seq\":{mark}");
    match json.split_once(&needle) {
        Some((head, tail)) => (format!("{head}\"seq\":"), tail.to_owned()),
        // unreachable in practice: `seq` is always serialised when set
        None => (json.to_owned(), String::new()),
    }
}

impl ClientFrame {
    /// Every `type` a client may send, to tell an unknown type from a
    /// malformed frame of a known type.
    pub const TYPES: &'static [&'static str] = &[
        "send", "edit", "delete", "react", "unreact", "join", "leave", "sync", "read", "typing",
        "watch", "unwatch",
    ];

    /// The client id the frame carries, if any, for error replies.
    pub fn id(&self) -> Option<&str> {
        match self {
            ClientFrame::Send { id, .. }
            | ClientFrame::Edit { id, .. }
            | ClientFrame::Delete { id, .. }
            | ClientFrame::React { id, .. }
            | ClientFrame::Unreact { id, .. } => Some(id),
            ClientFrame::Join { id, .. }
            | ClientFrame::Leave { id, .. }
            | ClientFrame::Sync { id, .. }
            | ClientFrame::Read { id, .. }
            | ClientFrame::Watch { id, .. } => id.as_deref(),
            ClientFrame::Typing { .. } | ClientFrame::Unwatch { .. } => None,
        }
    }
}

/// A reference to an uploaded file, as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MediaRef {
    /// The id the upload answered with.
    pub id: String,
}

/// An uploaded file, as receivers get it: enough to render it at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MediaInfo {
    /// The media id.
    pub id: String,
    /// `image`, `audio`, `video` or `file`: how to show it.
    pub kind: String,
    /// The type sniffed from the content.
    pub mime: String,
    /// Bytes.
    pub size: u64,
    /// A signed link, valid for a while; `GET /api/v1/media/{id}` gives a fresh one.
    pub url: String,
    /// Pixels, for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Pixels, for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// A signed link to a thumbnail at most 320 pixels wide and high, for
    /// images larger than that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Every connection of one user.
    User(&'a str),
    /// Every connection that joined a room.
    Room(&'a str),
}

/// A message as the server stored and delivers it, in its current state
/// (edited, deleted, reacted to).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// Where the message sits: for a direct message, in the inbox of the
    /// user this frame is for (the sender's copy has the sender's); for a
    /// room message, in the room (every member sees the same). The cursor
    /// to `sync` from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Server id: a ULID, unique and sortable by time. Clients drop duplicates by it.
    pub id: String,
    /// The sending user's id, decided by the server from the connection.
    pub from: String,
    /// How the sender is shown: their display name (from their identity
    /// provider's token) or their nickname as they typed it; absent when
    /// unknown. Clients show it, and route by `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_name: Option<String>,
    /// The receiving user, for a direct message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The room, for a room message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The text of the message (empty for a file without a caption).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// The attached file, with its metadata and a link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaInfo>,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ts: u64,
    /// The message this one answers, quoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Quote>,
    /// When its author last edited it, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<u64>,
    /// Deleted for everyone: a tombstone, without text, file or reactions,
    /// that keeps the message's place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Emoji → who reacted with it. Absent when none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub reactions: std::collections::BTreeMap<String, Reaction>,
}

/// The message a reply answers, as the reply quotes it: enough to render
/// the quote without fetching the original.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Quote {
    /// The original's server id.
    pub id: String,
    /// Its author.
    pub from: String,
    /// The start of its text: at most 100 characters (an ellipsis ends a
    /// cut one); absent when it has none or was deleted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub excerpt: String,
    /// The original's file kind (`image`, `audio`, `video`, `file`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_kind: Option<String>,
    /// The original was deleted: nothing of it is quoted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// The users who reacted to a message with one emoji.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Reaction {
    /// How many users reacted with it (the length of `users`).
    pub count: u64,
    /// Who, in the order they reacted: a client shows its own reaction as
    /// chosen when its user is here.
    pub users: Vec<String>,
}

/// A membership change, as a room's history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RoomEvent {
    /// Position in the room's history, as for messages.
    pub seq: u64,
    /// Server id (a ULID): `read` may point at it.
    pub id: String,
    /// The room.
    pub room: String,
    /// The user who joined or left.
    pub user: String,
    /// Who added or removed them, when it was someone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When, in milliseconds since the Unix epoch.
    pub ts: u64,
}

/// A frame from server to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerFrame {
    /// The server accepted a `send`: `id` is the client's, `message` is what
    /// receivers get.
    Ack {
        /// The client id of the `send` this answers.
        id: String,
        /// The message as delivered, with its server id and timestamp.
        message: ChatMessage,
    },
    /// A message for this connection (a direct message or a room message; a
    /// room message reaches the sender's own connections too).
    Message(ChatMessage),
    /// A message changed (edited, deleted, reacted to): `message` is the
    /// whole message as it now is, with its own `seq`. Replace the message
    /// with the same id; applying an update twice changes nothing. An
    /// update is itself an entry of the inbox or room at `seq`, so `sync`
    /// returns the updates a client missed (a message's latest update only).
    Update {
        /// The update's position in the inbox or room: the cursor to `sync` from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// The message in its current state.
        message: ChatMessage,
    },
    /// This user joined a room (answering this connection's `join`, or
    /// another connection's, or a member who added this user).
    Joined {
        /// The client id of the `join`, if it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room joined.
        room: String,
    },
    /// This user left a room (or was removed from it).
    Left {
        /// The client id of the `leave`, if it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room left.
        room: String,
    },
    /// Unread counters, sender → count: all of them when a connection opens
    /// or after a `read`; the changed ones when a message arrives. A count of
    /// 0 means that conversation is read.
    Unread {
        /// Sender → number of unread messages.
        counts: std::collections::BTreeMap<String, u64>,
        /// Room → number of unread entries: every room of the user when a
        /// connection opens, the room read after a room `read`. Absent when
        /// empty. Room messages arriving live are not announced here (each
        /// member's count is theirs): a client adds one per room `message`
        /// or membership event from someone else.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        rooms: std::collections::BTreeMap<String, u64>,
    },
    /// The end of a `sync` (or of the replay after connecting).
    Synced {
        /// The client id of the `sync`, if it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The room synced; absent for the inbox.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The last `seq` delivered; the next `sync` starts here.
        until: u64,
        /// More messages are waiting: `sync` again from `until`.
        more: bool,
    },
    /// A user is typing to this one (or in one of this user's rooms).
    Typing {
        /// Who is typing.
        from: String,
        /// The room, when they type in one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// A watched user's online state: now (after `watch`) or as it changes.
    Presence {
        /// The user.
        user: String,
        /// Connected anywhere.
        online: bool,
        /// When their last connection closed, ms since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seen: Option<u64>,
    },
    /// The peer (or a member of a small room) read up to a message.
    Receipt {
        /// Who read.
        from: String,
        /// The id of the last message they read.
        up_to: String,
        /// The room, for a room read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// A user became a member of a room: an entry of the room's history,
    /// with its `seq`, delivered like a message and returned by `sync`.
    MemberJoined(RoomEvent),
    /// A user stopped being a member of a room (left, or was removed `by`
    /// someone): an entry of the room's history, like `member_joined`.
    MemberLeft(RoomEvent),
    /// A frame was refused. The connection stays open unless a close follows.
    Error {
        /// The client id of the refused frame, when it had a readable one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Stable, machine-readable reason.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
}

impl ServerFrame {
    /// An `error` frame.
    pub fn error(id: Option<&str>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            id: id.map(str::to_owned),
            code,
            message: message.into(),
        }
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // unwrap: these types hold only strings, integers and enums; serialising them cannot fail.
        #[allow(clippy::unwrap_used)]
        serde_json::to_string(self).unwrap()
    }
}

/// Defines [`ErrorCode`] from one list: each variant with its wire name,
/// written once, from which the serde name and [`ErrorCode::as_str`] both come.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $wire:literal,)*) => {
        /// Stable error codes, shared by WebSocket `error` frames and HTTP error bodies.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        pub enum ErrorCode {
            $($(#[doc = $doc])* #[serde(rename = $wire)] $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $wire,)*
                }
            }
        }
    };
}

error_codes! {
    /// The frame is not JSON, or not a JSON object.
    BadJson = "bad_json",
    /// The frame's `type` is not one the server knows.
    UnknownType = "unknown_type",
    /// The frame is JSON of a known shape but a field is missing, extra or wrong.
    InvalidFrame = "invalid_frame",
    /// A user or room name breaks the naming rules.
    InvalidName = "invalid_name",
    /// A seed frame's `sender` is not the connection's user.
    SenderMismatch = "sender_mismatch",
    /// The user is a member of as many rooms as allowed
    /// (`CHAT_ROOMS_PER_USER`), or the connection watches as many users.
    TooManyRooms = "too_many_rooms",
    /// The room has as many members as allowed (`CHAT_ROOM_MAX_MEMBERS`).
    RoomFull = "room_full",
    /// (HTTP 409) The thing to create exists already (a room's name is taken).
    Conflict = "conflict",
    /// The connection sends faster than its rate limit; the frame was dropped.
    RateLimited = "rate_limited",
    /// A dependency (broker or store) is unreachable; nothing was accepted.
    Unavailable = "unavailable",
    /// This endpoint does not accept this kind of frame.
    Unsupported = "unsupported",
    /// The server holds as many connections as it may; try another replica.
    OverCapacity = "over_capacity",
    /// (HTTP 401) No valid credentials: a missing, malformed, wrongly signed or expired token.
    Unauthorized = "unauthorized",
    /// (HTTP 403) Valid credentials, but not for this user or resource (a
    /// room the user is no member of, a private room, a foreign Origin).
    Forbidden = "forbidden",
    /// (HTTP 404) No such resource (a media id, a room, a message).
    NotFound = "not_found",
    /// (HTTP 413) An upload over the size limit.
    TooLarge = "too_large",
    /// (HTTP 408) A request body that stopped arriving (a stalled upload).
    Timeout = "timeout",
    /// An unexpected server fault.
    Internal = "internal",
}

/// A `message` frame cut where each inbox writes its sequence number:
/// `head` + seq + `tail` is the frame an inbox at that position delivers.
/// Serialised once; every inbox only glues its number in.
pub fn message_template(message: &ChatMessage) -> (String, String) {
    ServerFrame::Message(message.clone()).room_template()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_is_on_the_wire_as_its_name() {
        for code in ErrorCode::ALL {
            let wire = serde_json::to_string(code).unwrap();
            assert_eq!(wire, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&wire).unwrap(), *code);
        }
    }

    #[test]
    fn a_message_template_renders_the_frame_with_any_seq() {
        let message = ChatMessage {
            seq: None,
            id: "01J".into(),
            from: "alice".into(),
            from_name: None,
            to: Some("bob".into()),
            room: None,
            body: "\"seq\":18446744073709551615 in a body".into(),
            media: None,
            ts: 7,
            ..Default::default()
        };
        let (head, tail) = message_template(&message);
        let rendered: ServerFrame = serde_json::from_str(&format!("{head}42{tail}")).unwrap();
        assert_eq!(
            rendered,
            ServerFrame::Message(ChatMessage {
                seq: Some(42),
                ..message
            })
        );
    }
}
