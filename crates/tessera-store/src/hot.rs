//! The sign-in hot paths' writes, and on SQLite the thread that runs them.
//!
//! [`HotPaths`] are the statements a sign-in writes, each backend its own way. PostgreSQL,
//! which runs concurrent writers itself, runs them through sqlx on a pooled connection in the
//! caller's task (`postgres.rs`). SQLite lets one connection write at a time, so every write
//! queues for it, and what each write costs around its statement is what bounds sign-ins:
//! through sqlx, each statement is a trip to the connection's own worker thread and back, and
//! each commit writes the pages it changed to the log and takes and gives back the file locks.
//! So on SQLite, the queued operations are run back to back, in place, through SQLite's C
//! interface (rusqlite) on a connection of their own, in one transaction a turn, by whichever
//! task leads the queue at the time ([`Writer`]). Each caller awaits its own result.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::{
    Challenge, Decide, Decision, IssueOptions, NewChallenge, NewOutboxMessage, Result,
    SignInRequest, StoreError,
};
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
    /// One hit on a rate limit's window from `window_start` to `expires_at`: the count, this
    /// hit included (`sql::HIT_RATE_LIMIT`).
    async fn hit(&self, key: &str, window_start: UnixTime, expires_at: UnixTime) -> Result<i64>;
    /// `count`, then what `decide` makes of it (`Store::redeem`), with the code, the
    /// configuration version and what followed; None when nothing was counted. Here as the
    /// separate operations, one after the other (PostgreSQL runs each on a pooled
    /// connection anyway); SQLite runs them as one operation of the writer.
    #[allow(clippy::too_many_arguments)]
    async fn redeem(
        &self,
        connection: &str,
        identifier: &str,
        lockout_keys: [&str; 2],
        now: UnixTime,
        decide: Decide,
        sign_in: Option<SignInRequest>,
    ) -> Result<Option<(Challenge, i64, Redemption)>> {
        let Some((challenge, version)) = self
            .count(connection, identifier, lockout_keys, now)
            .await?
        else {
            return Ok(None);
        };
        let outcome = match decide(&challenge, version) {
            Decision::Keep => Redemption::Kept,
            Decision::Refund => {
                self.refund(&challenge.id).await?;
                Redemption::Refunded
            }
            Decision::Consume => {
                if !self.consume(&challenge.id).await? {
                    Redemption::AlreadyUsed
                } else if let Some(r) = sign_in {
                    let user = self
                        .sign_in(&r.candidate, &r.identifier, r.allow_signup, now)
                        .await?;
                    Redemption::SignedIn(user, r)
                } else {
                    Redemption::Consumed
                }
            }
        };
        Ok(Some((challenge, version, outcome)))
    }
    /// The user signed in (or up), or None when blocked or sign-up is closed to them.
    async fn sign_in(
        &self,
        candidate: &User,
        identifier: &str,
        allow_signup: bool,
        now: UnixTime,
    ) -> Result<Option<User>>;
}

/// What followed a counted attempt (`HotPaths::redeem`): `crate::Outcome`, with the
/// sign-in's row as its statement returned it, and its request back, `event` still in it when
/// it is still to be recorded.
#[allow(clippy::large_enum_variant)] // returned once per check; boxing buys nothing
pub(crate) enum Redemption {
    Kept,
    Refunded,
    AlreadyUsed,
    Consumed,
    SignedIn(Option<User>, SignInRequest),
}

/// How a code's message is queued (`sql::QUEUE_MESSAGE`), from whether the code's user is
/// blocked (`None`: no such user yet), as both backends' `issue` decide it.
pub(crate) struct Queued<'a> {
    /// Whether the message goes out (else it goes to the void channel, `Store::issue_challenge`).
    pub(crate) delivered: bool,
    pub(crate) channel: &'a str,
    /// A leased message counts its first delivery attempt now, as a claim does.
    pub(crate) attempts: i64,
    pub(crate) lease_owner: Option<&'a str>,
    pub(crate) lease_until: Option<UnixTime>,
}

pub(crate) fn queued<'a>(
    blocked: Option<bool>,
    m: &'a NewOutboxMessage,
    o: &'a IssueOptions,
) -> Queued<'a> {
    let delivered = match blocked {
        Some(b) => !b,
        None => o.allow_signup,
    };
    Queued {
        delivered,
        channel: if delivered {
            m.channel.as_str()
        } else {
            crate::VOID_CHANNEL
        },
        attempts: i64::from(o.lease.is_some()),
        lease_owner: o.lease.as_ref().map(|(owner, _)| owner.as_str()),
        lease_until: o.lease.as_ref().map(|(_, until)| *until),
    }
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

/// SQLite's writer: a queue of operations, and the connection they run on.
///
/// There is no thread of its own. The operation that finds the queue without a leader spawns
/// a task that leads it: the task takes the store's writer connection from `writer`'s pool
/// (the one every other write of the store goes through, so there is still one writer at a
/// time, and the others, and the checkpoint that holds it, wait their turn in the pool's
/// queue rather than in SQLite's busy handler), runs up to [`OPERATIONS_PER_TURN`] queued
/// operations in one turn ([`run_turn`]), gives the connection back, and goes on while
/// operations are queued. Every operation that arrives meanwhile joins the queue and waits
/// for its answer. A thread of its own cost each turn two thread switches and a wake-up
/// through the kernel (the queue's and the answers'): about 5 % of the CPU of a sign-in
/// (`bench/README.md`). In exchange, a turn runs on one of the runtime's worker threads and
/// holds it while it runs: usually well under a millisecond, longer when a write to the log
/// waits for the disk.
#[derive(Clone)]
pub(crate) struct Writer {
    shared: Arc<Shared>,
}

struct Shared {
    /// The writer's own rusqlite connection; only the leader uses it.
    db: Mutex<rusqlite::Connection>,
    queue: Mutex<Queue>,
    /// The store's writer pool (one connection): held for each turn.
    pool: sqlx::SqlitePool,
}

struct Queue {
    jobs: Vec<Job>,
    /// Whether a task leads the queue (and will take what is in it).
    led: bool,
}

/// A lock that a panic elsewhere does not poison for good: what it guards stays consistent
/// (a queue, a connection whose transaction [`run_turn`] ends first).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Writer {
    /// The writer of `db`, its own connection, which it writes on only while it holds
    /// `writer`'s one connection.
    pub(crate) fn start(writer: &sqlx::SqlitePool, db: rusqlite::Connection) -> Writer {
        Writer {
            shared: Arc::new(Shared {
                db: Mutex::new(db),
                queue: Mutex::new(Queue {
                    jobs: Vec::new(),
                    led: false,
                }),
                pool: writer.clone(),
            }),
        }
    }

    /// Runs `op` on the writer connection and returns what it returns. A caller that stops
    /// waiting does not take a queued operation back: it runs all the same.
    pub(crate) async fn run<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        let (job, answered) = job(op);
        self.push(job);
        answered.await.map_err(|_| stopped())?
    }

    /// [`Writer::run`] as a future that owns the writer (for the batchers of `batch.rs`).
    pub(crate) fn run_owned<T, F>(self, op: F) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        Box::pin(async move { self.run(op).await })
    }

    /// Queues `job`, and spawns a leader when the queue has none (a task of its own, so that
    /// no caller's giving up stops it).
    fn push(&self, job: Job) {
        let lead = {
            let mut q = lock(&self.shared.queue);
            q.jobs.push(job);
            !std::mem::replace(&mut q.led, true)
        };
        if lead {
            tokio::spawn(lead_queue(Leading {
                shared: Arc::clone(&self.shared),
                done: false,
            }));
        }
    }
}

/// A leader's hold on the queue. Should its task be dropped before the queue is empty (its
/// runtime shut down while it waited for the connection), the queue is left without a leader,
/// so the next operation spawns one; what is queued stays queued for it.
struct Leading {
    shared: Arc<Shared>,
    done: bool,
}

impl Drop for Leading {
    fn drop(&mut self) {
        if !self.done {
            lock(&self.shared.queue).led = false;
        }
    }
}

/// Leads the queue until it is empty: a turn at a time, each with the writer connection
/// taken from the pool and given back after it, so that other writers get it in between.
///
/// A new leader first yields to the rest of its worker's work: tokio runs a yielded task
/// again only once the worker has no other task ready and has polled for I/O, so the
/// requests already read by then queue their operations first, and the first turn takes
/// them together (one transaction and one commit for all; `run_turn`). Under otp-login's
/// load in the bench this made turns larger (`BEGIN` 0.28 → 0.23 per login) and Tessera's
/// CPU per login 7 % smaller (bench/README.md). At the next turns the leader does not yield
/// again: that was no faster.
async fn lead_queue(mut leading: Leading) {
    tokio::task::yield_now().await;
    loop {
        let sh = &leading.shared;
        // The queue has work here. Taken once the connection is had, so that a leader
        // dropped while it waits leaves every operation queued.
        let held = sh.pool.acquire().await;
        let turn: Vec<Job> = {
            let mut q = lock(&sh.queue);
            let n = q.jobs.len().min(OPERATIONS_PER_TURN);
            q.jobs.drain(..n).collect()
        };
        match held {
            Ok(_held) => run_turn(&lock(&sh.db), turn.into_iter()),
            Err(e) => refuse(turn.into_iter(), &e.to_string()),
        }
        let mut q = lock(&sh.queue);
        if q.jobs.is_empty() {
            q.led = false;
            leading.done = true;
            return;
        }
    }
}

/// `op` as a job for the writer, and where its result will arrive.
fn job<T, F>(op: F) -> (Job, oneshot::Receiver<Result<T>>)
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
    (job, answered)
}

/// Runs one turn's operations. Two or more share one transaction: SQLite then writes each
/// page they change to the log once, at the commit, where each statement on its own would
/// write every page it touches and take and give back the file locks, which cost more than
/// the statements themselves. No caller hears back before the commit that makes its write
/// last, or that fails it. An operation that fails ends the transaction there: SQLite undid
/// the statement that failed, and the commit keeps what the others wrote (and what the
/// failed one wrote before that statement: a code without its message, which nobody can
/// use), so that no operation ever runs in a transaction that an error has already ended;
/// the rest start another. Should the transaction end under an operation (SQLite rolls it back on some
/// errors, such as a full disk; a batch that cannot undo its rows alone rolls it back; an
/// operation that panics is rolled back), none of it lasts and everyone in it hears so. One
/// operation alone runs as it is, so a lone sign-in runs no transaction control; should it
/// leave a transaction open (its commit failed), that is rolled back and it fails.
fn run_turn(db: &rusqlite::Connection, jobs: impl ExactSizeIterator<Item = Job>) {
    let together = jobs.len() > 1;
    let mut jobs = jobs;
    // Nothing in a transaction still open from before was answered as done.
    if !db.is_autocommit()
        && let Err(e) = execute(db, "ROLLBACK", [])
    {
        return refuse(jobs, &format!("cannot end an earlier transaction: {e}"));
    }
    let mut waiting: Vec<Answer> = Vec::with_capacity(jobs.len());
    let mut open = false;
    while let Some(next) = jobs.next() {
        if together && !open {
            if let Err(e) = execute(db, "BEGIN IMMEDIATE", []) {
                // The database cannot be written now: each on its own would wait as long.
                let e = format!("cannot begin a transaction: {e}");
                return refuse(std::iter::once(next).chain(jobs), &e);
            }
            open = true;
        }
        let ran = run_job(db, next);
        if open {
            waiting.push(ran.answer);
            if db.is_autocommit() {
                answer(&mut waiting, Some(&rolled_back()));
                open = false;
            } else if ran.failed {
                commit(db, &mut waiting);
                open = false;
            }
        } else if !db.is_autocommit() {
            let _ = execute(db, "ROLLBACK", []);
            (ran.answer)(Some(&rolled_back()));
        } else {
            (ran.answer)(None);
        }
    }
    if open {
        commit(db, &mut waiting);
    }
}

/// Runs a job; one that panics fails (its caller hears that the writer did not answer), and
/// so do the others of its transaction, which is rolled back: the thread goes on.
fn run_job(db: &rusqlite::Connection, job: Job) -> Ran {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Ok(db)))) {
        Ok(ran) => ran,
        Err(_) => {
            tracing::error!("a write on the SQLite writer panicked; it was rolled back");
            if !db.is_autocommit() {
                let _ = execute(db, "ROLLBACK", []);
            }
            Ran {
                failed: true,
                answer: Box::new(|_| {}),
            }
        }
    }
}

/// Fails every job of the turn, unrun.
fn refuse(jobs: impl Iterator<Item = Job>, why: &str) {
    for job in jobs {
        (job(Err(why.to_string())).answer)(None);
    }
}

/// Ends the open transaction and answers everyone who waited for it.
fn commit(db: &rusqlite::Connection, waiting: &mut Vec<Answer>) {
    let failed = match execute(db, "COMMIT", []) {
        Ok(_) => None,
        Err(e) => {
            // Whatever is left of it (SQLite may have rolled it back already). Should this
            // fail too, the next turn starts by trying again.
            if !db.is_autocommit() {
                let _ = execute(db, "ROLLBACK", []);
            }
            Some(e)
        }
    };
    answer(waiting, failed.as_ref());
}

fn answer(waiting: &mut Vec<Answer>, failed: Option<&StoreError>) {
    for answer in waiting.drain(..) {
        answer(failed);
    }
}

fn rolled_back() -> StoreError {
    StoreError::Unavailable("the transaction was rolled back".into())
}

/// The commit's failure, as each of its operations' callers gets it.
fn commit_failed(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        e => StoreError::Other(anyhow::anyhow!("the write was not committed: {e}")),
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the writer did not answer".into())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn db() -> rusqlite::Connection {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY)")
            .unwrap();
        db
    }

    fn insert(db: &rusqlite::Connection, id: &str) -> Result<usize> {
        db.execute("INSERT INTO t (id) VALUES (?1)", [id])
            .map_err(StoreError::from)
    }

    fn ids(db: &rusqlite::Connection) -> Vec<String> {
        let mut q = db.prepare("SELECT id FROM t ORDER BY id").unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// A job that inserts `id`, then does `then` (when given), and its result.
    fn inserting(
        id: &'static str,
        then: Option<&'static str>,
    ) -> (Job, oneshot::Receiver<Result<usize>>) {
        job(move |db| {
            let n = insert(db, id)?;
            if let Some(sql) = then {
                db.execute_batch(sql).map_err(StoreError::from)?;
            }
            Ok(n)
        })
    }

    fn result<T>(mut r: oneshot::Receiver<Result<T>>) -> std::result::Result<T, String> {
        match r.try_recv() {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("no answer: {e}")),
        }
    }

    #[test]
    fn a_turn_commits_together_and_a_failure_ends_its_transaction_there() {
        let db = db();
        let (a, ra) = inserting("a", None);
        let (dup, rdup) = inserting("a", None);
        let (b, rb) = inserting("b", None);
        run_turn(&db, vec![a, dup, b].into_iter());
        assert_eq!(result(ra), Ok(1));
        assert!(result(rdup).unwrap_err().contains("UNIQUE"));
        assert_eq!(result(rb), Ok(1));
        assert_eq!(ids(&db), ["a", "b"]);
        assert!(db.is_autocommit());
    }

    #[test]
    fn a_transaction_rolled_back_under_a_turn_fails_everyone_in_it() {
        let db = db();
        let (a, ra) = inserting("a", None);
        // As SQLite does on a full disk, or a batch that could not undo its rows alone.
        let (b, rb) = inserting("b", Some("ROLLBACK"));
        let (c, rc) = inserting("c", None);
        run_turn(&db, vec![a, b, c].into_iter());
        assert_eq!(
            result(ra),
            Err("the database is unavailable: the transaction was rolled back".into())
        );
        assert_eq!(
            result(rb),
            Err("the database is unavailable: the transaction was rolled back".into())
        );
        assert_eq!(result(rc), Ok(1), "the rest start another transaction");
        assert_eq!(ids(&db), ["c"]);
    }

    #[test]
    fn a_panic_rolls_its_transaction_back_and_the_turn_goes_on() {
        let db = db();
        let (a, ra) = inserting("a", None);
        let (p, rp) = job(|db| -> Result<()> {
            insert(db, "p")?;
            panic!("a bug");
        });
        let (c, rc) = inserting("c", None);
        run_turn(&db, vec![a, p, c].into_iter());
        assert!(result(ra).unwrap_err().contains("rolled back"));
        assert!(result(rp).unwrap_err().starts_with("no answer"));
        assert_eq!(result(rc), Ok(1));
        assert_eq!(ids(&db), ["c"]);
    }

    #[test]
    fn a_lone_operation_that_leaves_a_transaction_open_fails_and_it_is_rolled_back() {
        let db = db();
        let (a, ra) = job(|db| {
            db.execute_batch("BEGIN").map_err(StoreError::from)?;
            insert(db, "a")
        });
        run_turn(&db, vec![a].into_iter());
        assert!(result(ra).unwrap_err().contains("rolled back"));
        assert!(db.is_autocommit());
        assert!(ids(&db).is_empty());

        // One left open before a turn (a rollback that failed) is ended first, unanswered
        // work and all.
        db.execute_batch("BEGIN; INSERT INTO t VALUES ('z')")
            .unwrap();
        let (y, ry) = inserting("y", None);
        run_turn(&db, vec![y].into_iter());
        assert_eq!(result(ry), Ok(1));
        assert_eq!(ids(&db), ["y"]);
    }

    #[test]
    fn a_turn_that_cannot_begin_fails_whole_and_unrun() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = rusqlite::Connection::open(&path).unwrap();
        db.busy_timeout(std::time::Duration::from_millis(50))
            .unwrap();
        db.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (id TEXT PRIMARY KEY)")
            .unwrap();
        // Another connection holds the write lock; no waiting for it here.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (a, ra) = inserting("a", None);
        let (b, rb) = inserting("b", None);
        run_turn(&db, vec![a, b].into_iter());
        for r in [result(ra), result(rb)] {
            let e = r.unwrap_err();
            assert!(e.contains("cannot begin a transaction"), "{e}");
        }
        other.execute_batch("ROLLBACK").unwrap();
        assert!(ids(&db).is_empty());
    }

    /// A job that queues the next one as it runs, until `stop`: the queue is never empty
    /// when a turn ends.
    fn endless(
        writer: Writer,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        ran: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> Job {
        use std::sync::atomic::Ordering;
        job(move |_db| {
            ran.fetch_add(1, Ordering::Relaxed);
            if !stop.load(Ordering::Relaxed) {
                let next = endless(writer.clone(), stop, ran);
                writer.push(next);
            }
            Ok(())
        })
        .0
    }

    /// A pool of one connection, as the store's writer pool: no ping before an acquire.
    async fn pool_of_one(dir: &tempfile::TempDir) -> sqlx::SqlitePool {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect(&url)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_writer_connection_goes_back_to_the_pool_under_steady_load() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let pool = pool_of_one(&dir).await;
        let writer = Writer::start(&pool, db());
        let (stop, ran) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        writer.push(endless(writer.clone(), stop.clone(), ran.clone()));
        while ran.load(Ordering::Relaxed) < 100 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The queue now always has work; another writer still gets the connection, which
        // the leader gives back after every turn.
        let got = tokio::time::timeout(Duration::from_secs(2), pool.acquire()).await;
        stop.store(true, Ordering::Relaxed);
        let held = got.expect("the leader kept the connection").unwrap();
        drop(held);
        assert!(ran.load(Ordering::Relaxed) >= 100);
    }

    /// An operation queued by a task that became ready after the leader was spawned still
    /// joins the leader's first turn: the leader yields first, so both share one transaction.
    #[tokio::test]
    async fn a_new_leader_lets_the_ready_tasks_queue_first() {
        let dir = tempfile::tempdir().unwrap();
        // No ping before the leader's acquire (which would let the other task run while the
        // leader waits for it, yield or not), and the connection idle in the pool.
        let pool = pool_of_one(&dir).await;
        drop(pool.acquire().await.unwrap());
        while pool.num_idle() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let writer = Writer::start(&pool, db());
        // In a transaction of the turn's own, or alone (autocommit).
        let shared = |db: &rusqlite::Connection| Ok(!db.is_autocommit());
        let (first, first_ran) = job(shared);
        writer.push(first); // spawns the leader: it is ready now
        let w = writer.clone();
        // Ready after the leader, on the same (current-thread) runtime.
        let second = tokio::spawn(async move { w.run(shared).await });
        let first_ran = first_ran.await.unwrap().unwrap();
        let second_ran = second.await.unwrap().unwrap();
        assert!(
            first_ran && second_ran,
            "each ran in a turn of its own (shared: {first_ran}, {second_ran})"
        );
        drop(pool);
    }

    /// A leader whose runtime shuts down while it waits for the connection leaves the queue
    /// to the next one, with what it had not run still queued; the writer does not wedge.
    #[test]
    fn a_leader_stopped_with_its_runtime_leaves_the_queue_to_the_next() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let main = runtime();
        let dir = tempfile::tempdir().unwrap();
        let (pool, writer, held) = main.block_on(async {
            let pool = pool_of_one(&dir).await;
            let writer = Writer::start(&pool, db());
            let held = pool.acquire().await.unwrap();
            (pool, writer, held)
        });
        let other = runtime();
        other.block_on(async {
            let w = writer.clone();
            let gave_up =
                tokio::time::timeout(Duration::from_millis(100), w.run(|db| insert(db, "a"))).await;
            assert!(gave_up.is_err(), "the connection is held: nothing runs yet");
        });
        drop(other); // the leader, waiting for the connection, goes with it
        main.block_on(async {
            drop(held);
            let b = tokio::time::timeout(Duration::from_secs(5), writer.run(|db| insert(db, "b")))
                .await
                .expect("the writer was left without a leader");
            assert_eq!(b.unwrap(), 1);
            let all = writer.run(|db| Ok(ids(db))).await.unwrap();
            assert_eq!(
                all,
                ["a", "b"],
                "a queued operation runs though its caller left"
            );
            drop(pool);
        });
    }
}
