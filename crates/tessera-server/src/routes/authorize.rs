//! `GET /authorize`, the hosted login page (`POST /login/start`, `POST /login/verify`) and
//! logout (`GET /v2/logout`, `GET /oidc/logout`).
//!
//! `/authorize` answers at once when it can: a login ticket from `/co/authenticate`, or a live
//! Tessera session (SSO) unless `prompt=login`. `prompt=none` without either answers
//! `login_required` in the requested response mode. Otherwise the browser gets Tessera's login
//! page. The page carries the checked request sealed in a hidden field and is protected by a
//! CSRF token bound to a cookie.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tessera_core::connection::Connection;
use tessera_core::crypto::{ct_eq, sha256};
use tessera_core::email::EmailAddress;

use crate::authz::{self, AuthError, AuthRequest};
use crate::error::ApiError;
use crate::limits;
use crate::otpcheck::{self, Accept};
use crate::pages::{self, Lang};
use crate::params::Params;
use crate::routes::Body;
use crate::routes::passwordless::{Recipient, issue_code};
use crate::session;
use crate::state::{AppState, RequestMeta};
use tessera_core::phone::PhoneNumber;

fn query_params(q: Option<&str>) -> Result<Params, AuthError> {
    Params::from_query(q).map_err(|_| {
        AuthError::page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The request has a malformed or repeated parameter.",
        )
    })
}

pub async fn authorize(
    State(st): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let lang_hint = meta.language.clone();
    match authorize_inner(&st, &meta, &headers, q.as_deref()).await {
        Ok(r) => r,
        Err(e) => e.into_response(Lang::pick(None, lang_hint.as_deref())),
    }
}

async fn authorize_inner(
    st: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    q: Option<&str>,
) -> Result<Response, AuthError> {
    let p = query_params(q)?;
    let (client, req) = authz::parse(st, meta, &p).await?;
    let target = req.target();

    // Embedded login (Lock, auth0-js): the ticket from /co/authenticate, once.
    if let Some(ticket) = p.str("login_ticket").ok().flatten() {
        let Some(t) = st
            .store
            .take_login_ticket(&sha256(ticket), st.now())
            .await?
        else {
            return Err(AuthError::redirect(
                &target,
                "access_denied",
                "Invalid or expired login ticket",
            ));
        };
        if t.client_id != client.client_id {
            return Err(AuthError::redirect(
                &target,
                "access_denied",
                "Invalid or expired login ticket",
            ));
        }
        if let Some(realm) = p.str("realm").ok().flatten()
            && realm != t.connection
        {
            return Err(AuthError::redirect(
                &target,
                "access_denied",
                "The login ticket was issued for another connection",
            ));
        }
        // The browser that ran /co/authenticate holds the verifier in a cookie.
        let cookie = session::cookie(st, headers, &format!("{}{}", session::CO_PREFIX, t.co_id));
        if !cookie.is_some_and(|v| ct_eq(&sha256(&v), &t.verifier_hash)) {
            return Err(AuthError::redirect(
                &target,
                "access_denied",
                "No verifier returned from client.",
            ));
        }
        let Some(user) = st.store.get_user(&t.user_id).await?.filter(|u| !u.blocked) else {
            return Err(AuthError::redirect(
                &target,
                "access_denied",
                "Blocked user",
            ));
        };
        let mut resp = authz::complete(st, &client, &req, &user, true).await?;
        session::start(st, meta, &user, &mut resp).await?;
        session::set_cookie(
            st,
            &mut resp,
            &format!("{}{}", session::CO_PREFIX, t.co_id),
            "",
            0,
        );
        return Ok(resp);
    }

    let prompt = req.prompt.clone().unwrap_or_default();
    let prompts: Vec<&str> = prompt.split(' ').filter(|s| !s.is_empty()).collect();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return Err(AuthError::redirect(
            &target,
            "invalid_request",
            "prompt=none cannot be combined with other values",
        ));
    }
    if !prompts.contains(&"login")
        && let Some(user) = session::current_user(st, headers).await?
    {
        return Ok(authz::complete(st, &client, &req, &user, true).await?);
    }
    if prompts.contains(&"none") {
        return Err(AuthError::redirect(
            &target,
            "login_required",
            "Login required",
        ));
    }
    let (email_enabled, sms_enabled) = enabled_connections(st, &client, &req);
    if !email_enabled && !sms_enabled {
        return Err(AuthError::redirect(
            &target,
            "invalid_request",
            "No passwordless connection is enabled for this application",
        ));
    }
    let lang = Lang::pick(req.ui_locales.as_deref(), meta.language.as_deref());
    let (cookie, csrf, fresh) = session::csrf_token(st, headers);
    let hint = req
        .login_hint
        .as_deref()
        .and_then(|h| EmailAddress::parse(h).ok())
        .map(|e| e.as_str().to_string())
        .unwrap_or_default();
    let phone_hint = req
        .login_hint
        .as_deref()
        .and_then(|h| PhoneNumber::parse(h).ok())
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let sealed = req.seal(st);
    let page = pages::LoginPage {
        app: &client.settings.name,
        req: &sealed,
        csrf: &csrf,
        email: &hint,
        phone: &phone_hint,
        email_enabled,
        sms_enabled,
    };
    let mut resp = pages::login(lang, &page, None);
    if fresh {
        session::set_cookie(st, &mut resp, session::CSRF, &cookie, 86_400);
    }
    authz::page_csp_for(&mut resp, &req.redirect_uri);
    Ok(resp)
}

/// How long a hosted login page (its sealed request) can be used.
const PAGE_LIFETIME_SECS: i64 = 3600;

/// Which of the page's forms to show: the application's connections that exist, narrowed by
/// the request's `connection` parameter.
fn enabled_connections(
    st: &AppState,
    client: &tessera_core::client::Client,
    req: &AuthRequest,
) -> (bool, bool) {
    let wanted = |name: &str| req.connection.as_deref().is_none_or(|c| c == name);
    (
        client.has_connection("email") && wanted("email"),
        client.has_connection("sms") && st.sms.is_some() && wanted("sms"),
    )
}

/// A hosted-page form: the sealed request, checked again, and the CSRF token.
struct PageForm {
    params: Params,
    req: AuthRequest,
    client: tessera_core::client::Client,
    lang: Lang,
    csrf: String,
}

async fn read_form(
    st: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PageForm, AuthError> {
    let bad = |msg: &str| AuthError::page(StatusCode::BAD_REQUEST, "Invalid request", msg);
    let params = Params::parse(body).map_err(|_| bad("The form could not be read."))?;
    let csrf = params.str("csrf").ok().flatten().unwrap_or_default();
    if !session::csrf_ok(st, headers, csrf) {
        return Err(AuthError::page(
            StatusCode::FORBIDDEN,
            "Session expired",
            "This page has expired or was not opened by this browser. Go back to the application and sign in again.",
        ));
    }
    let sealed = params.str("req").ok().flatten().unwrap_or_default();
    let Some(req) = AuthRequest::unseal(st, sealed) else {
        return Err(bad("The sign-in request is missing or damaged."));
    };
    if st.now() - req.issued_at > PAGE_LIFETIME_SECS {
        return Err(AuthError::page(
            StatusCode::FORBIDDEN,
            "Session expired",
            "This sign-in page is more than an hour old. Go back to the application and sign in again.",
        ));
    }
    let Some(client) = st.store.get_client(&req.client_id).await? else {
        return Err(bad("Unknown client."));
    };
    // The application may have changed since the page was shown.
    if !client.allows_callback(&req.redirect_uri) {
        return Err(AuthError::page(
            StatusCode::BAD_REQUEST,
            "Callback URL mismatch",
            authz::CALLBACK_MISMATCH,
        ));
    }
    let lang = Lang::pick(req.ui_locales.as_deref(), meta.language.as_deref());
    Ok(PageForm {
        csrf: csrf.to_string(),
        params,
        req,
        client,
        lang,
    })
}

/// The `/authorize` URL that restarts this request (the "use another address" link).
fn restart_url(req: &AuthRequest) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in req.link_params() {
        ser.append_pair(k, &v);
    }
    ser.append_pair("prompt", "login");
    format!("/authorize?{}", ser.finish())
}

async fn connection_named(st: &AppState, name: &str) -> Result<Connection, AuthError> {
    st.store.get_connection(name).await?.ok_or_else(|| {
        AuthError::Api(ApiError::internal(format!(
            "the {name} connection is missing"
        )))
    })
}

/// `POST /login/start`: sends a code or a link, with the limits of `/passwordless/start`.
pub async fn login_start(
    State(st): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Result<Body, ApiError>,
) -> Response {
    let fallback = Lang::pick(None, meta.language.as_deref());
    let body = match body {
        Ok(Body(b)) => b,
        Err(e) => return AuthError::Api(e).into_response(fallback),
    };
    match login_start_inner(&st, &meta, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(fallback),
    }
}

async fn login_start_inner(
    st: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, AuthError> {
    let f = read_form(st, meta, headers, body).await?;
    let sealed = f.req.seal(st);
    let raw_email = f.params.str("email").ok().flatten().unwrap_or_default();
    let raw_phone = f.params.str("phone").ok().flatten().unwrap_or_default();
    let (email_enabled, sms_enabled) = enabled_connections(st, &f.client, &f.req);
    let again = |msg: &str| {
        let page = pages::LoginPage {
            app: &f.client.settings.name,
            req: &sealed,
            csrf: &f.csrf,
            email: raw_email,
            phone: raw_phone,
            email_enabled,
            sms_enabled,
        };
        let mut resp = pages::login(f.lang, &page, Some(msg));
        authz::page_csp_for(&mut resp, &f.req.redirect_uri);
        resp
    };
    let by_sms = f.params.str("send").ok().flatten() == Some("sms");
    let (email, phone);
    let to = if by_sms {
        if !sms_enabled {
            return Ok(again("Sign-in by text message is not available here."));
        }
        // People type numbers with spaces, dashes, dots and brackets: keep the digits and '+'.
        let typed: String = raw_phone
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}'))
            .collect();
        phone = match PhoneNumber::parse(&typed) {
            Ok(p) => p,
            Err(_) => {
                return Ok(again(
                    "Enter your mobile number in international format, like +14155552671.",
                ));
            }
        };
        if !crate::routes::passwordless::country_allowed(st, &phone) {
            return Ok(again(
                "Sign-in by text message is not available in this country.",
            ));
        }
        Recipient::Phone(&phone)
    } else {
        if !email_enabled {
            return Ok(again("Sign-in by email is not available here."));
        }
        let Ok(e) = EmailAddress::parse(raw_email) else {
            return Ok(again("Enter a valid email address."));
        };
        email = e;
        Recipient::Email(&email)
    };
    let send = match f.params.str("send").ok().flatten() {
        Some("link") if !by_sms => "link",
        _ => "code",
    };
    let conn_name = if by_sms { "sms" } else { "email" };
    let rl = &st.rate_limits;
    let ip = meta.ip_key();
    for (key, limit, window) in [
        (
            format!("start:ip:{ip}"),
            rl.start_per_ip,
            rl.start_per_ip_window_secs,
        ),
        (
            format!("start:client:{}", f.client.client_id),
            rl.start_per_client,
            rl.start_per_client_window_secs,
        ),
        (
            format!("start:id:{conn_name}:{}", to.as_str()),
            rl.start_per_identifier,
            rl.start_per_identifier_window_secs,
        ),
    ] {
        if let Some(s) = limits::hit(st, &key, limit, window).await?
            && s.exceeded()
        {
            return Ok(again(
                "Too many attempts. Wait a few minutes, then try again.",
            ));
        }
    }
    if let Recipient::Phone(p) = to {
        match crate::routes::passwordless::sms_limits(st, meta, &f.client, p).await {
            Ok(()) => {}
            Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
                return Ok(again(
                    "Too many text messages. Wait a while, then try again.",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let connection = connection_named(st, conn_name).await?;
    let id = st.ordered_id();
    let auth_params: Value = Value::Object(
        f.req
            .link_params()
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect(),
    );
    issue_code(
        st,
        meta,
        &f.client,
        &connection,
        to,
        &id,
        send,
        &auth_params,
        None,
    )
    .await?;
    let restart = restart_url(&f.req);
    let mut resp = if send == "link" {
        pages::check_email(f.lang, to.as_str(), &restart)
    } else {
        pages::code(
            f.lang,
            &f.client.settings.name,
            &sealed,
            &f.csrf,
            (conn_name, to.as_str()),
            &restart,
            None,
        )
    };
    authz::page_csp_for(&mut resp, &f.req.redirect_uri);
    if send == "link" {
        // This browser asked for the link: opening it here needs no confirmation.
        session::set_cookie(
            st,
            &mut resp,
            session::LINK_DEVICE,
            &session::link_device_tag(st, &id),
            connection.settings.code_lifetime_secs,
        );
    }
    Ok(resp)
}

/// `POST /login/verify`: checks the code, signs in, and answers the application.
pub async fn login_verify(
    State(st): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Result<Body, ApiError>,
) -> Response {
    let fallback = Lang::pick(None, meta.language.as_deref());
    let body = match body {
        Ok(Body(b)) => b,
        Err(e) => return AuthError::Api(e).into_response(fallback),
    };
    match login_verify_inner(&st, &meta, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(fallback),
    }
}

async fn login_verify_inner(
    st: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, AuthError> {
    let f = read_form(st, meta, headers, body).await?;
    let conn_name = match f.params.str("connection").ok().flatten() {
        Some("sms") => "sms",
        _ => "email",
    };
    let field = if conn_name == "sms" { "phone" } else { "email" };
    let email = f.params.str(field).ok().flatten().unwrap_or_default();
    let code = f
        .params
        .str("code")
        .ok()
        .flatten()
        .unwrap_or_default()
        .trim();
    if !f.client.has_connection(conn_name) {
        return Err(AuthError::page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "This connection is not enabled for the application.",
        ));
    }
    let connection = connection_named(st, conn_name).await?;
    let strategy = connection.strategy;
    let restart = restart_url(&f.req);
    let sealed = f.req.seal(st);
    let user = otpcheck::check_and_sign_in(
        st,
        meta,
        &f.client,
        &connection,
        email,
        code,
        Accept::CodesOnly,
        None,
        "hosted login page",
    )
    .await?;
    let user = match user {
        Ok(u) => u,
        Err(failure) => {
            let mut resp = pages::code(
                f.lang,
                &f.client.settings.name,
                &sealed,
                &f.csrf,
                (conn_name, email),
                &restart,
                Some(failure.description(strategy)),
            );
            authz::page_csp_for(&mut resp, &f.req.redirect_uri);
            return Ok(resp);
        }
    };
    let mut resp = authz::complete(st, &f.client, &f.req, &user, true).await?;
    session::start(st, meta, &user, &mut resp).await?;
    Ok(resp)
}

/// `GET /v2/logout?client_id&returnTo` (Auth0) and `GET /oidc/logout` (OpenID Connect
/// RP-initiated logout: `post_logout_redirect_uri`, `id_token_hint`, `state`).
pub async fn logout(
    State(st): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let lang = Lang::pick(None, meta.language.as_deref());
    match logout_inner(&st, &meta, &headers, q.as_deref(), lang).await {
        Ok(r) => r,
        Err(e) => e.into_response(lang),
    }
}

async fn logout_inner(
    st: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    q: Option<&str>,
    lang: Lang,
) -> Result<Response, AuthError> {
    let p = query_params(q)?;
    let get = |k: &str| p.str(k).ok().flatten().filter(|s| !s.is_empty());
    let return_to = get("returnTo").or_else(|| get("post_logout_redirect_uri"));
    let client_id = get("client_id").map(str::to_string);
    let location = match return_to {
        None => None,
        Some(url) => {
            let Some(cid) = client_id else {
                return Err(AuthError::page(
                    StatusCode::BAD_REQUEST,
                    "Invalid request",
                    "client_id is required with returnTo (or post_logout_redirect_uri)",
                ));
            };
            let client = st.store.get_client(&cid).await?;
            match client {
                Some(c) if c.allows_logout_url(url) => {
                    let mut u = url.to_string();
                    if let Some(state) = get("state")
                        && get("post_logout_redirect_uri").is_some()
                    {
                        let sep = if u.contains('?') { '&' } else { '?' };
                        let enc: String =
                            form_urlencoded::byte_serialize(state.as_bytes()).collect();
                        u = format!("{u}{sep}state={enc}");
                    }
                    Some(u)
                }
                _ => {
                    return Err(AuthError::page(
                        StatusCode::BAD_REQUEST,
                        "Logout URL mismatch",
                        format!(
                            "The returnTo URL {} is not in the application's allowed logout URLs.",
                            url.chars().take(200).collect::<String>()
                        ),
                    ));
                }
            }
        }
    };
    let mut resp = match location {
        Some(l) => authz::redirect_to(&l),
        None => pages::logged_out(lang),
    };
    session::end(st, headers, &mut resp).await?;
    st.event("slo", meta, |e| {
        e.description = "Logout".into();
    })
    .await;
    Ok(resp.into_response())
}
