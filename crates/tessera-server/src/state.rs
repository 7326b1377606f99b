//! Shared state for handlers: no globals, everything travels here.

use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use tessera_core::clock::Clock;
use tessera_core::crypto::ServerSecret;
use tessera_core::net::{IpNet, client_ip};
use tessera_core::rand::{Random, ordered_id};
use tessera_delivery::Mailer;
use tessera_store::{Event, Store};
use tokio::sync::Notify;

use crate::config::{ApiConfig, RateLimitConfig, TokenConfig};
use crate::keys::KeyRing;

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub secret: ServerSecret,
    pub keys: KeyRing,
    pub clock: Arc<dyn Clock>,
    pub rng: Arc<dyn Random>,
    /// With the trailing slash, as tokens carry it.
    pub issuer: String,
    pub tokens: TokenConfig,
    pub rate_limits: RateLimitConfig,
    pub trusted_proxies: Vec<IpNet>,
    pub apis: Vec<ApiConfig>,
    pub mailer: Arc<Mailer>,
    pub outbox_wake: Arc<Notify>,
    /// The way to this node's running outbox worker (set when `serve` starts it; in-process
    /// tests that run no worker leave it empty, and every message waits to be claimed).
    pub outbox_handoff: std::sync::OnceLock<tessera_delivery::outbox::Handoff>,
    /// Applications and connections in memory for the sign-in hot paths (`cache.rs`).
    pub config: crate::cache::ConfigCache,
    pub email_from: String,
    /// The `sms` connection's options, when it is configured.
    pub sms: Option<crate::config::SmsOptions>,
    pub tenant: tessera_delivery::templates::Tenant,
    pub dev: bool,
    pub metrics: crate::metrics::Metrics,
    /// Who may sign in to the dashboard (normalised addresses); empty: it is off.
    pub admins: Vec<String>,
    /// Places for requests handled at once (`[http] max_in_flight`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// `GET /health`'s own places, so that a busy node is not reported dead.
    pub health_in_flight: Arc<tokio::sync::Semaphore>,
    /// `[http] request_timeout_secs`.
    pub request_timeout: std::time::Duration,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Inner {
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// A new key for a row written on the sign-in path (a user, a code, an outbox message,
    /// an event): an id that sorts by creation time ([`ordered_id`]).
    pub fn ordered_id(&self) -> String {
        ordered_id(self.clock.now_ms(), self.rng.as_ref())
    }

    pub fn api(&self, identifier: &str) -> Option<&ApiConfig> {
        self.apis.iter().find(|a| a.identifier == identifier)
    }

    /// Verifies a JWT this server signed, for `audience`: RS256 with a published key, this
    /// issuer, not expired (no leeway). A key rotated on another node is picked up first.
    pub async fn verify_jwt(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, tessera_core::jwt::JwtError> {
        use tessera_core::jwt::{self, Expectations};
        if let Some(kid) = jwt::header_kid(token) {
            self.keys
                .knows_or_refresh(&kid, self.store.as_ref(), &self.secret)
                .await;
        }
        let keys = self.keys.get();
        jwt::verify(
            token,
            &keys.verifying,
            &Expectations {
                issuer: &self.issuer,
                audience,
                now: self.now(),
                leeway: 0,
            },
        )
    }

    /// Records an audit event; a failure to record is logged, never fatal to the request.
    pub async fn event(&self, kind: &str, ctx: &RequestMeta, fill: impl FnOnce(&mut Event)) {
        self.record(self.new_event(kind, ctx, fill)).await;
    }

    /// Records an event made with [`AppState::new_event`], as [`AppState::event`] does.
    pub async fn record(&self, e: Event) {
        self.metrics.event(&e.kind, e.connection.as_deref());
        if let Err(err) = self.store.record_event(&e).await {
            tracing::warn!(error = %err, kind = e.kind, "could not record an audit event");
        }
    }

    /// An audit event as [`AppState::event`] records it, for a write that records it itself
    /// (which then counts it in the metrics with `metrics.event`).
    pub fn new_event(&self, kind: &str, ctx: &RequestMeta, fill: impl FnOnce(&mut Event)) -> Event {
        let mut e = Event {
            id: self.ordered_id(),
            at: self.now(),
            kind: kind.to_string(),
            client_id: None,
            connection: None,
            user_id: None,
            ip: ctx.ip_text(),
            user_agent: ctx.user_agent.clone(),
            description: String::new(),
        };
        fill(&mut e);
        e
    }
}

/// Who is asking: the client address (the peer, or what trusted proxies say), the address an
/// application's back end forwards for its user, and the user agent.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<IpAddr>,
    /// The `auth0-forwarded-for` header, when it is an IP address. Believed only for a trusted
    /// confidential application that authenticated in the same request.
    pub forwarded_for: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// `X-Request-Language`, else `Accept-Language`: what email templates see as
    /// `request_language`.
    pub language: Option<String>,
}

impl RequestMeta {
    /// The client address as a rate-limit key part (`unknown` when there is none, as in
    /// in-process tests).
    pub fn ip_key(&self) -> String {
        self.ip_text().unwrap_or_else(|| "unknown".into())
    }

    /// The client address as text, as stored with codes, sessions and events.
    pub fn ip_text(&self) -> Option<String> {
        self.ip.map(tessera_core::net::ip_text)
    }
}

/// A user agent as kept: its first 256 characters. A value of at most 256 bytes has no more and
/// is taken whole (collecting `char`s one by one cost about 800 instructions a request).
fn bounded_user_agent(s: &str) -> String {
    match s.len() {
        0..=256 => s.to_owned(),
        _ => s.chars().take(256).collect(),
    }
}

impl FromRequestParts<AppState> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<crate::tls::PeerAddr>>()
                    .map(|c| c.0.0)
            });
        let ip = peer.map(|p| client_ip(p.ip(), header("x-forwarded-for"), &st.trusted_proxies));
        let forwarded_for = header("auth0-forwarded-for").and_then(|v| v.trim().parse().ok());
        let user_agent = header("user-agent").map(bounded_user_agent);
        let language = header("x-request-language")
            .or_else(|| header("accept-language"))
            .map(|s| {
                s.chars()
                    .filter(|c| c.is_ascii_graphic() || *c == ' ')
                    .take(128)
                    .collect::<String>()
            })
            .filter(|s| !s.trim().is_empty());
        Ok(RequestMeta {
            ip,
            forwarded_for,
            user_agent,
            language,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_kept_to_256_characters() {
        assert_eq!(bounded_user_agent("curl/8.5.0"), "curl/8.5.0");
        let ascii = "a".repeat(300);
        assert_eq!(bounded_user_agent(&ascii), "a".repeat(256));
        // 256 two-byte characters are 512 bytes, kept whole; one more is cut.
        let wide = "é".repeat(257);
        assert_eq!(bounded_user_agent(&wide), "é".repeat(256));
        assert_eq!(bounded_user_agent(&"é".repeat(128)), "é".repeat(128));
    }
}
