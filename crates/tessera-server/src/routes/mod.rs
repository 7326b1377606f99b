//! HTTP routes, by surface.

pub mod authorize;
pub mod co;
pub mod dev;
pub mod discovery;
pub mod legacy;
pub mod management;
pub mod passwordless;
pub mod token;
pub mod userinfo;
pub mod verify;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::params::{Params, ParamsError};

/// A request body, read whole (at most the router's 64 KiB). Unlike axum's `Bytes`, a body that
/// is too large or cannot be read is refused in Auth0's error shape, not in plain text.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &S) -> Result<Body, ApiError> {
        Bytes::from_request(req, st).await.map(Body).map_err(|e| {
            let status = e.status();
            let description = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "The request body is larger than 64 KiB"
            } else {
                "The request body could not be read"
            };
            ApiError::new(status, "invalid_request", description)
        })
    }
}

/// Parses a request body, answering malformed input in the given error code.
pub fn parse_body(body: &[u8], error_code: &str) -> Result<Params, ApiError> {
    Params::parse(body).map_err(|e| {
        let d = match e {
            ParamsError::NotJson => "The request body is not valid JSON".to_string(),
            ParamsError::NotAnObject => "The request body must be a JSON object".to_string(),
            ParamsError::Duplicate(k) => format!("Parameter {k} was given more than once"),
            ParamsError::BadBrackets(k) => format!("Malformed parameter name {k}"),
            ParamsError::Nul(k) => format!("Parameter {k} contains a NUL character"),
        };
        ApiError::bad_request(error_code, d)
    })
}

/// A JSON response that must never be cached (it carries tokens or codes' outcomes).
pub fn no_store_json(v: serde_json::Value) -> Response {
    let mut r = axum::Json(v).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}
