//! The whole path as a user's back end sees it: the real `tessera` binary, its mail going over
//! real SMTP to a real SMTP server process (aiosmtpd, from PyPI) on loopback, the code read from
//! the message that arrived, exchanged at `/oauth/token`, the id_token verified through JWKS
//! with an independent JWT library, then `/userinfo`. The server runs with debug logging, and
//! its whole log is scanned for the code, the tokens, the secret and the email address.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "full-flow-secret-full-flow-secret-0123456789";

fn start_tessera(dir: &Path, smtp_port: u16, log: &Path) -> (Proc, String) {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}/");
    let config = dir.join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            r#"issuer = "{issuer}"
listen = "127.0.0.1:{port}"
data_dir = {data:?}

[email]
from = "Acme Login <login@acme.test>"
smtp_url = "smtp://127.0.0.1:{smtp_port}?tls=none"

[[applications]]
name = "Acme"
client_id = "acme-web"
client_secret = "{SECRET}"
app_type = "regular_web"
callbacks = ["https://acme.test/callback"]
"#,
            data = dir.join("data"),
        ),
    )
    .unwrap();
    (tessera(&config, log, &[("RUST_LOG", "debug")]), issuer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_code_sign_in_over_real_smtp() {
    let dir = tempfile::tempdir().unwrap();
    let maildir: PathBuf = dir.path().join("maildir");
    let (_smtp, smtp_port) = smtp_server(&maildir);
    let log = dir.path().join("tessera.log");
    let (_server, issuer) = start_tessera(dir.path(), smtp_port, &log);
    let http = reqwest::Client::new();
    let base = issuer.trim_end_matches('/').to_string();
    wait_healthy(&base, &log).await;

    // 1. The back end asks for a code, as the seed document shows.
    let started = Instant::now();
    let r = http
        .post(format!("{base}/passwordless/start"))
        .json(&json!({"client_id": "acme-web", "client_secret": SECRET, "connection": "email", "email": "Ada.Lovelace@Example.org", "send": "code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["email"], "ada.lovelace@example.org");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "start must not wait on SMTP"
    );

    // 2. The message arrives over SMTP.
    wait_for(
        "the email to arrive over SMTP",
        Duration::from_secs(30),
        || !maildir_messages(&maildir).is_empty(),
    );
    let raw = maildir_messages(&maildir).pop().unwrap();
    let subject = header(&raw, "Subject").expect("Subject header");
    let code = subject.split_whitespace().next().unwrap().to_string();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "subject {subject:?}"
    );
    assert_eq!(header(&raw, "To"), Some("ada.lovelace@example.org"));
    assert!(header(&raw, "From").unwrap().contains("login@acme.test"));
    assert!(header(&raw, "Message-ID").unwrap().starts_with('<'));
    assert!(header(&raw, "Date").is_some());
    assert!(raw.contains("multipart/alternative"));
    assert!(raw.contains("text/plain") && raw.contains("text/html"));

    // 3. The code is exchanged for tokens (form body, as node-auth0 v4 sends it).
    let r = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            (
                "grant_type",
                "http://auth0.com/oauth/grant-type/passwordless/otp",
            ),
            ("client_id", "acme-web"),
            ("client_secret", SECRET),
            ("username", "ada.lovelace@example.org"),
            ("otp", &code),
            ("realm", "email"),
            ("scope", "openid profile email offline_access"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap().to_string();
    let access_token = tokens["access_token"].as_str().unwrap().to_string();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_string();

    // 4. The id_token verifies through discovery and JWKS, with an independent library.
    let disco: Value = http
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disco["issuer"], issuer);
    let jwks: jsonwebtoken::jwk::JwkSet = http
        .get(disco["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jsonwebtoken::decode_header(&id_token).unwrap().kid.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[&issuer]);
    v.set_audience(&["acme-web"]);
    let claims = jsonwebtoken::decode::<Value>(&id_token, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["email"], "ada.lovelace@example.org");
    assert!(claims["sub"].as_str().unwrap().starts_with("email|"));
    assert!(claims.get("nonce").is_none());

    // 5. /userinfo returns the profile.
    let me: Value = http
        .get(format!("{base}/userinfo"))
        .bearer_auth(&access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], claims["sub"]);
    assert_eq!(me["email_verified"], true);

    // Outside dev mode the dev mailbox does not exist.
    for path in ["/_dev/mailbox", "/_dev/mailbox.json"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }

    // 6. Nothing secret reached the log, even at debug level.
    drop(_server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("message delivered"),
        "the log shows the delivery:\n{text}"
    );
    for (what, secret) in [
        ("the code", code.as_str()),
        ("the id_token", id_token.as_str()),
        ("the access token", access_token.as_str()),
        ("the refresh token", refresh_token.as_str()),
        ("the client secret", SECRET),
        ("the email address", "ada.lovelace@example.org"),
    ] {
        assert!(!text.contains(secret), "{what} appears in the log");
    }

    // 7. The audit log lists the code sent and the sign-in, and holds no secret either.
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["logs", "--json", "--config"])
        .arg(dir.path().join("tessera.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"cls") && kinds.contains(&"s"), "{kinds:?}");
    let s = events.iter().find(|e| e["type"] == "s").unwrap();
    assert_eq!(s["client_id"], "acme-web");
    assert_eq!(s["user_id"], claims["sub"]);
    assert_eq!(s["ip"], "127.0.0.1");
    let dump = serde_json::to_string(&events).unwrap();
    for secret in [
        code.as_str(),
        access_token.as_str(),
        refresh_token.as_str(),
        SECRET,
    ] {
        assert!(!dump.contains(secret), "a secret in the audit log");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["logs", "--type", "s", "--config"])
        .arg(dir.path().join("tessera.toml"))
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(table.lines().count(), 1, "{table}");
    assert!(
        table.contains("acme-web") && table.contains("Successful login"),
        "{table}"
    );

    // 8. The users CLI: find the user, block, unblock, delete (each an audit event).
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(args)
            .arg("--config")
            .arg(dir.path().join("tessera.toml"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, list, _) = cli(&["users", "list", "ADA", "--json"]);
    assert!(ok);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let user_id = claims["sub"].as_str().unwrap();
    assert_eq!(list[0]["user_id"], user_id);
    assert!(cli(&["users", "block", user_id]).0);
    let (_, shown, _) = cli(&["users", "show", user_id, "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&shown).unwrap()["blocked"],
        true
    );
    assert!(cli(&["users", "unblock", user_id]).0);
    let (ok, _, err) = cli(&["users", "delete", user_id]);
    assert!(!ok && err.contains("--yes"), "{err}");
    assert!(cli(&["users", "delete", user_id, "--yes"]).0);
    assert!(!cli(&["users", "show", user_id]).0);
    let (_, events, _) = cli(&["logs", "--type", "sapi", "--json"]);
    assert_eq!(events.lines().count(), 3, "{events}");

    // 9. Applications and connections as the database has them; no secret is ever printed.
    let (ok, apps, _) = cli(&["apps", "list", "--json"]);
    assert!(ok);
    let apps: Value = serde_json::from_str(&apps).unwrap();
    assert_eq!(apps[0]["client_id"], "acme-web");
    assert_eq!(apps[0]["has_secret"], true);
    let (ok, shown, _) = cli(&["apps", "show", "acme-web"]);
    assert!(ok && shown.contains("https://acme.test/callback") && !shown.contains(SECRET));
    assert!(!cli(&["apps", "show", "nope"]).0);
    let (ok, conn, _) = cli(&["connections", "show", "email", "--json"]);
    assert!(ok);
    let conn: Value = serde_json::from_str(&conn).unwrap();
    assert_eq!(conn["strategy"], "email");
    assert_eq!(conn["options"]["totp"]["length"], 6);
    assert_eq!(conn["enabled_clients"], json!(["acme-web"]));
}

#[test]
fn refuses_to_start_without_an_email_transport_or_with_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(&cfg, "issuer = \"https://id.example.com/\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("email.smtp_url is required"), "{err}");

    std::fs::write(
        &cfg,
        "issuer = \"https://id.example.com/\"\nlisten_addr = \"x\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_addr"));

    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("TESSERA_DATABASE__URL", "mysql://nope")
        .output()
        .unwrap();
    assert!(!out.status.success());

    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("serve") && help.contains("migrate") && help.contains("dev"));
}

#[test]
fn migrate_works_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("migrate")
        .env(
            "TESSERA_DATABASE__URL",
            format!("sqlite://{}", dir.path().join("m.db").display()),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied (sqlite)"));
}

#[test]
fn templates_preview_prints_every_part_in_the_asked_language() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["templates", "preview", "--dev"])
            .args(args)
            .env("TESSERA_DATA_DIR", dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let fr = run(&["--send", "code", "--lang", "fr-FR"]);
    assert!(
        fr.contains("Subject: 123456 est votre code de vérification pour Sample App"),
        "{fr}"
    );
    assert!(
        fr.contains("--- text ---")
            && fr.contains("--- html ---")
            && fr.contains("<html lang=\"fr\">")
    );
    let es_link = run(&["--send", "link", "--lang", "es"]);
    assert!(
        es_link.contains("Subject: Inicia sesión en Sample App"),
        "{es_link}"
    );
    assert!(es_link.contains("/passwordless/verify_redirect?"));
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["templates", "preview", "--dev", "--send", "carrier-pigeon"])
        .env("TESSERA_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}
