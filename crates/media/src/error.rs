//! The service's errors, as HTTP answers `{"error": code, "message": …}`.

use actix_web::http::StatusCode;
use chat_auth::AuthError;
use chat_protocol::ErrorCode;
use chat_runtime::error::HttpError;

/// Why a media request failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Missing or wrong credentials.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The upload is over the size limit; nothing was kept.
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// This client address started too many uploads in the last minute.
    #[error("too many uploads from this address; retry in {0} s")]
    TooMany(u64),
    /// The body stopped arriving for longer than the idle timeout; nothing was kept.
    #[error("the upload stalled for more than {0:?}")]
    Stalled(std::time::Duration),
    /// No such file.
    #[error("no such media")]
    NotFound,
    /// A missing, tampered or expired link, or someone else's file.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The database or the storage folder is unreachable.
    #[error("{0}")]
    Unavailable(String),
}

impl HttpError for MediaError {
    fn code(&self) -> ErrorCode {
        match self {
            MediaError::Auth(e) => e.code(),
            MediaError::TooLarge(_) => ErrorCode::TooLarge,
            MediaError::BadRequest(_) => ErrorCode::InvalidFrame,
            MediaError::Stalled(_) => ErrorCode::Timeout,
            MediaError::TooMany(_) => ErrorCode::RateLimited,
            MediaError::NotFound => ErrorCode::NotFound,
            MediaError::Forbidden(_) => ErrorCode::Forbidden,
            MediaError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            MediaError::Auth(e) => e.status(),
            MediaError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            MediaError::BadRequest(_) => StatusCode::BAD_REQUEST,
            MediaError::Stalled(_) => StatusCode::REQUEST_TIMEOUT,
            MediaError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            MediaError::NotFound => StatusCode::NOT_FOUND,
            MediaError::Forbidden(_) => StatusCode::FORBIDDEN,
            MediaError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            MediaError::TooMany(seconds) => Some(*seconds),
            _ => None,
        }
    }
}

chat_runtime::http_error!(MediaError);

impl MediaError {
    /// The reason label for the rejections metric.
    pub(crate) fn reason(&self) -> &'static str {
        self.code().as_str()
    }
}

impl From<sea_orm::DbErr> for MediaError {
    fn from(e: sea_orm::DbErr) -> Self {
        MediaError::Unavailable(format!("database: {e}"))
    }
}

impl From<std::io::Error> for MediaError {
    fn from(e: std::io::Error) -> Self {
        MediaError::Unavailable(format!("storage: {e}"))
    }
}
