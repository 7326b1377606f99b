//! The sign-in hot paths' writes, and on SQLite the thread that runs them.
//!
//! [`HotPaths`] are the statements a sign-in writes, each backend its own way. PostgreSQL,
//! which runs concurrent writers itself, runs them through sqlx on a pooled connection in the
//! caller's task (`postgres.rs`). SQLite lets one connection write at a time, so every write
//! queues for it, and what each write costs around its statement is what bounds sign-ins:
//! through sqlx, each statement is a trip to the connection's own worker thread and back, and
//! each commit writes the pages it changed to the log and takes and gives back the file locks.
//! So on SQLite, one thread ([`WriterThread`]) takes the queued operations and runs them back
//! to back, in place, through SQLite's C interface (rusqlite) on a connection of its own, in
//! one transaction a turn (see [`WriterThread::start`]). Each caller awaits its own result.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::{Challenge, IssueOptions, NewChallenge, NewOutboxMessage, Result, StoreError};
use tessera_core::UnixTime;
use tessera_core::user::User;

pub(crate) type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// The statements of a sign-in, as each backend runs them (the SQL is in `sql.rs`).
#[async_trait::async_trait]
pub(crate) trait HotPaths {
    /// Stores the code unless the configuration version moved, then queues its message: None
    /// on another version, else whether the message goes out (see `Store::issue_challenge`).
    async fn issue(
        &self,
        c: &NewChallenge,
        m: &NewOutboxMessage,
        o: &IssueOptions,
    ) -> Result<Option<bool>>;
    /// Counts an attempt: the code and the configuration version, or None when nothing was
    /// counted (no code, or locked out).
    async fn count(
        &self,
        connection: &str,
        identifier: &str,
        lockout_keys: [&str; 2],
        now: UnixTime,
    ) -> Result<Option<(Challenge, i64)>>;
    async fn consume(&self, id: &str) -> Result<bool>;
    async fn refund(&self, id: &str) -> Result<()>;
    /// The user signed in (or up), or None when blocked or sign-up is closed to them.
    async fn sign_in(
        &self,
        candidate: &User,
        identifier: &str,
        allow_signup: bool,
        now: UnixTime,
    ) -> Result<Option<User>>;
}

/// How a job answers its caller once the turn's transaction has ended: given the commit's
/// failure, if it failed.
type Answer = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// What a job leaves once it has run: whether it failed, and its answer.
struct Ran {
    failed: bool,
    answer: Answer,
}

/// One queued operation: given the connection (or why there is none), it runs and leaves its
/// answer.
type Job = Box<dyn FnOnce(Result<&rusqlite::Connection, String>) -> Ran + Send>;

/// At most this many operations run between taking the writer connection and giving it back.
const OPERATIONS_PER_TURN: usize = 64;

/// The queue of SQLite's writer thread.
#[derive(Clone)]
pub(crate) struct WriterThread {
    queue: mpsc::UnboundedSender<Job>,
}

impl WriterThread {
    /// Starts the thread. It writes on `db`, its own connection, only while it holds
    /// `writer`'s one connection, the one every other write of the store goes through: so
    /// there is still one writer at a time, and the others (and the checkpoint that holds it)
    /// wait their turn in the pool's queue rather than in SQLite's busy handler. The thread
    /// ends once the last sender is dropped, with the store.
    pub(crate) fn start(
        writer: &sqlx::SqlitePool,
        db: rusqlite::Connection,
    ) -> std::io::Result<WriterThread> {
        let pool = writer.clone();
        let (queue, mut jobs) = mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("tessera-writer".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut turn = Vec::with_capacity(OPERATIONS_PER_TURN);
                    while jobs.recv_many(&mut turn, OPERATIONS_PER_TURN).await > 0 {
                        match pool.acquire().await {
                            Ok(_held) => run_turn(&db, turn.drain(..)),
                            Err(e) => {
                                let e = e.to_string();
                                for job in turn.drain(..) {
                                    (job(Err(e.clone())).answer)(None);
                                }
                            }
                        }
                    }
                })
            })?;
        Ok(WriterThread { queue })
    }

    /// Runs `op` on the writer thread and returns what it returns. A caller that stops
    /// waiting does not take a queued operation back: it runs all the same.
    pub(crate) async fn run<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |db| {
            let r = match db {
                Ok(db) => op(db),
                Err(e) => Err(StoreError::Unavailable(e)),
            };
            Ran {
                failed: r.is_err(),
                answer: Box::new(move |commit: Option<&StoreError>| {
                    let r = match (r, commit) {
                        (Ok(_), Some(e)) => Err(commit_failed(e)),
                        (r, _) => r,
                    };
                    let _ = answer.send(r);
                }),
            }
        });
        self.queue.send(job).map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    /// [`WriterThread::run`] as a future that owns its queue (for the batchers of `batch.rs`).
    pub(crate) fn run_owned<T, F>(self, op: F) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        Box::pin(async move { self.run(op).await })
    }
}

/// Runs one turn's operations. Two or more share one transaction: SQLite then writes each
/// page they change to the log once, at the commit, where each statement on its own would
/// write every page it touches and take and give back the file locks, which cost more than
/// the statements themselves. No caller hears back before the commit that makes its write
/// last. An operation that fails ends the transaction there (its statement alone was undone;
/// the commit keeps the others'), so that no operation ever runs in a transaction that an
/// error has already ended; the rest start another. One operation alone runs as it is, so a
/// lone sign-in runs no transaction control.
fn run_turn(db: &rusqlite::Connection, jobs: impl ExactSizeIterator<Item = Job>) {
    let together = jobs.len() > 1;
    let mut waiting: Vec<Answer> = Vec::with_capacity(jobs.len());
    let mut open = false;
    for job in jobs {
        if together && !open {
            // Should BEGIN fail, the operations run (and answer) one by one.
            open = execute(db, "BEGIN IMMEDIATE", []).is_ok();
        }
        let ran = job(Ok(db));
        if open {
            waiting.push(ran.answer);
            if ran.failed {
                commit(db, &mut waiting);
                open = false;
            }
        } else {
            (ran.answer)(None);
        }
    }
    if open {
        commit(db, &mut waiting);
    }
}

/// Ends the open transaction and answers everyone who waited for it.
fn commit(db: &rusqlite::Connection, waiting: &mut Vec<Answer>) {
    let failed = match execute(db, "COMMIT", []) {
        Ok(_) => None,
        Err(e) => {
            // Whatever is left of it (SQLite may have rolled it back already).
            if !db.is_autocommit() {
                let _ = execute(db, "ROLLBACK", []);
            }
            Some(e)
        }
    };
    for answer in waiting.drain(..) {
        answer(failed.as_ref());
    }
}

/// The commit's failure, as each of its operations' callers gets it.
fn commit_failed(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        e => StoreError::Other(anyhow::anyhow!("the write was not committed: {e}")),
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the writer thread has stopped".into())
}

/// Times a statement for `/metrics` (`tessera_server::metrics::StoreLatencyLayer`), as sqlx
/// does its own: the text, never the values.
pub(crate) fn timed<T>(sql: &'static str, run: impl FnOnce() -> rusqlite::Result<T>) -> Result<T> {
    let began = Instant::now();
    let r = run();
    tracing::debug!(
        target: "tessera_store::query",
        summary = sql,
        elapsed_secs = began.elapsed().as_secs_f64(),
    );
    r.map_err(StoreError::from)
}

/// Runs a statement through the connection's statement cache; the number of rows changed.
pub(crate) fn execute<P: rusqlite::Params>(
    db: &rusqlite::Connection,
    sql: &'static str,
    params: P,
) -> Result<usize> {
    timed(sql, || db.prepare_cached(sql)?.execute(params))
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            // Busy, locked, out of memory or disk, an I/O error: it may work later.
            Some(
                C::DatabaseBusy
                | C::DatabaseLocked
                | C::OutOfMemory
                | C::SystemIoFailure
                | C::DiskFull
                | C::CannotOpen,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Other(anyhow::Error::new(e)),
        }
    }
}
