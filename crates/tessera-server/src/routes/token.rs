//! `POST /oauth/token`: the passwordless OTP grant, the authorization-code grant and the
//! refresh-token grant.
//!
//! Steps: parse → authenticate the client → check the grant is enabled → run the grant →
//! issue tokens. The error bodies are Auth0's, word for word.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use tessera_core::client::{
    Client, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_PASSWORDLESS_OTP,
    GRANT_REFRESH_TOKEN,
};
use tessera_core::crypto::sha256;
use tessera_core::scope::Scope;
use tessera_store::{AuthCodeUse, RefreshUse};

use crate::clientauth::{self, Endpoint};
use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::limits;
use crate::otpcheck::{self, Accept};
use crate::params::Params;
use crate::routes::{Body, no_store_json, parse_body};
use crate::state::{AppState, RequestMeta};
use crate::tokens::{self, Grant, Refresh};

pub async fn token(
    State(st): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let rl = &st.rate_limits;
    let ip = meta.ip_key();
    limits::enforce(
        &st,
        &format!("token:ip:{ip}"),
        rl.token_per_ip,
        rl.token_per_ip_window_secs,
    )
    .await?;
    let p = parse_body(&body, "invalid_request")?;
    let grant_type = req_str(&p, "grant_type")?;
    // The OTP grant, a sign-in hot path, starts from the in-memory application and connection
    // (cache.rs); when they turn out to be out of date, it runs again on fresh reads.
    if grant_type == GRANT_PASSWORDLESS_OTP {
        let (client, version) =
            clientauth::authenticate_cached(&st, &headers, &p, Endpoint::Token).await?;
        if version.is_some() {
            match grant(&st, &meta, &client, &p, &grant_type, version).await {
                Err(e) if e.is_stale_config() => {}
                other => return other.map(no_store_json),
            }
        } else {
            return grant(&st, &meta, &client, &p, &grant_type, None)
                .await
                .map(no_store_json);
        }
    }
    let client = clientauth::authenticate(&st, &headers, &p, Endpoint::Token).await?;
    grant(&st, &meta, &client, &p, &grant_type, None)
        .await
        .map(no_store_json)
}

/// Runs the grant for an authenticated client. `version`: see [`otp_grant`].
async fn grant(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    p: &Params,
    grant_type: &str,
    version: Option<i64>,
) -> Result<serde_json::Value, ApiError> {
    let known = [
        GRANT_PASSWORDLESS_OTP,
        GRANT_REFRESH_TOKEN,
        GRANT_AUTHORIZATION_CODE,
        GRANT_CLIENT_CREDENTIALS,
    ];
    if !known.contains(&grant_type) {
        return Err(ApiError::bad_request(
            "unsupported_grant_type",
            format!("Unsupported grant type: {grant_type}"),
        ));
    }
    if !client.allows_grant(grant_type) {
        // A refusal is never taken from the in-memory copy alone: on fresh reads again.
        if version.is_some() {
            return Err(ApiError::stale_config());
        }
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            format!("Grant type '{grant_type}' not allowed for the client."),
        )
        .with(
            "error_uri",
            json!("https://auth0.com/docs/clients/client-grant-types"),
        ));
    }
    match grant_type {
        GRANT_PASSWORDLESS_OTP => otp_grant(st, meta, client, p, version).await,
        GRANT_AUTHORIZATION_CODE => code_grant(st, meta, client, p).await,
        GRANT_CLIENT_CREDENTIALS => {
            crate::routes::management::client_credentials(st, meta, client, p).await
        }
        _ => refresh_grant(st, meta, client, p).await,
    }
}

fn req_str(p: &Params, name: &str) -> Result<String, ApiError> {
    match p.str(name) {
        Ok(Some(v)) if !v.is_empty() => Ok(v.to_string()),
        Ok(_) => Err(ApiError::missing_param(name)),
        Err(_) => Err(ApiError::bad_request(
            "invalid_request",
            format!("Invalid parameter: {name} must be a string"),
        )),
    }
}

fn opt_str(p: &Params, name: &str) -> Result<Option<String>, ApiError> {
    match p.str(name) {
        Ok(v) => Ok(v.filter(|s| !s.is_empty()).map(str::to_string)),
        Err(_) => Err(ApiError::bad_request(
            "invalid_request",
            format!("Invalid parameter: {name} must be a string"),
        )),
    }
}

fn invalid_grant(description: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "invalid_grant", description)
}

fn audience<'a>(st: &'a AppState, p: &Params) -> Result<Option<&'a ApiConfig>, ApiError> {
    let aud = match opt_str(p, "audience")? {
        Some(a) => Some(a),
        None => opt_str(p, "resource")?,
    };
    match aud {
        None => Ok(None),
        Some(a) => st.api(&a).map(Some).ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "access_denied",
                format!("Service not found: {a}"),
            )
        }),
    }
}

/// The passwordless OTP grant. With `version`, the client and the connection are in-memory
/// copies of that version, and the attempt's statement checks it (`otpcheck::check`).
async fn otp_grant(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    p: &Params,
    version: Option<i64>,
) -> Result<serde_json::Value, ApiError> {
    let username = req_str(p, "username")?;
    let code = req_str(p, "otp")?;
    let realm = req_str(p, "realm")?;
    let scope = Scope::parse(&opt_str(p, "scope")?.unwrap_or_else(|| "openid".into()));
    let api = audience(st, p)?;
    let connection = match version {
        Some(v) => match st.config.connection(st.store.as_ref(), &realm).await? {
            Some((c, cv)) if cv == v => Some((*c).clone()),
            Some(_) => return Err(ApiError::stale_config()),
            None => None,
        },
        None => st.store.get_connection(&realm).await?,
    };
    let Some(connection) = connection else {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the connection was not found",
        ));
    };
    if !client.has_connection(&connection.name) {
        if version.is_some() {
            return Err(ApiError::stale_config());
        }
        return Err(ApiError::bad_request(
            "invalid_request",
            "the connection was disabled",
        ));
    }
    let strategy = connection.strategy;
    let user = otpcheck::check_and_sign_in(
        st,
        meta,
        client,
        &connection,
        &username,
        &code,
        Accept::CodesOnly,
        version,
        "passwordless OTP",
    )
    .await?
    .map_err(|f| f.token_error(strategy))?;
    tokens::issue(
        st,
        Grant {
            user: &user,
            client,
            scope,
            audience: api,
            nonce: None,
            refresh: Refresh::IfAllowed,
            grant_id: None,
            at_hash: false,
            legacy_user_id: false,
        },
    )
    .await
}

/// The authorization-code grant: the code is single-use, short-lived, and bound to the
/// client, the redirect URI and the PKCE challenge. A replayed code revokes what was issued
/// from it (RFC 6749 §4.1.2, RFC 9700 §4.5).
async fn code_grant(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    p: &Params,
) -> Result<serde_json::Value, ApiError> {
    const INVALID: &str = "Invalid authorization code";
    let code = req_str(p, "code")?;
    let redirect_uri = opt_str(p, "redirect_uri")?;
    let verifier = opt_str(p, "code_verifier")?;
    let now = st.now();
    let record = match st.store.use_auth_code(&sha256(&code), now).await? {
        AuthCodeUse::Fresh(c) => c,
        AuthCodeUse::Reused(c) => {
            let revoked = st.store.revoke_grant(&c.grant_id, now).await?;
            tracing::warn!(client_id = %c.client_id, revoked, "authorization code replayed; its tokens were revoked");
            st.event("fecte", meta, |e| {
                e.client_id = Some(c.client_id.clone());
                e.user_id = Some(c.user_id.clone());
                e.description =
                    "Authorization code replayed: the tokens issued from it were revoked".into();
            })
            .await;
            return Err(invalid_grant(INVALID));
        }
        AuthCodeUse::Unknown => return Err(invalid_grant(INVALID)),
    };
    if record.client_id != client.client_id {
        // Someone else's code: it is burnt now, and what it gave is revoked.
        st.store.revoke_grant(&record.grant_id, now).await?;
        return Err(invalid_grant(INVALID));
    }
    if redirect_uri.as_deref() != Some(record.redirect_uri.as_str()) {
        return Err(invalid_grant(
            "The redirect_uri does not match the one the authorization code was issued to.",
        ));
    }
    match (&record.code_challenge, &verifier) {
        (Some(challenge), Some(v)) => {
            let method = record.code_challenge_method.as_deref().unwrap_or("plain");
            if !crate::authz::pkce_matches(challenge, method, v) {
                return Err(invalid_grant("Failed to verify code verifier"));
            }
        }
        (Some(_), None) => return Err(invalid_grant("Failed to verify code verifier")),
        (None, Some(_)) => return Err(invalid_grant("Failed to verify code verifier")),
        (None, None) if !client.is_confidential() => {
            // Codes for public clients always carry a challenge (checked at /authorize).
            return Err(invalid_grant(INVALID));
        }
        (None, None) => {}
    }
    let user = match st.store.get_user(&record.user_id).await? {
        Some(u) if !u.blocked => u,
        _ => return Err(invalid_grant(INVALID)),
    };
    let api = match &record.audience {
        Some(a) => Some(st.api(a).ok_or_else(|| invalid_grant(INVALID))?),
        None => None,
    };
    st.event("seacft", meta, |e| {
        e.client_id = Some(client.client_id.clone());
        e.user_id = Some(user.user_id.clone());
        e.description = "Authorization code exchanged for tokens".into();
    })
    .await;
    tokens::issue(
        st,
        Grant {
            user: &user,
            client,
            scope: Scope::parse(&record.scope),
            audience: api,
            nonce: record.nonce.clone(),
            refresh: if record.allow_refresh {
                Refresh::IfAllowed
            } else {
                Refresh::No
            },
            grant_id: Some(record.grant_id.clone()),
            at_hash: false,
            legacy_user_id: false,
        },
    )
    .await
}

async fn refresh_grant(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    p: &Params,
) -> Result<serde_json::Value, ApiError> {
    const INVALID: &str = "Unknown or invalid refresh token.";
    let presented = req_str(p, "refresh_token")?;
    let now = st.now();
    let record = match st
        .store
        .use_refresh_token(&sha256(&presented), &client.client_id, now)
        .await?
    {
        RefreshUse::Fresh(r) => r,
        RefreshUse::Reused(r) => {
            // The family's refresh tokens and the opaque access tokens issued with them.
            let revoked = st.store.revoke_grant(&r.family_id, now).await?;
            tracing::warn!(client_id = %r.client_id, revoked, "refresh token reuse detected; family revoked");
            st.event("ferrt", meta, |e| {
                e.client_id = Some(r.client_id.clone());
                e.user_id = Some(r.user_id.clone());
                e.description =
                    "Refresh token reused: every token of its family was revoked".into();
            })
            .await;
            return Err(invalid_grant(INVALID));
        }
        RefreshUse::Unknown => return Err(invalid_grant(INVALID)),
    };
    if record.client_id != client.client_id || record.expires_at <= now {
        return Err(invalid_grant(INVALID));
    }
    let granted = Scope::parse(&record.scope);
    let scope = match opt_str(p, "scope")? {
        Some(s) => {
            let asked = Scope::parse(&s);
            if !asked.is_subset_of(&granted) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "invalid_scope",
                    "The requested scope exceeds the scope originally granted.",
                ));
            }
            asked
        }
        None => granted,
    };
    let api = match &record.audience {
        Some(a) => Some(st.api(a).ok_or_else(|| invalid_grant(INVALID))?),
        None => None,
    };
    let user = match st.store.get_user(&record.user_id).await? {
        Some(u) if !u.blocked => u,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "user is blocked",
            ));
        }
        None => return Err(invalid_grant(INVALID)),
    };
    st.event("sertft", meta, |e| {
        e.client_id = Some(client.client_id.clone());
        e.user_id = Some(user.user_id.clone());
        e.description = "Refresh token exchanged (rotated)".into();
    })
    .await;
    tokens::issue(
        st,
        Grant {
            user: &user,
            client,
            scope,
            audience: api,
            nonce: None,
            refresh: Refresh::Rotate {
                family_id: record.family_id,
                expires_at: record.expires_at,
            },
            grant_id: None,
            at_hash: false,
            legacy_user_id: false,
        },
    )
    .await
}
