//! Delivery figures for Prometheus: messages delivered, retried and given up by channel, and
//! the time from queueing to delivery. Process-wide, like a default metrics registry: every
//! worker in the process adds to them, and `/metrics` renders them.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Upper bounds, in seconds, of the queue-to-delivery histogram's buckets.
pub const BUCKETS: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];

#[derive(Debug, Default, Clone)]
pub struct ChannelStats {
    pub delivered: u64,
    pub retried: u64,
    pub given_up: u64,
    /// Cumulative counts per bucket of [`BUCKETS`].
    pub latency_buckets: [u64; 9],
    pub latency_sum: f64,
}

static STATS: Mutex<BTreeMap<&'static str, ChannelStats>> = Mutex::new(BTreeMap::new());

/// The channel as a bounded label.
fn label(channel: &str) -> &'static str {
    match channel {
        "email" => "email",
        "sms" => "sms",
        _ => "other",
    }
}

fn with(channel: &str, f: impl FnOnce(&mut ChannelStats)) {
    let mut m = match STATS.lock() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    };
    f(m.entry(label(channel)).or_default());
}

/// A message reached the SMTP server or the SMS provider, `secs` after it was queued.
pub fn delivered(channel: &str, secs: f64) {
    with(channel, |s| {
        s.delivered += 1;
        s.latency_sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.latency_buckets[i] += 1;
            }
        }
    });
}

pub fn retried(channel: &str) {
    with(channel, |s| s.retried += 1);
}

pub fn given_up(channel: &str) {
    with(channel, |s| s.given_up += 1);
}

/// The figures so far, by channel.
pub fn snapshot() -> Vec<(&'static str, ChannelStats)> {
    let m = match STATS.lock() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    };
    m.iter().map(|(k, v)| (*k, v.clone())).collect()
}
