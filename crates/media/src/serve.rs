//! `GET /media/{id}?exp=&sig=` (the file) and `GET /media/{id}/thumbnail?…`.

use std::sync::Arc;

use actix_files::NamedFile;
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::link::LinkError;
use crate::sniff::Kind;
use crate::{Inner, MediaError, api, db};

/// Forbids everything to a document opened from an attachment, should a
/// browser render it anyway: no script, no plugin, no same-origin access.
const SANDBOX: &str = "sandbox; default-src 'none'";

/// The file itself, through a signed link; ranges and ETags supported.
#[utoipa::path(
    get,
    path = "/media/{id}",
    params(
        ("id" = String, Path, description = "the media id (a ULID)", pattern = "^[0-9A-Za-z]{26}$"),
        ("exp" = u64, Query, description = "link expiry, Unix seconds"),
        ("sig" = String, Query, description = "hex HMAC-SHA256 of `{id}.{exp}`", pattern = "^[0-9a-f]{64}$"),
    ),
    responses(
        (status = 200, description = "the file (inline for image/audio/video, a sandboxed attachment otherwise)"),
        (status = 206, description = "the requested range"),
        (status = 304, description = "unchanged (If-None-Match)"),
        (status = 403, description = "a missing, tampered or expired link", body = crate::error::ErrorBody),
        (status = 404, description = "no such media", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn file(
    req: HttpRequest,
    path: web::Path<String>,
    media: web::Data<Arc<Inner>>,
) -> Result<HttpResponse, MediaError> {
    send(&req, &media, &path, false).await
}

/// A thumbnail at most 320 pixels wide and high, through its own signed link.
#[utoipa::path(
    get,
    path = "/media/{id}/thumbnail",
    params(
        ("id" = String, Path, description = "the media id (a ULID)", pattern = "^[0-9A-Za-z]{26}$"),
        ("exp" = u64, Query, description = "link expiry, Unix seconds"),
        ("sig" = String, Query, description = "hex HMAC-SHA256 of `{id}/thumbnail.{exp}`", pattern = "^[0-9a-f]{64}$"),
    ),
    responses(
        (status = 200, description = "the thumbnail"),
        (status = 403, description = "a missing, tampered or expired link", body = crate::error::ErrorBody),
        (status = 404, description = "no such media, or no thumbnail", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn thumbnail(
    req: HttpRequest,
    path: web::Path<String>,
    media: web::Data<Arc<Inner>>,
) -> Result<HttpResponse, MediaError> {
    send(&req, &media, &path, true).await
}

async fn send(
    req: &HttpRequest,
    media: &Inner,
    id: &str,
    thumbnail: bool,
) -> Result<HttpResponse, MediaError> {
    let signed = if thumbnail {
        format!("{id}/thumbnail")
    } else {
        id.to_owned()
    };
    let exp = chat_auth::query_param(req, "exp");
    let sig = chat_auth::query_param(req, "sig");
    media
        .links
        .verify(&signed, exp.as_deref(), sig.as_deref())
        .map_err(|e| {
            MediaError::Forbidden(match e {
                LinkError::Missing => "a signed link is required",
                LinkError::BadSignature => "the link's signature does not match",
                LinkError::Expired => "the link has expired; ask for a fresh one",
            })
        })?;
    if !api::valid_id(id) {
        return Err(MediaError::NotFound);
    }
    let record = db::find(&media.db, id).await?.ok_or(MediaError::NotFound)?;
    if thumbnail && !record.thumbnail {
        return Err(MediaError::NotFound);
    }
    let kind = match record.kind.as_str() {
        "image" => Kind::Image,
        "audio" => Kind::Audio,
        "video" => Kind::Video,
        _ => Kind::File,
    };
    let (file, mime) = if thumbnail {
        let mime = if record.mime == "image/jpeg" {
            "image/jpeg"
        } else {
            "image/png"
        };
        (
            media.dir.join(format!("{}.thumb", record.id)),
            mime.to_owned(),
        )
    } else {
        (media.dir.join(&record.id), record.mime.clone())
    };
    let disposition = ContentDisposition {
        disposition: if kind.inline() {
            DispositionType::Inline
        } else {
            DispositionType::Attachment
        },
        parameters: vec![DispositionParam::Filename(record.id.clone())],
    };
    // Opening is a quick syscall; the body itself is streamed without blocking.
    let named = NamedFile::open(file)
        .map_err(|_| MediaError::NotFound)?
        .set_content_type(
            mime.parse()
                .unwrap_or(actix_web::mime::APPLICATION_OCTET_STREAM),
        )
        .set_content_disposition(disposition)
        .use_etag(true)
        .use_last_modified(true);
    let mut response = named.into_response(req);
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, max-age=3600"),
    );
    if !kind.inline() {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static(SANDBOX),
        );
    }
    Ok(response)
}
