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

/// Requests of one method and route, by status.
type ByStatus = BTreeMap<u16, u64>;

#[derive(Default)]
pub struct Metrics {
    /// By method, route and status. Nested rather than keyed by a tuple of `String`s, so that
    /// a count already there is found without making a `String` (each request counts one).
    requests: Mutex<BTreeMap<&'static str, BTreeMap<String, ByStatus>>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// By type and connection.
    events: Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>,
    /// By connection, result and reason.
    sign_ins: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
}

/// Upper bounds, in seconds, of the store-statement histogram's buckets.
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];

#[derive(Default)]
struct StoreHistogram {
    counts: [u64; 11],
    sum: f64,
    count: u64,
}

/// Store statement latency by verb, process-wide: filled by [`StoreLatencyLayer`] from the
/// per-statement events of sqlx and of SQLite's hot-path writer.
static STORE: Mutex<BTreeMap<&'static str, StoreHistogram>> = Mutex::new(BTreeMap::new());

/// A tracing layer that times every SQL statement, from the `elapsed_secs` field of the
/// events of [`STATEMENT_TARGETS`]: sqlx's `sqlx::query`, and `tessera_store::query` for the
/// statements SQLite's hot-path writer runs itself, both at DEBUG (give this layer the filter
/// [`statement_events`] so the log's level does not decide). Only the statement's verb is
/// kept, so the label stays bounded.
pub struct StoreLatencyLayer;

/// The targets of per-statement events.
pub const STATEMENT_TARGETS: [&str; 2] = ["sqlx::query", "tessera_store::query"];

/// The filter for [`StoreLatencyLayer`]: every statement event, whatever the log's level.
pub fn statement_events() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_targets(STATEMENT_TARGETS.map(|t| (t, tracing::Level::DEBUG)))
}

#[derive(Default)]
struct QueryFields {
    verb: Option<&'static str>,
    secs: Option<f64>,
}

impl tracing::field::Visit for QueryFields {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.secs = Some(value);
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "summary" {
            self.verb = Some(verb(value));
        }
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

fn verb(sql: &str) -> &'static str {
    let first = sql.split_whitespace().next().unwrap_or("");
    [
        "SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT", "ROLLBACK",
    ]
    .into_iter()
    .find(|v| first.eq_ignore_ascii_case(v))
    .unwrap_or("other")
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StoreLatencyLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if !STATEMENT_TARGETS.contains(&event.metadata().target()) {
            return;
        }
        let mut f = QueryFields::default();
        event.record(&mut f);
        if let Some(secs) = f.secs {
            record_store(f.verb.unwrap_or("other"), secs);
        }
    }
}

fn record_store(verb: &'static str, secs: f64) {
    let mut m = lock(&STORE);
    let h = m.entry(verb).or_default();
    for (i, b) in STORE_BUCKETS.iter().enumerate() {
        if secs <= *b {
            h.counts[i] += 1;
        }
    }
    h.sum += secs;
    h.count += 1;
}

/// `key`'s entry, made (with a `String` of it) only the first time. Always `Some`; an
/// `Option` only because the borrow checker cannot yet return the first lookup's borrow.
fn known<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> Option<&'m mut V> {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key)
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
        let method: &'static str = match method {
            "GET" => "GET",
            "HEAD" => "HEAD",
            "POST" => "POST",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            "PATCH" => "PATCH",
            "OPTIONS" => "OPTIONS",
            _ => "other",
        };
        {
            let mut requests = lock(&self.requests);
            if let Some(by_status) = known(requests.entry(method).or_default(), route) {
                *by_status.entry(status).or_default() += 1;
            }
        }
        let secs = took.as_secs_f64();
        let mut l = lock(&self.latency);
        let Some(h) = known(&mut l, route) else {
            return;
        };
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// An audit event; `connection` is `email`, `sms` or empty (the connections that exist).
    pub fn event(&self, kind: &str, connection: Option<&str>) {
        let connection = match connection {
            Some("email") => "email",
            Some("sms") => "sms",
            Some(_) => "other",
            None => "",
        };
        if let Some(by_connection) = known(&mut lock(&self.events), kind) {
            *by_connection.entry(connection).or_default() += 1;
        }
    }

    /// A sign-in's outcome (`success` or `failure`) and, for a failure, its reason.
    pub fn sign_in(&self, connection: &str, result: &'static str, reason: &'static str) {
        let connection = match connection {
            "email" => "email",
            "sms" => "sms",
            _ => "other",
        };
        *lock(&self.sign_ins)
            .entry((connection, result, reason))
            .or_default() += 1;
    }

    /// The exposition text; `outbox_depth` is read by the caller.
    pub fn render(&self, outbox_depth: Option<i64>) -> String {
        let mut out = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str(
            "# HELP tessera_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE tessera_http_requests_total counter\n");
        for (m, by_route) in lock(&self.requests).iter() {
            for (r, by_status) in by_route {
                for (s, n) in by_status {
                    let _ = writeln!(
                        out,
                        "tessera_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{s}\"}} {n}",
                        esc(m),
                        esc(r)
                    );
                }
            }
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
        for (k, by_connection) in lock(&self.events).iter() {
            for (c, n) in by_connection {
                let _ = writeln!(
                    out,
                    "tessera_events_total{{type=\"{}\",connection=\"{}\"}} {n}",
                    esc(k),
                    esc(c)
                );
            }
        }
        out.push_str(
            "# HELP tessera_sign_ins_total Sign-ins by connection, result and failure reason.\n",
        );
        out.push_str("# TYPE tessera_sign_ins_total counter\n");
        for ((c, result, reason), n) in lock(&self.sign_ins).iter() {
            let _ = writeln!(
                out,
                "tessera_sign_ins_total{{connection=\"{}\",result=\"{result}\",reason=\"{reason}\"}} {n}",
                esc(c)
            );
        }
        let delivery = tessera_delivery::stats::snapshot();
        out.push_str("# HELP tessera_outbox_messages_total Messages by channel and outcome (delivered, retried, given_up), this process.\n");
        out.push_str("# TYPE tessera_outbox_messages_total counter\n");
        for (ch, st) in &delivery {
            for (outcome, n) in [
                ("delivered", st.delivered),
                ("retried", st.retried),
                ("given_up", st.given_up),
            ] {
                let _ = writeln!(
                    out,
                    "tessera_outbox_messages_total{{channel=\"{ch}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP tessera_outbox_delivery_seconds Time from queueing to delivery, by channel (queue time in whole seconds).\n");
        out.push_str("# TYPE tessera_outbox_delivery_seconds histogram\n");
        for (ch, st) in &delivery {
            for (i, b) in tessera_delivery::stats::BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tessera_outbox_delivery_seconds_bucket{{channel=\"{ch}\",le=\"{b}\"}} {}",
                    st.latency_buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "tessera_outbox_delivery_seconds_bucket{{channel=\"{ch}\",le=\"+Inf\"}} {}",
                st.delivered
            );
            let _ = writeln!(
                out,
                "tessera_outbox_delivery_seconds_sum{{channel=\"{ch}\"}} {}",
                st.latency_sum
            );
            let _ = writeln!(
                out,
                "tessera_outbox_delivery_seconds_count{{channel=\"{ch}\"}} {}",
                st.delivered
            );
        }
        out.push_str("# HELP tessera_store_statement_duration_seconds SQL statement latency by verb, this process.\n");
        out.push_str("# TYPE tessera_store_statement_duration_seconds histogram\n");
        for (v, h) in lock(&STORE).iter() {
            for (i, b) in STORE_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tessera_store_statement_duration_seconds_bucket{{verb=\"{v}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "tessera_store_statement_duration_seconds_bucket{{verb=\"{v}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "tessera_store_statement_duration_seconds_sum{{verb=\"{v}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "tessera_store_statement_duration_seconds_count{{verb=\"{v}\"}} {}",
                h.count
            );
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
        m.event("s", Some("email"));
        m.event("s", Some("email"));
        m.event("cls", None);
        m.sign_in("sms", "failure", "wrong code");
        record_store(verb("SELECT 1"), 0.0003);
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
        assert!(t.contains("tessera_events_total{type=\"s\",connection=\"email\"} 2"));
        assert!(t.contains("tessera_events_total{type=\"cls\",connection=\"\"} 1"));
        assert!(t.contains(
            "tessera_sign_ins_total{connection=\"sms\",result=\"failure\",reason=\"wrong code\"} 1"
        ));
        assert!(t.contains(
            "tessera_store_statement_duration_seconds_bucket{verb=\"SELECT\",le=\"0.0005\"}"
        ));
        assert!(t.contains("tessera_outbox_depth 4"));
        assert!(t.contains("method=\"other\",route=\"/health\"") && !t.contains("FOO"));
    }
}
