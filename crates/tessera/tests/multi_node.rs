//! Two `tessera` processes on different ports share one PostgreSQL database, as several nodes
//! behind a load balancer do. A code started on one node is exchanged on the other; a key
//! rotated through one node's configuration is published by the other's JWKS; a browser session
//! (and its login ticket and authorization code) made on one node works on the other; a change
//! made through one node's Management API applies on the other at once; and a thousand queued
//! emails are all delivered while both outbox workers run and one node is killed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tessera_store::testdb::TestDb;

const CLIENT_SECRET: &str = "multi-node-secret-multi-node-secret-0123456789";
const SECRET_KEY: &str = "bXVsdGktbm9kZS1zaGFyZWQtc2VjcmV0LWtleS0wMTIzNDU2Nzg5";
/// The address of the (imaginary) load balancer: both nodes issue tokens under it.
const ISSUER: &str = "http://127.0.0.1:9/";

struct Node {
    proc: Proc,
    base: String,
    config: PathBuf,
    log: PathBuf,
}

/// `extra` is TOML appended to the node's configuration.
fn node(dir: &Path, name: &str, db_url: &str, smtp_port: u16, extra: &str) -> Node {
    let port = free_port();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"issuer = "{ISSUER}"
listen = "127.0.0.1:{port}"
data_dir = {data:?}
secret_key = "{SECRET_KEY}"

[database]
url = "{db_url}"
max_connections = 8

[email]
from = "Acme Login <login@acme.test>"
smtp_url = "smtp://127.0.0.1:{smtp_port}?tls=none"
timeout_secs = 2

[outbox]
lease_secs = 3
poll_interval_ms = 200

[[applications]]
name = "Acme"
client_id = "acme-web"
client_secret = "{CLIENT_SECRET}"
app_type = "regular_web"
callbacks = ["https://acme.test/callback"]

{extra}
"#,
            data = dir.join(name),
        ),
    )
    .unwrap();
    let log = dir.join(format!("{name}.log"));
    let proc = tessera(&config, &log, &[]);
    Node {
        proc,
        base: format!("http://127.0.0.1:{port}"),
        config,
        log,
    }
}

async fn start(http: &reqwest::Client, base: &str, email: &str) -> reqwest::StatusCode {
    http.post(format!("{base}/passwordless/start"))
        .json(&json!({"client_id": "acme-web", "client_secret": CLIENT_SECRET, "connection": "email", "email": email, "send": "code"}))
        .send()
        .await
        .unwrap()
        .status()
}

fn code_in(maildir: &Path, to: &str) -> Option<String> {
    maildir_messages(maildir)
        .iter()
        .find(|m| header(m, "To") == Some(to))
        .and_then(|m| header(m, "Subject"))
        .map(|s| s.split_whitespace().next().unwrap().to_string())
}

async fn jwks_kids(http: &reqwest::Client, base: &str) -> HashSet<String> {
    let jwks: Value = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_started_on_one_node_works_on_the_other_and_keys_are_shared() {
    let db = TestDb::postgres().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let (_smtp, smtp_port) = smtp_server(&maildir);
    let limits = "[rate_limits]\nstart_per_ip = 6\n";
    let a = node(dir.path(), "a", &db.url, smtp_port, limits);
    let b = node(dir.path(), "b", &db.url, smtp_port, limits);
    wait_healthy(&a.base, &a.log).await;
    wait_healthy(&b.base, &b.log).await;
    let http = reqwest::Client::new();

    // Both nodes started together on an empty database: they agree on one first key.
    let kids_a = jwks_kids(&http, &a.base).await;
    assert_eq!(kids_a.len(), 1);
    assert_eq!(kids_a, jwks_kids(&http, &b.base).await);

    assert_eq!(start(&http, &a.base, "cross@acme.test").await, 200);
    wait_for("the code email", Duration::from_secs(30), || {
        code_in(&maildir, "cross@acme.test").is_some()
    });
    let code = code_in(&maildir, "cross@acme.test").unwrap();
    let r = http
        .post(format!("{}/oauth/token", b.base))
        .form(&[
            (
                "grant_type",
                "http://auth0.com/oauth/grant-type/passwordless/otp",
            ),
            ("client_id", "acme-web"),
            ("client_secret", CLIENT_SECRET),
            ("username", "cross@acme.test"),
            ("otp", &code),
            ("realm", "email"),
            ("scope", "openid email"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the code from node A is exchanged on node B"
    );
    let tokens: Value = r.json().await.unwrap();
    // the opaque access token from B works on A
    let me = http
        .get(format!("{}/userinfo", a.base))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    // The per-IP limit (6) is counted across both nodes: one start so far, five more split
    // between A and B pass, and the next one fails on either node.
    for (i, base) in [&a.base, &b.base, &a.base, &b.base, &b.base]
        .iter()
        .enumerate()
    {
        assert_eq!(
            start(&http, base, &format!("limit{i}@acme.test")).await,
            200
        );
    }
    for base in [&a.base, &b.base] {
        let r = http
            .post(format!("{base}/passwordless/start"))
            .json(&json!({"client_id": "acme-web", "client_secret": CLIENT_SECRET, "connection": "email", "email": "one.more@acme.test", "send": "code"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["x-ratelimit-limit"], "6");
        assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    }

    // Rotate with node A's configuration (the CLI works on the shared database).
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["keys", "rotate", "--json", "--config"])
        .arg(&a.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let new_kid = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["status"] == "current")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!kids_a.contains(&new_kid));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let kb = jwks_kids(&http, &b.base).await;
        if kb.contains(&new_kid) {
            assert!(kb.is_superset(&kids_a), "the previous key stays published");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node B never published the rotated key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_emails_are_delivered_while_a_node_is_killed_halfway() {
    const N: usize = 1000;
    let db = TestDb::postgres().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let (_smtp, smtp_port) = smtp_server(&maildir);
    let no_ip_limit = "[rate_limits]\nstart_per_ip = 0\n";
    let mut a = node(dir.path(), "a", &db.url, smtp_port, no_ip_limit);
    let b = node(dir.path(), "b", &db.url, smtp_port, no_ip_limit);
    wait_healthy(&a.base, &a.log).await;
    wait_healthy(&b.base, &b.log).await;
    let http = reqwest::Client::new();

    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let send = |range: std::ops::Range<usize>, bases: Vec<String>| {
        let mut set = tokio::task::JoinSet::new();
        for i in range {
            let (http, sem) = (http.clone(), Arc::clone(&sem));
            let base = bases[i % bases.len()].clone();
            set.spawn(async move {
                let _permit = sem.acquire().await.unwrap();
                start(&http, &base, &format!("bulk{i:04}@acme.test")).await
            });
        }
        set
    };
    // First half to both nodes; then node A dies (SIGKILL) while its worker is delivering.
    let mut first = send(0..N / 2, vec![a.base.clone(), b.base.clone()]);
    while let Some(r) = first.join_next().await {
        assert_eq!(r.unwrap(), 200);
    }
    a.proc.kill();
    let delivered_at_kill = maildir_count(&maildir);
    let mut second = send(N / 2..N, vec![b.base.clone()]);
    while let Some(r) = second.join_next().await {
        assert_eq!(r.unwrap(), 200);
    }

    let store = tessera_store::open(&db.url, &tessera_store::PoolOptions::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if store.outbox_depth().await.unwrap() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox never drained: {} left",
            store.outbox_depth().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let messages = maildir_messages(&maildir);
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut recipients = HashSet::new();
    for m in &messages {
        *by_id
            .entry(header(m, "Message-ID").unwrap().to_string())
            .or_default() += 1;
        recipients.insert(header(m, "To").unwrap().to_string());
    }
    let duplicates: usize = by_id.values().map(|n| n - 1).sum();
    println!(
        "{N} messages queued; {} distinct delivered ({} delivered when node A was killed); {duplicates} redelivered after the kill, recognisable by their Message-ID",
        by_id.len(),
        delivered_at_kill
    );
    assert_eq!(
        recipients.len(),
        N,
        "every queued message reached its recipient"
    );
    assert_eq!(by_id.len(), N, "one Message-ID per queued message");
    // A message is sent twice only if node A died between the SMTP server's "250 OK" and the
    // database update, so at most one claimed batch (50) can be redelivered — and only with its
    // original Message-ID. While both nodes were alive no message was sent twice.
    assert!(duplicates <= 50, "{duplicates} duplicates");
    drop(b);
}

/// Browser state is in the shared database too: a login ticket made on A is redeemed on B, the
/// session B starts is honoured by A (SSO), and the code A then issues is exchanged on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_made_on_one_node_is_honoured_by_the_other() {
    let db = TestDb::postgres().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let (_smtp, smtp_port) = smtp_server(&maildir);
    let a = node(dir.path(), "a", &db.url, smtp_port, "");
    let b = node(dir.path(), "b", &db.url, smtp_port, "");
    wait_healthy(&a.base, &a.log).await;
    wait_healthy(&b.base, &b.log).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    assert_eq!(start(&http, &a.base, "sso@acme.test").await, 200);
    wait_for("the code email", Duration::from_secs(30), || {
        code_in(&maildir, "sso@acme.test").is_some()
    });
    let code = code_in(&maildir, "sso@acme.test").unwrap();
    let r = http
        .post(format!("{}/co/authenticate", a.base))
        .json(&json!({"client_id": "acme-web", "username": "sso@acme.test", "otp": code,
                      "realm": "email", "credential_type": "http://auth0.com/oauth/grant-type/passwordless/otp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let co_cookie = set_cookie(&r);
    let ticket: Value = r.json().await.unwrap();
    let authorize = |base: &str, extra: &str| {
        format!(
            "{base}/authorize?client_id=acme-web&response_type=code&redirect_uri=https%3A%2F%2Facme.test%2Fcallback&scope=openid%20email&state=s{extra}"
        )
    };
    let r = http
        .get(authorize(
            &b.base,
            &format!(
                "&realm=email&login_ticket={}",
                ticket["login_ticket"].as_str().unwrap()
            ),
        ))
        .header("cookie", &co_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "the ticket from A is redeemed on B");
    let session = set_cookie(&r)
        .split("; ")
        .find(|c| c.starts_with("tessera_session="))
        .unwrap()
        .to_string();
    let r = http
        .get(authorize(&a.base, "&prompt=none"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let code = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("A honours B's session: {location}"));
    let r = http
        .post(format!("{}/oauth/token", b.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "acme-web"),
            ("client_secret", CLIENT_SECRET),
            ("code", &code),
            ("redirect_uri", "https://acme.test/callback"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "A's code is exchanged on B");
}

const ROOT: &str = r#"
[[applications]]
name = "Root"
client_id = "root"
client_secret = "root-secret-root-secret-root-secret-root-01"
app_type = "regular_web"
management_scopes = ["update:clients", "update:connections"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_made_through_one_node_applies_on_the_other_at_once() {
    let db = TestDb::postgres().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let (_smtp, smtp_port) = smtp_server(&maildir);
    let a = node(dir.path(), "a", &db.url, smtp_port, ROOT);
    let b = node(dir.path(), "b", &db.url, smtp_port, ROOT);
    wait_healthy(&a.base, &a.log).await;
    wait_healthy(&b.base, &b.log).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let t: Value = http
        .post(format!("{}/oauth/token", a.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "root"),
            (
                "client_secret",
                "root-secret-root-secret-root-secret-root-01",
            ),
            ("audience", &format!("{ISSUER}api/v2/")),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let patch = |path: &str, body: Value| {
        http.patch(format!("{}{path}", a.base))
            .header("authorization", &bearer)
            .json(&body)
            .send()
    };
    let authorize = |cb: &str| {
        format!(
            "{}/authorize?client_id=acme-web&response_type=code&scope=openid&state=s&redirect_uri={}",
            b.base,
            cb.replace(':', "%3A").replace('/', "%2F")
        )
    };

    // The callback URL changed on A is the one B accepts, with no restart.
    let r = http
        .get(authorize("https://acme.test/moved"))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200, "not allowed yet");
    let r = patch(
        "/api/v2/clients/acme-web",
        json!({"callbacks": ["https://acme.test/moved"]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(authorize("https://acme.test/moved"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "B shows the login page for the new callback"
    );
    let r = http
        .get(authorize("https://acme.test/callback"))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200, "B refuses the old callback");

    // A secret rotated on A: B refuses the old one at once and takes the new one.
    let r: Value = http
        .post(format!("{}/api/v2/clients/acme-web/rotate-secret", a.base))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fresh = r["client_secret"].as_str().unwrap().to_string();
    assert_eq!(start(&http, &b.base, "rotated@acme.test").await, 401);
    let r = http
        .post(format!("{}/passwordless/start", b.base))
        .json(
            &json!({"client_id": "acme-web", "client_secret": fresh, "connection": "email",
                      "email": "rotated@acme.test", "send": "code"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The code length changed on A is what B sends.
    let r = patch(
        "/api/v2/connections/con_email",
        json!({"options": {"totp": {"length": 9}}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{}/passwordless/start", b.base))
        .json(
            &json!({"client_id": "acme-web", "client_secret": fresh, "connection": "email",
                      "email": "nine@acme.test", "send": "code"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for("the nine-digit code", Duration::from_secs(30), || {
        code_in(&maildir, "nine@acme.test").is_some()
    });
    assert_eq!(code_in(&maildir, "nine@acme.test").unwrap().len(), 9);
}

/// Every `name=value` of a response's Set-Cookie headers, joined as a Cookie header.
fn set_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect::<Vec<_>>()
        .join("; ")
}
