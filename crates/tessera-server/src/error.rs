//! The one error type at the HTTP edge, answering in Auth0's shape:
//! `{"error": "<code>", "error_description": "<text>"}`.
//!
//! Internal errors are logged once, here, with a reference the caller also sees; their
//! details never reach the response. A database that cannot be reached answers 503.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tessera_store::StoreError;

const STALE_CONFIG: &str = "The configuration changed during the request. Try again.";

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub description: String,
    pub extra: Map<String, Value>,
    /// Adds `WWW-Authenticate: Bearer …` (for `/userinfo`).
    pub bearer_challenge: bool,
    /// Extra response headers (rate-limit state).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &str, description: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.to_string(),
            description: description.into(),
            extra: Map::new(),
            bearer_challenge: false,
            headers: Vec::new(),
        }
    }

    pub fn bad_request(error: &str, description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, description)
    }

    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.into(), value);
        self
    }

    /// 401 `access_denied` "Unauthorized": unknown client or wrong credentials.
    pub fn unauthorized_client_credentials() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized")
    }

    /// 403 `unauthorized_client`: a confidential client sent no credentials.
    pub fn client_auth_required() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            "Client authentication is required",
        )
    }

    pub fn missing_param(name: &str) -> ApiError {
        ApiError::bad_request(
            "invalid_request",
            format!("Missing required parameter: {name}"),
        )
    }

    pub fn invalid_token(description: &str) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", description);
        e.bearer_challenge = true;
        e
    }

    /// The applications or connections changed while a hot path worked from its in-memory
    /// copies (see `cache.rs`), and its write was undone; or those copies refused the request.
    /// Either way the handler runs again on fresh reads, which check no version, so this never
    /// reaches a client.
    pub fn stale_config() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            STALE_CONFIG,
        )
    }

    pub fn is_stale_config(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE && self.description == STALE_CONFIG
    }

    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        let reference = tessera_core::rand::hex_id(&tessera_core::rand::SystemRandom);
        tracing::error!(error = %err, reference = %reference, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("Something went wrong on our side (reference {reference})."),
        )
    }

    pub fn unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "The service is temporarily unavailable. Please try again shortly.",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(msg) => {
                tracing::warn!(error = %msg, "database unavailable");
                ApiError::unavailable()
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), json!(self.error));
        body.insert("error_description".into(), json!(self.description));
        body.extend(self.extra);
        let mut resp = (self.status, axum::Json(Value::Object(body))).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        if self.bearer_challenge {
            let v = format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                self.description.replace('"', "'")
            );
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}
