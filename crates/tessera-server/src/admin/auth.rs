//! Who gets into the dashboard, and how each request is checked.
//!
//! **Sign-in.** A request without a session is sent to `/authorize` as the public application
//! `tessera-dashboard`, with `state`, a PKCE S256 challenge, `prompt=login` (always a fresh
//! code, never the browser's SSO session) and `connection=email`. The state, the verifier and
//! the page asked for travel in a short-lived sealed cookie. `/admin/callback` redeems the code
//! in process (the store's single-use `use_auth_code`: this client, this redirect URI, the
//! verifier), loads the user, and admits an email user whose verified address is in
//! `[admin] emails`; anyone else gets a 403 page and an `fapi` audit event.
//!
//! **Session.** A stored session (by digest, like the SSO session, 8 hours) and a cookie
//! (`__Host-` on https, `HttpOnly`, `SameSite=Strict`) holding, sealed with the server secret,
//! the session id, the address, the user id, the start and the last use (30 minutes idle).
//! Every request opens the cookie and checks all of it again: the stored session (sign-out
//! deletes it, and deleting the user does too), the user (not blocked, the same address) and
//! the address still in the configured list.
//!
//! **CSRF.** Every POST needs the form field `csrf`, an HMAC of the session id under the server
//! secret (compared in constant time), and is refused when its `Sec-Fetch-Site` or `Origin`
//! shows another site.

use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use minijinja::context;
use serde::{Deserialize, Serialize};
use tessera_core::client::origin_of;
use tessera_core::crypto::{ct_eq, sha256};
use tessera_core::rand::token;
use tessera_core::user::User;
use tessera_store::{AuthCodeUse, Session};

use super::{AdminError, ErrorPage, Form, message, page};
use crate::ops::{Actor, DASHBOARD_CLIENT_ID, Ops};
use crate::session;
use crate::state::{AppState, RequestMeta};

/// How long a dashboard session lasts, however busy.
pub const SESSION_LIFETIME_SECS: i64 = 8 * 3600;
/// How long a dashboard session lasts unused.
pub const IDLE_SECS: i64 = 30 * 60;
/// How long a sign-in may take, from `/admin` to `/admin/callback`.
const LOGIN_LIFETIME_SECS: i64 = 600;
/// The cookie's last-use time is written again at most this often.
const TOUCH_SECS: i64 = 60;

pub const SESSION_COOKIE: &str = "tessera_admin";
pub const LOGIN_COOKIE: &str = "tessera_admin_login";
const SESSION_PURPOSE: &str = "tessera/admin-session/v1";
const LOGIN_PURPOSE: &str = "tessera/admin-login/v1";
const CSRF_PURPOSE: &str = "tessera/admin-csrf/v1";
const MAX_FORM: usize = 64 * 1024;

/// The signed-in administrator, as handlers see them.
#[derive(Debug, Clone)]
pub struct Admin {
    pub email: String,
    pub user_id: String,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Admin {
    /// The domain operations, acting as this administrator (named in the audit events).
    pub fn ops<'a>(&self, st: &'a AppState) -> Ops<'a> {
        Ops {
            store: st.store.as_ref(),
            rng: st.rng.as_ref(),
            now: st.now(),
            actor: Actor::admin(&self.email, self.ip.clone(), self.user_agent.clone()),
            secret: &st.secret,
        }
    }
}

/// What the session cookie holds, sealed.
#[derive(Debug, Serialize, Deserialize)]
struct SessionCookie {
    sid: String,
    email: String,
    user_id: String,
    iat: i64,
    last: i64,
}

/// What the sign-in cookie holds, sealed.
#[derive(Debug, Serialize, Deserialize)]
struct LoginCookie {
    state: String,
    verifier: String,
    return_to: String,
    exp: i64,
}

pub fn callback_url(issuer: &str) -> String {
    format!("{issuer}admin/callback")
}

/// The stored session's key: its own namespace, so a session id can never be used as an SSO
/// session cookie or the other way round.
fn session_hash(sid: &str) -> Vec<u8> {
    sha256(&format!("admin-session:{sid}"))
}

fn csrf_for(st: &AppState, sid: &str) -> String {
    hex::encode(st.secret.mac(CSRF_PURPOSE, sid.as_bytes()))
}

fn seal_json<T: Serialize>(st: &AppState, purpose: &str, v: &T) -> String {
    let plain = serde_json::to_vec(v).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(st.secret.seal(st.rng.as_ref(), purpose, &plain))
}

fn open_json<T: for<'de> Deserialize<'de>>(st: &AppState, purpose: &str, v: &str) -> Option<T> {
    let raw = URL_SAFE_NO_PAD.decode(v).ok()?;
    let plain = st.secret.open(purpose, &raw).ok()?;
    serde_json::from_slice(&plain).ok()
}

/// A dashboard cookie: `HttpOnly`, `Path=/`, `Secure` and `__Host-` with an https issuer.
fn set_cookie(st: &AppState, resp: &mut Response, name: &str, value: &str, max_age: i64) {
    // The sign-in cookie must survive the way back from a magic link (a top-level navigation
    // from another site), so it is Lax; the session cookie is Strict.
    let same_site = if name == LOGIN_COOKIE {
        "Lax"
    } else {
        "Strict"
    };
    let secure = if st.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let name = session::full_name(st, name);
    let v = format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    );
    if let Ok(v) = HeaderValue::from_str(&v) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The page shown at every dashboard address when no administrator is configured.
fn dashboard_off() -> Response {
    message(
        None,
        StatusCode::NOT_FOUND,
        "The dashboard is off",
        "No administrators are configured. Name them in the configuration, \
         [admin] emails = [\"you@example.com\"], and restart Tessera.",
        None,
    )
}

// ------------------------------------------------------------------------------------------
// Sign-in
// ------------------------------------------------------------------------------------------

/// Sends the browser to the hosted login page, remembering where it wanted to go.
fn start_login(st: &AppState, return_to: &str) -> Response {
    let rng = st.rng.as_ref();
    let state = token(rng);
    let verifier = token(rng);
    let challenge = URL_SAFE_NO_PAD.encode(sha256(&verifier));
    let cookie = seal_json(
        st,
        LOGIN_PURPOSE,
        &LoginCookie {
            state: state.clone(),
            verifier,
            return_to: return_to.to_string(),
            exp: st.now() + LOGIN_LIFETIME_SECS,
        },
    );
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", DASHBOARD_CLIENT_ID),
        ("redirect_uri", &callback_url(&st.issuer)),
        ("scope", "openid email"),
        ("state", &state),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("prompt", "login"),
        ("connection", "email"),
    ] {
        q.append_pair(k, v);
    }
    let mut resp = crate::authz::redirect_to(&format!("/authorize?{}", q.finish()));
    set_cookie(st, &mut resp, LOGIN_COOKIE, &cookie, LOGIN_LIFETIME_SECS);
    resp
}

/// Where to go after signing in: a dashboard address, nothing else.
fn safe_return(path_and_query: &str) -> String {
    let ok = path_and_query.starts_with("/admin")
        && path_and_query.len() <= 2000
        && !path_and_query
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    if ok {
        path_and_query.to_string()
    } else {
        "/admin".into()
    }
}

fn sign_in_failed(title: &str, text: &str, status: StatusCode) -> Response {
    message(None, status, title, text, Some(("/admin", "Sign in again")))
}

/// `GET /admin/callback?code&state` (or `?error&error_description`): the end of the sign-in.
pub async fn callback(
    State(st): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if st.admins.is_empty() {
        return dashboard_off();
    }
    let mut resp = match callback_inner(&st, &meta, &headers, q.as_deref()).await {
        Ok(r) => r,
        Err(e) => e.render(None),
    };
    set_cookie(&st, &mut resp, LOGIN_COOKIE, "", 0);
    resp
}

async fn callback_inner(
    st: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    q: Option<&str>,
) -> Result<Response, AdminError> {
    let params: Vec<(String, String)> = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let login: Option<LoginCookie> = session::cookie(st, headers, LOGIN_COOKIE)
        .and_then(|c| open_json(st, LOGIN_PURPOSE, &c))
        .filter(|l: &LoginCookie| l.exp > st.now());
    let Some(login) = login else {
        return Ok(sign_in_failed(
            "Sign-in expired",
            "This sign-in did not start in this browser, or took more than ten minutes.",
            StatusCode::BAD_REQUEST,
        ));
    };
    if !ct_eq(get("state").as_bytes(), login.state.as_bytes()) {
        return Ok(sign_in_failed(
            "Sign-in expired",
            "This sign-in answer belongs to another sign-in. Start again.",
            StatusCode::BAD_REQUEST,
        ));
    }
    if !get("error").is_empty() {
        let text = format!("The sign-in was refused: {}", get("error_description"));
        return Ok(sign_in_failed(
            "Not signed in",
            &text,
            StatusCode::FORBIDDEN,
        ));
    }
    let Some(user) = redeem(st, get("code"), &login.verifier).await? else {
        return Ok(sign_in_failed(
            "Not signed in",
            "The sign-in code is invalid, used or expired.",
            StatusCode::BAD_REQUEST,
        ));
    };
    let admitted = user
        .email
        .as_deref()
        .filter(|_| user.email_verified && !user.blocked && user.user_id.starts_with("email|"))
        .filter(|e| st.admins.iter().any(|a| a == e));
    let Some(email) = admitted else {
        st.event("fapi", meta, |e| {
            e.client_id = Some(DASHBOARD_CLIENT_ID.into());
            e.user_id = Some(user.user_id.clone());
            e.description = "Dashboard sign-in refused: not an administrator".into();
        })
        .await;
        tracing::warn!(user_id = %user.user_id, "dashboard sign-in refused: not an administrator");
        return Ok(message(
            None,
            StatusCode::FORBIDDEN,
            "Not an administrator",
            "You signed in, but this address may not use the dashboard. \
             Ask an administrator to add it to [admin] emails.",
            None,
        ));
    };
    let email = email.to_string();
    let resp = begin_session(st, meta, &user, &email, &login.return_to).await?;
    st.event("sapi", meta, |e| {
        e.client_id = Some(DASHBOARD_CLIENT_ID.into());
        e.user_id = Some(user.user_id.clone());
        e.description = format!("Dashboard ({email}): signed in");
    })
    .await;
    Ok(resp)
}

/// Redeems a dashboard authorization code: once, for this client and callback, with the
/// verifier. The user it was issued to, or `None`.
async fn redeem(st: &AppState, code: &str, verifier: &str) -> Result<Option<User>, AdminError> {
    if code.is_empty() {
        return Ok(None);
    }
    let now = st.now();
    let record = match st.store.use_auth_code(&sha256(code), now).await? {
        AuthCodeUse::Fresh(c) => c,
        AuthCodeUse::Reused(c) => {
            st.store.revoke_grant(&c.grant_id, now).await?;
            return Ok(None);
        }
        AuthCodeUse::Unknown => return Ok(None),
    };
    let pkce_ok = match (&record.code_challenge, &record.code_challenge_method) {
        (Some(ch), Some(m)) if m == "S256" => crate::authz::pkce_matches(ch, m, verifier),
        _ => false,
    };
    if record.client_id != DASHBOARD_CLIENT_ID
        || record.redirect_uri != callback_url(&st.issuer)
        || !pkce_ok
    {
        st.store.revoke_grant(&record.grant_id, now).await?;
        return Ok(None);
    }
    Ok(st.store.get_user(&record.user_id).await?)
}

/// Stores the session, sets its cookie, and answers a page that moves on to `return_to`.
async fn begin_session(
    st: &AppState,
    meta: &RequestMeta,
    user: &User,
    email: &str,
    return_to: &str,
) -> Result<Response, AdminError> {
    let now = st.now();
    let sid = token(st.rng.as_ref());
    st.store
        .create_session(&Session {
            id_hash: session_hash(&sid),
            user_id: user.user_id.clone(),
            created_at: now,
            expires_at: now + SESSION_LIFETIME_SECS,
            ip: meta.ip_text(),
            user_agent: meta.user_agent.clone(),
        })
        .await?;
    let cookie = SessionCookie {
        sid,
        email: email.to_string(),
        user_id: user.user_id.clone(),
        iat: now,
        last: now,
    };
    // A page, not a redirect: after a magic link from another site, a redirect would still be
    // a cross-site navigation, and the Strict cookie would not be sent with it.
    let to = safe_return(return_to);
    let mut resp = page(
        None,
        StatusCode::OK,
        "message.html",
        context! { title => "Signed in", text => "Opening the dashboard…", href => to.clone(),
        label => "Continue", refresh => to },
    );
    let value = seal_json(st, SESSION_PURPOSE, &cookie);
    set_cookie(st, &mut resp, SESSION_COOKIE, &value, SESSION_LIFETIME_SECS);
    Ok(resp)
}

// ------------------------------------------------------------------------------------------
// Every request
// ------------------------------------------------------------------------------------------

/// The session of this request, checked again from the cookie to the configuration.
async fn current(st: &AppState, headers: &HeaderMap) -> Result<Option<SessionCookie>, AdminError> {
    let Some(c) = session::cookie(st, headers, SESSION_COOKIE)
        .and_then(|v| open_json::<SessionCookie>(st, SESSION_PURPOSE, &v))
    else {
        return Ok(None);
    };
    let now = st.now();
    if now >= c.iat + SESSION_LIFETIME_SECS
        || now >= c.last + IDLE_SECS
        || !st.admins.contains(&c.email)
    {
        return Ok(None);
    }
    match st.store.get_session(&session_hash(&c.sid), now).await? {
        Some(s) if s.user_id == c.user_id => {}
        _ => return Ok(None),
    }
    match st.store.get_user(&c.user_id).await? {
        Some(u) if !u.blocked && u.email.as_deref() == Some(c.email.as_str()) => Ok(Some(c)),
        _ => Ok(None),
    }
}

/// Whether a POST came from a dashboard page, when the browser says where it came from:
/// `Sec-Fetch-Site` must be `same-origin`, and `Origin` Tessera's. Under Tessera's
/// `Referrer-Policy: no-referrer` browsers send `Origin: null` even for their own forms, so
/// `null` tells nothing (the CSRF token still has to match).
fn same_origin(st: &AppState, headers: &HeaderMap) -> bool {
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap_or("?"));
    if let Some(site) = h("sec-fetch-site")
        && site != "same-origin"
    {
        return false;
    }
    match h("origin") {
        None | Some("null") => true,
        Some(o) => origin_of(&st.issuer).is_some_and(|mine| mine == o),
    }
}

fn forbidden_form() -> Response {
    message(
        None,
        StatusCode::FORBIDDEN,
        "Form refused",
        "This form has expired or did not come from the dashboard. Go back, reload the page and try again.",
        Some(("/admin", "Back to the dashboard")),
    )
}

/// The dashboard's gate: a live session for every page, a CSRF token and a same-origin
/// request for every POST. Error pages get the signed-in layout, and the cookie's last use is
/// written again.
pub async fn guard(
    State(st): State<AppState>,
    meta: RequestMeta,
    req: Request,
    next: Next,
) -> Response {
    if st.admins.is_empty() {
        return dashboard_off();
    }
    if crate::params::uri_has_nul(req.uri()) {
        return bad_input();
    }
    let session = match current(&st, req.headers()).await {
        Ok(s) => s,
        Err(e) => return e.render(None),
    };
    let is_read = matches!(*req.method(), Method::GET | Method::HEAD);
    let Some(session) = session else {
        if is_read {
            let wanted = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/admin");
            return start_login(&st, &safe_return(wanted));
        }
        let mut resp = message(
            None,
            StatusCode::FORBIDDEN,
            "Signed out",
            "Your dashboard session has ended. Sign in again, then repeat the change.",
            Some(("/admin", "Sign in")),
        );
        set_cookie(&st, &mut resp, SESSION_COOKIE, "", 0);
        return resp;
    };
    let admin = Admin {
        email: session.email.clone(),
        user_id: session.user_id.clone(),
        csrf: csrf_for(&st, &session.sid),
        ip: meta.ip_text(),
        user_agent: meta.user_agent.clone(),
    };
    let req = if is_read {
        req
    } else {
        match checked_post(&st, &admin, req).await {
            Ok(r) => r,
            Err(Refused::Forbidden) => return forbidden_form(),
            Err(Refused::BadInput) => return bad_input(),
        }
    };
    let mut req = req;
    req.extensions_mut().insert(admin.clone());
    let mut resp = next.run(req).await;
    if let Some(ErrorPage(e)) = resp.extensions().get::<ErrorPage>().cloned() {
        resp = e.render(Some(&admin));
    }
    let now = st.now();
    if now - session.last >= TOUCH_SECS {
        let touched = SessionCookie {
            last: now,
            ..session
        };
        let value = seal_json(&st, SESSION_PURPOSE, &touched);
        let left = touched.iat + SESSION_LIFETIME_SECS - now;
        set_cookie(&st, &mut resp, SESSION_COOKIE, &value, left);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Why a POST was refused before its handler.
enum Refused {
    /// No valid CSRF token, another site, or a body too large.
    Forbidden,
    /// A NUL character in a field (PostgreSQL cannot hold one).
    BadInput,
}

/// A form field or address with a NUL character.
fn bad_input() -> Response {
    message(
        None,
        StatusCode::BAD_REQUEST,
        "Bad input",
        "A NUL character is not allowed in a form field or an address.",
        Some(("/admin", "Back to the dashboard")),
    )
}

/// The POST, its body read once to check the CSRF token and handed on.
async fn checked_post(st: &AppState, admin: &Admin, req: Request) -> Result<Request, Refused> {
    if !same_origin(st, req.headers()) {
        return Err(Refused::Forbidden);
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| Refused::Forbidden)?;
    let form = Form::parse(&bytes);
    let presented = form.get("csrf").to_string();
    if !ct_eq(presented.as_bytes(), admin.csrf.as_bytes()) {
        return Err(Refused::Forbidden);
    }
    if form.has_nul() {
        return Err(Refused::BadInput);
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// `POST /admin/logout`: ends the dashboard session and this browser's Tessera session.
pub async fn logout(
    State(st): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    axum::Extension(admin): axum::Extension<Admin>,
) -> Result<Response, AdminError> {
    if let Some(c) = session::cookie(&st, &headers, SESSION_COOKIE)
        .and_then(|v| open_json::<SessionCookie>(&st, SESSION_PURPOSE, &v))
    {
        st.store.delete_session(&session_hash(&c.sid)).await?;
    }
    let mut resp = super::see_other("/admin/signed-out");
    set_cookie(&st, &mut resp, SESSION_COOKIE, "", 0);
    session::end(&st, &headers, &mut resp)
        .await
        .map_err(|e| AdminError::new(e.status, "Something went wrong", e.description))?;
    st.event("sapi", &meta, |e| {
        e.client_id = Some(DASHBOARD_CLIENT_ID.into());
        e.user_id = Some(admin.user_id.clone());
        e.description = format!("Dashboard ({}): signed out", admin.email);
    })
    .await;
    Ok(resp)
}

/// `GET /admin/signed-out`.
pub async fn signed_out() -> Response {
    message(
        None,
        StatusCode::OK,
        "Signed out",
        "You are signed out of the dashboard.",
        Some(("/admin", "Sign in again")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dashboard_addresses_are_returned_to() {
        assert_eq!(safe_return("/admin/users?q=a"), "/admin/users?q=a");
        assert_eq!(safe_return("//evil.example/admin"), "/admin");
        assert_eq!(safe_return("https://evil.example/"), "/admin");
        assert_eq!(safe_return("/admin\\evil"), "/admin");
        assert_eq!(safe_return("/authorize"), "/admin");
    }
}
