//! Token revocation: the time before which a user's tokens are refused
//! (the server API's `disconnect` with `revoke: true`). Both engines keep
//! it and answer [`chat_auth::Revocations`], which the identity checks of
//! every service sharing the store consult.

use futures_util::future::BoxFuture;

use crate::StoreError;

/// Writing revocations (reading them is [`chat_auth::Revocations`]).
pub trait TokenRevocations: Send + Sync + 'static {
    /// Refuses `user`'s tokens issued before `at` (ms since the Unix
    /// epoch) from now on; an earlier time than one kept changes nothing.
    ///
    /// Errors: [`StoreError::Unavailable`].
    fn revoke_tokens(&self, user: &str, at: u64) -> BoxFuture<'static, Result<(), StoreError>>;
}
