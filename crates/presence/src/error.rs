//! The service's errors, answered as every service answers them
//! (`chat_runtime::error`).

use actix_web::http::StatusCode;
use chat_auth::AuthError;
use chat_protocol::ErrorCode;
use chat_runtime::error::HttpError;
use chat_store::{RoomError, StoreError};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong credentials.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The request is malformed.
    #[error("{1}")]
    BadRequest(ErrorCode, String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A room call was refused (not found, forbidden, a limit, a taken name).
    #[error(transparent)]
    Room(RoomError),
    /// The store is unreachable (or, for `InvalidCursor`, was given a
    /// cursor it never issued: a bad request).
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

impl HttpError for ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::Auth(e) => e.code(),
            ApiError::BadRequest(code, _) => *code,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Room(e) => e.code(),
            ApiError::Unavailable(StoreError::InvalidCursor(_)) => ErrorCode::InvalidFrame,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Auth(e) => e.status(),
            ApiError::BadRequest(..) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Room(e) => {
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            ApiError::Unavailable(StoreError::InvalidCursor(_)) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

chat_runtime::http_error!(ApiError);
