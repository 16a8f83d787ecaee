//! What every JSON API of the workspace answers the same way: errors of the
//! request extractors (a malformed query, path or JSON body) as the usual
//! `{"error", "message"}` body, and 405 for a method a path does not take.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, Resource, web};
use chat_protocol::ErrorCode;

use crate::error::answer;

/// A resource taking `allowed` methods (e.g. `"GET"`, `"GET, DELETE"`) that
/// answers 405 with `Allow` (and a JSON body) to any other, instead of
/// falling through to the application's 404.
pub fn resource(path: &str, allowed: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        let mut response = answer(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            format!(
                "{} is not supported on {}; use {allowed}",
                req.method(),
                req.path()
            ),
        );
        response.headers_mut().insert(
            actix_web::http::header::ALLOW,
            actix_web::http::header::HeaderValue::from_static(allowed),
        );
        response
    }))
}

fn bad_request(message: String) -> actix_web::Error {
    actix_web::error::InternalError::from_response(
        message.clone(),
        answer(StatusCode::BAD_REQUEST, ErrorCode::InvalidFrame, message),
    )
    .into()
}

/// Installs JSON error answers for the query, path and JSON-body extractors.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e: QueryPayloadError, _| bad_request(format!("query: {e}"))),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e: PathError, _| bad_request(format!("path: {e}"))),
    )
    .app_data(
        web::JsonConfig::default().error_handler(|e: JsonPayloadError, _| match e {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                let message = format!("body: {e}");
                actix_web::error::InternalError::from_response(
                    message.clone(),
                    answer(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ErrorCode::InvalidFrame,
                        message,
                    ),
                )
                .into()
            }
            JsonPayloadError::ContentType => {
                bad_request("the body must be JSON (Content-Type: application/json)".into())
            }
            e => bad_request(format!("body: {e}")),
        }),
    );
}
