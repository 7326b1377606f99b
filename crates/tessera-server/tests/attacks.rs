//! The attack suite: one test per attack of the threat model that is not already a test of its
//! own elsewhere (docs/SECURITY.md maps every attack to its tests). In-process, over a real
//! SQLite file or PostgreSQL database, with a settable clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::*;
use serde_json::json;
use tessera_core::user::User;

const CB: &str = "https://app.example.com/callback";

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// 10,000 guesses at one address's code, spread over a day, many IPs and fresh codes: no
/// sign-in, and only a bounded number of guesses is ever compared with a code.
async fn ten_thousand_guesses_never_sign_in(backend: &str) {
    let h = H::with(backend, "[rate_limits]\nstart_per_ip = 0\n").await;
    let victim = "victim@example.com";
    let mut compared = 0;
    let mut blocked = 0;
    let mut starts = 0;
    for i in 0..10_000u32 {
        if i % 20 == 0 && h.start(victim).await.status == 200 {
            // The attacker asks for fresh codes (they cannot read them).
            starts += 1;
        }
        let peer = format!("10.{}.{}.{}", (i / 65_536) % 256, (i / 256) % 256, i % 256);
        let guess = format!("{:06}", (i * 7_919) % 1_000_000);
        let r = h
            .post_from(
                &peer,
                "/oauth/token",
                json!({"grant_type": OTP, "client_id": "rwa", "client_secret": SECRET,
                       "username": victim, "otp": guess, "realm": "email"}),
                &[],
            )
            .await;
        match r.status.as_u16() {
            200 => panic!("guess {i} ({guess}) signed in"),
            429 => blocked += 1,
            403 => compared += 1,
            other => panic!("unexpected {other}: {r:?}"),
        }
        h.advance(9); // 10,000 guesses over about a day
    }
    // Per-identity failures block for 15 minutes, then 30, 60, … (at most a day).
    assert!(
        compared <= 100,
        "{compared} guesses were compared with a code"
    );
    assert!(blocked >= 9_900, "{blocked} guesses were blocked");
    assert!(starts >= 1);
    assert!(
        h.st.store
            .list_events(500)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == "limit_wc")
    );
}

/// One IP guessing one address is blocked before the address itself is, so an attacker from
/// one place cannot lock the real user out; the block grows with each round.
async fn one_ip_is_blocked_before_the_identity_and_the_block_grows(h: H) {
    let who = "grow@example.com";
    h.start(who).await;
    let code = h.last_code(who).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let guess = |peer: &'static str, otp: String| {
        let h = &h;
        async move {
            h.post_from(
                peer,
                "/oauth/token",
                json!({"grant_type": OTP, "client_id": "rwa", "client_secret": SECRET,
                       "username": who, "otp": otp, "realm": "email"}),
                &[],
            )
            .await
            .status
            .as_u16()
        }
    };
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(guess("203.0.113.9", wrong.into()).await);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 403).count(), 8);
    assert_eq!(
        guess("203.0.113.9", code.clone()).await,
        429,
        "that IP is blocked"
    );
    // The person, from elsewhere, still signs in with a fresh code.
    h.start(who).await;
    let fresh = h.last_code(who).await;
    assert_eq!(guess("198.51.100.7", fresh).await, 200);
    // The attacker's block grows: 15 minutes, then 30.
    h.advance(901);
    h.start(who).await;
    let next = h.last_code(who).await;
    let w = if next == "000000" { "111111" } else { "000000" };
    assert_eq!(
        guess("203.0.113.9", w.into()).await,
        403,
        "the first block ended"
    );
    assert_eq!(
        guess("203.0.113.9", w.into()).await,
        429,
        "blocked again at once"
    );
    h.advance(901);
    assert_eq!(
        guess("203.0.113.9", w.into()).await,
        429,
        "the second block is longer"
    );
    h.advance(900);
    assert_eq!(guess("203.0.113.9", w.into()).await, 403);
}

/// The 51st `/passwordless/start` from one IP within the hour is refused, whatever address.
async fn the_51st_start_from_one_ip_is_refused(h: H) {
    for i in 0..50 {
        let r = h
            .post_from(
                "192.0.2.50",
                "/passwordless/start",
                json!({"client_id": "spa", "connection": "email", "email": format!("n{i}@example.com"), "send": "code"}),
                &[],
            )
            .await;
        assert_eq!(r.status, 200, "start {i}");
    }
    let r = h
        .post_from(
            "192.0.2.50",
            "/passwordless/start",
            json!({"client_id": "spa", "connection": "email", "email": "n50@example.com", "send": "code"}),
            &[],
        )
        .await;
    assert_eq!(r.err().0, 429);
    assert_eq!(r.err().1, "too_many_requests");
    assert_eq!(r.headers["x-ratelimit-remaining"], "0");
}

/// More than forty look-alikes of an allowed callback: each is refused on a Tessera page,
/// never with a redirect, at `/authorize`; and a magic link cannot be asked for them.
async fn look_alike_redirect_uris_are_refused_without_redirecting(h: H) {
    let bad = [
        "https://app.example.com/callback/",
        "https://app.example.com/callback?x=1",
        "https://app.example.com/callback#frag",
        "https://app.example.com/callbacK",
        "https://app.example.com/CALLBACK",
        "https://APP.example.com/callback",
        "HTTPS://app.example.com/callback",
        "http://app.example.com/callback",
        "https://app.example.com:443/callback",
        "https://app.example.com:8443/callback",
        "https://app.example.com:/callback",
        "https://app.example.com./callback",
        "https://app.example.com.evil.example/callback",
        "https://evil.example/callback",
        "https://user@app.example.com/callback",
        "https://app.example.com@evil.example/callback",
        "https://app.example.com:443@evil.example/callback",
        "https://app.example.com%40evil.example/callback",
        "https://app.example.com\\@evil.example/callback",
        "https://app.example.com\\evil.example/callback",
        "https:/app.example.com/callback",
        "https:\\\\app.example.com\\callback",
        "//app.example.com/callback",
        "/callback",
        "https://app.example.com/callback/../callback",
        "https://app.example.com/x/../callback",
        "https://app.example.com/%2e%2e/callback",
        "https://app.example.com/%63allback",
        "https://app.example.com/callback%2f",
        "https://app.example.com/callback%00",
        "https://app.example.com/callback%252f",
        "https://app.example.com/callback;x",
        "https://app.example.com//callback",
        "https://app.example.com/callback.",
        "https://app.example.com/callback?",
        "https://app.example.com/callback#",
        "https://\u{430}pp.example.com/callback",
        "https://xn--pp-8kc.example.com/callback",
        "https://app.example.com/callback?redirect_uri=https://evil.example",
        "https://app.example.com/callback&redirect_uri=https://evil.example",
        "https://evil.example#https://app.example.com/callback",
        "https://evil.example?https://app.example.com/callback",
        "javascript:alert(1)//https://app.example.com/callback",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "ftp://app.example.com/callback",
        "wss://app.example.com/callback",
        " https://app.example.com/callback",
        "https://app.example.com/callback ",
        "https://app.example.com/callback\t",
        "https://app.example.com/callback\n",
    ];
    assert!(bad.len() >= 40);
    for (i, b) in bad.into_iter().enumerate() {
        h.advance(80); // stay under the per-IP start limit (50 an hour)
        let r = h
            .get(
                &format!(
                    "/authorize?client_id=rwa&response_type=code&state=s&redirect_uri={}",
                    enc(b)
                ),
                None,
            )
            .await;
        assert_eq!(r.status, 400, "{b:?}");
        assert!(r.headers.get("location").is_none(), "{b:?} redirected");
        let r = h
            .post_json(
                "/passwordless/start",
                json!({"client_id": "rwa", "client_secret": SECRET, "connection": "email",
                       "email": format!("redir{i}@example.com"), "send": "link", "authParams": {"redirect_uri": b}}),
            )
            .await;
        assert_eq!(r.err().1, "bad.redirect_uri", "{b:?}");
    }
    // Each refusal is an audit event.
    let refused =
        h.st.store
            .list_events(500)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "f" && e.description.starts_with("Callback URL mismatch"))
            .count();
    assert!(refused >= 40, "{refused} refusals recorded");
    // Parameter pollution: a second redirect_uri is refused, not picked.
    let r = h
        .get(
            &format!(
                "/authorize?client_id=rwa&response_type=code&redirect_uri={}&redirect_uri={}",
                enc(CB),
                enc("https://evil.example/cb")
            ),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.headers.get("location").is_none());
    // The genuine one works (so the refusals above are about the URI, not the request).
    let r = h
        .get(
            &format!(
                "/authorize?client_id=rwa&response_type=code&redirect_uri={}",
                enc(CB)
            ),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// With sign-up disabled, known and unknown addresses (and blocked users) get the same answer
/// in the same time at `/passwordless/start`, and the same at `/oauth/token`. Medians of many
/// interleaved samples must agree within noise.
async fn known_and_unknown_addresses_look_the_same(backend: &str) {
    let h = H::with(
        backend,
        "[rate_limits]\nstart_per_ip = 0\nstart_per_identifier = 0\nfailed_attempts_per_identifier = 0\nfailed_attempts_per_ip_identifier = 0\ntoken_per_ip = 0\n[connections.email]\ndisable_signup = true\n",
    )
    .await;
    let now = h.clock.0.load(std::sync::atomic::Ordering::SeqCst);
    let known = User::new_email_user(
        "0123456789abcdef01234567",
        "email",
        "known@example.com",
        now,
    );
    h.st.store
        .sign_in(&known, "known@example.com", true, now)
        .await
        .unwrap();
    let start = |email: String| {
        let h = &h;
        async move {
            let t = Instant::now();
            let r = h
                .post_json(
                    "/passwordless/start",
                    json!({"client_id": "rwa", "client_secret": SECRET, "connection": "email", "email": email, "send": "code"}),
                )
                .await;
            (t.elapsed().as_secs_f64() * 1000.0, r)
        }
    };
    // Warm up both paths.
    for i in 0..20 {
        start("known@example.com".into()).await;
        start(format!("warm{i}@example.com")).await;
    }
    let (mut k, mut u) = (Vec::new(), Vec::new());
    for i in 0..150 {
        let (tk, rk) = start("known@example.com".into()).await;
        let (tu, ru) = start(format!("nobody{i}@example.com")).await;
        assert_eq!(rk.status, ru.status);
        let keys = |r: &Resp| {
            let mut k: Vec<String> = r.body.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&rk), keys(&ru));
        assert_eq!(rk.body["email_verified"], ru.body["email_verified"]);
        k.push(tk);
        u.push(tu);
    }
    let (mk, mu) = (median(k), median(u));
    let tolerance = 0.5_f64.max(0.3 * mk.max(mu));
    assert!(
        (mk - mu).abs() <= tolerance,
        "/passwordless/start medians differ: known {mk:.3} ms, unknown {mu:.3} ms"
    );
    // Only the known address was sent anything.
    assert!(!h.codes_for("known@example.com").await.is_empty());
    assert!(h.codes_for("nobody0@example.com").await.is_empty());

    // /oauth/token: a wrong code for a known address with a code pending, and for an unknown one.
    let token = |email: &'static str| {
        let h = &h;
        async move {
            let t = Instant::now();
            let r = h.otp(email, "000001", "openid").await;
            (t.elapsed().as_secs_f64() * 1000.0, r)
        }
    };
    let (mut k, mut u) = (Vec::new(), Vec::new());
    for _ in 0..150 {
        h.start("known@example.com").await; // a fresh code, so attempts never run out
        let (tk, rk) = token("known@example.com").await;
        let (tu, ru) = token("stranger@example.com").await;
        assert_eq!(rk.err(), ru.err());
        k.push(tk);
        u.push(tu);
    }
    let (mk, mu) = (median(k), median(u));
    let tolerance = 0.5_f64.max(0.3 * mk.max(mu));
    assert!(
        (mk - mu).abs() <= tolerance,
        "/oauth/token medians differ: known {mk:.3} ms, unknown {mu:.3} ms"
    );
}

/// Security headers on every kind of answer; HSTS once the issuer is https.
async fn security_headers_everywhere(backend: &str) {
    let h = H::with(backend, "").await;
    let page = h
        .get(
            &format!(
                "/authorize?client_id=rwa&response_type=code&redirect_uri={}",
                enc(CB)
            ),
            None,
        )
        .await;
    for r in [&page, &h.start("hdr@example.com").await] {
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
        assert_eq!(r.headers["referrer-policy"], "no-referrer");
        assert_eq!(r.headers["x-frame-options"], "DENY");
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
        assert!(
            r.headers.get("strict-transport-security").is_none(),
            "http issuer"
        );
    }
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "an http issuer cannot set Secure cookies"
    );

    let h = H::with_env(
        backend,
        "",
        &[("TESSERA_ISSUER", "https://login.example.com/")],
    )
    .await;
    let r = h
        .get(
            &format!(
                "/authorize?client_id=rwa&response_type=code&redirect_uri={}",
                enc(CB)
            ),
            None,
        )
        .await;
    assert_eq!(r.headers["strict-transport-security"], "max-age=31536000");
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(
        cookie.starts_with("__Host-tessera_csrf="),
        "no sibling subdomain can set or shadow it: {cookie}"
    );
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(H::new("sqlite").await).await } )*
            #[tokio::test] async fn ten_thousand_guesses_never_sign_in() { super::ten_thousand_guesses_never_sign_in("sqlite").await }
            #[tokio::test] async fn known_and_unknown_addresses_look_the_same() { super::known_and_unknown_addresses_look_the_same("sqlite").await }
            #[tokio::test] async fn security_headers_everywhere() { super::security_headers_everywhere("sqlite").await }
        }
        mod postgres {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(H::new("postgres").await).await } )*
            #[tokio::test] async fn known_and_unknown_addresses_look_the_same() { super::known_and_unknown_addresses_look_the_same("postgres").await }
            #[tokio::test] async fn security_headers_everywhere() { super::security_headers_everywhere("postgres").await }
        }
    };
}

both_backends!(
    one_ip_is_blocked_before_the_identity_and_the_block_grows,
    the_51st_start_from_one_ip_is_refused,
    look_alike_redirect_uris_are_refused_without_redirecting,
);
