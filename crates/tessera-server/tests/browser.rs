//! Browser sign-in over HTTP, on SQLite and PostgreSQL: magic links (and their scanner
//! protection), `/authorize` with the hosted login page, SSO, the authorization-code grant
//! with PKCE, `/co/authenticate` login tickets, CORS, response modes, Lock's endpoints, logout.
//! The real browser and SDK tests are in `tests/browser/` (Node, Playwright, Chromium).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};
use tessera_core::crypto::sha256;

const CB: &str = "https://app.example.com/callback";
const EMB: &str = "https://embedded.example.com";
const EMB_CB: &str = "https://embedded.example.com/callback";
const EMB_SECRET: &str = "embedded-secret-embedded-secret-embedded-01";

fn location(r: &Resp) -> String {
    r.headers
        .get("location")
        .unwrap_or_else(|| panic!("no Location: {r:?}"))
        .to_str()
        .unwrap()
        .to_string()
}

/// The query (or fragment) parameters of a redirect.
fn params_of(url: &str, sep: char) -> Vec<(String, String)> {
    let q = url.split_once(sep).map(|x| x.1).unwrap_or_default();
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(list: &[(String, String)], k: &str) -> Option<String> {
    list.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

/// `name=value` pairs from every Set-Cookie of a response.
fn cookies(r: &Resp) -> Vec<(String, String)> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| {
            let first = v.to_str().ok()?.split(';').next()?.to_string();
            let (k, v) = first.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

fn cookie_header(list: &[(String, String)]) -> String {
    list.iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn html(r: &Resp) -> String {
    r.body.as_str().map(str::to_string).unwrap_or_default()
}

/// The value of a hidden input in a page.
fn hidden(page: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&needle)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + needle.len();
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].replace("&amp;", "&")
}

fn unescape(v: &str) -> String {
    v.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Every hidden input of a page's form, as a form body.
fn hidden_form(page: &str) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    let mut rest = page;
    while let Some(i) = rest.find("<input type=\"hidden\" name=\"") {
        rest = &rest[i + 27..];
        let name_end = rest.find('"').unwrap();
        let name = unescape(&rest[..name_end]);
        let v = rest.find("value=\"").unwrap() + 7;
        let v_end = rest[v..].find('"').unwrap() + v;
        ser.append_pair(&name, &unescape(&rest[v..v_end]));
        rest = &rest[v_end..];
    }
    ser.finish()
}

/// Opens a link as another browser would (no Tessera cookie: the confirmation page), then
/// presses its button. Returns the answer to the button and the form it posted.
async fn open_and_confirm(h: &H, link: &str) -> (Resp, String, String) {
    let r = h.send("GET", &path_and_query(link), &[], "").await;
    assert_eq!(r.status, 200, "{r:?}");
    let page = html(&r);
    assert!(page.contains("id=\"confirm\""), "{page}");
    let jar = cookie_header(&cookies(&r));
    let body = hidden_form(&page);
    let r = h
        .send(
            "POST",
            "/passwordless/verify_redirect",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &jar),
            ],
            body.clone(),
        )
        .await;
    (r, body, jar)
}

fn path_and_query(url: &str) -> String {
    url.trim_start_matches("http://localhost:3000").to_string()
}

async fn start_link(h: &H, email: &str, auth_params: Value) -> String {
    let r = h
        .post_json(
            "/passwordless/start",
            json!({"client_id": "rwa", "client_secret": SECRET, "connection": "email",
                   "email": email, "send": "link", "authParams": auth_params}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    h.links_for(email).await.pop().expect("a link in the mail")
}

async fn exchange(h: &H, code: &str, extra: &[(&str, &str)]) -> Resp {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("client_id", "rwa"),
        ("client_secret", SECRET),
        ("code", code),
        ("redirect_uri", CB),
    ];
    for (k, v) in extra {
        if let Some(p) = pairs.iter_mut().find(|(n, _)| n == k) {
            p.1 = v;
        } else {
            pairs.push((k, v));
        }
    }
    h.post_form("/oauth/token", &pairs).await
}

async fn magic_link_is_safe_from_scanners_and_signs_in_once(h: H) {
    let link = start_link(
        &h,
        "link@example.com",
        json!({"redirect_uri": CB, "response_type": "code", "state": "st-1",
               "scope": "openid email offline_access", "nonce": "n-1"}),
    )
    .await;
    for k in [
        "verification_code=",
        "client_id=rwa",
        "connection=email",
        "state=st-1",
    ] {
        assert!(link.contains(k), "{link}");
    }
    let path = path_and_query(&link);
    // A scanner: HEAD, then a GET without cookies. Neither signs in or uses the link up.
    let r = h.send("HEAD", &path, &[], "").await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("location").is_none());
    for _ in 0..5 {
        let r = h
            .send("GET", &path, &[("user-agent", "Scanner/1.0")], "")
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let page = html(&r);
        assert!(page.contains("id=\"confirm\""), "{page}");
        assert!(page.contains("Regular App"));
        assert!(cookies(&r).iter().all(|(k, _)| k != "tessera_session"));
    }
    // Another site posting the link's parameters (the site owner's own link, to sign the
    // visitor into the owner's account) is refused: no CSRF token, no cookie.
    let query = link.split_once('?').unwrap().1.to_string();
    let r = h
        .send(
            "POST",
            "/passwordless/verify_redirect",
            &[("content-type", "application/x-www-form-urlencoded")],
            query,
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    // The person clicks the button: the same parameters, POSTed from the page.
    let (r, form_body, form_jar) = open_and_confirm(&h, &link).await;
    assert_eq!(r.status, 302, "{r:?}");
    let loc = location(&r);
    assert!(loc.starts_with(&format!("{CB}?")), "{loc}");
    let p = params_of(&loc, '?');
    assert_eq!(param(&p, "state").as_deref(), Some("st-1"));
    let code = param(&p, "code").unwrap();
    let jar = cookies(&r);
    assert!(
        jar.iter()
            .any(|(k, v)| k == "tessera_session" && !v.is_empty())
    );
    // The link is used up: a second click goes back to the app with an error.
    let r = h
        .send(
            "POST",
            "/passwordless/verify_redirect",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &form_jar),
            ],
            form_body,
        )
        .await;
    let p = params_of(&location(&r), '?');
    assert_eq!(param(&p, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&p, "state").as_deref(), Some("st-1"));

    // The code: bound to the redirect URI; magic links never give refresh tokens.
    let t = exchange(&h, &code, &[]).await;
    assert_eq!(t.status, 200, "{t:?}");
    assert!(t.body.get("refresh_token").is_none(), "{t:?}");
    let claims = verify_jwt(&h, t.body["id_token"].as_str().unwrap(), "rwa").await;
    assert_eq!(claims["email"], "link@example.com");
    assert_eq!(claims["nonce"], "n-1");
    let at = t.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(h.get("/userinfo", Some(&at)).await.status, 200);
    // Replaying the code fails and revokes what it gave.
    let again = exchange(&h, &code, &[]).await;
    assert_eq!(
        again.err(),
        (403, "invalid_grant", "Invalid authorization code")
    );
    assert_eq!(h.get("/userinfo", Some(&at)).await.status, 401);
    // Both are in the audit log, without the code.
    let events = h.st.store.list_events(200).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "seacft"));
    assert!(events.iter().any(|e| e.kind == "fecte"));
    assert!(events.iter().all(|e| !e.description.contains(&code)));

    // The session gives SSO: prompt=none answers at once.
    let sso = format!(
        "/authorize?client_id=rwa&response_type=code&redirect_uri={}&state=s2&prompt=none&scope=openid",
        enc(CB)
    );
    let r = h
        .send("GET", &sso, &[("cookie", &cookie_header(&jar))], "")
        .await;
    let p = params_of(&location(&r), '?');
    assert!(param(&p, "code").is_some(), "{r:?}");
    let r = h.send("GET", &sso, &[], "").await;
    let p = params_of(&location(&r), '?');
    assert_eq!(param(&p, "error").as_deref(), Some("login_required"));
    assert_eq!(param(&p, "state").as_deref(), Some("s2"));
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn a_link_opened_in_the_requesting_browser_or_in_never_mode_goes_straight_through(
    backend: &str,
) {
    let h = H::with(
        backend,
        "[connections.email]\nmagic_link_confirmation = \"never\"\n",
    )
    .await;
    let link = start_link(
        &h,
        "never@example.com",
        json!({"redirect_uri": CB, "state": "z"}),
    )
    .await;
    let r = h.send("GET", &path_and_query(&link), &[], "").await;
    assert_eq!(r.status, 302, "{r:?}");
    assert!(
        params_of(&location(&r), '?')
            .iter()
            .any(|(k, _)| k == "code")
    );

    let h = H::with(
        backend,
        "[connections.email]\nmagic_link_confirmation = \"always\"\n",
    )
    .await;
    let link = start_link(&h, "always@example.com", json!({"redirect_uri": CB})).await;
    let r = h.send("GET", &path_and_query(&link), &[], "").await;
    assert!(html(&r).contains("id=\"confirm\""));
}

async fn wrong_expired_and_foreign_links_fail_without_redirecting_anywhere_else(h: H) {
    let link = start_link(
        &h,
        "bad@example.com",
        json!({"redirect_uri": CB, "state": "q"}),
    )
    .await;
    let path = path_and_query(&link);
    // A look-alike callback: an error page, never a redirect.
    for bad in [
        "https://app.example.com/callback/",
        "https://app.example.com:444/callback",
        "http://app.example.com/callback",
        "https://APP.example.com/callback",
        "https://app.example.com./callback",
        "https://user@app.example.com/callback",
        "https://app.example.com\\@evil.example/callback",
        "https://app.example.com/%63allback",
        "https://app.example.com/callback?x=1",
        "https://evil.example/callback",
    ] {
        let tampered = path.replace(
            &format!("redirect_uri={}", enc(CB)),
            &format!("redirect_uri={}", enc(bad)),
        );
        assert_ne!(tampered, path);
        let r = h.send("GET", &tampered, &[], "").await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.headers.get("location").is_none(), "{bad}");
        assert!(html(&r).contains("Callback URL mismatch"), "{bad}");
    }
    // A wrong code goes back to the app with an error.
    let wrong = path.replace("verification_code=", "verification_code=9");
    let r = h.send("GET", &wrong, &[], "").await;
    let p = params_of(&location(&r), '?');
    assert_eq!(param(&p, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&p, "state").as_deref(), Some("q"));
    // Expired.
    h.advance(181);
    let r = h.send("GET", &path, &[], "").await;
    let p = params_of(&location(&r), '?');
    assert_eq!(param(&p, "error").as_deref(), Some("unauthorized"));
    assert_eq!(
        param(&p, "error_description").as_deref(),
        Some("The verification code has expired. Please try to login again.")
    );
}

async fn authorize_checks_the_client_and_redirect_uri_before_anything(h: H) {
    let r = h
        .send(
            "GET",
            &format!(
                "/authorize?client_id=nope&response_type=code&redirect_uri={}",
                enc(CB)
            ),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.headers.get("location").is_none());
    let r = h
        .send("GET", "/authorize?client_id=rwa&response_type=code&redirect_uri=https%3A%2F%2Fevil.example%2Fcb", &[], "")
        .await;
    assert_eq!(r.status, 400);
    assert!(html(&r).contains("Callback URL mismatch"));
    // With a trusted redirect URI, errors go back with the state.
    let base = format!(
        "/authorize?client_id=rwa&redirect_uri={}&state=abc",
        enc(CB)
    );
    let r = h
        .send("GET", &format!("{base}&response_type=magic"), &[], "")
        .await;
    let p = params_of(&location(&r), '?');
    assert_eq!(
        param(&p, "error").as_deref(),
        Some("unsupported_response_type")
    );
    assert_eq!(param(&p, "state").as_deref(), Some("abc"));
    // Implicit id_token needs a nonce (the error goes in the fragment).
    let r = h
        .send("GET", &format!("{base}&response_type=id_token"), &[], "")
        .await;
    assert!(location(&r).contains("#error=invalid_request"), "{r:?}");
    // A public client must use PKCE.
    let r = h
        .send("GET", "/authorize?client_id=pub&response_type=code&redirect_uri=https%3A%2F%2Fpub.example.com%2Fcb", &[], "")
        .await;
    assert!(location(&r).contains("error=invalid_request"), "{r:?}");
    // web_message answers login_required in HTML that only the app's origin can frame.
    let r = h
        .send("GET", &format!("{base}&response_type=token%20id_token&nonce=n&response_mode=web_message&prompt=none"), &[], "")
        .await;
    assert_eq!(r.status, 200);
    let page = html(&r);
    assert!(page.contains("\"error\":\"login_required\""), "{page}");
    assert!(
        page.contains("var targetOrigin = \"https://app.example.com\""),
        "{page}"
    );
    assert!(page.contains("\"state\":\"abc\""));
    assert!(r.headers.get("x-frame-options").is_none());
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors https://app.example.com"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
}

/// The hosted login page: CSRF, a code, PKCE; then SSO codes for the negative cases.
async fn hosted_page_signs_in_with_a_code_and_pkce(h: H) {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = URL_SAFE_NO_PAD.encode(sha256(verifier));
    let url = format!(
        "/authorize?client_id=rwa&response_type=code&redirect_uri={}&state=hs&nonce=hn&scope=openid%20email%20offline_access&code_challenge={challenge}&code_challenge_method=S256&ui_locales=fr",
        enc(CB)
    );
    let r = h.send("GET", &url, &[], "").await;
    assert_eq!(r.status, 200);
    let page = html(&r);
    assert!(page.contains("Se connecter à"), "translated");
    assert!(page.contains("id=\"send-code\"") && page.contains("id=\"send-link\""));
    let mut jar = cookies(&r);
    let req = hidden(&page, "req");
    let csrf = hidden(&page, "csrf");
    let form_hdr = ("content-type", "application/x-www-form-urlencoded");
    // Without the CSRF cookie (another site posting the form): refused.
    let body = form(&[
        ("req", &req),
        ("csrf", &csrf),
        ("email", "page@example.com"),
        ("send", "code"),
    ]);
    let r = h
        .send("POST", "/login/start", &[form_hdr], body.clone())
        .await;
    assert_eq!(r.status, 403);
    assert!(h.codes_for("page@example.com").await.is_empty());
    // A tampered sealed request: refused.
    let bad = form(&[
        ("req", &format!("{req}x")),
        ("csrf", &csrf),
        ("email", "page@example.com"),
        ("send", "code"),
    ]);
    let r = h
        .send(
            "POST",
            "/login/start",
            &[form_hdr, ("cookie", &cookie_header(&jar))],
            bad,
        )
        .await;
    assert_eq!(r.status, 400);
    // The real thing.
    let r = h
        .send(
            "POST",
            "/login/start",
            &[form_hdr, ("cookie", &cookie_header(&jar))],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let page = html(&r);
    assert!(page.contains("autocomplete=\"one-time-code\""));
    let code = h.last_code("page@example.com").await;
    let verify = |c: &str| {
        form(&[
            ("req", &hidden(&page, "req")),
            ("csrf", &csrf),
            ("email", "page@example.com"),
            ("code", c),
        ])
    };
    let r = h
        .send(
            "POST",
            "/login/verify",
            &[form_hdr, ("cookie", &cookie_header(&jar))],
            verify("000000"),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(html(&r).contains("id=\"error\""));
    let r = h
        .send(
            "POST",
            "/login/verify",
            &[form_hdr, ("cookie", &cookie_header(&jar))],
            verify(&code),
        )
        .await;
    assert_eq!(r.status, 302, "{r:?}");
    jar.extend(cookies(&r));
    let p = params_of(&location(&r), '?');
    assert_eq!(param(&p, "state").as_deref(), Some("hs"));
    let code1 = param(&p, "code").unwrap();
    // The code needs the verifier.
    let t = exchange(&h, &code1, &[("code_verifier", verifier)]).await;
    assert_eq!(t.status, 200, "{t:?}");
    assert!(
        t.body.get("refresh_token").is_some(),
        "a typed code may give a refresh token"
    );
    let claims = verify_jwt(&h, t.body["id_token"].as_str().unwrap(), "rwa").await;
    assert_eq!(claims["nonce"], "hn");

    // SSO hands out more codes: each wrong use fails.
    let c = sso(&h, &url, &cookie_header(&jar)).await;
    let t = exchange(&h, &c, &[("code_verifier", "x".repeat(43).as_str())]).await;
    assert_eq!(
        t.err(),
        (403, "invalid_grant", "Failed to verify code verifier")
    );
    let c = sso(&h, &url, &cookie_header(&jar)).await;
    let t = exchange(&h, &c, &[]).await;
    assert_eq!(
        t.err(),
        (403, "invalid_grant", "Failed to verify code verifier")
    );
    let c = sso(&h, &url, &cookie_header(&jar)).await;
    let t = exchange(
        &h,
        &c,
        &[
            ("code_verifier", verifier),
            ("redirect_uri", "https://app.example.com/other"),
        ],
    )
    .await;
    assert_eq!(t.err().1, "invalid_grant");
    let c = sso(&h, &url, &cookie_header(&jar)).await;
    let t = h
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "embedded"),
                ("client_secret", EMB_SECRET),
                ("code", &c),
                ("redirect_uri", CB),
                ("code_verifier", verifier),
            ],
        )
        .await;
    assert_eq!(
        t.err(),
        (403, "invalid_grant", "Invalid authorization code"),
        "cross-client"
    );
    let c = sso(&h, &url, &cookie_header(&jar)).await;
    h.advance(61);
    let t = exchange(&h, &c, &[("code_verifier", verifier)]).await;
    assert_eq!(
        t.err(),
        (403, "invalid_grant", "Invalid authorization code"),
        "expired"
    );

    // prompt=login shows the page even with a session.
    let r = h
        .send(
            "GET",
            &format!("{url}&prompt=login"),
            &[("cookie", &cookie_header(&jar))],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    // Logout ends the session; returnTo must be allowed.
    let r = h
        .send(
            "GET",
            "/v2/logout?client_id=rwa&returnTo=https%3A%2F%2Fevil.example%2F",
            &[("cookie", &cookie_header(&jar))],
            "",
        )
        .await;
    assert_eq!(r.status, 400);
    let r = h
        .send("GET", "/v2/logout", &[("cookie", &cookie_header(&jar))], "")
        .await;
    assert_eq!(r.status, 200);
    let r = h
        .send(
            "GET",
            &format!("{url}&prompt=none"),
            &[("cookie", &cookie_header(&jar))],
            "",
        )
        .await;
    assert_eq!(
        param(&params_of(&location(&r), '?'), "error").as_deref(),
        Some("login_required")
    );
}

/// A code from `/authorize` answered at once by the session in `jar`.
async fn sso(h: &H, url: &str, jar: &str) -> String {
    let r = h.send("GET", url, &[("cookie", jar)], "").await;
    param(&params_of(&location(&r), '?'), "code").expect("SSO code")
}

async fn hosted_page_link_goes_straight_through_in_the_same_browser(h: H) {
    let url = format!(
        "/authorize?client_id=rwa&response_type=code&redirect_uri={}&state=ls",
        enc(CB)
    );
    let r = h.send("GET", &url, &[], "").await;
    let page = html(&r);
    let mut jar = cookies(&r);
    let body = form(&[
        ("req", &hidden(&page, "req")),
        ("csrf", &hidden(&page, "csrf")),
        ("email", "pl@example.com"),
        ("send", "link"),
    ]);
    let r = h
        .send(
            "POST",
            "/login/start",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &cookie_header(&jar)),
            ],
            body,
        )
        .await;
    assert!(html(&r).contains("id=\"check-email\""), "{r:?}");
    jar.extend(cookies(&r));
    let link = h.links_for("pl@example.com").await.pop().unwrap();
    let r = h
        .send(
            "GET",
            &path_and_query(&link),
            &[("cookie", &cookie_header(&jar))],
            "",
        )
        .await;
    assert_eq!(r.status, 302, "same browser: no confirmation: {r:?}");
    let p = params_of(&location(&r), '?');
    assert_eq!(param(&p, "state").as_deref(), Some("ls"));
    assert!(param(&p, "code").is_some());
    // The page itself expires: an hour later its form is refused.
    h.advance(3601);
    let late = form(&[
        ("req", &hidden(&page, "req")),
        ("csrf", &hidden(&page, "csrf")),
        ("email", "pl@example.com"),
        ("send", "code"),
    ]);
    let r = h
        .send(
            "POST",
            "/login/start",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &cookie_header(&jar)),
            ],
            late,
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(html(&r).contains("more than an hour old"));
}

async fn embedded_login_with_cors_and_login_tickets(h: H) {
    let origin = ("origin", EMB);
    // Preflights: allowed origins only.
    let r = h
        .send(
            "OPTIONS",
            "/passwordless/start",
            &[
                origin,
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "content-type,auth0-client",
                ),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.headers["access-control-allow-origin"], EMB);
    assert_eq!(
        r.headers["access-control-allow-headers"],
        "content-type,auth0-client"
    );
    let r = h
        .send(
            "OPTIONS",
            "/co/authenticate",
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, json!("Origin https://evil.example is not allowed."));
    assert!(r.headers.get("access-control-allow-origin").is_none());
    // The app's page asks for a code without the secret: allowed from its origin only.
    let start = json!({"client_id": "embedded", "connection": "email", "email": "emb@example.com", "send": "code"});
    let r = h
        .send(
            "POST",
            "/passwordless/start",
            &[("content-type", "application/json")],
            start.to_string(),
        )
        .await;
    assert_eq!(
        r.err().1,
        "unauthorized_client",
        "a server without the secret"
    );
    let r = h
        .send(
            "POST",
            "/passwordless/start",
            &[
                ("content-type", "application/json"),
                ("origin", "https://evil.example"),
            ],
            start.to_string(),
        )
        .await;
    assert_eq!(r.err().1, "unauthorized_client");
    let r = h
        .send(
            "POST",
            "/passwordless/start",
            &[("content-type", "application/json"), origin],
            start.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.headers["access-control-allow-origin"], EMB);
    let code = h.last_code("emb@example.com").await;
    let co = |otp: &str| {
        json!({"client_id": "embedded", "username": "emb@example.com", "otp": otp, "realm": "email",
               "credential_type": "http://auth0.com/oauth/grant-type/passwordless/otp"})
        .to_string()
    };
    let json_hdr = ("content-type", "application/json");
    let r = h
        .send(
            "POST",
            "/co/authenticate",
            &[json_hdr, origin],
            json!({"client_id": "embedded"}).to_string(),
        )
        .await;
    assert_eq!(
        r.err(),
        (
            400,
            "invalid_request",
            "Invalid request body. All and only of client_id, credential_type, username, otp, realm are required."
        )
    );
    let r = h
        .send(
            "POST",
            "/co/authenticate",
            &[json_hdr, ("origin", "https://evil.example")],
            co(&code),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = h
        .send(
            "POST",
            "/co/authenticate",
            &[json_hdr, origin],
            co("000000"),
        )
        .await;
    assert_eq!(
        r.err(),
        (403, "access_denied", "Wrong email or verification code.")
    );
    let r = h
        .send("POST", "/co/authenticate", &[json_hdr, origin], co(&code))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    let ticket = r.body["login_ticket"].as_str().unwrap().to_string();
    let co_id = r.body["co_id"].as_str().unwrap();
    assert!(r.body["co_verifier"].as_str().unwrap().len() >= 32);
    let jar = cookies(&r);
    assert!(jar.iter().any(|(k, _)| k == &format!("tessera_co_{co_id}")));
    let url = |ticket: &str| {
        format!(
            "/authorize?client_id=embedded&response_type=token%20id_token&redirect_uri={}&scope=openid%20email&realm=email&state=cs&nonce=cn&login_ticket={}",
            enc(EMB_CB),
            enc(ticket)
        )
    };
    // Another browser (no cookie) cannot use the ticket... and it is gone after one try.
    let _ = jar;
    let r = h.send("GET", &url(&ticket), &[], "").await;
    let p = params_of(&location(&r), '#');
    assert_eq!(
        param(&p, "error").as_deref(),
        Some("access_denied"),
        "{r:?}"
    );
    // So a fresh ticket for the real browser.
    start_embedded(&h, "emb@example.com").await;
    let code = h.last_code("emb@example.com").await;
    let r = h
        .send("POST", "/co/authenticate", &[json_hdr, origin], co(&code))
        .await;
    let ticket = r.body["login_ticket"].as_str().unwrap().to_string();
    let jar = cookies(&r);
    let r = h
        .send(
            "GET",
            &url(&ticket),
            &[("cookie", &cookie_header(&jar))],
            "",
        )
        .await;
    let loc = location(&r);
    assert!(loc.starts_with(&format!("{EMB_CB}#")), "{loc}");
    let p = params_of(&loc, '#');
    assert_eq!(param(&p, "state").as_deref(), Some("cs"));
    let id_token = param(&p, "id_token").unwrap();
    let claims = verify_jwt(&h, &id_token, "embedded").await;
    assert_eq!(claims["nonce"], "cn");
    // at_hash binds the access token to the id_token.
    let at = param(&p, "access_token").unwrap();
    let digest = sha256(&at);
    assert_eq!(claims["at_hash"], URL_SAFE_NO_PAD.encode(&digest[..16]));
    // A ticket works once.
    let r = h
        .send(
            "GET",
            &url(&ticket),
            &[("cookie", &cookie_header(&jar))],
            "",
        )
        .await;
    assert_eq!(
        param(&params_of(&location(&r), '#'), "error").as_deref(),
        Some("access_denied")
    );
}

async fn response_modes_and_lock_endpoints(h: H) {
    // Sign in once through a link (never mode is not needed: POST confirms).
    let link = start_link(&h, "modes@example.com", json!({"redirect_uri": CB})).await;
    let (r, _, _) = open_and_confirm(&h, &link).await;
    let jar = cookie_header(&cookies(&r));
    let base = format!(
        "/authorize?client_id=rwa&redirect_uri={}&state=m&nonce=mn&scope=openid",
        enc(CB)
    );
    let r = h
        .send(
            "GET",
            &format!("{base}&response_type=code&response_mode=form_post"),
            &[("cookie", &jar)],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    let page = html(&r);
    assert!(page.contains(&format!("action=\"{CB}\"")), "{page}");
    assert!(page.contains("name=\"code\"") && page.contains("name=\"state\" value=\"m\""));
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("form-action https://app.example.com"), "{csp}");
    let r = h
        .send(
            "GET",
            &format!("{base}&response_type=id_token"),
            &[("cookie", &jar)],
            "",
        )
        .await;
    let p = params_of(&location(&r), '#');
    assert!(
        param(&p, "id_token").is_some() && param(&p, "access_token").is_none(),
        "{p:?}"
    );
    let r = h
        .send(
            "GET",
            &format!("{base}&response_type=token&response_mode=query"),
            &[("cookie", &jar)],
            "",
        )
        .await;
    assert_eq!(
        param(&params_of(&location(&r), '?'), "error").as_deref(),
        Some("invalid_request")
    );

    // Lock's client configuration, and the endpoints it probes.
    let r = h
        .send("GET", "/client/embedded.js?t1795308901824", &[], "")
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let js = html(&r);
    assert!(js.starts_with("Auth0.setClient({"), "{js}");
    assert!(js.contains("\"id\":\"embedded\"") && js.contains("\"name\":\"email\""));
    assert_eq!(h.send("GET", "/client/nope.js", &[], "").await.status, 404);
    let r = h
        .send("GET", "/user/geoloc/country", &[("origin", EMB)], "")
        .await;
    assert_eq!(r.body, json!({"country_code": "US"}));
    assert_eq!(r.headers["access-control-allow-origin"], EMB);
    // /passwordless/verify checks without using the code up.
    start_embedded(&h, "pv@example.com").await;
    let code = h.last_code("pv@example.com").await;
    for _ in 0..4 {
        let r = h.post_json("/passwordless/verify", json!({"connection": "email", "verification_code": code, "email": "pv@example.com", "client_id": "embedded"})).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let r = h.post_json("/passwordless/verify", json!({"connection": "email", "verification_code": "000000", "email": "pv@example.com", "client_id": "embedded"})).await;
    assert_eq!(
        r.err(),
        (
            401,
            "invalid_user_password",
            "Wrong email or verification code."
        )
    );
}

async fn start_embedded(h: &H, email: &str) {
    let body =
        json!({"client_id": "embedded", "connection": "email", "email": email, "send": "code"});
    let r = h
        .send(
            "POST",
            "/passwordless/start",
            &[("content-type", "application/json"), ("origin", EMB)],
            body.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(H::new("sqlite").await).await } )*
            #[tokio::test] async fn link_modes() { super::a_link_opened_in_the_requesting_browser_or_in_never_mode_goes_straight_through("sqlite").await }
        }
        mod postgres {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(H::new("postgres").await).await } )*
            #[tokio::test] async fn link_modes() { super::a_link_opened_in_the_requesting_browser_or_in_never_mode_goes_straight_through("postgres").await }
        }
    };
}

both_backends!(
    magic_link_is_safe_from_scanners_and_signs_in_once,
    wrong_expired_and_foreign_links_fail_without_redirecting_anywhere_else,
    authorize_checks_the_client_and_redirect_uri_before_anything,
    hosted_page_signs_in_with_a_code_and_pkce,
    hosted_page_link_goes_straight_through_in_the_same_browser,
    embedded_login_with_cors_and_login_tickets,
    response_modes_and_lock_endpoints,
);
