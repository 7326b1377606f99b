//! The old widgets' wire (docs: ../shared/docs/legacy-wire.md): Lock Passwordless v2 and
//! auth0.js v7 send form bodies, call /passwordless/verify without a client_id, use /oauth/ro
//! and /tokeninfo without a callback URL, and JSONP with forceJSONP. All of it only for
//! applications with `legacy_passwordless`; the same code rules as everywhere else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

const SEED: &str = "https://seed.example.com";
const CB: &str = "https://seed.example.com/callback";

const LEGACY_APP: &str = r#"
[[applications]]
name = "Seed App"
client_id = "legacy"
client_secret = "legacy-secret-legacy-secret-legacy-secret-0"
app_type = "regular_web"
callbacks = ["https://seed.example.com/callback"]
web_origins = ["https://seed.example.com"]
allow_browser_start = true
legacy_passwordless = true
"#;

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn form_from_seed(h: &H, path: &str, body: &str) -> Resp {
    h.send(
        "POST",
        path,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", SEED),
            (
                "auth0-client",
                "eyJuYW1lIjoiYXV0aDAuanMiLCJ2ZXJzaW9uIjoiNy42LjEifQ",
            ),
        ],
        body.to_string(),
    )
    .await
}

/// The JSONP answer's object.
fn jsonp_object(r: &Resp, cb: &str) -> Value {
    let js = r.body.as_str().unwrap();
    let prefix = format!("/**/ typeof {cb} === 'function' && {cb}(");
    assert!(js.starts_with(&prefix), "{js}");
    serde_json::from_str(js[prefix.len()..].trim_end_matches(");")).unwrap()
}

async fn lock_v2_and_auth0_js_v7_with_a_callback_url(backend: &str) {
    let h = H::with(backend, LEGACY_APP).await;
    // Start: a form body, no secret, from the app's page; the email as typed.
    let r = form_from_seed(
        &h,
        "/passwordless/start",
        "client_id=legacy&email=User%40Example.com&connection=email&send=code",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.headers["access-control-allow-origin"], SEED);
    let code = h.last_code("user@example.com").await;
    // Verify: no client_id. A wrong code gets Lock v2's error, and counts.
    let r = form_from_seed(
        &h,
        "/passwordless/verify",
        "connection=email&email=User%40Example.com&verification_code=000000",
    )
    .await;
    assert_eq!(
        r.err(),
        (
            401,
            "invalid_user_password",
            "Wrong email or verification code."
        )
    );
    let r = form_from_seed(
        &h,
        "/passwordless/verify",
        &format!("connection=email&email=User%40Example.com&verification_code={code}"),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // Then the navigation, as the widgets build it: it consumes the code.
    let url = format!(
        "/passwordless/verify_redirect?scope=openid&response_type=code&email=User%40Example.com&sso=true&connection=email&verification_code={code}&client_id=legacy&redirect_uri={}&auth0Client=eyJ9",
        enc(CB)
    );
    let r = h.send("GET", &url, &[], "").await;
    assert_eq!(r.status, 302, "{r:?}");
    let loc = r.headers["location"].to_str().unwrap();
    assert!(loc.starts_with(&format!("{CB}?code=")), "{loc}");
    let auth_code = loc
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let t = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "legacy"),
                (
                    "client_secret",
                    "legacy-secret-legacy-secret-legacy-secret-0",
                ),
                ("code", auth_code),
                ("redirect_uri", CB),
            ],
        )
        .await;
    assert_eq!(t.status, 200, "{t:?}");
    verify_jwt(&h, t.body["id_token"].as_str().unwrap(), "legacy").await;
    // The code is gone.
    let r = h.send("GET", &url, &[], "").await;
    assert!(
        r.headers["location"]
            .to_str()
            .unwrap()
            .contains("error=access_denied")
    );
}

async fn without_a_callback_url_oauth_ro_and_tokeninfo(backend: &str) {
    let h = H::with(backend, LEGACY_APP).await;
    form_from_seed(
        &h,
        "/passwordless/start",
        "client_id=legacy&email=ro%40example.com&connection=email&send=code",
    )
    .await;
    let code = h.last_code("ro@example.com").await;
    let ro = |password: &str| {
        format!(
            "scope=openid&response_type=token&sso=false&connection=email&username=ro%40example.com&password={password}&client_id=legacy&grant_type=password"
        )
    };
    let r = form_from_seed(&h, "/oauth/ro", &ro("000000")).await;
    assert_eq!(
        r.err(),
        (
            401,
            "invalid_user_password",
            "Wrong email or verification code."
        )
    );
    let r = form_from_seed(&h, "/oauth/ro", &ro(&code)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["token_type"], "bearer");
    assert!(r.body.get("refresh_token").is_none());
    let id_token = r.body["id_token"].as_str().unwrap().to_string();
    let claims = verify_jwt(&h, &id_token, "legacy").await;
    assert_eq!(
        claims["user_id"], claims["sub"],
        "spares Lock v2 its /tokeninfo call"
    );
    assert!(claims.get("nonce").is_none());
    // Single use.
    let r = form_from_seed(&h, "/oauth/ro", &ro(&code)).await;
    assert_eq!(r.err().1, "invalid_user_password");
    // /tokeninfo gives the profile for a genuine id_token only.
    let r = form_from_seed(&h, "/tokeninfo", &format!("id_token={id_token}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["user_id"], claims["sub"]);
    assert_eq!(r.body["email"], "ro@example.com");
    assert_eq!(r.body["identities"][0]["provider"], "email");
    let mut forged = id_token.clone();
    forged.pop();
    forged.push(if id_token.ends_with('A') { 'B' } else { 'A' });
    let r = form_from_seed(&h, "/tokeninfo", &format!("id_token={forged}")).await;
    assert_eq!(r.status, 401);
}

async fn jsonp_variants_answer_in_a_callback(backend: &str) {
    let h = H::with(backend, LEGACY_APP).await;
    let r = h
        .send("GET", "/passwordless/start?client_id=legacy&email=jp%40example.com&connection=email&&send=code&auth0Client=eyJ9&cbx=__auth0jp0", &[], "")
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let o = jsonp_object(&r, "__auth0jp0");
    assert_eq!(o["status"], 200, "{o}");
    assert_eq!(o["email"], "jp@example.com");
    let code = h.last_code("jp@example.com").await;
    let r = h
        .send("GET", &format!("/passwordless/verify?connection=email&email=jp%40example.com&verification_code={code}&cbx=__auth0jp1"), &[], "")
        .await;
    assert_eq!(jsonp_object(&r, "__auth0jp1")["status"], 200);
    let r = h
        .send("GET", &format!("/oauth/ro?scope=openid&response_type=code&sso=false&connection=email&username=jp%40example.com&password={code}&client_id=legacy&grant_type=password&auth0Client=eyJ9&cbx=__auth0jp2"), &[], "")
        .await;
    let o = jsonp_object(&r, "__auth0jp2");
    assert_eq!(o["status"], 200, "{o}");
    assert!(o.get("error").is_none());
    assert!(o["id_token"].as_str().is_some());
    // Lock v2 reads a JSONP /tokeninfo profile from `user`.
    let id_token = o["id_token"].as_str().unwrap().to_string();
    let r = h
        .send(
            "GET",
            &format!("/tokeninfo?id_token={id_token}&cbx=__auth0jp9"),
            &[],
            "",
        )
        .await;
    let info = jsonp_object(&r, "__auth0jp9");
    assert_eq!(info["status"], 200);
    assert_eq!(info["user"]["email"], "jp@example.com");
    // Errors travel inside, with an `error` key.
    let r = h
        .send("GET", "/oauth/ro?connection=email&username=jp%40example.com&password=1&client_id=legacy&grant_type=password&cbx=__auth0jp3", &[], "")
        .await;
    let o = jsonp_object(&r, "__auth0jp3");
    assert_eq!(o["status"], 401);
    assert_eq!(o["error"], "invalid_user_password");
    // The callback must be a plain identifier.
    let r = h
        .send("GET", "/passwordless/start?client_id=legacy&email=x%40example.com&connection=email&cbx=alert(1)", &[], "")
        .await;
    assert_eq!(r.status, 400);
}

async fn applications_without_the_switch_get_auth0s_refusals(backend: &str) {
    let h = H::with(backend, LEGACY_APP).await;
    h.start("modern@example.com").await;
    let code = h.last_code("modern@example.com").await;
    let r = h
        .post_form(
            "/oauth/ro",
            &[
                ("client_id", "rwa"),
                ("connection", "email"),
                ("username", "modern@example.com"),
                ("password", &code),
                ("grant_type", "password"),
            ],
        )
        .await;
    assert_eq!(
        r.err(),
        (
            400,
            "invalid_request",
            "OIDC conformant clients cannot use /oauth/ro"
        )
    );
    // /passwordless/verify without a client_id: only for a legacy application's code.
    let r = h
        .post_form(
            "/passwordless/verify",
            &[
                ("connection", "email"),
                ("email", "modern@example.com"),
                ("verification_code", &code),
            ],
        )
        .await;
    assert_eq!(
        r.err(),
        (
            401,
            "invalid_user_password",
            "Wrong email or verification code."
        ),
        "the same answer as when no code is pending: no probe"
    );
    let r = h
        .send(
            "GET",
            "/passwordless/start?client_id=rwa&email=m%40example.com&connection=email&cbx=cb",
            &[],
            "",
        )
        .await;
    assert_eq!(jsonp_object(&r, "cb")["status"], 400);
    let r = h
        .send(
            "GET",
            &format!("/passwordless/verify?client_id=rwa&connection=email&email=modern%40example.com&verification_code={code}&cbx=cb"),
            &[],
            "",
        )
        .await;
    assert_eq!(
        jsonp_object(&r, "cb")["status"],
        400,
        "JSONP is for legacy applications only"
    );
    // None of that used the code up.
    assert_eq!(
        h.otp("modern@example.com", &code, "openid").await.status,
        200
    );
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name("sqlite").await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name("postgres").await } )*
        }
    };
}

both_backends!(
    lock_v2_and_auth0_js_v7_with_a_callback_url,
    without_a_callback_url_oauth_ro_and_tokeninfo,
    jsonp_variants_answer_in_a_callback,
    applications_without_the_switch_get_auth0s_refusals,
);
