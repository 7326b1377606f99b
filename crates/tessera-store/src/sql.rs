//! The SQL both backends share, written once and instantiated per backend by [`sql_store!`].
//!
//! The text uses only what SQLite and PostgreSQL both understand. A backend passes in what
//! differs: how a migration takes its lock, and how the outbox is claimed.

use sqlx::Row;
use tessera_core::client::{Client, ClientSettings};
use tessera_core::connection::{Connection, ConnectionSettings, Strategy};
use tessera_core::user::User;

use crate::{AuthCode, Challenge, Event, KeyStatus, RefreshToken, StoreError, StoredKey};

pub(crate) fn client_from_row<R: Row>(r: &R) -> Result<Client, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<Vec<u8>>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let settings: String = r.try_get("settings")?;
    let settings: ClientSettings = serde_json::from_str(&settings)
        .map_err(|e| StoreError::Corrupt(format!("client settings: {e}")))?;
    Ok(Client {
        client_id: r.try_get("client_id")?,
        secret_hash: r.try_get("secret_hash")?,
        settings,
    })
}

pub(crate) fn connection_from_row<R: Row>(r: &R) -> Result<Connection, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let strategy: String = r.try_get("strategy")?;
    let strategy = match strategy.as_str() {
        "email" => Strategy::Email,
        "sms" => Strategy::Sms,
        other => {
            return Err(StoreError::Corrupt(format!(
                "connection strategy {other:?}"
            )));
        }
    };
    let settings: String = r.try_get("settings")?;
    let settings: ConnectionSettings = serde_json::from_str(&settings)
        .map_err(|e| StoreError::Corrupt(format!("connection settings: {e}")))?;
    Ok(Connection {
        name: r.try_get("name")?,
        strategy,
        settings,
    })
}

pub(crate) fn challenge_from_row<R: Row>(r: &R) -> Result<Challenge, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Challenge {
        id: r.try_get("id")?,
        connection: r.try_get("connection")?,
        identifier: r.try_get("identifier")?,
        client_id: r.try_get("client_id")?,
        code_hash: r.try_get("code_hash")?,
        send: r.try_get("send")?,
        auth_params: r.try_get("auth_params")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        ip: r.try_get("ip")?,
        user_agent: r.try_get("user_agent")?,
    })
}

pub(crate) fn user_from_row<R: Row>(r: &R) -> Result<User, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    bool: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(User {
        user_id: r.try_get("user_id")?,
        connection: r.try_get("connection")?,
        email: r.try_get("email")?,
        email_verified: r.try_get("email_verified")?,
        phone_number: r.try_get("phone_number")?,
        phone_verified: r.try_get("phone_verified")?,
        name: r.try_get("name")?,
        nickname: r.try_get("nickname")?,
        picture: r.try_get("picture")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        last_login: r.try_get("last_login")?,
        logins_count: r.try_get("logins_count")?,
        blocked: r.try_get("blocked")?,
        app_metadata: metadata(r.try_get("app_metadata")?, "app_metadata")?,
        user_metadata: metadata(r.try_get("user_metadata")?, "user_metadata")?,
    })
}

pub(crate) fn metadata(
    text: String,
    what: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn refresh_from_row<R: Row>(r: &R) -> Result<RefreshToken, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RefreshToken {
        token_hash: r.try_get("token_hash")?,
        family_id: r.try_get("family_id")?,
        user_id: r.try_get("user_id")?,
        client_id: r.try_get("client_id")?,
        scope: r.try_get("scope")?,
        audience: r.try_get("audience")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

pub(crate) fn key_from_row<R: Row>(r: &R) -> Result<StoredKey, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let status: String = r.try_get("status")?;
    Ok(StoredKey {
        kid: r.try_get("kid")?,
        alg: r.try_get("alg")?,
        private_sealed: r.try_get("private_sealed")?,
        public_jwk: r.try_get("public_jwk")?,
        status: KeyStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("key status {status:?}")))?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) fn event_from_row<R: Row>(r: &R) -> Result<Event, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Event {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        kind: r.try_get("kind")?,
        client_id: r.try_get("client_id")?,
        connection: r.try_get("connection")?,
        user_id: r.try_get("user_id")?,
        ip: r.try_get("ip")?,
        user_agent: r.try_get("user_agent")?,
        description: r.try_get("description")?,
    })
}

pub(crate) fn auth_code_from_row<R: Row>(r: &R) -> Result<AuthCode, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    bool: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(AuthCode {
        code_hash: r.try_get("code_hash")?,
        grant_id: r.try_get("grant_id")?,
        client_id: r.try_get("client_id")?,
        user_id: r.try_get("user_id")?,
        redirect_uri: r.try_get("redirect_uri")?,
        scope: r.try_get("scope")?,
        audience: r.try_get("audience")?,
        nonce: r.try_get("nonce")?,
        code_challenge: r.try_get("code_challenge")?,
        code_challenge_method: r.try_get("code_challenge_method")?,
        allow_refresh: r.try_get("allow_refresh")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Other(e.into()))
}

/// Implements [`crate::Store`] for a backend struct with a `pool` field.
///
/// `$begin_migration` are statements run inside the migration transaction before anything
/// else (a lock); `$claim_outbox` is the backend's statement that leases due messages.
macro_rules! sql_store {
    ($Store:ty, $Db:ty, backend = $backend:literal, migrations = $migrations:expr,
     begin_write = $begin_write:literal, migration_lock = $lock:literal,
     claim_outbox = $claim:literal) => {
        #[async_trait::async_trait]
        impl $crate::Store for $Store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn migrate(&self) -> $crate::Result<()> {
                use sqlx::Row as _;
                let mut tx = self.writer.begin_with($begin_write).await?;
                if !$lock.is_empty() {
                    sqlx::query($lock).execute(&mut *tx).await?;
                }
                sqlx::query($crate::migrate::CREATE_TABLE).execute(&mut *tx).await?;
                let applied: Vec<i64> = sqlx::query("SELECT version FROM tessera_migrations")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<i64, _>("version"))
                    .collect::<Result<_, _>>()?;
                for m in $migrations {
                    if applied.contains(&m.version) {
                        continue;
                    }
                    tracing::info!(version = m.version, name = m.name, "applying migration");
                    sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
                    sqlx::query(
                        "INSERT INTO tessera_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    )
                    .bind(m.version)
                    .bind(m.name)
                    .bind(tessera_core::clock::Clock::now(&tessera_core::clock::SystemClock))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn ping(&self) -> $crate::Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn upsert_client(
                &self,
                c: &tessera_core::client::Client,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO clients (client_id, secret_hash, settings, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4) ON CONFLICT (client_id) DO UPDATE SET \
                     secret_hash = excluded.secret_hash, settings = excluded.settings, \
                     updated_at = excluded.updated_at",
                )
                .bind(&c.client_id)
                .bind(&c.secret_hash)
                .bind($crate::sql::to_json(&c.settings)?)
                .bind(now)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn get_client(
                &self,
                client_id: &str,
            ) -> $crate::Result<Option<tessera_core::client::Client>> {
                let row = sqlx::query("SELECT client_id, secret_hash, settings FROM clients WHERE client_id = $1")
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map($crate::sql::client_from_row).transpose()
            }

            async fn list_clients(&self) -> $crate::Result<Vec<tessera_core::client::Client>> {
                let rows = sqlx::query("SELECT client_id, secret_hash, settings FROM clients ORDER BY client_id")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map($crate::sql::client_from_row).collect()
            }

            async fn upsert_connection(
                &self,
                c: &tessera_core::connection::Connection,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO connections (name, strategy, settings, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO UPDATE SET \
                     strategy = excluded.strategy, settings = excluded.settings, \
                     updated_at = excluded.updated_at",
                )
                .bind(&c.name)
                .bind(c.strategy.as_str())
                .bind($crate::sql::to_json(&c.settings)?)
                .bind(now)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn get_connection(
                &self,
                name: &str,
            ) -> $crate::Result<Option<tessera_core::connection::Connection>> {
                let row = sqlx::query("SELECT name, strategy, settings FROM connections WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map($crate::sql::connection_from_row).transpose()
            }

            async fn bootstrap_client(
                &self,
                c: &tessera_core::client::Client,
                file_hash: &str,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<bool> {
                let n = sqlx::query(
                    "INSERT INTO clients (client_id, secret_hash, settings, created_at, updated_at, file_hash) \
                     VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT (client_id) DO UPDATE SET \
                     secret_hash = excluded.secret_hash, settings = excluded.settings, \
                     updated_at = excluded.updated_at, file_hash = excluded.file_hash \
                     WHERE clients.file_hash IS NULL OR clients.file_hash <> excluded.file_hash",
                )
                .bind(&c.client_id)
                .bind(&c.secret_hash)
                .bind($crate::sql::to_json(&c.settings)?)
                .bind(now)
                .bind(file_hash)
                .execute(&self.writer)
                .await?
                .rows_affected();
                Ok(n > 0)
            }

            async fn bootstrap_connection(
                &self,
                c: &tessera_core::connection::Connection,
                file_hash: &str,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<bool> {
                let n = sqlx::query(
                    "INSERT INTO connections (name, strategy, settings, created_at, updated_at, file_hash) \
                     VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT (name) DO UPDATE SET \
                     strategy = excluded.strategy, settings = excluded.settings, \
                     updated_at = excluded.updated_at, file_hash = excluded.file_hash \
                     WHERE connections.file_hash IS NULL OR connections.file_hash <> excluded.file_hash",
                )
                .bind(&c.name)
                .bind(c.strategy.as_str())
                .bind($crate::sql::to_json(&c.settings)?)
                .bind(now)
                .bind(file_hash)
                .execute(&self.writer)
                .await?
                .rows_affected();
                Ok(n > 0)
            }

            async fn insert_client(
                &self,
                c: &tessera_core::client::Client,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<bool> {
                let n = sqlx::query(
                    "INSERT INTO clients (client_id, secret_hash, settings, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4) ON CONFLICT (client_id) DO NOTHING",
                )
                .bind(&c.client_id)
                .bind(&c.secret_hash)
                .bind($crate::sql::to_json(&c.settings)?)
                .bind(now)
                .execute(&self.writer)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn update_client(
                &self,
                c: &tessera_core::client::Client,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<bool> {
                let n = sqlx::query(
                    "UPDATE clients SET secret_hash = $2, settings = $3, updated_at = $4 WHERE client_id = $1",
                )
                .bind(&c.client_id)
                .bind(&c.secret_hash)
                .bind($crate::sql::to_json(&c.settings)?)
                .bind(now)
                .execute(&self.writer)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn delete_client(&self, client_id: &str) -> $crate::Result<bool> {
                let mut tx = self.writer.begin_with($begin_write).await?;
                for sql in [
                    "DELETE FROM challenges WHERE client_id = $1",
                    "DELETE FROM access_tokens WHERE client_id = $1",
                    "DELETE FROM refresh_tokens WHERE client_id = $1",
                    "DELETE FROM auth_codes WHERE client_id = $1",
                    "DELETE FROM login_tickets WHERE client_id = $1",
                ] {
                    sqlx::query(sql).bind(client_id).execute(&mut *tx).await?;
                }
                let n = sqlx::query("DELETE FROM clients WHERE client_id = $1")
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(n == 1)
            }

            async fn update_connection(
                &self,
                c: &tessera_core::connection::Connection,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<bool> {
                let n = sqlx::query("UPDATE connections SET settings = $2, updated_at = $3 WHERE name = $1")
                    .bind(&c.name)
                    .bind($crate::sql::to_json(&c.settings)?)
                    .bind(now)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn list_connections(
                &self,
            ) -> $crate::Result<Vec<tessera_core::connection::Connection>> {
                let rows = sqlx::query("SELECT name, strategy, settings FROM connections ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map($crate::sql::connection_from_row).collect()
            }

            async fn config_version(&self) -> $crate::Result<i64> {
                use sqlx::Row as _;
                let row = sqlx::query("SELECT version FROM config_version WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get("version")?)
            }

            async fn insert_users(
                &self,
                users: &[(tessera_core::user::User, String)],
            ) -> $crate::Result<Vec<String>> {
                use sqlx::Row as _;
                let mut inserted = Vec::new();
                let mut tx = self.writer.begin_with($begin_write).await?;
                for (u, identifier) in users {
                    let row = sqlx::query(
                        "INSERT INTO users (user_id, connection, identifier, email, email_verified, \
                         phone_number, phone_verified, name, nickname, picture, created_at, \
                         updated_at, last_login, logins_count, blocked, app_metadata, user_metadata) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                         ON CONFLICT DO NOTHING RETURNING user_id",
                    )
                    .bind(&u.user_id)
                    .bind(&u.connection)
                    .bind(identifier)
                    .bind(&u.email)
                    .bind(u.email_verified)
                    .bind(&u.phone_number)
                    .bind(u.phone_verified)
                    .bind(&u.name)
                    .bind(&u.nickname)
                    .bind(&u.picture)
                    .bind(u.created_at)
                    .bind(u.updated_at)
                    .bind(u.last_login)
                    .bind(u.logins_count)
                    .bind(u.blocked)
                    .bind($crate::sql::to_json(&u.app_metadata)?)
                    .bind($crate::sql::to_json(&u.user_metadata)?)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(r) = row {
                        inserted.push(r.try_get("user_id")?);
                    }
                }
                tx.commit().await?;
                Ok(inserted)
            }

            async fn set_user_metadata(
                &self,
                u: &tessera_core::user::User,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<bool> {
                let n = sqlx::query(
                    "UPDATE users SET app_metadata = $2, user_metadata = $3, updated_at = $4 WHERE user_id = $1",
                )
                .bind(&u.user_id)
                .bind($crate::sql::to_json(&u.app_metadata)?)
                .bind($crate::sql::to_json(&u.user_metadata)?)
                .bind(now)
                .execute(&self.writer)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn issue_challenge(
                &self,
                c: &$crate::NewChallenge,
                m: &$crate::NewOutboxMessage,
                o: &$crate::IssueOptions,
            ) -> $crate::Result<$crate::Issued> {
                // Two statements, no transaction of their own (`hot.rs`): the code, stored
                // only if the configuration is still the caller's, then its message. Should
                // the second fail, the code is there without its message: nobody knows it, it
                // expires, and the next code for the address replaces it. None: another version.
                let delivered = $crate::hot::HotPaths::issue(self, c, m, o).await?;
                let Some(delivered) = delivered else {
                    let config_version = $crate::Store::config_version(self).await?;
                    return Ok($crate::Issued::Stale { config_version });
                };
                Ok($crate::Issued::Queued { delivered })
            }

            async fn count_attempt(
                &self,
                connection: &str,
                identifier: &str,
                lockout_keys: [&str; 2],
                now: tessera_core::UnixTime,
            ) -> $crate::Result<$crate::Attempt> {
                let counted =
                    $crate::hot::HotPaths::count(self, connection, identifier, lockout_keys, now).await?;
                if let Some((challenge, config_version)) = counted {
                    return Ok($crate::Attempt::Counted { challenge, config_version });
                }
                Ok(self.not_counted(lockout_keys, now).await?.into())
            }

            async fn redeem(
                &self,
                connection: &str,
                identifier: &str,
                lockout_keys: [&str; 2],
                now: tessera_core::UnixTime,
                decide: $crate::Decide,
                sign_in: Option<$crate::SignInRequest>,
            ) -> $crate::Result<$crate::Redeemed> {
                let counted = $crate::hot::HotPaths::redeem(
                    self, connection, identifier, lockout_keys, now, decide, sign_in,
                )
                .await?;
                let Some((challenge, config_version, outcome)) = counted else {
                    return Ok($crate::Redeemed::NotCounted(self.not_counted(lockout_keys, now).await?));
                };
                let outcome = match outcome {
                    $crate::hot::Redemption::Kept => $crate::Outcome::Kept,
                    $crate::hot::Redemption::Refunded => $crate::Outcome::Refunded,
                    $crate::hot::Redemption::AlreadyUsed => $crate::Outcome::AlreadyUsed,
                    $crate::hot::Redemption::Consumed => $crate::Outcome::Consumed,
                    $crate::hot::Redemption::SignedIn(row, r) => {
                        // The event, unless the backend recorded it in the same write.
                        if let (Some(u), Some(mut e)) = (&row, r.event) {
                            e.user_id = Some(u.user_id.clone());
                            if let Err(e) = $crate::Store::record_event(self, &e).await {
                                tracing::warn!(error = %e, "could not record an audit event");
                            }
                        }
                        $crate::Outcome::SignedIn(
                            self.signed_in(row, &r.candidate, &r.identifier).await?,
                        )
                    }
                };
                Ok($crate::Redeemed::Counted { challenge, config_version, outcome })
            }


            async fn consume_challenge(&self, id: &str) -> $crate::Result<bool> {
                $crate::hot::HotPaths::consume(self, id).await
            }

            async fn pending_client(
                &self,
                connection: &str,
                identifier: &str,
            ) -> $crate::Result<Option<String>> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "SELECT client_id FROM challenges WHERE connection = $1 AND identifier = $2",
                )
                .bind(connection)
                .bind(identifier)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    Some(r) => Some(r.try_get("client_id")?),
                    None => None,
                })
            }

            async fn list_users(
                &self,
                search: &str,
                limit: i64,
            ) -> $crate::Result<Vec<tessera_core::user::User>> {
                let pattern = format!(
                    "%{}%",
                    search.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
                );
                let rows = sqlx::query($crate::sql::const_format_user_select!(
                    "WHERE COALESCE(email, '') LIKE $1 ESCAPE '\\' OR COALESCE(phone_number, '') LIKE $1 ESCAPE '\\' \
                     ORDER BY created_at DESC, user_id LIMIT $2"
                ))
                .bind(pattern)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map($crate::sql::user_from_row).collect()
            }

            async fn delete_user(&self, user_id: &str) -> $crate::Result<bool> {
                let mut tx = self.writer.begin_with($begin_write).await?;
                for sql in [
                    // A pending code would sign the address in again as a new user.
                    "DELETE FROM challenges WHERE EXISTS (SELECT 1 FROM users u WHERE u.user_id = $1 \
                     AND u.connection = challenges.connection AND u.identifier = challenges.identifier)",
                    "DELETE FROM sessions WHERE user_id = $1",
                    "DELETE FROM access_tokens WHERE user_id = $1",
                    "DELETE FROM refresh_tokens WHERE user_id = $1",
                    "DELETE FROM auth_codes WHERE user_id = $1",
                    "DELETE FROM login_tickets WHERE user_id = $1",
                ] {
                    sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
                }
                let n = sqlx::query("DELETE FROM users WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(n == 1)
            }

            async fn refund_attempt(&self, id: &str) -> $crate::Result<()> {
                $crate::hot::HotPaths::refund(self, id).await
            }

            async fn find_user(
                &self,
                connection: &str,
                identifier: &str,
            ) -> $crate::Result<Option<tessera_core::user::User>> {
                let row = sqlx::query($crate::sql::const_format_user_select!(
                    "WHERE connection = $1 AND identifier = $2"
                ))
                .bind(connection)
                .bind(identifier)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map($crate::sql::user_from_row).transpose()
            }

            async fn get_user(
                &self,
                user_id: &str,
            ) -> $crate::Result<Option<tessera_core::user::User>> {
                let row = sqlx::query($crate::sql::const_format_user_select!("WHERE user_id = $1"))
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map($crate::sql::user_from_row).transpose()
            }

            async fn set_user_blocked(
                &self,
                user_id: &str,
                blocked: bool,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<bool> {
                let r = sqlx::query("UPDATE users SET blocked = $2, updated_at = $3 WHERE user_id = $1")
                    .bind(user_id)
                    .bind(blocked)
                    .bind(now)
                    .execute(&self.writer)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn sign_in(
                &self,
                u: &tessera_core::user::User,
                identifier: &str,
                allow_signup: bool,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<$crate::SignIn> {
                // One statement: an upsert when sign-up is open (a new user, or a returning one
                // who is not blocked), else an update of an existing user who is not blocked.
                let row = $crate::hot::HotPaths::sign_in(self, u, identifier, allow_signup, now).await?;
                self.signed_in(row, u, identifier).await
            }

            async fn insert_access_token(&self, t: &$crate::AccessToken) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO access_tokens (token_hash, user_id, client_id, scope, created_at, expires_at, grant_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&t.token_hash)
                .bind(&t.user_id)
                .bind(&t.client_id)
                .bind(&t.scope)
                .bind(t.created_at)
                .bind(t.expires_at)
                .bind(&t.grant_id)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn find_access_token(
                &self,
                token_hash: &[u8],
            ) -> $crate::Result<Option<$crate::AccessToken>> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "SELECT token_hash, user_id, client_id, scope, created_at, expires_at, grant_id \
                     FROM access_tokens WHERE token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
                let Some(r) = row else { return Ok(None) };
                Ok(Some($crate::AccessToken {
                    token_hash: r.try_get("token_hash")?,
                    user_id: r.try_get("user_id")?,
                    client_id: r.try_get("client_id")?,
                    scope: r.try_get("scope")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    grant_id: r.try_get("grant_id")?,
                }))
            }

            async fn access_token_user(
                &self,
                user_id: &str,
                client_id: &str,
                grant_id: Option<&str>,
            ) -> $crate::Result<Option<tessera_core::user::User>> {
                let row = sqlx::query($crate::sql::const_format_user_select!(
                    "WHERE user_id = $1 AND NOT blocked \
                     AND EXISTS (SELECT 1 FROM clients WHERE client_id = $2) \
                     AND NOT EXISTS (SELECT 1 FROM revoked_grants WHERE grant_id = $3)"
                ))
                .bind(user_id)
                .bind(client_id)
                .bind(grant_id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map($crate::sql::user_from_row).transpose()
            }

            async fn insert_refresh_token(&self, t: &$crate::RefreshToken) -> $crate::Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, family_id, user_id, client_id, scope, \
                     audience, created_at, expires_at) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE NOT EXISTS \
                     (SELECT 1 FROM refresh_tokens WHERE family_id = $2 AND revoked_at IS NOT NULL)",
                )
                .bind(&t.token_hash)
                .bind(&t.family_id)
                .bind(&t.user_id)
                .bind(&t.client_id)
                .bind(&t.scope)
                .bind(&t.audience)
                .bind(t.created_at)
                .bind(t.expires_at)
                .execute(&self.writer)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn use_refresh_token(
                &self,
                token_hash: &[u8],
                client_id: &str,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<$crate::RefreshUse> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "UPDATE refresh_tokens SET used_at = $2 \
                     WHERE token_hash = $1 AND client_id = $3 AND expires_at > $2 \
                     AND used_at IS NULL AND revoked_at IS NULL \
                     RETURNING token_hash, family_id, user_id, client_id, scope, audience, created_at, expires_at",
                )
                .bind(token_hash)
                .bind(now)
                .bind(client_id)
                .fetch_optional(&self.writer)
                .await?;
                if let Some(row) = row {
                    return Ok($crate::RefreshUse::Fresh($crate::sql::refresh_from_row(&row)?));
                }
                let row = sqlx::query(
                    "SELECT token_hash, family_id, user_id, client_id, scope, audience, created_at, expires_at, \
                     used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.writer)
                .await?;
                let Some(row) = row else { return Ok($crate::RefreshUse::Unknown) };
                let token = $crate::sql::refresh_from_row(&row)?;
                let used: Option<i64> = row.try_get("used_at")?;
                let revoked: Option<i64> = row.try_get("revoked_at")?;
                Ok(if token.client_id == client_id && (used.is_some() || revoked.is_some()) {
                    $crate::RefreshUse::Reused(token)
                } else {
                    $crate::RefreshUse::Unknown
                })
            }

            async fn revoke_refresh_family(
                &self,
                family_id: &str,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<u64> {
                let r = sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
                )
                .bind(family_id)
                .bind(now)
                .execute(&self.writer)
                .await?;
                Ok(r.rows_affected())
            }

            async fn revoke_grant(
                &self,
                grant_id: &str,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<u64> {
                let mut tx = self.writer.begin_with($begin_write).await?;
                // Sealed access tokens are not stored: /userinfo refuses the grant's from now.
                sqlx::query(
                    "INSERT INTO revoked_grants (grant_id, revoked_at) VALUES ($1, $2) \
                     ON CONFLICT (grant_id) DO NOTHING",
                )
                .bind(grant_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let a = sqlx::query("DELETE FROM access_tokens WHERE grant_id = $1")
                    .bind(grant_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let r = sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
                )
                .bind(grant_id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(a + r)
            }

            async fn create_session(&self, x: &$crate::Session) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO sessions (id_hash, user_id, created_at, expires_at, ip, user_agent) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&x.id_hash)
                .bind(&x.user_id)
                .bind(x.created_at)
                .bind(x.expires_at)
                .bind(&x.ip)
                .bind(&x.user_agent)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn get_session(
                &self,
                id_hash: &[u8],
                now: tessera_core::UnixTime,
            ) -> $crate::Result<Option<$crate::Session>> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "SELECT id_hash, user_id, created_at, expires_at, ip, user_agent FROM sessions \
                     WHERE id_hash = $1 AND expires_at > $2",
                )
                .bind(id_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                let Some(r) = row else { return Ok(None) };
                Ok(Some($crate::Session {
                    id_hash: r.try_get("id_hash")?,
                    user_id: r.try_get("user_id")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    ip: r.try_get("ip")?,
                    user_agent: r.try_get("user_agent")?,
                }))
            }

            async fn delete_session(&self, id_hash: &[u8]) -> $crate::Result<bool> {
                let r = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .execute(&self.writer)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_auth_code(&self, c: &$crate::AuthCode) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO auth_codes (code_hash, grant_id, client_id, user_id, redirect_uri, scope, \
                     audience, nonce, code_challenge, code_challenge_method, allow_refresh, created_at, \
                     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&c.code_hash)
                .bind(&c.grant_id)
                .bind(&c.client_id)
                .bind(&c.user_id)
                .bind(&c.redirect_uri)
                .bind(&c.scope)
                .bind(&c.audience)
                .bind(&c.nonce)
                .bind(&c.code_challenge)
                .bind(&c.code_challenge_method)
                .bind(c.allow_refresh)
                .bind(c.created_at)
                .bind(c.expires_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn use_auth_code(
                &self,
                code_hash: &[u8],
                now: tessera_core::UnixTime,
            ) -> $crate::Result<$crate::AuthCodeUse> {
                let row = sqlx::query(
                    "UPDATE auth_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL \
                     AND expires_at > $2 RETURNING code_hash, grant_id, client_id, user_id, redirect_uri, \
                     scope, audience, nonce, code_challenge, code_challenge_method, allow_refresh, \
                     created_at, expires_at",
                )
                .bind(code_hash)
                .bind(now)
                .fetch_optional(&self.writer)
                .await?;
                if let Some(r) = row {
                    return Ok($crate::AuthCodeUse::Fresh($crate::sql::auth_code_from_row(&r)?));
                }
                let row = sqlx::query(
                    "SELECT code_hash, grant_id, client_id, user_id, redirect_uri, scope, audience, \
                     nonce, code_challenge, code_challenge_method, allow_refresh, created_at, expires_at \
                     FROM auth_codes WHERE code_hash = $1 AND used_at IS NOT NULL",
                )
                .bind(code_hash)
                .fetch_optional(&self.writer)
                .await?;
                Ok(match row {
                    Some(r) => $crate::AuthCodeUse::Reused($crate::sql::auth_code_from_row(&r)?),
                    None => $crate::AuthCodeUse::Unknown,
                })
            }

            async fn insert_login_ticket(&self, t: &$crate::LoginTicket) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO login_tickets (ticket_hash, client_id, user_id, connection, co_id, \
                     verifier_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&t.ticket_hash)
                .bind(&t.client_id)
                .bind(&t.user_id)
                .bind(&t.connection)
                .bind(&t.co_id)
                .bind(&t.verifier_hash)
                .bind(t.created_at)
                .bind(t.expires_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn take_login_ticket(
                &self,
                ticket_hash: &[u8],
                now: tessera_core::UnixTime,
            ) -> $crate::Result<Option<$crate::LoginTicket>> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "DELETE FROM login_tickets WHERE ticket_hash = $1 AND expires_at > $2 RETURNING \
                     ticket_hash, client_id, user_id, connection, co_id, verifier_hash, created_at, expires_at",
                )
                .bind(ticket_hash)
                .bind(now)
                .fetch_optional(&self.writer)
                .await?;
                let Some(r) = row else { return Ok(None) };
                Ok(Some($crate::LoginTicket {
                    ticket_hash: r.try_get("ticket_hash")?,
                    client_id: r.try_get("client_id")?,
                    user_id: r.try_get("user_id")?,
                    connection: r.try_get("connection")?,
                    co_id: r.try_get("co_id")?,
                    verifier_hash: r.try_get("verifier_hash")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                }))
            }

            async fn signing_keys(&self) -> $crate::Result<Vec<$crate::StoredKey>> {
                let rows = sqlx::query(
                    "SELECT kid, alg, private_sealed, public_jwk, status, created_at FROM signing_keys \
                     WHERE status IN ('current', 'previous') ORDER BY created_at DESC, kid",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map($crate::sql::key_from_row).collect()
            }

            async fn all_signing_keys(&self) -> $crate::Result<Vec<$crate::StoredKey>> {
                let rows = sqlx::query(
                    "SELECT kid, alg, private_sealed, public_jwk, status, created_at FROM signing_keys \
                     ORDER BY CASE status WHEN 'current' THEN 0 WHEN 'previous' THEN 1 ELSE 2 END, \
                     created_at DESC, kid",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map($crate::sql::key_from_row).collect()
            }

            async fn revoke_key(&self, kid: &str) -> $crate::Result<bool> {
                let n = sqlx::query(
                    "UPDATE signing_keys SET status = 'revoked' WHERE kid = $1 AND status IN ('previous', 'retired')",
                )
                .bind(kid)
                .execute(&self.writer)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn insert_first_key(&self, k: &$crate::StoredKey) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_sealed, public_jwk, status, created_at) \
                     VALUES ($1, $2, $3, $4, 'current', $5) ON CONFLICT DO NOTHING",
                )
                .bind(&k.kid)
                .bind(&k.alg)
                .bind(&k.private_sealed)
                .bind(&k.public_jwk)
                .bind(k.created_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn rotate_key(
                &self,
                k: &$crate::StoredKey,
                _now: tessera_core::UnixTime,
            ) -> $crate::Result<()> {
                let mut tx = self.writer.begin_with($begin_write).await?;
                sqlx::query("UPDATE signing_keys SET status = 'retired' WHERE status = 'previous' AND alg = $1")
                    .bind(&k.alg)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE signing_keys SET status = 'previous' WHERE status = 'current' AND alg = $1")
                    .bind(&k.alg)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_sealed, public_jwk, status, created_at) \
                     VALUES ($1, $2, $3, $4, 'current', $5)",
                )
                .bind(&k.kid)
                .bind(&k.alg)
                .bind(&k.private_sealed)
                .bind(&k.public_jwk)
                .bind(k.created_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn claim_outbox(
                &self,
                owner: &str,
                now: tessera_core::UnixTime,
                lease_secs: i64,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::OutboxMessage>> {
                use sqlx::Row as _;
                let rows = sqlx::query($claim)
                    .bind(owner)
                    .bind(now + lease_secs)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.writer)
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    out.push($crate::OutboxMessage {
                        id: r.try_get("id")?,
                        channel: r.try_get("channel")?,
                        payload: r.try_get("payload")?,
                        created_at: r.try_get("created_at")?,
                        not_after: r.try_get("not_after")?,
                        attempts: r.try_get("attempts")?,
                    });
                }
                out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
                Ok(out)
            }

            async fn settle_outbox(
                &self,
                id: &str,
                outcome: &$crate::OutboxOutcome,
            ) -> $crate::Result<()> {
                match outcome {
                    // Delivered and given-up messages go: the payload holds a code.
                    $crate::OutboxOutcome::Delivered | $crate::OutboxOutcome::GiveUp { .. } => {
                        self.delivered.submit(id.to_string()).await?;
                    }
                    $crate::OutboxOutcome::Retry { at, error } => {
                        sqlx::query(
                            "UPDATE outbox SET next_attempt_at = $2, last_error = $3, \
                             lease_owner = NULL, lease_until = NULL WHERE id = $1",
                        )
                        .bind(id)
                        .bind(*at)
                        .bind(error)
                        .execute(&self.writer)
                        .await?;
                    }
                }
                Ok(())
            }

            async fn outbox_depth(&self) -> $crate::Result<i64> {
                use sqlx::Row as _;
                let r = sqlx::query("SELECT COUNT(*) AS n FROM outbox").fetch_one(&self.pool).await?;
                Ok(r.try_get("n")?)
            }

            async fn hit_rate_limit(
                &self,
                key: &str,
                window_secs: i64,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<$crate::WindowCount> {
                let window = window_secs.max(1);
                let start = now - now.rem_euclid(window);
                // A hot path's write: on SQLite in the writer's queue, with the other writes of
                // its turn (`hot.rs`), not a transaction of its own through the pool.
                let count = $crate::hot::HotPaths::hit(self, key, start, start + window).await?;
                Ok($crate::WindowCount { count, resets_at: start + window })
            }

            async fn peek_rate_limit(
                &self,
                key: &str,
                window_secs: i64,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<$crate::WindowCount> {
                use sqlx::Row as _;
                let window = window_secs.max(1);
                let start = now - now.rem_euclid(window);
                let row = sqlx::query("SELECT count FROM rate_limits WHERE key = $1 AND window_start = $2")
                    .bind(key)
                    .bind(start)
                    .fetch_optional(&self.pool)
                    .await?;
                let count = match row {
                    Some(r) => r.try_get("count")?,
                    None => 0,
                };
                Ok($crate::WindowCount { count, resets_at: start + window })
            }

            async fn add_strike(
                &self,
                key: &str,
                now: tessera_core::UnixTime,
                base_secs: i64,
                max_secs: i64,
            ) -> $crate::Result<tessera_core::UnixTime> {
                use sqlx::Row as _;
                let mut tx = self.writer.begin_with($begin_write).await?;
                let row = sqlx::query(
                    "INSERT INTO blocks (key, strikes, blocked_until, updated_at) VALUES ($1, 1, $2, $2) \
                     ON CONFLICT (key) DO UPDATE SET strikes = CASE WHEN blocks.updated_at < $2 - $3 \
                     THEN 1 ELSE blocks.strikes + 1 END, updated_at = $2 RETURNING strikes",
                )
                .bind(key)
                .bind(now)
                .bind(max_secs)
                .fetch_one(&mut *tx)
                .await?;
                let strikes: i64 = row.try_get("strikes")?;
                let factor = 1i64 << (strikes - 1).clamp(0, 30);
                let until = now + base_secs.saturating_mul(factor).min(max_secs);
                sqlx::query("UPDATE blocks SET blocked_until = $2 WHERE key = $1")
                    .bind(key)
                    .bind(until)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(until)
            }

            async fn blocked_until(
                &self,
                key: &str,
                now: tessera_core::UnixTime,
            ) -> $crate::Result<Option<tessera_core::UnixTime>> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "SELECT blocked_until FROM blocks WHERE key = $1 AND blocked_until > $2",
                )
                .bind(key)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    Some(r) => Some(r.try_get("blocked_until")?),
                    None => None,
                })
            }

            async fn record_event(&self, e: &$crate::Event) -> $crate::Result<()> {
                // With the other events of the moment, in one statement (`batch.rs`).
                self.events.submit(e.clone()).await
            }

            async fn list_events(&self, limit: i64) -> $crate::Result<Vec<$crate::Event>> {
                let rows = sqlx::query(
                    "SELECT id, at, kind, client_id, connection, user_id, ip, user_agent, description \
                     FROM events ORDER BY seq DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map($crate::sql::event_from_row).collect()
            }

            async fn find_events(
                &self,
                f: &$crate::EventFilter,
            ) -> $crate::Result<Vec<(i64, $crate::Event)>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT seq, id, at, kind, client_id, connection, user_id, ip, user_agent, description \
                     FROM events WHERE (CAST($1 AS TEXT) IS NULL OR kind = $1) \
                     AND (CAST($2 AS TEXT) IS NULL OR user_id = $2) \
                     AND (CAST($3 AS TEXT) IS NULL OR client_id = $3) \
                     AND (CAST($4 AS BIGINT) IS NULL OR at >= $4) \
                     AND (CAST($5 AS BIGINT) IS NULL OR at < $5) \
                     AND (CAST($6 AS BIGINT) IS NULL OR seq > $6) \
                     ORDER BY seq DESC LIMIT $7",
                )
                .bind(&f.kind)
                .bind(&f.user_id)
                .bind(&f.client_id)
                .bind(f.from)
                .bind(f.to)
                .bind(f.after_seq)
                .bind(f.limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("seq")?, $crate::sql::event_from_row(r)?)))
                    .collect()
            }

            async fn purge_expired(&self, now: tessera_core::UnixTime) -> $crate::Result<u64> {
                let mut n = 0;
                // Expired codes are kept an hour so a late attempt still reads "expired".
                for (sql, cutoff) in [
                    ("DELETE FROM challenges WHERE expires_at < $1", now - 3600),
                    ("DELETE FROM access_tokens WHERE expires_at < $1", now),
                    ("DELETE FROM refresh_tokens WHERE expires_at < $1", now),
                    ("DELETE FROM rate_limits WHERE expires_at < $1", now),
                    ("DELETE FROM sessions WHERE expires_at < $1", now),
                    // Used codes are kept a day so a replay is still recognised and revokes.
                    ("DELETE FROM auth_codes WHERE expires_at < $1", now - 86_400),
                    ("DELETE FROM login_tickets WHERE expires_at < $1", now),
                    // A block row goes two days after its block ended (its strikes are forgotten
                    // by then in the default configuration); a running block is never purged.
                    ("DELETE FROM blocks WHERE blocked_until < $1", now - 2 * 86_400),
                    // No access token outlives 30 days (the configuration's limit).
                    ("DELETE FROM revoked_grants WHERE revoked_at < $1", now - 31 * 86_400),
                ] {
                    n += sqlx::query(sql).bind(cutoff).execute(&self.writer).await?.rows_affected();
                }
                Ok(n)
            }
        }

        impl $Store {
            /// Why nothing was counted: either no code is pending or the identity is locked
            /// out.
            async fn not_counted(
                &self,
                lockout_keys: [&str; 2],
                now: tessera_core::UnixTime,
            ) -> $crate::Result<$crate::NotCounted> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "SELECT (SELECT version FROM config_version WHERE id = 1) AS config_version, \
                     (EXISTS (SELECT 1 FROM blocks WHERE key = $1 AND blocked_until > $3) \
                     OR EXISTS (SELECT 1 FROM blocks WHERE key = $2 AND blocked_until > $3)) AS locked",
                )
                .bind(lockout_keys[0])
                .bind(lockout_keys[1])
                .bind(now)
                .fetch_one(&self.writer)
                .await?;
                Ok(if row.try_get::<bool, _>("locked")? {
                    $crate::NotCounted::LockedOut
                } else {
                    $crate::NotCounted::NoCode { config_version: row.try_get("config_version")? }
                })
            }

            /// What a sign-in's statement returned (`HotPaths::sign_in`) as a [`crate::SignIn`]:
            /// no row when the user is blocked or sign-up is closed to them.
            async fn signed_in(
                &self,
                row: Option<tessera_core::user::User>,
                candidate: &tessera_core::user::User,
                identifier: &str,
            ) -> $crate::Result<$crate::SignIn> {
                if let Some(user) = row {
                    // The candidate's id is new and random: it comes back only when inserted.
                    let created = user.user_id == candidate.user_id;
                    return Ok($crate::SignIn::Ok { user, created });
                }
                match $crate::Store::find_user(self, &candidate.connection, identifier).await? {
                    Some(existing) if existing.blocked => Ok($crate::SignIn::Blocked),
                    Some(_) => Err($crate::StoreError::Other(anyhow::anyhow!(
                        "sign-in found the user neither blocked nor updatable"
                    ))),
                    None => Ok($crate::SignIn::SignupDisabled),
                }
            }
        }

    };
}

/// At most this many audit events go in one `INSERT` (9 parameters each).
pub(crate) const EVENTS_PER_STATEMENT: usize = 100;

/// At most this many delivered messages go in one `DELETE`.
pub(crate) const DELETES_PER_STATEMENT: usize = 100;

/// `SELECT <user columns> FROM users <rest>` as one literal.
macro_rules! const_format_user_select {
    ($rest:literal) => {
        concat!(
            "SELECT user_id, connection, email, email_verified, phone_number, phone_verified, name, \
             nickname, picture, created_at, updated_at, last_login, logins_count, blocked, app_metadata, \
             user_metadata FROM users ",
            $rest
        )
    };
}

/// `<statement> RETURNING <user columns>` as one literal.
macro_rules! const_format_user_update {
    ($stmt:literal) => {
        concat!(
            $stmt,
            "user_id, connection, email, email_verified, phone_number, phone_verified, name, \
             nickname, picture, created_at, updated_at, last_login, logins_count, blocked, \
             app_metadata, user_metadata"
        )
    };
}

/// `<statement> RETURNING <challenge columns>` as one literal.
macro_rules! const_format_challenge_returning {
    ($stmt:literal) => {
        concat!(
            $stmt,
            "id, connection, identifier, client_id, code_hash, send, auth_params, created_at, \
             expires_at, attempts, max_attempts, ip, user_agent"
        )
    };
}

pub(crate) use {const_format_user_select, sql_store};

// The sign-in hot paths' statements (`hot.rs`), run by each backend its own way: PostgreSQL
// through sqlx (`postgres.rs`), SQLite in place on its writer (`sqlite_hot.rs`). The
// parameters are numbered (`$1`) and bound by number in both.

/// Stores a code unless the configuration moved (`$13`, NULL for no check), replacing any
/// earlier code for the identity; returns whether its user is blocked (NULL: no such user).
pub(crate) const ISSUE_CHALLENGE: &str = "INSERT INTO challenges (id, connection, identifier, \
    client_id, code_hash, send, auth_params, created_at, expires_at, attempts, max_attempts, ip, \
    user_agent) \
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $12 \
    WHERE CAST($13 AS BIGINT) IS NULL \
    OR $13 = (SELECT version FROM config_version WHERE id = 1) \
    ON CONFLICT (connection, identifier) DO UPDATE SET id = excluded.id, \
    client_id = excluded.client_id, code_hash = excluded.code_hash, \
    send = excluded.send, auth_params = excluded.auth_params, \
    created_at = excluded.created_at, expires_at = excluded.expires_at, \
    attempts = 0, max_attempts = excluded.max_attempts, ip = excluded.ip, \
    user_agent = excluded.user_agent \
    RETURNING (SELECT u.blocked FROM users u WHERE u.connection = $2 AND u.identifier = $3) \
    AS user_blocked";

/// Queues a code's message; `$6` its attempts so far, `$7` and `$8` its lease if it has one.
pub(crate) const QUEUE_MESSAGE: &str = "INSERT INTO outbox (id, channel, payload, created_at, \
    not_after, attempts, next_attempt_at, lease_owner, lease_until) \
    VALUES ($1, $2, $3, $4, $5, $6, $4, $7, $8)";

/// Counts an attempt against the identity's code unless a lockout key (`$3`, `$4`) is blocked.
/// One `NOT EXISTS` a key rather than `key IN ($3, $4)`: SQLite builds an `IN` list into an
/// ephemeral index (a B-tree opened, filled and closed) at every run, where two lookups by the
/// primary key need none.
pub(crate) const COUNT_ATTEMPT: &str = const_format_challenge_returning!(
    "UPDATE challenges SET attempts = attempts + 1 \
     WHERE connection = $1 AND identifier = $2 \
     AND NOT EXISTS (SELECT 1 FROM blocks WHERE key = $3 AND blocked_until > $5) \
     AND NOT EXISTS (SELECT 1 FROM blocks WHERE key = $4 AND blocked_until > $5) \
     RETURNING (SELECT version FROM config_version WHERE id = 1) AS config_version, "
);

pub(crate) const CONSUME_CHALLENGE: &str = "DELETE FROM challenges WHERE id = $1";

pub(crate) const REFUND_ATTEMPT: &str =
    "UPDATE challenges SET attempts = attempts - 1 WHERE id = $1 AND attempts > 0";

/// One hit on a rate limit's fixed window (`Store::hit_rate_limit`): the count, this hit
/// included. `$2` is the window's start, `$3` its end.
pub(crate) const HIT_RATE_LIMIT: &str = "INSERT INTO rate_limits (key, window_start, count, expires_at) VALUES ($1, $2, 1, $3) \
     ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limits.count + 1 \
     RETURNING count";

/// A sign-in with sign-up open: a new user, or a returning one who is not blocked.
pub(crate) const SIGN_IN_OR_UP: &str = const_format_user_update!(
    "INSERT INTO users (user_id, connection, identifier, email, email_verified, \
     phone_number, phone_verified, name, nickname, picture, created_at, \
     updated_at, last_login, logins_count, blocked) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $11, 1, FALSE) \
     ON CONFLICT (connection, identifier) DO UPDATE SET \
     last_login = excluded.last_login, updated_at = excluded.updated_at, \
     logins_count = users.logins_count + 1, \
     email_verified = (users.email_verified OR excluded.email_verified), \
     phone_verified = (users.phone_verified OR excluded.phone_verified) \
     WHERE NOT users.blocked RETURNING "
);

/// A sign-in with sign-up closed: an existing user who is not blocked.
pub(crate) const SIGN_IN: &str = const_format_user_update!(
    "UPDATE users SET last_login = $3, updated_at = $3, \
     logins_count = logins_count + 1, \
     email_verified = (email_verified OR $4), phone_verified = (phone_verified OR $5) \
     WHERE connection = $1 AND identifier = $2 AND NOT blocked RETURNING "
);

/// Audit events: `VALUES` and the rows follow (PostgreSQL: `postgres.rs`; SQLite: a few
/// fixed sizes, `sqlite_hot.rs`), the values bound in the columns' order.
pub(crate) const INSERT_EVENTS: &str = "INSERT INTO events (id, at, kind, client_id, connection, \
    user_id, ip, user_agent, description) ";

/// Delivered messages' delete: the ids follow, then `)`.
pub(crate) const DELETE_MESSAGES: &str = "DELETE FROM outbox WHERE id IN (";
