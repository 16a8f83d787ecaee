//! Errors as every service answers them over HTTP: one body, one path.
//!
//! A service's error enum implements [`HttpError`] (its stable
//! [`ErrorCode`] and its status) and gets its actix-web `ResponseError`
//! from [`http_error!`](crate::http_error), so every error of every
//! service is rendered by [`response`]: the status, `Retry-After` when the
//! error says when to retry (RFC 9110 §10.2.3), `WWW-Authenticate: Bearer`
//! on a 401 (RFC 6750 §3), and the JSON body [`ErrorBody`].

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use chat_protocol::ErrorCode;
use serde::Serialize;

/// The body of every error answer: `{"error": code, "message": …}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code, one of the protocol's error codes (`unauthorized`,
    /// `forbidden`, `not_found`, `invalid_frame`, `invalid_name`,
    /// `too_large`, `timeout`, `rate_limited`, `unsupported`, `unavailable`,
    /// …), the same as in WebSocket `error` frames.
    #[schema(value_type = String)]
    pub error: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
}

/// An error a service answers over HTTP.
pub trait HttpError: std::fmt::Display {
    /// Its stable code.
    fn code(&self) -> ErrorCode;

    /// Its HTTP status.
    fn status(&self) -> StatusCode;

    /// Seconds to wait before retrying, sent as `Retry-After`.
    fn retry_after(&self) -> Option<u64> {
        None
    }
}

/// The answer for `error`.
pub fn response(error: &(impl HttpError + ?Sized)) -> HttpResponse {
    let status = error.status();
    let mut response = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header((WWW_AUTHENTICATE, "Bearer"));
    }
    if let Some(seconds) = error.retry_after() {
        response.insert_header((RETRY_AFTER, seconds.to_string()));
    }
    response.json(ErrorBody {
        error: error.code(),
        message: error.to_string(),
    })
}

/// An answer with this status, code and message (for errors that are not
/// a service's own type: extractors, unknown methods).
pub fn answer(status: StatusCode, code: ErrorCode, message: String) -> HttpResponse {
    response(&Plain {
        status,
        code,
        message,
    })
}

struct Plain {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl std::fmt::Display for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl HttpError for Plain {
    fn code(&self) -> ErrorCode {
        self.code
    }

    fn status(&self) -> StatusCode {
        self.status
    }
}

/// Implements actix-web's `ResponseError` for a type implementing
/// [`HttpError`], through [`response`].
#[macro_export]
macro_rules! http_error {
    ($error:ty) => {
        impl actix_web::ResponseError for $error {
            fn status_code(&self) -> actix_web::http::StatusCode {
                $crate::error::HttpError::status(self)
            }

            fn error_response(&self) -> actix_web::HttpResponse {
                $crate::error::response(self)
            }
        }
    };
}
