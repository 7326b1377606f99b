//! Records the store reads and writes, beyond the core domain types.

use tessera_core::UnixTime;
use tessera_core::user::User;

/// A code about to be stored.
#[derive(Debug, Clone)]
pub struct NewChallenge {
    /// The `_id` returned by `/passwordless/start`.
    pub id: String,
    pub connection: String,
    /// The normalised email or phone number.
    pub identifier: String,
    pub client_id: String,
    pub code_hash: Vec<u8>,
    /// `code` or `link`.
    pub send: String,
    /// The `authParams` object, as JSON text.
    pub auth_params: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub max_attempts: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A stored code, with its attempt counter.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: String,
    pub connection: String,
    pub identifier: String,
    pub client_id: String,
    pub code_hash: Vec<u8>,
    pub send: String,
    pub auth_params: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub attempts: i64,
    pub max_attempts: i64,
    /// Where the code was asked for from (shown on the magic-link confirmation page).
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A message to deliver. `payload` is sealed with the server secret: it holds the code.
#[derive(Debug, Clone)]
pub struct NewOutboxMessage {
    pub id: String,
    /// `email` or `sms`.
    pub channel: String,
    pub payload: Vec<u8>,
    pub created_at: UnixTime,
    /// After this time the message can no longer help (its code expired): drop it.
    pub not_after: Option<UnixTime>,
}

/// The channel a message is queued on when it must not be sent: a blocked user, or an unknown
/// identity while sign-up is disabled. Such a request costs the same work as a real send.
pub const VOID_CHANNEL: &str = "void";

/// How [`crate::Store::issue_challenge`] stores a code and its message.
#[derive(Debug, Clone, Default)]
pub struct IssueOptions {
    /// Whether an identity without an account may sign up. With the user's `blocked` flag,
    /// read in the same statement that stores the code, it decides whether the message goes
    /// out on its channel or on [`VOID_CHANNEL`].
    pub allow_signup: bool,
    /// The version of the applications and connections the caller checked the request
    /// against (its in-memory copy). When the database's version differs, nothing is written
    /// and [`Issued::Stale`] says which version is current.
    pub config_version: Option<i64>,
    /// Lease the message at once to this owner until this time: the node's own worker then
    /// delivers it from memory, with no claim. Should the node die first, the lease runs out
    /// and any worker claims the message as usual.
    pub lease: Option<(String, UnixTime)>,
    /// The audit event to record with the code and its message, in the same write: on
    /// SQLite in the same turn of the writer, so that a sign-in's start waits for one turn,
    /// not two (`bench/README.md`).
    pub events: Option<IssueEvents>,
}

/// The two audit events a code's issue may record, by whether its message goes out
/// ([`IssueOptions::events`]). Which one applies is known only once the code is stored (the
/// user's `blocked` flag is read in the same statement).
#[derive(Debug, Clone)]
pub struct IssueEvents {
    /// Recorded when the message goes out on its channel.
    pub sent: Event,
    /// Recorded when it goes to [`VOID_CHANNEL`].
    pub not_sent: Event,
}

impl IssueEvents {
    /// The event that applies.
    pub fn chosen(&self, delivered: bool) -> &Event {
        if delivered {
            &self.sent
        } else {
            &self.not_sent
        }
    }
}

/// What [`crate::Store::issue_challenge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    /// The code and its message are stored; `delivered` is false when the message went to
    /// [`VOID_CHANNEL`].
    Queued { delivered: bool },
    /// Nothing was written: the applications or connections changed since the caller read
    /// them.
    Stale { config_version: i64 },
}

/// What [`crate::Store::count_attempt`] found.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // returned once per check; boxing buys nothing
pub enum Attempt {
    /// One attempt was counted against the live code (the counter includes it).
    Counted {
        challenge: Challenge,
        config_version: i64,
    },
    /// No code is pending for the identity.
    NoCode { config_version: i64 },
    /// One of the lockout keys is blocked: nothing was counted.
    LockedOut,
}

impl Attempt {
    /// The version of the applications and connections at the time of the check.
    pub fn config_version(&self) -> Option<i64> {
        match self {
            Attempt::Counted { config_version, .. } | Attempt::NoCode { config_version } => {
                Some(*config_version)
            }
            Attempt::LockedOut => None,
        }
    }
}

/// What becomes of an attempt once it is counted ([`crate::Store::redeem`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The attempt stays counted (a wrong, expired or used-up code).
    Keep,
    /// The attempt is given back (a right code only checked, or configuration read at another
    /// version than the caller's).
    Refund,
    /// The code is consumed (and its owner signed in, when asked).
    Consume,
}

/// Decides, from the code the attempt was counted against and the configuration version,
/// what becomes of the attempt. It runs inside the write, so it must be quick and must not
/// wait on anything.
pub type Decide = Box<dyn FnOnce(&Challenge, i64) -> Decision + Send>;

/// A sign-in to run in the same write as the code's consumption: the arguments of
/// [`crate::Store::sign_in`].
#[derive(Debug, Clone)]
pub struct SignInRequest {
    pub candidate: User,
    pub identifier: String,
    pub allow_signup: bool,
    /// The audit event of the sign-in, recorded when the user is signed in (not when blocked
    /// or refused), with `user_id` set to theirs: on SQLite in the same write.
    pub event: Option<Event>,
}

/// What [`crate::Store::redeem`] did.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // returned once per check; boxing buys nothing
pub enum Redeemed {
    /// Nothing was counted.
    NotCounted(NotCounted),
    /// The attempt was counted against `challenge` (the counter includes it), then
    /// `outcome`.
    Counted {
        challenge: Challenge,
        config_version: i64,
        outcome: Outcome,
    },
}

/// Why no attempt was counted ([`Attempt::NoCode`] and [`Attempt::LockedOut`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCounted {
    /// No code is pending for the identity.
    NoCode { config_version: i64 },
    /// One of the lockout keys is blocked.
    LockedOut,
}

impl From<NotCounted> for Attempt {
    fn from(n: NotCounted) -> Attempt {
        match n {
            NotCounted::NoCode { config_version } => Attempt::NoCode { config_version },
            NotCounted::LockedOut => Attempt::LockedOut,
        }
    }
}

/// What followed a counted attempt, as decided.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// [`Decision::Keep`].
    Kept,
    /// [`Decision::Refund`].
    Refunded,
    /// [`Decision::Consume`], but another caller consumed the code first: nothing else done.
    AlreadyUsed,
    /// [`Decision::Consume`] without a sign-in to run.
    Consumed,
    /// [`Decision::Consume`], then the sign-in.
    SignedIn(SignIn),
}

#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub id: String,
    pub channel: String,
    pub payload: Vec<u8>,
    pub created_at: UnixTime,
    pub not_after: Option<UnixTime>,
    /// Delivery attempts so far, including the one this claim starts.
    pub attempts: i64,
}

#[derive(Debug, Clone)]
pub enum OutboxOutcome {
    Delivered,
    Retry { at: UnixTime, error: String },
    GiveUp { error: String },
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // returned once per sign-in; boxing buys nothing
pub enum SignIn {
    Ok { user: User, created: bool },
    Blocked,
    SignupDisabled,
}

#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token_hash: Vec<u8>,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    /// The authorization code it was issued from, if any: replaying that code revokes it.
    pub grant_id: Option<String>,
}

/// A Tessera SSO session (the `tessera_session` cookie), stored by digest.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id_hash: Vec<u8>,
    pub user_id: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// An authorization code, stored by digest, bound to its client, redirect URI and PKCE
/// challenge.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthCode {
    pub code_hash: Vec<u8>,
    /// Names what is issued from the code (the refresh-token family, the access tokens).
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub audience: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    /// False after a magic link: those logins never get refresh tokens.
    pub allow_refresh: bool,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone)]
pub enum AuthCodeUse {
    /// Unused and unexpired until now; it is now marked used.
    Fresh(AuthCode),
    /// Used before: a replay.
    Reused(AuthCode),
    /// Unknown or expired.
    Unknown,
}

/// A `/co/authenticate` login ticket, stored by digest, redeemable once at `/authorize`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginTicket {
    pub ticket_hash: Vec<u8>,
    pub client_id: String,
    pub user_id: String,
    pub connection: String,
    pub co_id: String,
    /// SHA-256 of the `co_verifier` the browser keeps.
    pub verifier_hash: Vec<u8>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub token_hash: Vec<u8>,
    pub family_id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub audience: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone)]
pub enum RefreshUse {
    /// Unused until now; it is now marked used.
    Fresh(RefreshToken),
    /// Already used or revoked: a replay.
    Reused(RefreshToken),
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Current,
    Previous,
    Retired,
    /// Taken out of the JWKS by an operator before its time: tokens it signed stop verifying.
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Current => "current",
            KeyStatus::Previous => "previous",
            KeyStatus::Retired => "retired",
            KeyStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<KeyStatus> {
        match s {
            "current" => Some(KeyStatus::Current),
            "previous" => Some(KeyStatus::Previous),
            "retired" => Some(KeyStatus::Retired),
            "revoked" => Some(KeyStatus::Revoked),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    /// The PKCS#8 private key, sealed with the server secret.
    pub private_sealed: Vec<u8>,
    pub public_jwk: String,
    pub status: KeyStatus,
    pub created_at: UnixTime,
}

/// An audit event. Codes, tokens and secrets never go in here.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub at: UnixTime,
    /// Auth0's log event type code where one fits (`s`, `f`, `cls`, …).
    pub kind: String,
    pub client_id: Option<String>,
    pub connection: Option<String>,
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub description: String,
}

/// A rate-limit window's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    pub count: i64,
    /// When the window ends (Unix seconds): `x-ratelimit-reset`.
    pub resets_at: UnixTime,
}

/// Which audit events to list, newest first. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    /// Events at or after this time.
    pub from: Option<UnixTime>,
    /// Events before this time.
    pub to: Option<UnixTime>,
    /// Only events recorded after the one with this sequence number (`tessera logs tail`).
    pub after_seq: Option<i64>,
    pub limit: i64,
}
