//! Storage for Tessera: one [`Store`] trait made of domain operations, two backends.
//!
//! Handlers and the domain never see SQL. Each operation is atomic on its own (one exception:
//! `issue_challenge` stores the code, then its message, as two statements): the attempt
//! counter of a code is incremented by one statement that commits before the code is compared,
//! so a failed attempt is never lost; a code is consumed by a `DELETE` whose row count decides
//! which of two racing requests wins. Both backends share the SQL text (written in the common
//! subset of SQLite and PostgreSQL: `$n` placeholders, `ON CONFLICT`, `RETURNING`); what differs
//! (types in the schema, the outbox claim with `SKIP LOCKED`, migration locking) lives in the
//! backend's own module and migration folder.

mod batch;
mod hot;
mod migrate;
mod model;
mod postgres;
mod sql;
mod sqlite;
mod sqlite_hot;
pub mod testdb;

use async_trait::async_trait;

pub use model::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use tessera_core::UnixTime;
use tessera_core::client::Client;
use tessera_core::connection::Connection;
use tessera_core::user::User;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now; the request may succeed later (HTTP 503).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
                StoreError::Unavailable(e.to_string())
            }
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                // PostgreSQL: 08 connection exceptions, 57 operator intervention (shutdown,
                // statement timeout 57014), 53 insufficient resources. SQLite: 5 BUSY, 6 LOCKED.
                if code.starts_with("08")
                    || code.starts_with("57")
                    || code.starts_with("53")
                    || code == "5"
                    || code == "6"
                {
                    StoreError::Unavailable(e.to_string())
                } else {
                    StoreError::Other(anyhow::Error::new(e))
                }
            }
            _ => StoreError::Other(anyhow::Error::new(e)),
        }
    }
}

/// Opens the backend named by the URL scheme (`sqlite:` or `postgres:`); the caller migrates it
/// (`Store::migrate`).
pub async fn open(url: &str, pool: &PoolOptions) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    let scheme = url.split(':').next().unwrap_or_default();
    let store: std::sync::Arc<dyn Store> = match scheme {
        "sqlite" => std::sync::Arc::new(SqliteStore::connect(url, pool).await?),
        "postgres" | "postgresql" => std::sync::Arc::new(PgStore::connect(url, pool).await?),
        other => anyhow::bail!(
            "unsupported database URL scheme {other:?}: use sqlite://PATH or postgres://USER@HOST/DB"
        ),
    };
    Ok(store)
}

/// Pool sizing and timeouts.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    /// PostgreSQL `statement_timeout`, in milliseconds.
    pub statement_timeout_ms: u64,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 10,
            acquire_timeout_secs: 5,
            statement_timeout_ms: 5_000,
        }
    }
}

/// Everything Tessera keeps. Each method is one domain operation, atomic on its own, except
/// `issue_challenge` (see there).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is ("sqlite" or "postgres").
    fn backend(&self) -> &'static str;
    /// Applies pending migrations (safe to run from several nodes at once).
    async fn migrate(&self) -> Result<()>;
    /// A cheap round trip, for `/health`.
    async fn ping(&self) -> Result<()>;

    // Applications and connections.
    async fn upsert_client(&self, client: &Client, now: UnixTime) -> Result<()>;
    async fn get_client(&self, client_id: &str) -> Result<Option<Client>>;
    async fn list_clients(&self) -> Result<Vec<Client>>;
    async fn upsert_connection(&self, connection: &Connection, now: UnixTime) -> Result<()>;
    async fn get_connection(&self, name: &str) -> Result<Option<Connection>>;
    /// Writes the configuration file's version of an application unless the file's version is
    /// the one last applied (`file_hash`), so that edits made since in the dashboard, the API or
    /// the CLI survive a restart. Returns whether it wrote.
    async fn bootstrap_client(
        &self,
        client: &Client,
        file_hash: &str,
        now: UnixTime,
    ) -> Result<bool>;
    /// The same for a connection.
    async fn bootstrap_connection(
        &self,
        connection: &Connection,
        file_hash: &str,
        now: UnixTime,
    ) -> Result<bool>;
    /// Inserts a new application; false when the id is taken.
    async fn insert_client(&self, client: &Client, now: UnixTime) -> Result<bool>;
    /// Replaces an existing application's secret and settings; false when it does not exist.
    async fn update_client(&self, client: &Client, now: UnixTime) -> Result<bool>;
    /// Deletes an application with its codes, tokens, sessions' grants and tickets.
    async fn delete_client(&self, client_id: &str) -> Result<bool>;
    /// Replaces an existing connection's settings; false when it does not exist.
    async fn update_connection(&self, connection: &Connection, now: UnixTime) -> Result<bool>;
    async fn list_connections(&self) -> Result<Vec<Connection>>;
    /// The version of the applications and connections: every change to either, by anyone,
    /// raises it (database triggers, migration 7).
    async fn config_version(&self) -> Result<i64>;

    // One-time codes.
    /// Stores a code (replacing any earlier one for the same identity and connection) and
    /// queues its message: two statements, with no transaction around them. The first stores
    /// the code only if the configuration version is still `options.config_version` (when
    /// given) and reads the user's `blocked` flag (see [`IssueOptions`]); on another version
    /// nothing is written and the answer is [`Issued::Stale`]. The second inserts the message.
    /// Then `options.events`, when given, records the event that applies, as
    /// [`Store::record_event`] would (a failure to record it is logged, not returned).
    ///
    /// Unlike the other methods, this one is not atomic: should the second statement fail (or
    /// the process stop between the two), the code stays stored without its message and the
    /// call returns the error. Nobody knows that code; it expires, and the next code for the
    /// identity replaces it. An earlier code it replaced is gone all the same.
    async fn issue_challenge(
        &self,
        challenge: &NewChallenge,
        message: &NewOutboxMessage,
        options: &IssueOptions,
    ) -> Result<Issued>;
    /// Counts one attempt against the live code for this identity and returns it, counter
    /// included, unless one of `lockout_keys` is blocked at `now` (then nothing is counted).
    /// One statement, committed before the caller compares anything; it also reads the
    /// configuration version.
    async fn count_attempt(
        &self,
        connection: &str,
        identifier: &str,
        lockout_keys: [&str; 2],
        now: UnixTime,
    ) -> Result<Attempt>;
    /// [`Store::count_attempt`], then in the same write what `decide` makes of it: the
    /// attempt kept, given back ([`Store::refund_attempt`]), or the code consumed
    /// ([`Store::consume_challenge`]) and, with `sign_in`, its owner signed in
    /// ([`Store::sign_in`]). On SQLite that is one trip to the writer where the separate
    /// calls make three; the attempt is still counted before any comparison, since `decide`
    /// runs after the statement that counts it.
    async fn redeem(
        &self,
        connection: &str,
        identifier: &str,
        lockout_keys: [&str; 2],
        now: UnixTime,
        decide: Decide,
        sign_in: Option<SignInRequest>,
    ) -> Result<Redeemed>;
    /// The application that asked for the live code of this identity (the old widgets'
    /// `/passwordless/verify` names none).
    async fn pending_client(&self, connection: &str, identifier: &str) -> Result<Option<String>>;
    /// Consumes a code; true for exactly one caller.
    async fn consume_challenge(&self, id: &str) -> Result<bool>;
    /// Gives back the attempt counted for a correct code that was only checked, not consumed
    /// (`/passwordless/verify`, the magic-link confirmation page).
    async fn refund_attempt(&self, id: &str) -> Result<()>;

    // Users.
    async fn find_user(&self, connection: &str, identifier: &str) -> Result<Option<User>>;
    async fn get_user(&self, user_id: &str) -> Result<Option<User>>;
    /// Users whose email or phone number contains `search` (all when empty), newest first.
    async fn list_users(&self, search: &str, limit: i64) -> Result<Vec<User>>;
    /// Deletes a user with their sessions and tokens; false when there is no such user.
    async fn delete_user(&self, user_id: &str) -> Result<bool>;
    /// Blocks or unblocks a user; false when there is no such user.
    async fn set_user_blocked(&self, user_id: &str, blocked: bool, now: UnixTime) -> Result<bool>;
    /// Inserts users as they are (an import, or a user made by an operator), in one
    /// transaction. `identifier` is the normalised email or phone number. A user whose id, or
    /// whose connection and identifier, already exist is left alone. Returns the ids inserted.
    async fn insert_users(&self, users: &[(User, String)]) -> Result<Vec<String>>;
    /// Replaces a user's `app_metadata` and `user_metadata`; false when the user does not exist.
    async fn set_user_metadata(&self, user: &User, now: UnixTime) -> Result<bool>;
    /// Records a successful verification: signs an existing user in, or creates the user
    /// from `candidate` when `allow_signup`.
    async fn sign_in(
        &self,
        candidate: &User,
        identifier: &str,
        allow_signup: bool,
        now: UnixTime,
    ) -> Result<SignIn>;

    // Tokens.
    /// Stores an opaque access token by digest. Tessera now issues sealed access tokens
    /// instead (nothing stored); stored ones, issued by earlier versions, keep working until
    /// they expire.
    async fn insert_access_token(&self, token: &AccessToken) -> Result<()>;
    async fn find_access_token(&self, token_hash: &[u8]) -> Result<Option<AccessToken>>;
    /// The user a sealed access token names, if the token may still be used: the user exists
    /// and is not blocked, the application still exists, and the grant the token came from
    /// (if any) was not revoked. One statement.
    async fn access_token_user(
        &self,
        user_id: &str,
        client_id: &str,
        grant_id: Option<&str>,
    ) -> Result<Option<User>>;
    /// Stores a refresh token, unless its family has been revoked (then false): a rotation
    /// racing with a reuse detection must not mint a live token.
    async fn insert_refresh_token(&self, token: &RefreshToken) -> Result<bool>;
    /// Marks a refresh token of `client_id` used (it rotates on every use) and reports what it
    /// was. A token of another application, or an expired one, is reported unknown and left
    /// as it is.
    async fn use_refresh_token(
        &self,
        token_hash: &[u8],
        client_id: &str,
        now: UnixTime,
    ) -> Result<RefreshUse>;
    /// Revokes every refresh token of a family (after reuse is detected).
    async fn revoke_refresh_family(&self, family_id: &str, now: UnixTime) -> Result<u64>;

    /// Revokes what was issued from an authorization code: the refresh-token family named by
    /// `grant_id` and the access tokens carrying it (the grant is recorded as revoked for
    /// sealed ones; stored ones are deleted). Returns how many stored tokens went.
    async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> Result<u64>;

    // Browser sign-in.
    async fn create_session(&self, session: &Session) -> Result<()>;
    /// The live session with this digest.
    async fn get_session(&self, id_hash: &[u8], now: UnixTime) -> Result<Option<Session>>;
    async fn delete_session(&self, id_hash: &[u8]) -> Result<bool>;
    async fn insert_auth_code(&self, code: &AuthCode) -> Result<()>;
    /// Marks an authorization code used and reports what it was; exactly one caller gets
    /// `Fresh`.
    async fn use_auth_code(&self, code_hash: &[u8], now: UnixTime) -> Result<AuthCodeUse>;
    async fn insert_login_ticket(&self, ticket: &LoginTicket) -> Result<()>;
    /// Takes (deletes) a live login ticket; exactly one caller gets it.
    async fn take_login_ticket(
        &self,
        ticket_hash: &[u8],
        now: UnixTime,
    ) -> Result<Option<LoginTicket>>;

    // Signing keys.
    /// The current and previous keys, newest first.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>>;
    /// Inserts `key` as the current key of its algorithm unless one exists (first start, or an
    /// algorithm's first use; race-safe).
    async fn insert_first_key(&self, key: &StoredKey) -> Result<()>;
    /// Makes `key` current, the current key of its algorithm previous, and retires the
    /// previous one of that algorithm.
    async fn rotate_key(&self, key: &StoredKey, now: UnixTime) -> Result<()>;
    /// Every key ever made, newest first (for operators: includes retired and revoked keys).
    async fn all_signing_keys(&self) -> Result<Vec<StoredKey>>;
    /// Revokes a previous key (never the current one); false when there is no such key.
    async fn revoke_key(&self, kid: &str) -> Result<bool>;

    // The outbox.
    /// Leases up to `limit` due messages to `owner` until `now + lease_secs`.
    async fn claim_outbox(
        &self,
        owner: &str,
        now: UnixTime,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>>;
    /// Settles a claimed message. A delivered or given-up message is deleted together with
    /// the others settled at that moment, in one `DELETE … WHERE id IN (…)` (`batch.rs`); the
    /// call returns once its own message is gone.
    async fn settle_outbox(&self, id: &str, outcome: &OutboxOutcome) -> Result<()>;
    async fn outbox_depth(&self) -> Result<i64>;

    // Rate limits.
    /// Counts one hit against `key` in the fixed window of `window_secs` containing `now`, and
    /// returns the count including this hit, with the window's end.
    async fn hit_rate_limit(
        &self,
        key: &str,
        window_secs: i64,
        now: UnixTime,
    ) -> Result<WindowCount>;
    /// The count so far in the current window, without adding a hit.
    async fn peek_rate_limit(
        &self,
        key: &str,
        window_secs: i64,
        now: UnixTime,
    ) -> Result<WindowCount>;

    /// Adds a strike against `key` and blocks it for `base_secs` doubled per earlier strike
    /// (at most `max_secs`). Strikes older than `max_secs` are forgotten. Returns the end of
    /// the block.
    async fn add_strike(
        &self,
        key: &str,
        now: UnixTime,
        base_secs: i64,
        max_secs: i64,
    ) -> Result<UnixTime>;
    /// When the block on `key` ends, if it is blocked now.
    async fn blocked_until(&self, key: &str, now: UnixTime) -> Result<Option<UnixTime>>;

    // Audit events.
    /// Writes an event, together with the others recorded at that moment, in one multi-row
    /// `INSERT` (`batch.rs`). The call returns once its own event is written; should a batch
    /// fail, each of its events is written again alone, so a bad one fails only its caller.
    async fn record_event(&self, event: &Event) -> Result<()>;
    async fn list_events(&self, limit: i64) -> Result<Vec<Event>>;
    /// Events matching `filter`, newest first, with their sequence numbers.
    async fn find_events(&self, filter: &EventFilter) -> Result<Vec<(i64, Event)>>;

    /// Deletes expired codes and tokens; returns how many rows went.
    async fn purge_expired(&self, now: UnixTime) -> Result<u64>;
}
