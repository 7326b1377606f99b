//! SQLite's sign-in hot paths: the statements of `sql.rs`, run in place on the writer thread
//! (`hot.rs`) through rusqlite, with the rows read back by name as `sql.rs` does through sqlx.

use rusqlite::{Row, named_params};
use tessera_core::UnixTime;
use tessera_core::user::User;

use crate::hot::{HotPaths, each_or_none, execute, timed};
use crate::sql;
use crate::{Challenge, Event, IssueOptions, NewChallenge, NewOutboxMessage, Result, StoreError};

fn challenge(r: &Row<'_>) -> rusqlite::Result<Challenge> {
    Ok(Challenge {
        id: r.get("id")?,
        connection: r.get("connection")?,
        identifier: r.get("identifier")?,
        client_id: r.get("client_id")?,
        code_hash: r.get("code_hash")?,
        send: r.get("send")?,
        auth_params: r.get("auth_params")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        attempts: r.get("attempts")?,
        max_attempts: r.get("max_attempts")?,
        ip: r.get("ip")?,
        user_agent: r.get("user_agent")?,
    })
}

/// A user row, its metadata still as stored (JSON text); see [`user`].
type UserRow = (User, String, String);

fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    let user = User {
        user_id: r.get("user_id")?,
        connection: r.get("connection")?,
        email: r.get("email")?,
        email_verified: r.get("email_verified")?,
        phone_number: r.get("phone_number")?,
        phone_verified: r.get("phone_verified")?,
        name: r.get("name")?,
        nickname: r.get("nickname")?,
        picture: r.get("picture")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
        last_login: r.get("last_login")?,
        logins_count: r.get("logins_count")?,
        blocked: r.get("blocked")?,
        app_metadata: Default::default(),
        user_metadata: Default::default(),
    };
    Ok((user, r.get("app_metadata")?, r.get("user_metadata")?))
}

fn user((mut user, app, meta): UserRow) -> Result<User> {
    user.app_metadata = sql::metadata(app, "app_metadata")?;
    user.user_metadata = sql::metadata(meta, "user_metadata")?;
    Ok(user)
}

/// One row at most from a statement through the statement cache.
fn optional<T, P: rusqlite::Params>(
    db: &rusqlite::Connection,
    sql: &'static str,
    params: P,
    read: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    use rusqlite::OptionalExtension as _;
    timed(sql, || {
        db.prepare_cached(sql)?.query_row(params, read).optional()
    })
}

#[async_trait::async_trait]
impl HotPaths for crate::SqliteStore {
    async fn issue(
        &self,
        c: &NewChallenge,
        m: &NewOutboxMessage,
        o: &IssueOptions,
    ) -> Result<Option<bool>> {
        let (c, m, o) = (c.clone(), m.clone(), o.clone());
        self.hot
            .run(move |db| {
                let blocked = optional(
                    db,
                    sql::ISSUE_CHALLENGE,
                    named_params! {
                        "$1": c.id, "$2": c.connection, "$3": c.identifier, "$4": c.client_id,
                        "$5": c.code_hash, "$6": c.send, "$7": c.auth_params,
                        "$8": c.created_at, "$9": c.expires_at, "$10": c.max_attempts,
                        "$11": c.ip, "$12": c.user_agent, "$13": o.config_version,
                    },
                    |r| r.get::<_, Option<bool>>("user_blocked"),
                )?;
                // Nothing written: the version moved (the one way the SELECT is empty).
                let Some(blocked) = blocked else {
                    return Ok(None);
                };
                let delivered = match blocked {
                    Some(b) => !b,
                    None => o.allow_signup,
                };
                let channel = if delivered {
                    m.channel.as_str()
                } else {
                    crate::VOID_CHANNEL
                };
                let (owner, until) = match &o.lease {
                    Some((owner, until)) => (Some(owner.as_str()), Some(*until)),
                    None => (None, None),
                };
                execute(
                    db,
                    sql::QUEUE_MESSAGE,
                    named_params! {
                        "$1": m.id, "$2": channel, "$3": m.payload, "$4": m.created_at,
                        "$5": m.not_after,
                        // A leased message counts its first delivery attempt now, as a claim does.
                        "$6": i64::from(o.lease.is_some()),
                        "$7": owner, "$8": until,
                    },
                )?;
                Ok(Some(delivered))
            })
            .await
    }

    async fn count(
        &self,
        connection: &str,
        identifier: &str,
        lockout_keys: [&str; 2],
        now: UnixTime,
    ) -> Result<Option<(Challenge, i64)>> {
        let (connection, identifier) = (connection.to_string(), identifier.to_string());
        let keys = [lockout_keys[0].to_string(), lockout_keys[1].to_string()];
        self.hot
            .run(move |db| {
                optional(
                    db,
                    sql::COUNT_ATTEMPT,
                    named_params! {
                        "$1": connection, "$2": identifier, "$3": keys[0], "$4": keys[1], "$5": now,
                    },
                    |r| Ok((challenge(r)?, r.get("config_version")?)),
                )
            })
            .await
    }

    async fn consume(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.hot
            .run(move |db| Ok(execute(db, sql::CONSUME_CHALLENGE, named_params! {"$1": id})? == 1))
            .await
    }

    async fn refund(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.hot
            .run(move |db| {
                execute(db, sql::REFUND_ATTEMPT, named_params! {"$1": id})?;
                Ok(())
            })
            .await
    }

    async fn sign_in(
        &self,
        candidate: &User,
        identifier: &str,
        allow_signup: bool,
        now: UnixTime,
    ) -> Result<Option<User>> {
        let (u, identifier) = (candidate.clone(), identifier.to_string());
        let row = self
            .hot
            .run(move |db| {
                if allow_signup {
                    optional(
                        db,
                        sql::SIGN_IN_OR_UP,
                        named_params! {
                            "$1": u.user_id, "$2": u.connection, "$3": identifier, "$4": u.email,
                            "$5": u.email_verified, "$6": u.phone_number, "$7": u.phone_verified,
                            "$8": u.name, "$9": u.nickname, "$10": u.picture, "$11": now,
                        },
                        user_row,
                    )
                } else {
                    optional(
                        db,
                        sql::SIGN_IN,
                        named_params! {
                            "$1": u.connection, "$2": identifier, "$3": now,
                            "$4": u.email_verified, "$5": u.phone_verified,
                        },
                        user_row,
                    )
                }
            })
            .await?;
        row.map(user).transpose()
    }
}

/// The group-commit writers of audit events and of delivered messages' deletes
/// (`batch.rs`). On the writer thread each row is one statement from the statement cache (a
/// statement of many rows would have to be prepared anew for every number of rows), and a
/// batch's rows go in all or none, as one statement's would: `batch.rs` tries a failed
/// batch's rows again one by one.
pub(crate) fn batchers(
    hot: &crate::hot::WriterThread,
) -> (crate::batch::Batcher<Event>, crate::batch::Batcher<String>) {
    let w = hot.clone();
    let events = crate::batch::Batcher::spawn(
        sql::EVENTS_PER_STATEMENT,
        Box::new(move |rows: Vec<Event>| {
            w.clone().run_owned(move |db| {
                each_or_none(db, &rows, |e| {
                    execute(
                        db,
                        sql::INSERT_EVENT,
                        named_params! {
                            "$1": e.id, "$2": e.at, "$3": e.kind, "$4": e.client_id,
                            "$5": e.connection, "$6": e.user_id, "$7": e.ip,
                            "$8": e.user_agent, "$9": e.description,
                        },
                    )
                })
            })
        }),
    );
    let w = hot.clone();
    let delivered = crate::batch::Batcher::spawn(
        sql::DELETES_PER_STATEMENT,
        Box::new(move |ids: Vec<String>| {
            w.clone().run_owned(move |db| {
                each_or_none(db, &ids, |id| {
                    execute(db, sql::DELETE_MESSAGE, named_params! {"$1": id})
                })
            })
        }),
    );
    (events, delivered)
}

/// Opens the writer thread's own connection to the database file `path`, set as sqlx sets
/// the store's writer (`sqlite.rs`): WAL (already the file's mode), normal sync, foreign keys,
/// no automatic checkpoints, and the same busy timeout.
pub(crate) fn open(
    path: &std::path::Path,
    busy: std::time::Duration,
) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags as F;
    let db = rusqlite::Connection::open_with_flags(
        path,
        F::SQLITE_OPEN_READ_WRITE | F::SQLITE_OPEN_NO_MUTEX | F::SQLITE_OPEN_URI,
    )?;
    db.busy_timeout(busy)?;
    db.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0;",
    )?;
    let mode: String = db.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Other(anyhow::anyhow!(
            "the SQLite database is in journal mode {mode:?}, not WAL"
        )));
    }
    // Enough for every statement of the hot paths, the transaction control included.
    db.set_prepared_statement_cache_capacity(32);
    Ok(db)
}
