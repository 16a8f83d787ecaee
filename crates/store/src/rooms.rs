//! The room store interface: durable group conversations.
//!
//! A room keeps **one history** (every message and membership change, each
//! at the room's next `seq`) and **one read marker per member** (the `seq`
//! read up to). A member's unread count is the room's last `seq` minus
//! their marker, less the room's quiet seqs after it (updates and deleted
//! messages, [`crate::lifecycle`]): derived, so it can never drift, and a message costs the
//! store the same whatever the number of members (fan-out on read: nothing
//! is copied per member).
//!
//! Rules every engine keeps (checked by `tests/rooms.rs` for each):
//! - `join` of a room that does not exist creates it, public, with the
//!   joiner as owner; of a private room, only a member may add someone;
//!   anyone may join a public room. A member's marker starts at their
//!   `member_joined` entry (nothing before it is unread for them).
//! - Members may add members; the owner may add admins. The owner removes
//!   anyone, an admin removes members (not admins or the owner), anyone
//!   removes themselves (`leave`). When the owner leaves, the admin who
//!   joined first becomes owner (else the member who joined first).
//! - A member's own message moves their marker to it (what one writes, one
//!   has read).
//! - Every change of membership is told to the user's connections (a
//!   control envelope on `user:{name}`: follow the room from entry `seq`,
//!   or stop) and, as a `member_joined` / `member_left` entry, to the room.
//! - A caller's right is checked before anything about the user it names,
//!   so an outsider learns nothing of who is in a room.
//! - Limits: [`RoomLimits`]; a refused change changes nothing.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;

use crate::StoreError;
use crate::messages::InboxEntry;

/// What a member may do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Writes, reads, adds members.
    Member,
    /// Also removes members.
    Admin,
    /// Also adds and removes admins. One per room.
    Owner,
}

impl Role {
    /// The role as stored and shown: `member`, `admin`, `owner`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// The role a stored or requested name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// How a user comes into a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// By themselves (`join`): public rooms only, created when new.
    Join,
    /// Added by a member, with a role (`admin` only by the owner).
    Added {
        /// The member adding them.
        by: String,
        /// Their role.
        role: Role,
    },
    /// Added by the application (the server API): no member's rights are
    /// asked, a private room too; the entry names [`crate::SYSTEM`].
    Server {
        /// Their role (`member` or `admin`).
        role: Role,
    },
}

/// Why a room call was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    /// No room has that name.
    #[error("no room '{0}'")]
    NotFound(String),
    /// The caller may not do that (the reason says why).
    #[error("{0}")]
    Forbidden(String),
    /// The room has [`RoomLimits::max_members`] members.
    #[error("room '{0}' has its maximum of {1} members")]
    Full(String, u64),
    /// The user is a member of [`RoomLimits::rooms_per_user`] rooms.
    #[error("'{0}' is a member of the maximum of {1} rooms")]
    TooManyRooms(String, u64),
    /// `create` of a name that is taken.
    #[error("a room named '{0}' exists already")]
    Exists(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RoomError {
    /// The protocol's code for this refusal, the same on the WebSocket and
    /// over HTTP: `not_found`, `forbidden`, `room_full`, `too_many_rooms`,
    /// `conflict` (a taken name), `unavailable` (the store failed).
    pub fn code(&self) -> chat_protocol::ErrorCode {
        use chat_protocol::ErrorCode;
        match self {
            RoomError::NotFound(_) => ErrorCode::NotFound,
            RoomError::Forbidden(_) => ErrorCode::Forbidden,
            RoomError::Full(..) => ErrorCode::RoomFull,
            RoomError::TooManyRooms(..) => ErrorCode::TooManyRooms,
            RoomError::Exists(_) => ErrorCode::Conflict,
            RoomError::Store(_) => ErrorCode::Unavailable,
        }
    }

    /// The HTTP status answering this refusal (RFC 9110): 404, 403, 409
    /// (a limit reached, a taken name), 503 (the store failed).
    pub fn http_status(&self) -> u16 {
        match self {
            RoomError::NotFound(_) => 404,
            RoomError::Forbidden(_) => 403,
            RoomError::Full(..) | RoomError::TooManyRooms(..) | RoomError::Exists(_) => 409,
            RoomError::Store(_) => 503,
        }
    }
}

/// A room as its members see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// Its name (the room id).
    pub name: String,
    /// Only members may add members; outsiders cannot join.
    pub private: bool,
    /// The owner, when the room has members.
    pub owner: Option<String>,
    /// How many members it has.
    pub members: u64,
    /// The `seq` of its latest entry (0 for none).
    pub last_seq: u64,
}

/// One member of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The user.
    pub user: String,
    /// What they may do.
    pub role: Role,
}

/// One of a user's rooms, for their conversation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    /// The room.
    pub room: String,
    /// Entries after the user's read marker.
    pub unread: u64,
    /// The latest entry (a `message` or membership frame), if any is kept.
    pub last: Option<String>,
    /// Whether it is private.
    pub private: bool,
    /// The user's role in it.
    pub role: Role,
}

/// A message to store in a room and publish to its members.
#[derive(Debug, Clone)]
pub struct RoomSend {
    /// The room (its name).
    pub room: String,
    /// Server id (a ULID).
    pub id: String,
    /// The sender; must be a member.
    pub from: String,
    /// The sender's id for this send: a send repeating one the sender
    /// already made in this room is stored once.
    pub client_id: String,
    /// The `message` frame, cut where the room writes its `seq`.
    pub head: String,
    /// The text after the `seq`.
    pub tail: String,
    /// The broker envelope header the published frame carries.
    pub envelope_header: Vec<u8>,
    /// The `seq` of the message this one answers (from
    /// [`crate::Lifecycle::quote`]), so deleting it empties this one's quote.
    pub reply_to: Option<u64>,
    /// Sent by the application (the server API), not a member: no
    /// membership is asked for and no read marker moves.
    pub as_server: bool,
}

/// What [`RoomStore::set_role`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// The member has the new role.
    Changed,
    /// They had it already.
    Same,
    /// They are no member.
    NotMember,
    /// They own the room: the owner's role does not change (remove them,
    /// and the room passes on).
    Owner,
}

/// Where a room message landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomAppended {
    /// Its `seq` in the room.
    pub seq: u64,
    /// When this send repeats one already made (same client id), nothing
    /// new was stored: the first send's frame, at the first send's `seq`.
    pub repeated: Option<String>,
}

/// What a room read marker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomRead {
    /// The marker moved forward: the reader's count afterwards, and how
    /// many members the room has (receipts go out only in small rooms).
    Moved {
        /// Entries after the marker.
        unread: u64,
        /// Members of the room.
        members: u64,
    },
    /// At or before the marker: nothing changed; the reader's count.
    Stale {
        /// Entries after the marker.
        unread: u64,
    },
    /// No entry of this room has that id (or it is no longer kept).
    NotFound,
}

/// Unread counts of one user's rooms: room → count.
pub type RoomUnread = BTreeMap<String, u64>;

/// Durable rooms. Every call naming a `user` acts as that user and checks
/// what they may do; see the module's rules.
pub trait RoomStore: Send + Sync + 'static {
    /// Creates room `room` owned by `owner` (its first member).
    ///
    /// Errors: [`RoomError::Exists`], [`RoomError::TooManyRooms`].
    fn create_room(
        &self,
        room: &str,
        owner: &str,
        private: bool,
    ) -> BoxFuture<'static, Result<(), RoomError>>;

    /// Makes `user` a member: `Ok(Some(seq))`, the `seq` of their
    /// `member_joined` entry; `Ok(None)` when they were one already
    /// (nothing changed).
    ///
    /// Errors: [`RoomError::NotFound`] (adding to a room that does not
    /// exist), [`RoomError::Forbidden`] (a private room, an adder who is no
    /// member, an admin not added by the owner), [`RoomError::Full`],
    /// [`RoomError::TooManyRooms`].
    fn join_room(
        &self,
        room: &str,
        user: &str,
        how: Admission,
    ) -> BoxFuture<'static, Result<Option<u64>, RoomError>>;

    /// Ends `user`'s membership, by themselves (`by` = `None`) or removed
    /// by `by`: `Ok(Some(seq))`, the `seq` of their `member_left` entry;
    /// `Ok(None)` when they were no member (nothing changed).
    ///
    /// Errors: [`RoomError::NotFound`], [`RoomError::Forbidden`] (a
    /// remover without the right).
    fn leave_room(
        &self,
        room: &str,
        user: &str,
        by: Option<&str>,
    ) -> BoxFuture<'static, Result<Option<u64>, RoomError>>;

    /// Deletes `room` and everything it keeps (history, members, read
    /// markers); each member's connections get `left`. Answers who were
    /// members. (The files of its messages are the caller's to let go:
    /// [`Self::room_files`] first.)
    ///
    /// Errors: [`RoomError::NotFound`].
    fn delete_room(&self, room: &str) -> BoxFuture<'static, Result<Vec<String>, RoomError>>;

    /// Gives member `user` of `room` another `role` (`member` or `admin`),
    /// as the application: what it did.
    ///
    /// Errors: [`RoomError::NotFound`] (no such room).
    fn set_role(
        &self,
        room: &str,
        user: &str,
        role: Role,
    ) -> BoxFuture<'static, Result<RoleChange, RoomError>>;

    /// The files `room`'s kept messages carry: `(message id, media id)` of
    /// each (read before a deletion, to let the files go with the room).
    ///
    /// Errors: [`RoomError::NotFound`].
    fn room_files(
        &self,
        room: &str,
    ) -> BoxFuture<'static, Result<Vec<(String, String)>, RoomError>>;

    /// Ends `user`'s membership as the application (the server API): no
    /// member's rights are asked; the entry names [`crate::SYSTEM`].
    /// `Ok(None)` when they were no member.
    ///
    /// Errors: [`RoomError::NotFound`].
    fn remove_as_server(
        &self,
        room: &str,
        user: &str,
    ) -> BoxFuture<'static, Result<Option<u64>, RoomError>>;

    /// Stores a message at the room's next `seq` (before answering), moves
    /// the sender's marker to it and publishes it on `room:{name}`.
    ///
    /// Errors: [`RoomError::NotFound`], [`RoomError::Forbidden`] (no member).
    fn append_room(&self, message: RoomSend)
    -> BoxFuture<'static, Result<RoomAppended, RoomError>>;

    /// The room's entries after `after`, oldest first, at most `limit`.
    ///
    /// Errors: [`RoomError::NotFound`], [`RoomError::Forbidden`] (no member).
    fn room_since(
        &self,
        room: &str,
        user: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<InboxEntry>, RoomError>>;

    /// The room's entries before `before` (all when `None`), newest first,
    /// at most `limit`.
    ///
    /// Errors: [`RoomError::NotFound`], [`RoomError::Forbidden`] (no member).
    fn room_history(
        &self,
        room: &str,
        user: &str,
        before: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<InboxEntry>, RoomError>>;

    /// Moves `user`'s marker forward to entry `up_to` (an id).
    ///
    /// Errors: [`RoomError::NotFound`] (no such room),
    /// [`RoomError::Forbidden`] (no member).
    fn mark_room_read(
        &self,
        room: &str,
        user: &str,
        up_to: &str,
    ) -> BoxFuture<'static, Result<RoomRead, RoomError>>;

    /// The names of `user`'s rooms.
    fn room_names(&self, user: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>>;

    /// `user`'s unread count in each of their rooms (0 included).
    fn room_unread(&self, user: &str) -> BoxFuture<'static, Result<RoomUnread, StoreError>>;

    /// `user`'s rooms with their unread counts and latest entries.
    fn room_list(&self, user: &str) -> BoxFuture<'static, Result<Vec<RoomSummary>, StoreError>>;

    /// A room and its members, as `viewer` sees it: anyone may look at a
    /// public room, only members at a private one; `None` is the
    /// application (the server API), which sees every room.
    ///
    /// Errors: [`RoomError::NotFound`], [`RoomError::Forbidden`].
    fn room_info(
        &self,
        room: &str,
        viewer: Option<&str>,
    ) -> BoxFuture<'static, Result<(RoomInfo, Vec<Member>), RoomError>>;
}

/// `(message id, media id)` of each `message` frame among `frames` that
/// carries a file (other entries, and frames that are no JSON, are skipped).
pub(crate) fn files_of<'a>(frames: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    frames
        .filter(|frame| frame.contains("\"media\""))
        .filter_map(|frame| serde_json::from_str::<serde_json::Value>(frame).ok())
        .filter(|entry| entry["type"] == "message")
        .filter_map(|entry| {
            let id = entry["id"].as_str()?.to_owned();
            let media = entry["media"]["id"].as_str()?.to_owned();
            Some((id, media))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_of_a_room_are_its_messages_media() {
        let frames = [
            r#"{"type":"message","seq":1,"id":"m1","from":"a","room":"r","body":"x","media":{"id":"f1","kind":"image"}}"#,
            r#"{"type":"member_joined","seq":2,"id":"j","room":"r","user":"b"}"#,
            r#"{"type":"message","seq":3,"id":"m2","from":"a","room":"r","body":"no file"}"#,
            r#"{"type":"update","seq":4,"message":{"id":"m1","media":{"id":"f1"}}}"#,
            "not json \"media\"",
        ];
        assert_eq!(
            files_of(frames.into_iter()),
            [("m1".to_owned(), "f1".to_owned())]
        );
    }
}
