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
use tessera_core::UnixTime;
use tessera_core::client::Client;
use tessera_core::connection::{Connection, Strategy};
use tessera_core::email::EmailAddress;
use tessera_core::otp::{self, PendingCode, Verdict};
use tessera_core::user::User;
use tessera_store::{
    Challenge, Decide, Decision, NotCounted, Outcome, Redeemed, SignIn, SignInRequest,
};

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
    let checked = redeem(
        st,
        meta,
        client,
        connection,
        raw_identifier,
        code,
        mode,
        accept,
        version,
        None,
    )
    .await?;
    Ok(checked.map(|(ch, _)| ch))
}

/// [`check`] in [`Mode::Consume`], then [`sign_in`], with the counting, the consuming and the
/// sign-in in one write of the store (`Store::redeem`): the OTP grant's path, where the three
/// writes one after the other were three trips to SQLite's writer.
#[allow(clippy::too_many_arguments)]
pub async fn check_and_sign_in(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    connection: &Connection,
    raw_identifier: &str,
    code: &str,
    accept: Accept,
    version: Option<i64>,
    how: &str,
) -> Result<Result<User, Failure>, ApiError> {
    let signed_in = redeem(
        st,
        meta,
        client,
        connection,
        raw_identifier,
        code,
        Mode::Consume,
        accept,
        version,
        Some(how),
    )
    .await?;
    Ok(match signed_in {
        Ok((_, Some(user))) => Ok(user),
        Ok((_, None)) => {
            return Err(ApiError::internal(
                "the code was consumed without a sign-in",
            ));
        }
        Err(f) => Err(f),
    })
}

/// The verdict on `presented` for the code `ch` at `now`, as [`check`] takes it.
fn verdict(
    ch: &Challenge,
    client_id: &str,
    presented: &[u8],
    now: UnixTime,
    accept: Accept,
) -> Result<(), (&'static str, Failure)> {
    let pending = PendingCode {
        code_hash: ch.code_hash.clone(),
        client_id: ch.client_id.clone(),
        expires_at: ch.expires_at,
        attempts: ch.attempts,
        max_attempts: ch.max_attempts,
    };
    match otp::judge(&pending, client_id, presented, now) {
        Verdict::TooManyAttempts => Err(("too many attempts", Failure::TooManyAttempts)),
        Verdict::Expired => Err(("code expired", Failure::Expired)),
        Verdict::Wrong => Err(("wrong code", Failure::Wrong)),
        Verdict::Accepted if accept == Accept::CodesOnly && ch.send != "code" => {
            Err(("link code used as OTP", Failure::Wrong))
        }
        Verdict::Accepted => Ok(()),
    }
}

/// [`check`], and with `sign_in` (how, for the audit event) the sign-in of
/// [`check_and_sign_in`]: the challenge, and the user when signed in.
#[allow(clippy::too_many_arguments)]
async fn redeem(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    connection: &Connection,
    raw_identifier: &str,
    code: &str,
    mode: Mode,
    accept: Accept,
    version: Option<i64>,
    sign_in: Option<&str>,
) -> Result<Result<(Challenge, Option<User>), Failure>, ApiError> {
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
    let now = st.now();
    // The store counts the attempt unless either key is blocked, reads the configuration
    // version, and only then asks this what becomes of the attempt: given back when the
    // version is not the caller's (nothing else done) or when a right code is only checked,
    // the code consumed when it is right, else the attempt stays counted.
    let decide: Decide = {
        let (client_id, presented) = (client.client_id.clone(), presented.clone());
        Box::new(move |ch: &Challenge, current: i64| {
            if version.is_some_and(|v| v != current) {
                return Decision::Refund;
            }
            match (verdict(ch, &client_id, &presented, now, accept), mode) {
                (Err(_), _) => Decision::Keep,
                (Ok(()), Mode::Consume) => Decision::Consume,
                (Ok(()), Mode::Check) => Decision::Refund,
            }
        })
    };
    let request =
        sign_in.map(|how| sign_in_request(st, meta, client, connection, &identifier, now, how));
    let redeemed = st
        .store
        .redeem(
            conn_name,
            &identifier,
            [&id_key, &ip_key],
            now,
            decide,
            request,
        )
        .await?;
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
    let (ch, current, outcome) = match redeemed {
        Redeemed::Counted {
            challenge,
            config_version,
            outcome,
        } => (challenge, config_version, outcome),
        Redeemed::NotCounted(NotCounted::NoCode { config_version }) => {
            st.config.observe(config_version);
            if version.is_some_and(|v| v != config_version) {
                return Err(ApiError::stale_config());
            }
            return fail("no code pending", Failure::Wrong).await;
        }
        Redeemed::NotCounted(NotCounted::LockedOut) => {
            st.event("limit_wc", meta, |e| {
                e.client_id = Some(client.client_id.clone());
                e.connection = Some(conn_name.to_string());
                e.description = "Too many failed codes for one identity: attempts blocked".into();
            })
            .await;
            return Ok(Err(Failure::LockedOut));
        }
    };
    st.config.observe(current);
    if version.is_some_and(|v| v != current) {
        // The attempt was given back.
        return Err(ApiError::stale_config());
    }
    match outcome {
        Outcome::Kept => {
            // The same verdict the store was given, for why.
            let (reason, failure) = verdict(&ch, &client.client_id, &presented, now, accept)
                .err()
                .unwrap_or(("wrong code", Failure::Wrong));
            fail(reason, failure).await
        }
        Outcome::AlreadyUsed => fail("code already used", Failure::Wrong).await,
        Outcome::Refunded | Outcome::Consumed => Ok(Ok((ch, None))),
        Outcome::SignedIn(result) => Ok(signed_in(st, meta, client, connection, &ch, result, None)
            .await?
            .map(|user| (ch, Some(user)))),
    }
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
    let now = st.now();
    let r = sign_in_request(st, meta, client, connection, &ch.identifier, now, how);
    let result = st
        .store
        .sign_in(&r.candidate, &r.identifier, r.allow_signup, now)
        .await?;
    signed_in(st, meta, client, connection, ch, result, r.event).await
}

/// The sign-in of `identifier` on `connection`: a new user to create when sign-up is open
/// (`User::new_email_user`, or `new_sms_user`), and the success's audit event (`s`), its
/// `user_id` still to be set.
fn sign_in_request(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    connection: &Connection,
    identifier: &str,
    now: UnixTime,
    how: &str,
) -> SignInRequest {
    let hex = st.ordered_id();
    SignInRequest {
        candidate: match connection.strategy {
            Strategy::Email => User::new_email_user(&hex, &connection.name, identifier, now),
            Strategy::Sms => User::new_sms_user(&hex, &connection.name, identifier, now),
        },
        identifier: identifier.to_string(),
        allow_signup: !connection.settings.disable_signup,
        event: Some(st.new_event("s", meta, |e| {
            e.client_id = Some(client.client_id.clone());
            e.connection = Some(connection.name.clone());
            e.description = format!("Successful login ({how})");
        })),
    }
}

/// What follows a sign-in's write: its failures as [`Failure`]s, the SMS alarm's count, the
/// metrics, and `event` (the success's audit event) when the write did not record it.
async fn signed_in(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    connection: &Connection,
    ch: &Challenge,
    result: SignIn,
    event: Option<tessera_store::Event>,
) -> Result<Result<User, Failure>, ApiError> {
    let user = match result {
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
    match event {
        Some(mut e) => {
            e.user_id = Some(user.user_id.clone());
            st.record(e).await;
        }
        // `Store::redeem` recorded it with the sign-in.
        None => st.metrics.event("s", Some(&connection.name)),
    }
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
