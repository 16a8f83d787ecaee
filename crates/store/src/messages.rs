//! The message store interface.

use std::collections::BTreeMap;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use chat_protocol::ChatMessage;

use crate::StoreError;

/// The text each receiver gets for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameText {
    /// A seed frame, delivered byte for byte as the sender wrote it.
    Seed(String),
    /// A typed frame, cut where the store writes the inbox's sequence
    /// number: `head` + seq + `tail` (e.g. `{"type":"message","seq":` …).
    Typed {
        /// Text before the sequence number.
        head: String,
        /// Text after it.
        tail: String,
    },
}

impl FrameText {
    /// The frame as an inbox holding it at `seq` delivers it.
    pub fn render(&self, seq: u64) -> String {
        match self {
            FrameText::Seed(text) => text.clone(),
            FrameText::Typed { head, tail } => format!("{head}{seq}{tail}"),
        }
    }
}

/// A direct message to store and deliver.
#[derive(Debug, Clone)]
pub struct Direct {
    /// Server id (a ULID).
    pub id: String,
    /// The sender.
    pub from: String,
    /// The sender's id for this send (the typed `send`'s `id`): a send
    /// repeating one the sender already made is stored once. `None` for
    /// seed frames, which carry no id.
    pub client_id: Option<String>,
    /// The receiver.
    pub to: String,
    /// What inboxes deliver.
    pub frame: FrameText,
    /// The message as conversation history keeps it (JSON, no sequence).
    pub history: String,
    /// Also keep a copy in the sender's inbox and publish it to the sender's
    /// other connections (typed messages; the seed protocol has no such echo).
    pub copy_to_sender: bool,
    /// The broker envelope header the published frames carry.
    pub envelope_header: Vec<u8>,
    /// The conversation position of the message this one answers (from
    /// [`crate::Lifecycle::quote`]), so deleting it empties this one's quote.
    pub reply_to: Option<u64>,
}

impl Direct {
    /// A typed `message` (to `message.to`) as the store takes it: the
    /// frame each inbox delivers, cut where it writes its `seq`, and the
    /// history's JSON. `client_id` makes a repeat store nothing;
    /// `copy_to_sender` keeps the sender's copy; `reply_to` is the
    /// position of the message it answers.
    pub fn typed(
        message: &ChatMessage,
        client_id: Option<String>,
        copy_to_sender: bool,
        envelope_header: Vec<u8>,
        reply_to: Option<u64>,
    ) -> Self {
        let (head, tail) = chat_protocol::message_template(message);
        Self {
            id: message.id.clone(),
            from: message.from.clone(),
            client_id,
            to: message.to.clone().unwrap_or_default(),
            frame: FrameText::Typed { head, tail },
            // unwrap: a ChatMessage holds only strings, integers and maps of them.
            #[allow(clippy::unwrap_used)]
            history: serde_json::to_string(message).unwrap(),
            copy_to_sender,
            envelope_header,
            reply_to,
        }
    }
}

/// Where a stored message landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Its sequence number in the receiver's inbox.
    pub receiver_seq: u64,
    /// Its sequence number in the sender's inbox, when copied there.
    pub sender_seq: Option<u64>,
    /// The receiver had no connection: it is on their offline list too.
    pub offline: bool,
    /// When this send repeats one the sender already made (same client
    /// id), nothing new was stored: this is the first send's message as
    /// the history keeps it, and the positions above are the first send's.
    pub repeated: Option<String>,
}

/// What a read marker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadMarker {
    /// The marker moved forward; the reader's counters afterwards.
    Moved(Unread),
    /// The message is at or before the marker: nothing changed (a late or
    /// repeated `read`); the reader's counters.
    Stale(Unread),
    /// No message of this conversation has that id.
    NotFound,
}

/// One message in an inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    /// Position in the inbox.
    pub seq: u64,
    /// The frame as delivered.
    pub frame: String,
}

/// One message in a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Opaque position, for paging with `before`.
    pub cursor: String,
    /// The message, as JSON.
    pub message: String,
}

/// Unread counters of one user: sender → count.
pub type Unread = BTreeMap<String, u64>;

/// The outcome of a queued direct message ([`MessageStore::queue_direct`]),
/// to come.
pub type Appending = BoxFuture<'static, Result<Appended, StoreError>>;

/// A durable message store.
///
/// Contract (checked by `tests/contract.rs` for every engine):
/// - `append_direct` resolves only once the message is durable; then it is
///   in the receiver's inbox (and the sender's when copied), in the history,
///   counted unread for the receiver, published to the receiver's (and
///   sender's) channel followed, for the receiver, by an `unread` frame with
///   the sender's new count, and — if the receiver had no connection — on
///   their offline list. Sequence numbers of one inbox start at 1 and grow by 1.
/// - `inbox_since(user, n)` returns the entries after `n`, in order.
/// - A send with a `client_id` the sender already used (among their last
///   [`SENT_IDS_KEPT`]) stores nothing and answers the first send's place.
/// - `take_offline` hands the offline entries over once, in order.
/// - `mark_read` moves a read marker forward only, to a message of the
///   conversation; the peer's messages after it stay unread.
/// - `history` pages newest first; `before` continues where a page ended.
/// - Inboxes and histories keep their last `history_max` entries, offline
///   lists their last `offline_max`.
pub trait MessageStore: Send + Sync + 'static {
    /// Stores, counts and publishes a direct message.
    fn append_direct(&self, message: Direct) -> BoxFuture<'static, Result<Appended, StoreError>>;

    /// Takes a direct message in its place in the store's order, and
    /// resolves once it has that place, to the future of its outcome (what
    /// [`Self::append_direct`] answers). Of two messages queued one after
    /// the other, the first is stored first and answered first, so a
    /// connection may queue its next message while this one is written: a
    /// store that commits in batches (the embedded one's group commit)
    /// then writes a client's burst in one transaction instead of one per
    /// round trip. The default stores the message before it resolves (each
    /// message has its place only once stored).
    fn queue_direct(&self, message: Direct) -> BoxFuture<'static, Appending> {
        Box::pin(
            self.append_direct(message)
                .map(|outcome| Box::pin(std::future::ready(outcome)) as Appending),
        )
    }

    /// Inbox entries after `after`, oldest first, at most `limit`.
    fn inbox_since(
        &self,
        user: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<InboxEntry>, StoreError>>;

    /// Entries that arrived while `user` had no connection, once.
    fn take_offline(&self, user: &str) -> BoxFuture<'static, Result<Vec<InboxEntry>, StoreError>>;

    /// The user's unread counters.
    fn unread(&self, user: &str) -> BoxFuture<'static, Result<Unread, StoreError>>;

    /// Marks the conversation with `peer` read up to message `up_to` (an id
    /// of a message either of them sent): the marker moves forward only,
    /// and the peer's messages after `up_to` stay counted unread.
    fn mark_read(
        &self,
        reader: &str,
        peer: &str,
        up_to: &str,
    ) -> BoxFuture<'static, Result<ReadMarker, StoreError>>;

    /// A page of the conversation between `a` and `b`, newest first.
    fn history(
        &self,
        a: &str,
        b: &str,
        before: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<HistoryEntry>, StoreError>>;

    /// Checks the backend works (for readiness probes).
    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// The two numbers of a history cursor, `{a}-{b}` (each at most 19
/// decimal digits, so within 64 bits); `None` for anything else. Both
/// engines issue cursors of this one form, so any cursor that looks right
/// means something to either: `0-{position}`, the conversation's
/// position on Redis and the history row on SQLite.
pub(crate) fn cursor_parts(cursor: &str) -> Option<(u64, u64)> {
    let (a, b) = cursor.split_once('-')?;
    let part = |s: &str| {
        (!s.is_empty() && s.len() <= 19 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    Some((part(a)?, part(b)?))
}

/// Client ids of a sender's sends kept to recognise a retry, at least.
pub const SENT_IDS_KEPT: usize = 1_000;

/// How long a sender's client ids outlive their last send, at least.
pub const SENT_IDS_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 60 * 60);

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The two users of a conversation in a fixed order, so both see one history.
pub fn conversation(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}
