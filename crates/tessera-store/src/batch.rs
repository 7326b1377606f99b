//! Group commit for small independent writes (audit events, deleting delivered messages).
//!
//! Every caller still waits until its own row is written, so nothing changes for readers: an
//! event is in the database before the request that caused it answers. What changes is how
//! many statements do it. Under load, the rows that arrive while one batch is being written go
//! out together in the next, as one statement; alone, a row goes out at once, by itself. On
//! SQLite, where one connection does all the writing, each trip to it is the scarce thing.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};

use crate::{Result, StoreError};

/// Writes a batch of rows in one statement.
pub(crate) type WriteBatch<T> =
    Box<dyn Fn(Vec<T>) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync>;

/// A failure as every waiter of a batch gets it: whether the database was unavailable, and
/// what it said.
type Failure = (bool, String);

type Job<T> = (T, oneshot::Sender<Result<(), Failure>>);

fn failure(e: &StoreError) -> Failure {
    (matches!(e, StoreError::Unavailable(_)), e.to_string())
}

/// The queue in front of one batch writer task. The task ends when the batcher is dropped
/// (after writing what was already queued).
pub(crate) struct Batcher<T> {
    queue: mpsc::UnboundedSender<Job<T>>,
}

impl<T: Clone + Send + 'static> Batcher<T> {
    /// Starts the writer task: at most `max` rows a statement.
    pub(crate) fn spawn(max: usize, write: WriteBatch<T>) -> Batcher<T> {
        let (queue, mut jobs) = mpsc::unbounded_channel::<Job<T>>();
        tokio::spawn(async move {
            let mut batch: Vec<Job<T>> = Vec::with_capacity(max);
            while jobs.recv_many(&mut batch, max).await > 0 {
                let rows: Vec<T> = batch.iter().map(|(row, _)| row.clone()).collect();
                match write(rows).await {
                    Ok(()) => {
                        for (_, done) in batch.drain(..) {
                            let _ = done.send(Ok(()));
                        }
                    }
                    // One bad row must not cost the others theirs: each alone, then. Not when
                    // the database is unavailable: every row would wait out the timeout again.
                    Err(e) if batch.len() > 1 && !matches!(e, StoreError::Unavailable(_)) => {
                        for (row, done) in batch.drain(..) {
                            let r = write(vec![row]).await.map_err(|e| failure(&e));
                            let _ = done.send(r);
                        }
                    }
                    Err(e) => {
                        let e = failure(&e);
                        for (_, done) in batch.drain(..) {
                            let _ = done.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Batcher { queue }
    }

    /// Queues `row` and waits until it is written. A caller that gives up waiting does not
    /// take the row back: it is written all the same.
    pub(crate) async fn submit(&self, row: T) -> Result<()> {
        let (done, written) = oneshot::channel();
        self.queue
            .send((row, done))
            .map_err(|_| StoreError::Unavailable("the batch writer has stopped".into()))?;
        match written.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err((true, e))) => Err(StoreError::Unavailable(e)),
            Ok(Err((false, e))) => Err(StoreError::Other(anyhow::anyhow!(e))),
            Err(_) => Err(StoreError::Unavailable(
                "the batch writer has stopped".into(),
            )),
        }
    }
}
