//! The PostgreSQL backend: for several Tessera nodes sharing one database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::PoolOptions;
use crate::sql::sql_store;

pub struct PgStore {
    pub(crate) pool: PgPool,
    /// The same pool: PostgreSQL runs concurrent writers itself.
    pub(crate) writer: PgPool,
    /// Audit events and delivered messages' deletes, in batches (`batch.rs`).
    pub(crate) events: crate::batch::Batcher<crate::Event>,
    pub(crate) delivered: crate::batch::Batcher<String>,
    /// The sign-in hot paths' writes: on a pooled connection, in the caller's task.
    pub(crate) hot: crate::hot::HotWriter<sqlx::Postgres>,
}

impl PgStore {
    /// Connects to the database named by a `postgres:` URL. Fails if it cannot be reached.
    pub async fn connect(url: &str, opts: &PoolOptions) -> anyhow::Result<PgStore> {
        let timeout = opts.statement_timeout_ms.to_string();
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("invalid PostgreSQL URL: {e}"))?
            .options([("statement_timeout", timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(opts.acquire_timeout_secs))
            .connect_with(connect)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
        let hot = crate::hot::HotWriter::inline(&pool);
        let (events, delivered) = PgStore::batchers(&hot);
        Ok(PgStore {
            hot,
            writer: pool.clone(),
            pool,
            events,
            delivered,
        })
    }
}

sql_store!(
    PgStore,
    sqlx::Postgres,
    backend = "postgres",
    migrations = crate::migrate::POSTGRES,
    begin_write = "BEGIN",
    // A transaction-scoped advisory lock: nodes starting together migrate one at a time,
    // and the lock goes with the transaction whatever happens.
    migration_lock = "SELECT pg_advisory_xact_lock(7465737365726101)",
    // SKIP LOCKED: two nodes claiming at once take disjoint messages.
    claim_outbox = "UPDATE outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
        WHERE id IN (SELECT id FROM outbox WHERE next_attempt_at <= $3 \
        AND (lease_until IS NULL OR lease_until < $3) ORDER BY created_at, id LIMIT $4 \
        FOR UPDATE SKIP LOCKED) \
        RETURNING id, channel, payload, created_at, not_after, attempts"
);
