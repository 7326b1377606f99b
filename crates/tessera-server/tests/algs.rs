//! Signing algorithms per application: RS256 by default, ES256 or EdDSA when an application
//! asks for it (file or Management API). JWKS publishes every active key; each id_token is
//! verified with an independent JWT library through the JWKS; rotation and the key's first use
//! work per algorithm. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
use serde_json::{Value, json};

const EC_SECRET: &str = "ec-secret-ec-secret-ec-secret-ec-secret-01";
const APPS: &str = r#"
[[applications]]
name = "Elliptic"
client_id = "ec"
client_secret = "ec-secret-ec-secret-ec-secret-ec-secret-01"
app_type = "regular_web"
signing_alg = "ES256"

[[applications]]
name = "Edwards"
client_id = "ed"
client_secret = "ec-secret-ec-secret-ec-secret-ec-secret-01"
app_type = "regular_web"
signing_alg = "EdDSA"

[[applications]]
name = "Root"
client_id = "root"
client_secret = "ec-secret-ec-secret-ec-secret-ec-secret-01"
app_type = "regular_web"
management_scopes = ["update:clients", "read:signing_keys", "create:signing_keys"]
"#;

async fn login(h: &H, client: &str, secret: &str, email: &str) -> String {
    let r = h
        .post_json(
            "/passwordless/start",
            json!({"client_id": client, "client_secret": secret, "connection": "email",
                   "email": email, "send": "code"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let code = h.last_code(email).await;
    let r = h
        .post_form(
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
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["id_token"].as_str().unwrap().to_string()
}

/// Verifies through the JWKS with jsonwebtoken, with the algorithm the caller expects.
async fn verify(h: &H, token: &str, alg: Algorithm, aud: &str) -> Value {
    let header = decode_header(token).unwrap();
    assert_eq!(header.alg, alg);
    let jwks = h.get("/.well-known/jwks.json", None).await;
    let set: JwkSet = serde_json::from_value(jwks.body).unwrap();
    let jwk = set.find(&header.kid.unwrap()).expect("kid published");
    let mut v = Validation::new(alg);
    v.set_audience(&[aud]);
    v.set_issuer(&["http://localhost:3000/"]);
    v.validate_exp = false;
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("valid signature")
        .claims
}

fn jwks_algs(jwks: &Value) -> Vec<String> {
    let mut a: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap().to_string())
        .collect();
    a.sort();
    a
}

async fn per_application_algorithms(backend: &str) {
    let h = H::with(backend, APPS).await;
    // Before any ES256 or EdDSA sign-in, only the RS256 key exists.
    let jwks = h.get("/.well-known/jwks.json", None).await.body;
    assert_eq!(jwks_algs(&jwks), vec!["RS256"]);
    let rs = h.sign_in("rs@example.com", "openid").await.body["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    verify(&h, &rs, Algorithm::RS256, "rwa").await;
    let es = login(&h, "ec", EC_SECRET, "es@example.com").await;
    let claims = verify(&h, &es, Algorithm::ES256, "ec").await;
    assert_eq!(claims["email"], "es@example.com");
    let ed = login(&h, "ed", EC_SECRET, "ed@example.com").await;
    verify(&h, &ed, Algorithm::EdDSA, "ed").await;
    let jwks = h.get("/.well-known/jwks.json", None).await.body;
    assert_eq!(jwks_algs(&jwks), vec!["ES256", "EdDSA", "RS256"]);
    let config = h.get("/.well-known/openid-configuration", None).await.body;
    assert_eq!(
        config["id_token_signing_alg_values_supported"],
        json!(["RS256", "ES256", "EdDSA"])
    );

    // Rotation makes a new key for every algorithm in use; tokens of the old ones still verify.
    let t = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "root"),
                ("client_secret", EC_SECRET),
                ("audience", "http://localhost:3000/api/v2/"),
            ],
        )
        .await;
    let at = t.body["access_token"].as_str().unwrap().to_string();
    let auth = format!("Bearer {at}");
    let r = h
        .send(
            "POST",
            "/api/v2/keys/signing/rotate",
            &[("authorization", &auth)],
            String::new(),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["kids"].as_array().unwrap().len(), 3);
    let jwks = h.get("/.well-known/jwks.json", None).await.body;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 6);
    verify(&h, &es, Algorithm::ES256, "ec").await;
    let es2 = login(&h, "ec", EC_SECRET, "es@example.com").await;
    assert_ne!(
        decode_header(&es2).unwrap().kid,
        decode_header(&es).unwrap().kid
    );
    verify(&h, &es2, Algorithm::ES256, "ec").await;

    // The Management API switches an application's algorithm; bad names are refused.
    let r = h
        .send(
            "PATCH",
            "/api/v2/clients/ed",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            json!({"jwt_configuration": {"alg": "RS256"}}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["jwt_configuration"]["alg"], "RS256");
    let rs2 = login(&h, "ed", EC_SECRET, "ed@example.com").await;
    verify(&h, &rs2, Algorithm::RS256, "ed").await;
    let r = h
        .send(
            "PATCH",
            "/api/v2/clients/ed",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            json!({"jwt_configuration": {"alg": "HS256"}}).to_string(),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
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

both_backends!(per_application_algorithms);
