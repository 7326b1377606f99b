//! Helpers for tests that run the real `tessera` binary and real peer processes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port that is free now, for a process a test starts to listen on. It is taken
/// at random below the kernel's ephemeral range, never from it: a port that `bind(0)` handed
/// out could be handed out again, and any outgoing connection (to the SMTP server, to
/// PostgreSQL, of this test or of another running beside it) may take an ephemeral port as
/// its own before the process binds it. Below the range only another test's explicit bind
/// can take it, and two tests pick the same one of thousands rarely.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOWEST: u16 = 10_000;
    if first_ephemeral > LOWEST + 1_000 {
        // A random seed each call (std's hasher keys are random).
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let span = u64::from(first_ephemeral - LOWEST);
        for i in 0..200u64 {
            let port = LOWEST + (seed.wrapping_add(i.wrapping_mul(7919)) % span) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child process when dropped, so a failed test leaves nothing running.
pub struct Proc(pub Child);

impl Proc {
    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// Starts aiosmtpd (a real SMTP server from PyPI) writing every accepted message to a Maildir.
pub fn smtp_server(maildir: &Path) -> (Proc, u16) {
    smtp_server_on(maildir, free_port(), "ok")
}

/// Starts aiosmtpd on `port` with the `flaky_smtp.Flaky` handler in `mode` ("ok", "4xx:N",
/// "5xx"; see tests/support/flaky_smtp.py).
pub fn smtp_server_on(maildir: &Path, port: u16, mode: &str) -> (Proc, u16) {
    smtp_server_with(maildir, port, mode, &[])
}

/// As [`smtp_server_on`], with extra aiosmtpd options (`--tlscert`, `--smtpscert`, …).
pub fn smtp_server_with(maildir: &Path, port: u16, mode: &str, options: &[&str]) -> (Proc, u16) {
    let support = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support");
    let child = Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-c", "flaky_smtp.Flaky"])
        .args(options)
        .arg(maildir)
        .arg(mode)
        .args(["-l", &format!("127.0.0.1:{port}")])
        .env("PYTHONPATH", support)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m aiosmtpd (pip install aiosmtpd)");
    let mut p = Proc(child);
    wait_for("the SMTP server", Duration::from_secs(20), || {
        if let Ok(Some(status)) = p.0.try_wait() {
            panic!("aiosmtpd exited with {status}: is it installed? (pip install aiosmtpd)");
        }
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (p, port)
}

pub fn maildir_messages(maildir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(maildir.join("new")) {
        for e in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                out.push(text);
            }
        }
    }
    out
}

/// The SMTP answers the flaky server gave, as (Message-ID, code) pairs.
pub fn smtp_attempts(maildir: &Path) -> Vec<(String, String)> {
    let path = PathBuf::from(format!("{}.attempts", maildir.display()));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect()
}

pub fn maildir_count(maildir: &Path) -> usize {
    std::fs::read_dir(maildir.join("new"))
        .map(|d| d.count())
        .unwrap_or(0)
}

pub fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

/// Starts `tessera serve --config <config>` with stderr to `log`.
pub fn tessera(config: &Path, log: &Path, extra_env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().unwrap())
}

pub async fn wait_healthy(base: &str, log: &Path) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tessera at {base} did not become healthy:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
