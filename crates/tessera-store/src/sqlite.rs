//! The SQLite backend: the default, one file, no server.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::PoolOptions;
use crate::sql::sql_store;

pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by a `sqlite:` URL.
    pub async fn connect(url: &str, opts: &PoolOptions) -> anyhow::Result<SqliteStore> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("invalid SQLite URL {url:?}: {e}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(opts.acquire_timeout_secs.max(1)))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(opts.acquire_timeout_secs))
            .connect_with(connect)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {url:?}: {e}"))?;
        Ok(SqliteStore { pool })
    }
}

sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    backend = "sqlite",
    migrations = crate::migrate::SQLITE,
    // IMMEDIATE takes the write lock up front, so two writers never deadlock on an upgrade.
    begin_write = "BEGIN IMMEDIATE",
    migration_lock = "",
    claim_outbox = "UPDATE outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
        WHERE id IN (SELECT id FROM outbox WHERE next_attempt_at <= $3 \
        AND (lease_until IS NULL OR lease_until < $3) ORDER BY created_at, id LIMIT $4) \
        RETURNING id, channel, payload, created_at, not_after, attempts"
);
