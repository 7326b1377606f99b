//! The Management API: client_credentials tokens for granted scopes; users, logs, applications,
//! connections and signing keys, in Auth0's shapes, on both backends.
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

const ROOT_SECRET: &str = "root-secret-root-secret-root-secret-root-01";
const ROOT: &str = r#"
[[applications]]
name = "Root Tool"
client_id = "root"
client_secret = "root-secret-root-secret-root-secret-root-01"
app_type = "regular_web"
management_scopes = ["read:users", "create:users", "update:users", "delete:users", "read:logs",
  "read:clients", "create:clients", "update:clients", "delete:clients", "read:connections",
  "update:connections", "read:signing_keys", "create:signing_keys", "update:signing_keys"]
"#;

/// `/passwordless/start` then the OTP grant, for any application.
async fn otp_login(h: &H, client: &str, secret: &str, email: &str) -> Resp {
    let r = h
        .post_json(
            "/passwordless/start",
            json!({"client_id": client, "client_secret": secret, "connection": "email",
                   "email": email, "send": "code"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let code = h.last_code(email).await;
    h.post_form(
        "/oauth/token",
        &[
            ("grant_type", OTP),
            ("client_id", client),
            ("client_secret", secret),
            ("username", email),
            ("otp", &code),
            ("realm", "email"),
            ("scope", "openid email"),
        ],
    )
    .await
}

async fn clients_connections_users_and_keys(backend: &str) {
    let h = H::with(backend, ROOT).await;
    let at = token(&h, "root", ROOT_SECRET, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    // Applications: create (the secret is shown once), use, update, rotate, delete.
    let r = api(
        &h,
        "POST",
        "/api/v2/clients",
        &at,
        Some(json!({"name": "New App", "app_type": "regular_web",
                    "callbacks": ["https://new.example.com/cb"],
                    "grant_types": [OTP, "authorization_code"]})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.body["client_id"].as_str().unwrap().to_string();
    let secret = r.body["client_secret"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert!(secret.len() >= 32);
    assert_eq!(r.body["connections"], json!(["email"]));
    let stored = h.st.store.get_client(&id).await.unwrap().unwrap();
    assert_ne!(
        stored.secret_hash.as_deref(),
        Some(secret.as_bytes()),
        "stored hashed"
    );
    assert_eq!(
        otp_login(&h, &id, &secret, "new-app@example.com")
            .await
            .status,
        200
    );
    let path = format!("/api/v2/clients/{id}");
    assert_eq!(
        api(&h, "GET", &path, &at, None)
            .await
            .body
            .get("client_secret"),
        None
    );
    let r = api(
        &h,
        "PATCH",
        &path,
        &at,
        Some(json!({"callbacks": ["https://new.example.com/cb2"],
                    "jwt_configuration": {"lifetime_in_seconds": 600}})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["callbacks"], json!(["https://new.example.com/cb2"]));
    let login = otp_login(&h, &id, &secret, "new-app@example.com").await;
    let claims = verify_jwt(&h, login.body["id_token"].as_str().unwrap(), &id).await;
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    // Bad input: the Management API's error, and nothing stored changes.
    for bad in [
        json!({"callbacks": ["javascript:alert(1)"]}),
        json!({"callbacks": "https://x.example.com"}),
        json!({"grant_types": ["password"]}),
        json!({"connections": ["github"]}),
        json!({"colour": "blue"}),
        json!({"app_type": "spa"}),
        json!({"jwt_configuration": {"alg": "HS256"}}),
    ] {
        let r = api(&h, "PATCH", &path, &at, Some(bad.clone())).await;
        assert_eq!(
            (r.status.as_u16(), r.body["errorCode"].as_str()),
            (400, Some("invalid_body")),
            "{bad}: {r:?}"
        );
    }
    assert_eq!(
        h.st.store
            .get_client(&id)
            .await
            .unwrap()
            .unwrap()
            .settings
            .callbacks,
        vec!["https://new.example.com/cb2".to_string()]
    );
    let r = api(
        &h,
        "POST",
        "/api/v2/clients",
        &at,
        Some(json!({"name": "Dup", "client_id": id, "client_secret": "s".repeat(40)})),
    )
    .await;
    assert_eq!(r.status, 409, "{r:?}");
    let r = api(&h, "POST", &format!("{path}/rotate-secret"), &at, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let fresh = r.body["client_secret"].as_str().unwrap().to_string();
    assert_ne!(fresh, secret);
    let old = h
        .post_json(
            "/passwordless/start",
            json!({"client_id": id, "client_secret": secret, "connection": "email",
               "email": "new-app@example.com", "send": "code"}),
        )
        .await;
    assert_eq!(old.status, 401, "the old secret stops working");
    assert_eq!(
        otp_login(&h, &id, &fresh, "new-app@example.com")
            .await
            .status,
        200
    );
    assert_eq!(api(&h, "DELETE", &path, &at, None).await.status, 204);
    let r = api(&h, "GET", &path, &at, None).await;
    assert_eq!(
        (r.status.as_u16(), r.body["errorCode"].as_str()),
        (404, Some("inexistent_client"))
    );
    let spa = api(&h, "POST", "/api/v2/clients", &at,
        Some(json!({"name": "Browser", "app_type": "spa", "callbacks": ["https://spa.example.com/"]}))).await;
    assert_eq!(spa.status, 201, "{spa:?}");
    assert_eq!(spa.body.get("client_secret"), None);
    assert_eq!(spa.body["has_secret"], false);

    // Connections: the email template (checked before it is stored), code length, clients.
    let r = api(&h, "GET", "/api/v2/connections?strategy=email", &at, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body[0]["name"], "email");
    assert!(
        r.body[0]["enabled_clients"]
            .as_array()
            .unwrap()
            .contains(&json!("rwa"))
    );
    let r = api(
        &h,
        "PATCH",
        "/api/v2/connections/con_email",
        &at,
        Some(
            json!({"options": {"email": {"from": "Acme <login@acme.example>",
            "subject": "{{ code }} is your Acme code", "body": "<p>Code: {{ code }}</p>"}}}),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["options"]["email"]["subject"],
        "{{ code }} is your Acme code"
    );
    let r = api(
        &h,
        "PATCH",
        "/api/v2/connections/email",
        &at,
        Some(json!({"options": {"email": {"body": "<p>{{ code </p>"}}})),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = api(
        &h,
        "PATCH",
        "/api/v2/connections/email",
        &at,
        Some(json!({"options": {"totp": {"length": 12}}})),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = api(
        &h,
        "PATCH",
        "/api/v2/connections/email",
        &at,
        Some(json!({"options": {"totp": {"length": 8}}})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(h.start("templated@example.com").await.status, 200);
    h.worker.run_once().await.unwrap();
    let mail =
        h.st.mailer
            .dev_mailbox()
            .unwrap()
            .messages()
            .into_iter()
            .find(|m| m.to == "templated@example.com")
            .unwrap();
    assert!(
        mail.subject.ends_with(" is your Acme code"),
        "{}",
        mail.subject
    );
    assert_eq!(mail.subject.split_whitespace().next().unwrap().len(), 8);
    assert_eq!(
        api(&h, "GET", "/api/v2/connections/nope", &at, None)
            .await
            .status,
        404
    );

    // Users: create (then their sign-in keeps the id), metadata merged, blocked, deleted.
    let r = api(
        &h,
        "POST",
        "/api/v2/users",
        &at,
        Some(json!({"connection": "email", "email": "Made@Example.com",
                    "user_metadata": {"lang": "fr"}, "app_metadata": {"plan": "pro", "seats": 3}})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let uid = r.body["user_id"].as_str().unwrap().to_string();
    assert!(uid.starts_with("email|"));
    assert_eq!(r.body["email"], "made@example.com");
    let r = api(
        &h,
        "POST",
        "/api/v2/users",
        &at,
        Some(json!({"connection": "email", "email": "made@example.com"})),
    )
    .await;
    assert_eq!(r.status, 409, "{r:?}");
    let r = api(
        &h,
        "POST",
        "/api/v2/users",
        &at,
        Some(json!({"connection": "email", "email": "not-an-address"})),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    let login = h.sign_in("made@example.com", "openid").await;
    let claims = verify_jwt(&h, login.body["id_token"].as_str().unwrap(), "rwa").await;
    assert_eq!(claims["sub"], uid);
    let upath = format!("/api/v2/users/{}", uid.replace('|', "%7C"));
    let r = api(
        &h,
        "PATCH",
        &upath,
        &at,
        Some(json!({"app_metadata": {"seats": null, "team": "blue"}})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["app_metadata"],
        json!({"plan": "pro", "team": "blue"})
    );
    assert_eq!(r.body["user_metadata"], json!({"lang": "fr"}));
    assert_eq!(r.body["logins_count"], 1);
    let r = api(&h, "PATCH", &upath, &at, Some(json!({"app_metadata": "x"}))).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        h.st.store
            .get_user(&uid)
            .await
            .unwrap()
            .unwrap()
            .app_metadata["team"],
        "blue"
    );

    // Logs, filtered by user, client, type and time.
    let r = api(
        &h,
        "GET",
        &format!("/api/v2/logs?user_id={}", uid.replace('|', "%7C")),
        &at,
        None,
    )
    .await;
    let kinds: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"s") && kinds.contains(&"sapi"), "{kinds:?}");
    assert!(
        r.body
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["user_id"] == uid.as_str())
    );
    let r = api(
        &h,
        "GET",
        "/api/v2/logs?client_id=root&type=seccft",
        &at,
        None,
    )
    .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1, "{r:?}");
    let later = h.st.now() + 3600;
    let r = api(&h, "GET", &format!("/api/v2/logs?from={later}"), &at, None).await;
    assert_eq!(r.body, json!([]));
    let r = api(&h, "GET", "/api/v2/logs?from=yesterday", &at, None).await;
    assert_eq!(r.status, 400);

    // Signing keys: rotate (both published; old tokens still verify), revoke the old one
    // (gone from the JWKS; its tokens stop working), never the current one.
    let r = api(&h, "GET", "/api/v2/keys/signing", &at, None).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    let first = r.body[0]["kid"].as_str().unwrap().to_string();
    // Each key has a self-signed certificate: in the JWKS (x5c, x5t) and here (cert, SHA-1s).
    let cert = r.body[0]["cert"].as_str().unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----\n"), "{cert}");
    let jwks = h.get("/.well-known/jwks.json", None).await;
    let der = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(jwks.body["keys"][0]["x5c"][0].as_str().unwrap())
            .unwrap()
    };
    let sha1 = tessera_server::keys::sha1(&der);
    assert_eq!(r.body[0]["thumbprint"], hex::encode(&sha1));
    assert_eq!(jwks.body["keys"][0]["x5t"], {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sha1)
    });
    let r = api(
        &h,
        "PUT",
        &format!("/api/v2/keys/signing/{first}/revoke"),
        &at,
        None,
    )
    .await;
    assert_eq!(r.status, 400, "the current key cannot be revoked: {r:?}");
    let r = api(&h, "POST", "/api/v2/keys/signing/rotate", &at, None).await;
    assert_eq!(r.status, 201, "{r:?}");
    let second = r.body["kid"].as_str().unwrap().to_string();
    let jwks = h.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.body["keys"].as_array().unwrap().len(), 2);
    assert_eq!(
        api(&h, "GET", "/api/v2/users", &at, None).await.status,
        200,
        "old token verifies"
    );
    let fresh_at = token(&h, "root", ROOT_SECRET, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api(
        &h,
        "PUT",
        &format!("/api/v2/keys/signing/{first}/revoke"),
        &fresh_at,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let jwks = h.get("/.well-known/jwks.json", None).await;
    let kids: Vec<&str> = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![second.as_str()]);
    assert_eq!(
        api(&h, "GET", "/api/v2/users", &at, None).await.status,
        401,
        "revoked key's token"
    );
    let r = api(&h, "GET", "/api/v2/keys/signing", &fresh_at, None).await;
    let statuses: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["current", "revoked"]);

    // Every write above is an audit event naming the Management API and the caller.
    let r = api(
        &h,
        "GET",
        "/api/v2/logs?type=sapi&per_page=100",
        &fresh_at,
        None,
    )
    .await;
    let descriptions: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["description"].as_str().unwrap())
        .collect();
    for needle in [
        "created",
        "client secret rotated",
        "deleted",
        "connection email updated",
        "user created",
        "metadata updated",
        "signing key rotated",
        "revoked",
    ] {
        assert!(
            descriptions
                .iter()
                .any(|d| d.starts_with("Management API: ") && d.contains(needle)),
            "{needle}: {descriptions:?}"
        );
    }

    // Without the scope: 403 in the Management API's shape.
    let narrow = token(&h, "root", ROOT_SECRET, &[("scope", "read:clients")])
        .await
        .body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api(
        &h,
        "POST",
        "/api/v2/clients",
        &narrow,
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["errorCode"].as_str()),
        (403, Some("insufficient_scope"))
    );
}

/// The sms connection's text is edited like the email's; its provider stays in the file.
async fn sms_connection_text(backend: &str) {
    let extra = format!(
        "{ROOT}\n[connections.sms]\nfrom = \"+15005550006\"\n\n[[applications]]\nname = \"Phone\"\n\
         client_id = \"phone\"\nclient_secret = \"{SECRET}\"\napp_type = \"regular_web\"\n\
         connections = [\"sms\"]\n"
    );
    let h = H::with(backend, &extra).await;
    let at = token(&h, "root", ROOT_SECRET, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api(&h, "PATCH", "/api/v2/connections/con_sms", &at,
        Some(json!({"options": {"template": "Acme: @@password@@ is your code", "syntax": "md_with_macros"}}))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["options"]["syntax"], "md_with_macros");
    assert_eq!(r.body["enabled_clients"], json!(["phone"]));
    for bad in [
        json!({"options": {"template": "{{ code ", "syntax": "liquid"}}),
        json!({"options": {"syntax": "markdown"}}),
        json!({"options": {"twilio_token": "x"}}),
        json!({"options": {"email": {"subject": "x", "body": "y"}}}),
    ] {
        let r = api(
            &h,
            "PATCH",
            "/api/v2/connections/sms",
            &at,
            Some(bad.clone()),
        )
        .await;
        assert_eq!(r.status, 400, "{bad}: {r:?}");
    }
    let r = h
        .post_json(
            "/passwordless/start",
            json!({"client_id": "phone", "client_secret": SECRET, "connection": "sms",
               "phone_number": "+14155552671"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    h.worker.run_once().await.unwrap();
    let sms =
        h.st.mailer
            .dev_mailbox()
            .unwrap()
            .messages()
            .into_iter()
            .find(|m| m.to == "+14155552671")
            .expect("the SMS in the dev mailbox");
    assert!(
        sms.text.starts_with("Acme: ") && sms.text.contains(" is your code"),
        "{}",
        sms.text
    );
    let r = api(
        &h,
        "PATCH",
        "/api/v2/connections/sms",
        &at,
        Some(json!({"options": {"template": null}})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["options"].get("template"), None);
}

/// Auth0's paging (`page`, `per_page`, `include_totals`, which the generated SDKs always send)
/// and log search (`q`, or `search` as the Python SDK names it).
async fn paging_and_log_search(backend: &str) {
    let h = H::with(backend, ROOT).await;
    let at = token(&h, "root", ROOT_SECRET, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for n in 0..3 {
        let body = json!({"connection": "email", "email": format!("paged{n}@example.com")});
        assert_eq!(
            api(&h, "POST", "/api/v2/users", &at, Some(body))
                .await
                .status,
            201
        );
    }
    let page = |q: &str| format!("/api/v2/users?q=paged&{q}");
    let r = api(&h, "GET", &page("per_page=2&page=1"), &at, None).await;
    assert_eq!(
        r.body.as_array().unwrap().len(),
        1,
        "a bare array without totals"
    );
    let last = r.body[0]["email"].clone();
    let r = api(
        &h,
        "GET",
        &page("per_page=2&include_totals=true"),
        &at,
        None,
    )
    .await;
    assert_eq!(
        (
            &r.body["start"],
            &r.body["limit"],
            &r.body["length"],
            &r.body["total"]
        ),
        (&json!(0), &json!(2), &json!(2), &json!(3))
    );
    let mut emails: Vec<&Value> = r.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["email"])
        .collect();
    emails.push(&last);
    emails.sort_by_key(|e| e.as_str());
    assert_eq!(
        emails,
        [
            "paged0@example.com",
            "paged1@example.com",
            "paged2@example.com"
        ],
        "the pages split the results"
    );
    let r = api(&h, "GET", &page("per_page=100&page=10"), &at, None).await;
    assert_eq!(
        (r.status.as_u16(), r.body["errorCode"].as_str()),
        (400, Some("invalid_paging"))
    );
    let r = api(&h, "GET", &page("page=-1"), &at, None).await;
    assert_eq!(r.status, 400);

    let r = api(
        &h,
        "GET",
        "/api/v2/logs?q=type%3Asapi%20AND%20client_id%3A%22root%22&include_totals=true",
        &at,
        None,
    )
    .await;
    assert_eq!(r.body["total"], 3, "{:?}", r.body);
    assert!(
        r.body["logs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] == "sapi")
    );
    let r = api(
        &h,
        "GET",
        "/api/v2/logs?search=type:seccft&per_page=1&page=1",
        &at,
        None,
    )
    .await;
    assert_eq!(r.body, json!([]), "one token issued, so no second page");
    for bad in [
        "application:x",
        "type",
        "type:%22sapi",
        "type:sapi%20type:s",
    ] {
        let r = api(&h, "GET", &format!("/api/v2/logs?q={bad}"), &at, None).await;
        assert_eq!(
            r.body["errorCode"], "invalid_query_string",
            "{bad}: {:?}",
            r.body
        );
    }

    let r = api(&h, "GET", "/api/v2/clients", &at, None).await;
    let every = r.body.as_array().unwrap().len();
    let r = api(
        &h,
        "GET",
        "/api/v2/clients?per_page=1&include_totals=true",
        &at,
        None,
    )
    .await;
    assert_eq!(
        (
            r.body["total"].as_u64(),
            r.body["clients"].as_array().unwrap().len()
        ),
        (Some(every as u64), 1)
    );
    let r = api(
        &h,
        "GET",
        "/api/v2/connections?include_totals=true",
        &at,
        None,
    )
    .await;
    assert_eq!(r.body["connections"][0]["id"], "con_email", "{:?}", r.body);
}

/// A NUL character (which PostgreSQL cannot hold) is bad input, never a server error.
/// `users-by-email` finds exactly that address, whatever its case, never a longer one.
async fn users_by_email_is_exact(backend: &str) {
    let h = H::with(backend, ROOT).await;
    let at = token(&h, "root", ROOT_SECRET, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for e in ["bob@example.com", "jimbob@example.com"] {
        assert_eq!(h.sign_in(e, "openid").await.status, 200);
    }
    let r = api(
        &h,
        "GET",
        "/api/v2/users-by-email?email=Bob%40Example.com",
        &at,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let found: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(found, vec!["bob@example.com"]);
    let r = api(
        &h,
        "GET",
        "/api/v2/users-by-email?email=ob%40example.com",
        &at,
        None,
    )
    .await;
    assert_eq!(r.body, json!([]));
    // Auth0's field query in `q` is an exact match too; other fields are refused.
    let r = api(
        &h,
        "GET",
        "/api/v2/users?q=email%3A%22bob%40example.com%22",
        &at,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let found: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(found, vec!["bob@example.com"]);
    let r = api(&h, "GET", "/api/v2/users?q=bob%40example.com", &at, None).await;
    assert_eq!(
        r.body.as_array().unwrap().len(),
        2,
        "plain text is a substring search"
    );
    let r = api(
        &h,
        "GET",
        "/api/v2/users?q=app_metadata.plan%3Apro",
        &at,
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["errorCode"].as_str()),
        (400, Some("invalid_query_string"))
    );
}

async fn nul_characters_are_bad_input(backend: &str) {
    let h = H::with(backend, ROOT).await;
    let at = token(&h, "root", ROOT_SECRET, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for (method, path, body) in [
        ("GET", "/api/v2/users/email%7C%00", None),
        ("GET", "/api/v2/users?q=a%00b", None),
        ("GET", "/api/v2/clients/rwa%00", None),
        ("DELETE", "/api/v2/users/%00", None),
        (
            "PATCH",
            "/api/v2/clients/rwa",
            Some(json!({"callbacks": ["https://x.example.com/\u{0}"]})),
        ),
        (
            "POST",
            "/api/v2/users",
            Some(json!({"connection": "email", "email": "a\u{0}@example.com"})),
        ),
        (
            "PATCH",
            "/api/v2/connections/email",
            Some(json!({"options": {"email": {"subject": "\u{0}", "body": "x"}}})),
        ),
    ] {
        let r = api(&h, method, path, &at, body).await;
        assert_eq!(r.status, 400, "{method} {path}: {r:?}");
        assert_eq!(r.body["statusCode"], 400);
    }
    assert_eq!(
        h.st.store
            .get_client("rwa")
            .await
            .unwrap()
            .unwrap()
            .settings
            .callbacks,
        vec!["https://app.example.com/callback".to_string()]
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
    users_logs_and_scopes,
    clients_connections_users_and_keys,
    sms_connection_text,
    paging_and_log_search,
    nul_characters_are_bad_input,
    users_by_email_is_exact
);
