//! Production metrics in the Prometheus text format (`GET /metrics` on its own listener):
//! requests by route and status with latency histograms, audit events by type (sign-ins `s`
//! and `f`, codes sent `cls`, limits `limit_*`, refresh reuse `ferrt`, …), and the outbox depth.
//! Counters live in memory, per node; Prometheus adds the nodes up.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; 11],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    events: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Metrics {
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        // Only the methods HTTP defines: made-up ones must not grow the label set.
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" => method,
            _ => "other",
        };
        *lock(&self.requests)
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        let mut l = lock(&self.latency);
        let h = l.entry(route.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn event(&self, kind: &str) {
        *lock(&self.events).entry(kind.to_string()).or_default() += 1;
    }

    /// The exposition text; `outbox_depth` is read by the caller.
    pub fn render(&self, outbox_depth: Option<i64>) -> String {
        let mut out = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str(
            "# HELP tessera_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE tessera_http_requests_total counter\n");
        for ((m, r, s), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "tessera_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{s}\"}} {n}",
                esc(m),
                esc(r)
            );
        }
        out.push_str("# HELP tessera_http_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE tessera_http_request_duration_seconds histogram\n");
        for (r, h) in lock(&self.latency).iter() {
            let r = esc(r);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tessera_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "tessera_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "tessera_http_request_duration_seconds_sum{{route=\"{r}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "tessera_http_request_duration_seconds_count{{route=\"{r}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP tessera_events_total Audit events by type (s: sign-in, f: failure, cls: code or link sent, limit_*: limits, ferrt: refresh-token reuse, ...).\n");
        out.push_str("# TYPE tessera_events_total counter\n");
        for (k, n) in lock(&self.events).iter() {
            let _ = writeln!(out, "tessera_events_total{{type=\"{}\"}} {n}", esc(k));
        }
        if let Some(d) = outbox_depth {
            out.push_str(
                "# HELP tessera_outbox_depth Messages waiting for delivery (all nodes).\n",
            );
            out.push_str("# TYPE tessera_outbox_depth gauge\n");
            let _ = writeln!(out, "tessera_outbox_depth {d}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.request("POST", "/oauth/token", 200, Duration::from_millis(3));
        m.request("POST", "/oauth/token", 403, Duration::from_millis(30));
        m.request("FOO", "/health", 200, Duration::from_millis(1));
        m.event("s");
        m.event("s");
        let t = m.render(Some(4));
        assert!(t.contains(
            "tessera_http_requests_total{method=\"POST\",route=\"/oauth/token\",status=\"200\"} 1"
        ));
        assert!(t.contains(
            "tessera_http_request_duration_seconds_bucket{route=\"/oauth/token\",le=\"0.005\"} 1"
        ));
        assert!(t.contains(
            "tessera_http_request_duration_seconds_bucket{route=\"/oauth/token\",le=\"0.05\"} 2"
        ));
        assert!(
            t.contains("tessera_http_request_duration_seconds_count{route=\"/oauth/token\"} 2")
        );
        assert!(t.contains("tessera_events_total{type=\"s\"} 2"));
        assert!(t.contains("tessera_outbox_depth 4"));
        assert!(t.contains("method=\"other\",route=\"/health\"") && !t.contains("FOO"));
    }
}
