//! The service's errors, answered as every service answers them
//! (`chat_runtime::error`).

use actix_web::http::StatusCode;
use chat_auth::AuthError;
use chat_protocol::ErrorCode;
use chat_runtime::error::HttpError;
use chat_store::StoreError;

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
    /// The store is unreachable.
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

impl HttpError for ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::Auth(e) => e.code(),
            ApiError::BadRequest(code, _) => *code,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Auth(e) => e.status(),
            ApiError::BadRequest(..) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

chat_runtime::http_error!(ApiError);
