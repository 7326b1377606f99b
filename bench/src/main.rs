//! `tessera-bench`: starts the real `tessera` binary on a loopback port (dev mode, rate limits
//! off, a fresh SQLite file) and drives it over HTTP exactly as Auth0 clients do. Every run is
//! bounded by a duration and a request count. It prints, per scenario, throughput, latency
//! percentiles, errors by status and Tessera's RSS, then the RSA-2048 signing limit of this
//! machine and the ratio of logins per second to it. `--json` prints one JSON document instead.
//!
//! Scenarios:
//! - `start`: `/passwordless/start` with distinct emails;
//! - `otp-login`: start, read the code from the dev mailbox (the delivery path dev mode uses),
//!   then the OTP grant at `/oauth/token`;
//! - `code-exchange`: `/authorize` with an SSO session gives a code, exchanged at `/oauth/token`;
//! - `userinfo`: `/userinfo` with an opaque access token.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

const OTP: &str = "http://auth0.com/oauth/grant-type/passwordless/otp";
const SECRET: &str = "bench-secret-bench-secret-bench-secret-0123456789";
const CB: &str = "http://localhost:5999/callback";

#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The tessera binary to start.
    #[arg(long, default_value = "target/release/tessera")]
    tessera: PathBuf,
    /// Scenarios to run, comma-separated.
    #[arg(long, default_value = "start,otp-login,code-exchange,userinfo")]
    scenarios: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds per scenario (the run stops at the first of duration and count).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests (or logins) per scenario at most.
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

struct Tessera {
    child: Child,
    base: String,
    _dir: PathBuf,
}

impl Drop for Tessera {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts Tessera on loopback with limits off; returns when `/health` answers and how long that
/// took.
async fn start_tessera(bin: &PathBuf) -> anyhow::Result<(Tessera, Duration)> {
    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!("tessera-bench-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:{port}"
data_dir = {dir:?}

[rate_limits]
start_per_ip = 0
start_per_identifier = 0
start_per_client = 0
failed_attempts_per_identifier = 0
failed_attempts_per_ip_identifier = 0
token_per_ip = 0
browser_per_ip = 0

[log]
level = "warn"

[[applications]]
name = "Bench"
client_id = "bench"
client_secret = "{SECRET}"
app_type = "regular_web"
callbacks = ["{CB}"]
"#
        ),
    )?;
    let started = Instant::now();
    let child = Command::new(bin)
        .args(["serve", "--dev", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let t = Tessera {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{}/health", t.base)).send().await
            && r.status() == 200
        {
            return Ok((t, started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("tessera did not answer /health within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[derive(Default)]
struct Outcome {
    latencies_us: Vec<u64>,
    errors: BTreeMap<String, u64>,
}

/// Runs `op` from `concurrency` tasks until the time or the count runs out.
async fn drive<F, Fut>(args: &Args, op: F) -> (Outcome, Duration)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (op, next, count) = (Arc::clone(&op), Arc::clone(&next), args.count);
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count || Instant::now() >= deadline {
                    return out;
                }
                let t = Instant::now();
                match op(i).await {
                    Ok(()) => out.latencies_us.push(t.elapsed().as_micros() as u64),
                    Err(e) => *out.errors.entry(e).or_default() += 1,
                }
            }
        }));
    }
    let mut all = Outcome::default();
    for t in tasks {
        if let Ok(o) = t.await {
            all.latencies_us.extend(o.latencies_us);
            for (k, v) in o.errors {
                *all.errors.entry(k).or_default() += v;
            }
        }
    }
    (all, started.elapsed())
}

fn status_err(r: &reqwest::Response) -> String {
    format!("HTTP {}", r.status().as_u16())
}

async fn post_json(http: &reqwest::Client, url: String, body: Value) -> Result<Value, String> {
    let r = http
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("transport: {}", e.without_url()))?;
    if !r.status().is_success() {
        return Err(status_err(&r));
    }
    r.json().await.map_err(|_| "bad JSON".to_string())
}

/// Waits for the code mailed to `to` in the dev mailbox.
async fn code_for(http: &reqwest::Client, base: &str, to: &str) -> Result<String, String> {
    for _ in 0..2000 {
        let v: Value = http
            .get(format!("{base}/_dev/mailbox.json"))
            .send()
            .await
            .map_err(|_| "mailbox".to_string())?
            .json()
            .await
            .map_err(|_| "mailbox JSON".to_string())?;
        if let Some(code) = v["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["to"] == to)
            .and_then(|m| m["subject"].as_str())
            .and_then(|s| s.split_whitespace().next())
        {
            return Ok(code.to_string());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Err("no code in the mailbox".into())
}

async fn otp_login(http: &reqwest::Client, base: &str, email: &str) -> Result<Value, String> {
    post_json(
        http,
        format!("{base}/passwordless/start"),
        json!({"client_id": "bench", "client_secret": SECRET, "connection": "email", "email": email, "send": "code"}),
    )
    .await?;
    let code = code_for(http, base, email).await?;
    post_json(
        http,
        format!("{base}/oauth/token"),
        json!({"grant_type": OTP, "client_id": "bench", "client_secret": SECRET, "username": email, "otp": code, "realm": "email", "scope": "openid email"}),
    )
    .await
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// RSA-2048 RS256 signatures per second on every core, through the library Tessera uses.
fn signing_limit() -> anyhow::Result<f64> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (key, _) = tessera_core::jwt::SigningKey::generate(&tessera_core::rand::SystemRandom)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let key = Arc::new(key);
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), json!("email|0123456789abcdef01234567"));
    claims.insert("aud".into(), json!("bench"));
    let claims = Arc::new(claims);
    let window = Duration::from_secs(2);
    let handles: Vec<_> = (0..cores)
        .map(|_| {
            let (key, claims) = (Arc::clone(&key), Arc::clone(&claims));
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut n = 0u64;
                while started.elapsed() < window {
                    if key.sign(&claims).is_ok() {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().filter_map(|h| h.join().ok()).sum();
    Ok(total as f64 / window.as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (tessera, startup) = start_tessera(&args.tessera).await?;
    let pid = tessera.child.id();
    let base = tessera.base.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let idle_rss = rss_kib(pid);
    let mut report = Vec::new();
    let mut logins_per_sec = None;
    for scenario in args.scenarios.split(',').map(str::trim) {
        let rss_before = rss_kib(pid);
        let (http2, base2) = (http.clone(), base.clone());
        let run = match scenario {
            "start" => {
                drive(&args, move |i| {
                    let (http, base) = (http2.clone(), base2.clone());
                    async move {
                        post_json(
                            &http,
                            format!("{base}/passwordless/start"),
                            json!({"client_id": "bench", "client_secret": SECRET, "connection": "email", "email": format!("start{i}@bench.test"), "send": "code"}),
                        )
                        .await
                        .map(|_| ())
                    }
                })
                .await
            }
            "otp-login" => {
                drive(&args, move |i| {
                    let (http, base) = (http2.clone(), base2.clone());
                    async move { otp_login(&http, &base, &format!("login{i}@bench.test")).await.map(|_| ()) }
                })
                .await
            }
            "userinfo" => {
                let tokens = otp_login(&http, &base, "userinfo@bench.test")
                    .await
                    .map_err(anyhow::Error::msg)?;
                let at = tokens["access_token"].as_str().unwrap_or_default().to_string();
                drive(&args, move |_| {
                    let (http, base, at) = (http2.clone(), base2.clone(), at.clone());
                    async move {
                        let r = http
                            .get(format!("{base}/userinfo"))
                            .bearer_auth(at)
                            .send()
                            .await
                            .map_err(|e| format!("transport: {}", e.without_url()))?;
                        if r.status().is_success() { Ok(()) } else { Err(status_err(&r)) }
                    }
                })
                .await
            }
            "code-exchange" => {
                // One sign-in on the hosted page's behalf: a session cookie from a magic-free
                // path is not available to a plain HTTP client, so the session comes from
                // /co/authenticate + /authorize?login_ticket, as Lock does.
                let cookie = session_cookie(&http, &base).await.map_err(anyhow::Error::msg)?;
                let no_redirect = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_max_idle_per_host(args.concurrency)
                    .build()?;
                drive(&args, move |_| {
                    let (http, base, cookie) = (no_redirect.clone(), base2.clone(), cookie.clone());
                    async move {
                        let r = http
                            .get(format!("{base}/authorize?client_id=bench&response_type=code&redirect_uri=http%3A%2F%2Flocalhost%3A5999%2Fcallback&scope=openid&prompt=none"))
                            .header("cookie", cookie)
                            .send()
                            .await
                            .map_err(|e| format!("transport: {}", e.without_url()))?;
                        let loc = r.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_string();
                        let code = loc.split("code=").nth(1).map(|c| c.split('&').next().unwrap_or_default().to_string()).ok_or_else(|| status_err(&r))?;
                        let t = http
                            .post(format!("{base}/oauth/token"))
                            .form(&[("grant_type", "authorization_code"), ("client_id", "bench"), ("client_secret", SECRET), ("code", &code), ("redirect_uri", CB)])
                            .send()
                            .await
                            .map_err(|e| format!("transport: {}", e.without_url()))?;
                        if t.status().is_success() { Ok(()) } else { Err(status_err(&t)) }
                    }
                })
                .await
            }
            other => bail!("unknown scenario {other:?}"),
        };
        let (mut out, took) = run;
        out.latencies_us.sort_unstable();
        let ok = out.latencies_us.len() as f64;
        let per_sec = ok / took.as_secs_f64();
        if scenario == "otp-login" {
            logins_per_sec = Some(per_sec);
        }
        report.push(json!({
            "scenario": scenario,
            "ok": out.latencies_us.len(),
            "seconds": took.as_secs_f64(),
            "per_second": per_sec,
            "p50_ms": percentile(&out.latencies_us, 0.50),
            "p90_ms": percentile(&out.latencies_us, 0.90),
            "p99_ms": percentile(&out.latencies_us, 0.99),
            "max_ms": percentile(&out.latencies_us, 1.0),
            "errors": out.errors,
            "rss_kib_before": rss_before,
            "rss_kib_after": rss_kib(pid),
        }));
    }
    drop(tessera);
    let limit = signing_limit()?;
    // An OTP login signs one RS256 id_token (the access token is opaque).
    let signatures_per_login = 1.0;
    let ratio = logins_per_sec.map(|l| l / (limit / signatures_per_login));
    let summary = json!({
        "startup_to_health_ms": startup.as_secs_f64() * 1000.0,
        "idle_rss_kib": idle_rss,
        "concurrency": args.concurrency,
        "scenarios": report,
        "rsa2048_signatures_per_second": limit,
        "signatures_per_login": signatures_per_login,
        "logins_to_signing_limit_ratio": ratio,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!(
        "start-up to first /health: {:.1} ms; idle RSS {} KiB; concurrency {}",
        startup.as_secs_f64() * 1000.0,
        idle_rss.unwrap_or(0),
        args.concurrency
    );
    println!(
        "{:<14} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}  errors",
        "scenario", "ok", "per sec", "p50 ms", "p90 ms", "p99 ms", "max ms", "RSS KiB", "RSS after"
    );
    for r in summary["scenarios"].as_array().into_iter().flatten() {
        println!(
            "{:<14} {:>8} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10} {:>10}  {}",
            r["scenario"].as_str().unwrap_or_default(),
            r["ok"],
            r["per_second"].as_f64().unwrap_or_default(),
            r["p50_ms"].as_f64().unwrap_or_default(),
            r["p90_ms"].as_f64().unwrap_or_default(),
            r["p99_ms"].as_f64().unwrap_or_default(),
            r["max_ms"].as_f64().unwrap_or_default(),
            r["rss_kib_before"],
            r["rss_kib_after"],
            r["errors"]
        );
    }
    println!("RSA-2048 signing limit on this machine: {limit:.0}/s (all cores)");
    if let Some(r) = ratio {
        println!(
            "otp-login per second ÷ (limit ÷ {signatures_per_login} signature per login) = {:.1} %",
            r * 100.0
        );
    }
    Ok(())
}

/// A Tessera session cookie, the way Lock gets one: start, code, /co/authenticate, then
/// /authorize with the login ticket.
async fn session_cookie(http: &reqwest::Client, base: &str) -> Result<String, String> {
    let email = "session@bench.test";
    post_json(
        http,
        format!("{base}/passwordless/start"),
        json!({"client_id": "bench", "client_secret": SECRET, "connection": "email", "email": email, "send": "code"}),
    )
    .await?;
    let code = code_for(http, base, email).await?;
    let r = http
        .post(format!("{base}/co/authenticate"))
        .json(&json!({"client_id": "bench", "username": email, "otp": code, "realm": "email", "credential_type": OTP}))
        .send()
        .await
        .map_err(|e| format!("transport: {}", e.without_url()))?;
    let co_cookie = cookies(&r);
    let ticket: Value = r.json().await.map_err(|_| "bad JSON".to_string())?;
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let r = no_redirect
        .get(format!(
            "{base}/authorize?client_id=bench&response_type=code&redirect_uri=http%3A%2F%2Flocalhost%3A5999%2Fcallback&scope=openid&realm=email&login_ticket={}",
            ticket["login_ticket"].as_str().unwrap_or_default()
        ))
        .header("cookie", co_cookie)
        .send()
        .await
        .map_err(|e| format!("transport: {}", e.without_url()))?;
    let all = cookies(&r);
    all.split("; ")
        .find(|c| c.starts_with("tessera_session="))
        .map(str::to_string)
        .ok_or_else(|| "no session cookie".to_string())
}

fn cookies(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect::<Vec<_>>()
        .join("; ")
}
