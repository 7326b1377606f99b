//! `tessera-bench`: starts the real `tessera` binary on a loopback port (dev mode, rate limits
//! off, SQLite in a work directory) and drives it over HTTP exactly as Auth0 clients do. Every
//! run is bounded by a duration and a request count. Mail goes over real SMTP to the bench's own
//! sink (`--mailbox smtp`, the default) or stays in dev mode's mailbox (`--mailbox dev`).
//!
//! It prints the start-up time (fresh and with an existing database), the idle RSS, and per
//! scenario the throughput, latency percentiles, errors by status and Tessera's RSS; then the
//! machine's signing limits (RS256, ES256, EdDSA on every core) and the ratio of logins per
//! second to each. `--json` prints one JSON document instead.
//!
//! Scenarios:
//! - `start`: `/passwordless/start` with distinct emails;
//! - `otp-login`: start, the code as delivered, then the OTP grant at `/oauth/token`; once per
//!   algorithm in `--algs`, each through an application that signs with it;
//! - `code-exchange`: `/authorize` with an SSO session gives a code, exchanged at `/oauth/token`;
//! - `userinfo`: `/userinfo` with an opaque access token.

mod flows;
mod load;
mod mail;
mod signing;
mod sink;
mod tessera;
mod wire;

/// The allocator Tessera uses (see crates/tessera/src/main.rs): the bench shares the cores it
/// measures, so its own glibc arena locks would count against Tessera's figures.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

use crate::flows::{Api, Codes};
use crate::load::{Bounds, Outcome, drive};
use crate::sink::Sink;
use crate::tessera::{CLIENT_ID, ExtraApp, Launch, Workdir};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mailbox {
    /// Tessera sends over SMTP to the bench's sink on loopback.
    Smtp,
    /// Dev mode's in-memory mailbox, polled over `/_dev/mailbox.json`.
    Dev,
}

/// The bench's scheduling policy (`--sched`).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Sched {
    Batch,
    Normal,
}

#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The tessera binary to start.
    #[arg(long, default_value = "target/release/tessera")]
    tessera: PathBuf,
    /// Scenarios to run, comma-separated, in order.
    #[arg(long, default_value = "start,otp-login,code-exchange,userinfo")]
    scenarios: String,
    /// Signing algorithms for otp-login, comma-separated; each gets its own application.
    #[arg(long, default_value = "RS256,ES256,EdDSA")]
    algs: String,
    /// Where codes are read.
    #[arg(long, value_enum, default_value = "smtp")]
    mailbox: Mailbox,
    /// Diagnostic: the SMTP sink acknowledges every read at once (TCP_QUICKACK), which hides
    /// the delayed-ACK wait a client without TCP_NODELAY meets at a real server.
    #[arg(long)]
    sink_quickack: bool,
    /// How the bench's own threads are scheduled: `batch` (Linux's SCHED_BATCH: the same
    /// weight, but its wake-ups do not preempt Tessera's running threads; clients on other
    /// machines do not compete for Tessera's cores at all) or `normal`. Tessera and the
    /// signing limits always run under the normal policy.
    #[arg(long, value_enum, default_value = "batch")]
    sched: Sched,
    /// Concurrent clients (closed loop).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Start operations at this many per second instead (open loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds per scenario (a run stops at the first of duration and count).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Operations (logins, requests) per scenario at most.
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// Run the scenarios this many times against the same Tessera (RSS across runs).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Seconds per algorithm for the signing limits (0: skip them).
    #[arg(long, default_value_t = 2)]
    sign_seconds: u64,
    /// Tessera's stdout and stderr go here (default: a file in the work directory). Its log
    /// level is `warn` unless RUST_LOG says otherwise.
    #[arg(long)]
    tessera_log: Option<PathBuf>,
    /// Use this work directory, and the database in it if there is one (e.g. one a run with
    /// --keep filled); it is kept.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Keep the work directory (config, SQLite database, log).
    #[arg(long)]
    keep: bool,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Diagnostic: write every successful operation to this file as a line `scenario round
    /// start_us latency_us` (start: from the run's start to when the operation began, or was
    /// due in the open loop), to see where in a run the slow ones fall.
    #[arg(long)]
    latency_log: Option<PathBuf>,
}

/// A scenario run in the report.
struct Run {
    name: String,
    alg: Option<String>,
    outcome: Outcome,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    drain: Option<Duration>,
    /// otp-login: p50/p99 of each step.
    steps: Option<Value>,
    /// SQL statements per successful operation, by verb and in total.
    sql: Option<Value>,
    /// CPU milliseconds per successful operation: Tessera's and the bench's own.
    cpu: Value,
}

type Cpu = (Option<Duration>, Option<Duration>);

/// CPU ms per operation, of Tessera and of this load generator (with its SMTP sink), over the
/// run and the outbox drain after it (so every message the run queued is counted).
fn cpu_per_op(before: Cpu, after: Cpu, ops: usize) -> Value {
    let per = |b: Option<Duration>, a: Option<Duration>| {
        Some(ms(a?.checked_sub(b?)?) / ops.max(1) as f64)
    };
    json!({"tessera": per(before.0, after.0), "bench": per(before.1, after.1)})
}

/// SQL statements per operation between two counts of `/metrics`, by verb; `scrapes` SELECTs
/// were `/metrics`' own.
fn statements_per_op(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    scrapes: u64,
    ops: usize,
) -> Value {
    let mut by_verb = serde_json::Map::new();
    let mut total = 0u64;
    for (verb, n) in after {
        let mut d = n.saturating_sub(before.get(verb).copied().unwrap_or(0));
        if verb == "SELECT" {
            d = d.saturating_sub(scrapes);
        }
        total += d;
        by_verb.insert(verb.clone(), json!(d as f64 / ops.max(1) as f64));
    }
    json!({"total": total as f64 / ops.max(1) as f64, "by_verb": by_verb})
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let load_before = tessera::loadavg();
    let algs: Vec<String> = args
        .algs
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    for a in &algs {
        if !signing::ALGS.contains(&a.as_str()) {
            bail!(
                "unknown algorithm {a:?} (known: {})",
                signing::ALGS.join(", ")
            );
        }
    }
    // The limits of otp-login's algorithms are measured before the load as well as after it,
    // and the ratio is taken against the mean: the machine's speed drifts within minutes.
    let measure = |algs: &mut dyn Iterator<Item = &str>| -> anyhow::Result<Vec<(String, f64)>> {
        algs.map(|a| {
            Ok((
                a.to_string(),
                signing::limit(a, Duration::from_secs(args.sign_seconds))?,
            ))
        })
        .collect()
    };
    let otp_login = args.scenarios.split(',').any(|s| s.trim() == "otp-login");
    let batch = args.sched == Sched::Batch;
    // Both measures run under the normal policy (and this checks that chrt works before any
    // time is spent).
    if batch {
        tessera::scheduling(false)?;
    }
    let limits_before = if args.sign_seconds == 0 || !otp_login {
        Vec::new()
    } else {
        measure(&mut algs.iter().map(String::as_str))?
    };
    if batch {
        tessera::scheduling(true)?;
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(
            args.concurrency
                .max(if args.rate.is_some() { 512 } else { 0 }),
        )
        .build()?;
    let (codes, smtp_port, sink) = match args.mailbox {
        Mailbox::Smtp => {
            let (sink, port) = Sink::start(args.sink_quickack).await?;
            (Codes::Smtp(sink.clone()), Some(port), Some(sink))
        }
        Mailbox::Dev => (Codes::Dev, None, None),
    };
    let work = Workdir::create(args.workdir.as_deref(), args.keep)?;
    let log = args
        .tessera_log
        .clone()
        .unwrap_or_else(|| work.dir.join("tessera.log"));
    let extra: Vec<ExtraApp> = algs
        .iter()
        .filter(|a| *a != "RS256")
        .map(|a| ExtraApp::for_alg(a))
        .collect();
    let launch = |extra_apps| Launch {
        bin: &args.tessera,
        work: &work,
        smtp_port,
        extra_apps,
        log: &log,
        reset_policy: batch,
    };
    // The first start creates the database. A Tessera that does not know `signing_alg` yet
    // refuses the extra applications; it then runs without them.
    let mut apps: &[ExtraApp] = &extra;
    let mut skipped = serde_json::Map::new();
    let (first, startup_first) = match launch(apps).start(&http).await {
        Ok(x) => x,
        Err(e) if !apps.is_empty() => {
            for app in apps {
                skipped.insert(
                    app.alg.clone(),
                    json!(format!("tessera refused the application: {e}")),
                );
            }
            apps = &[];
            launch(apps).start(&http).await?
        }
        Err(e) => return Err(e),
    };
    first.stop().await?;
    let (tessera, startup_existing) = launch(apps).start(&http).await?;
    let idle_rss = tessera.rss_kib();
    let api = Api {
        http: http.clone(),
        wire: Arc::new(wire::Client::new(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            work.port,
        )))),
        base: tessera.base.clone(),
        codes,
    };
    let bounds = Bounds {
        concurrency: args.concurrency,
        seconds: args.seconds,
        count: args.count,
        rate: args.rate,
    };
    let mut runs = Vec::new();
    let mut latency_log = match &args.latency_log {
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => None,
    };
    for round in 1..=args.repeat {
        for scenario in args
            .scenarios
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let targets: Vec<(String, Option<String>)> = if scenario == "otp-login" {
                algs.iter()
                    .filter(|a| !skipped.contains_key(*a))
                    .map(|a| {
                        let client = apps
                            .iter()
                            .find(|x| &x.alg == a)
                            .map_or(CLIENT_ID.to_string(), |x| x.client_id.clone());
                        (client, Some(a.clone()))
                    })
                    .collect()
            } else {
                vec![(CLIENT_ID.to_string(), None)]
            };
            for (client, alg) in targets {
                let sql_before = tessera.statements(&http).await;
                let rss_before = tessera.rss_kib();
                let cpu_before = (tessera.cpu(), tessera::cpu_time("/proc/self/stat"));
                let (outcome, steps) =
                    run_scenario(scenario, &api, bounds, client, alg.clone(), round).await?;
                let rss_after = tessera.rss_kib();
                // Mail still queued would slow the next scenario down: wait for the outbox.
                let (drain, scrapes) = tessera.drain_outbox(&http, Duration::from_secs(120)).await;
                let cpu = cpu_per_op(
                    cpu_before,
                    (tessera.cpu(), tessera::cpu_time("/proc/self/stat")),
                    outcome.latencies_us.len(),
                );
                let sql = match (sql_before, tessera.statements(&http).await) {
                    // The scrapes' own SELECTs (the drain's and this one) are not the scenario's.
                    (Some(b), Some(a)) => Some(statements_per_op(
                        &b,
                        &a,
                        scrapes + 1,
                        outcome.latencies_us.len(),
                    )),
                    _ => None,
                };
                if let Some(w) = latency_log.as_mut() {
                    use std::io::Write as _;
                    let name = alg
                        .as_deref()
                        .map_or(scenario.to_string(), |a| format!("{scenario}/{a}"));
                    let mut timeline = outcome.timeline.clone();
                    timeline.sort_unstable();
                    for (at, latency) in timeline {
                        writeln!(w, "{name} {round} {at} {latency}")?;
                    }
                    w.flush()?;
                }
                runs.push(Run {
                    name: scenario.to_string(),
                    alg,
                    outcome,
                    rss_before,
                    rss_after,
                    drain,
                    steps,
                    sql,
                    cpu,
                });
            }
        }
    }
    let final_rss = tessera.rss_kib();
    tessera.stop().await?;
    let limits: Vec<(String, f64)> = if args.sign_seconds == 0 {
        Vec::new()
    } else {
        // The signing threads run under the normal policy, as Tessera's do, whatever the
        // bench's own during the load.
        if batch {
            tessera::scheduling(false)?;
        }
        measure(&mut signing::ALGS.iter().copied())?
    };
    let summary = report(
        &args,
        &runs,
        &limits,
        &limits_before,
        &skipped,
        ReportHead {
            startup_first,
            startup_existing,
            idle_rss,
            final_rss,
            sink: sink.as_deref(),
            load_before,
        },
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_tables(&summary);
    }
    if work.keep {
        eprintln!("work directory kept: {}", work.dir.display());
    }
    Ok(())
}

/// Runs one scenario (`round` keeps the addresses of repeated runs distinct).
async fn run_scenario(
    scenario: &str,
    api: &Api,
    bounds: Bounds,
    client: String,
    alg: Option<String>,
    round: u32,
) -> anyhow::Result<(Outcome, Option<Value>)> {
    let api = api.clone();
    let out = match scenario {
        "start" => {
            drive(bounds, move |i| {
                let api = api.clone();
                async move {
                    api.start(CLIENT_ID, &format!("start{round}-{i}@bench.test"))
                        .await
                }
            })
            .await
        }
        "otp-login" => {
            let alg = alg.unwrap_or_else(|| "RS256".into());
            let steps: Arc<Mutex<Vec<[Duration; 3]>>> = Arc::default();
            let record = Arc::clone(&steps);
            let out = drive(bounds, move |i| {
                let (api, client, alg, record) = (
                    api.clone(),
                    client.clone(),
                    alg.clone(),
                    Arc::clone(&record),
                );
                async move {
                    let email =
                        format!("login-{}-{round}-{i}@bench.test", alg.to_ascii_lowercase());
                    let (_, t) = api.otp_login_timed(&client, &alg, &email).await?;
                    if let Ok(mut s) = record.lock() {
                        s.push(t);
                    }
                    Ok(())
                }
            })
            .await;
            let steps = steps.lock().map(|s| s.clone()).unwrap_or_default();
            return Ok((out, Some(step_percentiles(&steps))));
        }
        "userinfo" => {
            let tokens = api
                .otp_login(CLIENT_ID, "RS256", &format!("userinfo{round}@bench.test"))
                .await
                .map_err(anyhow::Error::msg)?;
            let at = tokens.access_token.unwrap_or_default();
            drive(bounds, move |_| {
                let (api, at) = (api.clone(), at.clone());
                async move { api.userinfo(&at).await }
            })
            .await
        }
        "code-exchange" => {
            let cookie = api.session_cookie().await.map_err(anyhow::Error::msg)?;
            let http = flows::no_redirect(bounds.concurrency).map_err(anyhow::Error::msg)?;
            drive(bounds, move |_| {
                let (api, http, cookie) = (api.clone(), http.clone(), cookie.clone());
                async move { api.code_exchange(&http, &cookie).await }
            })
            .await
        }
        other => bail!("unknown scenario {other:?}"),
    };
    Ok((out, None))
}

/// p50 and p99 in ms of each step of a login: start, waiting for the code, the token request.
fn step_percentiles(steps: &[[Duration; 3]]) -> Value {
    let names = ["start", "code_delivery", "token"];
    let mut v = serde_json::Map::new();
    for (k, name) in names.iter().enumerate() {
        let mut d: Vec<Duration> = steps.iter().map(|s| s[k]).collect();
        d.sort_unstable();
        let q = |p: f64| {
            d.get(((d.len().max(1) - 1) as f64 * p).round() as usize)
                .map_or(0.0, |x| ms(*x))
        };
        v.insert(
            name.to_string(),
            json!({"p50_ms": q(0.5), "p99_ms": q(0.99)}),
        );
    }
    Value::Object(v)
}

struct ReportHead<'a> {
    startup_first: Duration,
    startup_existing: Duration,
    idle_rss: Option<u64>,
    final_rss: Option<u64>,
    sink: Option<&'a Sink>,
    /// `/proc/loadavg` when the bench began: other work on the machine skews the figures.
    load_before: String,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(
    args: &Args,
    runs: &[Run],
    limits_after: &[(String, f64)],
    limits_before: &[(String, f64)],
    skipped: &serde_json::Map<String, Value>,
    head: ReportHead<'_>,
) -> Value {
    // Each algorithm's limit: the mean of its measures before and after the load where both
    // were taken.
    let limits: Vec<(String, f64)> = limits_after
        .iter()
        .map(|(alg, after)| {
            let limit = match limits_before.iter().find(|(a, _)| a == alg) {
                Some((_, before)) => (before + after) / 2.0,
                None => *after,
            };
            (alg.clone(), limit)
        })
        .collect();
    let by_alg = |l: &[(String, f64)]| {
        l.iter()
            .map(|(a, v)| (a.clone(), json!(v)))
            .collect::<serde_json::Map<String, Value>>()
    };
    // An OTP login signs one token, the id_token (the access token for /userinfo is opaque).
    let signatures_per_login = 1.0;
    let scenarios: Vec<Value> = runs
        .iter()
        .map(|r| {
            let o = &r.outcome;
            json!({
                "scenario": r.name,
                "alg": r.alg,
                "ok": o.latencies_us.len(),
                "seconds": o.took.as_secs_f64(),
                "per_second": o.latencies_us.len() as f64 / o.took.as_secs_f64(),
                "p50_ms": o.percentile_ms(0.50),
                "p90_ms": o.percentile_ms(0.90),
                "p99_ms": o.percentile_ms(0.99),
                "max_ms": o.percentile_ms(1.0),
                "errors": o.errors,
                "rss_kib_before": r.rss_before,
                "rss_kib_after": r.rss_after,
                "outbox_drain_ms": r.drain.map(ms),
                "steps": r.steps,
                "sql_per_op": r.sql,
                "cpu_ms_per_op": r.cpu,
            })
        })
        .collect();
    // Logins per second against the limit of their algorithm: the best run of each.
    let logins: Vec<Value> = limits
        .iter()
        .filter_map(|(alg, limit)| {
            let best = scenarios
                .iter()
                .filter(|s| s["scenario"] == "otp-login" && s["alg"] == alg.as_str())
                .filter_map(|s| s["per_second"].as_f64())
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
            Some(json!({
                "alg": alg,
                "logins_per_second": best,
                "signatures_per_second": limit,
                "ratio": best / (limit / signatures_per_login),
            }))
        })
        .collect();
    json!({
        "machine": tessera::machine(),
        "loadavg_before": head.load_before,
        "loadavg_after": tessera::loadavg(),
        "mailbox": if args.mailbox == Mailbox::Smtp { "smtp" } else { "dev" },
        "sink_quickack": args.sink_quickack,
        "bench_sched": if args.sched == Sched::Batch { "batch" } else { "normal" },
        "concurrency": args.concurrency,
        "rate": args.rate,
        // The first start creates the database (unless --workdir brought one); the second
        // starts on it.
        "startup_first_ms": ms(head.startup_first),
        "database_from_workdir": args.workdir.is_some(),
        "startup_existing_db_ms": ms(head.startup_existing),
        "idle_rss_kib": head.idle_rss,
        "final_rss_kib": head.final_rss,
        "scenarios": scenarios,
        "signing_limits_per_second": by_alg(&limits),
        "signing_limits_before_per_second": by_alg(limits_before),
        "signing_limits_after_per_second": by_alg(limits_after),
        "signatures_per_login": signatures_per_login,
        "logins_to_signing_limit": logins,
        "skipped_algs": skipped,
        "sink": head.sink.map(|s| json!({
            "received": s.received.load(Ordering::Relaxed),
            "unclaimed": s.unclaimed.load(Ordering::Relaxed),
            "unparsed": s.unparsed.load(Ordering::Relaxed),
        })),
    })
}

fn print_tables(s: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or_default();
    println!(
        "machine: {}; load average {} before, {} after",
        s["machine"].as_str().unwrap_or_default(),
        s["loadavg_before"].as_str().unwrap_or_default(),
        s["loadavg_after"].as_str().unwrap_or_default()
    );
    println!(
        "start-up to first /health: {:.1} ms on the first start ({}), {:.1} ms on a restart (existing database); idle RSS {} KiB; mailbox {}; bench scheduled {}; concurrency {}{}",
        f(&s["startup_first_ms"]),
        if s["database_from_workdir"] == true {
            "the --workdir database"
        } else {
            "a new database"
        },
        f(&s["startup_existing_db_ms"]),
        s["idle_rss_kib"],
        s["mailbox"].as_str().unwrap_or_default(),
        s["bench_sched"].as_str().unwrap_or_default(),
        s["concurrency"],
        s["rate"]
            .as_f64()
            .map(|r| format!("; open loop at {r}/s"))
            .unwrap_or_default(),
    );
    if s["sink_quickack"] == true {
        println!("SMTP sink in quick-ACK mode (diagnostic; not how a real server acknowledges)");
    }
    println!(
        "{:<20} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9}  errors",
        "scenario",
        "ok",
        "per sec",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "RSS KiB",
        "RSS after",
        "drain ms"
    );
    for r in s["scenarios"].as_array().into_iter().flatten() {
        let name = match r["alg"].as_str() {
            Some(a) => format!("{} {a}", r["scenario"].as_str().unwrap_or_default()),
            None => r["scenario"].as_str().unwrap_or_default().to_string(),
        };
        println!(
            "{:<20} {:>8} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10} {:>10} {:>9}  {}",
            name,
            r["ok"].as_u64().unwrap_or_default(),
            f(&r["per_second"]),
            f(&r["p50_ms"]),
            f(&r["p90_ms"]),
            f(&r["p99_ms"]),
            f(&r["max_ms"]),
            r["rss_kib_before"].as_u64().unwrap_or_default(),
            r["rss_kib_after"].as_u64().unwrap_or_default(),
            r["outbox_drain_ms"]
                .as_f64()
                .map_or("-".into(), |d| format!("{d:.0}")),
            r["errors"]
        );
        if let (Some(t), Some(b)) = (
            r["cpu_ms_per_op"]["tessera"].as_f64(),
            r["cpu_ms_per_op"]["bench"].as_f64(),
        ) {
            println!(
                "{:<20} CPU per operation: Tessera {t:.3} ms, the bench {b:.3} ms",
                ""
            );
        }
        if let Some(total) = r["sql_per_op"]["total"].as_f64() {
            let verbs: Vec<String> = r["sql_per_op"]["by_verb"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| f(v) > 0.0)
                .map(|(k, v)| format!("{k} {:.2}", f(v)))
                .collect();
            println!(
                "{:<20} SQL statements per operation: {total:.2} ({})",
                "",
                verbs.join(", ")
            );
        }
        if let Some(st) = r["steps"].as_object() {
            let parts: Vec<String> = st
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k} p50 {:.1} / p99 {:.1} ms",
                        f(&v["p50_ms"]),
                        f(&v["p99_ms"])
                    )
                })
                .collect();
            println!("{:<20} steps: {}", "", parts.join(", "));
        }
    }
    println!("RSS at the end: {} KiB", s["final_rss_kib"]);
    for (alg, why) in s["skipped_algs"].as_object().into_iter().flatten() {
        println!(
            "otp-login {alg} skipped: {}",
            why.as_str().unwrap_or_default()
        );
    }
    for (alg, limit) in s["signing_limits_per_second"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let before = &s["signing_limits_before_per_second"][alg.as_str()];
        let measured = if before.is_null() {
            String::new()
        } else {
            format!(
                "; the mean of {:.0}/s before the load and {:.0}/s after",
                f(before),
                f(&s["signing_limits_after_per_second"][alg.as_str()])
            )
        };
        println!(
            "{alg} signing limit on this machine: {:.0}/s (all cores{measured})",
            f(limit)
        );
    }
    for l in s["logins_to_signing_limit"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "otp-login {}: {:.1} logins/s ÷ ({:.0} signatures/s ÷ {} per login) = {:.1} %",
            l["alg"].as_str().unwrap_or_default(),
            f(&l["logins_per_second"]),
            f(&l["signatures_per_second"]),
            s["signatures_per_login"],
            f(&l["ratio"]) * 100.0
        );
    }
    if let Some(k) = s["sink"].as_object() {
        println!(
            "SMTP sink: {} messages received, {} with nobody waiting, {} without a code",
            k["received"], k["unclaimed"], k["unparsed"]
        );
    }
}
