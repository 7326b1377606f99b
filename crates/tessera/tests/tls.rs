//! HTTPS served by Tessera itself: dev mode's self-signed certificate, a configured
//! certificate, HSTS, and the plain-HTTP listener that redirects to the issuer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A client that trusts exactly this certificate (as a browser told to would).
fn trusting(cert_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn wait_https(http: &reqwest::Client, base: &str, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no HTTPS answer from {base}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_serves_https_with_a_self_signed_certificate_and_a_configured_one_redirects_http()
{
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("dev.log");
    let mut dev = Proc(
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([
                "dev",
                "--tls",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let cert_file = dir.path().join("data/tls/cert.pem");
    wait_for(
        "the self-signed certificate",
        Duration::from_secs(30),
        || cert_file.exists(),
    );
    let cert = std::fs::read(&cert_file).unwrap();
    let http = trusting(&cert);
    let base = format!("https://localhost:{port}");
    wait_https(&http, &base, &log).await;
    let r = http
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    // No HSTS for localhost: it would bind every port of the developer's machine to https
    // (a real host name gets it: attacks.rs::security_headers_everywhere).
    assert!(r.headers().get("strict-transport-security").is_none());
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["issuer"], format!("https://localhost:{port}/"));
    // Plain HTTP on the TLS port gets no answer, and an untrusting client refuses the certificate.
    assert!(
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .is_err()
    );
    assert!(
        reqwest::Client::new()
            .get(format!("{base}/health"))
            .send()
            .await
            .is_err()
    );
    dev.kill();

    // The same certificate, configured, with a plain-HTTP listener that redirects.
    let (port, plain) = (free_port(), free_port());
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            r#"issuer = "https://localhost:{port}/"
listen = "127.0.0.1:{port}"
data_dir = {data:?}

[email]
from = "Acme <login@acme.test>"
smtp_url = "smtp://127.0.0.1:9?tls=none"

[tls]
cert_file = {cert:?}
key_file = {key:?}
redirect_http_listen = "127.0.0.1:{plain}"
"#,
            data = dir.path().join("prod"),
            cert = cert_file,
            key = dir.path().join("data/tls/key.pem"),
        ),
    )
    .unwrap();
    let log = dir.path().join("prod.log");
    let _server = tessera(&config, &log, &[]);
    let base = format!("https://localhost:{port}");
    wait_https(&http, &base, &log).await;
    let r = http
        .get(format!(
            "http://127.0.0.1:{plain}/authorize?client_id=x&state=a%20b"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("{base}/authorize?client_id=x&state=a%20b")
    );
    // A key file that does not fit stops the start with a clear message.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("key.pem", "cert.pem"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tls.key_file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
