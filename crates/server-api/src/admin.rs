//! Making, listing and revoking API keys: the bootstrap key's power alone
//! (a key cannot make a key, so no key can give itself more scopes). The
//! command line (`chatd api-key`) does the same on the store directly.

use actix_web::{HttpRequest, HttpResponse, web};
use chat_protocol::ErrorCode;
use chat_store::{ApiKey, ApiKeys};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ApiError, Caller, Scope, ServerApi, keys};

/// The longest name a key may have, in characters.
const MAX_NAME: usize = 100;

/// A key to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    /// What the key is for (1–100 characters), shown in listings.
    #[schema(min_length = 1, max_length = 100, example = "shop backend")]
    name: String,
    /// What it may do (at least one).
    #[schema(min_items = 1)]
    scopes: Vec<Scope>,
}

/// A key just made: the only time `key` is shown.
#[derive(Serialize, ToSchema)]
pub(crate) struct MadeKey {
    /// The key to give the application: `Authorization: Bearer <key>`.
    key: String,
    #[serde(flatten)]
    view: KeyView,
}

/// A key as listed: never its secret.
#[derive(Serialize, ToSchema)]
pub(crate) struct KeyView {
    /// Its public id (the part of the key after `ck_`, before the dot).
    id: String,
    /// What it is for.
    name: String,
    /// What it may do.
    scopes: Vec<String>,
    /// When it was made (ms since the Unix epoch).
    created_at: u64,
    /// When it was revoked (ms); absent while it works.
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<u64>,
}

impl From<ApiKey> for KeyView {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id,
            name: key.name,
            scopes: key.scopes,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// Every key, revoked ones too.
#[derive(Serialize, ToSchema)]
pub(crate) struct KeyList {
    /// Oldest first.
    keys: Vec<KeyView>,
}

/// Makes a key named `name` with `scopes` and keeps it in `store`: the
/// record kept and the key to hand out (once).
///
/// Errors: [`ApiError::BadRequest`] for a name that is empty or over 100
/// characters, or no scope; [`ApiError::Unavailable`].
pub async fn make_key(
    store: &dyn ApiKeys,
    name: &str,
    scopes: &[Scope],
) -> Result<(ApiKey, String), ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.contains(char::is_control) {
        return Err(ApiError::BadRequest(
            ErrorCode::InvalidFrame,
            format!("a key's name has 1 to {MAX_NAME} characters, none of them control characters"),
        ));
    }
    if scopes.is_empty() {
        return Err(ApiError::BadRequest(
            ErrorCode::InvalidFrame,
            "a key needs at least one scope: publish, rooms, users, read".into(),
        ));
    }
    let mut scopes = scopes.to_vec();
    scopes.sort_by_key(|s| Scope::ALL.iter().position(|a| a == s));
    scopes.dedup();
    let (record, key) = keys::generate(name, &scopes, crate::now_ms())
        .map_err(|e| ApiError::Unavailable(chat_store::StoreError::Unavailable(e)))?;
    store.create_key(record.clone()).await?;
    Ok((record, key))
}

/// Refuses every caller but the bootstrap key.
fn bootstrap_only(caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Bootstrap => Ok(()),
        Caller::Key(_) => Err(ApiError::Forbidden(
            "only the bootstrap key (CHAT_SERVER_API_KEY) manages API keys".into(),
        )),
    }
}

/// Makes an API key. The bootstrap key only.
#[utoipa::path(
    post,
    path = "/api/v1/server/api-keys",
    request_body = NewKey,
    responses(
        (status = 201, description = "the key, shown this once", body = MadeKey),
        (status = 400, description = "no name, or no scope", body = chat_runtime::error::ErrorBody),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "not the bootstrap key", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn create(
    req: HttpRequest,
    api: web::Data<ServerApi>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    bootstrap_only(&api.authenticate(&req).await?.0)?;
    let body: NewKey = crate::json(&body)?;
    let (record, key) = make_key(&*api.store, &body.name, &body.scopes).await?;
    tracing::info!(key = %record.id, name = %record.name, "made an API key");
    Ok(HttpResponse::Created().json(MadeKey {
        key,
        view: record.into(),
    }))
}

/// Every API key (never their secrets). The bootstrap key only.
#[utoipa::path(
    get,
    path = "/api/v1/server/api-keys",
    responses(
        (status = 200, description = "every key, oldest first", body = KeyList),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "not the bootstrap key", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn list(
    req: HttpRequest,
    api: web::Data<ServerApi>,
) -> Result<HttpResponse, ApiError> {
    bootstrap_only(&api.authenticate(&req).await?.0)?;
    let keys = api
        .store
        .keys()
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    Ok(HttpResponse::Ok().json(KeyList { keys }))
}

/// Revokes an API key: from now on it opens nothing. The bootstrap key only.
#[utoipa::path(
    delete,
    path = "/api/v1/server/api-keys/{id}",
    params(("id" = String, Path, description = "the key's id", pattern = "^[0-9A-Za-z]{26}$")),
    responses(
        (status = 200, description = "the key, revoked", body = KeyView),
        (status = 401, description = "no API key, or one that opens nothing", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "not the bootstrap key", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such key", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the store is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn revoke(
    req: HttpRequest,
    api: web::Data<ServerApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    bootstrap_only(&api.authenticate(&req).await?.0)?;
    match api.store.revoke_key(&path, crate::now_ms()).await? {
        Some(key) => {
            tracing::info!(key = %key.id, "revoked an API key");
            Ok(HttpResponse::Ok().json(KeyView::from(key)))
        }
        // An id is 26 letters and digits; anything else (a whole key pasted
        // by mistake) is not echoed, so no secret lands in an answer or a log.
        None if path.len() == 26 && path.bytes().all(|b| b.is_ascii_alphanumeric()) => Err(
            ApiError::NotFound(format!("no API key '{}'", path.as_str())),
        ),
        None => Err(ApiError::NotFound(
            "no API key with that id (an id is the 26 characters after ck_)".into(),
        )),
    }
}
