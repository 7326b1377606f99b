//! The dashboard at `/admin`: applications, connections (with the email template editor and
//! its preview), users, the audit log and signing keys, for the administrators named in
//! `[admin] emails`.
//!
//! Administrators sign in with Tessera itself: `/admin` sends the browser to the hosted login
//! page as the internal public application `tessera-dashboard` (PKCE, `prompt=login`), and
//! `/admin/callback` redeems the code in process (see [`auth`]). Every page is rendered on the
//! server with minijinja (auto-escaped), under a strict CSP, and works without JavaScript; the
//! one script, `admin.js`, only makes the template preview follow the typing. Every POST carries
//! a CSRF token bound to the admin session. Changes go through [`crate::ops`], which checks them
//! and records them as audit events; the dashboard never writes to the store itself, except for
//! its own sign-in session.

mod apps;
mod auth;
mod connections;
mod keys;
mod users;

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::{Environment, Value, context};
use tessera_core::client::{
    AppType, Client, ClientSettings, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS,
    GRANT_IMPLICIT, GRANT_PASSWORDLESS_OTP, GRANT_REFRESH_TOKEN,
};
use tessera_store::StoreError;

use crate::ops::{DASHBOARD_CLIENT_ID, OpError};
use crate::state::AppState;

pub use auth::{Admin, IDLE_SECS, SESSION_LIFETIME_SECS};

/// The CSP of every dashboard page: its own stylesheet and script only, frames only from the
/// dashboard (the email preview), forms only to itself.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The grant types an application can be given, in the order the form lists them.
const GRANTS: &[&str] = &[
    GRANT_AUTHORIZATION_CODE,
    GRANT_IMPLICIT,
    GRANT_REFRESH_TOKEN,
    GRANT_PASSWORDLESS_OTP,
    GRANT_CLIENT_CREDENTIALS,
];

/// The dashboard's own sign-in application: public, PKCE, the email connection, one callback.
pub fn dashboard_client(issuer: &str) -> Client {
    Client {
        client_id: DASHBOARD_CLIENT_ID.into(),
        secret_hash: None,
        settings: ClientSettings {
            name: "Tessera dashboard".into(),
            app_type: AppType::Spa,
            callbacks: vec![auth::callback_url(issuer)],
            web_origins: vec![],
            grant_types: vec![GRANT_AUTHORIZATION_CODE.into()],
            connections: vec!["email".into()],
            trust_forwarded_for: false,
            allowed_logout_urls: vec![],
            allow_browser_start: false,
            cross_origin_authentication: false,
            legacy_passwordless: false,
            management_scopes: vec![],
            id_token_lifetime_secs: None,
            signing_alg: None,
        },
    }
}

/// The dashboard's routes. Everything but the static files, the sign-in callback and the
/// sign-out page sits behind [`auth::guard`] (a session, and a CSRF token on every POST).
pub fn router(state: AppState) -> Router<AppState> {
    let guarded = Router::new()
        .route("/admin", get(home))
        .route("/admin/", get(home))
        .route("/admin/logout", post(auth::logout))
        .route("/admin/applications", get(apps::list).post(apps::create))
        .route("/admin/applications/new", get(apps::new_form))
        .route(
            "/admin/applications/{id}",
            get(apps::detail).post(apps::update),
        )
        .route(
            "/admin/applications/{id}/rotate-secret",
            get(apps::rotate_confirm).post(apps::rotate),
        )
        .route(
            "/admin/applications/{id}/delete",
            get(apps::delete_confirm).post(apps::delete),
        )
        .route("/admin/connections", get(connections::list))
        .route(
            "/admin/connections/{name}",
            get(connections::detail).post(connections::update),
        )
        .route(
            "/admin/connections/{name}/preview",
            get(connections::preview_saved).post(connections::preview_form),
        )
        .route("/admin/users", get(users::list))
        .route("/admin/users/{id}", get(users::detail))
        .route("/admin/users/{id}/block", post(users::block))
        .route("/admin/users/{id}/unblock", post(users::unblock))
        .route(
            "/admin/users/{id}/delete",
            get(users::delete_confirm).post(users::delete),
        )
        .route("/admin/logs", get(users::logs))
        .route("/admin/logs/{seq}", get(users::log_detail))
        .route("/admin/keys", get(keys::list))
        .route(
            "/admin/keys/rotate",
            get(keys::rotate_confirm).post(keys::rotate),
        )
        .route(
            "/admin/keys/{kid}/revoke",
            get(keys::revoke_confirm).post(keys::revoke),
        )
        .route_layer(middleware::from_fn_with_state(state, auth::guard));
    Router::new()
        .merge(guarded)
        .route("/admin/callback", get(auth::callback))
        .route("/admin/signed-out", get(auth::signed_out))
        .route("/admin/static/{file}", get(static_file))
}

async fn home() -> Response {
    see_other("/admin/applications")
}

// ------------------------------------------------------------------------------------------
// Rendering
// ------------------------------------------------------------------------------------------

const CSS: &str = include_str!("static/admin.css");
const JS: &str = include_str!("static/admin.js");

/// `?v=` for an asset: the start of its digest, so a new build's file is fetched anew.
fn asset_url(name: &str, body: &str) -> String {
    format!(
        "/admin/static/{name}?v={}",
        &hex::encode(tessera_core::crypto::sha256(body))[..12]
    )
}

fn asset_urls() -> &'static (String, String) {
    static URLS: OnceLock<(String, String)> = OnceLock::new();
    URLS.get_or_init(|| (asset_url("admin.css", CSS), asset_url("admin.js", JS)))
}

async fn static_file(Path(file): Path<String>) -> Response {
    let (ctype, body) = match file.as_str() {
        "admin.css" => ("text/css; charset=utf-8", CSS),
        "admin.js" => ("text/javascript; charset=utf-8", JS),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut r = ([(header::CONTENT_TYPE, ctype)], body).into_response();
    // Not secret, and the URL changes with the content.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    r
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut e = Environment::new();
        // `.html` names switch auto-escaping on.
        for (name, src) in [
            ("layout.html", include_str!("templates/layout.html")),
            ("message.html", include_str!("templates/message.html")),
            ("confirm.html", include_str!("templates/confirm.html")),
            ("apps.html", include_str!("templates/apps.html")),
            ("app_new.html", include_str!("templates/app_new.html")),
            ("app.html", include_str!("templates/app.html")),
            ("secret.html", include_str!("templates/secret.html")),
            (
                "connections.html",
                include_str!("templates/connections.html"),
            ),
            ("connection.html", include_str!("templates/connection.html")),
            ("preview.html", include_str!("templates/preview.html")),
            ("users.html", include_str!("templates/users.html")),
            ("user.html", include_str!("templates/user.html")),
            ("logs.html", include_str!("templates/logs.html")),
            ("log.html", include_str!("templates/log.html")),
            ("keys.html", include_str!("templates/keys.html")),
        ] {
            if let Err(err) = e.add_template(name, src) {
                tracing::error!(error = %err, name, "a dashboard template does not compile");
            }
        }
        e
    })
}

fn render_html(name: &str, ctx: Value) -> String {
    env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, name, "dashboard page rendering failed");
            "<!DOCTYPE html><title>Error</title><p>Something went wrong.</p>".into()
        })
}

/// A dashboard page: the template with the layout's values, `no-store`, and the page CSP.
/// `admin` is `None` on pages seen before or after a session (sign-in errors, signed out).
pub(crate) fn page(admin: Option<&Admin>, status: StatusCode, name: &str, ctx: Value) -> Response {
    let (css, js) = asset_urls();
    let ctx = context! {
        css, js,
        me => admin.map(|a| a.email.clone()),
        csrf => admin.map(|a| a.csrf.clone()),
        ..ctx
    };
    html(status, render_html(name, ctx), PAGE_CSP)
}

pub(crate) fn html(status: StatusCode, body: String, csp: &str) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// A page with a title, a message and an optional link (errors, "signed out", "dashboard off").
pub(crate) fn message(
    admin: Option<&Admin>,
    status: StatusCode,
    title: &str,
    text: &str,
    link: Option<(&str, &str)>,
) -> Response {
    let (href, label) = link.unzip();
    page(
        admin,
        status,
        "message.html",
        context! { title, text, href, label, failed => status.as_u16() >= 400 },
    )
}

/// A page that asks before a change: one button POSTing to `action` (with the CSRF token),
/// and a way `back`.
pub(crate) fn confirm(
    admin: &Admin,
    section: &str,
    title: &str,
    text: String,
    (action, back): (&str, &str),
    button: &str,
) -> Response {
    page(
        Some(admin),
        StatusCode::OK,
        "confirm.html",
        context! { section, title, text, action, back, button, danger => true },
    )
}

/// The note a page shows after a change (`?done=…` of the redirect after a POST): fixed
/// texts, so nothing from the address is echoed.
pub(crate) fn flash(q: Option<&str>) -> Option<&'static str> {
    let done = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.into_owned())?;
    Some(match done.as_str() {
        "saved" => "Saved.",
        "deleted" => "Deleted.",
        "blocked" => "The user is blocked: their next sign-in is refused.",
        "unblocked" => "The user is unblocked.",
        "rotated" => {
            "A new signing key is current. The previous one stays published until it retires or is revoked."
        }
        "revoked" => "The key is revoked: the tokens it signed no longer verify.",
        _ => return None,
    })
}

/// `303 See Other`: where a form's POST goes next (Post/Redirect/Get).
pub(crate) fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// One segment of a dashboard path (user ids have `|` in them), percent-encoded.
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A time for people: `2026-11-22 02:31:17 UTC`.
pub(crate) fn when(t: i64) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&f).ok())
        .unwrap_or_else(|| t.to_string())
}

// ------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------

/// An error page. Handlers return it; [`auth::guard`] renders it inside the signed-in layout.
#[derive(Debug, Clone)]
pub(crate) struct AdminError {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
}

impl AdminError {
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        AdminError {
            status,
            title,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        AdminError::new(StatusCode::NOT_FOUND, "Not found", message)
    }

    pub fn render(&self, admin: Option<&Admin>) -> Response {
        message(admin, self.status, self.title, &self.message, None)
    }
}

impl From<OpError> for AdminError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::NotFound(_, m) => AdminError::not_found(m),
            OpError::Invalid(m) => AdminError::new(StatusCode::BAD_REQUEST, "Not saved", m),
            OpError::Conflict(m) => AdminError::new(StatusCode::CONFLICT, "Conflict", m),
            OpError::Store(e) => e.into(),
            OpError::Internal(m) => internal(m),
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                AdminError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    "The database cannot be reached. Try again shortly.",
                )
            }
            other => internal(other),
        }
    }
}

/// Logged once, with a reference the page shows too; the details stay in the log.
fn internal(err: impl std::fmt::Display) -> AdminError {
    let reference = tessera_core::rand::hex_id(&tessera_core::rand::SystemRandom);
    tracing::error!(error = %err, reference = %reference, "dashboard: internal error");
    AdminError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        format!("Something went wrong on our side (reference {reference})."),
    )
}

/// Marks a response as an error page for the guard to render with the admin's layout.
#[derive(Debug, Clone)]
pub(crate) struct ErrorPage(pub AdminError);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut r = self.render(None);
        r.extensions_mut().insert(ErrorPage(self));
        r
    }
}

// ------------------------------------------------------------------------------------------
// Forms
// ------------------------------------------------------------------------------------------

/// A posted form (`application/x-www-form-urlencoded`), repeated names kept (checkboxes).
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`, or "".
    pub fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    /// Whether any name or value holds a NUL character.
    pub fn has_nul(&self) -> bool {
        self.0
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// Every value of `key` (checkboxes), in order.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A textarea of one value per line: trimmed, blank lines left out.
    pub fn lines(&self, key: &str) -> Vec<String> {
        self.get(key)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_keep_repeated_names_and_lines() {
        let f = Form::parse(b"a=1&c=x&c=y&t=%20one%0D%0A%0D%0Atwo%20&e=");
        assert_eq!(f.get("a"), "1");
        assert_eq!(f.all("c"), ["x", "y"]);
        assert_eq!(f.lines("t"), ["one", "two"]);
        assert!(f.has("e") && !f.has("z"));
        assert_eq!(f.get("z"), "");
    }

    #[test]
    fn path_segments_and_times() {
        assert_eq!(seg("email|0a1b"), "email%7C0a1b");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn every_template_compiles() {
        for name in [
            "layout.html",
            "message.html",
            "confirm.html",
            "apps.html",
            "app_new.html",
            "app.html",
            "secret.html",
            "connections.html",
            "connection.html",
            "preview.html",
            "users.html",
            "user.html",
            "logs.html",
            "log.html",
            "keys.html",
        ] {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
    }
}
