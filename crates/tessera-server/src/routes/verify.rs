//! Magic links and code checks from the browser:
//! - `GET|HEAD|POST /passwordless/verify_redirect`: the link in the email (and the hosted-page
//!   path of auth0-js);
//! - `POST /passwordless/verify`: checks a code without using it up.
//!
//! Link scanners must not burn links. `HEAD` never consumes. In the default `auto` mode a
//! `GET` from a browser that did not ask for the link (no same-device cookie) gets a one-click
//! confirmation page whose button POSTs the same parameters; `always` confirms every time;
//! `never` signs in on `GET`, as Auth0 does. A check that only shows the confirmation page gives
//! back the attempt it counted when the code was right, so a scanner costs nothing, while a
//! wrong code always counts.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tessera_core::connection::{Connection, LinkConfirmation};

use crate::authz::{self, AuthError};
use crate::error::ApiError;
use crate::limits;
use crate::otpcheck::{self, Accept, Mode};
use crate::pages::{self, Lang};
use crate::params::Params;
use crate::routes::{Body, no_store_json, parse_body};
use crate::session;
use crate::state::{AppState, RequestMeta};

pub async fn verify_redirect(
    State(st): State<AppState>,
    meta: RequestMeta,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Result<Body, ApiError>,
) -> Response {
    let lang = Lang::pick(None, meta.language.as_deref());
    let body = match body {
        Ok(Body(b)) => b,
        Err(e) => return AuthError::Api(e).into_response(lang),
    };
    let params = if method == Method::POST {
        Params::parse(&body)
    } else {
        Params::from_query(q.as_deref())
    };
    let Ok(p) = params else {
        return pages::error_page(
            lang,
            StatusCode::BAD_REQUEST,
            "Invalid link",
            "This link is malformed.",
        );
    };
    match verify_redirect_inner(&st, &meta, &method, &headers, &p, lang).await {
        Ok(r) => r,
        Err(e) => e.into_response(lang),
    }
}

async fn verify_redirect_inner(
    st: &AppState,
    meta: &RequestMeta,
    method: &Method,
    headers: &HeaderMap,
    p: &Params,
    lang: Lang,
) -> Result<Response, AuthError> {
    // Per-IP limit shared with the other browser endpoints.
    // A person sees a page, not JSON.
    match limits::browser(st, meta).await {
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
            return Err(AuthError::page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "Too many requests from this network. Wait a few minutes, then try again.",
            ));
        }
        Err(e) => return Err(e.into()),
        Ok(()) => {}
    }
    // The confirmation page's button: only from the page Tessera showed in this browser (its
    // CSRF token, bound to a cookie a cross-site POST does not carry). This stops a site from
    // signing a visitor into the site owner's account with the owner's own link.
    if *method == Method::POST
        && !session::csrf_ok(
            st,
            headers,
            p.str("csrf").ok().flatten().unwrap_or_default(),
        )
    {
        return Err(AuthError::page(
            StatusCode::FORBIDDEN,
            "Link expired",
            "This confirmation page has expired or was not opened in this browser. Open the link from your email again.",
        ));
    }
    let (client, req) = authz::parse(st, meta, p).await?;
    let target = req.target();
    let get = |k: &str| p.str(k).ok().flatten().filter(|s| !s.is_empty());
    let (Some(code), Some(conn_name)) = (get("verification_code"), get("connection")) else {
        return Err(AuthError::redirect(
            &target,
            "invalid_request",
            "Missing verification_code or connection",
        ));
    };
    let Some(identifier) = get("email").or_else(|| get("phone_number")) else {
        return Err(AuthError::redirect(
            &target,
            "invalid_request",
            "Missing email or phone_number",
        ));
    };
    let connection: Connection = match st.store.get_connection(conn_name).await? {
        Some(c) if client.has_connection(&c.name) => c,
        _ => {
            return Err(AuthError::redirect(
                &target,
                "invalid_request",
                "Connection does not exist or is disabled",
            ));
        }
    };
    if *method == Method::HEAD {
        // Scanners and link previews: nothing is looked at, nothing is used up.
        return Ok(pages::error_page(lang, StatusCode::OK, "Sign in", ""));
    }
    let strategy = connection.strategy;
    // A refusal goes back to the application, in its response mode.
    let refused = |f: otpcheck::Failure| {
        AuthError::redirect(&target, f.oauth_error(), f.description(strategy))
    };
    let check = |mode| {
        otpcheck::check(
            st,
            meta,
            &client,
            &connection,
            identifier,
            code,
            mode,
            Accept::CodesAndLinks,
            None,
        )
    };
    // Check first (a right code costs nothing); decide below whether to consume.
    let ch = check(Mode::Check).await?.map_err(refused)?;
    let confirm = *method == Method::GET
        && ch.send != "code"
        && match connection.settings.magic_link_confirmation {
            LinkConfirmation::Never => false,
            LinkConfirmation::Always => true,
            LinkConfirmation::Auto => !session::is_link_device(st, headers, &ch.id),
        };
    if confirm {
        let (csrf_cookie, csrf, fresh) = session::csrf_token(st, headers);
        let mut params: Vec<(String, String)> =
            p.0.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .filter(|(k, _)| k != "auth0Client" && k != "csrf")
                .collect();
        params.push(("csrf".into(), csrf));
        let when = time::OffsetDateTime::from_unix_timestamp(ch.created_at)
            .ok()
            .and_then(|t| {
                t.format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute] UTC"
                ))
                .ok()
            });
        let lang = Lang::pick(req.ui_locales.as_deref(), meta.language.as_deref());
        let mut resp = pages::confirm(
            lang,
            &client.settings.name,
            &ch.identifier,
            &pages::describe_device(ch.user_agent.as_deref()),
            ch.ip.as_deref(),
            when.as_deref(),
            &params,
        );
        authz::page_csp_for(&mut resp, &req.redirect_uri);
        if fresh {
            session::set_cookie(st, &mut resp, session::CSRF, &csrf_cookie, 86_400);
        }
        return Ok(resp);
    }
    let ch = check(Mode::Consume).await?.map_err(refused)?;
    let user = otpcheck::sign_in(st, meta, &client, &connection, &ch, "magic link")
        .await?
        .map_err(refused)?;
    // Magic-link logins never get refresh tokens (as on Auth0); typed codes may.
    let allow_refresh = ch.send == "code";
    let mut resp = authz::complete(st, &client, &req, &user, allow_refresh).await?;
    session::start(st, meta, &user, &mut resp).await?;
    session::set_cookie(st, &mut resp, session::LINK_DEVICE, "", 0);
    Ok(resp)
}

/// `POST /passwordless/verify`: `{connection, verification_code, email|phone_number,
/// client_id}`. Checks without consuming (auth0-js then navigates to `verify_redirect`).
pub async fn verify(
    State(st): State<AppState>,
    meta: RequestMeta,
    Body(body): Body,
) -> Result<Response, ApiError> {
    limits::browser(&st, &meta).await?;
    let p = parse_body(&body, "bad.request")?;
    let get = |k: &str| p.str(k).ok().flatten().filter(|s| !s.is_empty());
    let Some(conn_name) = get("connection") else {
        return Err(ApiError::bad_request(
            "bad.connection",
            "Missing required property: connection",
        ));
    };
    let Some(code) = get("verification_code") else {
        return Err(ApiError::bad_request(
            "bad.verification_code",
            "Missing required property: verification_code",
        ));
    };
    let Some(identifier) = get("email").or_else(|| get("phone_number")) else {
        return Err(ApiError::bad_request(
            "bad.email",
            "Missing required property: email",
        ));
    };
    let named = st.store.get_connection(conn_name).await?;
    let client = match get("client_id") {
        Some(id) => match st.store.get_client(id).await? {
            Some(c) => c,
            None => return Err(ApiError::unauthorized_client_credentials()),
        },
        // The old widgets send no client_id: the application is the one that asked for the
        // pending code, and it must have the legacy switch.
        None => {
            // One answer whether nothing is pending or the pending code is another kind of
            // application's: this path must not tell whether a code is pending.
            let strategy = named
                .as_ref()
                .map(|c| c.strategy)
                .unwrap_or(if conn_name == "sms" {
                    tessera_core::connection::Strategy::Sms
                } else {
                    tessera_core::connection::Strategy::Email
                });
            let wrong = || crate::routes::legacy::ro_error(otpcheck::Failure::Wrong, strategy);
            let normalised = named
                .as_ref()
                .and_then(|c| otpcheck::identifier(c, identifier))
                .unwrap_or_default();
            let pending = st.store.pending_client(conn_name, &normalised).await?;
            match pending {
                Some(id) => match st.store.get_client(&id).await? {
                    Some(c) if c.settings.legacy_passwordless => c,
                    _ => return Err(wrong()),
                },
                None => return Err(wrong()),
            }
        }
    };
    let connection = match named {
        Some(c) if client.has_connection(&c.name) => c,
        _ => {
            return Err(ApiError::bad_request(
                "bad.connection",
                "Connection does not exist or is disabled",
            ));
        }
    };
    let strategy = connection.strategy;
    otpcheck::check(
        &st,
        &meta,
        &client,
        &connection,
        identifier,
        code,
        Mode::Check,
        Accept::CodesOnly,
        None,
    )
    .await?
    // invalid_user_password is what makes Lock v2 say "Wrong email or verification code".
    .map_err(|f| crate::routes::legacy::ro_error(f, strategy))?;
    Ok(no_store_json(serde_json::json!({})).into_response())
}
