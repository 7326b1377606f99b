//! `GET /userinfo` (and POST): the profile for a bearer access token.
//!
//! A JWT access token must be RS256, signed by a key we publish, issued by us, unexpired, and
//! meant for `<issuer>userinfo`. An opaque token is opened with the server secret (see
//! `tokens::SealedAccess`); one stored by an earlier version is looked up by its digest.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::{Value, json};
use tessera_core::crypto::sha256;
use tessera_core::scope::Scope;

use crate::error::ApiError;
use crate::routes::no_store_json;
use crate::state::AppState;

pub async fn userinfo(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::invalid_token("Missing bearer access token"))?;
    let now = st.now();
    let (user_id, scope) = if bearer.matches('.').count() == 2 {
        let audience = format!("{}userinfo", st.issuer);
        let claims = st
            .verify_jwt(bearer, &audience)
            .await
            .map_err(|_| ApiError::invalid_token("Invalid access token"))?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid_token("Invalid access token"))?;
        let scope = claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default();
        (sub.to_string(), Scope::parse(scope))
    } else if let Some(a) = crate::tokens::open_access_token(&st, bearer) {
        // A sealed token: one statement checks the user, the application and the grant.
        if a.expires_at <= now {
            return Err(ApiError::invalid_token("Invalid access token"));
        }
        let scope = Scope::parse(&a.scope);
        return match st
            .store
            .access_token_user(&a.user_id, &a.client_id, a.grant_id.as_deref())
            .await?
        {
            Some(user) => Ok(answer(&user, &scope)),
            None => Err(ApiError::invalid_token("Invalid access token")),
        };
    } else {
        // A stored token from an earlier version, until it expires.
        match st.store.find_access_token(&sha256(bearer)).await? {
            Some(t) if t.expires_at > now => (t.user_id, Scope::parse(&t.scope)),
            _ => return Err(ApiError::invalid_token("Invalid access token")),
        }
    };
    let user = match st.store.get_user(&user_id).await? {
        Some(u) if !u.blocked => u,
        _ => return Err(ApiError::invalid_token("Invalid access token")),
    };
    Ok(answer(&user, &scope))
}

fn answer(user: &tessera_core::user::User, scope: &Scope) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("sub".into(), json!(user.user_id));
    body.extend(user.claims(scope));
    no_store_json(Value::Object(body))
}
