//! `GET /openapi.json`: the public API's OpenAPI 3 document is served, parses, lists the
//! public endpoints (and none of the Management API, the dev mailbox or the legacy
//! endpoints), names no host, and matches the router: every operation it lists is routed and
//! answers an empty request with a status the document gives for it; the answers of a real
//! sign-in, which generated requests rarely reach, have the documented shapes. Then regression tests
//! for bad input that got axum's plain-text answers instead of Auth0's error shape.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::*;
use serde_json::Value;

const PUBLIC: &[(&str, &[&str])] = &[
    ("/passwordless/start", &["post"]),
    ("/passwordless/verify", &["post"]),
    ("/passwordless/verify_redirect", &["get", "head", "post"]),
    ("/oauth/token", &["post"]),
    ("/co/authenticate", &["post"]),
    ("/authorize", &["get"]),
    ("/userinfo", &["get", "post"]),
    ("/v2/logout", &["get"]),
    ("/oidc/logout", &["get"]),
    ("/.well-known/jwks.json", &["get"]),
    ("/.well-known/openid-configuration", &["get"]),
    ("/health", &["get"]),
    ("/openapi.json", &["get"]),
];

async fn document(h: &H) -> Value {
    let r = h.get("/openapi.json", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.body.is_object(), "not JSON: {:?}", r.body);
    r.body
}

#[tokio::test]
async fn openapi_document_is_served_and_lists_the_public_api() {
    let h = H::new("sqlite").await;
    let doc = document(&h).await;
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3."), "OpenAPI 3.x, not {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    // Relative to the server that serves it: no host is named anywhere.
    let servers = doc["servers"].as_array().unwrap();
    assert!(
        servers.len() == 1 && servers[0]["url"] == "/",
        "{servers:?}"
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in PUBLIC {
        let item = paths.get(*path).unwrap_or_else(|| panic!("{path} missing"));
        for m in *methods {
            assert!(item.get(*m).is_some(), "{m} {path} missing");
        }
    }
    for p in paths.keys() {
        assert!(
            !p.starts_with("/api/v2")
                && !p.starts_with("/_dev")
                && p != "/oauth/ro"
                && p != "/tokeninfo",
            "{p} is not part of the public document"
        );
    }
    // The document names the OTP grant and every other grant /oauth/token takes.
    let grants = doc["components"]["schemas"]["TokenRequest"]["anyOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
            doc["components"]["schemas"][name]["properties"]["grant_type"]["enum"][0]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect::<Vec<_>>();
    assert_eq!(
        grants,
        [
            OTP,
            "authorization_code",
            "refresh_token",
            "client_credentials"
        ]
    );
}

/// Every listed operation is routed (no 405, no fallback 404) and answers an empty request
/// with a status the document lists for it.
#[tokio::test]
async fn openapi_operations_match_the_router() {
    let h = H::new("sqlite").await;
    let doc = document(&h).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let url = path.replace("{file}", "rwa.js");
            let r = h
                .send(
                    &method.to_uppercase(),
                    &url,
                    &[("content-type", "application/x-www-form-urlencoded")],
                    "",
                )
                .await;
            let status = r.status.as_u16().to_string();
            assert!(
                op["responses"].get(&status).is_some(),
                "{method} {path} answered {status}, which the document does not list: {:?}",
                r.body
            );
        }
    }
}

/// The object keys of `v` against a schema of the document: every required one is there, and
/// none is missing from `properties` when `additionalProperties` is false.
fn conforms(doc: &Value, name: &str, v: &Value) {
    let schema = &doc["components"]["schemas"][name];
    let obj = v.as_object().unwrap();
    for r in schema["required"].as_array().unwrap() {
        assert!(
            obj.contains_key(r.as_str().unwrap()),
            "{name}: no {r} in {v}"
        );
    }
    if schema["additionalProperties"] == false {
        for k in obj.keys() {
            assert!(
                schema["properties"].get(k).is_some(),
                "{name}: {k} is not documented"
            );
        }
    }
}

/// The answers generated requests rarely reach (a real sign-in) have the documented shapes.
#[tokio::test]
async fn openapi_shapes_match_a_real_sign_in() {
    let h = H::new("sqlite").await;
    let doc = document(&h).await;
    let r = h.start("shape@example.com").await;
    conforms(&doc, "PasswordlessStartEmailResponse", &r.body);
    let code = h.last_code("shape@example.com").await;
    let t = h
        .otp(
            "shape@example.com",
            &code,
            "openid profile email offline_access",
        )
        .await;
    assert_eq!(t.status, 200, "{t:?}");
    conforms(&doc, "TokenResponse", &t.body);
    assert!(t.body["id_token"].is_string() && t.body["refresh_token"].is_string());
    let u = h.get("/userinfo", t.body["access_token"].as_str()).await;
    assert_eq!(u.status, 200, "{u:?}");
    conforms(&doc, "UserInfo", &u.body);
    let d = h.get("/.well-known/openid-configuration", None).await;
    conforms(&doc, "OpenIdConfiguration", &d.body);
    let k = h.get("/.well-known/jwks.json", None).await;
    conforms(&doc, "Jwks", &k.body);
    let jwk = &k.body["keys"][0];
    let variants = doc["components"]["schemas"]["Jwk"]["oneOf"]
        .as_array()
        .unwrap();
    let variant = variants
        .iter()
        .find(|s| s["properties"]["kty"]["enum"][0] == jwk["kty"])
        .expect("a documented key type");
    for key in jwk.as_object().unwrap().keys() {
        assert!(variant["properties"].get(key).is_some(), "JWK {key}");
    }
}

/// A body over the 64 KiB limit is refused in Auth0's shape (it was axum's plain-text 413),
/// and on the pages a browser posts to, with an error page.
#[tokio::test]
async fn an_oversized_body_is_refused_in_auth0_shape() {
    let h = H::new("sqlite").await;
    let big = format!(r#"{{"client_id":"{}"}}"#, "x".repeat(70 * 1024));
    for path in [
        "/passwordless/start",
        "/passwordless/verify",
        "/oauth/token",
        "/co/authenticate",
    ] {
        let r = h.post(path, "application/json", big.clone(), &[]).await;
        assert_eq!(r.status, 413, "{path}: {r:?}");
        assert_eq!(r.headers["content-type"], "application/json", "{path}");
        assert_eq!(
            r.err(),
            (
                413,
                "invalid_request",
                "The request body is larger than 64 KiB"
            ),
            "{path}"
        );
    }
    for path in [
        "/passwordless/verify_redirect",
        "/login/start",
        "/login/verify",
    ] {
        let r = h
            .post(path, "application/x-www-form-urlencoded", big.clone(), &[])
            .await;
        assert_eq!(r.status, 413, "{path}: {r:?}");
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
    }
}

/// `/client/<name>.js` with a name that is not UTF-8 is an unknown application: `404
/// not_found` in Auth0's shape (it was axum's plain-text 400).
#[tokio::test]
async fn a_client_script_name_that_is_not_utf8_is_not_found() {
    let h = H::new("sqlite").await;
    for path in ["/client/%FF.js", "/client/%C3%28.js", "/client/nobody.js"] {
        let r = h.get(path, None).await;
        assert_eq!(r.err(), (404, "not_found", "Not found"), "{path}: {r:?}");
    }
    assert_eq!(h.get("/client/rwa.js", None).await.status, 200);
}

/// A NUL character in any parameter is refused as malformed input. It reached the database
/// before, where PostgreSQL fails any query that holds one: a `500` for a bad request.
async fn nul_characters_are_refused_as_bad_input(h: H) {
    use base64::Engine as _;
    let json_cases = [
        (
            "/passwordless/start",
            r#"{"client_id":"a\u0000b","connection":"email","email":"x@example.com"}"#,
            "bad.request",
            "client_id",
        ),
        (
            "/passwordless/verify",
            r#"{"client_id":"rwa","connection":"e\u0000","verification_code":"1","email":"x@example.com"}"#,
            "bad.request",
            "connection",
        ),
        (
            "/co/authenticate",
            r#"{"client_id":"a\u0000b","credential_type":"x","username":"u","otp":"1","realm":"email"}"#,
            "invalid_request",
            "client_id",
        ),
        (
            "/oauth/token",
            r#"{"grant_type":"refresh_token","client_id":"rwa","client_secret":"s","refresh_token":"x\u0000"}"#,
            "invalid_request",
            "refresh_token",
        ),
    ];
    for (path, body, code, param) in json_cases {
        let r = h.post(path, "application/json", body, &[]).await;
        let description = format!("Parameter {param} contains a NUL character");
        assert_eq!(r.err(), (400, code, description.as_str()), "{path}: {r:?}");
    }
    let r = h
        .post_form(
            "/oauth/token",
            &[("grant_type", OTP), ("client_id", "a\0b")],
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    // HTTP Basic credentials with a NUL are malformed credentials.
    let basic = base64::engine::general_purpose::STANDARD.encode("a\0b:secret");
    let r = h
        .post(
            "/oauth/token",
            "application/x-www-form-urlencoded",
            "grant_type=refresh_token&refresh_token=x",
            &[("authorization", &format!("Basic {basic}"))],
        )
        .await;
    assert_eq!(r.err(), (401, "access_denied", "Unauthorized"), "{r:?}");
    for path in [
        "/authorize?client_id=a%00b&redirect_uri=x&response_type=code",
        "/passwordless/verify_redirect?client_id=rwa&connection=%00&verification_code=1&email=x",
        "/v2/logout?client_id=a%00b&returnTo=https%3A%2F%2Fapp.example.com%2F",
    ] {
        let r = h.get(path, None).await;
        assert_eq!(r.status, 400, "{path}: {r:?}");
    }
    let r = h.get("/client/a%00b.js", None).await;
    assert_eq!(r.err(), (404, "not_found", "Not found"), "{r:?}");
}

#[tokio::test]
async fn nul_characters_are_refused_as_bad_input_sqlite() {
    nul_characters_are_refused_as_bad_input(H::new("sqlite").await).await
}

#[tokio::test]
async fn nul_characters_are_refused_as_bad_input_postgres() {
    nul_characters_are_refused_as_bad_input(H::new("postgres").await).await
}
