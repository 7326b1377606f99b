//! OpenID Connect discovery, the JWKS, `/health`, and `/openapi.json` (the OpenAPI 3
//! description of the public API, kept by hand in `src/openapi.json`).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

pub async fn openid_configuration(State(st): State<AppState>) -> Response {
    let i = &st.issuer;
    let doc = json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}authorize"),
        "token_endpoint": format!("{i}oauth/token"),
        "userinfo_endpoint": format!("{i}userinfo"),
        "jwks_uri": format!("{i}.well-known/jwks.json"),
        "scopes_supported": ["openid", "profile", "email", "phone", "offline_access"],
        "end_session_endpoint": format!("{i}oidc/logout"),
        "response_types_supported": ["code", "id_token", "token", "token id_token"],
        "response_modes_supported": ["query", "fragment", "form_post", "web_message"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "grant_types_supported": ["authorization_code", "implicit", "refresh_token",
                                  "http://auth0.com/oauth/grant-type/passwordless/otp"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "name", "nickname", "picture",
                             "updated_at", "email", "email_verified", "nonce", "at_hash"],
    });
    public(axum::Json(doc).into_response(), 300)
}

pub async fn jwks(State(st): State<AppState>) -> Response {
    let doc = st.keys.get().jwks.clone();
    let mut r = (StatusCode::OK, doc.as_ref().clone()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    public(r, 60)
}

/// The public API's OpenAPI 3 document. It is static: it names no host (its server is `/`),
/// so it is the same for every issuer.
pub async fn openapi() -> Response {
    let r = ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response();
    public(r, 300)
}

/// The document `GET /openapi.json` serves.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// Cacheable and readable from any origin (browsers verify id_tokens with an XHR).
fn public(mut r: Response, max_age: u32) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    r
}

pub async fn health(State(st): State<AppState>) -> Response {
    match st.store.ping().await {
        Ok(()) => {
            axum::Json(json!({"status": "ok", "database": st.store.backend()})).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "temporarily_unavailable", "error_description": "The database is unavailable"})),
            )
                .into_response()
        }
    }
}
