//! The server API's errors, answered as every service answers them
//! (`chat_runtime::error`): `{"error": code, "message": why}`.

use actix_web::http::StatusCode;
use chat_protocol::ErrorCode;
use chat_runtime::error::HttpError;
use chat_store::{RoomError, StoreError};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No API key, or one that opens nothing (unknown, revoked, a user's token).
    #[error("{0}")]
    Unauthorized(String),
    /// A valid key without the scope (or the power) this call needs.
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed.
    #[error("{1}")]
    BadRequest(ErrorCode, String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A room refused the message (not found, the sender no member).
    #[error(transparent)]
    Room(RoomError),
    /// What the request asks contradicts what is (the owner's role).
    #[error("{0}")]
    Conflict(String),
    /// This server cannot do that (a file, and no media service).
    #[error("{0}")]
    NotImplemented(String),
    /// The store or the broker is unreachable; nothing was done.
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

impl HttpError for ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::BadRequest(code, _) => *code,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Room(e) => e.code(),
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::NotImplemented(_) => ErrorCode::Unsupported,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(..) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Room(e) => {
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

chat_runtime::http_error!(ApiError);
