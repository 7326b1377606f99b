//! The Management API (`/api/v2`), in Auth0's shapes: clients, connections, users, logs and
//! signing keys, over the domain operations in [`crate::ops`] (which the dashboard and the CLI
//! share). Access takes a token from the `client_credentials` grant with audience
//! `<issuer>api/v2/` and scopes granted to the application in its `management_scopes`. Errors
//! use the Management API's shape `{"statusCode","error","message","errorCode"}`, and every
//! write is an audit event (`sapi`).

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use tessera_core::clock::rfc3339;
use tessera_core::rand::hex_id;
use tessera_core::user::User;
use tessera_store::EventFilter;

use crate::error::ApiError;
use crate::ops::{Actor, OpError, Ops, connection_json, key_json, log_json};
use crate::params::Params;
use crate::state::{AppState, RequestMeta};

/// The scopes an application can be granted.
pub use crate::ops::SCOPES;

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

impl From<OpError> for MgmtError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::NotFound(what, m) => MgmtError::new(
                StatusCode::NOT_FOUND,
                match what {
                    "user" => "inexistent_user",
                    "client" => "inexistent_client",
                    "connection" => "inexistent_connection",
                    _ => "inexistent_key",
                },
                m,
            ),
            OpError::Invalid(m) => MgmtError::new(StatusCode::BAD_REQUEST, "invalid_body", m),
            OpError::Conflict(m) => MgmtError::new(StatusCode::CONFLICT, "conflict", m),
            OpError::Store(e) => MgmtError::from(e),
            OpError::Internal(m) => {
                tracing::error!(error = %m, "management operation failed");
                MgmtError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "Internal error",
                )
            }
        }
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
    ip: Option<String>,
    user_agent: Option<String>,
}

impl Caller {
    /// The domain operations, acting as this application.
    fn ops<'a>(&self, st: &'a AppState) -> Ops<'a> {
        Ops {
            store: st.store.as_ref(),
            rng: st.rng.as_ref(),
            now: st.now(),
            actor: Actor::api(&self.client_id, self.ip.clone(), self.user_agent.clone()),
            secret: &st.secret,
        }
    }

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
        let Ok(meta) = RequestMeta::from_request_parts(parts, st).await;
        Ok(Caller {
            client_id,
            scopes,
            ip: meta.ip_text(),
            user_agent: meta.user_agent,
        })
    }
}

/// Refuses a path or query with a NUL character (PostgreSQL cannot hold one) as bad input.
async fn refuse_nul(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, MgmtError> {
    if crate::params::uri_has_nul(req.uri()) {
        return Err(MgmtError::new(
            StatusCode::BAD_REQUEST,
            "invalid_uri",
            "A NUL character is not allowed in the path or the query",
        ));
    }
    Ok(next.run(req).await)
}

/// The Management API's routes.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/v2/users", get(list_users).post(create_user))
        .route("/api/v2/users-by-email", get(list_users))
        .route(
            "/api/v2/users/{id}",
            get(get_user).patch(patch_user).delete(delete_user),
        )
        .route("/api/v2/logs", get(logs))
        .route("/api/v2/clients", get(clients).post(create_client))
        .route(
            "/api/v2/clients/{id}",
            get(get_client).patch(patch_client).delete(delete_client),
        )
        .route("/api/v2/clients/{id}/rotate-secret", post(rotate_secret))
        .route("/api/v2/connections", get(connections))
        .route(
            "/api/v2/connections/{id}",
            get(get_connection).patch(patch_connection),
        )
        .route("/api/v2/keys/signing", get(signing_keys))
        .route("/api/v2/keys/signing/rotate", post(rotate_key))
        .route("/api/v2/keys/signing/{kid}/revoke", put(revoke_key))
        .layer(axum::middleware::from_fn(refuse_nul))
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
        "app_metadata": u.app_metadata,
        "user_metadata": u.user_metadata,
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

/// How far Auth0 lets offset paging reach into a search's results (users, logs).
const SEARCH_WINDOW: i64 = 1000;

/// Auth0's offset paging: `page` (from 0), `per_page` (1–100) and `include_totals`, which
/// wraps the page in `{"start","limit","length","total",<items>}` (what the generated SDKs
/// ask for and parse).
struct Paging {
    start: i64,
    per_page: i64,
    totals: bool,
}

impl Paging {
    fn parse(p: &Params) -> Result<Paging, MgmtError> {
        let page = match p.str("page").ok().flatten() {
            None => 0,
            Some(s) => s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                MgmtError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query_string",
                    "page must be a whole number from 0",
                )
            })?,
        };
        let per_page = per_page(p);
        Ok(Paging {
            start: page.saturating_mul(per_page),
            per_page,
            totals: p.str("include_totals").ok().flatten() == Some("true"),
        })
    }

    /// How many rows to read from a search: up to the end of this page, or the whole window
    /// when a total is asked for. Pages past the window are refused, as Auth0 does.
    fn search_limit(&self) -> Result<i64, MgmtError> {
        if self.start >= SEARCH_WINDOW {
            return Err(MgmtError::new(
                StatusCode::BAD_REQUEST,
                "invalid_paging",
                format!("You can only page through the first {SEARCH_WINDOW} records"),
            ));
        }
        Ok(if self.totals {
            SEARCH_WINDOW
        } else {
            (self.start + self.per_page).min(SEARCH_WINDOW)
        })
    }

    /// This page of `rows` (every row up to the page's end, or all of them for a total).
    fn respond(&self, key: &str, rows: Vec<Value>) -> Response {
        let total = rows.len();
        let items: Vec<Value> = rows
            .into_iter()
            .skip(usize::try_from(self.start).unwrap_or(usize::MAX))
            .take(usize::try_from(self.per_page).unwrap_or(0))
            .collect();
        if !self.totals {
            return axum::Json(Value::Array(items)).into_response();
        }
        let mut v = json!({
            "start": self.start, "limit": self.per_page, "length": items.len(), "total": total,
        });
        v[key] = Value::Array(items);
        axum::Json(v).into_response()
    }
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

/// A JSON object body, or the Management API's validation error.
fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, MgmtError> {
    let invalid = |m: &str| {
        MgmtError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("Payload validation error: {m}"),
        )
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) if crate::params::has_nul(&Value::Object(m.clone())) => {
            Err(invalid("a NUL character is not allowed"))
        }
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid("Expected an object")),
        Err(_) => Err(invalid("Invalid JSON")),
    }
}

fn json_response(status: StatusCode, v: Value) -> Response {
    let mut r = (status, axum::Json(v)).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
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
        .unwrap_or_default();
    if p.get("email").is_some() {
        // `users-by-email` answers a plain array, unpaged: the users with exactly that address
        // (stored lower-cased, so the match ignores case), never a substring's.
        let users = match tessera_core::email::EmailAddress::parse(search) {
            Ok(addr) => st
                .store
                .find_user("email", addr.as_str())
                .await?
                .into_iter()
                .collect(),
            Err(_) => Vec::new(),
        };
        return Ok(axum::Json(Value::Array(users.iter().map(user_json).collect())).into_response());
    }
    let paging = Paging::parse(&p)?;
    let users = match field_query(search)? {
        Some(u) => match u {
            Some((connection, identifier)) => st
                .store
                .find_user(connection, &identifier)
                .await?
                .into_iter()
                .collect(),
            None => Vec::new(),
        },
        None => {
            caller
                .ops(&st)
                .search_users(search, paging.search_limit()?)
                .await?
        }
    };
    Ok(paging.respond("users", users.iter().map(user_json).collect()))
}

/// Auth0's `q=email:"…"` and `q=phone_number:"…"`: an exact lookup, as `Some(Some((connection,
/// identifier)))`, or `Some(None)` when the value cannot be an address or a number. `None` is
/// plain text (searched as a substring). Other `field:` queries are refused, never ignored.
fn field_query(q: &str) -> Result<Option<Option<(&'static str, String)>>, MgmtError> {
    let Some((field, value)) = q.trim().split_once(':') else {
        return Ok(None);
    };
    let value = value.trim().trim_matches('"');
    match field.trim() {
        "email" => Ok(Some(
            tessera_core::email::EmailAddress::parse(value)
                .ok()
                .map(|e| ("email", e.as_str().to_string())),
        )),
        "phone_number" => Ok(Some(
            tessera_core::phone::PhoneNumber::parse(value)
                .ok()
                .map(|p| ("sms", p.as_str().to_string())),
        )),
        f if !f.is_empty()
            && f.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') =>
        {
            Err(MgmtError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query_string",
                format!("Only email:\"…\" and phone_number:\"…\" queries are supported, not {f}:"),
            ))
        }
        _ => Ok(None),
    }
}

pub async fn get_user(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, MgmtError> {
    caller.require("read:users")?;
    let u = caller.ops(&st).get_user(&id).await?;
    Ok(axum::Json(user_json(&u)).into_response())
}

/// `POST /api/v2/users` with `connection` and `email` or `phone_number`.
pub async fn create_user(
    State(st): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, MgmtError> {
    caller.require("create:users")?;
    let u = caller.ops(&st).create_user(&object(&body)?).await?;
    Ok(json_response(StatusCode::CREATED, user_json(&u)))
}

/// `PATCH /api/v2/users/{id}`: `blocked`, `app_metadata`, `user_metadata`.
pub async fn patch_user(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, MgmtError> {
    caller.require("update:users")?;
    let u = caller.ops(&st).update_user(&id, &object(&body)?).await?;
    Ok(axum::Json(user_json(&u)).into_response())
}

pub async fn delete_user(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, MgmtError> {
    caller.require("delete:users")?;
    caller.ops(&st).delete_user(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A time in a query: RFC 3339 or seconds since the epoch.
fn query_time(p: &Params, key: &str) -> Result<Option<i64>, MgmtError> {
    let Some(raw) = p.str(key).ok().flatten() else {
        return Ok(None);
    };
    if let Ok(n) = raw.parse::<i64>() {
        return Ok(Some(n));
    }
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map(|t| Some(t.unix_timestamp()))
        .map_err(|_| {
            MgmtError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query_string",
                format!("{key} must be an RFC 3339 time or seconds since the epoch"),
            )
        })
}

/// `GET /api/v2/logs?type=…&user_id=…&client_id=…&from=…&to=…&page=…&per_page=…`, newest
/// first (`from` and `to` are times), also filtered by Auth0's `q` (or `search`, as the Python
/// SDK sends it).
pub async fn logs(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Response, MgmtError> {
    caller.require("read:logs")?;
    let p = query(q.as_deref())?;
    let paging = Paging::parse(&p)?;
    let text = |k: &str| p.str(k).ok().flatten().map(str::to_string);
    let mut filter = EventFilter {
        kind: text("type"),
        user_id: text("user_id"),
        client_id: text("client_id"),
        from: query_time(&p, "from")?,
        to: query_time(&p, "to")?,
        after_seq: None,
        limit: paging.search_limit()?,
    };
    for key in ["q", "search"] {
        if let Some(search) = p.str(key).ok().flatten() {
            log_search(search, &mut filter)?;
        }
    }
    let rows = caller.ops(&st).logs(&filter).await?;
    Ok(paging.respond(
        "logs",
        rows.iter().map(|(seq, e)| log_json(*seq, e)).collect(),
    ))
}

/// Auth0's log search syntax, in the part Tessera answers: `type:`, `user_id:` and
/// `client_id:` clauses with exact values (`"quoted"` or bare), joined by spaces or `AND`.
/// Anything else is refused rather than ignored, so a filter never silently widens.
fn log_search(text: &str, filter: &mut EventFilter) -> Result<(), MgmtError> {
    let refuse = |m: String| MgmtError::new(StatusCode::BAD_REQUEST, "invalid_query_string", m);
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("AND ") {
            rest = after.trim_start();
            continue;
        }
        let (field, after) = rest.split_once(':').ok_or_else(|| {
            refuse(format!(
                "log search: expected field:value, found {rest:?} (Tessera searches type, \
                 user_id and client_id)"
            ))
        })?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => quoted
                .split_once('"')
                .ok_or_else(|| refuse("log search: a quoted value is not closed".into()))?,
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        let slot = match field {
            "type" => &mut filter.kind,
            "user_id" => &mut filter.user_id,
            "client_id" => &mut filter.client_id,
            other => {
                return Err(refuse(format!(
                    "log search: Tessera searches type, user_id and client_id, not {other:?}"
                )));
            }
        };
        if slot.as_deref().is_some_and(|v| v != value) {
            return Err(refuse(format!("log search: {field} is given twice")));
        }
        *slot = Some(value.to_string());
        rest = after.trim_start();
    }
    Ok(())
}

/// An application as the Management API and the CLI show it: never its secret.
pub fn client_json(c: &tessera_core::client::Client) -> Value {
    let s = &c.settings;
    let mut jwt = json!({"alg": c.signing_alg().as_str()});
    if let Some(l) = s.id_token_lifetime_secs {
        jwt["lifetime_in_seconds"] = json!(l);
    }
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
        "management_scopes": s.management_scopes,
        "jwt_configuration": jwt,
    })
}

/// `client_json` with the secret, shown once after creation or rotation.
fn with_secret(c: &tessera_core::client::Client, secret: Option<String>) -> Value {
    let mut v = client_json(c);
    if let Some(s) = secret {
        v["client_secret"] = json!(s);
    }
    v
}

/// `GET /api/v2/clients?page=…&per_page=…&include_totals=…`: the applications, without
/// secrets.
pub async fn clients(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Response, MgmtError> {
    caller.require("read:clients")?;
    let p = query(q.as_deref())?;
    let paging = Paging::parse(&p)?;
    let rows = caller
        .ops(&st)
        .list_clients()
        .await?
        .iter()
        .map(client_json)
        .collect();
    if p.get("page").is_none() && p.get("per_page").is_none() && !paging.totals {
        // Unpaged, as before paging was understood: every application.
        return Ok(axum::Json(Value::Array(rows)).into_response());
    }
    Ok(paging.respond("clients", rows))
}

pub async fn get_client(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, MgmtError> {
    caller.require("read:clients")?;
    let c = caller.ops(&st).get_client(&id).await?;
    Ok(axum::Json(client_json(&c)).into_response())
}

/// `POST /api/v2/clients`: the answer carries the new secret, once.
pub async fn create_client(
    State(st): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, MgmtError> {
    caller.require("create:clients")?;
    let (c, secret) = caller.ops(&st).create_client(&object(&body)?).await?;
    Ok(json_response(StatusCode::CREATED, with_secret(&c, secret)))
}

pub async fn patch_client(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, MgmtError> {
    caller.require("update:clients")?;
    let c = caller.ops(&st).update_client(&id, &object(&body)?).await?;
    Ok(axum::Json(client_json(&c)).into_response())
}

pub async fn delete_client(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, MgmtError> {
    caller.require("delete:clients")?;
    caller.ops(&st).delete_client(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v2/clients/{id}/rotate-secret`: the answer carries the new secret, once.
pub async fn rotate_secret(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, MgmtError> {
    caller.require("update:clients")?;
    let (c, secret) = caller.ops(&st).rotate_secret(&id).await?;
    Ok(json_response(StatusCode::OK, with_secret(&c, Some(secret))))
}

/// `con_email` (Auth0 ids) or the name.
fn connection_name(id: &str) -> &str {
    id.strip_prefix("con_").unwrap_or(id)
}

/// `GET /api/v2/connections?strategy=…&name=…`, paged like the other lists (there are two
/// connections at most).
pub async fn connections(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Response, MgmtError> {
    caller.require("read:connections")?;
    let p = query(q.as_deref())?;
    let paging = Paging::parse(&p)?;
    let strategy = p.str("strategy").ok().flatten();
    let name = p.str("name").ok().flatten();
    let list = caller.ops(&st).list_connections().await?;
    Ok(paging.respond(
        "connections",
        list.iter()
            .filter(|(c, _)| strategy.is_none_or(|s| s == c.strategy.as_str()))
            .filter(|(c, _)| name.is_none_or(|n| n == c.name))
            .map(|(c, e)| connection_json(c, e))
            .collect(),
    ))
}

pub async fn get_connection(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, MgmtError> {
    caller.require("read:connections")?;
    let (c, e) = caller.ops(&st).get_connection(connection_name(&id)).await?;
    Ok(axum::Json(connection_json(&c, &e)).into_response())
}

/// `PATCH /api/v2/connections/{id}` with `options` and `enabled_clients`.
pub async fn patch_connection(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, MgmtError> {
    caller.require("update:connections")?;
    let (c, e) = caller
        .ops(&st)
        .update_connection(connection_name(&id), &object(&body)?)
        .await?;
    Ok(axum::Json(connection_json(&c, &e)).into_response())
}

/// `GET /api/v2/keys/signing`: every key, with its status.
pub async fn signing_keys(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Response, MgmtError> {
    caller.require("read:signing_keys")?;
    let keys = caller.ops(&st).list_keys().await?;
    Ok(axum::Json(Value::Array(keys.iter().map(key_json).collect())).into_response())
}

/// `POST /api/v2/keys/signing/rotate`: `{"kid": <the new current RS256 key>, "kids": [every
/// new current key, one per algorithm in use]}`.
pub async fn rotate_key(State(st): State<AppState>, caller: Caller) -> Result<Response, MgmtError> {
    caller.require("create:signing_keys")?;
    let ops = caller.ops(&st);
    let kids = ops.rotate_key(&st.secret).await?;
    refresh_keys(&st).await;
    let mut v = json!({"kid": kids.first(), "kids": kids});
    if let Some(cert) = key_cert(&ops, kids.first()).await? {
        v["cert"] = cert;
    }
    Ok(json_response(StatusCode::CREATED, v))
}

/// The PEM certificate of the key `kid`, as `key_json` gives it.
async fn key_cert(ops: &Ops<'_>, kid: Option<&String>) -> Result<Option<Value>, MgmtError> {
    let Some(kid) = kid else { return Ok(None) };
    Ok(ops
        .list_keys()
        .await?
        .iter()
        .find(|k| &k.kid == kid)
        .and_then(|k| key_json(k).get("cert").cloned()))
}

/// `PUT /api/v2/keys/signing/{kid}/revoke`.
pub async fn revoke_key(
    State(st): State<AppState>,
    caller: Caller,
    Path(kid): Path<String>,
) -> Result<Response, MgmtError> {
    caller.require("update:signing_keys")?;
    let ops = caller.ops(&st);
    ops.revoke_key(&kid).await?;
    refresh_keys(&st).await;
    let mut v = json!({"kid": kid, "revoked": true});
    if let Some(cert) = key_cert(&ops, Some(&kid)).await? {
        v["cert"] = cert;
    }
    Ok(json_response(StatusCode::OK, v))
}

/// This node uses a key change at once; the others on their next periodic refresh.
async fn refresh_keys(st: &AppState) {
    if let Err(e) = st.keys.refresh(st.store.as_ref(), &st.secret).await {
        tracing::warn!(error = %e, "could not refresh signing keys");
    }
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
