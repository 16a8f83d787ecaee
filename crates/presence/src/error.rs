//! The service's errors, as HTTP answers `{"error": code, "message": …}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use chat_auth::AuthError;
use chat_protocol::ErrorCode;
use chat_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

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

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `unauthorized`, `forbidden`, `invalid_name`, `invalid_frame`, `not_found`, `unavailable`.
    error: String,
    /// What went wrong, for a person.
    message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Auth(e) => e.status_code(),
            ApiError::BadRequest(..) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Auth(e) = self {
            return e.error_response();
        }
        let code = match self {
            ApiError::BadRequest(code, _) => *code,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            _ => ErrorCode::Unavailable,
        };
        HttpResponse::build(self.status_code()).json(ErrorBody {
            error: code.as_str().to_owned(),
            message: self.to_string(),
        })
    }
}
