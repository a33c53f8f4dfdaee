//! [`JsonBytes`]: an answer serialized ahead of time (the tracker's kept member lists), sent exactly as axum's
//! `Json` would send the same value: status 200, `content-type: application/json`, the bytes as the body.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// JSON already serialized; cloning the [`Bytes`] shares them, so sending a kept answer copies nothing.
#[derive(Debug, Clone)]
pub struct JsonBytes(pub Bytes);

impl IntoResponse for JsonBytes {
    fn into_response(self) -> Response {
        let mut res = Response::new(Body::from(self.0));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_kept_answer_is_sent_as_json_sends_the_same_value() {
        let value =
            serde_json::json!({"channel": "general", "peers": [{"name": "alice", "port": 8000}]});
        let kept = JsonBytes(Bytes::from(serde_json::to_vec(&value).unwrap())).into_response();
        let made = Json(value).into_response();
        assert_eq!(kept.status(), made.status());
        assert_eq!(kept.headers(), made.headers());
        let kept = kept.into_body().collect().await.unwrap().to_bytes();
        let made = made.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(kept, made);
    }
}
