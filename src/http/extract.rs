//! Extractors whose refusals are [`ApiError`]s, so malformed JSON, a wrong shape, an oversize body or a bad query
//! string get the same documented JSON body as every other refusal.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::proto::MAX_BODY_BYTES;

/// A JSON body. The `Content-Type` is not insisted on (scripts often send none), but the body must be JSON of the
/// documented shape and at most [`MAX_BODY_BYTES`].
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Reads a whole request body of at most [`MAX_BODY_BYTES`] (413 `body_too_large` beyond).
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::bad_request(
                "bad_body",
                format!("the body could not be read: {rejection}"),
            )
        }
    })
}

/// Parses a JSON body, telling apart text that is not JSON (400 `bad_json`) from JSON of the wrong shape
/// (422 `invalid_field`, naming the field).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "bad_json",
            "the body is empty; a JSON object is expected",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let at = if path == "." {
                String::new()
            } else {
                format!("{path}: ")
            };
            ApiError::unprocessable("invalid_field", format!("{at}{inner}"))
        } else {
            ApiError::bad_request("bad_json", format!("the body is not valid JSON: {inner}"))
        }
    })
}

/// A query string of the documented shape.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| {
                ApiError::bad_request("bad_query", format!("the query string is not valid: {e}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ErrorCode;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Req {
        name: crate::proto::PeerName,
        port: u16,
    }

    #[test]
    fn not_json_is_a_400_and_wrong_shape_a_422_naming_the_field() {
        assert_eq!(parse_json::<Req>(b"{nope").unwrap_err().code, ErrorCode::BadJson);
        assert_eq!(parse_json::<Req>(b"").unwrap_err().code, ErrorCode::BadJson);
        let e = parse_json::<Req>(br#"{"name":"al ice","port":1}"#).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code.as_ref()), (422, "invalid_field"));
        assert!(e.message.starts_with("name:"), "{}", e.message);
        let e = parse_json::<Req>(br#"{"name":"alice","port":70000}"#).unwrap_err();
        assert!(e.message.starts_with("port:"), "{}", e.message);
        assert_eq!(
            parse_json::<Req>(b"[1,2]").unwrap_err().code,
            ErrorCode::InvalidField
        );
    }
}
