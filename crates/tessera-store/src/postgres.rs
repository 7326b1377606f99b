//! The PostgreSQL backend: for several Tessera nodes sharing one database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use sqlx::Row as _;
use tessera_core::UnixTime;
use tessera_core::user::User;

use crate::hot::HotPaths;
use crate::sql::{self, sql_store};
use crate::{Challenge, Event, IssueOptions, NewChallenge, NewOutboxMessage, PoolOptions, Result};

pub struct PgStore {
    pub(crate) pool: PgPool,
    /// The same pool: PostgreSQL runs concurrent writers itself.
    pub(crate) writer: PgPool,
    /// Audit events and delivered messages' deletes, in batches (`batch.rs`).
    pub(crate) events: crate::batch::Batcher<crate::Event>,
    pub(crate) delivered: crate::batch::Batcher<String>,
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
        let (events, delivered) = batchers(&pool);
        Ok(PgStore {
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

/// The sign-in hot paths on a pooled connection, in the caller's task: PostgreSQL runs
/// concurrent writers itself.
#[async_trait::async_trait]
impl HotPaths for PgStore {
    async fn issue(
        &self,
        c: &NewChallenge,
        m: &NewOutboxMessage,
        o: &IssueOptions,
    ) -> Result<Option<bool>> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(sql::ISSUE_CHALLENGE)
            .bind(&c.id)
            .bind(&c.connection)
            .bind(&c.identifier)
            .bind(&c.client_id)
            .bind(&c.code_hash)
            .bind(&c.send)
            .bind(&c.auth_params)
            .bind(c.created_at)
            .bind(c.expires_at)
            .bind(c.max_attempts)
            .bind(&c.ip)
            .bind(&c.user_agent)
            .bind(o.config_version)
            .fetch_optional(&mut *conn)
            .await?;
        // Nothing written: the version moved (the one way the SELECT is empty).
        let Some(row) = row else { return Ok(None) };
        let blocked: Option<bool> = row.try_get("user_blocked")?;
        let q = crate::hot::queued(blocked, m, o);
        sqlx::query(sql::QUEUE_MESSAGE)
            .bind(&m.id)
            .bind(q.channel)
            .bind(&m.payload)
            .bind(m.created_at)
            .bind(m.not_after)
            .bind(q.attempts)
            .bind(q.lease_owner)
            .bind(q.lease_until)
            .execute(&mut *conn)
            .await?;
        drop(conn);
        // PostgreSQL runs writers side by side: the event joins the other events of the
        // moment (`batch.rs`), as `record_event` does.
        if let Some(events) = &o.events
            && let Err(e) = self.events.submit(events.chosen(q.delivered).clone()).await
        {
            tracing::warn!(error = %e, "could not record an audit event");
        }
        Ok(Some(q.delivered))
    }

    async fn count(
        &self,
        connection: &str,
        identifier: &str,
        lockout_keys: [&str; 2],
        now: UnixTime,
    ) -> Result<Option<(Challenge, i64)>> {
        let row = sqlx::query(sql::COUNT_ATTEMPT)
            .bind(connection)
            .bind(identifier)
            .bind(lockout_keys[0])
            .bind(lockout_keys[1])
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((sql::challenge_from_row(&r)?, r.try_get("config_version")?)))
            .transpose()
    }

    async fn consume(&self, id: &str) -> Result<bool> {
        let r = sqlx::query(sql::CONSUME_CHALLENGE)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn hit(&self, key: &str, window_start: UnixTime, expires_at: UnixTime) -> Result<i64> {
        let row = sqlx::query(sql::HIT_RATE_LIMIT)
            .bind(key)
            .bind(window_start)
            .bind(expires_at)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("count")?)
    }

    async fn refund(&self, id: &str) -> Result<()> {
        sqlx::query(sql::REFUND_ATTEMPT)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn sign_in(
        &self,
        u: &User,
        identifier: &str,
        allow_signup: bool,
        now: UnixTime,
    ) -> Result<Option<User>> {
        let row = if allow_signup {
            sqlx::query(sql::SIGN_IN_OR_UP)
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
                .bind(now)
                .fetch_optional(&self.pool)
                .await?
        } else {
            sqlx::query(sql::SIGN_IN)
                .bind(&u.connection)
                .bind(identifier)
                .bind(now)
                .bind(u.email_verified)
                .bind(u.phone_verified)
                .fetch_optional(&self.pool)
                .await?
        };
        row.as_ref().map(sql::user_from_row).transpose()
    }
}

/// The group-commit writers of audit events and of delivered messages' deletes
/// (`batch.rs`): a batch is one statement.
fn batchers(pool: &PgPool) -> (crate::batch::Batcher<Event>, crate::batch::Batcher<String>) {
    let p = pool.clone();
    let events = crate::batch::Batcher::spawn(
        sql::EVENTS_PER_STATEMENT,
        Box::new(move |rows: Vec<Event>| {
            let p = p.clone();
            Box::pin(async move {
                let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(sql::INSERT_EVENTS);
                q.push_values(&rows, |mut b, e| {
                    b.push_bind(&e.id)
                        .push_bind(e.at)
                        .push_bind(&e.kind)
                        .push_bind(&e.client_id)
                        .push_bind(&e.connection)
                        .push_bind(&e.user_id)
                        .push_bind(&e.ip)
                        .push_bind(&e.user_agent)
                        .push_bind(&e.description);
                });
                q.build().execute(&p).await?;
                Ok(())
            })
        }),
    );
    let p = pool.clone();
    let delivered = crate::batch::Batcher::spawn(
        sql::DELETES_PER_STATEMENT,
        Box::new(move |ids: Vec<String>| {
            let p = p.clone();
            Box::pin(async move {
                let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(sql::DELETE_MESSAGES);
                let mut list = q.separated(", ");
                for id in &ids {
                    list.push_bind(id);
                }
                q.push(")");
                q.build().execute(&p).await?;
                Ok(())
            })
        }),
    );
    (events, delivered)
}
