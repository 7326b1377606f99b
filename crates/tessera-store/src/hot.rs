//! The sign-in hot paths' writes on SQLite, run by a thread of their own.
//!
//! SQLite lets one connection write at a time, so every write queues for it. Through the pool,
//! each statement costs the writer more than the statement: the task that holds the connection
//! must be scheduled again to give it back, and the next task to be scheduled to use it, on
//! runtime threads that are busy signing tokens and parsing requests. Measured, that was about
//! 170 µs of the writer's time per statement at 1,100 logins a second, with a third of the CPU
//! idle. Here one thread, with a runtime of its own that does nothing else, takes the queued
//! operations and runs them back to back on the writer connection, then gives it back so that
//! the other writers get their turn. Each caller awaits its own result.
//!
//! On PostgreSQL, which runs concurrent writers itself, an operation simply runs on a pooled
//! connection in the caller's task.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};

use crate::{Result, StoreError};

type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// One queued operation: given the connection (or why there is none), it runs and answers its
/// caller itself.
type Job<C> = Box<dyn for<'c> FnOnce(Result<&'c mut C, String>) -> BoxFuture<'c, ()> + Send>;

/// At most this many operations run between taking the writer connection and giving it back.
const OPERATIONS_PER_TURN: usize = 64;

pub(crate) enum HotWriter<DB: sqlx::Database> {
    /// On a pooled connection, in the caller's task.
    Inline(sqlx::Pool<DB>),
    /// Queued for the writer thread.
    Thread(mpsc::UnboundedSender<Job<DB::Connection>>),
}

impl<DB: sqlx::Database> Clone for HotWriter<DB> {
    fn clone(&self) -> Self {
        match self {
            HotWriter::Inline(pool) => HotWriter::Inline(pool.clone()),
            HotWriter::Thread(queue) => HotWriter::Thread(queue.clone()),
        }
    }
}

impl<DB: sqlx::Database> HotWriter<DB> {
    pub(crate) fn inline(pool: &sqlx::Pool<DB>) -> HotWriter<DB> {
        HotWriter::Inline(pool.clone())
    }

    /// Starts the writer thread on `writer` (a pool of one connection). The thread ends once
    /// the last sender is dropped, with the store.
    pub(crate) fn thread(writer: &sqlx::Pool<DB>) -> std::io::Result<HotWriter<DB>> {
        let pool = writer.clone();
        let (queue, mut jobs) = mpsc::unbounded_channel::<Job<DB::Connection>>();
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
                            Ok(mut conn) => {
                                for job in turn.drain(..) {
                                    job(Ok(&mut *conn)).await;
                                }
                            }
                            Err(e) => {
                                let e = e.to_string();
                                for job in turn.drain(..) {
                                    job(Err(e.clone())).await;
                                }
                            }
                        }
                    }
                })
            })?;
        Ok(HotWriter::Thread(queue))
    }

    /// Runs `op` on the writer connection and returns what it returns. A caller that stops
    /// waiting does not take a queued operation back: it runs all the same.
    pub(crate) async fn run<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut DB::Connection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        match self {
            HotWriter::Inline(pool) => {
                let mut conn = pool.acquire().await?;
                op(&mut *conn).await
            }
            HotWriter::Thread(queue) => {
                let (answer, answered) = oneshot::channel();
                let job: Job<DB::Connection> = Box::new(move |conn| {
                    Box::pin(async move {
                        let r = match conn {
                            Ok(conn) => op(conn).await,
                            Err(e) => Err(StoreError::Unavailable(e)),
                        };
                        let _ = answer.send(r);
                    })
                });
                queue.send(job).map_err(|_| stopped())?;
                answered.await.map_err(|_| stopped())?
            }
        }
    }

    /// [`HotWriter::run`] as a future that owns its writer (for the batchers of `batch.rs`).
    pub(crate) fn run_owned<T, F>(self, op: F) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut DB::Connection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        Box::pin(async move { self.run(op).await })
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the writer thread has stopped".into())
}
