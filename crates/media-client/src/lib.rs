//! The media service as its callers (the gateways, the server API) see it:
//! checking the files messages refer to (the file must exist and belong to
//! the sender; the application may attach any), and deleting a file once
//! the last message carrying it is deleted. In `chatd` the media service
//! answers in process; replicas ask it over HTTP (`CHAT_MEDIA_URL`).

use std::sync::Arc;
use std::time::Duration;

use chat_auth::Authenticator;
use chat_protocol::MediaInfo;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Deserialize;

/// How long the gateway waits for the media service.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a media reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaLookupError {
    /// No such media.
    #[error("no media with id '{0}'")]
    NotFound(String),
    /// It exists but someone else uploaded it.
    #[error("media '{0}' belongs to someone else")]
    NotOwner(String),
    /// The media service did not answer.
    #[error("media service unavailable: {0}")]
    Unavailable(String),
}

/// Whether `id` has a media id's shape (a ULID: 26 letters and digits);
/// others are refused before anything is asked.
pub fn is_media_id(id: &str) -> bool {
    id.len() == 26 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Who the application is to the media service when it looks a file up:
/// any signed-in user may read a file's metadata.
pub const APPLICATION: &str = "system";

/// Resolves a media id for a sender, and deletes files no message carries.
pub trait MediaDirectory: Send + Sync + 'static {
    /// The media `id` with a fresh link, if `owner` uploaded it; with
    /// `owner` `None` (the application, through the server API), whoever
    /// uploaded it.
    ///
    /// Errors: [`MediaLookupError::NotFound`], [`MediaLookupError::NotOwner`],
    /// [`MediaLookupError::Unavailable`].
    fn lookup(
        &self,
        owner: Option<&str>,
        id: &str,
    ) -> BoxFuture<'static, Result<MediaInfo, MediaLookupError>>;

    /// Deletes file `id` as whoever uploaded it (a file already gone is no
    /// error). Errors: [`MediaLookupError::Unavailable`].
    fn delete(&self, id: &str) -> BoxFuture<'static, Result<(), MediaLookupError>>;
}

/// Asks a media service over HTTP, as the sender (a short token it mints
/// in jwt mode, `?user=` in open mode).
#[derive(Clone)]
pub struct HttpMediaDirectory {
    base: String,
    client: reqwest::Client,
    auth: Arc<Authenticator>,
}

impl HttpMediaDirectory {
    /// A directory for the media service at `base` (`http://host:port`).
    pub fn new(base: &str, auth: Arc<Authenticator>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(LOOKUP_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client,
            auth,
        })
    }
}

/// The part of the media service's metadata the gateway uses.
#[derive(Deserialize)]
struct Metadata {
    owner: String,
    #[serde(flatten)]
    info: MediaInfoWire,
}

#[derive(Deserialize)]
struct MediaInfoWire {
    id: String,
    kind: String,
    mime: String,
    size: u64,
    url: String,
    width: Option<u32>,
    height: Option<u32>,
    thumbnail_url: Option<String>,
}

impl HttpMediaDirectory {
    /// Sends a `method` request for file `id` as its `owner`: `?user=` in
    /// open mode; otherwise a short token for the owner, signed with the
    /// shared secret (service to service; see the README's Identity
    /// section). Errors: [`MediaLookupError::Unavailable`] when it cannot
    /// be sent or no answer comes.
    fn call(
        &self,
        method: reqwest::Method,
        owner: &str,
        id: &str,
    ) -> BoxFuture<'static, Result<reqwest::Response, MediaLookupError>> {
        let unavailable = |e: &dyn std::fmt::Display| MediaLookupError::Unavailable(e.to_string());
        let url = format!("{}/api/v1/media/{id}", self.base);
        let request = if self.auth.is_open() {
            let url = format!("{url}?user={}", query_value(owner));
            self.client.request(method, url)
        } else {
            match self.auth.mint(owner, None, Duration::from_secs(60)) {
                Ok(token) => self.client.request(method, url).bearer_auth(token),
                Err(e) => return futures_util::future::ready(Err(unavailable(&e))).boxed(),
            }
        };
        async move { request.send().await.map_err(|e| unavailable(&e)) }.boxed()
    }
}

impl MediaDirectory for HttpMediaDirectory {
    fn lookup(
        &self,
        owner: Option<&str>,
        id: &str,
    ) -> BoxFuture<'static, Result<MediaInfo, MediaLookupError>> {
        let metadata = self.metadata(owner.unwrap_or(APPLICATION), id);
        let (owner, id) = (owner.map(str::to_owned), id.to_owned());
        async move {
            let meta = metadata.await?;
            if owner.is_some_and(|owner| meta.owner != owner) {
                return Err(MediaLookupError::NotOwner(id));
            }
            let w = meta.info;
            Ok(MediaInfo {
                id: w.id,
                kind: w.kind,
                mime: w.mime,
                size: w.size,
                url: w.url,
                width: w.width,
                height: w.height,
                thumbnail_url: w.thumbnail_url,
            })
        }
        .boxed()
    }

    fn delete(&self, id: &str) -> BoxFuture<'static, Result<(), MediaLookupError>> {
        // Only its uploader may delete a file: who that is comes first (a
        // message may carry a file someone else uploaded, when the
        // application sent it).
        let metadata = self.metadata(APPLICATION, id);
        let this = self.clone();
        let id = id.to_owned();
        async move {
            let owner = match metadata.await {
                Ok(meta) => meta.owner,
                Err(MediaLookupError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            match this
                .call(reqwest::Method::DELETE, &owner, &id)
                .await?
                .status()
                .as_u16()
            {
                204 | 404 => Ok(()),
                status => Err(MediaLookupError::Unavailable(format!(
                    "media service answered {status} to DELETE"
                ))),
            }
        }
        .boxed()
    }
}

impl HttpMediaDirectory {
    /// File `id`'s metadata, read as `reader`.
    ///
    /// Errors: [`MediaLookupError::NotFound`] (no such file, or no media
    /// id), [`MediaLookupError::Unavailable`].
    fn metadata(
        &self,
        reader: &str,
        id: &str,
    ) -> BoxFuture<'static, Result<Metadata, MediaLookupError>> {
        let response = self.call(reqwest::Method::GET, reader, id);
        let id = id.to_owned();
        async move {
            let response = response.await?;
            match response.status().as_u16() {
                200 => {}
                404 | 400 => return Err(MediaLookupError::NotFound(id)),
                status => {
                    return Err(MediaLookupError::Unavailable(format!(
                        "media service answered {status}"
                    )));
                }
            }
            response
                .json()
                .await
                .map_err(|e| MediaLookupError::Unavailable(e.to_string()))
        }
        .boxed()
    }
}

/// `value` percent-encoded for a query string (RFC 3986: every byte but the
/// unreserved ones).
fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// How often, and after how long at first, the deletion of a file no
/// message carries is tried (doubling: 1 s, 2 s, … 16 s).
const DELETE_ATTEMPTS: u32 = 5;
const DELETE_FIRST_WAIT: Duration = Duration::from_secs(1);

/// Message `message` no longer carries file `media` (it was deleted, or
/// its room was): when no other message holds the file, it is deleted from
/// the media service (`directory`; none: the file stays).
///
/// The hold is let go before this returns (the file is marked as being
/// deleted in the same step, so no send takes it up again); the file
/// itself is deleted in the background, tried again with backoff, and its
/// notes forgotten once it is gone. A deletion that keeps failing leaves
/// the file, marked, never sent again (logged).
pub async fn release(
    refs: Arc<dyn chat_store::MediaRefs>,
    directory: Option<Arc<dyn MediaDirectory>>,
    message: &str,
    media: &str,
) {
    match refs.release(media, message).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(media, error = %e, "a deleted message's file is kept");
            return;
        }
    }
    let Some(directory) = directory else {
        return;
    };
    let media = media.to_owned();
    tokio::spawn(async move {
        let mut wait = DELETE_FIRST_WAIT;
        for attempt in 1..=DELETE_ATTEMPTS {
            match directory.delete(&media).await {
                Ok(()) => {
                    tracing::info!(media, "deleted the file no message carries any more");
                    if let Err(e) = refs.forget(&media).await {
                        tracing::warn!(media, error = %e, "a deleted file's notes stay");
                    }
                    return;
                }
                Err(e) if attempt < DELETE_ATTEMPTS => {
                    tracing::debug!(media, attempt, error = %e, "deleting a file: trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    tracing::warn!(media, error = %e, "could not delete a file no message carries");
                }
            }
        }
    });
}
