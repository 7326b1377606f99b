//! The SQLite backend: the default, one file, no server.

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions as _;
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
    /// Audit events and delivered messages' deletes, in batches (`batch.rs`).
    pub(crate) events: crate::batch::Batcher<crate::Event>,
    pub(crate) delivered: crate::batch::Batcher<String>,
    /// The sign-in hot paths' writes, run in turns on a connection of their own (`hot.rs`).
    pub(crate) hot: crate::hot::Writer,
    /// Copies the write-ahead log back into the database file, off the writer (see `connect`).
    checkpointer: tokio::task::JoinHandle<()>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// How often the write-ahead log is copied back into the database file. A checkpoint takes
/// one of the two cores while it copies, and the requests of that moment share the other:
/// the less it has to copy at a time, the less they wait. At 100 ms, `start` in the bench at
/// about half of its maximum had its slow requests (over 8 ms) in bursts at the checkpoints;
/// at 50 ms its p99 was lower in 9 of 12 alternated runs (bench/README.md), with the maximum
/// and otp-login unchanged.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// How often the log is looked at while nothing is written (its length the same at two
/// checkpoints in a row), so that an idle server does not wake 20 times a second for it: at
/// 50 ms, an idle Tessera used 0.65 % of a core, at 100 ms 0.35 %, and with this 0.17 %.
/// The first checkpoint after writes begin comes this much later at most.
const CHECKPOINT_IDLE: Duration = Duration::from_millis(250);

/// The log's length, in pages, past which it is started again from the beginning.
const RESTART_AFTER_PAGES: i64 = 2048;

/// Before a RESTART, PASSIVE checkpoints follow each other without a pause until one finds
/// fewer than this many frames written since the one before ...
const CATCH_UP_FRAMES: i64 = 32;

/// ... or this many have run (under a flow of writes that never lets them catch up).
const CATCH_UP_PASSES: u32 = 16;

/// `PRAGMA wal_checkpoint(PASSIVE)`: copies what it can of the log into the database file
/// without waiting for or holding up anyone. Returns the log's length, in pages.
async fn passive(conn: &mut sqlx::SqliteConnection) -> Result<i64, sqlx::Error> {
    use sqlx::Row as _;
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await?;
    row.try_get(1)
}

/// Copies what it can of the log into the database file without waiting for anyone
/// (PASSIVE). Only a writer can start the log again from its beginning, and only once every
/// page in it has been copied, which never holds for long under a steady flow of writes: so
/// once the log is past [`RESTART_AFTER_PAGES`] (8 MiB of 4 KiB pages), a RESTART checkpoint
/// holds new writes back for the little copying left and the files' syncs, and the next
/// write starts the log over.
///
/// What writers wait for in the RESTART is mostly its sync of the log, whose cost grows with
/// what was written since the last sync: at `start`'s half rate on a slow disk, the log took
/// in 3–4 MB during the PASSIVE checkpoint before it, and the RESTART held writers for
/// 10–20 ms, a burst of slow requests every 200 ms (bench/README.md, tenth section). So the
/// PASSIVE checkpoints first catch up, one after the other, each with less to copy and sync
/// than the last, until one finds fewer than [`CATCH_UP_FRAMES`] new frames; only then are
/// writers held back.
///
/// The RESTART holds the writer connection meanwhile: writers then wait in the pool's queue
/// and are woken the moment it is done, where with the lock alone they would find the
/// database busy and sleep in SQLite's busy handler (1, 2, 5, 10 ms …) well past its end.
///
/// Returns the log's length, in pages, as the first PASSIVE checkpoint found it.
async fn checkpoint(
    conn: &mut sqlx::SqliteConnection,
    writer: &SqlitePool,
) -> Result<i64, sqlx::Error> {
    let first = passive(conn).await?;
    if first <= RESTART_AFTER_PAGES {
        return Ok(first);
    }
    let mut log_pages = first;
    for _ in 0..CATCH_UP_PASSES {
        let now = passive(conn).await?;
        let written = now - log_pages;
        log_pages = now;
        if now <= RESTART_AFTER_PAGES {
            // A write started the log over by itself (a pass had copied all of it).
            return Ok(first);
        }
        if written < CATCH_UP_FRAMES {
            break;
        }
    }
    let _writer = writer.acquire().await?;
    sqlx::query("PRAGMA wal_checkpoint(RESTART)")
        .execute(&mut *conn)
        .await?;
    Ok(first)
}

/// Creates a missing database file readable and writable by its owner only (0600), before
/// SQLite opens it: it holds the users' addresses and numbers, the codes' hashes and the sealed
/// signing keys. SQLite gives the `-wal` and `-shm` files it makes the database file's mode.
/// A file that exists is left as it is, with a warning when others may read it.
fn private_file(path: &std::path::Path) -> anyhow::Result<()> {
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
        return Ok(());
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(m) = std::fs::metadata(path)
                    && m.permissions().mode() & 0o077 != 0
                {
                    tracing::warn!(
                        path = %path.display(),
                        mode = format!("{:o}", m.permissions().mode() & 0o777),
                        "the SQLite database can be read by other users of this host: chmod 600 it (and its -wal and -shm files)"
                    );
                }
            }
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot create the SQLite database {}: {e}",
            path.display()
        )),
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by a `sqlite:` URL.
    pub async fn connect(url: &str, opts: &PoolOptions) -> anyhow::Result<SqliteStore> {
        let busy = Duration::from_secs(opts.acquire_timeout_secs.max(1));
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("invalid SQLite URL {url:?}: {e}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy)
            .foreign_keys(true);
        // temp_store stays SQLite's default here (files): these connections run migrations
        // (CREATE INDEX over every row) and the dashboard's reads, whose sorts may outgrow
        // memory, and with temporary objects in memory SQLite's sorter never spills. The
        // writer's small statements keep theirs in memory (`sqlite_hot::open`).
        private_file(connect.get_filename())?;
        let open = |max: u32| {
            SqlitePoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(opts.acquire_timeout_secs))
                .connect_with(connect.clone())
        };
        // The writer never checkpoints: SQLite would otherwise make the commit that fills
        // the log to 1,000 pages copy it back and fsync the file, while every other write
        // waits behind it. A task does it on a connection of its own instead, every
        // `CHECKPOINT_EVERY` (PASSIVE: it takes what it can without waiting for or holding up
        // anyone; see `checkpoint` for the RESTART past `RESTART_AFTER_PAGES`).
        // No test before each acquire: a ping is a trip to the connection's worker thread, and
        // a local file that was open a moment ago has nothing to test.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(opts.acquire_timeout_secs))
            .connect_with(connect.clone().pragma("wal_autocheckpoint", "0"))
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {url:?}: {e}"))?;
        let pool = open(opts.max_connections.max(1))
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {url:?}: {e}"))?;
        // Its own connection, unlogged: a checkpoint is upkeep, not a statement of any request
        // (the statement metrics and the sign-in budget count what requests run).
        let mut own = connect
            .clone()
            .disable_statement_logging()
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {url:?}: {e}"))?;
        // Before the checkpointer starts, so that a failure here leaves no task behind.
        let db = crate::sqlite_hot::open(connect.get_filename(), busy)
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {url:?}: {e}"))?;
        let hot = crate::hot::Writer::start(&writer, db);
        let (events, delivered) = crate::sqlite_hot::batchers(&hot);
        let held = writer.clone();
        let checkpointer = tokio::spawn(async move {
            // The log's length at the last checkpoint: while it stays the same, nothing is
            // written, and the log is looked at less often.
            let mut seen = None;
            let mut idle = false;
            loop {
                tokio::time::sleep(if idle {
                    CHECKPOINT_IDLE
                } else {
                    CHECKPOINT_EVERY
                })
                .await;
                match checkpoint(&mut own, &held).await {
                    Ok(log) => {
                        idle = seen == Some(log);
                        seen = Some(log);
                    }
                    Err(e) => tracing::warn!(error = %e, "SQLite checkpoint failed"),
                }
            }
        });
        Ok(SqliteStore {
            hot,
            pool,
            writer,
            events,
            delivered,
            checkpointer,
        })
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// A new database, its log and its shared memory are the owner's alone, whatever the
    /// umask; a file that exists keeps its mode.
    #[tokio::test]
    async fn a_new_database_and_its_log_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let url = format!("sqlite://{}", db.display());
        let store = crate::open(&url, &crate::PoolOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store.outbox_depth().await.unwrap();
        for f in ["t.db", "t.db-wal", "t.db-shm"] {
            let p = dir.path().join(f);
            assert!(p.exists(), "{f} was not made");
            assert_eq!(mode(&p), 0o600, "{f}");
        }
        drop(store);

        let old = dir.path().join("old.db");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o640)).unwrap();
        let url = format!("sqlite://{}", old.display());
        let _store = crate::open(&url, &crate::PoolOptions::default())
            .await
            .unwrap();
        assert_eq!(mode(&old), 0o640);
    }

    /// sqlx's connections keep temporary objects in files, so that a large sort (a
    /// migration's `CREATE INDEX`, the dashboard's reads) can spill to disk; only the writer's
    /// own connection keeps them in memory (`sqlite_hot::open`).
    #[tokio::test]
    async fn the_pooled_connections_sort_on_disk_when_they_must() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = super::SqliteStore::connect(&url, &crate::PoolOptions::default())
            .await
            .unwrap();
        for pool in [&store.pool, &store.writer] {
            let mode: i64 = sqlx::query_scalar("PRAGMA temp_store")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(mode, 0, "DEFAULT: files");
        }
    }

    /// A log past `RESTART_AFTER_PAGES` is started over by the first write after the
    /// checkpoint, every row kept, and the passes that catch up before the RESTART come to an
    /// end while another task writes on throughout.
    #[tokio::test]
    async fn a_long_log_is_started_over_after_a_checkpoint_while_writes_go_on() {
        use super::*;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let connect = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect.clone().pragma("wal_autocheckpoint", "0"))
            .await
            .unwrap();
        let mut own = connect.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (b BLOB NOT NULL)")
            .execute(&writer)
            .await
            .unwrap();
        // A page of its own for each row.
        let page_rows = RESTART_AFTER_PAGES + 300;
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
             INSERT INTO t (b) SELECT zeroblob(3500) FROM n",
        )
        .bind(page_rows)
        .execute(&writer)
        .await
        .unwrap();
        // (Not measured by a checkpoint, which would copy all of it: the next write would
        // then start the log over by itself.)
        let wal = std::fs::metadata(dir.path().join("t.db-wal"))
            .unwrap()
            .len();
        assert!(
            wal > RESTART_AFTER_PAGES as u64 * 4096,
            "the log has {wal} bytes"
        );

        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (writer, stop) = (writer.clone(), Arc::clone(&stop));
            async move {
                let mut n = 0_i64;
                while !stop.load(Ordering::Relaxed) {
                    sqlx::query("INSERT INTO t (b) VALUES (zeroblob(100))")
                        .execute(&writer)
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            }
        });
        // Let the task's writes begin before the checkpoint does.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let found = tokio::time::timeout(Duration::from_secs(60), checkpoint(&mut own, &writer))
            .await
            .expect("the checkpoint ends while writes go on")
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        let written = task.await.unwrap();
        assert!(
            found > RESTART_AFTER_PAGES,
            "the checkpoint found {found} pages"
        );
        assert!(written > 0);

        sqlx::query("INSERT INTO t (b) VALUES (zeroblob(100))")
            .execute(&writer)
            .await
            .unwrap();
        let after = passive(&mut own).await.unwrap();
        assert!(
            after < RESTART_AFTER_PAGES / 4,
            "the log was not started over: {after} pages"
        );
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&writer)
            .await
            .unwrap();
        assert_eq!(rows, page_rows + written + 1);
    }
}
