//! Rate limits, counted in the store (fixed windows), so every node sees the same counts.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use tessera_store::WindowCount;

use crate::error::ApiError;
use crate::state::AppState;

/// The state of one limit after a request was counted.
#[derive(Debug, Clone, Copy)]
pub struct RateState {
    pub limit: i64,
    pub count: i64,
    pub resets_at: i64,
}

impl RateState {
    pub fn exceeded(&self) -> bool {
        self.count > self.limit
    }

    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let v =
            |n: i64| HeaderValue::from_str(&n.to_string()).unwrap_or(HeaderValue::from_static("0"));
        vec![
            (HeaderName::from_static("x-ratelimit-limit"), v(self.limit)),
            (
                HeaderName::from_static("x-ratelimit-remaining"),
                v((self.limit - self.count).max(0)),
            ),
            (
                HeaderName::from_static("x-ratelimit-reset"),
                v(self.resets_at),
            ),
        ]
    }

    pub fn apply(&self, resp: &mut Response) {
        for (k, v) in self.headers() {
            resp.headers_mut().insert(k, v);
        }
    }
}

/// Counts a hit on `key`. `None` when the limit is off (0).
pub async fn hit(
    st: &AppState,
    key: &str,
    limit: i64,
    window: i64,
) -> Result<Option<RateState>, ApiError> {
    if limit == 0 {
        return Ok(None);
    }
    let WindowCount { count, resets_at } = st.store.hit_rate_limit(key, window, st.now()).await?;
    Ok(Some(RateState {
        limit,
        count,
        resets_at,
    }))
}

/// Counts a hit on `key` and refuses the request once the limit is passed.
pub async fn enforce(st: &AppState, key: &str, limit: i64, window: i64) -> Result<(), ApiError> {
    match hit(st, key, limit, window).await? {
        Some(s) if s.exceeded() => Err(too_many_requests(&s)),
        _ => Ok(()),
    }
}

/// `429 too_many_requests`, with the limit's headers.
pub fn too_many_requests(state: &RateState) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers.",
    );
    e.headers = state.headers();
    e
}

/// The per-IP limit shared by the browser endpoints (`/co/authenticate`,
/// `/passwordless/verify`): `429 too_many_requests` past it.
pub async fn browser(st: &AppState, meta: &crate::state::RequestMeta) -> Result<(), ApiError> {
    let rl = &st.rate_limits;
    enforce(
        st,
        &format!("browser:ip:{}", meta.ip_key()),
        rl.browser_per_ip,
        rl.browser_per_ip_window_secs,
    )
    .await
}
