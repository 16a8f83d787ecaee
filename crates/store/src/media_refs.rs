//! Which stored messages carry each uploaded file, so that deleting the
//! last message that carries a file can delete the file too (the message
//! lifecycle's promise: a deleted message's file is gone when no other
//! message uses it). A file may be sent more than once — to several
//! people, or again — so a file is held by a set of message ids.
//!
//! Errors only ever keep a file longer, never lose one: a message is
//! noted before it is stored (a note for a message never stored keeps the
//! file until a sweep nobody runs yet), and a file is let go only when the
//! note of the message being deleted was there and was the last. Files of
//! messages stored before these notes existed are therefore never deleted
//! by a message delete.

use futures_util::future::BoxFuture;

use crate::StoreError;

/// The notes of which messages carry which file (media id).
pub trait MediaRefs: Send + Sync + 'static {
    /// Notes that message `message` (its server id) carries file `media`.
    /// Called before the message is stored. Noting twice is noting once.
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn hold(&self, media: &str, message: &str) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Message `message` no longer carries `media` (it was deleted, or was
    /// a repeated send that stored nothing). `true` when that message was
    /// noted and was the last one holding the file: the caller deletes the
    /// file. `false` otherwise (others hold it, or it was never noted).
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn release(&self, media: &str, message: &str) -> BoxFuture<'static, Result<bool, StoreError>>;
}
