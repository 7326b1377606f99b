//! The dashboard's security, in process, on SQLite and PostgreSQL: no session means the hosted
//! login page (PKCE, `prompt=login`); only a configured administrator gets in; the session
//! cookie's attributes; CSRF and same-origin checks on every POST; sign-out, idle and absolute
//! expiry; a blocked user's next sign-in refused; the email preview's sandbox; the dashboard's
//! own application out of reach; and the dashboard off without administrators.
//! The browser test is tests/browser/admin.test.mjs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use serde_json::json;
use tessera_server::admin::{IDLE_SECS, PAGE_CSP, SESSION_LIFETIME_SECS};
use tessera_server::ops::{Actor, DASHBOARD_CLIENT_ID, OpError, Ops};

const ADMIN: &str = "admin@example.com";
const ORIGIN: &str = "http://localhost:3000";

/// A browser: a cookie jar and the pages it was last shown.
struct Browser<'a> {
    h: &'a H,
    jar: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(h: &'a H) -> Self {
        Browser {
            h,
            jar: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, r: &Resp) {
        for v in r.headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_string(), value.to_string());
            }
        }
    }

    async fn get(&mut self, path: &str) -> Resp {
        let cookies = self.cookie_header();
        let r = self
            .h
            .send("GET", path, &[("cookie", cookies.as_str())], "")
            .await;
        self.keep(&r);
        r
    }

    /// A form POST as Chromium sends a dashboard page's: same origin, and `Origin: null`
    /// (Tessera's pages have `Referrer-Policy: no-referrer`).
    async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Resp {
        self.post_with(
            path,
            pairs,
            &[("origin", "null"), ("sec-fetch-site", "same-origin")],
        )
        .await
    }

    async fn post_with(
        &mut self,
        path: &str,
        pairs: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Resp {
        let cookies = self.cookie_header();
        let mut headers = vec![
            ("cookie", cookies.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        headers.extend_from_slice(extra);
        let r = self.h.send("POST", path, &headers, form(pairs)).await;
        self.keep(&r);
        r
    }
}

fn html(r: &Resp) -> String {
    r.body.as_str().unwrap_or_default().to_string()
}

fn location(r: &Resp) -> String {
    r.headers
        .get("location")
        .unwrap_or_else(|| panic!("no Location: {r:?}"))
        .to_str()
        .unwrap()
        .to_string()
}

fn path_of(url: &str) -> String {
    url.strip_prefix(ORIGIN).unwrap_or(url).to_string()
}

fn query_param(url: &str, k: &str) -> Option<String> {
    let q = url.split_once('?').map(|x| x.1).unwrap_or_default();
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.into_owned())
}

/// The value of a hidden field (or any input) named `name`, unescaped.
fn field(page: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&needle)
        .unwrap_or_else(|| panic!("no field {name} in:\n{page}"))
        + needle.len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end]
        .replace("&#x2f;", "/")
        .replace("&#x3d;", "=")
        .replace("&#x2b;", "+")
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
}

fn set_cookie_for(r: &Resp, name: &str) -> String {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no Set-Cookie {name}: {r:?}"))
}

/// `/admin` → the hosted login page → a code by email → `/admin/callback`: its answer.
async fn sign_in_as(b: &mut Browser<'_>, email: &str) -> Resp {
    let r = b.get("/admin/users").await;
    assert_eq!(r.status, 302, "{r:?}");
    let page = b.get(&location(&r)).await;
    assert_eq!(page.status, 200, "{page:?}");
    let p = html(&page);
    let (req, csrf) = (field(&p, "req"), field(&p, "csrf"));
    let r = b
        .post(
            "/login/start",
            &[
                ("req", &req),
                ("csrf", &csrf),
                ("email", email),
                ("send", "code"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let req = field(&html(&r), "req");
    let code = b.h.last_code(email).await;
    let r = b
        .post(
            "/login/verify",
            &[
                ("req", &req),
                ("csrf", &csrf),
                ("connection", "email"),
                ("email", email),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(r.status, 302, "{r:?}");
    let to = location(&r);
    assert!(
        to.starts_with(&format!("{ORIGIN}/admin/callback?code=")),
        "{to}"
    );
    b.get(&path_of(&to)).await
}

/// A signed-in administrator's browser, and its CSRF token.
async fn admin_browser(h: &H) -> (Browser<'_>, String) {
    let mut b = Browser::new(h);
    let r = sign_in_as(&mut b, ADMIN).await;
    assert_eq!(r.status, 200, "{r:?}");
    let page = b.get("/admin/applications").await;
    assert_eq!(page.status, 200, "{page:?}");
    let csrf = field(&html(&page), "csrf");
    (b, csrf)
}

async fn no_session_goes_to_the_hosted_login_page(backend: &str) {
    let h = H::new(backend).await;
    let mut b = Browser::new(&h);
    let r = b.get("/admin/users?q=x").await;
    assert_eq!(r.status, 302);
    let to = location(&r);
    assert!(to.starts_with("/authorize?"), "{to}");
    assert_eq!(
        query_param(&to, "client_id").as_deref(),
        Some(DASHBOARD_CLIENT_ID)
    );
    assert_eq!(
        query_param(&to, "redirect_uri").as_deref(),
        Some("http://localhost:3000/admin/callback")
    );
    assert_eq!(
        query_param(&to, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query_param(&to, "prompt").as_deref(), Some("login"));
    assert_eq!(query_param(&to, "response_type").as_deref(), Some("code"));
    assert!(query_param(&to, "state").unwrap().len() >= 43);
    let c = set_cookie_for(&r, "tessera_admin_login");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"] {
        assert!(c.contains(attr), "{attr} in {c}");
    }
    // A POST without a session changes nothing and starts no sign-in.
    let r = b.post("/admin/users/x/block", &[("csrf", "x")]).await;
    assert_eq!(r.status, 403);
    assert!(r.headers.get("location").is_none());
    // The callback without the sign-in cookie, or with another sign-in's state, is refused.
    let mut other = Browser::new(&h);
    let r = other.get("/admin/callback?code=abc&state=def").await;
    assert_eq!(r.status, 400);
    assert!(html(&r).contains("Sign-in expired"));
    let r = b.get("/admin/callback?code=abc&state=wrong").await;
    assert_eq!(r.status, 400);
    assert!(!b.jar.contains_key("tessera_admin"));
}

async fn an_administrator_gets_in_with_a_strict_session_cookie(backend: &str) {
    let h = H::new(backend).await;
    let mut b = Browser::new(&h);
    let r = sign_in_as(&mut b, ADMIN).await;
    assert_eq!(r.status, 200, "{r:?}");
    let c = set_cookie_for(&r, "tessera_admin");
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        &format!("Max-Age={SESSION_LIFETIME_SECS}"),
    ] {
        assert!(c.contains(attr), "{attr} in {c}");
    }
    assert!(!c.contains("Secure"), "no Secure on an http issuer: {c}");
    // The sign-in cookie is spent; the page moves on to where the browser wanted to go.
    assert!(!b.jar.contains_key("tessera_admin_login"));
    assert!(
        html(&r).contains("url=&#x2f;admin&#x2f;users"),
        "{}",
        html(&r)
    );
    let r = b.get("/admin/users").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-security-policy"], PAGE_CSP);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert!(html(&r).contains(ADMIN));
    // The dashboard's own application is not listed, nor reachable.
    let r = b.get("/admin/applications").await;
    assert!(html(&r).contains("Regular App"));
    assert!(!html(&r).contains(DASHBOARD_CLIENT_ID));
    let r = b
        .get(&format!("/admin/applications/{DASHBOARD_CLIENT_ID}"))
        .await;
    assert_eq!(r.status, 404);
    // The sign-in is in the audit log.
    let events = h.st.store.list_events(50).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "sapi" && e.description == format!("Dashboard ({ADMIN}): signed in")));
}

async fn a_user_who_is_not_an_administrator_is_refused(backend: &str) {
    let h = H::new(backend).await;
    let mut b = Browser::new(&h);
    let r = sign_in_as(&mut b, "mallory@example.com").await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(html(&r).contains("Not an administrator"));
    assert!(!b.jar.contains_key("tessera_admin"));
    // Still signed out of the dashboard (the SSO session of the hosted page does not count).
    let r = b.get("/admin/applications").await;
    assert_eq!(r.status, 302);
    assert!(location(&r).starts_with("/authorize?"));
    let events = h.st.store.list_events(50).await.unwrap();
    let refused = events
        .iter()
        .find(|e| e.kind == "fapi")
        .expect("an fapi event");
    assert_eq!(
        refused.description,
        "Dashboard sign-in refused: not an administrator"
    );
    assert_eq!(refused.client_id.as_deref(), Some(DASHBOARD_CLIENT_ID));
}

async fn every_post_needs_the_csrf_token_and_the_same_origin(backend: &str) {
    let h = H::new(backend).await;
    assert_eq!(h.sign_in("jane@example.com", "openid").await.status, 200);
    let jane = h.st.store.list_users("jane@", 1).await.unwrap().remove(0);
    let (mut b, csrf) = admin_browser(&h).await;
    let block = format!("/admin/users/{}/block", jane.user_id.replace('|', "%7C"));
    let foreign = "a".repeat(64);
    type Pairs<'a> = Vec<(&'a str, &'a str)>;
    let refused: [(&str, Pairs, Pairs); 5] = [
        ("no token", vec![], vec![("origin", ORIGIN)]),
        (
            "a wrong token",
            vec![("csrf", "00")],
            vec![("origin", ORIGIN)],
        ),
        ("another session's token", vec![("csrf", &foreign)], vec![]),
        (
            "another origin",
            vec![("csrf", &csrf)],
            vec![("origin", "https://evil.example")],
        ),
        (
            "another site",
            vec![("csrf", &csrf)],
            vec![("sec-fetch-site", "cross-site")],
        ),
    ];
    for (what, pairs, headers) in refused {
        let r = b.post_with(&block, &pairs, &headers).await;
        assert_eq!(r.status, 403, "{what}: {r:?}");
        assert!(html(&r).contains("Form refused"), "{what}");
        assert!(
            !h.st
                .store
                .get_user(&jane.user_id)
                .await
                .unwrap()
                .unwrap()
                .blocked,
            "{what}"
        );
    }
    // Jane asks for a code; meanwhile the page's own form blocks her.
    assert_eq!(h.start("jane@example.com").await.status, 200);
    let code = h.last_code("jane@example.com").await;
    let r = b.post(&block, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303, "{r:?}");
    assert!(
        h.st.store
            .get_user(&jane.user_id)
            .await
            .unwrap()
            .unwrap()
            .blocked
    );
    let page = b.get(&location(&r)).await;
    assert!(html(&page).contains("id=\"blocked-badge\""));
    // Her sign-in is refused, and a new code is not even sent.
    let r = h.otp("jane@example.com", &code, "openid").await;
    assert_eq!(r.err(), (401, "unauthorized", "user is blocked"));
    let mailed = h.codes_for("jane@example.com").await.len();
    assert_eq!(h.start("jane@example.com").await.status, 200);
    assert_eq!(h.codes_for("jane@example.com").await.len(), mailed);
    let events = h.st.store.list_events(50).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "sapi"
                && e.description == format!("Dashboard ({ADMIN}): user blocked"))
    );
}

async fn sessions_end_at_sign_out_when_idle_and_after_eight_hours(backend: &str) {
    let h = H::new(backend).await;
    // Sign-out deletes the stored session: the old cookie is worth nothing after it.
    let (mut b, csrf) = admin_browser(&h).await;
    let stolen = b.jar["tessera_admin"].clone();
    let r = b.post("/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(location(&r), "/admin/signed-out");
    assert!(set_cookie_for(&r, "tessera_admin").contains("Max-Age=0"));
    b.jar.insert("tessera_admin".into(), stolen);
    let r = b.get("/admin/applications").await;
    assert_eq!(r.status, 302, "a signed-out session's cookie is refused");
    // Idle for more than 30 minutes.
    let (mut b, _) = admin_browser(&h).await;
    h.advance(IDLE_SECS - 60);
    assert_eq!(b.get("/admin/keys").await.status, 200);
    h.advance(IDLE_SECS - 60);
    assert_eq!(
        b.get("/admin/keys").await.status,
        200,
        "each use moves the idle limit"
    );
    h.advance(IDLE_SECS + 1);
    assert_eq!(b.get("/admin/keys").await.status, 302);
    // Busy, but past eight hours.
    let (mut b, _) = admin_browser(&h).await;
    let mut spent = 0;
    while spent + IDLE_SECS - 60 < SESSION_LIFETIME_SECS {
        h.advance(IDLE_SECS - 60);
        spent += IDLE_SECS - 60;
        assert_eq!(b.get("/admin/keys").await.status, 200, "after {spent} s");
    }
    h.advance(SESSION_LIFETIME_SECS - spent);
    assert_eq!(b.get("/admin/keys").await.status, 302);
    // A tampered cookie is no session.
    let (mut b, _) = admin_browser(&h).await;
    let v = b.jar.get_mut("tessera_admin").unwrap();
    v.replace_range(10..11, if &v[10..11] == "A" { "B" } else { "A" });
    assert_eq!(b.get("/admin/keys").await.status, 302);
}

async fn https_cookies_take_the_host_prefix(backend: &str) {
    let h = H::with_env(
        backend,
        "",
        &[("TESSERA_ISSUER", "https://login.example.com/")],
    )
    .await;
    let r = h.get("/admin", None).await;
    assert_eq!(r.status, 302);
    let c = set_cookie_for(&r, "__Host-tessera_admin_login");
    assert!(
        c.contains("; Secure") && c.contains("Path=/") && !c.contains("Domain"),
        "{c}"
    );
    assert_eq!(
        query_param(&location(&r), "redirect_uri").as_deref(),
        Some("https://login.example.com/admin/callback")
    );
}

async fn applications_templates_and_the_dashboard_client(backend: &str) {
    let h = H::new(backend).await;
    let (mut b, csrf) = admin_browser(&h).await;
    // Create: the secret is shown once, and only its digest is stored.
    let r = b
        .post(
            "/admin/applications",
            &[
                ("csrf", &csrf),
                ("name", "Shop <b>"),
                ("app_type", "regular_web"),
                ("callbacks", "https://shop.example.com/cb"),
                ("connection", "email"),
            ],
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let page = html(&r);
    assert!(page.contains("Shop &lt;b&gt;") && !page.contains("Shop <b>"));
    let id = page
        .split("id=\"client-id\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let secret = page
        .split("id=\"client-secret\" class=\"secret\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let stored = h.st.store.get_client(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.secret_hash,
        Some(tessera_core::crypto::sha256(&secret))
    );
    let r = b.get(&format!("/admin/applications/{id}")).await;
    assert!(
        !html(&r).contains(&secret),
        "the secret is never shown again"
    );
    assert!(html(&r).contains("id=\"snippet-callback\""));
    // A bad callback is refused with the form kept.
    let r = b
        .post(
            &format!("/admin/applications/{id}"),
            &[
                ("csrf", &csrf),
                ("name", "Shop"),
                ("callbacks", "not a url"),
                ("grant", "authorization_code"),
                ("connection", "email"),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(html(&r).contains("not a url"));
    // The preview renders the unsaved template in its sandbox, escaped.
    let r = b
        .post(
            "/admin/connections/email/preview",
            &[
                ("csrf", &csrf),
                ("template", "custom"),
                ("subject", "Code {{ code }}"),
                ("body", "<p>Hallo {{ code }}</p><script>alert(1)</script>"),
                ("preview_lang", "de"),
                ("preview_send", "code"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.ends_with("; sandbox")
            && csp.contains("frame-ancestors 'self'")
            && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(r.headers.get("x-frame-options").is_none());
    let p = html(&r);
    assert!(p.contains("Code 123456"));
    assert!(
        p.contains("srcdoc=\"&lt;p&gt;Hallo 123456&lt;&#x2f;p&gt;&lt;script&gt;"),
        "{p}"
    );
    // The built-in template, in French.
    let r = b
        .get("/admin/connections/email/preview?lang=fr&send=code")
        .await;
    assert!(html(&r).contains("123456") && html(&r).contains("lang=\"fr\""));
    // The dashboard's application cannot be changed by any operation.
    let ops = Ops {
        store: h.st.store.as_ref(),
        rng: h.st.rng.as_ref(),
        now: h.st.now(),
        actor: Actor::cli(),
        secret: &h.st.secret,
    };
    let patch = json!({"callbacks": ["https://evil.example/cb"]});
    assert!(matches!(
        ops.update_client(DASHBOARD_CLIENT_ID, patch.as_object().unwrap())
            .await,
        Err(OpError::Invalid(_))
    ));
    assert!(matches!(
        ops.delete_client(DASHBOARD_CLIENT_ID).await,
        Err(OpError::Invalid(_))
    ));
    assert!(matches!(
        ops.rotate_secret(DASHBOARD_CLIENT_ID).await,
        Err(OpError::Invalid(_))
    ));
    let create = json!({"name": "x", "client_id": DASHBOARD_CLIENT_ID});
    assert!(matches!(
        ops.create_client(create.as_object().unwrap()).await,
        Err(OpError::Invalid(_))
    ));
    // Turning the email connection off for every application leaves the dashboard's on.
    let r = b
        .post(
            "/admin/connections/email",
            &[
                ("csrf", &csrf),
                ("code_length", "6"),
                ("code_lifetime", "180"),
                ("max_attempts", "3"),
                ("magic_link_confirmation", "auto"),
                ("template", "builtin"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let dash =
        h.st.store
            .get_client(DASHBOARD_CLIENT_ID)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(dash.settings.connections, ["email"]);
}

async fn the_dashboard_is_off_without_administrators(backend: &str) {
    let db = tessera_store::testdb::TestDb::new(backend).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.toml");
    std::fs::write(
        &path,
        format!(
            "issuer = \"http://localhost:3000/\"\nsecret_key = \"dGVzdC1zZWNyZXQta2V5LXRlc3Qtc2VjcmV0LWtleS10ZXN0LXNlY3JldA==\"\n\
             [email]\nfrom = \"T <t@example.com>\"\nsmtp_url = \"smtp://127.0.0.1:2?tls=none\"\n[database]\nurl = {:?}\n",
            db.url
        ),
    )
    .unwrap();
    let cfg = tessera_server::config::load(Some(&path), &[]).unwrap();
    let settings = tessera_server::Settings::from_config(cfg, false).unwrap();
    assert!(settings.admin_emails.is_empty());
    let clock = Arc::new(TestClock(std::sync::atomic::AtomicI64::new(1_800_000_000)));
    let t = tessera_server::build(&settings, clock, Arc::new(tessera_core::rand::SystemRandom))
        .await
        .unwrap();
    assert!(
        t.state
            .store
            .get_client(DASHBOARD_CLIENT_ID)
            .await
            .unwrap()
            .is_none()
    );
    let app = tessera_server::router(t.state.clone());
    for path in ["/admin", "/admin/users", "/admin/callback?code=a&state=b"] {
        use tower::ServiceExt;
        let req = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        assert!(resp.headers().get("location").is_none());
    }
    // Bad addresses stop the start.
    let cfg = tessera_server::config::load(
        Some(&path),
        &[(
            "TESSERA_ADMIN__EMAILS".into(),
            "[\"not an address\"]".into(),
        )],
    )
    .unwrap();
    let err = tessera_server::Settings::from_config(cfg, false).unwrap_err();
    assert!(err.contains("admin.emails"), "{err}");
}

async fn the_sms_text_is_edited_in_the_dashboard(backend: &str) {
    let h = H::with(backend, "[connections.sms]\nfrom = \"+15005550006\"\n").await;
    let (mut b, csrf) = admin_browser(&h).await;
    let page = b.get("/admin/connections/sms").await;
    assert_eq!(page.status, 200, "{page:?}");
    let text = html(&page);
    assert!(
        text.contains("SMS text") && text.contains("123456 is your verification code"),
        "{text}"
    );
    let save = |body: &'static str, syntax: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("code_length", "6".to_string()),
            ("code_lifetime", "180".to_string()),
            ("max_attempts", "3".to_string()),
            ("sms_template", "custom".to_string()),
            ("sms_syntax", syntax.to_string()),
            ("sms_body", body.to_string()),
        ]
    };
    let pairs = save(
        "Acme: @@password@@ (@@application.name@@)",
        "md_with_macros",
    );
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = b.post("/admin/connections/sms", &refs).await;
    assert_eq!(r.status, 303, "{r:?}");
    let stored = h.st.store.get_connection("sms").await.unwrap().unwrap();
    let t = stored.settings.sms_template.unwrap();
    assert_eq!(
        (t.syntax.as_str(), t.body.as_str()),
        (
            "md_with_macros",
            "Acme: @@password@@ (@@application.name@@)"
        )
    );
    let text = html(&b.get("/admin/connections/sms").await);
    assert!(text.contains("Acme: 123456 (My App)"), "{text}");
    // A broken Liquid text is refused with the reason, and the saved one stays.
    let pairs = save("{{ code ", "liquid");
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = b.post("/admin/connections/sms", &refs).await;
    assert_eq!(r.status, 400, "{r:?}");
    let stored = h.st.store.get_connection("sms").await.unwrap().unwrap();
    assert_eq!(
        stored.settings.sms_template.unwrap().syntax,
        "md_with_macros"
    );
    // Back to the built-in, translated text.
    let r = b
        .post(
            "/admin/connections/sms",
            &[
                ("csrf", &csrf),
                ("code_length", "6"),
                ("code_lifetime", "180"),
                ("max_attempts", "3"),
                ("sms_template", "builtin"),
                ("sms_syntax", "liquid"),
                ("sms_body", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let stored = h.st.store.get_connection("sms").await.unwrap().unwrap();
    assert!(stored.settings.sms_template.is_none());
}

/// A NUL character (which PostgreSQL cannot hold) in an address or a field is bad input.
async fn nul_characters_are_bad_input(backend: &str) {
    let h = H::new(backend).await;
    let (mut b, csrf) = admin_browser(&h).await;
    for path in [
        "/admin/users/email%7C%00",
        "/admin/users?q=%00",
        "/admin/applications/rwa%00",
    ] {
        let r = b.get(path).await;
        assert_eq!(r.status, 400, "{path}: {r:?}");
    }
    let r = b
        .post(
            "/admin/users/email%7Cx/block",
            &[("csrf", &csrf), ("x", "a\u{0}b")],
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

both_backends!(
    no_session_goes_to_the_hosted_login_page,
    an_administrator_gets_in_with_a_strict_session_cookie,
    a_user_who_is_not_an_administrator_is_refused,
    every_post_needs_the_csrf_token_and_the_same_origin,
    sessions_end_at_sign_out_when_idle_and_after_eight_hours,
    https_cookies_take_the_host_prefix,
    applications_templates_and_the_dashboard_client,
    the_dashboard_is_off_without_administrators,
    the_sms_text_is_edited_in_the_dashboard,
    nul_characters_are_bad_input,
);
