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

/// The note that marks a file being deleted (message ids are ULIDs: no
/// id is spelled like it).
pub(crate) const DELETING: &str = "~deleting";

/// The notes of which messages carry which file (media id).
pub trait MediaRefs: Send + Sync + 'static {
    /// Notes that message `message` (its server id) carries file `media`;
    /// called before the file is looked up and the message stored. Noting
    /// twice is noting once. `false` when the file is being deleted (the
    /// last message carrying it was): nothing is noted, the send must be
    /// refused.
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn hold(&self, media: &str, message: &str) -> BoxFuture<'static, Result<bool, StoreError>>;

    /// Message `message` no longer carries `media` (it was deleted, or was
    /// a send that stored nothing). `true` when that message was noted and
    /// was the last one holding the file: the file is marked as being
    /// deleted in the same step (no send can take it up again) and the
    /// caller deletes it, then calls [`Self::forget`]. `false` otherwise
    /// (others hold it, or it was never noted).
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn release(&self, media: &str, message: &str) -> BoxFuture<'static, Result<bool, StoreError>>;

    /// The note of a send that stored nothing goes (nothing else changes:
    /// this message never carried the file, so no deletion follows).
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn unhold(&self, media: &str, message: &str) -> BoxFuture<'static, Result<(), StoreError>>;

    /// The file is deleted: its notes go. (A file whose deletion failed
    /// keeps its mark, and is never sent again.)
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn forget(&self, media: &str) -> BoxFuture<'static, Result<(), StoreError>>;
}
