//! Driving an operation under load, bounded by a duration and a count: closed-loop (a fixed
//! number of clients, each starting its next operation when the last one ends) or open-loop
//! (operations started at a fixed rate whatever the answers, latency counted from the moment
//! each one was due, so a slow server cannot hide its queueing).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

/// No single operation may hold a run open longer than this.
const OP_TIMEOUT: Duration = Duration::from_secs(60);

/// How a scenario is driven.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub concurrency: usize,
    pub seconds: u64,
    pub count: u64,
    /// Operations started per second (open loop); `None`: closed loop.
    pub rate: Option<f64>,
}

#[derive(Default)]
pub struct Outcome {
    pub latencies_us: Vec<u64>,
    /// Each success as (µs from the run's start to when it began or was due, latency in µs),
    /// in no order: where in the run the slow ones fall (`--latency-log`).
    pub timeline: Vec<(u64, u64)>,
    pub errors: BTreeMap<String, u64>,
    pub took: Duration,
}

impl Outcome {
    fn record(
        &mut self,
        run_started: Instant,
        since: Instant,
        r: Result<Result<(), String>, tokio::time::error::Elapsed>,
    ) {
        match r {
            Ok(Ok(())) => {
                let latency = since.elapsed().as_micros() as u64;
                self.latencies_us.push(latency);
                let at = since.saturating_duration_since(run_started).as_micros() as u64;
                self.timeline.push((at, latency));
            }
            Ok(Err(e)) => *self.errors.entry(e).or_default() += 1,
            Err(_) => *self.errors.entry("timeout (60 s)".into()).or_default() += 1,
        }
    }

    fn merge(&mut self, o: Outcome) {
        self.latencies_us.extend(o.latencies_us);
        self.timeline.extend(o.timeline);
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    /// The `p`-quantile in milliseconds (latencies must be sorted).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let s = &self.latencies_us;
        if s.is_empty() {
            return 0.0;
        }
        let i = ((s.len() as f64 - 1.0) * p).round() as usize;
        s[i] as f64 / 1000.0
    }
}

/// Runs `op(i)` for i = 0, 1, … within `bounds`; returns latencies (sorted) and errors.
pub async fn drive<F, Fut>(bounds: Bounds, op: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let started = Instant::now();
    let mut out = match bounds.rate {
        Some(rate) => open_loop(bounds, rate, op).await,
        None => closed_loop(bounds, op).await,
    };
    out.took = started.elapsed();
    out.latencies_us.sort_unstable();
    out
}

async fn closed_loop<F, Fut>(bounds: Bounds, op: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let run_started = Instant::now();
    let deadline = run_started + Duration::from_secs(bounds.seconds);
    let mut tasks = JoinSet::new();
    for _ in 0..bounds.concurrency.max(1) {
        let (op, next, count) = (Arc::clone(&op), Arc::clone(&next), bounds.count);
        tasks.spawn(async move {
            let mut out = Outcome::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || Instant::now() >= deadline {
                    return out;
                }
                let t = Instant::now();
                out.record(
                    run_started,
                    t,
                    tokio::time::timeout(OP_TIMEOUT, op(i)).await,
                );
            }
        });
    }
    let mut all = Outcome::default();
    while let Some(r) = tasks.join_next().await {
        if let Ok(o) = r {
            all.merge(o);
        }
    }
    all
}

async fn open_loop<F, Fut>(bounds: Bounds, rate: f64, op: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let started = tokio::time::Instant::now();
    let window = Duration::from_secs(bounds.seconds);
    let mut tasks = JoinSet::new();
    let mut all = Outcome::default();
    for i in 0..bounds.count {
        let due = Duration::from_secs_f64(i as f64 / rate.max(0.001));
        if due >= window {
            break;
        }
        tokio::time::sleep_until(started + due).await;
        let fut = op(i);
        let due_at = started.into_std() + due;
        tasks.spawn(async move {
            let mut out = Outcome::default();
            out.record(
                started.into_std(),
                due_at,
                tokio::time::timeout(OP_TIMEOUT, fut).await,
            );
            out
        });
        // Collect finished operations as we go, so the set stays small.
        while let Some(r) = tasks.try_join_next() {
            if let Ok(o) = r {
                all.merge(o);
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(o) = r {
            all.merge(o);
        }
    }
    all
}
