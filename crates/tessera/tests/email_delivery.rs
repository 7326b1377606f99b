//! Email as users receive it, over real SMTP to an aiosmtpd process on loopback: the message's
//! headers and parts, an operator's Liquid template in the request's language, hostile values,
//! and delivery when things go wrong — the SMTP server down and back, Tessera killed with mail
//! queued, a temporary 4xx answer (retried), a permanent 5xx answer (given up and recorded).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const SECRET: &str = "delivery-secret-delivery-secret-0123456789";

struct Server {
    proc: Proc,
    base: String,
    config: PathBuf,
    log: PathBuf,
}

/// Writes a configuration and starts Tessera on it: `email_extra` goes into `[email]`, `extra`
/// (TOML) at the end.
fn launch(dir: &Path, smtp_url: &str, email_extra: &str, app_name: &str, extra: &str) -> Server {
    let port = free_port();
    let config = dir.join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            r#"issuer = "http://127.0.0.1:{port}/"
listen = "127.0.0.1:{port}"
data_dir = {data:?}

[email]
from = "Acme Login <login@acme.test>"
smtp_url = "{smtp_url}"
timeout_secs = 2
{email_extra}

[outbox]
lease_secs = 3
poll_interval_ms = 200
base_backoff_secs = 1

[[applications]]
name = {app_name:?}
client_id = "acme-web"
client_secret = "{SECRET}"
app_type = "regular_web"

{extra}
"#,
            data = dir.join("data"),
        ),
    )
    .unwrap();
    let log = dir.join("tessera.log");
    let proc = tessera(&config, &log, &[]);
    Server {
        proc,
        base: format!("http://127.0.0.1:{port}"),
        config,
        log,
    }
}

/// Tessera sending plain SMTP to a server on loopback.
fn start_tessera(dir: &Path, smtp_port: u16, app_name: &str, extra: &str) -> Server {
    launch(
        dir,
        &format!("smtp://127.0.0.1:{smtp_port}?tls=none"),
        "",
        app_name,
        extra,
    )
}

/// Tessera sending to any SMTP URL, with extra `[email]` keys.
fn start_tessera_url(dir: &Path, smtp_url: &str, email_extra: &str) -> Server {
    launch(dir, smtp_url, email_extra, "Acme", "")
}

fn restart(s: &mut Server) {
    s.proc.kill();
    s.proc = tessera(&s.config, &s.log.with_extension("2.log"), &[]);
}

async fn start(base: &str, email: &str, headers: &[(&str, &str)]) -> (u16, Duration) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/passwordless/start"))
        .json(&json!({"client_id": "acme-web", "client_secret": SECRET, "connection": "email", "email": email, "send": "code"}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let t = Instant::now();
    let status = req.send().await.unwrap().status().as_u16();
    (status, t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_message_is_well_formed_and_hostile_values_stay_inert() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let (_smtp, smtp_port) = smtp_server(&maildir);
    // An application name that tries to add a header.
    let s = start_tessera(dir.path(), smtp_port, "Acme\r\nBcc: attacker@evil.test", "");
    wait_healthy(&s.base, &s.log).await;
    assert_eq!(start(&s.base, "ada@example.org", &[]).await.0, 200);
    wait_for("the message", Duration::from_secs(30), || {
        maildir_count(&maildir) == 1
    });
    let raw = maildir_messages(&maildir).pop().unwrap();
    let headers: Vec<&str> = raw.lines().take_while(|l| !l.is_empty()).collect();
    assert!(
        !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("bcc:")),
        "{headers:?}"
    );
    // The SMTP envelope went to the user alone (aiosmtpd records it as X-RcptTo).
    assert_eq!(header(&raw, "X-RcptTo"), Some("ada@example.org"));
    assert_eq!(header(&raw, "Auto-Submitted"), Some("auto-generated"));
    assert_eq!(header(&raw, "X-Auto-Response-Suppress"), Some("All"));
    assert!(header(&raw, "Message-ID").unwrap().ends_with("@127.0.0.1>"));
    assert!(header(&raw, "Date").is_some());
    assert!(
        raw.contains("multipart/alternative")
            && raw.contains("text/plain")
            && raw.contains("text/html")
    );
    assert_eq!(header(&raw, "To"), Some("ada@example.org"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_liquid_template_follows_the_request_language() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let (_smtp, smtp_port) = smtp_server(&maildir);
    // The seed document's multi-language example, plus the tenant variables.
    let template = r#"
[tenant]
friendly_name = "Acme Inc"
support_email = "help@acme.test"

[connections.email.template]
from = "{{ application.name }} <login@acme.test>"
subject = "{% if request_language contains 'fr-FR' %}Votre code{% else %}Your code{% endif %}: {{ code }}"
body = """<html><body>{% if request_language contains 'fr-FR' %}<p>Bonjour {{ user.email }}, voici votre code : {{ code }}</p>{% else %}<p>Hello {{ user.email }}, here is your code: {{ code }}</p>{% endif %}<p>{{ friendly_name }} · {{ support_email }}</p></body></html>"""
"#;
    let s = start_tessera(dir.path(), smtp_port, "Acme", template);
    wait_healthy(&s.base, &s.log).await;
    assert_eq!(
        start(
            &s.base,
            "fr@example.org",
            &[("X-Request-Language", "fr-FR")]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        start(
            &s.base,
            "al@example.org",
            &[("Accept-Language", "fr-FR,fr;q=0.9")]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        start(&s.base, "en@example.org", &[("Accept-Language", "en-GB")])
            .await
            .0,
        200
    );
    wait_for("three messages", Duration::from_secs(30), || {
        maildir_count(&maildir) == 3
    });
    let msgs = maildir_messages(&maildir);
    let to = |addr: &str| {
        msgs.iter()
            .find(|m| header(m, "To") == Some(addr))
            .unwrap()
            .clone()
    };
    let fr = to("fr@example.org");
    assert!(header(&fr, "Subject").unwrap().starts_with("Votre code: "));
    assert_eq!(header(&fr, "From"), Some("Acme <login@acme.test>"));
    assert!(fr.contains("Acme Inc") && fr.contains("help@acme.test"));
    assert!(
        header(&to("al@example.org"), "Subject")
            .unwrap()
            .starts_with("Votre code: "),
        "Accept-Language is used too"
    );
    assert!(
        header(&to("en@example.org"), "Subject")
            .unwrap()
            .starts_with("Your code: ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_template_stops_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_tessera(
        dir.path(),
        free_port(),
        "Acme",
        "[connections.email.template]\nsubject = \"Hi\"\nbody = \"<p>{% if code %}never closed</p>\"\n",
    );
    let status = s.proc.0.wait().unwrap();
    assert!(!status.success());
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(
        log.contains("connections.email.email template body"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_queued_while_smtp_is_down_arrives_once_it_is_back_and_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let smtp_port = free_port(); // nothing listens there yet
    let mut s = start_tessera(dir.path(), smtp_port, "Acme", "");
    wait_healthy(&s.base, &s.log).await;
    for i in 0..3 {
        let (status, took) = start(&s.base, &format!("q{i}@example.org"), &[]).await;
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_secs(1),
            "start waits on no SMTP server: {took:?}"
        );
    }
    wait_for("a failed delivery attempt", Duration::from_secs(20), || {
        std::fs::read_to_string(&s.log)
            .unwrap_or_default()
            .contains("will retry")
    });
    // Tessera dies with the mail still queued (SIGKILL: no clean-up), then comes back.
    restart(&mut s);
    let (_smtp, _) = smtp_server_on(&maildir, smtp_port, "ok");
    wait_for("all three messages", Duration::from_secs(60), || {
        maildir_count(&maildir) == 3
    });
    let mut ids: Vec<String> = maildir_messages(&maildir)
        .iter()
        .map(|m| header(m, "Message-ID").unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each message once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_failure_is_retried_with_the_same_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let port = free_port();
    let (_smtp, _) = smtp_server_on(&maildir, port, "4xx:2");
    let s = start_tessera(dir.path(), port, "Acme", "");
    wait_healthy(&s.base, &s.log).await;
    assert_eq!(start(&s.base, "retry@example.org", &[]).await.0, 200);
    wait_for(
        "the message after two 451s",
        Duration::from_secs(30),
        || maildir_count(&maildir) == 1,
    );
    let attempts = smtp_attempts(&maildir);
    let codes: Vec<&str> = attempts.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(codes, ["451", "451", "250"]);
    assert!(
        attempts.iter().all(|(id, _)| *id == attempts[0].0),
        "one stable Message-ID: {attempts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_given_up_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let port = free_port();
    let (_smtp, _) = smtp_server_on(&maildir, port, "5xx");
    let s = start_tessera(dir.path(), port, "Acme", "");
    wait_healthy(&s.base, &s.log).await;
    assert_eq!(start(&s.base, "nobody@example.org", &[]).await.0, 200);
    let url = format!("sqlite://{}", dir.path().join("data/tessera.db").display());
    let store = tessera_store::open(&url, &tessera_store::PoolOptions::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let event = loop {
        let events = store.list_events(20).await.unwrap();
        if let Some(e) = events.into_iter().find(|e| e.kind == "fn") {
            break e;
        }
        assert!(Instant::now() < deadline, "no failure event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(event.description.contains("550"), "{}", event.description);
    assert!(
        !event.description.contains("nobody@example.org"),
        "the address is redacted: {}",
        event.description
    );
    assert_eq!(
        store.outbox_depth().await.unwrap(),
        0,
        "given up, not retried"
    );
    assert_eq!(smtp_attempts(&maildir).len(), 1, "one attempt only");
    assert_eq!(maildir_count(&maildir), 0);
}

/// Runs dkimpy (a DKIM verifier from PyPI) on a raw message, answering its DNS query for the
/// selector's key record with `txt`.
fn dkim_verifies(raw: &Path, txt: &str) -> bool {
    let script = "import dkim, sys, logging\nlogging.basicConfig(level=logging.DEBUG)\nmsg = open(sys.argv[1], 'rb').read()\nrecord = sys.argv[2].encode()\nprint(dkim.verify(msg, logger=logging.getLogger('dkim'), dnsfunc=lambda name, timeout=5: record))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(raw)
        .arg(txt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dkimpy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("dkimpy: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_mail_is_dkim_signed_and_the_signature_verifies() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("dkim.pem");
    let other = dir.path().join("other.pem");
    for k in [&key, &other] {
        openssl(&[
            "genrsa",
            "-traditional",
            "-out",
            k.to_str().unwrap(),
            "2048",
        ]);
    }
    let public = |k: &Path| {
        let der = openssl(&[
            "rsa",
            "-in",
            k.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ]);
        format!(
            "v=DKIM1; k=rsa; p={}",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    let maildir = dir.path().join("maildir");
    let port = free_port();
    let (_smtp, _) = smtp_server_on(&maildir, port, "ok");
    let dkim = format!(
        "[email.dkim]\ndomain = \"acme.test\"\nselector = \"tessera\"\nprivate_key_file = {key:?}\n"
    );
    let s = start_tessera(dir.path(), port, "Acme", &dkim);
    wait_healthy(&s.base, &s.log).await;
    assert_eq!(start(&s.base, "signed@example.org", &[]).await.0, 200);
    let raw = PathBuf::from(format!("{}.raw/0.eml", maildir.display()));
    wait_for("the signed message", Duration::from_secs(30), || {
        raw.exists()
            && std::fs::metadata(&raw)
                .map(|m| m.len() > 0)
                .unwrap_or(false)
    });
    let text = std::fs::read_to_string(&raw).unwrap();
    let sig = text
        .lines()
        .find(|l| l.starts_with("DKIM-Signature:"))
        .expect("a DKIM-Signature header");
    assert!(
        sig.contains("d=acme.test") && sig.contains("s=tessera"),
        "{sig}"
    );
    assert!(
        dkim_verifies(&raw, &public(&key)),
        "the signature verifies with the published key"
    );
    assert!(
        !dkim_verifies(&raw, &public(&other)),
        "and not with another key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_dkim_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bad.pem");
    std::fs::write(&key, "not a key").unwrap();
    let dkim = format!(
        "[email.dkim]\ndomain = \"acme.test\"\nselector = \"tessera\"\nprivate_key_file = {key:?}\n"
    );
    let mut s = start_tessera(dir.path(), free_port(), "Acme", &dkim);
    assert!(!s.proc.0.wait().unwrap().success());
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("email.dkim: DKIM private key"), "{log}");
}

/// A throw-away CA and a server certificate for localhost and 127.0.0.1, made with openssl.
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=Tessera Test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("smtp.key"),
        "-out",
        &p("smtp.csr"),
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("smtp.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-out",
        &p("smtp.pem"),
        "-days",
        "2",
        "-extfile",
        &p("san.ext"),
    ]);
    (
        dir.join("ca.pem"),
        dir.join("smtp.pem"),
        dir.join("smtp.key"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_over_starttls_and_implicit_tls_and_never_falls_back_to_plain() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(dir.path());
    let (cert, key) = (
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    );
    for (name, scheme, options) in [
        (
            "starttls",
            "smtp",
            vec!["--tlscert", cert.as_str(), "--tlskey", key.as_str()],
        ),
        (
            "smtps",
            "smtps",
            vec!["--smtpscert", cert.as_str(), "--smtpskey", key.as_str()],
        ),
    ] {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let maildir = sub.join("maildir");
        let port = free_port();
        let (_smtp, _) = smtp_server_with(&maildir, port, "ok", &options);
        let s = start_tessera_url(
            &sub,
            &format!("{scheme}://localhost:{port}"),
            &format!("ca_file = {ca:?}"),
        );
        wait_healthy(&s.base, &s.log).await;
        assert_eq!(start(&s.base, "tls@example.org", &[]).await.0, 200);
        wait_for(
            &format!("the message over {name}"),
            Duration::from_secs(30),
            || maildir_count(&maildir) == 1,
        );
    }
    // STARTTLS is required by default: a server whose certificate cannot be trusted gets nothing,
    // not even in plain text.
    let sub = dir.path().join("untrusted");
    std::fs::create_dir_all(&sub).unwrap();
    let maildir = sub.join("maildir");
    let port = free_port();
    let (_smtp, _) = smtp_server_with(
        &maildir,
        port,
        "ok",
        &["--tlscert", &cert, "--tlskey", &key],
    );
    let s = start_tessera_url(&sub, &format!("smtp://localhost:{port}"), "");
    wait_healthy(&s.base, &s.log).await;
    assert_eq!(start(&s.base, "tls@example.org", &[]).await.0, 200);
    wait_for("a refused TLS handshake", Duration::from_secs(20), || {
        std::fs::read_to_string(&s.log)
            .unwrap_or_default()
            .contains("will retry")
    });
    assert_eq!(maildir_count(&maildir), 0);
    assert!(
        smtp_attempts(&maildir).is_empty(),
        "no message data was sent"
    );
}

/// Starts the STARTTLS + AUTH server from tests/support/auth_smtp.py.
fn auth_smtp_server(
    maildir: &Path,
    cert: &Path,
    key: &Path,
    user: &str,
    password: &str,
) -> (Proc, u16) {
    let port = free_port();
    let support = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support");
    let child = std::process::Command::new("python3")
        .arg(support.join("auth_smtp.py"))
        .arg(maildir)
        .arg(port.to_string())
        .args([cert, key])
        .args([user, password])
        .env("PYTHONPATH", &support)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut p = Proc(child);
    wait_for(
        "the authenticating SMTP server",
        Duration::from_secs(20),
        || {
            if let Ok(Some(status)) = p.0.try_wait() {
                panic!("auth_smtp.py exited with {status}");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        },
    );
    (p, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_authentication_works_and_refused_credentials_are_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(dir.path());
    let ca_line = format!("ca_file = {ca:?}");
    // Good credentials (percent-encoded in the URL): the message arrives.
    let good = dir.path().join("good");
    std::fs::create_dir_all(&good).unwrap();
    let maildir = good.join("maildir");
    let (_smtp, port) = auth_smtp_server(&maildir, &cert, &key, "mailer@acme.test", "p@ss:w/rd");
    let s = start_tessera_url(
        &good,
        &format!("smtp://mailer%40acme.test:p%40ss%3Aw%2Frd@localhost:{port}"),
        &ca_line,
    );
    wait_healthy(&s.base, &s.log).await;
    assert_eq!(start(&s.base, "auth@example.org", &[]).await.0, 200);
    wait_for(
        "the authenticated delivery",
        Duration::from_secs(30),
        || maildir_count(&maildir) == 1,
    );
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("SMTP server reachable"), "{log}");
    assert!(
        !log.contains("p@ss:w/rd"),
        "the SMTP password is not logged"
    );
    // Wrong credentials: a clear error at start, serving goes on, and nothing is delivered.
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let maildir = bad.join("maildir");
    let (_smtp, port) = auth_smtp_server(&maildir, &cert, &key, "mailer@acme.test", "right");
    let s = start_tessera_url(
        &bad,
        &format!("smtp://mailer%40acme.test:wrong@localhost:{port}"),
        &ca_line,
    );
    wait_healthy(&s.base, &s.log).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&s.log)
        .unwrap_or_default()
        .contains("SMTP server check failed")
    {
        assert!(
            Instant::now() < deadline,
            "no start-up error for refused credentials:\n{}",
            std::fs::read_to_string(&s.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        start(&s.base, "auth@example.org", &[]).await.0,
        200,
        "serving goes on, mail is queued"
    );
    assert_eq!(maildir_count(&maildir), 0);
    let auth = std::fs::read_to_string(format!("{}.auth", maildir.display())).unwrap_or_default();
    assert!(
        auth.lines().all(|l| l == "refused") && auth.contains("refused"),
        "{auth}"
    );
}
