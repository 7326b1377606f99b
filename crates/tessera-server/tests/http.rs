//! HTTP tests for every endpoint, both body formats and every error of the core flow,
//! generated once per storage backend.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::*;
use serde_json::{Value, json};
use tessera_core::clock::Clock;

async fn start_answers_like_auth0_and_queues_one_code(h: H) {
    let r = h.start("  Jane.Doe@Example.COM ").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.headers["cache-control"], "no-store");
    let id = r.body["_id"].as_str().unwrap();
    assert!(id.len() == 24 && id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(r.body["email"], "jane.doe@example.com");
    assert_eq!(r.body["email_verified"], false);
    assert_eq!(r.body.as_object().unwrap().len(), 3);
    let codes = h.codes_for("jane.doe@example.com").await;
    assert_eq!(codes.len(), 1);
    assert!(
        codes[0].len() == 6 && codes[0].bytes().all(|b| b.is_ascii_digit()),
        "{codes:?}"
    );
    let mail = &h.st.mailer.dev_mailbox().unwrap().messages()[0];
    assert!(mail.text.contains(&codes[0]) && mail.html.contains(&codes[0]));
    assert!(mail.subject.contains("Regular App"));
    assert_eq!(
        h.st.store.outbox_depth().await.unwrap(),
        0,
        "delivered messages leave the outbox"
    );
}

async fn start_accepts_form_bodies_and_json_labelled_text_plain(h: H) {
    let form = "client_id=rwa&client_secret=rwa-secret-rwa-secret-rwa-secret-0123456789&connection=email&email=form%40example.com&send=code&authParams%5Bscope%5D=openid&authParams[state]=xyz";
    let r = h
        .post(
            "/passwordless/start",
            "application/x-www-form-urlencoded",
            form,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let body = json!({"client_id": "rwa", "client_secret": SECRET, "connection": "email", "email": "plain@example.com", "send": "code", "authParams": {"scope": "openid", "state": null}, "captcha": null});
    let r = h
        .post(
            "/passwordless/start",
            "text/plain;charset=UTF-8",
            body.to_string(),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // a public application (SPA) sends no secret
    let r = h.post_json("/passwordless/start", json!({"client_id": "spa", "connection": "email", "email": "spa@example.com", "send": "code"})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(h.codes_for("form@example.com").await.len(), 1);
    assert_eq!(h.codes_for("plain@example.com").await.len(), 1);
    assert_eq!(h.codes_for("spa@example.com").await.len(), 1);
}

async fn start_refuses_bad_input_in_auth0_shape_and_changes_nothing(h: H) {
    h.start("keep@example.com").await;
    let code = h.last_code("keep@example.com").await;
    let base = json!({"client_id": "rwa", "client_secret": SECRET, "connection": "email", "email": "keep@example.com", "send": "code"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v;
        }
        b
    };
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            with("client_id", Value::Null),
            400,
            "bad.client_id",
            "Missing required property: client_id",
        ),
        (
            with("client_id", json!("ghost")),
            401,
            "access_denied",
            "Unauthorized",
        ),
        (
            with("client_secret", json!("wrong-secret")),
            401,
            "access_denied",
            "Unauthorized",
        ),
        (
            with("client_secret", Value::Null),
            403,
            "unauthorized_client",
            "Client authentication is required",
        ),
        (
            with("connection", Value::Null),
            400,
            "bad.connection",
            "Missing required property: connection",
        ),
        (
            with("connection", json!("github")),
            400,
            "bad.connection",
            "Connection does not exist",
        ),
        (
            with("email", Value::Null),
            400,
            "bad.email",
            "Missing required property: email",
        ),
        (
            with("email", json!("not-an-email")),
            400,
            "bad.email",
            "error in email - email format validation failed: not-an-email",
        ),
        (
            with("email", json!("keep@example.com\r\nBcc: evil@example.com")),
            400,
            "bad.email",
            "",
        ),
        (
            with("email", json!(42)),
            400,
            "bad.email",
            "error in email - invalid type (expected string)",
        ),
        (
            with("send", json!("carrier-pigeon")),
            400,
            "bad.send",
            "error in send - must be one of: link, code",
        ),
        (
            with("authParams", json!("scope=openid")),
            400,
            "bad.authParams",
            "error in authParams - invalid type: string (expected object)",
        ),
        (
            with("type", json!("x")),
            400,
            "bad.request",
            "the following properties are not allowed: type",
        ),
    ];
    for (body, status, error, desc) in cases {
        let r = h.post_json("/passwordless/start", body.clone()).await;
        assert_eq!(
            (r.status.as_u16(), r.body["error"].as_str().unwrap()),
            (status, error),
            "{body} -> {r:?}"
        );
        if !desc.is_empty() {
            assert_eq!(r.body["error_description"], desc, "{body}");
        }
        assert_eq!(r.body.as_object().unwrap().len(), 2, "{r:?}");
    }
    let r = h.post_json("/passwordless/start", json!({"client_id": "noconn", "client_secret": "noconn-secret-noconn-secret-noconn-secret", "connection": "email", "email": "keep@example.com", "send": "code"})).await;
    assert_eq!(r.err(), (400, "bad.connection", "Connection is disabled"));
    let r = h
        .post(
            "/passwordless/start",
            "application/json",
            "{\"client_id\": ",
            &[],
        )
        .await;
    assert_eq!(r.err().1, "bad.request");
    let r = h
        .post(
            "/passwordless/start",
            "application/x-www-form-urlencoded",
            "client_id=rwa&client_id=spa",
            &[],
        )
        .await;
    assert_eq!(r.err().1, "bad.request");
    // An unknown delivery method, and a link to a callback the application does not allow.
    let r = h
        .post_json("/passwordless/start", with("send", json!("carrier-pigeon")))
        .await;
    assert_eq!(r.err().1, "bad.send");
    let mut evil = with("send", json!("link"));
    evil["authParams"] = json!({"redirect_uri": "https://evil.example/cb"});
    let r = h.post_json("/passwordless/start", evil).await;
    assert_eq!(r.err().1, "bad.redirect_uri");
    // None of that touched the pending code or sent anything.
    assert_eq!(h.codes_for("keep@example.com").await.len(), 1);
    assert_eq!(h.otp("keep@example.com", &code, "openid").await.status, 200);
}

async fn otp_grant_issues_tokens_that_verify_through_jwks(h: H) {
    let r = h
        .sign_in("flow@example.com", "openid profile email offline_access")
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["pragma"], "no-cache");
    let b = &r.body;
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 86400);
    assert_eq!(b["scope"], "openid profile email offline_access");
    assert!(b["refresh_token"].as_str().unwrap().len() >= 40);
    let claims = verify_jwt(&h, b["id_token"].as_str().unwrap(), "rwa").await;
    let sub = claims["sub"].as_str().unwrap();
    assert!(sub.starts_with("email|") && sub.len() == 30, "{sub}");
    assert_eq!(claims["email"], "flow@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["nickname"], "flow");
    assert_eq!(claims["name"], "flow@example.com");
    assert!(
        claims["picture"]
            .as_str()
            .unwrap()
            .starts_with("https://s.gravatar.com/avatar/")
    );
    assert!(claims.get("nonce").is_none(), "no nonce in OTP id_tokens");
    assert!(claims["iat"].is_i64());
    // the opaque access token works at /userinfo
    let u = h.get("/userinfo", b["access_token"].as_str()).await;
    assert_eq!(u.status, 200, "{u:?}");
    assert_eq!(u.body["sub"], sub);
    assert_eq!(u.body["email"], "flow@example.com");
    assert_eq!(u.body["nickname"], "flow");
    // a narrower scope yields fewer claims
    let r = h.sign_in("flow@example.com", "openid email").await;
    let claims = verify_jwt(&h, r.body["id_token"].as_str().unwrap(), "rwa").await;
    assert!(claims.get("nickname").is_none() && claims["email"] == "flow@example.com");
    assert_eq!(claims["sub"], sub, "the same user signs in again");
    assert!(r.body.get("refresh_token").is_none());
    let u = h.get("/userinfo", r.body["access_token"].as_str()).await;
    assert!(u.body.get("nickname").is_none());
    // without openid there is no id_token
    let r = h.sign_in("flow@example.com", "email").await;
    assert!(r.body.get("id_token").is_none() && r.body["access_token"].is_string());
    let user = h.st.store.get_user(sub).await.unwrap().unwrap();
    assert_eq!(user.logins_count, 3);
}

async fn discovery_and_jwks_are_public(h: H) {
    let d = h.get("/.well-known/openid-configuration", None).await;
    assert_eq!(d.status, 200);
    assert_eq!(d.body["issuer"], "http://localhost:3000/");
    assert_eq!(
        d.body["jwks_uri"],
        "http://localhost:3000/.well-known/jwks.json"
    );
    assert_eq!(
        d.body["token_endpoint"],
        "http://localhost:3000/oauth/token"
    );
    assert_eq!(d.headers["access-control-allow-origin"], "*");
    let j = h.get("/.well-known/jwks.json", None).await;
    assert_eq!(j.headers["access-control-allow-origin"], "*");
    let keys = j.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (
            keys[0]["kty"].as_str(),
            keys[0]["alg"].as_str(),
            keys[0]["use"].as_str()
        ),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
    assert!(keys[0].get("d").is_none(), "no private parts in the JWKS");
    // after a rotation both the new and the previous key are published
    let kid =
        h.st.keys
            .rotate(
                h.st.store.as_ref(),
                &h.st.secret,
                h.st.rng.as_ref(),
                h.clock.now(),
            )
            .await
            .unwrap();
    let j = h.get("/.well-known/jwks.json", None).await;
    let kids: Vec<&str> = j.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2);
    assert!(kids.contains(&kid.as_str()));
    let r = h.sign_in("rot@example.com", "openid").await;
    let header = jsonwebtoken::decode_header(r.body["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(kid.as_str()),
        "new tokens use the new key"
    );
    verify_jwt(&h, r.body["id_token"].as_str().unwrap(), "rwa").await;
    let health = h.get("/health", None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    let nf = h.get("/nope", None).await;
    assert_eq!(nf.err(), (404, "not_found", "Not found"));
}

async fn a_key_rotated_on_another_node_is_accepted_at_once(h: H) {
    use tessera_server::keys::KeyRing;
    let r = h.sign_in("other@example.com", "openid").await;
    let sub = verify_jwt(&h, r.body["id_token"].as_str().unwrap(), "rwa").await["sub"].clone();
    // "Another node": a second key ring over the same store rotates the keys.
    let other = KeyRing::load(
        h.st.store.as_ref(),
        &h.st.secret,
        h.st.rng.as_ref(),
        h.clock.now(),
    )
    .await
    .unwrap();
    other
        .rotate(
            h.st.store.as_ref(),
            &h.st.secret,
            h.st.rng.as_ref(),
            h.clock.now(),
        )
        .await
        .unwrap();
    let mut claims = serde_json::Map::new();
    claims.insert("iss".into(), json!("http://localhost:3000/"));
    claims.insert("sub".into(), sub.clone());
    claims.insert("aud".into(), json!([API, "http://localhost:3000/userinfo"]));
    claims.insert("iat".into(), json!(h.clock.now()));
    claims.insert("exp".into(), json!(h.clock.now() + 600));
    claims.insert("scope".into(), json!("openid email"));
    let token = other.get().signing.sign(&claims).unwrap();
    // This node has not refreshed yet; an unknown kid makes it look at the store once.
    let u = h.get("/userinfo", Some(&token)).await;
    assert_eq!(u.status, 200, "{u:?}");
    assert_eq!(u.body["sub"], sub);
    // An unknown kid that exists nowhere is still refused.
    let (stray, _) = tessera_core::jwt::SigningKey::generate(h.st.rng.as_ref()).unwrap();
    assert_eq!(
        h.get("/userinfo", Some(&stray.sign(&claims).unwrap()))
            .await
            .status,
        401
    );
}

async fn a_message_whose_code_expired_is_dropped_not_sent(h: H) {
    h.start("late@example.com").await;
    // The worker did not run for longer than the code lives (say, SMTP was down).
    h.advance(181);
    assert!(
        h.codes_for("late@example.com").await.is_empty(),
        "an expired code is never mailed"
    );
    assert_eq!(
        h.st.store.outbox_depth().await.unwrap(),
        0,
        "and it left the outbox"
    );
    let events = h.st.store.list_events(10).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "fn" && e.description.contains("expired")),
        "{events:?}"
    );
    // The database holds no plain-text code at any time: only its keyed hash.
    h.start("plain@example.com").await;
    let now = h.st.now();
    let challenge = match h
        .st
        .store
        .count_attempt("email", "plain@example.com", ["none", "none"], now)
        .await
        .unwrap()
    {
        tessera_store::Attempt::Counted { challenge, .. } => challenge,
        other => panic!("{other:?}"),
    };
    let code = h.last_code("plain@example.com").await;
    assert_ne!(challenge.code_hash, code.as_bytes());
    assert_eq!(challenge.code_hash.len(), 32);
}

async fn refresh_sessions_have_an_absolute_lifetime(h: H) {
    let r = h.sign_in("long@example.com", "openid offline_access").await;
    let mut t = r.body["refresh_token"].as_str().unwrap().to_string();
    let refresh = |t: &str| {
        let t = t.to_string();
        let h = &h;
        async move {
            h.post_form(
                "/oauth/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", "rwa"),
                    ("client_secret", SECRET),
                    ("refresh_token", &t),
                ],
            )
            .await
        }
    };
    // Refreshing keeps the session alive within its 30 days...
    for _ in 0..2 {
        h.advance(14 * 86_400);
        let r = refresh(&t).await;
        assert_eq!(r.status, 200, "{r:?}");
        t = r.body["refresh_token"].as_str().unwrap().to_string();
    }
    // ...but not past them: rotation does not extend the family's expiry.
    h.advance(2 * 86_400 + 1);
    assert_eq!(
        refresh(&t).await.err(),
        (403, "invalid_grant", "Unknown or invalid refresh token.")
    );
}

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(h: H) {
    let r = h
        .sign_in("rt@example.com", "openid email offline_access")
        .await;
    let rt1 = r.body["refresh_token"].as_str().unwrap().to_string();
    let refresh = |t: String| {
        let h = &h;
        async move {
            h.post_form(
                "/oauth/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", "rwa"),
                    ("client_secret", SECRET),
                    ("refresh_token", &t),
                ],
            )
            .await
        }
    };
    let r2 = refresh(rt1.clone()).await;
    assert_eq!(r2.status, 200, "{r2:?}");
    let rt2 = r2.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2, "refresh tokens rotate");
    verify_jwt(&h, r2.body["id_token"].as_str().unwrap(), "rwa").await;
    // replaying the first token is reuse: the whole family dies, including rt2
    assert_eq!(
        refresh(rt1).await.err(),
        (403, "invalid_grant", "Unknown or invalid refresh token.")
    );
    assert_eq!(
        refresh(rt2).await.err(),
        (403, "invalid_grant", "Unknown or invalid refresh token.")
    );
    assert_eq!(refresh("made-up".into()).await.err().1, "invalid_grant");
    let events = h.st.store.list_events(20).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "ferrt"),
        "reuse is an audit event"
    );
    // a refresh token is bound to its application
    let r = h.sign_in("rt@example.com", "openid offline_access").await;
    let t = r.body["refresh_token"].as_str().unwrap();
    let other = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "spa"),
                ("refresh_token", t),
            ],
        )
        .await;
    assert_eq!(other.err().0, 403);
    // ...and does not burn it for the application that owns it
    assert_eq!(refresh(t.to_string()).await.status, 200);
    // scope can narrow but never widen
    let r = h.sign_in("rt@example.com", "openid offline_access").await;
    let t = r.body["refresh_token"].as_str().unwrap();
    let wide = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "rwa"),
                ("client_secret", SECRET),
                ("refresh_token", t),
                ("scope", "openid email offline_access"),
            ],
        )
        .await;
    assert_eq!(wide.err().1, "invalid_scope");
}

async fn refresh_tokens_need_offline_access_and_permission(h: H) {
    assert!(
        h.sign_in("a@example.com", "openid")
            .await
            .body
            .get("refresh_token")
            .is_none()
    );
    // the SPA may not use the refresh-token grant
    h.post_json("/passwordless/start", json!({"client_id": "spa", "connection": "email", "email": "b@example.com", "send": "code"})).await;
    let code = h.last_code("b@example.com").await;
    let r = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", OTP),
                ("client_id", "spa"),
                ("username", "b@example.com"),
                ("otp", &code),
                ("realm", "email"),
                ("scope", "openid offline_access"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.get("refresh_token").is_none());
    // an API without offline access gives none either
    h.start("c@example.com").await;
    let code = h.last_code("c@example.com").await;
    let r = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", OTP),
                ("client_id", "rwa"),
                ("client_secret", SECRET),
                ("username", "c@example.com"),
                ("otp", &code),
                ("realm", "email"),
                ("scope", "openid offline_access"),
                ("audience", "https://no-offline.example.com/"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.get("refresh_token").is_none());
}

async fn wrong_codes_burn_the_code_after_three_attempts(h: H) {
    h.start("try@example.com").await;
    let code = h.last_code("try@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..3 {
        assert_eq!(
            h.otp("try@example.com", wrong, "openid").await.err(),
            (403, "invalid_grant", "Wrong email or verification code.")
        );
    }
    assert_eq!(
        h.otp("try@example.com", &code, "openid").await.err(),
        (
            403,
            "invalid_grant",
            "You've reached the maximum number of attempts. Please try to login again."
        )
    );
    // a new code starts over
    h.start("try@example.com").await;
    let code = h.last_code("try@example.com").await;
    assert_eq!(h.otp("try@example.com", wrong, "openid").await.status, 403);
    assert_eq!(h.otp("try@example.com", &code, "openid").await.status, 200);
}

async fn codes_expire_are_single_use_and_only_the_newest_works(h: H) {
    h.start("exp@example.com").await;
    let code = h.last_code("exp@example.com").await;
    h.advance(180);
    assert_eq!(
        h.otp("exp@example.com", &code, "openid").await.err(),
        (
            403,
            "invalid_grant",
            "The verification code has expired. Please try to login again."
        )
    );

    h.start("once@example.com").await;
    let code = h.last_code("once@example.com").await;
    h.advance(179);
    assert_eq!(
        h.otp("once@example.com", &code, "openid").await.status,
        200,
        "valid just before expiry"
    );
    assert_eq!(
        h.otp("once@example.com", &code, "openid").await.err(),
        (403, "invalid_grant", "Wrong email or verification code.")
    );

    h.start("new@example.com").await;
    let old = h.last_code("new@example.com").await;
    h.start("new@example.com").await;
    let new = h.last_code("new@example.com").await;
    if old != new {
        assert_eq!(
            h.otp("new@example.com", &old, "openid").await.status,
            403,
            "the older code is invalid"
        );
    }
    assert_eq!(h.otp("new@example.com", &new, "openid").await.status, 200);
}

async fn failures_on_one_identity_never_touch_another(h: H) {
    h.start("victim@example.com").await;
    let code = h.last_code("victim@example.com").await;
    h.start("attacker@example.com").await;
    for i in 0..5 {
        h.otp("attacker@example.com", "123456", "openid").await;
        // the victim's own code, presented for another identity, is wrong too (and after enough
        // failures from this IP the attacker's identity is blocked for it: 429)
        let status = h.otp("attacker@example.com", &code, "openid").await.status;
        assert!(matches!(status.as_u16(), 403 | 429), "round {i}: {status}");
    }
    assert_eq!(
        h.otp("victim@example.com", &code, "openid").await.status,
        200
    );
}

async fn a_code_is_bound_to_the_application_that_asked_for_it(h: H) {
    h.start("bound@example.com").await; // for rwa
    let code = h.last_code("bound@example.com").await;
    let r = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", OTP),
                ("client_id", "spa"),
                ("username", "bound@example.com"),
                ("otp", &code),
                ("realm", "email"),
            ],
        )
        .await;
    assert_eq!(
        r.err(),
        (403, "invalid_grant", "Wrong email or verification code.")
    );
    assert_eq!(
        h.otp("bound@example.com", &code, "openid").await.status,
        200
    );
}

/// Form pairs sent, and the (status, error, description) expected.
type TokenCase<'a> = (Vec<(&'a str, &'a str)>, (u16, &'a str, &'a str));

async fn token_endpoint_refuses_bad_input_in_auth0_shape(h: H) {
    let base: Vec<(&str, &str)> = vec![
        ("grant_type", OTP),
        ("client_id", "rwa"),
        ("client_secret", SECRET),
        ("username", "x@example.com"),
        ("otp", "123456"),
        ("realm", "email"),
    ];
    let without = |k: &str| {
        base.iter()
            .filter(|(n, _)| *n != k)
            .cloned()
            .collect::<Vec<_>>()
    };
    let replace = |k: &str, v: &'static str| {
        base.iter()
            .map(|(n, x)| if *n == k { (*n, v) } else { (*n, *x) })
            .collect::<Vec<_>>()
    };
    let cases: Vec<TokenCase> = vec![
        (
            without("grant_type"),
            (
                400,
                "invalid_request",
                "Missing required parameter: grant_type",
            ),
        ),
        (
            without("username"),
            (
                400,
                "invalid_request",
                "Missing required parameter: username",
            ),
        ),
        (
            without("otp"),
            (400, "invalid_request", "Missing required parameter: otp"),
        ),
        (
            without("realm"),
            (400, "invalid_request", "Missing required parameter: realm"),
        ),
        (
            without("client_id"),
            (
                400,
                "invalid_request",
                "Missing required parameter: client_id",
            ),
        ),
        (
            without("client_secret"),
            (
                403,
                "unauthorized_client",
                "Client authentication is required",
            ),
        ),
        (
            replace("client_secret", "nope"),
            (401, "access_denied", "Unauthorized"),
        ),
        (
            replace("client_id", "ghost"),
            (401, "access_denied", "Unauthorized"),
        ),
        (
            replace("grant_type", "password"),
            (
                400,
                "unsupported_grant_type",
                "Unsupported grant type: password",
            ),
        ),
        (
            replace("realm", "github"),
            (400, "invalid_request", "the connection was not found"),
        ),
        (
            replace("username", "not-an-email"),
            (403, "invalid_grant", "Wrong email or verification code."),
        ),
        (
            replace("username", "nobody@example.com"),
            (403, "invalid_grant", "Wrong email or verification code."),
        ),
    ];
    for (pairs, want) in cases {
        let r = h.post_form("/oauth/token", &pairs).await;
        assert_eq!(r.err(), want, "{pairs:?}");
    }
    let mut aud = base.clone();
    aud.push(("audience", "https://unknown.example.com/"));
    assert_eq!(
        h.post_form("/oauth/token", &aud).await.err(),
        (
            403,
            "access_denied",
            "Service not found: https://unknown.example.com/"
        )
    );
    let r = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", OTP),
                ("client_id", "nootp"),
                ("client_secret", "nootp-secret-nootp-secret-nootp-secret-01"),
                ("username", "x@example.com"),
                ("otp", "1"),
                ("realm", "email"),
            ],
        )
        .await;
    assert_eq!(
        r.err(),
        (
            403,
            "unauthorized_client",
            "Grant type 'http://auth0.com/oauth/grant-type/passwordless/otp' not allowed for the client."
        )
    );
    assert_eq!(
        r.body["error_uri"],
        "https://auth0.com/docs/clients/client-grant-types"
    );
    let r = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", OTP),
                ("client_id", "noconn"),
                ("client_secret", "noconn-secret-noconn-secret-noconn-secret"),
                ("username", "x@example.com"),
                ("otp", "1"),
                ("realm", "email"),
            ],
        )
        .await;
    assert_eq!(
        r.err(),
        (400, "invalid_request", "the connection was disabled")
    );
    let r = h
        .post("/oauth/token", "application/json", "{oops", &[])
        .await;
    assert_eq!(r.err().1, "invalid_request");
}

async fn token_endpoint_accepts_json_and_client_secret_basic(h: H) {
    use base64::Engine as _;
    h.start("basic@example.com").await;
    let code = h.last_code("basic@example.com").await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("rwa:{SECRET}"));
    let auth = format!("Basic {basic}");
    let body = form(&[
        ("grant_type", OTP),
        ("username", "basic@example.com"),
        ("otp", &code),
        ("realm", "email"),
    ]);
    let r = h
        .post(
            "/oauth/token",
            "application/x-www-form-urlencoded;charset=UTF-8",
            body,
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // python's shape: JSON with "audience": null
    h.start("json@example.com").await;
    let code = h.last_code("json@example.com").await;
    let r = h.post_json("/oauth/token", json!({"client_id": "rwa", "username": "json@example.com", "otp": code, "realm": "email", "scope": "openid profile email", "audience": null, "grant_type": OTP, "client_secret": SECRET})).await;
    assert_eq!(r.status, 200, "{r:?}");
    // both methods at once is refused
    let body = form(&[
        ("grant_type", OTP),
        ("client_secret", SECRET),
        ("username", "x@example.com"),
        ("otp", "1"),
        ("realm", "email"),
    ]);
    let r = h
        .post(
            "/oauth/token",
            "application/x-www-form-urlencoded",
            body,
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.err().1, "invalid_request");
    let bad = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("rwa:wrong")
    );
    let body = form(&[
        ("grant_type", OTP),
        ("username", "x@example.com"),
        ("otp", "1"),
        ("realm", "email"),
    ]);
    let r = h
        .post(
            "/oauth/token",
            "application/x-www-form-urlencoded",
            body,
            &[("authorization", &bad)],
        )
        .await;
    assert_eq!(r.err(), (401, "access_denied", "Unauthorized"));
}

async fn an_audience_gives_a_jwt_access_token_that_userinfo_verifies(h: H) {
    h.start("api@example.com").await;
    let code = h.last_code("api@example.com").await;
    let r = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", OTP),
                ("client_id", "rwa"),
                ("client_secret", SECRET),
                ("username", "api@example.com"),
                ("otp", &code),
                ("realm", "email"),
                ("scope", "openid email offline_access"),
                ("audience", API),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body["refresh_token"].is_string(),
        "the API allows offline access"
    );
    let at = r.body["access_token"].as_str().unwrap();
    let claims = verify_jwt(&h, at, API).await;
    assert_eq!(
        claims["aud"],
        json!([API, "http://localhost:3000/userinfo"])
    );
    assert_eq!(claims["azp"], "rwa");
    assert_eq!(claims["scope"], "openid email offline_access");
    let u = h.get("/userinfo", Some(at)).await;
    assert_eq!(u.status, 200, "{u:?}");
    assert_eq!(u.body["email"], "api@example.com");
    // forgeries: alg none, and a tampered payload
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = at.split('.').collect();
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    assert_eq!(h.get("/userinfo", Some(&none)).await.status, 401);
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = json!("email|000000000000000000000000");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.to_string()),
        parts[2]
    );
    assert_eq!(h.get("/userinfo", Some(&tampered)).await.status, 401);
    // an access token for an API without openid is not for /userinfo
    h.start("api@example.com").await;
    let code = h.last_code("api@example.com").await;
    let r = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", OTP),
                ("client_id", "rwa"),
                ("client_secret", SECRET),
                ("username", "api@example.com"),
                ("otp", &code),
                ("realm", "email"),
                ("scope", "read:things"),
                ("audience", API),
            ],
        )
        .await;
    assert_eq!(
        h.get("/userinfo", r.body["access_token"].as_str())
            .await
            .status,
        401
    );
}

async fn userinfo_refuses_missing_unknown_and_expired_tokens(h: H) {
    let r = h.get("/userinfo", None).await;
    assert_eq!(r.err().0, 401);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(h.get("/userinfo", Some("garbage")).await.status, 401);
    assert_eq!(h.get("/userinfo", Some("a.b.c")).await.status, 401);
    let r = h.sign_in("ui@example.com", "openid email").await;
    let at = r.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(h.get("/userinfo", Some(&at)).await.status, 200);
    h.advance(86_400);
    assert_eq!(h.get("/userinfo", Some(&at)).await.status, 401, "expired");
}

async fn email_case_and_spacing_map_to_one_user(h: H) {
    let a = h.sign_in("Case.User@Example.COM", "openid").await;
    let b = h.sign_in(" case.user@example.com", "openid").await;
    let sa = verify_jwt(&h, a.body["id_token"].as_str().unwrap(), "rwa").await;
    let sb = verify_jwt(&h, b.body["id_token"].as_str().unwrap(), "rwa").await;
    assert_eq!(sa["sub"], sb["sub"]);
    // Known and unknown addresses get the same answer, apart from the random _id.
    let known = h.start("CASE.user@example.com").await;
    let unknown = h.start("never.seen@example.com").await;
    assert_eq!((known.status.as_u16(), unknown.status.as_u16()), (200, 200));
    assert_eq!(known.body["email_verified"], unknown.body["email_verified"]);
    let keys = |r: &Resp| {
        r.body
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&known), keys(&unknown));
}

async fn blocked_users_get_no_code_and_no_tokens(h: H) {
    let r = h.sign_in("blocked@example.com", "openid").await;
    let sub = verify_jwt(&h, r.body["id_token"].as_str().unwrap(), "rwa").await["sub"]
        .as_str()
        .unwrap()
        .to_string();
    h.start("blocked@example.com").await;
    let code = h.last_code("blocked@example.com").await;
    h.st.store
        .set_user_blocked(&sub, true, h.clock.now())
        .await
        .unwrap();
    assert_eq!(
        h.otp("blocked@example.com", &code, "openid").await.err(),
        (401, "unauthorized", "user is blocked")
    );
    let before = h.codes_for("blocked@example.com").await.len();
    let r = h.start("blocked@example.com").await;
    assert_eq!(r.status, 200, "same answer as for anyone");
    assert_eq!(
        h.codes_for("blocked@example.com").await.len(),
        before,
        "no code sent"
    );
}

async fn disabled_signup(backend: &str) {
    let h = H::with(backend, "[connections.email]\ndisable_signup = true\n").await;
    let r = h.start("stranger@example.com").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["email_verified"], false);
    assert!(h.codes_for("stranger@example.com").await.is_empty());
    assert_eq!(
        h.otp("stranger@example.com", "123456", "openid")
            .await
            .err(),
        (403, "invalid_grant", "Wrong email or verification code.")
    );
    assert!(
        h.st.store
            .find_user("email", "stranger@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

async fn codes_follow_the_configured_length(backend: &str) {
    let h = H::with(
        backend,
        "[connections.email]\ncode_length = 8\nmax_attempts = 1\n",
    )
    .await;
    h.start("len@example.com").await;
    let code = h.last_code("len@example.com").await;
    assert_eq!(code.len(), 8);
    assert_eq!(
        h.otp("len@example.com", "00000000", "openid").await.status,
        403
    );
    assert_eq!(
        h.otp("len@example.com", &code, "openid").await.err().2,
        "You've reached the maximum number of attempts. Please try to login again."
    );
}

async fn start_is_rate_limited_per_ip_with_headers(backend: &str) {
    let h = H::with(
        backend,
        "[rate_limits]\nstart_per_ip = 3\nstart_per_identifier = 100\n",
    )
    .await;
    let window_end = h.clock.now() - h.clock.now() % 3600 + 3600;
    for (i, email) in ["a@example.com", "b@example.com"].iter().enumerate() {
        let r = h.start(email).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["x-ratelimit-limit"], "3");
        assert_eq!(
            r.headers["x-ratelimit-remaining"],
            (2 - i).to_string().as_str()
        );
        assert_eq!(
            r.headers["x-ratelimit-reset"],
            window_end.to_string().as_str()
        );
    }
    // bad requests count too, and carry the headers
    let r = h.post_json("/passwordless/start", json!({"client_id": "rwa", "client_secret": SECRET, "connection": "email", "email": "nope", "send": "code"})).await;
    assert_eq!(
        (
            r.err().1,
            r.headers["x-ratelimit-remaining"].to_str().unwrap()
        ),
        ("bad.email", "0")
    );
    let r = h.start("c@example.com").await;
    assert_eq!(r.err().0, 429);
    assert_eq!(r.err().1, "too_many_requests");
    assert_eq!(r.headers["x-ratelimit-remaining"], "0");
    assert!(
        h.codes_for("c@example.com").await.is_empty(),
        "nothing sent past the limit"
    );
    h.advance(3600);
    assert_eq!(h.start("c@example.com").await.status, 200, "a new window");
}

async fn start_is_rate_limited_per_identifier(backend: &str) {
    let h = H::new(backend).await;
    for _ in 0..5 {
        assert_eq!(h.start("many@example.com").await.status, 200);
    }
    let r = h.start("MANY@example.com").await;
    assert_eq!(
        r.err(),
        (
            429,
            "too_many_requests",
            "Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers."
        )
    );
    assert_eq!(h.codes_for("many@example.com").await.len(), 5);
    assert_eq!(
        h.start("other@example.com").await.status,
        200,
        "other addresses are not affected"
    );
    // an unknown address and a known one hit the same limit the same way
    for _ in 0..5 {
        h.start("ghost@example.com").await;
    }
    assert_eq!(h.start("ghost@example.com").await.err().0, 429);
    h.advance(900);
    assert_eq!(h.start("many@example.com").await.status, 200);
}

async fn repeated_failures_lock_the_identity_across_codes(backend: &str) {
    let h = H::with(
        backend,
        "[rate_limits]\nfailed_attempts_per_identifier = 4\n",
    )
    .await;
    h.start("locked@example.com").await;
    let first = h.last_code("locked@example.com").await;
    let wrong = |c: &str| {
        if c == "000000" {
            "111111".to_string()
        } else {
            "000000".to_string()
        }
    };
    for _ in 0..3 {
        assert_eq!(
            h.otp("locked@example.com", &wrong(&first), "openid")
                .await
                .err()
                .1,
            "invalid_grant"
        );
    }
    // a fresh code does not buy a fresh set of guesses past the identity's limit
    h.start("locked@example.com").await;
    let second = h.last_code("locked@example.com").await;
    assert_eq!(
        h.otp("locked@example.com", &wrong(&second), "openid")
            .await
            .err()
            .1,
        "invalid_grant"
    );
    let r = h.otp("locked@example.com", &second, "openid").await;
    assert_eq!(
        r.err(),
        (
            429,
            "too_many_attempts",
            "We have detected suspicious login behavior and further attempts will be blocked. Please contact the administrator."
        )
    );
    assert!(
        h.st.store
            .list_events(50)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == "limit_wc")
    );
    // other identities are unaffected
    assert_eq!(h.sign_in("free@example.com", "openid").await.status, 200);
    // after the window, a new code works
    h.advance(3600);
    h.start("locked@example.com").await;
    let third = h.last_code("locked@example.com").await;
    assert_eq!(
        h.otp("locked@example.com", &third, "openid").await.status,
        200
    );
}

const BACKEND_SECRET: &str = "backend-secret-backend-secret-backend-0123";

async fn forwarded_for_is_believed_only_from_trusted_back_ends_and_proxies(backend: &str) {
    let h = H::with(backend, "trusted_proxies = [\"10.0.0.0/8\"]\n[rate_limits]\nstart_per_ip = 2\nstart_per_identifier = 100\n").await;
    let body = |client: &str, secret: &str, email: &str| json!({"client_id": client, "client_secret": secret, "connection": "email", "email": email, "send": "code"});
    let remaining = |r: &Resp| {
        r.headers["x-ratelimit-remaining"]
            .to_str()
            .unwrap()
            .to_string()
    };
    // A trusted back end names its users' IPs: each user has their own budget.
    for (user_ip, want) in [
        ("198.51.100.1", "1"),
        ("198.51.100.1", "0"),
        ("198.51.100.2", "1"),
    ] {
        let r = h
            .post_from(
                "192.0.2.10",
                "/passwordless/start",
                body("backend", BACKEND_SECRET, "u@example.com"),
                &[("auth0-forwarded-for", user_ip)],
            )
            .await;
        assert_eq!(
            (r.status.as_u16(), remaining(&r)),
            (200, want.to_string()),
            "{user_ip}"
        );
    }
    let r = h
        .post_from(
            "192.0.2.10",
            "/passwordless/start",
            body("backend", BACKEND_SECRET, "u@example.com"),
            &[("auth0-forwarded-for", "198.51.100.1")],
        )
        .await;
    assert_eq!(r.err().1, "too_many_requests");
    // An application that is not trusted, or that failed to authenticate, is counted by its own
    // address whatever it claims.
    for ip in ["203.0.113.1", "203.0.113.2"] {
        let r = h
            .post_from(
                "192.0.2.20",
                "/passwordless/start",
                body("rwa", SECRET, "v@example.com"),
                &[("auth0-forwarded-for", ip)],
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let r = h
        .post_from(
            "192.0.2.20",
            "/passwordless/start",
            body("rwa", SECRET, "v@example.com"),
            &[("auth0-forwarded-for", "203.0.113.3")],
        )
        .await;
    assert_eq!(
        r.err().1,
        "too_many_requests",
        "the forwarded header of an untrusted app is ignored"
    );
    let r = h
        .post_from(
            "192.0.2.30",
            "/passwordless/start",
            body("backend", "wrong-secret", "w@example.com"),
            &[("auth0-forwarded-for", "198.51.100.9")],
        )
        .await;
    assert_eq!(
        (r.err().1, remaining(&r).as_str()),
        ("access_denied", "1"),
        "counted against the caller"
    );
    // X-Forwarded-For is believed from a trusted proxy only.
    let r = h
        .post_from(
            "10.0.0.5",
            "/passwordless/start",
            body("rwa", SECRET, "x@example.com"),
            &[("x-forwarded-for", "198.51.100.50, 10.0.0.7")],
        )
        .await;
    assert_eq!((r.status.as_u16(), remaining(&r).as_str()), (200, "1"));
    let r = h
        .post_from(
            "10.0.0.5",
            "/passwordless/start",
            body("rwa", SECRET, "x@example.com"),
            &[("x-forwarded-for", "198.51.100.50")],
        )
        .await;
    assert_eq!(remaining(&r), "0", "same client behind the proxy");
    let r = h
        .post_from(
            "192.0.2.40",
            "/passwordless/start",
            body("rwa", SECRET, "x@example.com"),
            &[("x-forwarded-for", "198.51.100.60")],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), remaining(&r).as_str()),
        (200, "1"),
        "an untrusted peer is counted by its own address"
    );
    let r = h
        .post_from(
            "192.0.2.40",
            "/passwordless/start",
            body("rwa", SECRET, "x@example.com"),
            &[("x-forwarded-for", "198.51.100.61")],
        )
        .await;
    assert_eq!(
        remaining(&r),
        "0",
        "changing X-Forwarded-For does not help an untrusted peer"
    );
}

async fn token_endpoint_is_rate_limited_per_ip(backend: &str) {
    let h = H::with(backend, "[rate_limits]\ntoken_per_ip = 3\n").await;
    for _ in 0..3 {
        assert_eq!(
            h.otp("x@example.com", "123456", "openid").await.err().1,
            "invalid_grant"
        );
    }
    let r = h.otp("x@example.com", "123456", "openid").await;
    assert_eq!(r.err().0, 429);
    assert_eq!(r.err().1, "too_many_requests");
    assert_eq!(r.headers["x-ratelimit-remaining"], "0");
    h.advance(60);
    assert_eq!(
        h.otp("x@example.com", "123456", "openid").await.err().1,
        "invalid_grant",
        "a new window"
    );
}

/// The sign-in hot paths work from in-memory copies of the application and the connection.
/// A change written by someone else (another node, the CLI: here the store, behind this
/// server's back) applies to the very next request, whether it now refuses what was allowed
/// or allows what was refused; and a refusal made from an out-of-date copy is never the answer.
async fn the_in_memory_configuration_never_answers_out_of_date(h: H) {
    let store = h.st.store.as_ref();
    let rwa = || async { store.get_client("rwa").await.unwrap().unwrap() };
    // Warm the copies up: a sign-in.
    assert_eq!(h.sign_in("warm@example.com", "openid").await.status, 200);

    // The connection disabled for the application: refused at once.
    let mut c = rwa().await;
    let connections = std::mem::take(&mut c.settings.connections);
    assert!(store.update_client(&c, 1).await.unwrap());
    let r = h.start("a@example.com").await;
    assert_eq!(r.err(), (400, "bad.connection", "Connection is disabled"));
    // Refused again, now from a copy that says so (it is confirmed on fresh reads).
    assert_eq!(
        h.start("a@example.com").await.err().2,
        "Connection is disabled"
    );
    // Enabled again behind the server's back: the copy that refuses is not believed.
    c.settings.connections = connections;
    assert!(store.update_client(&c, 2).await.unwrap());
    assert_eq!(h.start("a@example.com").await.status, 200);
    let code = h.last_code("a@example.com").await;

    // The OTP grant taken away, then given back, the same way.
    let grants = std::mem::take(&mut c.settings.grant_types);
    assert!(store.update_client(&c, 3).await.unwrap());
    assert_eq!(
        h.otp("a@example.com", &code, "openid").await.err().1,
        "unauthorized_client"
    );
    assert_eq!(
        h.otp("a@example.com", &code, "openid").await.err().1,
        "unauthorized_client"
    );
    c.settings.grant_types = grants;
    assert!(store.update_client(&c, 4).await.unwrap());
    let r = h.otp("a@example.com", &code, "openid").await;
    assert_eq!(r.status, 200, "{r:?}");

    // A rotated secret: the old one is refused at the next request, the new one accepted.
    let r = h.start("b@example.com").await;
    assert_eq!(r.status, 200);
    let mut c = rwa().await;
    c.secret_hash = Some(tessera_core::crypto::sha256(
        "rotated-secret-rotated-secret-rotated-01",
    ));
    assert!(store.update_client(&c, 5).await.unwrap());
    assert_eq!(h.start("b@example.com").await.err().0, 401);
    let r = h
        .post_json(
            "/passwordless/start",
            serde_json::json!({"client_id": "rwa", "client_secret": "rotated-secret-rotated-secret-rotated-01",
                "connection": "email", "email": "b@example.com", "send": "code"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // A code length changed: the next code has it.
    let mut conn = store.get_connection("email").await.unwrap().unwrap();
    conn.settings.code_length = 8;
    assert!(store.update_connection(&conn, 6).await.unwrap());
    let r = h
        .post_json(
            "/passwordless/start",
            serde_json::json!({"client_id": "rwa", "client_secret": "rotated-secret-rotated-secret-rotated-01",
                "connection": "email", "email": "c@example.com", "send": "code"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(h.last_code("c@example.com").await.len(), 8);
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(H::new("sqlite").await).await } )*
            #[tokio::test] async fn disabled_signup() { super::disabled_signup("sqlite").await }
            #[tokio::test] async fn start_is_rate_limited_per_ip_with_headers() { super::start_is_rate_limited_per_ip_with_headers("sqlite").await }
            #[tokio::test] async fn start_is_rate_limited_per_identifier() { super::start_is_rate_limited_per_identifier("sqlite").await }
            #[tokio::test] async fn token_endpoint_is_rate_limited_per_ip() { super::token_endpoint_is_rate_limited_per_ip("sqlite").await }
            #[tokio::test] async fn forwarded_for_is_believed_only_from_trusted_back_ends_and_proxies() { super::forwarded_for_is_believed_only_from_trusted_back_ends_and_proxies("sqlite").await }
            #[tokio::test] async fn repeated_failures_lock_the_identity_across_codes() { super::repeated_failures_lock_the_identity_across_codes("sqlite").await }
            #[tokio::test] async fn codes_follow_the_configured_length() { super::codes_follow_the_configured_length("sqlite").await }
        }
        mod postgres {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(H::new("postgres").await).await } )*
            #[tokio::test] async fn disabled_signup() { super::disabled_signup("postgres").await }
            #[tokio::test] async fn start_is_rate_limited_per_ip_with_headers() { super::start_is_rate_limited_per_ip_with_headers("postgres").await }
            #[tokio::test] async fn start_is_rate_limited_per_identifier() { super::start_is_rate_limited_per_identifier("postgres").await }
            #[tokio::test] async fn token_endpoint_is_rate_limited_per_ip() { super::token_endpoint_is_rate_limited_per_ip("postgres").await }
            #[tokio::test] async fn forwarded_for_is_believed_only_from_trusted_back_ends_and_proxies() { super::forwarded_for_is_believed_only_from_trusted_back_ends_and_proxies("postgres").await }
            #[tokio::test] async fn repeated_failures_lock_the_identity_across_codes() { super::repeated_failures_lock_the_identity_across_codes("postgres").await }
            #[tokio::test] async fn codes_follow_the_configured_length() { super::codes_follow_the_configured_length("postgres").await }
        }
    };
}

both_backends!(
    the_in_memory_configuration_never_answers_out_of_date,
    a_message_whose_code_expired_is_dropped_not_sent,
    refresh_sessions_have_an_absolute_lifetime,
    a_key_rotated_on_another_node_is_accepted_at_once,
    start_answers_like_auth0_and_queues_one_code,
    start_accepts_form_bodies_and_json_labelled_text_plain,
    start_refuses_bad_input_in_auth0_shape_and_changes_nothing,
    otp_grant_issues_tokens_that_verify_through_jwks,
    discovery_and_jwks_are_public,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
    refresh_tokens_need_offline_access_and_permission,
    wrong_codes_burn_the_code_after_three_attempts,
    codes_expire_are_single_use_and_only_the_newest_works,
    failures_on_one_identity_never_touch_another,
    a_code_is_bound_to_the_application_that_asked_for_it,
    token_endpoint_refuses_bad_input_in_auth0_shape,
    token_endpoint_accepts_json_and_client_secret_basic,
    an_audience_gives_a_jwt_access_token_that_userinfo_verifies,
    userinfo_refuses_missing_unknown_and_expired_tokens,
    email_case_and_spacing_map_to_one_user,
    blocked_users_get_no_code_and_no_tokens,
);

/// Reads one HTTP/1.1 answer from `s`: its status, its head (lower-cased) and its body.
async fn read_answer(s: &mut tokio::net::TcpStream) -> (u16, String, Value) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body_at, length) = loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            break (head, end + 4, length);
        }
    };
    while buf.len() < body_at + length {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed inside the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_slice(&buf[body_at..body_at + length]).unwrap_or(Value::Null);
    (status, head, body)
}

async fn get_over_tcp(addr: std::net::SocketAddr, path: &str) -> (u16, String, Value) {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    read_answer(&mut s).await
}

/// `[http]`: a request beyond `max_in_flight` is refused at once, one that takes longer than
/// `request_timeout_secs` (here: a body that never finishes arriving) is given up, both with
/// `503 temporarily_unavailable` and `Retry-After`, and the place each held is free again.
#[tokio::test]
async fn requests_beyond_the_limit_are_shed_and_slow_ones_given_up() {
    use tokio::io::AsyncWriteExt;
    let h = H::with(
        "sqlite",
        "[http]\nmax_in_flight = 1\nrequest_timeout_secs = 1\n",
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = h.app.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let jwks = "/.well-known/jwks.json";
    // One at a time, each gives its place back.
    for _ in 0..3 {
        assert_eq!(get_over_tcp(addr, jwks).await.0, 200);
    }
    // A slow client: the head and a part of the body, then nothing.
    let asked = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /oauth/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"grant_type\":",
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, head, body) = get_over_tcp(addr, jwks).await;
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(head.contains("\r\nretry-after: 1"), "{head}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(
        head.contains("\r\nx-request-id: "),
        "shed answers are observed too: {head}"
    );
    // A busy node is not a dead one: `/health` has places of its own.
    let (status, _, body) = get_over_tcp(addr, "/health").await;
    assert_eq!(status, 200, "{body}");
    let (status, head, body) =
        tokio::time::timeout(std::time::Duration::from_secs(10), read_answer(&mut slow))
            .await
            .expect("the slow request was never given up");
    let waited = asked.elapsed();
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(head.contains("\r\nretry-after: 1"), "{head}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(
        body["error_description"],
        "The request took too long. Please try again shortly."
    );
    assert!(
        waited >= std::time::Duration::from_millis(900)
            && waited < std::time::Duration::from_secs(5),
        "given up after {waited:?}"
    );
    assert_eq!(get_over_tcp(addr, jwks).await.0, 200);
}
