//! The keys of the server API (`chat-server-api`): who may call it, and
//! with which scopes. Only a SHA-256 of each key's secret is kept; the key
//! itself is shown once, when it is made.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// One API key as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Its public id (a ULID), the part of the key before the secret.
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// What it may do: `publish`, `rooms`, `users`, `read`.
    pub scopes: Vec<String>,
    /// Hex SHA-256 of the key's secret part.
    pub secret_sha256: String,
    /// When it was made, ms since the Unix epoch.
    pub created_at: u64,
    /// When it was revoked (ms), if it was: a revoked key opens nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

/// Where API keys are kept: Redis (the `api_keys` hash) or SQLite (the
/// `api_keys` table).
pub trait ApiKeys: Send + Sync + 'static {
    /// Keeps a new key. Errors: [`StoreError::Unavailable`].
    fn create_key(&self, key: ApiKey) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Every key, revoked ones too, oldest first (by `created_at`, then id).
    /// Errors: [`StoreError::Unavailable`].
    fn keys(&self) -> BoxFuture<'static, Result<Vec<ApiKey>, StoreError>>;

    /// Key `id`, if there is one. Errors: [`StoreError::Unavailable`].
    fn key(&self, id: &str) -> BoxFuture<'static, Result<Option<ApiKey>, StoreError>>;

    /// Revokes key `id` at `at` (ms); revoking again keeps the first time.
    /// `None` when there is no such key, else the key as it now is.
    /// Errors: [`StoreError::Unavailable`].
    fn revoke_key(
        &self,
        id: &str,
        at: u64,
    ) -> BoxFuture<'static, Result<Option<ApiKey>, StoreError>>;
}

/// A stored record as a key, or why it is unreadable.
pub(crate) fn parse(record: &str) -> Result<ApiKey, StoreError> {
    serde_json::from_str(record)
        .map_err(|e| StoreError::Unavailable(format!("unreadable API key record: {e}")))
}

/// A key as its stored record.
pub(crate) fn record(key: &ApiKey) -> String {
    // unwrap: strings, integers and a list of strings always serialise.
    #[allow(clippy::unwrap_used)]
    serde_json::to_string(key).unwrap()
}

/// `key` revoked at `at`, unless it was already.
fn revoked(mut key: ApiKey, at: u64) -> ApiKey {
    key.revoked_at.get_or_insert(at);
    key
}

/// [`ApiKeys::revoke_key`] for an engine that reads and writes whole
/// records: read, mark, write back. (Two revocations at once both write
/// a true revocation time.)
pub(crate) fn revoke_by_rewrite<S: ApiKeys + Clone>(
    store: &S,
    id: &str,
    at: u64,
) -> BoxFuture<'static, Result<Option<ApiKey>, StoreError>> {
    let (found, store) = (store.key(id), store.clone());
    Box::pin(async move {
        let Some(key) = found.await? else {
            return Ok(None);
        };
        let key = revoked(key, at);
        store.create_key(key.clone()).await?;
        Ok(Some(key))
    })
}
