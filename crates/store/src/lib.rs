//! Durable direct messages: the seed's unread mechanism and offline storage,
//! done so that nothing acknowledged is lost.
//!
//! - [`MessageStore`] (`store.rs`): the interface and its contract.
//! - [`redis::RedisStore`]: the distributed engine. Storing a message,
//!   counting it unread (`HINCRBY unread:{receiver} {sender} 1`) and
//!   publishing it happen in one Lua script — one atomic round trip — so
//!   counters never drift from messages and nothing is published unstored.
//! - [`sqlite::SqliteStore`]: the embedded engine for `chatd`, persisted in
//!   SQLite (through sea-orm) under the data folder; it publishes on the
//!   in-process broker after its transaction commits.
//!
//! Every user has an **inbox**: the messages they received and sent, each
//! with a per-user sequence number, the cursor clients sync from. A message
//! that arrives while the receiver has no connection anywhere is also put on
//! their **offline** list, handed over once to the next connection that does
//! not sync by itself (the seed's clients). Each conversation has a
//! **history** for paging. The same contract suite runs against both engines.

pub mod read;
pub mod redis;
pub mod sqlite;
mod store;

pub use store::{
    Appended, Direct, FrameText, HistoryEntry, InboxEntry, MessageStore, Presence, StoreError,
    Swept, Unread, now_millis,
};
