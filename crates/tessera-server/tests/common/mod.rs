//! Test harness: a Tessera router in-process over a real SQLite file or PostgreSQL database,
//! a settable clock, and mail read from the dev mailbox after the real outbox worker ran.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tessera_core::clock::Clock;
use tessera_core::rand::SystemRandom;
use tessera_delivery::outbox::Worker;
use tessera_server::config;
use tessera_server::settings::Settings;
use tessera_server::state::AppState;
use tessera_store::testdb::TestDb;
use tower::ServiceExt;

pub const SECRET: &str = "rwa-secret-rwa-secret-rwa-secret-0123456789";
pub const OTP: &str = "http://auth0.com/oauth/grant-type/passwordless/otp";
pub const API: &str = "https://api.example.com/";

pub struct TestClock(pub AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct H {
    pub app: Router,
    pub st: AppState,
    pub worker: Arc<Worker>,
    pub clock: Arc<TestClock>,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn err(&self) -> (u16, &str, &str) {
        (
            self.status.as_u16(),
            self.body["error"].as_str().unwrap_or_default(),
            self.body["error_description"].as_str().unwrap_or_default(),
        )
    }
}

const APPS: &str = r#"
issuer = "http://localhost:3000/"
secret_key = "dGVzdC1zZWNyZXQta2V5LXRlc3Qtc2VjcmV0LWtleS10ZXN0LXNlY3JldA=="

[[apis]]
identifier = "https://api.example.com/"
allow_offline_access = true

[[apis]]
identifier = "https://no-offline.example.com/"

[[applications]]
name = "Regular App"
client_id = "rwa"
client_secret = "rwa-secret-rwa-secret-rwa-secret-0123456789"
app_type = "regular_web"
callbacks = ["https://app.example.com/callback"]

[[applications]]
name = "Back End"
client_id = "backend"
client_secret = "backend-secret-backend-secret-backend-0123"
app_type = "regular_web"
trust_forwarded_for = true

[[applications]]
name = "Browser App"
client_id = "spa"
app_type = "spa"
grant_types = ["http://auth0.com/oauth/grant-type/passwordless/otp"]

[[applications]]
name = "No OTP"
client_id = "nootp"
client_secret = "nootp-secret-nootp-secret-nootp-secret-01"
app_type = "regular_web"
grant_types = ["authorization_code"]

[[applications]]
name = "Embedded"
client_id = "embedded"
client_secret = "embedded-secret-embedded-secret-embedded-01"
app_type = "regular_web"
callbacks = ["https://embedded.example.com/callback"]
web_origins = ["https://embedded.example.com"]
allowed_logout_urls = ["https://embedded.example.com/"]
allow_browser_start = true

[[applications]]
name = "Public Browser App"
client_id = "pub"
app_type = "spa"
callbacks = ["https://pub.example.com/cb"]

[[applications]]
name = "No Connection"
client_id = "noconn"
client_secret = "noconn-secret-noconn-secret-noconn-secret"
app_type = "regular_web"
connections = []
"#;

impl H {
    pub async fn new(backend: &str) -> H {
        H::with(backend, "").await
    }

    /// `extra` is TOML appended to the standard test configuration.
    pub async fn with(backend: &str, extra: &str) -> H {
        H::with_env(backend, extra, &[]).await
    }

    /// As [`H::with`], with `TESSERA_*` environment overrides (e.g. another issuer).
    pub async fn with_env(backend: &str, extra: &str, env: &[(&str, &str)]) -> H {
        let db = TestDb::new(backend).await.expect("test database");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tessera.toml");
        // Top-level keys in `extra` (before its first [table]) go before the tables.
        let split = if extra.starts_with('[') {
            0
        } else {
            extra.find("\n[").map(|i| i + 1).unwrap_or(extra.len())
        };
        let (top, tables) = extra.split_at(split);
        let text = format!(
            "data_dir = {:?}\n{top}\n{APPS}\n{tables}\n[database]\nurl = {:?}\n",
            dir.path().join("data"),
            db.url
        );
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cfg = config::load(Some(&path), &env).expect("config");
        let settings = Settings::from_config(cfg, true).expect("settings");
        let clock = Arc::new(TestClock(AtomicI64::new(1_800_000_000)));
        let t = tessera_server::build(&settings, clock.clone(), Arc::new(SystemRandom))
            .await
            .expect("build");
        H {
            app: tessera_server::router(t.state.clone()),
            st: t.state,
            worker: t.worker,
            clock,
            _db: db,
            _dir: dir,
        }
    }

    pub fn advance(&self, secs: i64) {
        self.clock.0.fetch_add(secs, Ordering::SeqCst);
    }

    pub async fn call(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<String>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut b = Request::post(path).header(header::CONTENT_TYPE, content_type);
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        self.call(b.body(Body::from(body.into())).unwrap()).await
    }

    /// A JSON POST as if from `peer` (the connecting address), with extra headers.
    pub async fn post_from(
        &self,
        peer: &str,
        path: &str,
        v: Value,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut b = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        for (k, val) in extra {
            b = b.header(*k, *val);
        }
        let mut req = b.body(Body::from(v.to_string())).unwrap();
        let addr: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        self.call(req).await
    }

    pub async fn post_json(&self, path: &str, v: Value) -> Resp {
        self.post(path, "application/json", v.to_string(), &[])
            .await
    }

    pub async fn post_form(&self, path: &str, pairs: &[(&str, &str)]) -> Resp {
        let body = form(pairs);
        self.post(path, "application/x-www-form-urlencoded", body, &[])
            .await
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Resp {
        let mut b = Request::get(path);
        if let Some(t) = bearer {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.call(b.body(Body::empty()).unwrap()).await
    }

    /// A request with extra headers (cookies, origin), as if from 127.0.0.1.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<String>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut req = b.body(Body::from(body.into())).unwrap();
        let addr: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        self.call(req).await
    }

    /// Runs the outbox worker once and returns every magic link mailed to `to`, oldest first.
    pub async fn links_for(&self, to: &str) -> Vec<String> {
        self.worker.run_once().await.unwrap();
        let mailbox = self.st.mailer.dev_mailbox().expect("dev mailbox");
        let mut links: Vec<String> = mailbox
            .messages()
            .into_iter()
            .filter(|m| m.to == to)
            .filter_map(|m| {
                let start = m
                    .text
                    .find("http://localhost:3000/passwordless/verify_redirect?")?;
                let rest = &m.text[start..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == ')' || c == '>')
                    .unwrap_or(rest.len());
                Some(rest[..end].to_string())
            })
            .collect();
        links.reverse();
        links
    }

    /// `/passwordless/start` for the regular web app, sending a code.
    pub async fn start(&self, email: &str) -> Resp {
        self.post_json(
            "/passwordless/start",
            serde_json::json!({"client_id": "rwa", "client_secret": SECRET, "connection": "email", "email": email, "send": "code"}),
        )
        .await
    }

    /// Runs the outbox worker once and returns every code mailed to `to` so far, oldest first.
    pub async fn codes_for(&self, to: &str) -> Vec<String> {
        self.worker.run_once().await.unwrap();
        let mailbox = self.st.mailer.dev_mailbox().expect("dev mailbox");
        let mut codes: Vec<String> = mailbox
            .messages()
            .into_iter()
            .filter(|m| m.to == to)
            .map(|m| m.subject.split_whitespace().next().unwrap().to_string())
            .collect();
        codes.reverse();
        codes
    }

    pub async fn last_code(&self, to: &str) -> String {
        self.codes_for(to)
            .await
            .pop()
            .unwrap_or_else(|| panic!("no mail to {to}"))
    }

    pub async fn otp(&self, email: &str, code: &str, scope: &str) -> Resp {
        self.post_form(
            "/oauth/token",
            &[
                ("grant_type", OTP),
                ("client_id", "rwa"),
                ("client_secret", SECRET),
                ("username", email),
                ("otp", code),
                ("realm", "email"),
                ("scope", scope),
            ],
        )
        .await
    }

    /// start → read the code → OTP grant.
    pub async fn sign_in(&self, email: &str, scope: &str) -> Resp {
        assert_eq!(self.start(email).await.status, 200);
        let code = self.last_code(&email.trim().to_lowercase()).await;
        self.otp(email, &code, scope).await
    }
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Verifies an RS256 JWT through the server's JWKS, with an independent library.
pub async fn verify_jwt(h: &H, token: &str, audience: &str) -> Value {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let jwks = h.get("/.well-known/jwks.json", None).await;
    let set: JwkSet = serde_json::from_value(jwks.body).unwrap();
    let kid = decode_header(token).unwrap().kid.unwrap();
    let jwk = set.find(&kid).expect("kid published in JWKS");
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&["http://localhost:3000/"]);
    v.set_audience(&[audience]);
    // The test clock runs ahead of the wall clock; exp is checked against our clock below.
    v.validate_exp = false;
    let data = decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v).expect("valid JWT");
    assert!(data.claims["exp"].as_i64().unwrap() > h.clock.now());
    data.claims
}
