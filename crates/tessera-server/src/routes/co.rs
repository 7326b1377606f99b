//! Embedded login from the application's pages (Lock, auth0-js): `POST /co/authenticate`,
//! the CORS rules of every endpoint a browser SDK calls, and what Lock loads
//! (`/client/{id}.js`, `/user/geoloc/country`, `/passwordless/challenge`).
//!
//! `/co/authenticate` checks the code as the OTP grant does and answers a single-use login
//! ticket. The browser keeps `co_verifier` on the application's side; Tessera keeps its digest
//! with the ticket and sets it, per `co_id`, in a cookie on its own site, so `/authorize` only
//! takes the ticket from the browser that ran `/co/authenticate`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tessera_core::client::GRANT_PASSWORDLESS_OTP;
use tessera_core::crypto::sha256;
use tessera_core::rand::{hex_id, token};
use tessera_store::LoginTicket;

use crate::error::ApiError;
use crate::limits;
use crate::otpcheck::{self, Accept};
use crate::routes::{Body, no_store_json, parse_body};
use crate::session;
use crate::state::{AppState, RequestMeta};

const CO_FIELDS: &[&str] = &["client_id", "credential_type", "username", "otp", "realm"];

pub async fn authenticate(
    State(st): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    limits::browser(&st, &meta).await?;
    let p = parse_body(&body, "invalid_request")?;
    let all_strings = CO_FIELDS
        .iter()
        .all(|k| matches!(p.str(k), Ok(Some(v)) if !v.is_empty()));
    if !all_strings || p.keys().any(|k| !CO_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "Invalid request body. All and only of client_id, credential_type, username, otp, realm are required.",
        ));
    }
    let get = |k: &str| p.str(k).ok().flatten().unwrap_or_default();
    let Some(client) = st.store.get_client(get("client_id")).await? else {
        return Err(ApiError::unauthorized_client_credentials());
    };
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if let Some(o) = origin
        && !client.allows_origin(o)
    {
        return Ok(origin_refused(o));
    }
    if !client.settings.cross_origin_authentication {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Cross origin login not allowed.",
        ));
    }
    if get("credential_type") != GRANT_PASSWORDLESS_OTP {
        return Err(ApiError::bad_request(
            "unsupported_credential_type",
            "Unknown credential type parameter.",
        ));
    }
    let realm = get("realm");
    let connection = match st.store.get_connection(realm).await? {
        Some(c) if client.has_connection(&c.name) => c,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!(
                    "Unknown realm {}.",
                    realm.chars().take(64).collect::<String>()
                ),
            ));
        }
    };
    let strategy = connection.strategy;
    let user = otpcheck::check_and_sign_in(
        &st,
        &meta,
        &client,
        &connection,
        get("username"),
        get("otp"),
        Accept::CodesOnly,
        None,
        "cross-origin",
    )
    .await?
    .map_err(|f| f.browser_error(strategy))?;
    let now = st.now();
    let ticket = token(st.rng.as_ref());
    let co_verifier = token(st.rng.as_ref());
    let co_id = hex_id(st.rng.as_ref());
    let lifetime = st.tokens.login_ticket_lifetime_secs;
    st.store
        .insert_login_ticket(&LoginTicket {
            ticket_hash: sha256(&ticket),
            client_id: client.client_id.clone(),
            user_id: user.user_id.clone(),
            connection: connection.name.clone(),
            co_id: co_id.clone(),
            verifier_hash: sha256(&co_verifier),
            created_at: now,
            expires_at: now + lifetime,
        })
        .await?;
    let mut resp = no_store_json(json!({
        "login_ticket": ticket,
        "co_verifier": co_verifier,
        "co_id": co_id,
    }));
    session::set_cookie(
        &st,
        &mut resp,
        &format!("{}{co_id}", session::CO_PREFIX),
        &co_verifier,
        lifetime,
    );
    Ok(resp)
}

/// Auth0's answer for a browser origin no application allows.
fn origin_refused(origin: &str) -> Response {
    let clean: String = origin
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(200)
        .collect();
    let mut r = (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("Origin {clean} is not allowed."),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Whether any application allows this origin.
async fn origin_allowed(st: &AppState, origin: &str) -> Result<bool, ApiError> {
    Ok(st
        .store
        .list_clients()
        .await?
        .iter()
        .any(|c| c.allows_origin(origin)))
}

/// CORS for the endpoints browser SDKs call. Preflights are answered for origins some
/// application allows, and refused (403) otherwise; responses to allowed origins carry
/// `Access-Control-Allow-Origin` (with credentials for `/co/authenticate`). Each endpoint
/// still checks the origin against its own application where that matters.
pub async fn cors(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_string);
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    let allowed = match origin_allowed(&st, &origin).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let credentials = req.uri().path() == "/co/authenticate";
    if req.method() == Method::OPTIONS {
        if !allowed {
            return origin_refused(&origin);
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, GET, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        allow(h, &origin, credentials);
        return r;
    }
    let mut r = next.run(req).await;
    if allowed {
        allow(r.headers_mut(), &origin, credentials);
    }
    r
}

fn allow(h: &mut HeaderMap, origin: &str, credentials: bool) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    if credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// `GET /client/{client_id}.js`: the JSONP `Auth0.setClient({...})` Lock loads.
pub async fn client_js(
    State(st): State<AppState>,
    file: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "Not found");
    // A name that is not UTF-8, or holds a NUL character (which PostgreSQL cannot even
    // compare), names no application: the same 404 as an unknown one.
    let Ok(Path(file)) = file else {
        return Err(not_found());
    };
    if file.contains('\0') {
        return Err(not_found());
    }
    let client_id = file.strip_suffix(".js").ok_or_else(not_found)?;
    let client = st
        .store
        .get_client(client_id)
        .await?
        .ok_or_else(not_found)?;
    let mut strategies = Vec::new();
    for name in &client.settings.connections {
        if let Some(c) = st.store.get_connection(name).await? {
            strategies.push(json!({
                "name": c.strategy.as_str(),
                "connections": [{"name": c.name}],
            }));
        }
    }
    let config = json!({
        "id": client.client_id,
        "tenant": st.tenant.name,
        "subscription": "enterprise",
        "authorize": format!("{}authorize", st.issuer),
        "callback": client.settings.callbacks.first(),
        "hasAllowedOrigins": !client.settings.web_origins.is_empty(),
        "strategies": strategies,
    });
    // `<` escaped: the JSON cannot close a script element.
    let body = format!(
        "Auth0.setClient({});",
        config.to_string().replace('<', "\\u003c")
    );
    let mut r = (
        [(
            header::CONTENT_TYPE,
            "application/x-javascript; charset=utf-8",
        )],
        body,
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// `GET /user/geoloc/country`: Tessera does no geolocation; Lock falls back to this value.
pub async fn geoloc_country() -> Response {
    axum::Json(json!({"country_code": "US"})).into_response()
}

/// `POST /passwordless/challenge`: no captcha is required.
pub async fn passwordless_challenge() -> Response {
    axum::Json(json!({"required": false})).into_response()
}
