//! [`ApiError`]: every refusal any node sends, rendered as `{"error":{"code","message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::proto::{ErrorBody, ErrorCode, ErrorDetail};

/// What names an error's code where an [`ApiError`] is made: an [`ErrorCode`], or (while the last call sites move to
/// the enum) its snake_case name, which must be one of the enum's.
pub trait IntoErrorCode {
    fn into_error_code(self) -> ErrorCode;
}

impl IntoErrorCode for ErrorCode {
    fn into_error_code(self) -> ErrorCode {
        self
    }
}

impl IntoErrorCode for &str {
    fn into_error_code(self) -> ErrorCode {
        let c = ErrorCode::parse(self);
        debug_assert!(c != ErrorCode::Unknown, "{self} is not an ErrorCode");
        c
    }
}

impl IntoErrorCode for String {
    fn into_error_code(self) -> ErrorCode {
        self.as_str().into_error_code()
    }
}

/// A refusal: an HTTP status, a stable machine-readable code and a sentence for people.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl IntoErrorCode,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into_error_code(),
            message: message.into(),
        }
    }
    /// A refusal with the status its code is sent with.
    pub fn of(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(code.status()).expect("every ErrorCode's status is valid");
        Self::new(status, code, message)
    }
    pub fn bad_request(code: impl IntoErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn forbidden(code: impl IntoErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn not_found(code: impl IntoErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn conflict(code: impl IntoErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn unprocessable(code: impl IntoErrorCode, message: impl Into<String>) -> Self {
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

/// The answer for a path no route serves.
pub async fn fallback_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(
        "no_such_endpoint",
        format!("nothing is served at {}", uri.path()),
    )
}

/// The answer for a known path asked with the wrong method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {} (see docs/PROTOCOL.md)",
            uri.path()
        ),
    )
}
