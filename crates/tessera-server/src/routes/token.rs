//! `POST /oauth/token`: the passwordless OTP grant and the refresh-token grant.
//!
//! Steps: parse → authenticate the client → check the grant is enabled → run the grant →
//! issue tokens. The error bodies are Auth0's, word for word.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use tessera_core::client::{Client, GRANT_PASSWORDLESS_OTP, GRANT_REFRESH_TOKEN};
use tessera_core::connection::Strategy;
use tessera_core::crypto::sha256;
use tessera_core::email::EmailAddress;
use tessera_core::otp::{self, PendingCode, Verdict};
use tessera_core::rand::hex_id;
use tessera_core::scope::Scope;
use tessera_core::user::User;
use tessera_store::{RefreshUse, SignIn};

use crate::clientauth::{self, Endpoint};
use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::limits;
use crate::params::Params;
use crate::routes::{no_store_json, parse_body};
use crate::state::{AppState, RequestMeta};
use crate::tokens::{self, Grant, Refresh};

pub async fn token(
    State(st): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
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
    let client = clientauth::authenticate(&st, &headers, &p, Endpoint::Token).await?;
    let known = [GRANT_PASSWORDLESS_OTP, GRANT_REFRESH_TOKEN];
    if !known.contains(&grant_type.as_str()) {
        return Err(ApiError::bad_request(
            "unsupported_grant_type",
            format!("Unsupported grant type: {grant_type}"),
        ));
    }
    if !client.allows_grant(&grant_type) {
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
    let body = match grant_type.as_str() {
        GRANT_PASSWORDLESS_OTP => otp_grant(&st, &meta, &client, &p).await?,
        _ => refresh_grant(&st, &meta, &client, &p).await?,
    };
    Ok(no_store_json(body))
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

async fn otp_grant(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    p: &Params,
) -> Result<serde_json::Value, ApiError> {
    let username = req_str(p, "username")?;
    let code = req_str(p, "otp")?;
    let realm = req_str(p, "realm")?;
    let scope = Scope::parse(&opt_str(p, "scope")?.unwrap_or_else(|| "openid".into()));
    let api = audience(st, p)?;
    let Some(connection) = st.store.get_connection(&realm).await? else {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the connection was not found",
        ));
    };
    if !client.has_connection(&connection.name) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the connection was disabled",
        ));
    }
    let wrong = match connection.strategy {
        Strategy::Email => "Wrong email or verification code.",
        Strategy::Sms => "Wrong phone number or verification code.",
    };
    let conn_name = connection.name.as_str();
    let rl = &st.rate_limits;
    // An identifier that cannot be valid has no code: same answer as a wrong code.
    let Ok(email) = EmailAddress::parse(&username) else {
        fail_event(st, meta, client, conn_name, "invalid identifier").await;
        return Err(invalid_grant(wrong));
    };
    let identifier = email.as_str();
    // Failures for one identity are counted across all its codes; past the limit, no code is
    // even looked at until the window ends.
    let fail_key = format!("fail:{conn_name}:{identifier}");
    if rl.failed_attempts_per_identifier > 0 {
        let w = st
            .store
            .peek_rate_limit(&fail_key, rl.failed_attempts_window_secs, st.now())
            .await?;
        if w.count >= rl.failed_attempts_per_identifier {
            st.event("limit_wc", meta, |e| {
                e.client_id = Some(client.client_id.clone());
                e.connection = Some(conn_name.to_string());
                e.description = "Too many failed codes for one identity: attempts blocked".into();
            })
            .await;
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "We have detected suspicious login behavior and further attempts will be blocked. Please contact the administrator.",
            ));
        }
    }
    let fail = |reason: &'static str, desc: &'static str| {
        let fail_key = fail_key.clone();
        async move {
            fail_event(st, meta, client, conn_name, reason).await;
            if rl.failed_attempts_per_identifier > 0
                && let Err(e) = st
                    .store
                    .hit_rate_limit(&fail_key, rl.failed_attempts_window_secs, st.now())
                    .await
            {
                return ApiError::from(e);
            }
            invalid_grant(desc)
        }
    };
    let presented = st.secret.hash_code(&connection.name, identifier, &code);
    let Some(ch) = st.store.count_attempt(&connection.name, identifier).await? else {
        return Err(fail("no code pending", wrong).await);
    };
    let pending = PendingCode {
        code_hash: ch.code_hash.clone(),
        client_id: ch.client_id.clone(),
        expires_at: ch.expires_at,
        attempts: ch.attempts,
        max_attempts: ch.max_attempts,
    };
    match otp::judge(&pending, &client.client_id, &presented, st.now()) {
        Verdict::TooManyAttempts => {
            return Err(fail(
                "too many attempts",
                "You've reached the maximum number of attempts. Please try to login again.",
            )
            .await);
        }
        Verdict::Expired => {
            return Err(fail(
                "code expired",
                "The verification code has expired. Please try to login again.",
            )
            .await);
        }
        Verdict::Wrong => return Err(fail("wrong code", wrong).await),
        Verdict::Accepted if ch.send != "code" => {
            return Err(fail("link code used as OTP", wrong).await);
        }
        Verdict::Accepted => {}
    }
    if !st.store.consume_challenge(&ch.id).await? {
        return Err(fail("code already used", wrong).await);
    }
    let candidate = User::new_email_user(
        &hex_id(st.rng.as_ref()),
        &connection.name,
        identifier,
        st.now(),
    );
    let user = match st
        .store
        .sign_in(
            &candidate,
            identifier,
            !connection.settings.disable_signup,
            st.now(),
        )
        .await?
    {
        SignIn::Ok { user, .. } => user,
        SignIn::Blocked => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "user is blocked",
            ));
        }
        SignIn::SignupDisabled => return Err(fail("sign-up disabled", wrong).await),
    };
    st.event("s", meta, |e| {
        e.client_id = Some(client.client_id.clone());
        e.connection = Some(connection.name.clone());
        e.user_id = Some(user.user_id.clone());
        e.description = "Successful login (passwordless OTP)".into();
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
            refresh: Refresh::IfAllowed,
        },
    )
    .await
}

async fn fail_event(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    connection: &str,
    reason: &str,
) {
    st.event("f", meta, |e| {
        e.client_id = Some(client.client_id.clone());
        e.connection = Some(connection.to_string());
        e.description = reason.into();
    })
    .await;
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
            let revoked = st.store.revoke_refresh_family(&r.family_id, now).await?;
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
        },
    )
    .await
}
