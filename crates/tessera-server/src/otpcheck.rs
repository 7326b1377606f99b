//! Checking a one-time code, shared by every endpoint that takes one: the OTP grant,
//! `/co/authenticate`, `/passwordless/verify`, `/passwordless/verify_redirect` and the hosted
//! login page. Each endpoint words the failures its own way; the rules are the same
//! everywhere:
//! - failures for one identity are counted across all its codes, and past the limit no code is
//!   even looked at (nor an attempt counted) until the block ends;
//! - an attempt is counted (committed) before the code is compared;
//! - a code is bound to the application that asked for it, and only the newest one is live;
//! - consuming is a `DELETE` with one winner. A check that does not consume gives the attempt
//!   back when the code was right.

use axum::http::StatusCode;
use tessera_core::client::Client;
use tessera_core::connection::{Connection, Strategy};
use tessera_core::email::EmailAddress;
use tessera_core::otp::{self, PendingCode, Verdict};
use tessera_core::user::User;
use tessera_store::{Attempt, Challenge, SignIn};

use crate::error::ApiError;
use crate::state::{AppState, RequestMeta};

/// Why a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Wrong code, no code pending, an unusable identifier, or sign-up closed: one answer.
    Wrong,
    Expired,
    TooManyAttempts,
    /// Too many failures for this identity in the window.
    LockedOut,
    Blocked,
}

impl Failure {
    /// Auth0's text for this failure.
    pub fn description(self, strategy: Strategy) -> &'static str {
        match self {
            Failure::Wrong => match strategy {
                Strategy::Email => "Wrong email or verification code.",
                Strategy::Sms => "Wrong phone number or verification code.",
            },
            Failure::Expired => "The verification code has expired. Please try to login again.",
            Failure::TooManyAttempts => {
                "You've reached the maximum number of attempts. Please try to login again."
            }
            Failure::LockedOut => {
                "We have detected suspicious login behavior and further attempts will be blocked. Please contact the administrator."
            }
            Failure::Blocked => "user is blocked",
        }
    }

    /// The `/oauth/token` answer.
    pub fn token_error(self, strategy: Strategy) -> ApiError {
        let d = self.description(strategy);
        match self {
            Failure::LockedOut => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", d)
            }
            Failure::Blocked => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", d),
            _ => ApiError::new(StatusCode::FORBIDDEN, "invalid_grant", d),
        }
    }

    /// The answer of the browser endpoints (`/co/authenticate`, `/passwordless/verify`).
    pub fn browser_error(self, strategy: Strategy) -> ApiError {
        let d = self.description(strategy);
        match self {
            Failure::LockedOut => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", d)
            }
            Failure::Blocked => {
                ApiError::new(StatusCode::FORBIDDEN, "blocked_user", "Blocked user")
            }
            _ => ApiError::new(StatusCode::FORBIDDEN, "access_denied", d),
        }
    }

    /// The OAuth error code for a redirect back to the application.
    pub fn oauth_error(self) -> &'static str {
        match self {
            Failure::Expired => "unauthorized",
            _ => "access_denied",
        }
    }
}

/// Whether a right code is used up, or only checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Consume,
    Check,
}

/// Which codes an endpoint takes: typed ones only, or links too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    CodesOnly,
    CodesAndLinks,
}

/// The normalised identifier for a connection, or `None` when it cannot be valid.
pub fn identifier(connection: &Connection, raw: &str) -> Option<String> {
    match connection.strategy {
        Strategy::Email => EmailAddress::parse(raw)
            .ok()
            .map(|e| e.as_str().to_string()),
        Strategy::Sms => tessera_core::phone::PhoneNumber::parse(raw.trim())
            .ok()
            .map(|p| p.as_str().to_string()),
    }
}

/// Checks `code` for `raw_identifier` on `connection`, for `client`. On success the challenge is
/// returned (consumed in [`Mode::Consume`]).
///
/// `version`: when the application and connection came from memory (see `cache.rs`), the
/// version their copies are tagged with. The statement that counts the attempt also reads the
/// current version; when it differs, the attempt is given back, nothing else is done, and the
/// answer is [`ApiError::stale_config`], for the caller to run again on fresh reads. `None`
/// when they were read from the database.
#[allow(clippy::too_many_arguments)]
pub async fn check(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    connection: &Connection,
    raw_identifier: &str,
    code: &str,
    mode: Mode,
    accept: Accept,
    version: Option<i64>,
) -> Result<Result<Challenge, Failure>, ApiError> {
    let conn_name = connection.name.as_str();
    let rl = &st.rate_limits;
    let Some(identifier) = identifier(connection, raw_identifier) else {
        fail_event(st, meta, client, conn_name, "invalid identifier").await;
        return Ok(Err(Failure::Wrong));
    };
    // Failures for the identity, and for this IP on the identity, are counted across codes;
    // reaching a limit blocks for a growing time. Blocked: no code is even looked at.
    let id_key = format!("fail:{conn_name}:{identifier}");
    let ip_key = format!("fail:{}:{conn_name}:{identifier}", meta.ip_key());
    let presented = st.secret.hash_code(conn_name, &identifier, code);
    // One statement counts the attempt unless either key is blocked, and reads the version.
    let attempt = st
        .store
        .count_attempt(conn_name, &identifier, [&id_key, &ip_key], st.now())
        .await?;
    if let Some(current) = attempt.config_version() {
        st.config.observe(current);
        if version.is_some_and(|v| v != current) {
            if let Attempt::Counted { challenge, .. } = &attempt {
                st.store.refund_attempt(&challenge.id).await?;
            }
            return Err(ApiError::stale_config());
        }
    }
    let fail = |reason: &'static str, failure: Failure| {
        let (id_key, ip_key) = (id_key.clone(), ip_key.clone());
        async move {
            fail_event(st, meta, client, conn_name, reason).await;
            let now = st.now();
            for (key, limit) in [
                (&id_key, rl.failed_attempts_per_identifier),
                (&ip_key, rl.failed_attempts_per_ip_identifier),
            ] {
                if limit <= 0 {
                    continue;
                }
                let w = st
                    .store
                    .hit_rate_limit(key, rl.failed_attempts_window_secs, now)
                    .await?;
                if w.count >= limit {
                    let until = st
                        .store
                        .add_strike(key, now, rl.lockout_base_secs, rl.lockout_max_secs)
                        .await?;
                    tracing::warn!(
                        connection = conn_name,
                        per_ip = key == &ip_key,
                        blocked_secs = until - now,
                        "repeated failed codes: attempts blocked"
                    );
                }
            }
            Ok::<_, ApiError>(Err(failure))
        }
    };
    let ch = match attempt {
        Attempt::Counted { challenge, .. } => challenge,
        Attempt::NoCode { .. } => return fail("no code pending", Failure::Wrong).await,
        Attempt::LockedOut => {
            st.event("limit_wc", meta, |e| {
                e.client_id = Some(client.client_id.clone());
                e.connection = Some(conn_name.to_string());
                e.description = "Too many failed codes for one identity: attempts blocked".into();
            })
            .await;
            return Ok(Err(Failure::LockedOut));
        }
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
            return fail("too many attempts", Failure::TooManyAttempts).await;
        }
        Verdict::Expired => return fail("code expired", Failure::Expired).await,
        Verdict::Wrong => return fail("wrong code", Failure::Wrong).await,
        Verdict::Accepted if accept == Accept::CodesOnly && ch.send != "code" => {
            return fail("link code used as OTP", Failure::Wrong).await;
        }
        Verdict::Accepted => {}
    }
    match mode {
        Mode::Check => st.store.refund_attempt(&ch.id).await?,
        Mode::Consume => {
            if !st.store.consume_challenge(&ch.id).await? {
                return fail("code already used", Failure::Wrong).await;
            }
        }
    }
    Ok(Ok(ch))
}

/// Signs the owner of a consumed challenge in, creating the user when sign-up is open.
pub async fn sign_in(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    connection: &Connection,
    ch: &Challenge,
    how: &str,
) -> Result<Result<User, Failure>, ApiError> {
    let hex = st.ordered_id();
    let candidate = match connection.strategy {
        Strategy::Email => User::new_email_user(&hex, &connection.name, &ch.identifier, st.now()),
        Strategy::Sms => User::new_sms_user(&hex, &connection.name, &ch.identifier, st.now()),
    };
    let user = match st
        .store
        .sign_in(
            &candidate,
            &ch.identifier,
            !connection.settings.disable_signup,
            st.now(),
        )
        .await?
    {
        SignIn::Ok { user, .. } => user,
        SignIn::Blocked => {
            fail_event(st, meta, client, &connection.name, "blocked user").await;
            return Ok(Err(Failure::Blocked));
        }
        SignIn::SignupDisabled => {
            fail_event(st, meta, client, &connection.name, "sign-up disabled").await;
            return Ok(Err(Failure::Wrong));
        }
    };
    if connection.strategy == Strategy::Sms
        && let Ok(p) = tessera_core::phone::PhoneNumber::parse(&ch.identifier)
    {
        // For the SMS-pumping alarm: codes to this prefix that were used.
        st.store
            .hit_rate_limit(&format!("sms:verified:{}", p.prefix()), 3600, st.now())
            .await?;
    }
    st.metrics.sign_in(&connection.name, "success", "");
    st.event("s", meta, |e| {
        e.client_id = Some(client.client_id.clone());
        e.connection = Some(connection.name.clone());
        e.user_id = Some(user.user_id.clone());
        e.description = format!("Successful login ({how})");
    })
    .await;
    Ok(Ok(user))
}

async fn fail_event(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    connection: &str,
    reason: &'static str,
) {
    st.metrics.sign_in(connection, "failure", reason);
    st.event("f", meta, |e| {
        e.client_id = Some(client.client_id.clone());
        e.connection = Some(connection.to_string());
        e.description = reason.into();
    })
    .await;
}
