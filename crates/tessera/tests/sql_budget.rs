//! The SQL statement budget of a sign-in (issue 9): a full email-code login — the code asked
//! for at `/passwordless/start`, the message delivered over real SMTP (aiosmtpd) by the
//! outbox worker, the code exchanged at `/oauth/token` — runs at most 8 SQL statements, on
//! SQLite and on PostgreSQL. `/userinfo` with the opaque access token runs one.
//!
//! Counted by the running binary itself, from `/metrics` (every statement sqlx runs, by verb;
//! transaction control aside, see [`total`]),
//! with the rate limits off (each limit turned on adds a statement per key) and the outbox
//! poll far apart (a poll is a claim, not part of any login). The count does not depend on
//! the machine's speed; the one thing that can add to it is the server's own maintenance
//! round (every 10 s), so each figure is the smallest of three logins.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tessera_store::testdb::TestDb;

/// The budget the issue sets for one full otp-login.
const LOGIN_BUDGET: u64 = 8;
const SECRET: &str = "budget-secret-budget-secret-0123456789ab";

struct Server {
    _proc: Proc,
    base: String,
    metrics: String,
    maildir: std::path::PathBuf,
    _smtp: Proc,
    http: reqwest::Client,
}

async fn launch(dir: &Path, database: &str) -> Server {
    let maildir = dir.join("maildir");
    let (smtp, smtp_port) = smtp_server(&maildir);
    let port = free_port();
    let metrics_port = free_port();
    let config = dir.join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            r#"issuer = "http://127.0.0.1:{port}/"
listen = "127.0.0.1:{port}"
data_dir = {data:?}
{database}

[email]
from = "Login <login@budget.test>"
smtp_url = "smtp://127.0.0.1:{smtp_port}?tls=none"

[outbox]
poll_interval_ms = 60000

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

[[applications]]
name = "Budget"
client_id = "budget-web"
client_secret = "{SECRET}"
app_type = "regular_web"
"#,
            data = dir.join("data"),
        ),
    )
    .unwrap();
    let log = dir.join("tessera.log");
    let proc = tessera(&config, &log, &[]);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, &log).await;
    Server {
        _proc: proc,
        base,
        metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
        maildir,
        _smtp: smtp,
        http: reqwest::Client::new(),
    }
}

impl Server {
    async fn scrape(&self) -> String {
        let r = self.http.get(&self.metrics).send().await.unwrap();
        r.text().await.unwrap()
    }

    /// Statements run so far, by verb. The scrape's own statements are in its answer.
    async fn statements(&self) -> BTreeMap<String, u64> {
        self.scrape()
            .await
            .lines()
            .filter_map(|l| {
                l.strip_prefix("tessera_store_statement_duration_seconds_count{verb=\"")
            })
            .map(|rest| {
                let (verb, n) = rest.split_once("\"}").unwrap();
                (verb.to_string(), n.trim().parse().unwrap())
            })
            .collect()
    }

    fn code_for(&self, email: &str) -> Option<String> {
        maildir_messages(&self.maildir).iter().find_map(|raw| {
            (header(raw, "To")? == email).then(|| {
                let subject = header(raw, "Subject").unwrap();
                subject.split_whitespace().next().unwrap().to_string()
            })
        })
    }

    /// One full sign-in of `email`; returns the access token. Waits for the outbox to settle.
    async fn login(&self, email: &str) -> String {
        let r = self
            .http
            .post(format!("{}/passwordless/start", self.base))
            .json(&json!({"client_id": "budget-web", "client_secret": SECRET,
                "connection": "email", "email": email, "send": "code"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let mut code = None;
        wait_for_async("the code", || {
            code = self.code_for(email);
            code.is_some()
        })
        .await;
        let r = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .json(
                &json!({"grant_type": "http://auth0.com/oauth/grant-type/passwordless/otp",
                "client_id": "budget-web", "client_secret": SECRET, "realm": "email",
                "username": email, "otp": code.unwrap(), "scope": "openid profile email"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        assert!(body["id_token"].is_string());
        body["access_token"].as_str().unwrap().to_string()
    }

    async fn userinfo(&self, token: &str) {
        let r = self
            .http
            .get(format!("{}/userinfo", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// Statements run by `work`, less the scrapes' own, waiting until the outbox is empty
    /// (the delivered message's settle is part of the login).
    async fn count<F: std::future::Future<Output = ()>>(
        &self,
        work: F,
    ) -> (u64, BTreeMap<String, u64>) {
        let a = self.statements().await;
        let b = self.statements().await;
        let per_scrape = diff(&b, &a);
        work.await;
        let mut scrapes = 0;
        let mut end;
        loop {
            end = self.statements().await;
            scrapes += 1;
            let depth = self
                .scrape()
                .await
                .lines()
                .find_map(|l| l.strip_prefix("tessera_outbox_depth "))
                .map(|n| n.trim().parse::<f64>().unwrap())
                .unwrap();
            scrapes += 1;
            if depth == 0.0 {
                break;
            }
            assert!(scrapes < 400, "the outbox did not drain");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // `end` was read before the depth scrape: only the scrapes up to it count (each
        // scrape is one SELECT, the outbox depth).
        let mut by_verb = diff(&end, &b);
        for (verb, n) in &per_scrape {
            let v = by_verb.entry(verb.clone()).or_default();
            *v = v.saturating_sub(n * (scrapes - 1));
        }
        by_verb.retain(|_, n| *n > 0);
        (total(&by_verb), by_verb)
    }
}

/// Statements by verb run between two scrapes.
fn diff(later: &BTreeMap<String, u64>, earlier: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    later
        .iter()
        .map(|(v, n)| (v.clone(), n - earlier.get(v).copied().unwrap_or(0)))
        .collect()
}

/// Every statement, transaction control included: a login runs none (the code and its message
/// are two statements of their own since the group-commit change), so a `BEGIN` or a `COMMIT`
/// that came back would count against the budget like any other trip to the database.
fn total(m: &BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

async fn wait_for_async(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn budget(database: &str) {
    let dir = tempfile::tempdir().unwrap();
    let s = launch(dir.path(), database).await;
    // The first sign-in loads the application, the connection and the keys into memory.
    s.login("warm@budget.test").await;
    let mut logins = Vec::new();
    let mut returning = Vec::new();
    let mut userinfo = Vec::new();
    for i in 0..3 {
        let email = format!("user{i}@budget.test");
        let mut token = String::new();
        let (n, verbs) = s.count(async { token = s.login(&email).await }).await;
        logins.push((n, verbs));
        // A returning user: the same statements (the sign-in upsert updates instead).
        for f in std::fs::read_dir(s.maildir.join("new")).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        let (n, verbs) = s.count(async { token = s.login(&email).await }).await;
        returning.push((n, verbs));
        let (n, verbs) = s.count(s.userinfo(&token)).await;
        userinfo.push((n, verbs));
    }
    println!("new users: {logins:?}\nreturning: {returning:?}\nuserinfo: {userinfo:?}");
    let least = |v: &[(u64, BTreeMap<String, u64>)]| v.iter().map(|(n, _)| *n).min().unwrap();
    assert!(
        least(&logins) <= LOGIN_BUDGET,
        "a first sign-in ran more than {LOGIN_BUDGET} statements: {logins:?}"
    );
    assert!(
        least(&returning) <= LOGIN_BUDGET,
        "a returning sign-in ran more than {LOGIN_BUDGET} statements: {returning:?}"
    );
    assert!(least(&userinfo) <= 1, "/userinfo: {userinfo:?}");
    // The count is real: a login does write (the code, the message, the user, two events).
    assert!(least(&logins) >= 6, "{logins:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otp_login_runs_at_most_8_statements_on_sqlite() {
    budget("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otp_login_runs_at_most_8_statements_on_postgres() {
    let db = TestDb::postgres().await.unwrap();
    // Every node of a PostgreSQL deployment shares the server secret: the file must name it.
    let secret = "secret_key = \"c3FsLWJ1ZGdldC1zcWwtYnVkZ2V0LXNxbC1idWRnZXQtMDE=\"";
    budget(&format!("{secret}\n[database]\nurl = {:?}", db.url)).await;
}
