//! SMS one-time codes over HTTP, on SQLite and PostgreSQL, with local servers that play
//! Twilio's Messages API and a custom SMS gateway and check every request the way those
//! services would (path, basic auth or the gateway's HS256 JWT, the body's fields).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token-0123456789";
const SMS_SECRET: &str = "sms-app-secret-sms-app-secret-sms-app-0123";
const PHONE: &str = "+14155552671";
const GW_SECRET: &str = "gateway-jwt-secret-0123456789";

/// What a fake provider received, and how it should answer.
#[derive(Default)]
struct Fake {
    requests: Mutex<Vec<(HeaderMap, String)>>,
    /// Twilio: numbers answered with 400 code 21211; numbers answered 503 (once each).
    invalid: Vec<String>,
    flaky: Mutex<Vec<String>>,
}

impl Fake {
    fn bodies(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

async fn twilio(
    State(f): State<Arc<Fake>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8(body.to_vec()).unwrap();
    f.requests
        .lock()
        .unwrap()
        .push((headers.clone(), text.clone()));
    let err = |status: StatusCode, code: i64, message: &str| {
        (
            status,
            axum::Json(json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status.as_u16()})),
        )
            .into_response()
    };
    // Twilio checks the account in the path against HTTP basic auth.
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"))
    );
    if sid != SID || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&expected) {
        return err(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        return err(StatusCode::BAD_REQUEST, 21601, "Unsupported content type");
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (Some(to), Some(body)) = (get("To"), get("Body")) else {
        return err(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number is required.",
        );
    };
    if get("From").is_none() == get("MessagingServiceSid").is_none() {
        return err(
            StatusCode::BAD_REQUEST,
            21603,
            "A 'From' or 'MessagingServiceSid' parameter is required",
        );
    }
    if body.is_empty() || body.chars().count() > 1600 {
        return err(
            StatusCode::BAD_REQUEST,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        );
    }
    if f.invalid.contains(&to) {
        return err(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    {
        let mut flaky = f.flaky.lock().unwrap();
        if let Some(i) = flaky.iter().position(|n| n == &to) {
            flaky.remove(i);
            return err(
                StatusCode::SERVICE_UNAVAILABLE,
                20500,
                "Service unavailable",
            );
        }
    }
    (
        StatusCode::CREATED,
        axum::Json(json!({"sid": "SM0123", "status": "queued", "to": to, "body": body})),
    )
        .into_response()
}

async fn gateway(State(f): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let text = String::from_utf8(body.to_vec()).unwrap();
    f.requests
        .lock()
        .unwrap()
        .push((headers.clone(), text.clone()));
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&["urn:gateway"]);
    v.sub = Some("tessera".into());
    v.validate_exp = false;
    if decode::<Value>(token, &DecodingKey::from_secret(GW_SECRET.as_bytes()), &v).is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let b: Value = serde_json::from_str(&text).unwrap();
    if b["recipient"].as_str().is_none() || b["body"].as_str().is_none() {
        return StatusCode::BAD_REQUEST.into_response();
    }
    StatusCode::OK.into_response()
}

async fn fake(router: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    format!("http://{addr}")
}

fn app_toml(sms: &str) -> String {
    format!(
        r#"[connections.sms]
from = "+15005550006"
{sms}

[[applications]]
name = "Phone App"
client_id = "phone"
client_secret = "{SMS_SECRET}"
app_type = "regular_web"
callbacks = ["https://phone.example.com/callback"]
connections = ["email", "sms"]
"#
    )
}

async fn with_twilio(backend: &str, fake_state: Arc<Fake>, sms: &str) -> H {
    let base = fake(
        Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(twilio))
            .with_state(fake_state),
    )
    .await;
    let toml = app_toml(&format!(
        "{sms}\n[connections.sms.twilio]\naccount_sid = \"{SID}\"\nauth_token = \"{TOKEN}\"\napi_base = \"{base}\"\n"
    ));
    H::with(backend, &toml).await
}

async fn start_sms(h: &H, phone: &str) -> Resp {
    h.send(
        "POST",
        "/passwordless/start",
        &[("content-type", "application/json"), ("x-request-language", "fr-FR")],
        json!({"client_id": "phone", "client_secret": SMS_SECRET, "connection": "sms", "phone_number": phone}).to_string(),
    )
    .await
}

fn code_in(body: &str) -> String {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_string()
}

async fn sms_sign_in_over_twilio_gives_phone_claims(backend: &str) {
    let f = Arc::new(Fake::default());
    let h = with_twilio(backend, f.clone(), "").await;
    let r = start_sms(&h, PHONE).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["phone_number"], PHONE);
    assert_eq!(r.body["phone_verified"], false);
    assert_eq!(r.body["request_language"], "fr-FR");
    assert!(r.body["_id"].as_str().unwrap().len() >= 24);
    assert!(
        f.bodies().is_empty(),
        "the request never waits on the provider"
    );
    h.worker.run_once().await.unwrap();
    let sent = f.bodies();
    assert_eq!(sent.len(), 1);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(sent[0].as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("To").as_deref(), Some(PHONE));
    assert_eq!(get("From").as_deref(), Some("+15005550006"));
    let body = get("Body").unwrap();
    let code = code_in(&body);
    assert!(
        body.contains("code de vérification"),
        "French, from X-Request-Language: {body}"
    );
    assert!(
        body.ends_with(&format!("\n\n@localhost #{code}")),
        "autofill line: {body}"
    );
    // The OTP grant with realm=sms signs in an sms| user with phone claims.
    let t = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", OTP),
                ("client_id", "phone"),
                ("client_secret", SMS_SECRET),
                ("username", PHONE),
                ("otp", &code),
                ("realm", "sms"),
                ("scope", "openid profile phone"),
            ],
        )
        .await;
    assert_eq!(t.status, 200, "{t:?}");
    let claims = verify_jwt(&h, t.body["id_token"].as_str().unwrap(), "phone").await;
    let sub = claims["sub"].as_str().unwrap();
    assert!(sub.starts_with("sms|") && sub.len() == 28, "{sub}");
    assert_eq!(claims["phone_number"], PHONE);
    assert_eq!(claims["phone_number_verified"], true);
    assert_eq!(claims["name"], PHONE);
    assert!(claims.get("email").is_none());
    // Not a Gravatar hash of the number (an md5 of a phone number is easy to reverse).
    assert_eq!(claims["picture"], tessera_core::user::SMS_PICTURE);
    let me = h.get("/userinfo", t.body["access_token"].as_str()).await;
    assert_eq!(me.body["phone_number"], PHONE);
    assert_eq!(me.body["phone_number_verified"], true);
    // The code is single-use, and an email client cannot use the sms connection it lacks.
    let again = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", OTP),
                ("client_id", "phone"),
                ("client_secret", SMS_SECRET),
                ("username", PHONE),
                ("otp", &code),
                ("realm", "sms"),
            ],
        )
        .await;
    assert_eq!(
        again.err(),
        (
            403,
            "invalid_grant",
            "Wrong phone number or verification code."
        )
    );
    let r = h
        .post_json(
            "/passwordless/start",
            json!({"client_id": "rwa", "client_secret": SECRET, "connection": "sms", "phone_number": PHONE}),
        )
        .await;
    assert_eq!(r.err(), (400, "bad.connection", "Connection is disabled"));
}

async fn bad_numbers_and_countries_are_refused_and_nothing_is_sent(backend: &str) {
    let f = Arc::new(Fake::default());
    let h = with_twilio(backend, f.clone(), "allowed_countries = [1, 44]").await;
    let cases = [
        (json!(null), "Missing required property: phone_number"),
        (
            json!(14155552671u64),
            "error in phone_number - invalid type (expected string)",
        ),
        (
            json!("14155552671"),
            "String does not match pattern: ^\\+[0-9]{1,15}$",
        ),
        (
            json!("+1 415 555 2671"),
            "String does not match pattern: ^\\+[0-9]{1,15}$",
        ),
        (
            json!("+1234567890123456"),
            "String does not match pattern: ^\\+[0-9]{1,15}$",
        ),
        (
            json!("+10000000000"),
            "The phone number is not a valid number for its country",
        ),
        (
            json!("+33612345678"),
            "Sending codes to this country is not allowed",
        ),
    ];
    for (phone, desc) in cases {
        let mut body =
            json!({"client_id": "phone", "client_secret": SMS_SECRET, "connection": "sms"});
        if !phone.is_null() {
            body["phone_number"] = phone.clone();
        }
        let r = h.post_json("/passwordless/start", body).await;
        assert_eq!(r.err(), (400, "bad.phone_number", desc), "{phone}");
    }
    let r = h
        .post_json(
            "/passwordless/start",
            json!({"client_id": "phone", "client_secret": SMS_SECRET, "connection": "sms", "phone_number": PHONE, "send": "link"}),
        )
        .await;
    assert_eq!(r.err().1, "bad.send");
    // UK numbers are allowed.
    assert_eq!(start_sms(&h, "+447911123456").await.status, 200);
    h.worker.run_once().await.unwrap();
    assert_eq!(f.bodies().len(), 1);
}

async fn toll_fraud_limits_and_the_pumping_alarm(backend: &str) {
    let f = Arc::new(Fake::default());
    let h = with_twilio(
        backend,
        f.clone(),
        "per_number_per_hour = 2\nper_prefix_per_hour = 4\nbudget_per_hour = 6\nalarm_min_sent = 3\nalarm_verified_ratio = 0.5",
    )
    .await;
    // Per number.
    assert_eq!(start_sms(&h, "+14155552671").await.status, 200);
    assert_eq!(start_sms(&h, "+14155552671").await.status, 200);
    let r = start_sms(&h, "+14155552671").await;
    assert_eq!(r.err().1, "too_many_requests");
    // Per prefix: +1415555…, a block of numbers (4 an hour; the refused request above did
    // not count against it).
    assert_eq!(start_sms(&h, "+14155552672").await.status, 200);
    assert_eq!(start_sms(&h, "+14155552673").await.status, 200);
    let r = start_sms(&h, "+14155552674").await;
    assert_eq!(r.err().1, "too_many_requests", "the prefix's fifth code");
    // The alarm fired: codes to that prefix, none used.
    let events = h.st.store.list_events(100).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "sms_pumping"), "{events:?}");
    assert!(events.iter().any(|e| e.kind == "limit_sms"));
    // The global budget (6 an hour): other prefixes until it runs out.
    assert_eq!(start_sms(&h, "+447911123456").await.status, 200);
    assert_eq!(start_sms(&h, "+12125550123").await.status, 200);
    let r = start_sms(&h, "+12125550124").await;
    assert_eq!(r.err().1, "too_many_requests", "the budget");
    h.worker.run_once().await.unwrap();
    assert_eq!(f.bodies().len(), 6, "refused requests sent nothing");
    h.advance(3600);
    assert_eq!(
        start_sms(&h, "+12125550124").await.status,
        200,
        "a new hour"
    );
}

async fn provider_errors_are_retried_or_given_up_as_they_should(backend: &str) {
    let f = Arc::new(Fake {
        invalid: vec!["+12125550100".into()],
        flaky: Mutex::new(vec!["+12125550199".into()]),
        ..Fake::default()
    });
    let h = with_twilio(backend, f.clone(), "").await;
    assert_eq!(start_sms(&h, "+12125550100").await.status, 200);
    assert_eq!(start_sms(&h, "+12125550199").await.status, 200);
    h.worker.run_once().await.unwrap();
    assert_eq!(f.bodies().len(), 2);
    // Later rounds: the 503 is retried (once the backoff passed); the 21211 never again.
    h.advance(60);
    h.worker.run_once().await.unwrap();
    h.advance(60);
    h.worker.run_once().await.unwrap();
    let bodies = f.bodies();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert_eq!(
        bodies.iter().filter(|b| b.contains("2125550199")).count(),
        2
    );
    assert_eq!(h.st.store.outbox_depth().await.unwrap(), 0);
    let events = h.st.store.list_events(100).await.unwrap();
    let given_up = events
        .iter()
        .find(|e| e.kind == "fn")
        .expect("the permanent failure is recorded");
    assert!(
        given_up.description.contains("(Code: 21211)"),
        "{given_up:?}"
    );
    assert!(!given_up.description.contains(TOKEN));
}

async fn a_custom_gateway_gets_json_a_jwt_and_the_request_info(backend: &str) {
    let f = Arc::new(Fake::default());
    let url = fake(
        Router::new()
            .route("/sms", post(gateway))
            .with_state(f.clone()),
    )
    .await;
    let toml = app_toml(&format!(
        "[connections.sms.gateway]\nurl = \"{url}/sms\"\nforward_req_info = true\njwt_secret = \"{GW_SECRET}\"\njwt_subject = \"tessera\"\njwt_audience = \"urn:gateway\"\n"
    ));
    let h = H::with(backend, &toml).await;
    let r = h
        .post_from(
            "198.51.100.23",
            "/passwordless/start",
            json!({"client_id": "phone", "client_secret": SMS_SECRET, "connection": "sms", "phone_number": PHONE}),
            &[("user-agent", "Phone/1.0")],
        )
        .await;
    assert_eq!(r.status, 200);
    h.worker.run_once().await.unwrap();
    let sent = f.bodies();
    assert_eq!(sent.len(), 1);
    let b: Value = serde_json::from_str(&sent[0]).unwrap();
    assert_eq!(b["recipient"], PHONE);
    assert_eq!(b["sender"], "+15005550006");
    assert_eq!(b["req"]["ip"], "198.51.100.23");
    assert_eq!(b["req"]["user-agent"], "Phone/1.0");
    let code = code_in(b["body"].as_str().unwrap());
    let t = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", OTP),
                ("client_id", "phone"),
                ("client_secret", SMS_SECRET),
                ("username", PHONE),
                ("otp", &code),
                ("realm", "sms"),
                ("scope", "openid phone"),
            ],
        )
        .await;
    assert_eq!(
        t.status, 200,
        "delivered through the gateway, accepted by the JWT check"
    );
}

fn cookies(r: &Resp) -> String {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect::<Vec<_>>()
        .join("; ")
}

fn hidden(page: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = page.find(&needle).unwrap_or_else(|| panic!("no {name}")) + needle.len();
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].to_string()
}

/// The hosted login page offers the phone number when the application has the sms
/// connection, sends the code by SMS, and loads the WebOTP helper on the code page.
async fn hosted_page_signs_in_with_a_phone_number(backend: &str) {
    let f = Arc::new(Fake::default());
    let h = with_twilio(backend, f.clone(), "").await;
    let cb = "https%3A%2F%2Fphone.example.com%2Fcallback";
    let url = format!(
        "/authorize?client_id=phone&response_type=code&redirect_uri={cb}&state=ps&scope=openid%20phone"
    );
    let r = h.send("GET", &url, &[], "").await;
    let page = r.body.as_str().unwrap().to_string();
    assert!(
        page.contains("id=\"phone\"") && page.contains("id=\"email\""),
        "{page}"
    );
    let r2 = h
        .send("GET", &format!("{url}&connection=sms"), &[], "")
        .await;
    let only = r2.body.as_str().unwrap();
    assert!(only.contains("id=\"phone\"") && !only.contains("id=\"email\""));
    let jar = cookies(&r);
    let form_hdr = ("content-type", "application/x-www-form-urlencoded");
    let start = |phone: &str| {
        form(&[
            ("req", &hidden(&page, "req")),
            ("csrf", &hidden(&page, "csrf")),
            ("phone", phone),
            ("send", "sms"),
        ])
    };
    let r = h
        .send(
            "POST",
            "/login/start",
            &[form_hdr, ("cookie", &jar)],
            start("0415 555 2671"),
        )
        .await;
    assert_eq!(r.status, 400, "not international format");
    let r = h
        .send(
            "POST",
            "/login/start",
            &[form_hdr, ("cookie", &jar)],
            // As people type it: spaces, brackets and dashes are fine.
            start("+1 (415) 555-2671"),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let code_page = r.body.as_str().unwrap().to_string();
    assert!(code_page.contains("/static/webotp.js"));
    assert!(code_page.contains("autocomplete=\"one-time-code\""));
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(
        h.send("GET", "/static/webotp.js", &[], "").await.status,
        200
    );
    h.worker.run_once().await.unwrap();
    let sent = f.bodies();
    let form_sent: Vec<(String, String)> = url::form_urlencoded::parse(sent[0].as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let body = &form_sent.iter().find(|(k, _)| k == "Body").unwrap().1;
    let code = code_in(body);
    let verify = form(&[
        ("req", &hidden(&code_page, "req")),
        ("csrf", &hidden(&code_page, "csrf")),
        ("connection", "sms"),
        ("phone", PHONE),
        ("code", &code),
    ]);
    let r = h
        .send(
            "POST",
            "/login/verify",
            &[form_hdr, ("cookie", &jar)],
            verify,
        )
        .await;
    assert_eq!(r.status, 302, "{r:?}");
    let loc = r.headers["location"].to_str().unwrap().to_string();
    let q: Vec<(String, String)> =
        url::form_urlencoded::parse(loc.split_once('?').unwrap().1.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let auth_code = &q.iter().find(|(k, _)| k == "code").unwrap().1;
    let t = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "phone"),
                ("client_secret", SMS_SECRET),
                ("code", auth_code),
                ("redirect_uri", "https://phone.example.com/callback"),
            ],
        )
        .await;
    assert_eq!(t.status, 200, "{t:?}");
    let claims = verify_jwt(&h, t.body["id_token"].as_str().unwrap(), "phone").await;
    assert_eq!(claims["phone_number"], PHONE);
}

async fn slow_once(State(f): State<Arc<Fake>>, body: Bytes) -> StatusCode {
    let first = {
        let mut r = f.requests.lock().unwrap();
        r.push((HeaderMap::new(), String::from_utf8(body.to_vec()).unwrap()));
        r.len() == 1
    };
    if first {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
    StatusCode::OK
}

/// A gateway that does not answer in time is retried later; one that refuses the token is not.
async fn gateway_timeouts_are_retried_and_refusals_are_not(backend: &str) {
    let f = Arc::new(Fake::default());
    let url = fake(
        Router::new()
            .route("/slow", post(slow_once))
            .route("/sms", post(gateway))
            .with_state(f.clone()),
    )
    .await;
    let toml = app_toml(&format!(
        "timeout_secs = 1\n[connections.sms.gateway]\nurl = \"{url}/slow\"\n"
    ));
    let h = H::with(backend, &toml).await;
    assert_eq!(start_sms(&h, PHONE).await.status, 200);
    h.worker.run_once().await.unwrap();
    assert_eq!(
        h.st.store.outbox_depth().await.unwrap(),
        1,
        "kept for a retry"
    );
    h.advance(30);
    h.worker.run_once().await.unwrap();
    assert_eq!(f.bodies().len(), 2);
    assert_eq!(
        h.st.store.outbox_depth().await.unwrap(),
        0,
        "delivered on the retry"
    );

    let f = Arc::new(Fake::default());
    let url = fake(
        Router::new()
            .route("/sms", post(gateway))
            .with_state(f.clone()),
    )
    .await;
    let toml = app_toml(&format!(
        "[connections.sms.gateway]\nurl = \"{url}/sms\"\njwt_secret = \"not-the-gateway-secret\"\njwt_subject = \"tessera\"\njwt_audience = \"urn:gateway\"\n"
    ));
    let h = H::with(backend, &toml).await;
    assert_eq!(start_sms(&h, PHONE).await.status, 200);
    h.worker.run_once().await.unwrap();
    h.advance(600);
    h.worker.run_once().await.unwrap();
    assert_eq!(f.bodies().len(), 1, "a refused token is not retried");
    let events = h.st.store.list_events(50).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "fn"
            && e.description
                .contains("Authentication failed while calling the SMS gateway: 401")),
        "{events:?}"
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

/// The SMS provider changed through the Management API applies to the next message, with no
/// restart: from the file's Twilio to a gateway (its JWT secret sealed, never shown), then
/// back to the file's provider.
async fn the_provider_is_changed_through_the_management_api(backend: &str) {
    let twilio_fake = Arc::new(Fake::default());
    let gw_fake = Arc::new(Fake::default());
    let gw = fake(
        Router::new()
            .route("/sms", post(gateway))
            .with_state(gw_fake.clone()),
    )
    .await;
    let h = with_twilio(
        backend,
        twilio_fake.clone(),
        "\n[[applications]]\nname = \"Root\"\nclient_id = \"root\"\nclient_secret = \"root-secret-root-secret-root-secret-root-01\"\napp_type = \"regular_web\"\nmanagement_scopes = [\"read:connections\", \"update:connections\"]\n",
    )
    .await;
    let t = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "root"),
                (
                    "client_secret",
                    "root-secret-root-secret-root-secret-root-01",
                ),
                ("audience", "http://localhost:3000/api/v2/"),
            ],
        )
        .await;
    let auth = format!("Bearer {}", t.body["access_token"].as_str().unwrap());
    let patch = |body: Value| {
        let auth = auth.clone();
        let h = &h;
        async move {
            h.send(
                "PATCH",
                "/api/v2/connections/con_sms",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.to_string(),
            )
            .await
        }
    };
    assert_eq!(start_sms(&h, PHONE).await.status, 200);
    h.worker.run_once().await.unwrap();
    assert_eq!(twilio_fake.bodies().len(), 1, "the file's Twilio");

    let r = patch(
        json!({"options": {"provider": "sms_gateway", "gateway_url": format!("{gw}/sms"),
        "from": "Acme", "gateway_authentication": {"method": "bearer", "subject": "tessera",
        "audience": "urn:gateway", "secret": GW_SECRET}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["options"]["provider"], "sms_gateway");
    assert_eq!(
        r.body["options"]["gateway_authentication"]["subject"],
        "tessera"
    );
    assert!(
        !r.body.to_string().contains(GW_SECRET),
        "secrets are never shown"
    );
    let stored = h.st.store.get_connection("sms").await.unwrap().unwrap();
    assert!(
        !format!(
            "{:?} {}",
            stored.settings,
            serde_json::to_string(&stored.settings).unwrap()
        )
        .contains(GW_SECRET),
        "sealed at rest"
    );
    assert_eq!(start_sms(&h, PHONE).await.status, 200);
    h.worker.run_once().await.unwrap();
    let sent = gw_fake.bodies();
    assert_eq!(sent.len(), 1, "the gateway, at once, with its JWT accepted");
    let b: Value = serde_json::from_str(&sent[0]).unwrap();
    assert_eq!(b["sender"], "Acme");
    assert_eq!(twilio_fake.bodies().len(), 1);

    // Bad provider settings are refused and change nothing.
    for bad in [
        json!({"options": {"provider": "carrier-pigeon"}}),
        json!({"options": {"provider": "twilio", "twilio_sid": "nope", "twilio_token": "x", "from": "+15005550006"}}),
        json!({"options": {"provider": "sms_gateway", "gateway_url": "http://gateway.example.com/sms"}}),
        json!({"options": {"gateway_authentication": {"method": "basic", "secret": "x"}}}),
    ] {
        let r = patch(bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {r:?}");
    }
    let r = patch(json!({"options": {"provider": null}})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["options"].get("provider"), None);
    assert_eq!(start_sms(&h, PHONE).await.status, 200);
    h.worker.run_once().await.unwrap();
    assert_eq!(twilio_fake.bodies().len(), 2, "back to the file's Twilio");
    assert_eq!(gw_fake.bodies().len(), 1);
}

both_backends!(
    sms_sign_in_over_twilio_gives_phone_claims,
    bad_numbers_and_countries_are_refused_and_nothing_is_sent,
    toll_fraud_limits_and_the_pumping_alarm,
    provider_errors_are_retried_or_given_up_as_they_should,
    a_custom_gateway_gets_json_a_jwt_and_the_request_info,
    hosted_page_signs_in_with_a_phone_number,
    gateway_timeouts_are_retried_and_refusals_are_not,
    the_provider_is_changed_through_the_management_api,
);
