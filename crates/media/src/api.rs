//! Metadata and deletion.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::db::{self, MediaRecord};
use crate::{Inner, MediaError};

/// What clients get for a file: its metadata and a fresh signed link.
#[derive(Serialize)]
pub(crate) struct MediaView<'a> {
    id: &'a str,
    url: String,
    kind: &'a str,
    mime: &'a str,
    size: u64,
    sha256: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thumbnail_url: Option<String>,
    owner: &'a str,
    created_at: u64,
}

pub(crate) fn view<'a>(media: &Inner, r: &'a MediaRecord) -> MediaView<'a> {
    MediaView {
        id: &r.id,
        url: media.links.url(&r.id),
        kind: &r.kind,
        mime: &r.mime,
        size: r.size,
        sha256: &r.sha256,
        width: r.width,
        height: r.height,
        thumbnail_url: r
            .thumbnail
            .then(|| media.links.url(&format!("{}/thumbnail", r.id))),
        owner: &r.owner,
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

/// `GET /api/v1/media/{id}`: metadata with a fresh link, for any signed-in user.
pub(crate) async fn metadata(
    req: HttpRequest,
    path: web::Path<String>,
    media: web::Data<Arc<Inner>>,
) -> Result<HttpResponse, MediaError> {
    media.auth.caller(&req)?;
    let record = record(&media, &path).await?;
    Ok(HttpResponse::Ok().json(view(&media, &record)))
}

/// `DELETE /api/v1/media/{id}`: the owner removes a file.
pub(crate) async fn delete(
    req: HttpRequest,
    path: web::Path<String>,
    media: web::Data<Arc<Inner>>,
) -> Result<HttpResponse, MediaError> {
    let caller = media.auth.caller(&req)?;
    let record = record(&media, &path).await?;
    if record.owner != caller {
        return Err(MediaError::Forbidden("only the owner can delete a file"));
    }
    db::delete(&media.db, &record.id).await?;
    let _ = tokio::fs::remove_file(media.dir.join(&record.id)).await;
    let _ = tokio::fs::remove_file(media.dir.join(format!("{}.thumb", record.id))).await;
    Ok(HttpResponse::NoContent().finish())
}
