//! Metadata and deletion.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{self, MediaRecord};
use crate::{Inner, MediaError};

/// What clients get for a file: its metadata and a fresh signed link.
#[derive(Serialize, ToSchema)]
pub(crate) struct MediaView {
    /// The media id (a ULID).
    id: String,
    /// A signed link to the file, valid for `CHAT_MEDIA_LINK_TTL`.
    url: String,
    /// `image`, `audio`, `video` or `file`: how a client shows it.
    kind: String,
    /// The type sniffed from the content.
    mime: String,
    /// Bytes.
    size: u64,
    /// Hex SHA-256 of the content.
    sha256: String,
    /// Pixels, for images whose header can be read: the width as displayed,
    /// EXIF orientation applied (a portrait phone photo is taller than wide).
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    /// Pixels, for images whose header can be read: the height as displayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    /// A signed link to an upright, metadata-free thumbnail, at most 320
    /// pixels on its long side and at least 1 on its short side (images
    /// larger than 320 pixels that could be decoded).
    #[serde(skip_serializing_if = "Option::is_none")]
    thumbnail_url: Option<String>,
    /// `true` for an image of more than 50 megapixels, the decoding limit:
    /// its `width`/`height` come from its header and it has no thumbnail.
    /// Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    over_pixel_limit: Option<bool>,
    /// Who uploaded it.
    owner: String,
    /// Upload time, ms since the Unix epoch.
    created_at: u64,
}

pub(crate) fn view(media: &Inner, r: &MediaRecord) -> MediaView {
    MediaView {
        id: r.id.clone(),
        url: media.links.url(&r.id),
        kind: r.kind.clone(),
        mime: r.mime.clone(),
        size: r.size,
        sha256: r.sha256.clone(),
        width: r.width,
        height: r.height,
        thumbnail_url: r
            .thumbnail
            .then(|| media.links.url(&format!("{}/thumbnail", r.id))),
        over_pixel_limit: r.over_pixel_limit.then_some(true),
        owner: r.owner.clone(),
        created_at: r.created_at,
    }
}

/// Media ids are ULIDs; anything else cannot name a file (no path tricks).
pub(crate) fn valid_id(id: &str) -> bool {
    id.len() == 26 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn record(media: &Inner, id: &str) -> Result<MediaRecord, MediaError> {
    if !valid_id(id) {
        return Err(MediaError::NotFound);
    }
    db::find(&media.db, id).await?.ok_or(MediaError::NotFound)
}

/// Metadata of a file with a fresh signed link, for any signed-in user.
#[utoipa::path(
    get,
    path = "/api/v1/media/{id}",
    params(("id" = String, Path, description = "the media id (a ULID)", pattern = "^[0-9A-Za-z]{26}$")),
    responses(
        (status = 200, description = "the file's metadata", body = MediaView),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such media", body = chat_runtime::error::ErrorBody),
        (status = 503, description = "the database is unreachable", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn metadata(
    req: HttpRequest,
    path: web::Path<String>,
    media: web::Data<Arc<Inner>>,
) -> Result<HttpResponse, MediaError> {
    media.auth.caller(&req).await?;
    let record = record(&media, &path).await?;
    Ok(HttpResponse::Ok().json(view(&media, &record)))
}

/// The headers `GET /api/v1/media/{id}` would answer, without the body (RFC 9110 §9.3.2).
#[utoipa::path(
    head,
    path = "/api/v1/media/{id}",
    operation_id = "metadata_head",
    params(("id" = String, Path, description = "the media id (a ULID)", pattern = "^[0-9A-Za-z]{26}$")),
    responses(
        (status = 200, description = "the metadata's headers, no content"),
        (status = 401, description = "no valid credentials"),
        (status = 404, description = "no such media"),
        (status = 503, description = "the database is unreachable"),
    )
)]
pub(crate) async fn metadata_head(
    req: HttpRequest,
    path: web::Path<String>,
    media: web::Data<Arc<Inner>>,
) -> Result<HttpResponse, MediaError> {
    metadata(req, path, media).await
}

/// The owner removes a file (and its thumbnail).
#[utoipa::path(
    delete,
    path = "/api/v1/media/{id}",
    params(("id" = String, Path, description = "the media id (a ULID)", pattern = "^[0-9A-Za-z]{26}$")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "no valid credentials", body = chat_runtime::error::ErrorBody),
        (status = 403, description = "not the owner", body = chat_runtime::error::ErrorBody),
        (status = 404, description = "no such media", body = chat_runtime::error::ErrorBody),
    )
)]
pub(crate) async fn delete(
    req: HttpRequest,
    path: web::Path<String>,
    media: web::Data<Arc<Inner>>,
) -> Result<HttpResponse, MediaError> {
    let caller = media.auth.caller(&req).await?.id;
    let record = record(&media, &path).await?;
    if record.owner != caller {
        return Err(MediaError::Forbidden("only the owner can delete a file"));
    }
    media.remove(&record.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
