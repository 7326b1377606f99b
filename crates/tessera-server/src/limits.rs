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

/// Lets something through at most once a second, and counts what it turned away meanwhile:
/// for a warning that a flood of requests would otherwise repeat for each one, or work (a
/// re-read of the store) that each could otherwise start.
#[derive(Debug, Default)]
pub struct OncePerSecond(std::sync::Mutex<(Option<std::time::Instant>, u64)>);

impl OncePerSecond {
    pub const fn new() -> OncePerSecond {
        OncePerSecond(std::sync::Mutex::new((None, 0)))
    }

    /// `Some(n)` when nothing went through in the last second, `n` being how many calls were
    /// turned away since the last that did; else `None`.
    pub fn due(&self) -> Option<u64> {
        self.due_at(std::time::Instant::now())
    }

    fn due_at(&self, now: std::time::Instant) -> Option<u64> {
        let mut s = match self.0.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let (last, turned_away) = &mut *s;
        if last
            .is_some_and(|t| now.saturating_duration_since(t) < std::time::Duration::from_secs(1))
        {
            *turned_away += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(turned_away))
    }
}

#[cfg(test)]
mod tests {
    use super::OncePerSecond;
    use std::time::{Duration, Instant};

    #[test]
    fn once_per_second_lets_one_through_and_counts_the_rest() {
        let o = OncePerSecond::new();
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        assert_eq!(o.due_at(at(0)), Some(0));
        assert_eq!(o.due_at(at(1)), None);
        assert_eq!(o.due_at(at(999)), None);
        assert_eq!(o.due_at(at(1000)), Some(2));
        assert_eq!(o.due_at(at(1500)), None);
        assert_eq!(o.due_at(at(5000)), Some(1));
        assert_eq!(o.due_at(at(6000)), Some(0));
    }
}
