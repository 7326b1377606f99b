//! Client authentication for `/passwordless/start` and `/oauth/token`.
//!
//! Confidential applications (regular web apps) must authenticate, with `client_secret_post`
//! or `client_secret_basic`; public ones (SPAs, native apps) send only their `client_id`.
//! The secret is compared as a SHA-256 digest, in constant time.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use tessera_core::client::Client;
use tessera_core::crypto::{ct_eq, sha256};

use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;

/// How the endpoint words a missing `client_id`.
#[derive(Clone, Copy)]
pub enum Endpoint {
    PasswordlessStart,
    Token,
}

impl Endpoint {
    fn missing_client_id(self) -> ApiError {
        match self {
            Endpoint::PasswordlessStart => {
                ApiError::bad_request("bad.client_id", "Missing required property: client_id")
            }
            Endpoint::Token => ApiError::missing_param("client_id"),
        }
    }
}

pub async fn authenticate(
    st: &AppState,
    headers: &HeaderMap,
    p: &Params,
    endpoint: Endpoint,
) -> Result<Client, ApiError> {
    let (client_id, secret) = credentials(headers, p, endpoint)?;
    let client = st.store.get_client(&client_id).await?;
    judge(client, secret.as_deref(), headers, endpoint)
}

/// [`authenticate`] for the hot paths, from the in-memory copy of the application (see
/// `cache.rs`): returns the version the copy is tagged with, which the caller must check.
/// A refusal is never taken from the copy alone: it is confirmed on a fresh read (then no
/// version is returned, and the caller reads the rest fresh too).
pub async fn authenticate_cached(
    st: &AppState,
    headers: &HeaderMap,
    p: &Params,
    endpoint: Endpoint,
) -> Result<(Client, Option<i64>), ApiError> {
    let (client_id, secret) = credentials(headers, p, endpoint)?;
    if let Some((cached, version)) = st.config.client(st.store.as_ref(), &client_id).await?
        && let Ok(c) = judge(
            Some((*cached).clone()),
            secret.as_deref(),
            headers,
            endpoint,
        )
    {
        return Ok((c, Some(version)));
    }
    let client = st.store.get_client(&client_id).await?;
    judge(client, secret.as_deref(), headers, endpoint).map(|c| (c, None))
}

/// The client id and secret, from HTTP Basic or the body (never both).
fn credentials(
    headers: &HeaderMap,
    p: &Params,
    endpoint: Endpoint,
) -> Result<(String, Option<String>), ApiError> {
    let basic = basic_credentials(headers)?;
    let body_id = p.str("client_id").map_err(|_| invalid("client_id"))?;
    let body_secret = p
        .str("client_secret")
        .map_err(|_| invalid("client_secret"))?;
    let (client_id, secret) = match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "Use only one client authentication method",
            ));
        }
        (Some((bid, _)), Some(id), None) if id != bid => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "client_id does not match the credentials",
            ));
        }
        (Some((bid, bsecret)), _, None) => (bid, Some(bsecret)),
        (None, Some(id), s) => (id.to_string(), s.map(str::to_string)),
        (None, None, _) => return Err(endpoint.missing_client_id()),
    };
    if p.get("client_assertion").is_some() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "private_key_jwt client authentication is not supported; use client_secret_post or client_secret_basic",
        ));
    }
    Ok((client_id, secret))
}

/// Whether `client` accepts the presented secret (or needs none) at this endpoint.
fn judge(
    client: Option<Client>,
    secret: Option<&str>,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Result<Client, ApiError> {
    let presented = secret.map(sha256);
    match (client, presented) {
        (None, _) => Err(ApiError::unauthorized_client_credentials()),
        (Some(c), _) if !c.is_confidential() => Ok(c),
        // A regular web app's own pages (Lock, auth0-js) may ask for codes without the secret
        // when the operator allows it, from the app's web origins only.
        (Some(c), None)
            if matches!(endpoint, Endpoint::PasswordlessStart)
                && c.settings.allow_browser_start
                && headers
                    .get(header::ORIGIN)
                    .and_then(|o| o.to_str().ok())
                    .is_some_and(|o| c.settings.web_origins.iter().any(|w| w == o)) =>
        {
            Ok(c)
        }
        (Some(_), None) => Err(ApiError::client_auth_required()),
        (Some(c), Some(h)) => match &c.secret_hash {
            Some(stored) if ct_eq(stored, &h) => Ok(c),
            _ => Err(ApiError::unauthorized_client_credentials()),
        },
    }
}

fn invalid(name: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_request",
        format!("Invalid parameter: {name} must be a string"),
    )
}

/// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || ApiError::unauthorized_client_credentials();
    let v = v.to_str().map_err(|_| bad())?;
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    let dec = |s: &str| -> String {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (id, secret) = (dec(id), dec(secret));
    // As in request parameters (params.rs): no client id or secret holds a NUL character.
    if id.contains('\0') || secret.contains('\0') {
        return Err(bad());
    }
    Ok(Some((id, secret)))
}
