//! Production metrics and request ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

#[tokio::test]
async fn metrics_count_requests_events_and_the_outbox_and_requests_carry_ids() {
    let h = H::new("sqlite").await;
    assert_eq!(h.sign_in("m@example.com", "openid").await.status, 200);
    assert_eq!(h.otp("m@example.com", "000000", "openid").await.status, 403);
    h.start("queued@example.com").await; // not delivered yet: the outbox holds it
    let r = h
        .send("GET", "/health", &[("x-request-id", "abc-123")], "")
        .await;
    assert_eq!(
        r.headers["x-request-id"], "abc-123",
        "a sane caller id is kept"
    );
    let r = h
        .send("GET", "/health", &[("x-request-id", "bad id <script>")], "")
        .await;
    let id = r.headers["x-request-id"].to_str().unwrap();
    assert!(
        id.len() >= 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );

    let resp = tessera_server::app::metrics_router(h.st.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for line in [
        "tessera_http_requests_total{method=\"POST\",route=\"/oauth/token\",status=\"200\"} 1",
        "tessera_http_requests_total{method=\"POST\",route=\"/oauth/token\",status=\"403\"} 1",
        "tessera_http_requests_total{method=\"POST\",route=\"/passwordless/start\",status=\"200\"} 2",
        "tessera_events_total{type=\"s\"} 1",
        "tessera_events_total{type=\"f\"} 1",
        "tessera_events_total{type=\"cls\"} 2",
        "tessera_outbox_depth 1",
        "tessera_http_request_duration_seconds_count{route=\"/oauth/token\"} 2",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
    // Nothing identifying in the labels.
    assert!(!text.contains("m@example.com"));
}
