//! `GET /media/{id}?exp=&sig=` (the file) and `GET /media/{id}/thumbnail?…`,
//! and `HEAD` on both, following RFC 9110.
//!
//! actix-files' `NamedFile` does the HTTP work: validators (`ETag`,
//! `Last-Modified`), conditional requests (§13), `If-Range` (§13.1.5) and
//! single-part byte ranges (§14). Two things are added around it:
//!
//! - an empty file is answered here ([`empty`]): a range request on it gets
//!   416 Range Not Satisfiable with `Content-Range: bytes */0` (§15.5.17).
//!   No 206 can carry a part of zero bytes (`Content-Range` needs
//!   `last-pos ≥ first-pos`, §14.4), and `NamedFile` turned a suffix range
//!   there into the impossible `bytes 0-18446744073709551615/0`;
//! - `HEAD` (§9.3.2) answers the very headers `GET` would, `Content-Length`
//!   included, without reading the file.
//!
//! A request for several ranges gets the first satisfiable one, as a single
//! part: §15.3.7 lets a server send a subset, and the answer says which
//! (`Content-Range`); media players never ask for more than one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_files::NamedFile;
use actix_web::body::{BodySize, MessageBody};
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bytes::Bytes;

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
        ("Range" = Option<String>, Header, description = "byte ranges (RFC 9110 §14.2), e.g. `bytes=0-99`, `bytes=100-`, `bytes=-500` (the last 500 bytes, or the whole file if shorter); of several, the first satisfiable one is sent"),
        ("If-Range" = Option<String>, Header, description = "the file's `ETag` or `Last-Modified`: the range is sent only if it still matches, the whole file otherwise (RFC 9110 §13.1.5)"),
    ),
    responses(
        (status = 200, description = "the file (inline for image/audio/video, a sandboxed attachment otherwise)"),
        (status = 206, description = "the requested range (RFC 9110 §15.3.7)",
            headers(("Content-Range" = String, description = "`bytes {first}-{last}/{length}`"))),
        (status = 304, description = "unchanged (If-None-Match)"),
        (status = 403, description = "a missing, tampered or expired link", body = chat_runtime::error::ErrorBody),
        (status = 412, description = "an `If-Match` or `If-Unmodified-Since` precondition failed (RFC 9110 §13.1.1, §13.1.4)"),
        (status = 404, description = "no such media", body = chat_runtime::error::ErrorBody),
        (status = 416, description = "Range Not Satisfiable (RFC 9110 §15.5.17): no requested range starts inside the file, the ranges cannot be parsed, or the file is empty (every range of an empty file)",
            headers(("Content-Range" = String, description = "`bytes */{length}`"))),
    )
)]
pub(crate) async fn file(
    req: HttpRequest,
    path: web::Path<String>,
    media: web::Data<Arc<Inner>>,
) -> Result<HttpResponse, MediaError> {
    send(&req, &media, &path, false).await
}

/// The headers `GET /media/{id}` would answer, without the file (RFC 9110 §9.3.2).
#[utoipa::path(
    head,
    path = "/media/{id}",
    operation_id = "file_head",
    params(
        ("id" = String, Path, description = "the media id (a ULID)", pattern = "^[0-9A-Za-z]{26}$"),
        ("exp" = u64, Query, description = "link expiry, Unix seconds"),
        ("sig" = String, Query, description = "hex HMAC-SHA256 of `{id}.{exp}`", pattern = "^[0-9a-f]{64}$"),
    ),
    responses(
        (status = 200, description = "the file's headers (`Content-Length`, `Content-Type`, `ETag`, `Last-Modified`, `Accept-Ranges`), no content; a `Range` is ignored, as for any method but GET (RFC 9110 §14.2)"),
        (status = 304, description = "unchanged (If-None-Match)"),
        (status = 403, description = "a missing, tampered or expired link"),
        (status = 412, description = "an `If-Match` or `If-Unmodified-Since` precondition failed (RFC 9110 §13.1.1, §13.1.4)"),
        (status = 404, description = "no such media"),
    )
)]
pub(crate) async fn file_head(
    req: HttpRequest,
    path: web::Path<String>,
    media: web::Data<Arc<Inner>>,
) -> Result<HttpResponse, MediaError> {
    send(&req, &media, &path, false).await
}

/// A thumbnail at most 320 pixels wide and high, upright and without
/// metadata, through its own signed link; ranges and ETags as for the file.
#[utoipa::path(
    get,
    path = "/media/{id}/thumbnail",
    params(
        ("id" = String, Path, description = "the media id (a ULID)", pattern = "^[0-9A-Za-z]{26}$"),
        ("exp" = u64, Query, description = "link expiry, Unix seconds"),
        ("sig" = String, Query, description = "hex HMAC-SHA256 of `{id}/thumbnail.{exp}`", pattern = "^[0-9a-f]{64}$"),
        ("Range" = Option<String>, Header, description = "byte ranges, as for the file (RFC 9110 §14.2)"),
        ("If-Range" = Option<String>, Header, description = "the thumbnail's `ETag` or `Last-Modified` (RFC 9110 §13.1.5)"),
    ),
    responses(
        (status = 200, description = "the thumbnail"),
        (status = 206, description = "the requested range (RFC 9110 §15.3.7)",
            headers(("Content-Range" = String, description = "`bytes {first}-{last}/{length}`"))),
        (status = 304, description = "unchanged (If-None-Match)"),
        (status = 403, description = "a missing, tampered or expired link", body = chat_runtime::error::ErrorBody),
        (status = 412, description = "an `If-Match` or `If-Unmodified-Since` precondition failed (RFC 9110 §13.1.1, §13.1.4)"),
        (status = 404, description = "no such media, or no thumbnail", body = chat_runtime::error::ErrorBody),
        (status = 416, description = "Range Not Satisfiable (RFC 9110 §15.5.17)",
            headers(("Content-Range" = String, description = "`bytes */{length}`"))),
    )
)]
pub(crate) async fn thumbnail(
    req: HttpRequest,
    path: web::Path<String>,
    media: web::Data<Arc<Inner>>,
) -> Result<HttpResponse, MediaError> {
    send(&req, &media, &path, true).await
}

/// The headers `GET /media/{id}/thumbnail` would answer, without the thumbnail (RFC 9110 §9.3.2).
#[utoipa::path(
    head,
    path = "/media/{id}/thumbnail",
    operation_id = "thumbnail_head",
    params(
        ("id" = String, Path, description = "the media id (a ULID)", pattern = "^[0-9A-Za-z]{26}$"),
        ("exp" = u64, Query, description = "link expiry, Unix seconds"),
        ("sig" = String, Query, description = "hex HMAC-SHA256 of `{id}/thumbnail.{exp}`", pattern = "^[0-9a-f]{64}$"),
    ),
    responses(
        (status = 200, description = "the thumbnail's headers, no content"),
        (status = 304, description = "unchanged (If-None-Match)"),
        (status = 403, description = "a missing, tampered or expired link"),
        (status = 412, description = "an `If-Match` or `If-Unmodified-Since` precondition failed (RFC 9110 §13.1.1, §13.1.4)"),
        (status = 404, description = "no such media, or no thumbnail"),
    )
)]
pub(crate) async fn thumbnail_head(
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
    let mut response = if named.metadata().len() == 0 {
        let content_type = named.content_type().to_string();
        let disposition = named.content_disposition().to_string();
        empty(req, &content_type, &disposition)
    } else {
        respond(named, req)
    };
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

/// `named`'s answer to `req`; a `HEAD` answer keeps its length but not its
/// content.
fn respond(named: NamedFile, req: &HttpRequest) -> HttpResponse {
    let response = named.into_response(req);
    if req.method() == Method::HEAD
        && let BodySize::Sized(length) = response.body().size()
    {
        return response.set_body(Withheld(length)).map_into_boxed_body();
    }
    response
}

/// The answer for an empty file, which `NamedFile` cannot give a range
/// request: it computes the last position as `0 + 0 - 1` (a panic in debug
/// builds, `bytes 0-18446744073709551615/0` in release).
///
/// An empty file has nothing to range over and nothing to revalidate, so it
/// is sent without validators (no `ETag`, no `Last-Modified`), and then
/// RFC 9110 gives: `If-Match` with a list of tags fails (412, §13.1.1);
/// `If-None-Match: *` holds for any current representation (304, §13.1.2);
/// an `If-Range` cannot match, so a `Range` is ignored (200, §13.1.5);
/// otherwise a `GET` with a `bytes` range is 416 Range Not Satisfiable with
/// `Content-Range: bytes */0` (§15.5.17; a range in another unit is ignored,
/// §14.2, and a range that does not parse is refused, as `NamedFile` does
/// for other files). Everything else is 200 with `Content-Length: 0`.
fn empty(req: &HttpRequest, content_type: &str, disposition: &str) -> HttpResponse {
    let headers = req.headers();
    let range_applies = req.method() == Method::GET
        && !headers.contains_key(header::IF_RANGE)
        && headers.get(header::RANGE).is_some_and(|range| {
            range
                .to_str()
                .ok()
                .and_then(|value| value.split_once('='))
                .is_none_or(|(unit, _)| unit.trim().eq_ignore_ascii_case("bytes"))
        });
    let status = if matches!(
        req.get_header::<header::IfMatch>(),
        Some(header::IfMatch::Items(_))
    ) {
        StatusCode::PRECONDITION_FAILED
    } else if matches!(
        req.get_header::<header::IfNoneMatch>(),
        Some(header::IfNoneMatch::Any)
    ) {
        StatusCode::NOT_MODIFIED
    } else if range_applies {
        StatusCode::RANGE_NOT_SATISFIABLE
    } else {
        StatusCode::OK
    };
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        response.insert_header((header::CONTENT_RANGE, "bytes */0"));
    }
    if status == StatusCode::NOT_MODIFIED {
        return response.body(actix_web::body::None::new());
    }
    response.body(Bytes::new())
}

/// The body of a `HEAD` answer: the length a `GET` would send, announced in
/// `Content-Length` (RFC 9110 §9.3.2), and no bytes, so the file is never read.
struct Withheld(u64);

impl MessageBody for Withheld {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.0)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Poll::Ready(None)
    }
}
