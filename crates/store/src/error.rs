//! The store's error.

/// Why a store or presence call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached, or did not answer in time; nothing
    /// was stored, or (after a timeout) it may have been: every write is
    /// safe to retry (sends by their client id, presence by connection).
    #[error("message store unavailable: {0}")]
    Unavailable(String),
    /// The call is not one this engine answers (e.g. counting connections
    /// on a Redis presence reader that is not a gateway node).
    #[error("{0}")]
    Unsupported(&'static str),
    /// A history cursor not of the form every engine issues (`{a}-{b}`,
    /// two decimal numbers); nothing was read.
    #[error("before is not a history cursor: {0:?}")]
    InvalidCursor(String),
}
