//! Server-rendered pages (minijinja, auto-escaped), the static files compiled into the binary,
//! and the Content-Security-Policy each page gets.
//!
//! No page has inline script. Pages that need values in JavaScript carry them as JSON in a
//! `<script type="application/json" id="config">` block, which a static script reads.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::{Environment, Value};
use serde::Serialize;

use crate::AppConfig;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("index.html", include_str!("../templates/index.html")),
    ("lock.html", include_str!("../templates/lock.html")),
    ("custom.html", include_str!("../templates/custom.html")),
    ("profile.html", include_str!("../templates/profile.html")),
    ("error.html", include_str!("../templates/error.html")),
];

/// Files served under `/static/`: (name, content type, body).
const STATIC_FILES: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../static/style.css"),
    ),
    (
        "lock-page.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/lock-page.js"),
    ),
    (
        "custom-page.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/custom-page.js"),
    ),
    (
        "logo.svg",
        "image/svg+xml",
        include_str!("../static/logo.svg"),
    ),
];

pub fn static_file(name: &str) -> Option<(&'static str, &'static str)> {
    STATIC_FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ty, body)| (*ty, *body))
}

/// Every template, loaded once. Names ending in `.html` are HTML-escaped.
pub fn environment() -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    Ok(env)
}

/// How much the page may load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Our own script and styles only.
    Strict,
    /// A page running Lock or auth0-js: they call Tessera by XHR, load Lock's client
    /// configuration and language file from Tessera as `<script>` (JSONP), open a hidden
    /// iframe to Tessera's `/authorize` (the SSO check), and style with inline `<style>`.
    Widget,
}

pub fn content_security_policy(policy: Policy, config: &AppConfig) -> String {
    let t = &config.tessera_origin;
    match policy {
        Policy::Strict => "default-src 'none'; script-src 'self'; style-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
            .to_string(),
        Policy::Widget => format!(
            "default-src 'self'; script-src 'self' {t}; connect-src 'self' {t}; \
             frame-src {t}; style-src 'self' 'unsafe-inline'; img-src * data:; \
             font-src 'self' data:; base-uri 'none'; form-action 'self' {t}; \
             frame-ancestors 'none'"
        ),
    }
}

/// A rendered page with its security headers.
pub struct Page {
    pub status: StatusCode,
    pub html: String,
    pub csp: String,
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.html).into_response();
        let h = response.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        );
        if let Ok(v) = HeaderValue::from_str(&self.csp) {
            h.insert(CONTENT_SECURITY_POLICY, v);
        }
        response
    }
}

/// Renders `template` with `context`.
pub fn render(
    env: &Environment<'static>,
    config: &AppConfig,
    policy: Policy,
    status: StatusCode,
    template: &str,
    context: Value,
) -> anyhow::Result<Page> {
    let html = env.get_template(template)?.render(context)?;
    Ok(Page {
        status,
        html,
        csp: content_security_policy(policy, config),
    })
}

/// `value` as JSON that is safe inside a `<script type="application/json">` element: `<`, `>`
/// and `&` become `\u003c`-style escapes (so no `</script>` or `<!--` can appear), and so do
/// U+2028 and U+2029. A script element's text is not HTML-decoded, so the result is marked
/// safe rather than escaped again.
pub fn json_for_script(value: &impl Serialize) -> anyhow::Result<Value> {
    let json = serde_json::to_string(value)?;
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Ok(Value::from_safe_string(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn every_template_parses_and_escapes() {
        let env = environment().unwrap();
        let html = env
            .get_template("error.html")
            .unwrap()
            .render(context! { title => "x", error => "<b>", description => "\"&" })
            .unwrap();
        assert!(html.contains("&lt;b&gt;"), "{html}");
        assert!(!html.contains("<b>"));
    }

    #[test]
    fn json_in_script_cannot_close_the_element() {
        let v = json_for_script(&serde_json::json!({"a": "</script><!--&\u{2028}"})).unwrap();
        let s = v.to_string();
        assert!(
            !s.contains('<') && !s.contains('>') && !s.contains('&'),
            "{s}"
        );
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["a"], "</script><!--&\u{2028}");
    }
}
