//! SQLite's sign-in hot paths: the statements of `sql.rs`, run in place on the writer
//! (`hot.rs`) through rusqlite, with the rows read back by name as `sql.rs` does through sqlx.

use rusqlite::{Row, ToSql, named_params};
use tessera_core::UnixTime;
use tessera_core::user::User;

use crate::hot::{HotPaths, Redemption, execute, queued, timed};
use crate::sql;
use crate::{
    Challenge, Decide, Decision, Event, IssueOptions, NewChallenge, NewOutboxMessage, Result,
    SignInRequest, StoreError,
};

/// The challenge whose columns begin at `at`, in the order `sql::const_format_challenge_returning!`
/// gives them. Rows are read by place: rusqlite finds a column by name by comparing it with
/// each column's name, 30 searches a sign-in (1 % of its CPU). A test checks the order against
/// the statements themselves (`tests::CHALLENGE_COLUMNS`).
fn challenge(r: &Row<'_>, at: usize) -> rusqlite::Result<Challenge> {
    Ok(Challenge {
        id: r.get(at)?,
        connection: r.get(at + 1)?,
        identifier: r.get(at + 2)?,
        client_id: r.get(at + 3)?,
        code_hash: r.get(at + 4)?,
        send: r.get(at + 5)?,
        auth_params: r.get(at + 6)?,
        created_at: r.get(at + 7)?,
        expires_at: r.get(at + 8)?,
        attempts: r.get(at + 9)?,
        max_attempts: r.get(at + 10)?,
        ip: r.get(at + 11)?,
        user_agent: r.get(at + 12)?,
    })
}

/// A user row, its metadata still as stored (JSON text); see [`user`].
type UserRow = (User, String, String);

/// A user's columns in the order `sql::const_format_user_select!` and
/// `const_format_user_update!` give them, read by place as in [`challenge`]
/// (`tests::USER_COLUMNS`).
fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    let user = User {
        user_id: r.get(0)?,
        connection: r.get(1)?,
        email: r.get(2)?,
        email_verified: r.get(3)?,
        phone_number: r.get(4)?,
        phone_verified: r.get(5)?,
        name: r.get(6)?,
        nickname: r.get(7)?,
        picture: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        last_login: r.get(11)?,
        logins_count: r.get(12)?,
        blocked: r.get(13)?,
        app_metadata: Default::default(),
        user_metadata: Default::default(),
    };
    Ok((user, r.get(14)?, r.get(15)?))
}

fn user((mut user, app, meta): UserRow) -> Result<User> {
    user.app_metadata = sql::metadata(app, "app_metadata")?;
    user.user_metadata = sql::metadata(meta, "user_metadata")?;
    Ok(user)
}

/// One row at most from a statement through the statement cache. The statement is stepped
/// to its end: run on its own, a statement commits there, so that is where a failed commit
/// shows (reading the row and dropping the rest would lose that error with the reset).
fn optional<T, P: rusqlite::Params>(
    db: &rusqlite::Connection,
    sql: &'static str,
    params: P,
    read: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    timed(sql, || {
        let mut stmt = db.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        let first = rows.next()?.map(read).transpose()?;
        while rows.next()?.is_some() {}
        Ok(first)
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
                let q = queued(blocked, &m, &o);
                execute(
                    db,
                    sql::QUEUE_MESSAGE,
                    named_params! {
                        "$1": m.id, "$2": q.channel, "$3": m.payload, "$4": m.created_at,
                        "$5": m.not_after, "$6": q.attempts, "$7": q.lease_owner,
                        "$8": q.lease_until,
                    },
                )?;
                // In the same turn, so that the caller waits for one turn, not two. Like
                // `record_event`, a failure is the operator's to see, not the caller's. Should
                // it have ended the turn's transaction, the turn tells everyone in it.
                if let Some(events) = &o.events
                    && let Err(e) = write_batch(
                        db,
                        std::slice::from_ref(events.chosen(q.delivered)),
                        &EVENT_INSERTS,
                        event_values,
                    )
                {
                    tracing::warn!(error = %e, "could not record an audit event");
                }
                Ok(Some(q.delivered))
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
            .run(move |db| count(db, &connection, &identifier, &keys, now))
            .await
    }

    async fn redeem(
        &self,
        connection: &str,
        identifier: &str,
        lockout_keys: [&str; 2],
        now: UnixTime,
        decide: Decide,
        sign_in: Option<SignInRequest>,
    ) -> Result<Option<(Challenge, i64, Redemption)>> {
        let (connection, identifier) = (connection.to_string(), identifier.to_string());
        let keys = [lockout_keys[0].to_string(), lockout_keys[1].to_string()];
        self.hot
            .run(move |db| {
                let Some((ch, version)) = count(db, &connection, &identifier, &keys, now)? else {
                    return Ok(None);
                };
                // Each statement as in the operations of its own below. One that fails undoes
                // itself only: the attempt counted before it stays counted (`hot::run_turn`).
                let outcome = match decide(&ch, version) {
                    Decision::Keep => Redemption::Kept,
                    Decision::Refund => {
                        execute(db, sql::REFUND_ATTEMPT, named_params! {"$1": ch.id})?;
                        Redemption::Refunded
                    }
                    Decision::Consume => {
                        if execute(db, sql::CONSUME_CHALLENGE, named_params! {"$1": ch.id})? != 1 {
                            Redemption::AlreadyUsed
                        } else if let Some(mut r) = sign_in {
                            let row =
                                sign_in_row(db, &r.candidate, &r.identifier, r.allow_signup, now)?;
                            let signed_in = row.map(user).transpose()?;
                            // The event in the same write, as `issue` records its own: a
                            // failure is the operator's to see, not the caller's. Should it
                            // have ended the turn's transaction, the turn tells everyone in it.
                            if let (Some(u), Some(mut e)) = (&signed_in, r.event.take()) {
                                e.user_id = Some(u.user_id.clone());
                                if let Err(e) = write_batch(
                                    db,
                                    std::slice::from_ref(&e),
                                    &EVENT_INSERTS,
                                    event_values,
                                ) {
                                    tracing::warn!(error = %e, "could not record an audit event");
                                }
                            }
                            Redemption::SignedIn(signed_in, r)
                        } else {
                            Redemption::Consumed
                        }
                    }
                };
                Ok(Some((ch, version, outcome)))
            })
            .await
    }

    async fn consume(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.hot
            .run(move |db| Ok(execute(db, sql::CONSUME_CHALLENGE, named_params! {"$1": id})? == 1))
            .await
    }

    async fn hit(&self, key: &str, window_start: UnixTime, expires_at: UnixTime) -> Result<i64> {
        let key = key.to_string();
        self.hot
            .run(move |db| {
                optional(
                    db,
                    sql::HIT_RATE_LIMIT,
                    named_params! {"$1": key, "$2": window_start, "$3": expires_at},
                    |r| r.get(0),
                )?
                .ok_or_else(|| StoreError::Other(anyhow::anyhow!("the upsert returned no count")))
            })
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
            .run(move |db| sign_in_row(db, &u, &identifier, allow_signup, now))
            .await?;
        row.map(user).transpose()
    }
}

/// Counts an attempt (`sql::COUNT_ATTEMPT`): the code and the configuration version.
fn count(
    db: &rusqlite::Connection,
    connection: &str,
    identifier: &str,
    keys: &[String; 2],
    now: UnixTime,
) -> Result<Option<(Challenge, i64)>> {
    optional(
        db,
        sql::COUNT_ATTEMPT,
        named_params! {
            "$1": connection, "$2": identifier, "$3": keys[0], "$4": keys[1], "$5": now,
        },
        // `config_version`, then the challenge.
        |r| Ok((challenge(r, 1)?, r.get(0)?)),
    )
}

/// Signs `u` in, or up when `allow_signup` (`sql::SIGN_IN_OR_UP`, `sql::SIGN_IN`): no row
/// when the user is blocked or sign-up is closed to them.
fn sign_in_row(
    db: &rusqlite::Connection,
    u: &User,
    identifier: &str,
    allow_signup: bool,
    now: UnixTime,
) -> Result<Option<UserRow>> {
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
}

/// The sizes a SQLite batch is cut into, largest first. A statement of any number of rows
/// would have to be prepared anew for each number; cut so, a batch of up to 100 rows runs at
/// most 7 statements, each one of 7 texts kept prepared.
const CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// `head`, then `n` times `group` (separated by commas), then `close`, for each of [`CHUNKS`].
fn chunk_texts(head: &str, group: &str, close: &str) -> [String; 7] {
    CHUNKS.map(|n| format!("{head}{}{close}", vec![group; n].join(", ")))
}

static EVENT_INSERTS: std::sync::LazyLock<[String; 7]> = std::sync::LazyLock::new(|| {
    chunk_texts(
        &format!("{}VALUES ", sql::INSERT_EVENTS),
        "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "",
    )
});

static MESSAGE_DELETES: std::sync::LazyLock<[String; 7]> =
    std::sync::LazyLock::new(|| chunk_texts(sql::DELETE_MESSAGES, "?", ")"));

fn event_values<'a>(e: &'a Event, values: &mut Vec<&'a dyn ToSql>) {
    values.extend([
        &e.id as &dyn ToSql,
        &e.at,
        &e.kind,
        &e.client_id,
        &e.connection,
        &e.user_id,
        &e.ip,
        &e.user_agent,
        &e.description,
    ]);
}

#[expect(
    clippy::ptr_arg,
    reason = "a batch's rows are Strings, and `write_batch` takes `&R`"
)]
fn message_id<'a>(id: &'a String, values: &mut Vec<&'a dyn ToSql>) {
    values.push(id);
}

/// Writes a batch's `rows` in statements of [`CHUNKS`] rows (`texts`, one per size), all or
/// none: `batch.rs` tries a failed batch's rows again one by one, where a half-written batch
/// would fail the retry on the rows already in. One statement is all or none by itself; more
/// run inside a savepoint (inside the turn's transaction, or on their own).
fn write_batch<R>(
    db: &rusqlite::Connection,
    rows: &[R],
    texts: &'static [String; 7],
    values: impl for<'a> Fn(&'a R, &mut Vec<&'a dyn ToSql>),
) -> Result<()> {
    let mut pieces = Vec::new();
    let mut rest = rows;
    for (size, text) in CHUNKS.iter().zip(texts) {
        while rest.len() >= *size {
            let (piece, more) = rest.split_at(*size);
            pieces.push((text.as_str(), piece));
            rest = more;
        }
    }
    let run = |(text, piece): &(&'static str, &[R])| {
        let mut bound = Vec::new();
        for row in *piece {
            values(row, &mut bound);
        }
        execute(db, text, &*bound).map(drop)
    };
    if let [one] = pieces.as_slice() {
        return run(one);
    }
    execute(db, "SAVEPOINT batch", [])?;
    let written = pieces.iter().try_for_each(run);
    // Kept, or undone; either way the savepoint ends (and with it, outside a transaction, the
    // one it began).
    let ended = match &written {
        Ok(()) => execute(db, "RELEASE batch", []),
        Err(_) => {
            execute(db, "ROLLBACK TO batch", []).and_then(|_| execute(db, "RELEASE batch", []))
        }
    };
    if let Err(e) = ended {
        // Neither kept nor undone alone: everything around it is undone, so that none of the
        // batch's rows stays (the writer fails the rest of the transaction with it).
        if !db.is_autocommit() {
            let _ = execute(db, "ROLLBACK", []);
        }
        return Err(written.err().unwrap_or(e));
    }
    written
}

/// The group-commit writers of audit events and of delivered messages' deletes
/// (`batch.rs`), on the writer: a batch goes in with the rest of its turn.
pub(crate) fn batchers(
    hot: &crate::hot::Writer,
) -> (crate::batch::Batcher<Event>, crate::batch::Batcher<String>) {
    let w = hot.clone();
    let events = crate::batch::Batcher::spawn(
        sql::EVENTS_PER_STATEMENT,
        Box::new(move |rows: Vec<Event>| {
            w.clone()
                .run_owned(move |db| write_batch(db, &rows, &EVENT_INSERTS, event_values))
        }),
    );
    let w = hot.clone();
    let delivered = crate::batch::Batcher::spawn(
        sql::DELETES_PER_STATEMENT,
        Box::new(move |ids: Vec<String>| {
            w.clone()
                .run_owned(move |db| write_batch(db, &ids, &MESSAGE_DELETES, message_id))
        }),
    );
    (events, delivered)
}

/// SQLite's memory in the whole process, at most about this much (a soft limit: past it, each
/// connection reuses its own least recently used cache pages instead of taking more). Each
/// connection's page cache may otherwise grow to 2 MB, and the store has several (readers,
/// the writer, the checkpointer's, the hot paths' writer's); under a steady stream of sign-ups
/// they filled a little further with every run, about 1 MB of RSS per 25,000 logins over
/// 500,000 in the bench, where with the limit RSS stays flat once it is reached.
pub(crate) const SQLITE_HEAP_LIMIT: i64 = 8 << 20;

/// Opens the hot paths' writer's own connection to the database file `path`, set as sqlx sets
/// the store's writer (`sqlite.rs`): WAL (already the file's mode), normal sync, foreign keys,
/// no automatic checkpoints, and the same busy timeout; and, unlike sqlx's connections,
/// temporary objects (statement journals) in memory, where by default SQLite makes a file for
/// each (in `/var/tmp`, opened, unlinked and closed: about 80 a second under the bench's
/// load), and where what they hold would otherwise reach a disk outside the data folder. Its
/// statements are a turn's rows, so they stay small; the sqlx connections, which run
/// migrations and the dashboard's sorts, keep them in files.
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
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0; \
         PRAGMA temp_store = MEMORY;",
    )?;
    let mode: String = db.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Other(anyhow::anyhow!(
            "the SQLite database is in journal mode {mode:?}, not WAL"
        )));
    }
    // Process-wide: see SQLITE_HEAP_LIMIT.
    db.execute_batch(&format!("PRAGMA soft_heap_limit = {SQLITE_HEAP_LIMIT};"))?;
    // Enough for every statement of the hot paths (13 with the transaction control and the
    // savepoint's) and the batches' 14.
    db.set_prepared_statement_cache_capacity(40);
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    static INSERTS: std::sync::LazyLock<[String; 7]> =
        std::sync::LazyLock::new(|| chunk_texts("INSERT INTO t (id) VALUES ", "(?)", ""));

    fn ids(db: &rusqlite::Connection) -> Vec<String> {
        let mut q = db.prepare("SELECT id FROM t ORDER BY id").unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// The columns `challenge` reads, from the 0th of its place.
    const CHALLENGE_COLUMNS: [&str; 13] = [
        "id",
        "connection",
        "identifier",
        "client_id",
        "code_hash",
        "send",
        "auth_params",
        "created_at",
        "expires_at",
        "attempts",
        "max_attempts",
        "ip",
        "user_agent",
    ];

    /// The columns `user_row` reads.
    const USER_COLUMNS: [&str; 16] = [
        "user_id",
        "connection",
        "email",
        "email_verified",
        "phone_number",
        "phone_verified",
        "name",
        "nickname",
        "picture",
        "created_at",
        "updated_at",
        "last_login",
        "logins_count",
        "blocked",
        "app_metadata",
        "user_metadata",
    ];

    /// The rows are read by place: the statements must give their columns in that order.
    #[tokio::test]
    async fn the_statements_give_their_columns_in_the_order_they_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let url = format!("sqlite://{}", path.display());
        let store = crate::SqliteStore::connect(&url, &crate::PoolOptions::default())
            .await
            .unwrap();
        crate::Store::migrate(&store).await.unwrap();
        let db = rusqlite::Connection::open(&path).unwrap();
        let columns = |sql: &str| -> Vec<String> {
            let stmt = db.prepare(sql).unwrap();
            stmt.column_names()
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        let mut count = vec!["config_version"];
        count.extend(CHALLENGE_COLUMNS);
        assert_eq!(columns(sql::COUNT_ATTEMPT), count);
        assert_eq!(columns(sql::SIGN_IN_OR_UP), USER_COLUMNS);
        assert_eq!(columns(sql::SIGN_IN), USER_COLUMNS);
    }

    #[test]
    fn the_writer_connection_is_set_up_as_the_store_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let first = rusqlite::Connection::open(&path).unwrap();
        let not_wal = open(&path, std::time::Duration::from_millis(50)).unwrap_err();
        assert!(not_wal.to_string().contains("not WAL"), "{not_wal}");
        first.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        let db = open(&path, std::time::Duration::from_millis(50)).unwrap();
        let pragma = |name: &str| -> i64 {
            db.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(pragma("soft_heap_limit"), SQLITE_HEAP_LIMIT);
        assert_eq!(pragma("foreign_keys"), 1);
        assert_eq!(pragma("synchronous"), 1, "NORMAL");
        assert_eq!(pragma("wal_autocheckpoint"), 0);
        assert_eq!(pragma("busy_timeout"), 50);
        assert_eq!(pragma("temp_store"), 2, "MEMORY");
    }

    #[test]
    fn a_lone_statement_whose_commit_fails_fails() {
        // A deferred foreign key is checked at the commit, after the row came back.
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(
            "PRAGMA foreign_keys = ON; CREATE TABLE p (id INTEGER PRIMARY KEY); \
             CREATE TABLE c (id INTEGER PRIMARY KEY, \
             p INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        let r = optional(
            &db,
            "INSERT INTO c (id, p) VALUES (1, 99) RETURNING id",
            [],
            |r| r.get::<_, i64>(0),
        );
        assert!(r.unwrap_err().to_string().contains("FOREIGN KEY"));
        assert!(db.is_autocommit());
        let n: i64 = db
            .query_row("SELECT count(*) FROM c", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        db.execute("INSERT INTO p (id) VALUES (99)", []).unwrap();
        let r = optional(
            &db,
            "INSERT INTO c (id, p) VALUES (1, 99) RETURNING id",
            [],
            |r| r.get::<_, i64>(0),
        );
        assert_eq!(r.unwrap(), Some(1));
    }

    #[test]
    fn a_batch_is_cut_into_the_fixed_sizes_and_goes_in_all_or_none() {
        assert_eq!(
            chunk_texts("DELETE FROM t WHERE id IN (", "?", ")")[5],
            "DELETE FROM t WHERE id IN (?, ?)"
        );
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY); INSERT INTO t VALUES ('x099');")
            .unwrap();
        let rows: Vec<String> = (0..100).map(|i| format!("x{i:03}")).collect();

        // 100 rows are 64 + 32 + 4; the bad one is in the last piece, after two went in.
        let e = write_batch(&db, &rows, &INSERTS, message_id).unwrap_err();
        assert!(e.to_string().contains("UNIQUE"), "{e}");
        assert_eq!(
            ids(&db),
            ["x099"],
            "the pieces before the bad one are undone"
        );
        assert!(db.is_autocommit(), "the savepoint ended");

        // Inside an open transaction, the rest of which stays.
        db.execute_batch("BEGIN; INSERT INTO t VALUES ('y');")
            .unwrap();
        assert!(write_batch(&db, &rows, &INSERTS, message_id).is_err());
        assert!(
            !db.is_autocommit(),
            "the enclosing transaction is still open"
        );
        db.execute_batch("COMMIT").unwrap();
        assert_eq!(ids(&db), ["x099", "y"]);

        db.execute("DELETE FROM t", []).unwrap();
        write_batch(&db, &rows, &INSERTS, message_id).unwrap();
        assert_eq!(ids(&db), rows);
        // One row alone, and an odd number.
        db.execute("DELETE FROM t", []).unwrap();
        write_batch(&db, &rows[..1], &INSERTS, message_id).unwrap();
        write_batch(&db, &rows[1..8], &INSERTS, message_id).unwrap();
        assert_eq!(ids(&db), rows[..8]);
    }
}
