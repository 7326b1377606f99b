//! The binary's command line, run as a user would run it.
//!
//! Being an integration test also makes `cargo test --workspace` build the `tessera-example`
//! binary itself, which the browser tests (tests/browser) start.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera-example"));
    cmd.args(args);
    for var in [
        "RWA_TESSERA",
        "RWA_CLIENT_ID",
        "RWA_CLIENT_SECRET",
        "RWA_LISTEN",
        "RWA_PUBLIC_URL",
        "RWA_VENDOR_DIR",
    ] {
        cmd.env_remove(var);
    }
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run tessera-example: {e}"),
    }
}

#[test]
fn help_lists_every_option() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--tessera",
        "--client-id",
        "--client-secret",
        "--listen",
        "--public-url",
        "--vendor-dir",
    ] {
        assert!(text.contains(option), "{option} missing from:\n{text}");
    }
}

#[test]
fn the_tessera_url_is_required() {
    let out = run(&["--client-id", "app", "--client-secret", "secret"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tessera"), "{err}");
}

#[test]
fn a_tessera_url_that_is_not_http_is_refused() {
    let out = run(&[
        "--tessera",
        "ftp://login.example.com",
        "--client-id",
        "app",
        "--client-secret",
        "secret",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only http and https"), "{err}");
}
