//! The Management API's first part: client_credentials tokens for granted scopes, users, logs
//! and applications, in Auth0's shapes, on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};

const ADMIN_SECRET: &str = "admin-secret-admin-secret-admin-secret-0123";
const ADMIN: &str = r#"
[[applications]]
name = "Admin Tool"
client_id = "admin"
client_secret = "admin-secret-admin-secret-admin-secret-0123"
app_type = "regular_web"
management_scopes = ["read:users", "update:users", "read:logs"]
"#;
const MGMT: &str = "http://localhost:3000/api/v2/";

async fn token(h: &H, client: &str, secret: &str, extra: &[(&str, &str)]) -> Resp {
    let mut pairs = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client),
        ("client_secret", secret),
        ("audience", MGMT),
    ];
    pairs.extend_from_slice(extra);
    h.post_form("/oauth/token", &pairs).await
}

async fn api(h: &H, method: &str, path: &str, bearer: &str, body: Option<Value>) -> Resp {
    let auth = format!("Bearer {bearer}");
    let mut headers = vec![("authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    h.send(
        method,
        path,
        &headers,
        body.map(|b| b.to_string()).unwrap_or_default(),
    )
    .await
}

async fn users_logs_and_scopes(backend: &str) {
    let h = H::with(backend, ADMIN).await;
    assert_eq!(h.sign_in("managed@example.com", "openid").await.status, 200);
    // Tokens: only for the granted scopes, only for the Management API audience.
    let t = token(&h, "admin", ADMIN_SECRET, &[]).await;
    assert_eq!(t.status, 200, "{t:?}");
    assert_eq!(t.body["scope"], "read:users update:users read:logs");
    let at = t.body["access_token"].as_str().unwrap().to_string();
    let claims = verify_jwt(&h, &at, MGMT).await;
    assert_eq!(claims["sub"], "admin@clients");
    assert_eq!(claims["gty"], "client-credentials");
    let r = token(&h, "admin", ADMIN_SECRET, &[("scope", "delete:users")]).await;
    assert_eq!(
        r.err(),
        (
            403,
            "access_denied",
            "Client has not been granted scopes: delete:users"
        )
    );
    let r = token(
        &h,
        "admin",
        "wrong-secret-wrong-secret-wrong-secret-00",
        &[],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = token(&h, "rwa", SECRET, &[]).await;
    assert_eq!(
        r.err().1,
        "unauthorized_client",
        "no client_credentials grant"
    );
    let narrow = token(&h, "admin", ADMIN_SECRET, &[("scope", "read:logs")]).await;
    let narrow = narrow.body["access_token"].as_str().unwrap().to_string();

    // Users: list and search, get, block (then the user's refresh fails), not delete.
    let r = api(&h, "GET", "/api/v2/users?q=MANAGED", &at, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let users = r.body.as_array().unwrap();
    assert_eq!(users.len(), 1);
    let id = users[0]["user_id"].as_str().unwrap().to_string();
    assert_eq!(users[0]["email"], "managed@example.com");
    assert_eq!(users[0]["identities"][0]["provider"], "email");
    let path = format!("/api/v2/users/{}", id.replace('|', "%7C"));
    assert_eq!(api(&h, "GET", &path, &at, None).await.body["user_id"], id);
    let r = api(&h, "PATCH", &path, &at, Some(json!({"blocked": true}))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["blocked"], true);
    assert!(h.st.store.get_user(&id).await.unwrap().unwrap().blocked);
    let r = api(&h, "PATCH", &path, &at, Some(json!({"email": "x@y.z"}))).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errorCode"], "invalid_body");
    assert_eq!(r.body["statusCode"], 400);
    let r = api(&h, "DELETE", &path, &at, None).await;
    assert_eq!(
        (r.status.as_u16(), r.body["errorCode"].as_str().unwrap()),
        (403, "insufficient_scope")
    );
    let r = api(&h, "GET", "/api/v2/users/email%7Cnobody", &at, None).await;
    assert_eq!(r.body["errorCode"], "inexistent_user");
    // A token narrowed to read:logs cannot read users; logs show the block.
    let r = api(&h, "GET", "/api/v2/users", &narrow, None).await;
    assert_eq!(r.status, 403);
    let r = api(&h, "GET", "/api/v2/logs?type=sapi", &narrow, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body[0]["description"], "Management API: user blocked");
    assert_eq!(r.body[0]["client_id"], "admin");
    // No token, a forged one, or an id_token: 401.
    assert_eq!(h.get("/api/v2/users", None).await.status, 401);
    let mut forged = at.clone();
    forged.pop();
    forged.push(if at.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        api(&h, "GET", "/api/v2/users", &forged, None).await.status,
        401
    );
    let login = h.sign_in("other@example.com", "openid").await;
    let id_token = login.body["id_token"].as_str().unwrap();
    assert_eq!(
        api(&h, "GET", "/api/v2/users", id_token, None).await.status,
        401
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

both_backends!(users_logs_and_scopes);
