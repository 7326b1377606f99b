//! The administration CLI on the database, with no server running: applications, connections,
//! users, signing keys and the audit log (`logs tail` follows it), tables by default and JSON
//! with `--json`. Then what happens when the configuration file and the database disagree: the
//! file is bootstrap, applied at a start only where the file itself changed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "admin-cli-secret-admin-cli-secret-0123456789";

fn write_config(dir: &Path, port: u16, callback: &str) -> std::path::PathBuf {
    let config = dir.join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            r#"issuer = "http://127.0.0.1:{port}/"
listen = "127.0.0.1:{port}"
data_dir = {data:?}

[email]
from = "Acme Login <login@acme.test>"
smtp_url = "smtp://127.0.0.1:9?tls=none"

[connections.email]
code_length = 6

[[applications]]
name = "Acme"
client_id = "acme-web"
client_secret = "{SECRET}"
app_type = "regular_web"
callbacks = ["{callback}"]
"#,
            data = dir.join("data"),
        ),
    )
    .unwrap();
    config
}

struct Cli<'a>(&'a Path);

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(args)
            .arg("--config")
            .arg(self.0)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "tessera {args:?} failed: {err}");
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let (ok, _, err) = self.run(args);
        assert!(!ok, "tessera {args:?} should have failed");
        err
    }
}

async fn start(config: &Path, log: &Path, port: u16) -> Proc {
    let p = tessera(config, log, &[]);
    wait_healthy(&format!("http://127.0.0.1:{port}"), log).await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_administers_the_database_and_the_file_is_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("tessera.log");
    let config = write_config(dir.path(), port, "https://acme.test/callback");
    let cli = Cli(&config);

    // The first start writes the file's application and connection to the database.
    let mut server = start(&config, &log, port).await;
    server.kill();

    // Applications.
    let table = cli.ok(&["apps", "list"]);
    assert!(
        table.starts_with("CLIENT_ID") && table.contains("acme-web"),
        "{table}"
    );
    let made = cli.json(&[
        "apps",
        "create",
        "--name",
        "Shop",
        "--callback",
        "https://shop.test/cb",
        "--web-origin",
        "https://shop.test",
        "--grant",
        "authorization_code",
    ]);
    let shop = made["client_id"].as_str().unwrap().to_string();
    let first_secret = made["client_secret"].as_str().unwrap().to_string();
    assert!(first_secret.len() >= 32);
    let shown = cli.ok(&["apps", "show", &shop]);
    assert!(
        shown.contains("https://shop.test/cb") && !shown.contains(&first_secret),
        "{shown}"
    );
    let updated = cli.json(&[
        "apps",
        "update",
        &shop,
        "--callback",
        "https://shop.test/cb2",
    ]);
    assert_eq!(updated["callbacks"], json!(["https://shop.test/cb2"]));
    let err = cli.fails(&["apps", "update", &shop, "--callback", "javascript:alert(1)"]);
    assert!(err.contains("javascript:alert(1)"), "{err}");
    assert_eq!(
        cli.json(&["apps", "show", &shop])["callbacks"],
        json!(["https://shop.test/cb2"])
    );
    let rotated = cli.ok(&["apps", "rotate-secret", &shop]);
    assert!(
        rotated.contains("shown once") && !rotated.contains(&first_secret),
        "{rotated}"
    );
    assert!(cli.fails(&["apps", "delete", &shop]).contains("--yes"));
    cli.ok(&["apps", "delete", &shop, "--yes"]);
    assert!(
        cli.fails(&["apps", "show", &shop])
            .contains("does not exist")
    );

    // Connections.
    let table = cli.ok(&["connections", "list"]);
    assert!(
        table.contains("email") && table.contains("built-in"),
        "{table}"
    );
    let body = dir.path().join("body.html");
    std::fs::write(&body, "<p>Your code: {{ code }}</p>").unwrap();
    let conn = cli.json(&[
        "connections",
        "update",
        "email",
        "--code-length",
        "8",
        "--email-subject",
        "{{ code }} for Acme",
        "--email-body-file",
        body.to_str().unwrap(),
    ]);
    assert_eq!(conn["options"]["totp"]["length"], 8);
    assert_eq!(conn["options"]["email"]["subject"], "{{ code }} for Acme");
    let err = cli.fails(&["connections", "update", "email", "--code-length", "3"]);
    assert!(
        err.contains("code_length must be between 4 and 10"),
        "{err}"
    );
    let preview = cli.ok(&["templates", "preview", "--lang", "fr"]);
    assert!(
        preview.contains("for Acme") && preview.contains("Your code: "),
        "{preview}"
    );
    let shown = cli.ok(&["connections", "show", "email"]);
    assert!(
        shown.contains("options.totp.length") && shown.contains("8"),
        "{shown}"
    );

    // Users.
    let made = cli.json(&["users", "create", "--email", "Grace@Example.com"]);
    let uid = made["user_id"].as_str().unwrap().to_string();
    assert_eq!(made["email"], "grace@example.com");
    cli.ok(&["users", "block", &uid]);
    assert_eq!(cli.json(&["users", "show", &uid])["blocked"], true);
    cli.ok(&["users", "unblock", &uid]);
    let table = cli.ok(&["users", "list", "grace"]);
    assert!(
        table.contains(&uid) && table.contains("grace@example.com"),
        "{table}"
    );

    // Signing keys: rotate, revoke the previous one, never the current one.
    let keys = cli.json(&["keys", "list"]);
    let first = keys[0]["kid"].as_str().unwrap().to_string();
    let refused = cli.fails(&["keys", "revoke", &first]);
    assert!(refused.contains("rotate first"), "{refused}");
    let keys = cli.json(&["keys", "rotate"]);
    assert_eq!(keys[0]["status"], "current");
    assert_eq!(keys[1]["kid"], first.as_str());
    cli.ok(&["keys", "revoke", &first]);
    let statuses: Vec<String> = cli
        .json(&["keys", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, vec!["current", "revoked"]);

    // The audit log: every change above, filtered by user; `logs tail` follows new events.
    let lines = cli.ok(&["logs", "--type", "sapi", "--json", "--limit", "100"]);
    let events: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for needle in [
        "created",
        "updated",
        "client secret rotated",
        "deleted",
        "connection email updated",
        "user created",
        "user blocked",
        "user unblocked",
        "signing key rotated",
        "revoked",
    ] {
        assert!(
            events
                .iter()
                .any(|e| e["description"].as_str().unwrap().contains(needle)),
            "no audit event for {needle}: {lines}"
        );
    }
    assert!(
        events
            .iter()
            .all(|e| e["description"].as_str().unwrap().starts_with("CLI"))
    );
    let mine = cli.ok(&["logs", "--user", &uid, "--json"]);
    assert_eq!(mine.lines().count(), 3, "{mine}");
    let mut tail = Proc(
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([
                "logs",
                "tail",
                "--interval",
                "0.2",
                "--type",
                "sapi",
                "--limit",
                "1",
                "--config",
            ])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(tail.0.stdout.take().unwrap()).lines();
    let newest = out.next().unwrap().unwrap();
    assert!(
        newest.contains("user unblocked") || newest.contains("revoked"),
        "{newest}"
    );
    cli.ok(&["users", "delete", &uid, "--yes"]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(out.next());
    });
    let followed = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        followed.contains("user deleted") && followed.contains(&uid),
        "{followed}"
    );
    tail.kill();

    // The file and the database disagree. An edit made since the last start (CLI, API or
    // dashboard) survives a restart while the file's entry is unchanged...
    cli.ok(&[
        "apps",
        "update",
        "acme-web",
        "--callback",
        "https://acme.test/edited",
    ]);
    let mut server = start(&config, &log, port).await;
    server.kill();
    assert_eq!(
        cli.json(&["apps", "show", "acme-web"])["callbacks"],
        json!(["https://acme.test/edited"])
    );
    assert_eq!(
        cli.json(&["connections", "show", "email"])["options"]["totp"]["length"],
        8
    );
    // ...and when the file's entry changes, the file wins at the next start.
    write_config(dir.path(), port, "https://acme.test/from-file");
    let _server = start(&config, &log, port).await;
    assert_eq!(
        cli.json(&["apps", "show", "acme-web"])["callbacks"],
        json!(["https://acme.test/from-file"])
    );
    assert_eq!(
        cli.json(&["connections", "show", "email"])["options"]["totp"]["length"],
        8,
        "the connection's entry in the file did not change"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("applied the configuration file's application settings"),
        "{text}"
    );
}
