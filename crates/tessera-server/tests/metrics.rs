//! Production metrics and request ids: requests, sign-ins by connection and reason, codes sent,
//! outbox delivery, store statement latency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

#[tokio::test]
async fn metrics_count_requests_events_and_the_outbox_and_requests_carry_ids() {
    // As the binary does: every SQL statement timed for /metrics, from the statements' own events.
    {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        tracing_subscriber::registry()
            .with(
                tessera_server::metrics::StoreLatencyLayer
                    .with_filter(tessera_server::metrics::statement_events()),
            )
            .init();
    }
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
        "tessera_events_total{type=\"s\",connection=\"email\"} 1",
        "tessera_events_total{type=\"f\",connection=\"email\"} 1",
        "tessera_events_total{type=\"cls\",connection=\"email\"} 2",
        "tessera_sign_ins_total{connection=\"email\",result=\"success\",reason=\"\"} 1",
        "tessera_sign_ins_total{connection=\"email\",result=\"failure\",reason=\"no code pending\"} 1",
        "tessera_outbox_messages_total{channel=\"email\",outcome=\"delivered\"} 1",
        "tessera_outbox_delivery_seconds_count{channel=\"email\"} 1",
        "tessera_store_statement_duration_seconds_bucket{verb=\"INSERT\",le=\"+Inf\"}",
        "tessera_store_statement_duration_seconds_count{verb=\"SELECT\"}",
        "tessera_outbox_depth 1",
        "tessera_http_request_duration_seconds_count{route=\"/oauth/token\"} 2",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
    // Nothing identifying in the labels.
    assert!(!text.contains("m@example.com"));
}
