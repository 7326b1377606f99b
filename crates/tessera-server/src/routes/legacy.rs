//! The endpoints of the seeds' older widgets (Lock Passwordless v2, auth0.js v7), for
//! applications with `legacy_passwordless` switched on:
//! - `POST /oauth/ro`: the resource-owner call with the one-time code as the password, for
//!   flows without a callback URL;
//! - `POST /tokeninfo`: the profile for an id_token (Lock v2, after `/oauth/ro`);
//! - JSONP `GET` variants of `/passwordless/start`, `/passwordless/verify`, `/oauth/ro` and
//!   `/tokeninfo` (`forceJSONP`), answering `/**/ typeof cb === 'function' && cb({...});`.
//!
//! They run the same checks, limits and code rules as the modern endpoints: the JSONP variants
//! call the same handlers with the query as the body.

use axum::body::{Bytes, to_bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tessera_core::scope::Scope;

use crate::error::ApiError;
use crate::limits;
use crate::otpcheck::{self, Accept, Failure};
use crate::params::Params;
use crate::routes::{Body, no_store_json, parse_body};
use crate::state::{AppState, RequestMeta};
use crate::tokens::{self, Grant, Refresh};

/// The error every legacy endpoint gives an application without the switch (Auth0's answer
/// to OIDC-conformant applications).
fn not_enabled() -> ApiError {
    ApiError::bad_request(
        "invalid_request",
        "OIDC conformant clients cannot use /oauth/ro",
    )
}

/// Looks the application up and checks its legacy switch.
pub async fn legacy_client(
    st: &AppState,
    client_id: Option<&str>,
) -> Result<tessera_core::client::Client, ApiError> {
    let Some(id) = client_id.filter(|c| !c.is_empty()) else {
        return Err(ApiError::bad_request(
            "invalid_request",
            "missing client_id parameter",
        ));
    };
    match st.store.get_client(id).await? {
        Some(c) if c.settings.legacy_passwordless => Ok(c),
        Some(_) => Err(not_enabled()),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            "invalid client",
        )),
    }
}

/// Auth0's `/oauth/ro` answers for a refused code (`invalid_user_password` is what makes
/// Lock v2 say "Wrong email or verification code").
pub fn ro_error(f: Failure, strategy: tessera_core::connection::Strategy) -> ApiError {
    let d = f.description(strategy);
    match f {
        Failure::LockedOut => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", d),
        Failure::Blocked => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", d),
        _ => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_user_password", d),
    }
}

pub async fn oauth_ro(
    State(st): State<AppState>,
    meta: RequestMeta,
    Body(body): Body,
) -> Result<Response, ApiError> {
    limits::browser(&st, &meta).await?;
    let p = parse_body(&body, "invalid_request")?;
    let get = |k: &str| p.str(k).ok().flatten().filter(|s| !s.is_empty());
    let client = legacy_client(&st, get("client_id")).await?;
    // The code-for-tokens exchange is the passwordless OTP grant, whatever the endpoint.
    if !client.allows_grant(tessera_core::client::GRANT_PASSWORDLESS_OTP) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            format!(
                "Grant type '{}' not allowed for the client.",
                tessera_core::client::GRANT_PASSWORDLESS_OTP
            ),
        ));
    }
    for (k, d) in [
        ("username", "missing username parameter"),
        ("password", "missing password parameter"),
        ("connection", "missing connection parameter"),
    ] {
        if get(k).is_none() {
            return Err(ApiError::bad_request("invalid_request", d));
        }
    }
    if get("grant_type").is_some_and(|g| g != "password") {
        return Err(ApiError::bad_request(
            "unsupported_grant_type",
            "grant_type must be password",
        ));
    }
    let conn_name = get("connection").unwrap_or_default();
    let connection = match st.store.get_connection(conn_name).await? {
        None => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "the connection was not found",
            ));
        }
        Some(c) if !client.has_connection(&c.name) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "the connection was disabled",
            ));
        }
        Some(c) => c,
    };
    let strategy = connection.strategy;
    let user = otpcheck::check_and_sign_in(
        &st,
        &meta,
        &client,
        &connection,
        get("username").unwrap_or_default().trim(),
        get("password").unwrap_or_default(),
        Accept::CodesOnly,
        None,
        "/oauth/ro",
    )
    .await?
    .map_err(|f| ro_error(f, strategy))?;
    let scope = Scope::parse(get("scope").unwrap_or("openid"));
    let mut body = tokens::issue(
        &st,
        Grant {
            user: &user,
            client: &client,
            scope,
            audience: None,
            nonce: None,
            refresh: Refresh::IfAllowed,
            grant_id: None,
            at_hash: false,
            legacy_user_id: true,
        },
    )
    .await?;
    // As Auth0's /oauth/ro answered.
    body["token_type"] = json!("bearer");
    Ok(no_store_json(body))
}

/// `POST /tokeninfo` `id_token=…`: the profile of the user the id_token names, once its
/// signature, issuer, audience (an application with the legacy switch) and expiry check out.
pub async fn tokeninfo(
    State(st): State<AppState>,
    meta: RequestMeta,
    Body(body): Body,
) -> Result<Response, ApiError> {
    limits::browser(&st, &meta).await?;
    let p = parse_body(&body, "invalid_request")?;
    let token =
        p.str("id_token").ok().flatten().ok_or_else(|| {
            ApiError::bad_request("invalid_request", "missing id_token parameter")
        })?;
    let invalid = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "invalid id_token",
        )
    };
    // The audience names the application; the signature check below makes it trustworthy.
    let aud = unverified_audience(token).ok_or_else(invalid)?;
    legacy_client(&st, Some(&aud)).await?;
    let claims = st.verify_jwt(token, &aud).await.map_err(|_| invalid())?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    let user = match st.store.get_user(sub).await? {
        Some(u) if !u.blocked => u,
        _ => return Err(invalid()),
    };
    // The Management API's user shape, as Auth0's /tokeninfo answered.
    Ok(no_store_json(crate::routes::management::user_json(&user)))
}

fn unverified_audience(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    match v.get("aud")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.first()?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Which handler a JSONP `GET` stands for.
#[derive(Clone, Copy)]
pub enum Jsonp {
    Start,
    Verify,
    Ro,
    TokenInfo,
}

/// A JSONP `GET`: the query becomes the body of the matching POST handler; its JSON answer is
/// wrapped in a call to the `cbx` (or `callback`) function, with `status` added.
pub async fn jsonp(
    State(st): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    uri: axum::http::Uri,
    RawQuery(q): RawQuery,
) -> Response {
    // The path names the POST handler this GET stands for.
    let which = match uri.path() {
        "/passwordless/start" => Jsonp::Start,
        "/passwordless/verify" => Jsonp::Verify,
        "/oauth/ro" => Jsonp::Ro,
        _ => Jsonp::TokenInfo,
    };
    let Ok(mut p) = Params::from_query(q.as_deref()) else {
        return ApiError::bad_request("invalid_request", "malformed query").into_response();
    };
    let callback =
        p.0.remove("cbx")
            .or_else(|| p.0.remove("callback"))
            .and_then(|v| v.as_str().map(str::to_string));
    p.0.remove("auth0Client");
    let Some(callback) = callback.filter(|c| valid_callback(c)) else {
        return ApiError::bad_request("invalid_request", "a valid cbx (callback name) is required")
            .into_response();
    };
    // JSONP is legacy only: the application must have the switch (for /tokeninfo the handler
    // checks the token's audience).
    let mut headers = headers;
    // /passwordless/verify names no application in the old widgets (then the pending code's
    // application must have the switch, which the handler checks); when it does name one, that
    // one needs the switch for JSONP too.
    let named = p.str("client_id").ok().flatten().is_some();
    if matches!(which, Jsonp::Start | Jsonp::Ro) || (matches!(which, Jsonp::Verify) && named) {
        match legacy_client(&st, p.str("client_id").ok().flatten()).await {
            Err(e) => return wrap(&callback, e.into_response(), false).await,
            // A script load carries no Origin. A legacy application allowed to start from the
            // browser is taken to be asking from its own pages (its first web origin).
            Ok(c) if matches!(which, Jsonp::Start) && c.settings.allow_browser_start => {
                if let Some(o) = c.settings.web_origins.first()
                    && let Ok(v) = HeaderValue::from_str(o)
                {
                    headers.insert(header::ORIGIN, v);
                }
            }
            Ok(_) => {}
        }
    }
    let body = Body(Bytes::from(
        serde_json::to_vec(&Value::Object(p.0)).unwrap_or_default(),
    ));
    let resp = match which {
        Jsonp::Start => crate::routes::passwordless::start(State(st), meta, headers, body)
            .await
            .into_response(),
        Jsonp::Verify => crate::routes::verify::verify(State(st), meta, body)
            .await
            .into_response(),
        Jsonp::Ro => oauth_ro(State(st), meta, body).await.into_response(),
        Jsonp::TokenInfo => tokeninfo(State(st), meta, body).await.into_response(),
    };
    wrap(&callback, resp, matches!(which, Jsonp::TokenInfo)).await
}

/// `__auth0jp0`, `jsonp_cb.x`: a JavaScript identifier path, nothing else.
fn valid_callback(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 64
        && c.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == '$')
                && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '$')
        })
}

/// `user_object`: Lock v2 reads a JSONP `/tokeninfo` profile from `user`.
async fn wrap(callback: &str, resp: Response, user_object: bool) -> Response {
    let status = resp.status().as_u16();
    let bytes = to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let mut v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({}));
    if !v.is_object() {
        v = json!({ "value": v });
    }
    if user_object && status == 200 {
        v = json!({ "user": v });
    }
    v["status"] = json!(status);
    let js = format!(
        "/**/ typeof {callback} === 'function' && {callback}({});",
        v.to_string().replace('<', "\\u003c")
    );
    // JSONP answers 200 so the script runs; the status travels inside.
    let mut r = (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        js,
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
