//! Server-side sessions, kept in memory.
//!
//! The browser holds only a random id in the `rwa_session` cookie (HttpOnly, SameSite=Lax). The
//! session holds the sign-ins under way (state, nonce, PKCE verifier, each usable once) and,
//! after `/callback`, the verified id_token and its claims. Tessera runs on the same host (on
//! another port), and cookies do not care about ports, so the cookie name stays clear of
//! Tessera's own `tessera…` cookies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

use crate::oidc;

pub const COOKIE_NAME: &str = "rwa_session";

/// A session unused for this long is forgotten.
const IDLE_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// A sign-in must come back to `/callback` within this time.
const PENDING_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Sign-ins kept per session (several tabs); the oldest goes first.
const MAX_PENDING: usize = 8;

/// One sign-in under way: what `/callback` must find again.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    /// Set for `/login` (PKCE); Lock and auth0-js pages use no PKCE.
    pub code_verifier: Option<String>,
    pub started: Instant,
}

/// The signed-in user: the id_token as received, and its checked claims.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub id_token: String,
    pub claims: serde_json::Value,
}

#[derive(Debug)]
pub struct Session {
    pub pending: Vec<PendingLogin>,
    pub user: Option<SignedIn>,
    /// When `/callback` last restarted a sign-in for an unknown `state` (see routes::callback).
    pub restarted: Option<Instant>,
    last_seen: Instant,
}

impl Session {
    fn new(now: Instant) -> Self {
        Self {
            pending: Vec::new(),
            user: None,
            restarted: None,
            last_seen: now,
        }
    }

    /// Starts a sign-in: fresh state and nonce, and a PKCE verifier when asked.
    pub fn start_login(&mut self, pkce: bool) -> anyhow::Result<PendingLogin> {
        let login = PendingLogin {
            state: oidc::random_token()?,
            nonce: oidc::random_token()?,
            code_verifier: if pkce {
                Some(oidc::random_token()?)
            } else {
                None
            },
            started: Instant::now(),
        };
        self.pending
            .retain(|p| p.started.elapsed() < PENDING_LIFETIME);
        if self.pending.len() >= MAX_PENDING {
            self.pending.remove(0);
        }
        self.pending.push(login.clone());
        Ok(login)
    }

    /// Takes the sign-in whose state equals `state` (compared in constant time), if any: each
    /// state works once.
    pub fn take_login(&mut self, state: &str) -> Option<PendingLogin> {
        let mut found = None;
        for (i, p) in self.pending.iter().enumerate() {
            if oidc::constant_time_eq(p.state.as_bytes(), state.as_bytes()) {
                found = Some(i);
            }
        }
        let login = self.pending.remove(found?);
        (login.started.elapsed() < PENDING_LIFETIME).then_some(login)
    }
}

/// All sessions, by id.
#[derive(Default)]
pub struct SessionStore {
    sessions: Mutex<HashMap<String, Session>>,
}

impl SessionStore {
    /// Runs `f` on the session named by the request's cookie, if it exists.
    pub fn with_existing<T>(
        &self,
        headers: &HeaderMap,
        f: impl FnOnce(&mut Session) -> T,
    ) -> Option<T> {
        let id = session_id(headers)?;
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let session = map.get_mut(&id)?;
        if session.last_seen.elapsed() > IDLE_LIFETIME {
            map.remove(&id);
            return None;
        }
        session.last_seen = Instant::now();
        Some(f(session))
    }

    /// Runs `f` on the request's session, making a new one when there is none. Returns the
    /// session id when it is new (the caller sets the cookie).
    pub fn with_session<T>(
        &self,
        headers: &HeaderMap,
        f: impl FnOnce(&mut Session) -> anyhow::Result<T>,
    ) -> anyhow::Result<(T, Option<String>)> {
        let now = Instant::now();
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let existing = session_id(headers)
            .filter(|id| matches!(map.get(id), Some(s) if s.last_seen.elapsed() <= IDLE_LIFETIME));
        let (id, new) = match existing {
            Some(id) => (id, None),
            None => {
                map.retain(|_, s| s.last_seen.elapsed() <= IDLE_LIFETIME);
                let id = oidc::random_token()?;
                map.insert(id.clone(), Session::new(now));
                (id.clone(), Some(id))
            }
        };
        let session = map
            .get_mut(&id)
            .ok_or_else(|| anyhow::anyhow!("session vanished"))?;
        session.last_seen = now;
        Ok((f(session)?, new))
    }

    /// Forgets the request's session.
    pub fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = session_id(headers) {
            let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            map.remove(&id);
        }
    }
}

/// The session id from the request's `Cookie` headers.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value for a new session id.
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Lax{secure}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        h
    }

    #[test]
    fn finds_the_session_cookie_among_others() {
        assert_eq!(
            session_id(&headers("a=1; rwa_session=abc; tessera_x=2")).as_deref(),
            Some("abc")
        );
        assert_eq!(session_id(&headers("rwa_sessionx=abc")), None);
        assert_eq!(session_id(&HeaderMap::new()), None);
    }

    #[test]
    fn a_state_works_once() {
        let mut s = Session::new(Instant::now());
        let a = s.start_login(true).unwrap();
        let b = s.start_login(false).unwrap();
        assert!(a.code_verifier.is_some() && b.code_verifier.is_none());
        assert_eq!(s.take_login(&a.state).unwrap().nonce, a.nonce);
        assert!(s.take_login(&a.state).is_none());
        assert!(s.take_login("nope").is_none());
        assert_eq!(s.take_login(&b.state).unwrap().nonce, b.nonce);
    }

    #[test]
    fn keeps_a_bounded_number_of_sign_ins() {
        let mut s = Session::new(Instant::now());
        let first = s.start_login(false).unwrap();
        for _ in 0..MAX_PENDING {
            s.start_login(false).unwrap();
        }
        assert_eq!(s.pending.len(), MAX_PENDING);
        assert!(s.take_login(&first.state).is_none());
    }

    #[test]
    fn sessions_are_made_once_and_found_again() {
        let store = SessionStore::default();
        let ((), id) = store.with_session(&HeaderMap::new(), |_| Ok(())).unwrap();
        let id = id.unwrap();
        let h = headers(&format!("{COOKIE_NAME}={id}"));
        let ((), again) = store.with_session(&h, |_| Ok(())).unwrap();
        assert!(again.is_none());
        assert!(store.with_existing(&h, |_| ()).is_some());
        store.remove(&h);
        assert!(store.with_existing(&h, |_| ()).is_none());
    }
}
