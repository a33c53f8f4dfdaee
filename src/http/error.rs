//! [`ApiError`]: every refusal any node sends, rendered as `{"error":{"code","message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::identity::AuthError;
use crate::proto::{ErrorBody, ErrorCode, ErrorDetail};

/// A refusal: an HTTP status, a stable machine-readable code and a sentence for people.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    /// A refusal with the status its code is sent with.
    pub fn of(code: ErrorCode, message: impl Into<String>) -> Self {
        let status =
            StatusCode::from_u16(code.status()).expect("every ErrorCode's status is valid");
        Self::new(status, code, message)
    }
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn forbidden(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn unprocessable(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = %self.code, "{}", self.message);
        } else {
            tracing::debug!(status = %self.status, code = %self.code, "refused: {}", self.message);
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// A refused identity or signature is answered with its code's status.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::of(e.code(), e.to_string())
    }
}

/// The answer for a path no route serves.
pub async fn fallback_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::of(
        ErrorCode::NoSuchEndpoint,
        format!("nothing is served at {}", uri.path()),
    )
}

/// The answer for a known path asked with the wrong method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::of(
        ErrorCode::MethodNotAllowed,
        format!(
            "{method} is not allowed on {} (see docs/PROTOCOL.md)",
            uri.path()
        ),
    )
}
