//! The message store interface.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached; nothing was stored.
    #[error("message store unavailable: {0}")]
    Unavailable(String),
}

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
}

/// Where a stored message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its sequence number in the receiver's inbox.
    pub receiver_seq: u64,
    /// Its sequence number in the sender's inbox, when copied there.
    pub sender_seq: Option<u64>,
    /// The receiver had no connection: it is on their offline list too.
    pub offline: bool,
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

/// Whether a user has a connection anywhere, and when they last had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// At least one connection on a live gateway.
    pub online: bool,
    /// When their last connection closed (ms since the Unix epoch), if ever.
    pub last_seen: Option<u64>,
}

/// A user found offline by [`MessageStore::sweep`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Swept {
    /// Who.
    pub user: String,
    /// Last seen (ms since the epoch): when their gateway last renewed its lease.
    pub last_seen: u64,
}

/// Unread counters of one user: sender → count.
pub type Unread = BTreeMap<String, u64>;

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
/// - `take_offline` hands the offline entries over once, in order.
/// - `mark_read` zeroes one counter and returns all of them.
/// - `history` pages newest first; `before` continues where a page ended.
pub trait MessageStore: Send + Sync + 'static {
    /// Stores, counts and publishes a direct message.
    fn append_direct(&self, message: Direct) -> BoxFuture<'static, Result<Appended, StoreError>>;

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

    /// Marks the conversation with `peer` read up to message `up_to`; returns
    /// the reader's counters afterwards.
    fn mark_read(
        &self,
        reader: &str,
        peer: &str,
        up_to: &str,
    ) -> BoxFuture<'static, Result<Unread, StoreError>>;

    /// A page of the conversation between `a` and `b`, newest first.
    fn history(
        &self,
        a: &str,
        b: &str,
        before: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<HistoryEntry>, StoreError>>;

    /// A connection of `user` opened on this node; `true` when it is the
    /// user's only connection on any live node (they just came online).
    /// Coming online is announced to the user's watchers (`watch:{user}`)
    /// in the same step as the count, so announcements about one user
    /// arrive in the order of the counts, whichever gateways they come from.
    fn connected(&self, user: &str) -> BoxFuture<'static, Result<bool, StoreError>>;

    /// A connection of `user` closed on this node; the last one records
    /// the time as the user's last-seen. `true` when the user has no
    /// connection left on any live node (they just went offline), which is
    /// announced to their watchers in the same step.
    fn disconnected(&self, user: &str) -> BoxFuture<'static, Result<bool, StoreError>>;

    /// Whether `user` is online now (on any live gateway), and last seen.
    fn presence(&self, user: &str) -> BoxFuture<'static, Result<Presence, StoreError>>;

    /// Announces to their watchers (`watch:{user}`) the users who went
    /// offline because a gateway died without a word (its lease lapsed),
    /// last seen when that gateway was last known alive, and answers who
    /// they were. Each such user is announced once, by whichever node sweeps
    /// first; an engine without other nodes has none.
    fn sweep(&self) -> BoxFuture<'static, Result<Vec<Swept>, StoreError>>;

    /// Checks the backend works (for readiness probes).
    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>>;
}

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
