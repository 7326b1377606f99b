//! Running the real `tessera` binary for a benchmark: a config file on a free loopback port
//! (dev mode, rate limits off, SQLite in a work directory), environment overrides for the SMTP
//! sink and the extra applications, start-up timed to the first successful `/health`, a
//! graceful stop, and what `/proc` and `/metrics` say about it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The application every scenario uses (RS256, the default algorithm).
pub const CLIENT_ID: &str = "bench";
pub const SECRET: &str = "bench-secret-bench-secret-bench-secret-0123456789";
pub const CALLBACK: &str = "http://localhost:5999/callback";
pub const OTP_GRANT: &str = "http://auth0.com/oauth/grant-type/passwordless/otp";

/// An application defined through `TESSERA_APPLICATIONS__<n>__*`, signing with `alg`.
#[derive(Clone, Debug)]
pub struct ExtraApp {
    pub client_id: String,
    pub alg: String,
}

impl ExtraApp {
    pub fn for_alg(alg: &str) -> ExtraApp {
        ExtraApp {
            client_id: format!("bench-{}", alg.to_ascii_lowercase()),
            alg: alg.to_string(),
        }
    }

    /// Its environment variables, as the `n`th application (the file defines the 0th).
    fn env(&self, n: usize) -> Vec<(String, String)> {
        let k = |f: &str| format!("TESSERA_APPLICATIONS__{n}__{f}");
        vec![
            (k("NAME"), format!("Bench {}", self.alg)),
            (k("CLIENT_ID"), self.client_id.clone()),
            (k("CLIENT_SECRET"), SECRET.into()),
            (k("APP_TYPE"), "regular_web".into()),
            (k("CALLBACKS"), format!("[\"{CALLBACK}\"]")),
            (
                k("GRANT_TYPES"),
                format!("[\"{OTP_GRANT}\", \"authorization_code\"]"),
            ),
            (k("CONNECTIONS"), "[\"email\"]".into()),
            (k("SIGNING_ALG"), self.alg.clone()),
        ]
    }
}

/// A data directory with Tessera's config; removed on drop unless kept.
pub struct Workdir {
    pub dir: PathBuf,
    pub port: u16,
    pub metrics_port: u16,
    pub keep: bool,
}

impl Workdir {
    /// A new directory under the system's temp dir; or `existing` (kept, with its database),
    /// whose config file is rewritten for new ports.
    pub fn create(existing: Option<&Path>, keep: bool) -> anyhow::Result<Workdir> {
        let (port, metrics_port) = (free_port()?, free_port()?);
        let dir = match existing {
            Some(d) => std::path::absolute(d)?,
            None => {
                std::env::temp_dir().join(format!("tessera-bench-{}-{port}", std::process::id()))
            }
        };
        let keep = keep || existing.is_some();
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("tessera.toml"), config(&dir, port, metrics_port))?;
        Ok(Workdir {
            dir,
            port,
            metrics_port,
            keep,
        })
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn config(dir: &Path, port: u16, metrics_port: u16) -> String {
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

[metrics]
listen = "127.0.0.1:{metrics_port}"

[log]
level = "warn"

[[applications]]
name = "Bench"
client_id = "{CLIENT_ID}"
client_secret = "{SECRET}"
app_type = "regular_web"
callbacks = ["{CALLBACK}"]
"#
    )
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// How to start Tessera.
pub struct Launch<'a> {
    pub bin: &'a Path,
    pub work: &'a Workdir,
    /// The SMTP sink's port; `None` leaves email in the dev mailbox.
    pub smtp_port: Option<u16>,
    pub extra_apps: &'a [ExtraApp],
    /// Where Tessera's stdout and stderr go.
    pub log: &'a Path,
    /// Start Tessera through `chrt --other 0`, under the normal policy: set while the bench
    /// runs under `SCHED_BATCH` ([`scheduling`]), which Tessera would otherwise inherit.
    pub reset_policy: bool,
}

/// A running Tessera.
pub struct Tessera {
    child: Child,
    pub base: String,
    pub metrics: String,
}

impl Drop for Tessera {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Launch<'_> {
    /// Starts Tessera and waits for `/health`; returns it and the time from spawn to the first
    /// successful answer. If it exits first, the error carries the end of its log.
    pub async fn start(&self, http: &reqwest::Client) -> anyhow::Result<(Tessera, Duration)> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut cmd = if self.reset_policy {
            let mut c = Command::new("chrt");
            c.args(["--other", "0"]).arg(self.bin);
            c
        } else {
            Command::new(self.bin)
        };
        cmd.args(["serve", "--dev", "--config"])
            .arg(self.work.dir.join("tessera.toml"))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if let Some(p) = self.smtp_port {
            cmd.env(
                "TESSERA_EMAIL__SMTP_URL",
                format!("smtp://127.0.0.1:{p}?tls=none"),
            );
        }
        for (i, app) in self.extra_apps.iter().enumerate() {
            cmd.envs(app.env(i + 1));
        }
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let mut t = Tessera {
            child,
            base: format!("http://127.0.0.1:{}", self.work.port),
            metrics: format!("http://127.0.0.1:{}/metrics", self.work.metrics_port),
        };
        loop {
            if let Ok(r) = http.get(format!("{}/health", t.base)).send().await
                && r.status() == 200
            {
                return Ok((t, started.elapsed()));
            }
            if let Some(status) = t.child.try_wait()? {
                bail!(
                    "tessera exited ({status}) before answering /health:\n{}",
                    log_tail(self.log)
                );
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("tessera did not answer /health within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

impl Tessera {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (a graceful shutdown, as a service manager does), then SIGKILL after 10 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(()) // Drop kills it.
    }

    /// Resident set size from `/proc/<pid>/status`.
    pub fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// CPU time Tessera has used so far (user and system).
    pub fn cpu(&self) -> Option<Duration> {
        cpu_time(&format!("/proc/{}/stat", self.pid()))
    }

    /// `tessera_outbox_depth` from `/metrics`.
    pub async fn outbox_depth(&self, http: &reqwest::Client) -> Option<i64> {
        let text = http
            .get(&self.metrics)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("tessera_outbox_depth "))?
            .trim()
            .parse()
            .ok()
    }

    /// SQL statements run so far, by verb (`tessera_store_statement_duration_seconds_count`).
    /// Each scrape itself runs one SELECT (the outbox depth), counted in its own answer.
    pub async fn statements(&self, http: &reqwest::Client) -> Option<BTreeMap<String, u64>> {
        let text = http
            .get(&self.metrics)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let mut out = BTreeMap::new();
        for l in text.lines() {
            let Some(rest) =
                l.strip_prefix("tessera_store_statement_duration_seconds_count{verb=\"")
            else {
                continue;
            };
            let (verb, n) = rest.split_once("\"}")?;
            out.insert(verb.to_string(), n.trim().parse().ok()?);
        }
        Some(out)
    }

    /// Waits (at most `limit`) until every queued message has been delivered; returns how long
    /// that took, or `None` if the outbox was still not empty.
    /// Also returns how many times it scraped `/metrics`.
    pub async fn drain_outbox(
        &self,
        http: &reqwest::Client,
        limit: Duration,
    ) -> (Option<Duration>, u64) {
        let started = Instant::now();
        let mut scrapes = 0;
        while started.elapsed() < limit {
            scrapes += 1;
            if self.outbox_depth(http).await == Some(0) {
                return (Some(started.elapsed()), scrapes);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (None, scrapes)
    }
}

/// Puts every thread of this process under Linux's `SCHED_BATCH` policy, or back under the
/// normal one (`chrt --all-tasks`; threads started later inherit it). Under `SCHED_BATCH` its
/// weight is the same; what changes is that its threads, when woken (an answer or a mail
/// arrived), do not preempt a thread that is running: they wait for the scheduler's next
/// choice. That sets the bench back at each of its wake-ups, in Tessera's favour: on a
/// machine whose cores the bench shares with Tessera, each wake-up would otherwise interrupt
/// one of Tessera's threads, a cost that clients on other machines do not bring to its cores.
pub fn scheduling(batch: bool) -> anyhow::Result<()> {
    let out = Command::new("chrt")
        .args([if batch { "--batch" } else { "--other" }, "--all-tasks", "--pid", "0"])
        .arg(std::process::id().to_string())
        .output()
        .context("cannot run chrt (util-linux) to set the scheduling policy; --sched normal runs without it")?;
    if !out.status.success() {
        bail!(
            "chrt could not set the scheduling policy ({}); --sched normal runs without it",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The machine, for the report: core count and CPU model.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mut out = String::new();
    let _ = write!(out, "{cores} cores, {model}");
    out
}

/// The 1, 5 and 15-minute load averages from `/proc/loadavg`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// User plus system CPU time of a process, from `/proc/<pid>/stat` (fields 14 and 15, in
/// clock ticks of 1/100 s, the USER_HZ of Linux on x86 and ARM).
pub fn cpu_time(stat_path: &str) -> Option<Duration> {
    let s = std::fs::read_to_string(stat_path).ok()?;
    // The command name (field 2) may hold spaces; the fields after it start past its ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `chrt -p`'s report of a process's policy.
    fn policy(pid: u32) -> String {
        let out = Command::new("chrt")
            .args(["-p", &pid.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The bench becomes a batch job and back; a process started the way `Launch::start`
    /// starts Tessera (`chrt --other 0 …`) runs under the normal policy while the bench is a
    /// batch job.
    #[test]
    fn the_bench_runs_as_a_batch_job_and_starts_tessera_under_the_normal_policy() {
        scheduling(true).unwrap();
        assert!(policy(std::process::id()).contains("SCHED_BATCH"));
        // A child of a batch job inherits its policy; `chrt --other 0` sets it back.
        let inherited = Command::new("sh")
            .args(["-c", "chrt -p $$"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&inherited.stdout).contains("SCHED_BATCH"));
        let reset = Command::new("chrt")
            .args(["--other", "0", "sh", "-c", "chrt -p $$"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&reset.stdout).contains("SCHED_OTHER"));
        scheduling(false).unwrap();
        assert!(policy(std::process::id()).contains("SCHED_OTHER"));
    }
}
