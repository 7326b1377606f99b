//! `tessera import auth0`, run as the real binary: a 100,000-user export built here (with rows
//! that must be skipped), imported twice (the second run changes nothing), then the real server
//! signs an imported email user and an imported SMS user in, and their `sub` is Auth0's
//! `user_id`. Applications and connections are imported from Management API exports, then an
//! imported application signs a user in with its generated secret and imported email template.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::{Value, json};
use tessera_store::{PoolOptions, Store};

const SECRET: &str = "import-test-secret-import-test-secret-0123";
const EMAIL_USERS: u64 = 95_000;
const SMS_USERS: u64 = 5_000;

/// A dev-mode configuration with the sms connection (its codes go to the dev mailbox).
fn write_config(dir: &Path) -> (PathBuf, String) {
    let port = free_port();
    let config = dir.join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            r#"issuer = "http://127.0.0.1:{port}/"
listen = "127.0.0.1:{port}"
data_dir = {data:?}

[log]
level = "warn"

[connections.sms]

[[applications]]
name = "Acme Login"
client_id = "acme-login"
client_secret = "{SECRET}"
app_type = "regular_web"
callbacks = ["https://acme.test/callback"]
connections = ["email", "sms"]
"#,
            data = dir.join("data"),
        ),
    )
    .unwrap();
    (config, format!("http://127.0.0.1:{port}"))
}

/// Runs `tessera --config CONFIG import auth0 --dev --json ARGS` and returns its report.
fn import(config: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("--config")
        .arg(config)
        .args(["import", "auth0", "--dev", "--json"])
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn open_store(dir: &Path) -> std::sync::Arc<dyn Store> {
    let url = format!("sqlite://{}", dir.join("data/tessera.db").display());
    tessera_store::open(&url, &PoolOptions::default())
        .await
        .unwrap()
}

fn email_id(k: u64) -> String {
    format!("email|{k:024x}")
}

fn sms_id(k: u64) -> String {
    format!("sms|{:024x}", (1u64 << 40) + k)
}

/// Auth0's export job output (JSON lines): 95,000 email users, 5,000 sms users, a blank line,
/// then five rows to skip.
fn write_export(path: &Path) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let times = r#""created_at":"2023-01-02T03:04:05.678Z","updated_at":"2024-02-03T04:05:06.789Z","last_login":"2024-02-03T04:05:06.789Z","logins_count":3"#;
    for k in 0..EMAIL_USERS {
        // One address in mixed case: Tessera stores it normalised.
        let email = if k == 0 {
            "User0@Example.COM".to_string()
        } else {
            format!("user{k}@example.com")
        };
        let id = email_id(k);
        let bare = &id["email|".len()..];
        writeln!(
            f,
            r#"{{"user_id":"{id}","email":"{email}","email_verified":true,"name":"User {k}","identities":[{{"connection":"email","provider":"email","user_id":"{bare}","isSocial":false}}],{times},"app_metadata":{{"plan":"pro","k":{k}}},"user_metadata":{{}},"last_ip":"203.0.113.9"}}"#
        )
        .unwrap();
    }
    for k in 0..SMS_USERS {
        let id = sms_id(k);
        writeln!(
            f,
            r#"{{"user_id":"{id}","phone_number":"+1415555{k:04}","phone_verified":true,"identities":[{{"connection":"sms","provider":"sms","isSocial":false}}],{times},"last_ip":"203.0.113.9"}}"#
        )
        .unwrap();
    }
    writeln!(f).unwrap();
    let skipped = [
        // 100,002: a database user
        r#"{"user_id":"auth0|5f1b","email":"db@example.com","identities":[{"connection":"Username-Password-Authentication","provider":"auth0"}]}"#.to_string(),
        // 100,003: a social user
        r#"{"user_id":"google-oauth2|1234","email":"g@example.com","identities":[{"connection":"google-oauth2","provider":"google-oauth2","isSocial":true}]}"#.to_string(),
        // 100,004: a bad email
        r#"{"user_id":"email|bad","email":"not an email","identities":[{"connection":"email","provider":"email"}]}"#.to_string(),
        // 100,005: a copy of the first row
        format!(r#"{{"user_id":"{}","email":"user0@example.com"}}"#, email_id(0)),
        // 100,006: a number that is not E.164
        r#"{"user_id":"sms|bad","phone_number":"(415) 555-0100","identities":[{"connection":"sms","provider":"sms"}]}"#.to_string(),
    ];
    for row in skipped {
        writeln!(f, "{row}").unwrap();
    }
}

fn check_first_report(r: &Value) {
    let u = &r["users"];
    assert_eq!(u["read"], 100_005, "{u:#}");
    assert_eq!(u["imported"], 100_000, "{u:#}");
    assert_eq!(u["already_present"], 0);
    assert_eq!(u["skipped"], 5);
    let by = &u["skipped_by_reason"];
    assert_eq!(by["other_connection"]["count"], 2, "{by:#}");
    assert_eq!(
        by["other_connection"]["first_lines"],
        json!([100_002, 100_003])
    );
    assert_eq!(
        by["other_connection"]["details"],
        json!({"Username-Password-Authentication": 1, "google-oauth2": 1})
    );
    assert_eq!(by["invalid_email"]["first_lines"], json!([100_004]));
    assert_eq!(by["duplicate_in_file"]["first_lines"], json!([100_005]));
    assert_eq!(by["invalid_phone_number"]["first_lines"], json!([100_006]));
    assert_eq!(u["ignored_fields"], json!({"last_ip": 100_000}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_user_export_keeps_its_ids_and_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let (config, base) = write_config(dir.path());
    let export = dir.path().join("users.json");
    write_export(&export);
    let users = export.to_str().unwrap();

    // 1. The first run imports every passwordless user and says why the others were skipped.
    let started = Instant::now();
    let r = import(&config, &["--users", users]);
    let took = started.elapsed();
    check_first_report(&r);
    println!(
        "imported 100,000 users in {:.1} s: {} rows/s inside the import, {:.0} rows/s with start-up",
        took.as_secs_f64(),
        r["users"]["rows_per_sec"],
        100_005.0 / took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(120), "the import took {took:?}");
    let store = open_store(dir.path()).await;
    let u = store.get_user(&email_id(0)).await.unwrap().unwrap();
    assert_eq!(u.email.as_deref(), Some("user0@example.com"));
    assert_eq!(u.name, "User 0");
    assert_eq!((u.created_at, u.updated_at), (1_672_628_645, 1_706_933_106));
    assert_eq!((u.logins_count, u.last_login), (3, Some(1_706_933_106)));
    assert!(u.email_verified && !u.blocked);
    assert_eq!(u.app_metadata["plan"], "pro");
    let p = store.get_user(&sms_id(7)).await.unwrap().unwrap();
    assert_eq!(p.phone_number.as_deref(), Some("+14155550007"));
    assert!(p.phone_verified);
    let before = store.list_users("", 200_000).await.unwrap();
    assert_eq!(before.len(), 100_000);
    let events = store.list_events(1_000).await.unwrap();
    let summary: Vec<_> = events.iter().filter(|e| e.kind == "sapi").collect();
    assert_eq!(summary.len(), 1);
    assert!(
        summary[0]
            .description
            .contains("imported 100000 users from Auth0"),
        "{}",
        summary[0].description
    );

    // 2. The second run changes nothing.
    let r = import(&config, &["--users", users]);
    let u = &r["users"];
    assert_eq!(
        (&u["imported"], &u["already_present"], &u["skipped"]),
        (&json!(0), &json!(100_000), &json!(5)),
        "{u:#}"
    );
    assert_eq!(store.list_users("", 200_000).await.unwrap(), before);
    assert_eq!(store.list_events(1_000).await.unwrap(), events);

    // 3. The real server signs imported users in with the `sub` their apps already know.
    let log = dir.path().join("tessera.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(["serve", "--dev", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let _server = Proc(cmd.spawn().unwrap());
    wait_healthy(&base, &log).await;
    let http = reqwest::Client::new();
    let claims = sign_in(&http, &base, "email", "email", "user0@example.com").await;
    assert_eq!(claims["sub"], email_id(0));
    assert_eq!(claims["email"], "user0@example.com");
    let claims = sign_in(&http, &base, "sms", "phone_number", "+14155550007").await;
    assert_eq!(claims["sub"], sms_id(7));
    for (id, name) in [(email_id(0), "User 0"), (sms_id(7), "+14155550007")] {
        let u = store.get_user(&id).await.unwrap().unwrap();
        assert_eq!(u.logins_count, 4, "{id} signed in once more");
        assert!(u.last_login > Some(1_706_933_106));
        assert_eq!(u.name, name);
    }
}

/// The code sent to `to`, from the dev mailbox (the subject's first word, or a run of digits
/// in the text for a custom template).
async fn code_for(http: &reqwest::Client, base: &str, to: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: Value = http
            .get(format!("{base}/_dev/mailbox.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(m) = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["to"] == to)
        {
            let subject = m["subject"].as_str().unwrap();
            let first = subject.split_whitespace().next().unwrap_or_default();
            if first.bytes().all(|b| b.is_ascii_digit()) && !first.is_empty() {
                return first.to_string();
            }
            let text = m["text"].as_str().unwrap();
            return text
                .split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() >= 4)
                .unwrap_or_else(|| panic!("no code in {text}"))
                .to_string();
        }
        assert!(Instant::now() < deadline, "no message to {to}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/passwordless/start`, the code from the dev mailbox, `/oauth/token`; the id_token's claims.
async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    connection: &str,
    field: &str,
    who: &str,
) -> Value {
    sign_in_as(http, base, ("acme-login", SECRET), connection, field, who).await
}

async fn sign_in_as(
    http: &reqwest::Client,
    base: &str,
    (client_id, secret): (&str, &str),
    connection: &str,
    field: &str,
    who: &str,
) -> Value {
    let r = http
        .post(format!("{base}/passwordless/start"))
        .json(&json!({"client_id": client_id, "client_secret": secret,
                      "connection": connection, field: who, "send": "code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let code = code_for(http, base, who).await;
    let r = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            (
                "grant_type",
                "http://auth0.com/oauth/grant-type/passwordless/otp",
            ),
            ("client_id", client_id),
            ("client_secret", secret),
            ("username", who),
            ("otp", &code),
            ("realm", connection),
            ("scope", "openid profile email phone"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let tokens: Value = r.json().await.unwrap();
    let payload = tokens["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

const WEB_ID: &str = "AcmeWeb0123456789abcdefghijklmn";
const SPA_ID: &str = "AcmeSpa0123456789abcdefghijklmo";

fn write_management_exports(dir: &Path) -> (PathBuf, PathBuf) {
    let clients = json!([
        {"tenant": "acme", "global": false, "name": "Acme Web", "app_type": "regular_web",
         "client_id": WEB_ID, "is_first_party": true, "oidc_conformant": true,
         "callbacks": ["https://acme.test/callback", "https://*.acme.test/callback"],
         "allowed_origins": ["https://acme.test/"], "web_origins": ["https://www.acme.test"],
         "allowed_logout_urls": ["https://acme.test/"],
         "grant_types": ["authorization_code", "refresh_token", "password",
                         "http://auth0.com/oauth/grant-type/passwordless/otp"],
         "cross_origin_auth": false, "token_endpoint_auth_method": "client_secret_post",
         "jwt_configuration": {"alg": "RS256", "lifetime_in_seconds": 7200, "secret_encoded": false},
         "logo_uri": "https://acme.test/logo.png",
         "signing_keys": [{"cert": "-----BEGIN CERTIFICATE-----", "subject": "deprecated"}]},
        {"name": "Acme SPA", "app_type": "spa", "client_id": SPA_ID,
         "client_secret": "spa-secret-spa-secret-spa-secret-spa-secret-0123456789",
         "callbacks": ["http://localhost:3000/callback"], "web_origins": ["http://localhost:3000"],
         "grant_types": ["authorization_code", "implicit", "refresh_token"],
         "token_endpoint_auth_method": "none", "cross_origin_auth": true},
        {"name": "Backend", "app_type": "non_interactive",
         "client_id": "Backend0123456789abcdefghijklmno", "grant_types": ["client_credentials"]},
        {"name": "All Applications", "global": true, "client_id": "GlobalClient0123"}
    ]);
    let connections = json!([
        {"id": "con_0000000000000001", "name": "email", "strategy": "email",
         "options": {"name": "email", "disable_signup": false, "brute_force_protection": true,
                     "totp": {"length": 8, "time_step": 300}, "authParams": {},
                     "email": {"from": "{{ application.name }} <root@auth0.com>", "syntax": "liquid",
                               "subject": "Your {{ application.name }} code",
                               "body": "<html><body><p>Your code is <b>{{ code }}</b>.</p>{% if send == 'link' %}<a href=\"{{ link }}\">Sign in</a>{% endif %}</body></html>"}},
         "enabled_clients": [WEB_ID, "Backend0123456789abcdefghijklmno"],
         "realms": ["email"], "is_domain_connection": false},
        {"id": "con_0000000000000002", "name": "sms", "strategy": "sms",
         "options": {"name": "sms", "disable_signup": true, "brute_force_protection": true,
                     "totp": {"length": 6, "time_step": 180}, "syntax": "md_with_macros",
                     "template": "Your code is @@password@@", "from": "+15550001111",
                     "twilio_sid": "AC0123", "twilio_token": "twilio-token-never-printed"},
         "enabled_clients": [WEB_ID, SPA_ID], "realms": ["sms"]},
        {"id": "con_0000000000000003", "name": "Username-Password-Authentication",
         "strategy": "auth0", "options": {"mfa": {"active": true}}, "enabled_clients": [WEB_ID]}
    ]);
    let (c, k) = (dir.join("clients.json"), dir.join("connections.json"));
    // include_totals=true wraps the list; both shapes are read.
    std::fs::write(&c, json!({"clients": clients, "total": 4}).to_string()).unwrap();
    std::fs::write(&k, connections.to_string()).unwrap();
    (c, k)
}

fn item<'a>(part: &'a Value, key: &str, id: &str) -> &'a Value {
    part["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i[key] == id)
        .unwrap_or_else(|| panic!("{id} in {part:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_connections_are_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let (config, base) = write_config(dir.path());
    let (clients, connections) = write_management_exports(dir.path());
    let args = [
        "--clients",
        clients.to_str().unwrap(),
        "--connections",
        connections.to_str().unwrap(),
    ];

    // 1. What was created, dropped and skipped.
    let r = import(&config, &args);
    let text = r.to_string();
    assert!(!text.contains("twilio-token-never-printed"));
    let c = &r["clients"];
    assert_eq!(
        (&c["created"], &c["skipped"]),
        (&json!(2), &json!(2)),
        "{c:#}"
    );
    let web = item(c, "client_id", WEB_ID);
    let notes = web["notes"].to_string();
    for want in ["*.acme.test", "password dropped", "logo_uri"] {
        assert!(notes.contains(want), "{want} in {notes}");
    }
    let secret = web["generated_client_secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32);
    assert!(item(c, "client_id", SPA_ID)["generated_client_secret"].is_null());
    let backend = item(c, "client_id", "Backend0123456789abcdefghijklmno");
    assert!(
        backend["reason"]
            .as_str()
            .unwrap()
            .contains("non_interactive")
    );
    let k = &r["connections"];
    assert_eq!(
        (&k["updated"], &k["skipped"]),
        (&json!(2), &json!(1)),
        "{k:#}"
    );
    let email = item(k, "name", "email");
    assert!(email["notes"].to_string().contains("root@auth0.com"));
    assert!(
        email["notes"]
            .to_string()
            .contains("Backend0123456789abcdefghijklmno")
    );
    let sms_notes = item(k, "name", "sms")["notes"].to_string();
    assert!(sms_notes.contains("twilio_token") && !sms_notes.contains("options.template"));
    assert!(
        item(k, "name", "Username-Password-Authentication")["reason"]
            .as_str()
            .unwrap()
            .contains("not passwordless")
    );

    // 2. What the database holds.
    let store = open_store(dir.path()).await;
    let w = store.get_client(WEB_ID).await.unwrap().unwrap();
    assert_eq!(w.settings.callbacks, ["https://acme.test/callback"]);
    assert_eq!(
        w.settings.web_origins,
        ["https://www.acme.test", "https://acme.test"]
    );
    assert_eq!(
        w.settings.grant_types,
        [
            "authorization_code",
            "refresh_token",
            "http://auth0.com/oauth/grant-type/passwordless/otp"
        ]
    );
    assert_eq!(w.settings.connections, ["email", "sms"]);
    assert!(!w.settings.cross_origin_authentication);
    assert_eq!(w.settings.id_token_lifetime_secs, Some(7200));
    assert_eq!(
        w.secret_hash,
        Some(tessera_core::crypto::sha256(&secret)),
        "the printed secret is the one stored"
    );
    let s = store.get_client(SPA_ID).await.unwrap().unwrap();
    assert!(s.secret_hash.is_none());
    assert_eq!(s.settings.connections, ["sms"]);
    let acme = store.get_client("acme-login").await.unwrap().unwrap();
    assert_eq!(
        acme.settings.connections,
        ["email", "sms"],
        "an application only Tessera has keeps its connections"
    );
    let e = store.get_connection("email").await.unwrap().unwrap();
    assert_eq!(
        (e.settings.code_length, e.settings.code_lifetime_secs),
        (8, 300)
    );
    let t = e.settings.email_template.unwrap();
    assert_eq!(t.subject, "Your {{ application.name }} code");
    assert_eq!(t.from, None);
    let sms = store.get_connection("sms").await.unwrap().unwrap().settings;
    assert!(sms.disable_signup);
    let sms_text = sms.sms_template.unwrap();
    assert_eq!(
        (sms_text.body.as_str(), sms_text.syntax.as_str()),
        ("Your code is @@password@@", "md_with_macros")
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("--config")
        .arg(&config)
        .args(["apps", "show", WEB_ID, "--dev"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && shown.contains("https://acme.test/callback"),
        "{shown}"
    );
    assert!(!shown.contains(&secret));
    let events = store.list_events(1_000).await.unwrap();

    // 3. The second run: everything unchanged, no secret shown, nothing written.
    let r = import(&config, &args);
    assert_eq!(
        (
            &r["clients"]["unchanged"],
            &r["clients"]["created"],
            &r["clients"]["updated"]
        ),
        (&json!(2), &json!(0), &json!(0)),
        "{r:#}"
    );
    assert_eq!(
        (&r["connections"]["unchanged"], &r["connections"]["updated"]),
        (&json!(2), &json!(0)),
        "{r:#}"
    );
    assert!(!r.to_string().contains("generated_client_secret"));
    assert_eq!(store.list_events(1_000).await.unwrap(), events);

    // 4. The imported application signs a user in with its printed secret and the imported
    // email template (8-digit codes).
    let log = dir.path().join("tessera.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(["serve", "--dev", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let _server = Proc(cmd.spawn().unwrap());
    wait_healthy(&base, &log).await;
    let http = reqwest::Client::new();
    let claims = sign_in_as(
        &http,
        &base,
        (WEB_ID, &secret),
        "email",
        "email",
        "new@acme.test",
    )
    .await;
    assert!(claims["sub"].as_str().unwrap().starts_with("email|"));
    assert_eq!(claims["aud"], WEB_ID);
    let v: Value = http
        .get(format!("{base}/_dev/mailbox.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = &v["messages"][0];
    assert_eq!(m["subject"], "Your Acme Web code");
    let code = m["text"]
        .as_str()
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())
        .unwrap()
        .to_string();
    assert_eq!(code.len(), 8, "{m:#}");
}
