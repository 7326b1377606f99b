//! A first part of the Management API (`/api/v2`), in Auth0's shapes: users (list and search,
//! get, block or unblock, delete), logs, and applications (read-only). Access takes a token
//! from the `client_credentials` grant with audience `<issuer>api/v2/` and scopes granted to the
//! application in its `management_scopes`. Errors use the Management API's shape
//! `{"statusCode","error","message","errorCode"}`, and every write is an audit event (`sapi`).

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tessera_core::clock::rfc3339;
use tessera_core::rand::hex_id;
use tessera_core::user::User;

use crate::error::ApiError;
use crate::params::Params;
use crate::state::{AppState, RequestMeta};

/// The scopes an application can be granted.
pub const SCOPES: &[&str] = &[
    "read:users",
    "update:users",
    "delete:users",
    "read:logs",
    "read:clients",
];

/// The audience of Management API tokens.
pub fn audience(st: &AppState) -> String {
    format!("{}api/v2/", st.issuer)
}

/// A Management API error.
pub struct MgmtError {
    status: StatusCode,
    message: String,
    code: &'static str,
}

impl MgmtError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> MgmtError {
        MgmtError {
            status,
            message: message.into(),
            code,
        }
    }
}

impl From<tessera_store::StoreError> for MgmtError {
    fn from(e: tessera_store::StoreError) -> Self {
        let api = ApiError::from(e);
        MgmtError::new(api.status, "internal_error", api.description)
    }
}

impl IntoResponse for MgmtError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            axum::Json(json!({
                "statusCode": self.status.as_u16(),
                "error": self.status.canonical_reason().unwrap_or("Error"),
                "message": self.message,
                "errorCode": self.code,
            })),
        )
            .into_response();
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        r
    }
}

/// The caller of the Management API: an application, with its token's scopes.
pub struct Caller {
    pub client_id: String,
    scopes: Vec<String>,
}

impl Caller {
    fn require(&self, scope: &str) -> Result<(), MgmtError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(MgmtError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("Insufficient scope, expected any of: {scope}"),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = MgmtError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let unauthorized = |m: &str| MgmtError::new(StatusCode::UNAUTHORIZED, "invalid_token", m);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("Missing authentication"))?;
        let claims = st
            .verify_jwt(token, &audience(st))
            .await
            .map_err(|_| unauthorized("Invalid token"))?;
        if claims.get("gty").and_then(Value::as_str) != Some("client-credentials") {
            return Err(unauthorized("Invalid token"));
        }
        let client_id = claims
            .get("azp")
            .and_then(Value::as_str)
            .ok_or_else(|| unauthorized("Invalid token"))?
            .to_string();
        // The application's grant may have changed since the token was issued.
        let granted = st
            .store
            .get_client(&client_id)
            .await?
            .map(|c| c.settings.management_scopes)
            .unwrap_or_default();
        let scopes = claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split(' ')
            .filter(|s| granted.iter().any(|g| g == s))
            .map(str::to_string)
            .collect();
        Ok(Caller { client_id, scopes })
    }
}

/// A user in the Management API's shape.
pub fn user_json(u: &User) -> Value {
    let (provider, id) = u.user_id.split_once('|').unwrap_or(("email", ""));
    let mut v = json!({
        "user_id": u.user_id,
        "name": u.name,
        "nickname": u.nickname,
        "picture": u.picture,
        "created_at": rfc3339(u.created_at),
        "updated_at": rfc3339(u.updated_at),
        "last_login": u.last_login.map(rfc3339),
        "logins_count": u.logins_count,
        "blocked": u.blocked,
        "identities": [{"provider": provider, "user_id": id, "connection": u.connection, "isSocial": false}],
    });
    if let Some(e) = &u.email {
        v["email"] = json!(e);
        v["email_verified"] = json!(u.email_verified);
    }
    if let Some(p) = &u.phone_number {
        v["phone_number"] = json!(p);
        v["phone_verified"] = json!(u.phone_verified);
    }
    v
}

fn per_page(p: &Params) -> i64 {
    p.str("per_page")
        .ok()
        .flatten()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(50)
        .clamp(1, 100)
}

fn query(q: Option<&str>) -> Result<Params, MgmtError> {
    Params::from_query(q).map_err(|_| {
        MgmtError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query_string",
            "Query validation error",
        )
    })
}

/// `GET /api/v2/users?q=…&per_page=…` (`q` is matched against email and phone number) and
/// `GET /api/v2/users-by-email?email=…`.
pub async fn list_users(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Response, MgmtError> {
    caller.require("read:users")?;
    let p = query(q.as_deref())?;
    let search = p
        .str("email")
        .ok()
        .flatten()
        .or(p.str("q").ok().flatten())
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    let users = st.store.list_users(&search, per_page(&p)).await?;
    Ok(axum::Json(Value::Array(users.iter().map(user_json).collect())).into_response())
}

fn no_user() -> MgmtError {
    MgmtError::new(
        StatusCode::NOT_FOUND,
        "inexistent_user",
        "The user does not exist.",
    )
}

pub async fn get_user(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, MgmtError> {
    caller.require("read:users")?;
    let u = st.store.get_user(&id).await?.ok_or_else(no_user)?;
    Ok(axum::Json(user_json(&u)).into_response())
}

/// `PATCH /api/v2/users/{id}` with `{"blocked": true|false}`.
pub async fn patch_user(
    State(st): State<AppState>,
    meta: RequestMeta,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, MgmtError> {
    caller.require("update:users")?;
    let invalid = |m: &str| {
        MgmtError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("Payload validation error: {m}"),
        )
    };
    let v: Value = serde_json::from_slice(&body).map_err(|_| invalid("Invalid JSON"))?;
    let obj = v.as_object().ok_or_else(|| invalid("Expected an object"))?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "blocked") {
        return Err(invalid(&format!(
            "Additional properties not allowed: {k} (only blocked can be changed)"
        )));
    }
    let Some(blocked) = obj.get("blocked").and_then(Value::as_bool) else {
        return Err(invalid("blocked must be a boolean"));
    };
    if !st.store.set_user_blocked(&id, blocked, st.now()).await? {
        return Err(no_user());
    }
    st.event("sapi", &meta, |e| {
        e.client_id = Some(caller.client_id.clone());
        e.user_id = Some(id.clone());
        e.description = format!(
            "Management API: user {}",
            if blocked { "blocked" } else { "unblocked" }
        );
    })
    .await;
    let u = st.store.get_user(&id).await?.ok_or_else(no_user)?;
    Ok(axum::Json(user_json(&u)).into_response())
}

pub async fn delete_user(
    State(st): State<AppState>,
    meta: RequestMeta,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, MgmtError> {
    caller.require("delete:users")?;
    if !st.store.delete_user(&id).await? {
        return Err(no_user());
    }
    st.event("sapi", &meta, |e| {
        e.client_id = Some(caller.client_id.clone());
        e.user_id = Some(id.clone());
        e.description = "Management API: user deleted".into();
    })
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v2/logs?per_page=…&type=…`, newest first.
pub async fn logs(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Response, MgmtError> {
    caller.require("read:logs")?;
    let p = query(q.as_deref())?;
    let kind = p.str("type").ok().flatten().map(str::to_string);
    let limit = per_page(&p);
    let events = st
        .store
        .list_events(if kind.is_some() { limit * 20 } else { limit })
        .await?;
    let rows: Vec<Value> = events
        .iter()
        .filter(|e| kind.as_ref().is_none_or(|k| &e.kind == k))
        .take(limit as usize)
        .map(|e| {
            json!({"log_id": e.id, "date": rfc3339(e.at), "type": e.kind, "client_id": e.client_id,
                   "connection": e.connection, "user_id": e.user_id, "ip": e.ip,
                   "user_agent": e.user_agent, "description": e.description})
        })
        .collect();
    Ok(axum::Json(Value::Array(rows)).into_response())
}

/// An application as the Management API and the CLI show it: never its secret.
pub fn client_json(c: &tessera_core::client::Client) -> Value {
    let s = &c.settings;
    json!({
        "client_id": c.client_id, "name": s.name, "app_type": s.app_type.auth0_name(),
        "has_secret": c.is_confidential(),
        "token_endpoint_auth_method": if c.is_confidential() { "client_secret_post" } else { "none" },
        "callbacks": s.callbacks, "web_origins": s.web_origins,
        "allowed_logout_urls": s.allowed_logout_urls, "grant_types": s.grant_types,
        "connections": s.connections, "allow_browser_start": s.allow_browser_start,
        "cross_origin_authentication": s.cross_origin_authentication,
        "legacy_passwordless": s.legacy_passwordless,
        "trust_forwarded_for": s.trust_forwarded_for,
    })
}

/// `GET /api/v2/clients`: the applications, without secrets.
pub async fn clients(State(st): State<AppState>, caller: Caller) -> Result<Response, MgmtError> {
    caller.require("read:clients")?;
    let list = st.store.list_clients().await?;
    Ok(axum::Json(Value::Array(list.iter().map(client_json).collect())).into_response())
}

/// The `client_credentials` grant: a Management API token for an application's granted scopes.
pub async fn client_credentials(
    st: &AppState,
    meta: &RequestMeta,
    client: &tessera_core::client::Client,
    p: &Params,
) -> Result<Value, ApiError> {
    let denied = |m: String| ApiError::new(StatusCode::FORBIDDEN, "access_denied", m);
    if !client.is_confidential() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "client_credentials needs a confidential application",
        ));
    }
    let aud = audience(st);
    match p.str("audience").ok().flatten() {
        Some(a) if a == aud => {}
        Some(a) => return Err(denied(format!("Service not found: {a}"))),
        None => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "Missing required parameter: audience",
            ));
        }
    }
    let granted = &client.settings.management_scopes;
    let scopes: Vec<String> = match p.str("scope").ok().flatten() {
        Some(s) => {
            let asked: Vec<String> = s.split_whitespace().map(str::to_string).collect();
            if let Some(x) = asked.iter().find(|a| !granted.contains(a)) {
                return Err(denied(format!("Client has not been granted scopes: {x}")));
            }
            asked
        }
        None => granted.clone(),
    };
    if scopes.is_empty() {
        return Err(denied("Client has not been granted any scope".into()));
    }
    let now = st.now();
    let lifetime = st.tokens.access_token_lifetime_secs;
    let scope = scopes.join(" ");
    let mut c = serde_json::Map::new();
    c.insert("iss".into(), json!(st.issuer));
    c.insert("sub".into(), json!(format!("{}@clients", client.client_id)));
    c.insert("aud".into(), json!(aud));
    c.insert("iat".into(), json!(now));
    c.insert("exp".into(), json!(now + lifetime));
    c.insert("scope".into(), json!(scope));
    c.insert("gty".into(), json!("client-credentials"));
    c.insert("azp".into(), json!(client.client_id));
    c.insert("jti".into(), json!(hex_id(st.rng.as_ref())));
    let token = st.keys.get().signing.sign(&c).map_err(ApiError::internal)?;
    st.event("seccft", meta, |e| {
        e.client_id = Some(client.client_id.clone());
        e.description = format!("Management API token issued ({scope})");
    })
    .await;
    Ok(
        json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": scope}),
    )
}
