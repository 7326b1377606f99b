//! What one passwordless email costs to make, for `valgrind --tool=callgrind`, which counts
//! instructions the same way on every run: renders the built-in template N times and writes
//! each message as it goes on the wire. See bench/README.md.
//!
//! `mail_cost N [render|compose|lettre]`: render only, render and compose (the default), or
//! render and lettre's builder (the DKIM path). The cost of one message is the difference
//! between a run of N and a run of 1, divided by N - 1.

use tessera_delivery::templates::{self, EmailVars, Tenant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().as_deref().unwrap_or("1000").parse()?;
    let what = args.next().unwrap_or_else(|| "compose".into());
    let mut bytes = 0usize;
    for i in 0..n {
        let vars = EmailVars {
            code: format!("{:06}", i % 1_000_000),
            link: None,
            send: "code".into(),
            application_name: "Bench App".into(),
            client_id: "bench-client-id".into(),
            connection: "email".into(),
            request_language: None,
            user_email: format!("user{i}@bench.example.com"),
            lifetime_minutes: 5,
            tenant: Tenant {
                name: "tessera".into(),
                friendly_name: "Tessera".into(),
                support_email: "support@example.com".into(),
                support_url: "https://example.com/support".into(),
            },
        };
        let message_id = format!("{i:016x}@localhost");
        let m = templates::render(None, &vars, "Tessera <no-reply@example.com>", &message_id)?;
        bytes += match what.as_str() {
            "render" => m.html.len() + m.text.len(),
            "compose" => tessera_delivery::mime::compose(&m)?.1.len(),
            "lettre" => tessera_delivery::smtp::build(&m)?.formatted().len(),
            other => return Err(format!("render, compose or lettre, not {other}").into()),
        };
    }
    println!("{n} messages, {bytes} bytes");
    Ok(())
}
