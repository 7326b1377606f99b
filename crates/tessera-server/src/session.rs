//! Tessera's own browser state: the SSO session cookie, the CSRF cookie of the hosted login
//! page, the same-device cookie of magic links, and the cross-origin login cookie.
//!
//! Every cookie is `HttpOnly`, `Path=/` and `SameSite=Lax`, and `Secure` whenever the issuer is
//! https. Cookie values are random; the database holds only their SHA-256 digests, and the
//! derived tokens (CSRF, same-device) are HMACs under the server secret.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use tessera_core::crypto::{ct_eq, sha256};
use tessera_core::rand::token;
use tessera_core::user::User;
use tessera_store::Session;

use crate::error::ApiError;
use crate::state::{AppState, RequestMeta};

pub const SESSION: &str = "tessera_session";
pub const CSRF: &str = "tessera_csrf";
pub const LINK_DEVICE: &str = "tessera_link";
pub const CO_PREFIX: &str = "tessera_co_";

/// A cookie's full name: with the `__Host-` prefix when the issuer is https, so that no other
/// host of the site (a sibling subdomain) can set or shadow it (RFC 6265bis §4.1.3.2).
pub fn full_name(st: &AppState, name: &str) -> String {
    if st.issuer.starts_with("https://") {
        format!("__Host-{name}")
    } else {
        name.to_string()
    }
}

/// The value of the named Tessera cookie.
pub fn cookie(st: &AppState, headers: &HeaderMap, name: &str) -> Option<String> {
    let name = full_name(st, name);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name.as_str())
        .map(|(_, v)| v.trim_matches('"').to_string())
}

/// Adds a `Set-Cookie`. `max_age` of 0 deletes.
pub fn set_cookie(st: &AppState, resp: &mut Response, name: &str, value: &str, max_age: i64) {
    let secure = if st.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let name = full_name(st, name);
    let v = format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    if let Ok(v) = HeaderValue::from_str(&v) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Starts a session for `user` and sets its cookie on `resp`.
pub async fn start(
    st: &AppState,
    meta: &RequestMeta,
    user: &User,
    resp: &mut Response,
) -> Result<(), ApiError> {
    let now = st.now();
    let id = token(st.rng.as_ref());
    let lifetime = st.tokens.session_lifetime_secs;
    st.store
        .create_session(&Session {
            id_hash: sha256(&id),
            user_id: user.user_id.clone(),
            created_at: now,
            expires_at: now + lifetime,
            ip: meta.ip_text(),
            user_agent: meta.user_agent.clone(),
        })
        .await?;
    set_cookie(st, resp, SESSION, &id, lifetime);
    Ok(())
}

/// The signed-in user of this browser, if its session is live and the user not blocked.
pub async fn current_user(st: &AppState, headers: &HeaderMap) -> Result<Option<User>, ApiError> {
    let Some(id) = cookie(st, headers, SESSION) else {
        return Ok(None);
    };
    let Some(s) = st.store.get_session(&sha256(&id), st.now()).await? else {
        return Ok(None);
    };
    Ok(st.store.get_user(&s.user_id).await?.filter(|u| !u.blocked))
}

/// Ends this browser's session (server side) and clears the cookie.
pub async fn end(st: &AppState, headers: &HeaderMap, resp: &mut Response) -> Result<(), ApiError> {
    if let Some(id) = cookie(st, headers, SESSION) {
        st.store.delete_session(&sha256(&id)).await?;
    }
    set_cookie(st, resp, SESSION, "", 0);
    Ok(())
}

/// The CSRF token for this browser's CSRF cookie (the cookie is made when missing: the bool
/// says whether it must be set).
pub fn csrf_token(st: &AppState, headers: &HeaderMap) -> (String, String, bool) {
    let (cookie_value, fresh) = match cookie(st, headers, CSRF).filter(|c| c.len() >= 32) {
        Some(c) => (c, false),
        None => (token(st.rng.as_ref()), true),
    };
    let tag = hex::encode(st.secret.mac("csrf", cookie_value.as_bytes()));
    (cookie_value, tag, fresh)
}

/// Whether a posted CSRF token belongs to this browser's CSRF cookie.
pub fn csrf_ok(st: &AppState, headers: &HeaderMap, presented: &str) -> bool {
    let Some(c) = cookie(st, headers, CSRF) else {
        return false;
    };
    let expected = hex::encode(st.secret.mac("csrf", c.as_bytes()));
    ct_eq(expected.as_bytes(), presented.as_bytes())
}

/// The same-device proof for a magic link: the cookie value the requesting browser gets.
pub fn link_device_tag(st: &AppState, challenge_id: &str) -> String {
    hex::encode(st.secret.mac("magic-link-device", challenge_id.as_bytes()))
}

/// Whether this browser asked for the link of `challenge_id`.
pub fn is_link_device(st: &AppState, headers: &HeaderMap, challenge_id: &str) -> bool {
    cookie(st, headers, LINK_DEVICE)
        .is_some_and(|c| ct_eq(c.as_bytes(), link_device_tag(st, challenge_id).as_bytes()))
}
