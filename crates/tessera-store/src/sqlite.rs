//! The SQLite backend: the default, one file, no server.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::PoolOptions;
use crate::sql::sql_store;

pub struct SqliteStore {
    /// Readers: any number at once (WAL).
    pub(crate) pool: SqlitePool,
    /// The one writer. SQLite lets one transaction write at a time; with several writing
    /// connections, a writer that finds the lock taken sleeps in SQLite's busy handler (1, 2,
    /// 5, 10 ms and more) and tries again, which put a tail of 10–80 ms on requests under load.
    /// Writers now queue for this connection and are woken the moment it is free.
    pub(crate) writer: SqlitePool,
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
        let open = |max: u32| {
            SqlitePoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(opts.acquire_timeout_secs))
                .connect_with(connect.clone())
        };
        let writer = open(1)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {url:?}: {e}"))?;
        let pool = open(opts.max_connections.max(1))
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {url:?}: {e}"))?;
        Ok(SqliteStore { pool, writer })
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
