//! The app's routes: pages, the three ways to start a sign-in, `/callback`, and the files the
//! pages load.
//!
//! Every sign-in asks for [`SCOPE`]: `email` for the users of the email connection, `phone` for
//! those of the sms connection (Tessera puts `phone_number` in their id_token only then).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use minijinja::{Environment, Value, context};
use serde::Deserialize;
use serde_json::json;

use crate::AppConfig;
use crate::oidc::{self, TokenError};
use crate::pages::{self, Policy};
use crate::session::{self, SessionStore, SignedIn};

/// How long after restarting a sign-in (for a callback with an unknown state) another restart
/// is refused, so a broken setup shows an error instead of looping.
const RESTART_GUARD: Duration = Duration::from_secs(60);

/// The scope of every sign-in (`/login`, and the Lock and auth0-js pages through their config).
const SCOPE: &str = "openid profile email phone";

pub struct AppState {
    pub config: AppConfig,
    pub sessions: SessionStore,
    pub templates: Environment<'static>,
    pub http: reqwest::Client,
}

impl AppState {
    pub fn new(config: AppConfig) -> anyhow::Result<Self> {
        Ok(Self {
            config,
            sessions: SessionStore::default(),
            templates: pages::environment()?,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
        })
    }

    fn page(&self, policy: Policy, status: StatusCode, template: &str, ctx: Value) -> AppResult {
        Ok(
            pages::render(&self.templates, &self.config, policy, status, template, ctx)?
                .into_response(),
        )
    }

    fn error_page(&self, status: StatusCode, error: &str, description: &str) -> AppResult {
        self.page(
            Policy::Strict,
            status,
            "error.html",
            context! { error, description },
        )
    }
}

type Shared = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login))
        .route("/lock", get(lock))
        .route("/custom", get(custom))
        .route("/callback", get(callback))
        .route("/profile", get(profile))
        .route("/logout", get(logout))
        .route("/static/{name}", get(static_file))
        .route("/vendor/{name}", get(vendor_file))
        .with_state(state)
}

/// An unexpected failure: logged, and shown as a bare 500.
pub struct AppError(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for AppError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        tracing::error!(error = format!("{:#}", self.0), "request failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error; the example app's log has the details.",
        )
            .into_response()
    }
}

type AppResult = Result<Response, AppError>;

/// A 302 to `location`, setting the session cookie when `cookie` holds a new session id.
fn redirect(location: &str, set_cookie: Option<String>) -> AppResult {
    let mut response = StatusCode::FOUND.into_response();
    let h = response.headers_mut();
    h.insert(LOCATION, HeaderValue::from_str(location)?);
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(c) = set_cookie {
        h.append(SET_COOKIE, HeaderValue::from_str(&c)?);
    }
    Ok(response)
}

fn with_cookie(mut response: Response, state: &AppState, new_id: Option<String>) -> AppResult {
    if let Some(id) = new_id {
        let cookie = session::set_cookie(&id, state.config.secure_cookies);
        response
            .headers_mut()
            .append(SET_COOKIE, HeaderValue::from_str(&cookie)?);
    }
    Ok(response)
}

/// `base?k=v&…`, percent-encoding spaces as `%20` (as the Auth0 SDKs do) rather than `+`.
fn url_with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!("{base}?{}", query.join("&"))
}

fn encode(s: &str) -> String {
    // byte_serialize writes a literal '+' as %2B, so every '+' left stands for a space.
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<SignedIn> {
    state
        .sessions
        .with_existing(headers, |s| s.user.clone())
        .flatten()
}

fn claim<'a>(user: &'a SignedIn, name: &str) -> &'a str {
    user.claims
        .get(name)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
}

/// How the page names the user: the email address, else (an sms user) the phone number.
fn display_name(user: &SignedIn) -> &str {
    match claim(user, "email") {
        "" => claim(user, "phone_number"),
        email => email,
    }
}

async fn index(State(state): Shared, headers: HeaderMap) -> AppResult {
    let user = signed_in(&state, &headers).map(|u| display_name(&u).to_string());
    state.page(
        Policy::Strict,
        StatusCode::OK,
        "index.html",
        context! { user },
    )
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    connection: Option<String>,
}

/// `email` or `sms`, the passwordless connections a sign-in can be limited to.
fn connection_name(raw: &str) -> Option<&'static str> {
    match raw {
        "email" => Some("email"),
        "sms" => Some("sms"),
        _ => None,
    }
}

/// Tessera's hosted login page, with PKCE (S256). `?connection=email` or `sms` goes on to
/// `/authorize`, where the page then shows only that connection's form.
async fn login(State(state): Shared, headers: HeaderMap, Query(q): Query<LoginQuery>) -> AppResult {
    let connection = match q.connection.as_deref().map(connection_name) {
        None => None,
        Some(Some(name)) => Some(name),
        Some(None) => {
            return state.error_page(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "connection is email or sms",
            );
        }
    };
    let (login, new_id) = state
        .sessions
        .with_session(&headers, |s| s.start_login(true))?;
    let verifier = login.code_verifier.as_deref().unwrap_or_default();
    let challenge = oidc::pkce_challenge(verifier);
    let c = &state.config;
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", c.client_id.as_str()),
        ("redirect_uri", c.redirect_uri.as_str()),
        ("scope", SCOPE),
        ("state", login.state.as_str()),
        ("nonce", login.nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    if let Some(name) = connection {
        query.push(("connection", name));
    }
    let location = url_with_query(&format!("{}/authorize", c.tessera), &query);
    redirect(
        &location,
        new_id.map(|id| session::set_cookie(&id, c.secure_cookies)),
    )
}

#[derive(Debug, Deserialize)]
struct LockQuery {
    method: Option<String>,
    connection: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CustomQuery {
    connection: Option<String>,
    send: Option<String>,
}

/// `code` or `link`, the only two ways to sign in by email.
fn email_method(raw: Option<&str>) -> Option<&'static str> {
    match raw.unwrap_or("code") {
        "code" => Some("code"),
        "link" => Some("link"),
        _ => None,
    }
}

/// What a page refuses, naming the query parameter that picks how the code is sent.
struct Refusals {
    method: &'static str,
    sms_link: &'static str,
}

/// A page's connection and method: email with a code or a link, or sms (codes only).
fn widget_options(
    connection: Option<&str>,
    method: Option<&str>,
    refusals: &Refusals,
) -> Result<(&'static str, &'static str), &'static str> {
    match connection.map(connection_name) {
        None | Some(Some("email")) => email_method(method)
            .map(|m| ("email", m))
            .ok_or(refusals.method),
        Some(Some(sms)) => match method.unwrap_or("code") {
            "code" => Ok((sms, "code")),
            _ => Err(refusals.sms_link),
        },
        Some(None) => Err("connection is email or sms"),
    }
}

/// Lock's connection and method (`?connection=` and `?method=`).
fn lock_options(
    connection: Option<&str>,
    method: Option<&str>,
) -> Result<(&'static str, &'static str), &'static str> {
    widget_options(
        connection,
        method,
        &Refusals {
            method: "method is code or link",
            sms_link: "the sms connection sends codes only (method=code)",
        },
    )
}

/// The auth0-js page's connection and method (`?connection=` and `?send=`).
fn custom_options(
    connection: Option<&str>,
    send: Option<&str>,
) -> Result<(&'static str, &'static str), &'static str> {
    widget_options(
        connection,
        send,
        &Refusals {
            method: "send is code or link",
            sms_link: "the sms connection sends codes only (send=code)",
        },
    )
}

/// A page running a browser SDK: a new sign-in (state and nonce, no PKCE, since neither Lock
/// nor auth0-js sends a code_challenge here) whose values go to the page as JSON.
fn widget_page(
    state: &AppState,
    headers: &HeaderMap,
    template: &str,
    connection: &str,
    method: &str,
) -> AppResult {
    let (login, new_id) = state
        .sessions
        .with_session(headers, |s| s.start_login(false))?;
    let c = &state.config;
    let config = json!({
        "clientId": c.client_id,
        "tessera": c.tessera,
        "publicUrl": c.public_url,
        "redirectUri": c.redirect_uri,
        "connection": connection,
        "method": method,
        "scope": SCOPE,
        "state": login.state,
        "nonce": login.nonce,
    });
    let ctx = context! {
        connection,
        method,
        config => pages::json_for_script(&config)?,
        vendor => c.vendor_dir.is_some(),
    };
    let page = state.page(Policy::Widget, StatusCode::OK, template, ctx)?;
    with_cookie(page, state, new_id)
}

/// The Lock passwordless widget: by email (`?method=code` or `link`), or by text message
/// (`?connection=sms`).
async fn lock(State(state): Shared, headers: HeaderMap, Query(q): Query<LockQuery>) -> AppResult {
    match lock_options(q.connection.as_deref(), q.method.as_deref()) {
        Ok((connection, method)) => widget_page(&state, &headers, "lock.html", connection, method),
        Err(description) => state.error_page(StatusCode::BAD_REQUEST, "bad_request", description),
    }
}

/// Our own form, driving auth0-js: by email (`?send=code` or `link`), or by text message
/// (`?connection=sms`).
async fn custom(
    State(state): Shared,
    headers: HeaderMap,
    Query(q): Query<CustomQuery>,
) -> AppResult {
    match custom_options(q.connection.as_deref(), q.send.as_deref()) {
        Ok((connection, send)) => widget_page(&state, &headers, "custom.html", connection, send),
        Err(description) => state.error_page(StatusCode::BAD_REQUEST, "bad_request", description),
    }
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where Tessera sends the browser back: check the state, exchange the code, check the
/// id_token, keep the user in the session.
async fn callback(
    State(state): Shared,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> AppResult {
    let returned_state = q.state.as_deref().unwrap_or("");
    if let Some(error) = &q.error {
        // The sign-in is over either way; its state must not work again.
        state
            .sessions
            .with_existing(&headers, |s| s.take_login(returned_state));
        let description = q.error_description.as_deref().unwrap_or("");
        tracing::info!(error, description, "sign-in failed at Tessera");
        return state.error_page(StatusCode::BAD_REQUEST, error, description);
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return state.error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The callback carries neither a code nor an error.",
        );
    };
    let pending = state
        .sessions
        .with_existing(&headers, |s| s.take_login(returned_state))
        .flatten();
    let Some(pending) = pending else {
        return unknown_state(&state, &headers);
    };
    let user = match finish_sign_in(&state, code, &pending).await {
        Ok(user) => user,
        Err(e) => return sign_in_failed(&state, e),
    };
    tracing::info!(sub = claim(&user, "sub"), "signed in");
    let ((), new_id) = state.sessions.with_session(&headers, |s| {
        s.user = Some(user);
        Ok(())
    })?;
    redirect(
        "/profile",
        new_id.map(|id| session::set_cookie(&id, state.config.secure_cookies)),
    )
}

async fn finish_sign_in(
    state: &AppState,
    code: &str,
    pending: &session::PendingLogin,
) -> anyhow::Result<SignedIn> {
    let id_token = oidc::exchange_code(
        &state.http,
        &state.config,
        code,
        pending.code_verifier.as_deref(),
    )
    .await?;
    let claims =
        oidc::verify_id_token(&state.http, &state.config, &id_token, &pending.nonce).await?;
    Ok(SignedIn { id_token, claims })
}

fn sign_in_failed(state: &AppState, e: anyhow::Error) -> AppResult {
    tracing::warn!(error = format!("{e:#}"), "sign-in could not be completed");
    match e.downcast_ref::<TokenError>() {
        Some(t) => state.error_page(StatusCode::BAD_GATEWAY, &t.error, &t.description),
        None => state.error_page(StatusCode::BAD_GATEWAY, "sign_in_failed", &format!("{e:#}")),
    }
}

/// A code came back with a state this browser's session did not send. The code is never
/// exchanged: it may be someone else's (login CSRF), or it is ours but the magic link was opened
/// in another browser than the one that asked for it. In the second case Tessera has just signed
/// this browser in, so a fresh sign-in from here goes straight through: start one, once a minute
/// at most, so that a genuine mismatch ends on an error page instead of a loop.
fn unknown_state(state: &AppState, headers: &HeaderMap) -> AppResult {
    let (restart, new_id) = state.sessions.with_session(headers, |s| {
        let recent = s.restarted.is_some_and(|t| t.elapsed() < RESTART_GUARD);
        if !recent {
            s.restarted = Some(std::time::Instant::now());
        }
        Ok(!recent)
    })?;
    if restart {
        tracing::info!("callback with an unknown state: starting a new sign-in from this browser");
        return redirect(
            "/login",
            new_id.map(|id| session::set_cookie(&id, state.config.secure_cookies)),
        );
    }
    let page = state.error_page(
        StatusCode::BAD_REQUEST,
        "invalid_state",
        "This sign-in was not started from this browser, or it was already used. Please log in again.",
    )?;
    with_cookie(page, state, new_id)
}

async fn profile(State(state): Shared, headers: HeaderMap) -> AppResult {
    let Some(user) = signed_in(&state, &headers) else {
        return redirect("/", None);
    };
    let claims_json = serde_json::to_string_pretty(&user.claims)?;
    state.page(
        Policy::Strict,
        StatusCode::OK,
        "profile.html",
        context! {
            email => claim(&user, "email"),
            phone_number => claim(&user, "phone_number"),
            sub => claim(&user, "sub"),
            id_token => user.id_token,
            claims => claims_json,
        },
    )
}

/// Ends the app's session, then Tessera's.
async fn logout(State(state): Shared, headers: HeaderMap) -> AppResult {
    state.sessions.remove(&headers);
    let c = &state.config;
    let location = url_with_query(
        &format!("{}/v2/logout", c.tessera),
        &[
            ("client_id", &c.client_id),
            ("returnTo", &format!("{}/", c.public_url)),
        ],
    );
    redirect(&location, Some(session::clear_cookie(c.secure_cookies)))
}

fn file_response(content_type: &'static str, body: impl IntoResponse) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn static_file(Path(name): Path<String>) -> Response {
    match pages::static_file(&name) {
        Some((content_type, body)) => file_response(content_type, body),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Lock and auth0-js, from the `--vendor-dir` folder's node_modules.
async fn vendor_file(State(state): Shared, Path(name): Path<String>) -> Response {
    let relative = match name.as_str() {
        "lock.js" => "node_modules/auth0-lock/build/lock.js",
        "auth0.js" => "node_modules/auth0-js/dist/auth0.min.js",
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let Some(dir) = &state.config.vendor_dir else {
        return (StatusCode::NOT_FOUND, "no --vendor-dir was given").into_response();
    };
    let path = dir.join(relative);
    match tokio::fs::read(&path).await {
        Ok(bytes) => file_response("text/javascript; charset=utf-8", bytes),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "vendor file missing");
            (StatusCode::NOT_FOUND, format!("{relative} is missing")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_encode_spaces_as_percent_20() {
        assert_eq!(
            url_with_query(
                "http://t/authorize",
                &[("scope", "openid email"), ("x", "a+b&c")]
            ),
            "http://t/authorize?scope=openid%20email&x=a%2Bb%26c"
        );
    }

    #[test]
    fn only_code_and_link_are_methods() {
        assert_eq!(email_method(None), Some("code"));
        assert_eq!(email_method(Some("link")), Some("link"));
        assert_eq!(email_method(Some("sms")), None);
    }

    #[test]
    fn only_email_and_sms_are_connections() {
        assert_eq!(connection_name("email"), Some("email"));
        assert_eq!(connection_name("sms"), Some("sms"));
        assert_eq!(connection_name("SMS"), None);
        assert_eq!(connection_name(""), None);
    }

    #[test]
    fn lock_sends_links_by_email_only() {
        assert_eq!(lock_options(None, None), Ok(("email", "code")));
        assert_eq!(lock_options(None, Some("link")), Ok(("email", "link")));
        assert_eq!(
            lock_options(Some("email"), Some("link")),
            Ok(("email", "link"))
        );
        assert_eq!(lock_options(Some("sms"), None), Ok(("sms", "code")));
        assert_eq!(lock_options(Some("sms"), Some("code")), Ok(("sms", "code")));
        assert!(lock_options(Some("sms"), Some("link")).is_err());
        assert!(lock_options(Some("phone"), None).is_err());
        assert!(lock_options(None, Some("sms")).is_err());
    }

    #[test]
    fn the_custom_page_sends_links_by_email_only() {
        assert_eq!(custom_options(None, None), Ok(("email", "code")));
        assert_eq!(custom_options(None, Some("link")), Ok(("email", "link")));
        assert_eq!(
            custom_options(Some("email"), Some("code")),
            Ok(("email", "code"))
        );
        assert_eq!(custom_options(Some("sms"), None), Ok(("sms", "code")));
        assert_eq!(
            custom_options(Some("sms"), Some("code")),
            Ok(("sms", "code"))
        );
        assert_eq!(
            custom_options(Some("sms"), Some("link")),
            Err("the sms connection sends codes only (send=code)")
        );
        assert_eq!(
            custom_options(None, Some("sms")),
            Err("send is code or link")
        );
        assert_eq!(
            custom_options(Some("phone"), None),
            Err("connection is email or sms")
        );
    }
}
