//! The passwordless email: Liquid templates (the operator's, or the built-in translated ones),
//! rendered when the code is issued (an operator's) or when it is delivered (the built-in ones,
//! from what the outbox kept: `queued`, `made`).
//!
//! Safety rules:
//! - Values reach HTML bodies HTML-escaped, so a hostile application name cannot inject markup.
//!   (`{{ link }}` is escaped too, which is right inside an `href`.)
//! - The subject and From are single lines: control characters in the output become spaces, so
//!   nothing can be smuggled into a header.
//! - Templates are checked when configured: a syntax error is reported with its place; loops
//!   over large ranges are refused; output is capped at 256 KiB.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use liquid::ObjectView as _; // the derived views call `size`
use serde_json::json;
use tessera_core::connection::EmailTemplate;

use crate::message::{BuiltinEmail, EmailMessage, QueuedEmail};

/// The languages the built-in templates are written in. The first is the fallback.
pub const LANGUAGES: &[&str] = &["en", "de", "fr", "es", "nl"];

const MAX_OUTPUT: usize = 256 * 1024;
const MAX_RANGE: i64 = 1000;

/// Everything a template may use (Auth0's passwordless email variables).
#[derive(Debug, Clone)]
pub struct EmailVars {
    pub code: String,
    /// Set for `send: link` only.
    pub link: Option<String>,
    /// `code` or `link`.
    pub send: String,
    pub application_name: String,
    pub client_id: String,
    pub connection: String,
    /// The request's `X-Request-Language`, else its `Accept-Language`, as sent.
    pub request_language: Option<String>,
    pub user_email: String,
    pub lifetime_minutes: i64,
    pub tenant: Tenant,
}

/// Tenant-wide values templates can show.
#[derive(Debug, Clone, Default)]
pub struct Tenant {
    pub name: String,
    pub friendly_name: String,
    pub support_email: String,
    pub support_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("email template {part}: {reason}")]
pub struct TemplateError {
    /// `from`, `subject` or `body`.
    pub part: &'static str,
    pub reason: String,
}

fn parser() -> &'static liquid::Parser {
    static P: OnceLock<liquid::Parser> = OnceLock::new();
    P.get_or_init(|| match liquid::ParserBuilder::with_stdlib().build() {
        Ok(p) => p,
        Err(e) => unreachable!("the standard Liquid library always builds: {e}"),
    })
}

fn parse(part: &'static str, text: &str) -> Result<liquid::Template, TemplateError> {
    check_ranges(part, text)?;
    parser().parse(text).map_err(|e| TemplateError {
        part,
        reason: e.to_string().trim().to_string(),
    })
}

/// Refuses `(a..b)` ranges whose bounds are not literal numbers, or that are longer than 1,000
/// items: loops are the one way a template could make rendering slow. Only the inside of
/// Liquid tags is looked at, so prose such as "(see 1..2)" is fine.
fn check_ranges(part: &'static str, text: &str) -> Result<(), TemplateError> {
    let mut rest = text;
    while let Some(open) = rest.find(['{']) {
        let after = &rest[open..];
        let close = match &after.get(..2) {
            Some("{%") => "%}",
            Some("{{") => "}}",
            _ => {
                rest = &after[1..];
                continue;
            }
        };
        let end = after.find(close).map(|e| e + 2).unwrap_or(after.len());
        let tag = &after[..end];
        let line = text[..text.len() - after.len()].lines().count().max(1);
        let mut inner = tag;
        while let Some(p) = inner.find('(') {
            let Some(q) = inner[p..].find(')') else { break };
            let group = &inner[p + 1..p + q];
            if let Some((lo, hi)) = group.split_once("..") {
                match (lo.trim().parse::<i64>(), hi.trim().parse::<i64>()) {
                    (Ok(a), Ok(b)) if (b - a).abs() > MAX_RANGE => {
                        return Err(TemplateError {
                            part,
                            reason: format!(
                                "line {line}: the range ({a}..{b}) is longer than {MAX_RANGE} items"
                            ),
                        });
                    }
                    (Ok(_), Ok(_)) => {}
                    _ => {
                        return Err(TemplateError {
                            part,
                            reason: format!("line {line}: ranges must have literal bounds"),
                        });
                    }
                }
            }
            inner = &inner[p + q..];
        }
        rest = &after[end..];
    }
    Ok(())
}

/// Checks an operator's template; the message names the part, the place and the reason.
pub fn validate(t: &EmailTemplate) -> Result<(), TemplateError> {
    if t.syntax != "liquid" {
        return Err(TemplateError {
            part: "syntax",
            reason: format!("only \"liquid\" is supported, not {:?}", t.syntax),
        });
    }
    if let Some(from) = &t.from {
        parse("from", from)?;
    }
    parse("subject", &t.subject)?;
    parse("body", &t.body)?;
    // Render once with sample values, so errors that only show at render time show now.
    render(
        Some(t),
        &sample_vars("code", None),
        "Tessera <no-reply@example.com>",
        "check@example.com",
    )
    .map(|_| ())
}

/// Values for previews and checks.
pub fn sample_vars(send: &str, lang: Option<&str>) -> EmailVars {
    EmailVars {
        code: "123456".into(),
        link: (send != "code").then(|| "https://login.example.com/passwordless/verify_redirect?verification_code=123456&connection=email&client_id=sample&email=jane%40example.com".into()),
        send: send.into(),
        application_name: "Sample App".into(),
        client_id: "sample-client-id".into(),
        connection: "email".into(),
        request_language: lang.map(str::to_string),
        user_email: "jane@example.com".into(),
        lifetime_minutes: 3,
        tenant: Tenant { name: "tessera".into(), friendly_name: "Tessera".into(), support_email: "support@example.com".into(), support_url: "https://example.com/support".into() },
    }
}

/// Renders the email: the operator's template when there is one, else the built-in one in the
/// language the request asked for (falling back to English).
pub fn render(
    template: Option<&EmailTemplate>,
    v: &EmailVars,
    default_from: &str,
    message_id: &str,
) -> Result<EmailMessage, TemplateError> {
    if template.is_none()
        && let Some(m) = builtin_filled(v, default_from, message_id)?
    {
        return Ok(m);
    }
    render_liquid(template, v, default_from, message_id)
}

/// The email as the outbox keeps it: the operator's template's rendered now (so that its
/// errors show in the request, and a change to it later does not change what was sent), the
/// built-in one's as what it shows, made when it is delivered ([`made`]).
pub fn queued(
    template: Option<&EmailTemplate>,
    v: &EmailVars,
    default_from: &str,
    message_id: &str,
) -> Result<QueuedEmail, TemplateError> {
    Ok(match template {
        Some(_) => QueuedEmail::Made(render(template, v, default_from, message_id)?),
        None => QueuedEmail::Builtin(BuiltinEmail {
            message_id: message_id.to_string(),
            from: default_from.to_string(),
            to: v.user_email.clone(),
            lang: pick_language(v.request_language.as_deref()).to_string(),
            send: v.send.clone(),
            code: v.code.clone(),
            link: v.link.clone(),
            application_name: v.application_name.clone(),
            lifetime_minutes: v.lifetime_minutes,
        }),
    })
}

/// The built-in template's email from what [`queued`] kept: the one [`render`] makes, since
/// the built-in templates show nothing else (a test compares the two).
pub fn made(b: BuiltinEmail) -> Result<EmailMessage, TemplateError> {
    let v = EmailVars {
        code: b.code,
        link: b.link,
        send: b.send,
        application_name: b.application_name,
        client_id: String::new(),
        connection: String::new(),
        request_language: Some(b.lang),
        user_email: b.to,
        lifetime_minutes: b.lifetime_minutes,
        tenant: Tenant::default(),
    };
    render(None, &v, &b.from, &b.message_id)
}

/// The email as Liquid renders it, whatever the template.
fn render_liquid(
    template: Option<&EmailTemplate>,
    v: &EmailVars,
    default_from: &str,
    message_id: &str,
) -> Result<EmailMessage, TemplateError> {
    let parts = match template {
        Some(t) => Parts {
            from: t.from.as_deref().map(|f| parsed("from", f)).transpose()?,
            subject: parsed("subject", &t.subject)?,
            body: parsed("body", &t.body)?,
        },
        None => builtin_parts(pick_language(v.request_language.as_deref()))?.clone(),
    };
    let raw = Globals::new(v, false);
    let subject = one_line(&render_part("subject", &parts.subject, &raw)?);
    let from = match &parts.from {
        Some(f) => one_line(&render_part("from", f, &raw)?),
        None => default_from.to_string(),
    };
    let html = render_part("body", &parts.body, &Globals::new(v, true))?;
    Ok(EmailMessage {
        message_id: message_id.to_string(),
        from,
        to: v.user_email.clone(),
        subject,
        text: html_to_text(&html),
        html,
    })
}

/// Stand-ins for the code and the link: characters of Unicode's private use area, which
/// Liquid writes as they are, HTML escaping leaves alone, and the text part keeps whole.
const CODE_STAND_IN: &str = "\u{E000}code\u{E000}";
const LINK_STAND_IN: &str = "\u{E000}link\u{E000}";

/// The built-in email, with the code and the link put into a render made once, with
/// stand-ins for them, for the same language, kind (`send`), application name and lifetime:
/// the built-in templates show the code and the link only as they are (no filter, no
/// condition on them), so this is what Liquid would render, for a tenth of the work (a test
/// compares the two in every language and kind). None when a value could make a difference
/// the stand-ins would not (white space or a control character in the code or the link, a
/// stand-in's character anywhere): Liquid renders those.
fn builtin_filled(
    v: &EmailVars,
    default_from: &str,
    message_id: &str,
) -> Result<Option<EmailMessage>, TemplateError> {
    let plain =
        |s: &str| !s.contains(|c: char| c.is_whitespace() || c.is_control() || c == '\u{E000}');
    if !plain(&v.code)
        || v.link.as_deref().is_some_and(|l| !plain(l))
        || v.application_name.contains('\u{E000}')
    {
        return Ok(None);
    }
    let lang = pick_language(v.request_language.as_deref());
    let key = (
        lang,
        v.send.clone(),
        v.link.is_some(),
        v.application_name.clone(),
        v.lifetime_minutes,
    );
    static STAND_INS: Cache<(&'static str, String, bool, String, i64), StandIn> = OnceLock::new();
    let stand_in = cached(&STAND_INS, &key, || {
        let with = EmailVars {
            code: CODE_STAND_IN.into(),
            link: v.link.as_ref().map(|_| LINK_STAND_IN.into()),
            ..v.clone()
        };
        let m = render_liquid(None, &with, default_from, message_id)?;
        Ok(StandIn {
            subject: pieces(&m.subject),
            text: pieces(&m.text),
            html: pieces(&m.html),
        })
    })?;
    let link = v.link.as_deref().unwrap_or_default();
    let (code_html, link_html) = (escape_html(&v.code), escape_html(link));
    Ok(Some(EmailMessage {
        message_id: message_id.to_string(),
        from: default_from.to_string(),
        to: v.user_email.clone(),
        subject: fill(&stand_in.subject, &v.code, link),
        text: fill(&stand_in.text, &v.code, link),
        html: fill(&stand_in.html, &code_html, &link_html),
    }))
}

/// A rendered part cut at its stand-ins.
struct StandIn {
    subject: Vec<Piece>,
    text: Vec<Piece>,
    html: Vec<Piece>,
}

enum Piece {
    Text(Box<str>),
    Code,
    Link,
}

fn pieces(s: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut literal = 0; // where the text not yet pushed begins
    let mut at = 0;
    while let Some(i) = s[at..].find('\u{E000}').map(|i| at + i) {
        let rest = &s[i..];
        let (piece, len) = if rest.starts_with(CODE_STAND_IN) {
            (Piece::Code, CODE_STAND_IN.len())
        } else if rest.starts_with(LINK_STAND_IN) {
            (Piece::Link, LINK_STAND_IN.len())
        } else {
            // Not a stand-in (none of the values holds this character): text.
            at = i + '\u{E000}'.len_utf8();
            continue;
        };
        if i > literal {
            out.push(Piece::Text(s[literal..i].into()));
        }
        out.push(piece);
        at = i + len;
        literal = at;
    }
    if literal < s.len() {
        out.push(Piece::Text(s[literal..].into()));
    }
    out
}

fn fill(pieces: &[Piece], code: &str, link: &str) -> String {
    let mut out = String::with_capacity(
        pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.len(),
                Piece::Code => code.len(),
                Piece::Link => link.len(),
            })
            .sum(),
    );
    for p in pieces {
        out.push_str(match p {
            Piece::Text(t) => t,
            Piece::Code => code,
            Piece::Link => link,
        });
    }
    out
}

/// A template's parts, parsed.
#[derive(Clone)]
struct Parts {
    from: Option<Arc<liquid::Template>>,
    subject: Arc<liquid::Template>,
    body: Arc<liquid::Template>,
}

/// The built-in template of a language, parsed once (a language not built in gets English's).
fn builtin_parts(lang: &str) -> Result<&'static Parts, TemplateError> {
    static PARSED: [OnceLock<Parts>; LANGUAGES.len()] =
        [const { OnceLock::new() }; LANGUAGES.len()];
    let i = LANGUAGES.iter().position(|l| *l == lang).unwrap_or(0);
    if let Some(p) = PARSED[i].get() {
        return Ok(p);
    }
    let t = builtin_template(LANGUAGES[i]);
    let parts = Parts {
        from: None,
        subject: Arc::new(parse("subject", &t.subject)?),
        body: Arc::new(parse("body", &t.body)?),
    };
    Ok(PARSED[i].get_or_init(|| parts))
}

/// A template parsed once per text (each `/passwordless/start` renders the same few), kept
/// while it is in use; at most [`MAX_CACHED`] texts.
fn parsed(part: &'static str, text: &str) -> Result<Arc<liquid::Template>, TemplateError> {
    static PARSED: Cache<String, liquid::Template> = OnceLock::new();
    cached(&PARSED, text, || parse(part, text))
}

const MAX_CACHED: usize = 256;

/// A process-wide cache for [`cached`].
type Cache<K, V> = OnceLock<Mutex<HashMap<K, Arc<V>>>>;

/// The value `cache` keeps under `key`, else `make`'s, then kept (the lock is not held while
/// it is made). At most [`MAX_CACHED`] values: a full cache is emptied.
fn cached<K, Q, V>(
    cache: &Cache<K, V>,
    key: &Q,
    make: impl FnOnce() -> Result<V, TemplateError>,
) -> Result<Arc<V>, TemplateError>
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: ToOwned<Owned = K> + std::hash::Hash + Eq + ?Sized,
{
    let cache = cache.get_or_init(Default::default);
    let lock = || cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = lock().get(key) {
        return Ok(Arc::clone(v));
    }
    let v = Arc::new(make()?);
    let mut c = lock();
    if c.len() >= MAX_CACHED {
        c.clear();
    }
    c.insert(key.to_owned(), Arc::clone(&v));
    Ok(v)
}

fn render_part(
    part: &'static str,
    template: &liquid::Template,
    globals: &dyn liquid::ObjectView,
) -> Result<String, TemplateError> {
    let out = template.render(globals).map_err(|e| TemplateError {
        part,
        reason: e.to_string().trim().to_string(),
    })?;
    if out.len() > MAX_OUTPUT {
        return Err(TemplateError {
            part,
            reason: format!("the output is larger than {MAX_OUTPUT} bytes"),
        });
    }
    Ok(out)
}

/// The variables a template sees (Auth0's names). Liquid reads them field by field, so a
/// render builds no map; in HTML bodies every text is HTML-escaped (borrowed when it has
/// nothing to escape).
#[derive(Debug, liquid::ObjectView, liquid::ValueView)]
struct Globals<'a> {
    code: Text<'a>,
    password: Text<'a>,
    link: Option<Text<'a>>,
    send: Text<'a>,
    application: Application<'a>,
    connection: Named<'a>,
    /// An empty string, not nil, when absent: `request_language contains 'fr'` must work.
    request_language: Text<'a>,
    operation: Option<Text<'a>>,
    user: UserVars<'a>,
    tenant: Text<'a>,
    friendly_name: Text<'a>,
    support_email: Text<'a>,
    support_url: Text<'a>,
    lifetime_minutes: i64,
}

type Text<'a> = liquid::model::KStringCow<'a>;

#[derive(Debug, liquid::ObjectView, liquid::ValueView)]
#[allow(non_snake_case)] // Auth0's name: `application.clientID`
struct Application<'a> {
    name: Text<'a>,
    clientID: Text<'a>,
}

#[derive(Debug, liquid::ObjectView, liquid::ValueView)]
struct Named<'a> {
    name: Text<'a>,
}

#[derive(Debug, liquid::ObjectView, liquid::ValueView)]
struct UserVars<'a> {
    email: Text<'a>,
}

impl<'a> Globals<'a> {
    fn new(v: &'a EmailVars, html: bool) -> Globals<'a> {
        let e = |s: &'a str| -> Text<'a> {
            if html && s.contains(['&', '<', '>', '"', '\'']) {
                Text::from_string(escape_html(s))
            } else {
                Text::from_ref(s)
            }
        };
        Globals {
            code: e(&v.code),
            password: e(&v.code),
            link: v.link.as_deref().map(e),
            send: Text::from_ref(&v.send),
            application: Application {
                name: e(&v.application_name),
                clientID: e(&v.client_id),
            },
            connection: Named {
                name: e(&v.connection),
            },
            request_language: e(v.request_language.as_deref().unwrap_or_default()),
            operation: None,
            user: UserVars {
                email: e(&v.user_email),
            },
            tenant: e(&v.tenant.name),
            friendly_name: e(&v.tenant.friendly_name),
            support_email: e(&v.tenant.support_email),
            support_url: e(&v.tenant.support_url),
            lifetime_minutes: v.lifetime_minutes.max(1),
        }
    }
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The best built-in language for an `X-Request-Language` or `Accept-Language` value.
pub fn pick_language(header: Option<&str>) -> &'static str {
    let Some(h) = header else { return LANGUAGES[0] };
    let mut best: Option<(f32, &'static str)> = None;
    for item in h.split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
            })
            .unwrap_or(1.0);
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        if let Some(lang) = LANGUAGES.iter().find(|l| **l == primary)
            && q > 0.0
            && best.is_none_or(|(bq, _)| q > bq)
        {
            best = Some((q, lang));
        }
    }
    best.map(|(_, l)| l).unwrap_or(LANGUAGES[0])
}

/// The text part, made from the HTML: block ends become line breaks, links show their target,
/// tags go, entities are decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut pending_href: Option<String> = None;
    let mut skip_depth = 0usize; // inside <head>, <style>, <script>, <title>
    while let Some(lt) = rest.find('<') {
        if skip_depth == 0 {
            out.push_str(&rest[..lt]);
        }
        let Some(gt) = rest[lt..].find('>') else {
            break;
        };
        let tag = &rest[lt + 1..lt + gt];
        let closing = tag.starts_with('/');
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or_default();
        let is = |names: &[&str]| names.iter().any(|n| name.eq_ignore_ascii_case(n));
        if is(&["head", "style", "script", "title"]) {
            if closing {
                skip_depth = skip_depth.saturating_sub(1)
            } else {
                skip_depth += 1
            }
        } else if is(&["br"]) {
            out.push('\n')
        } else if closing
            && is(&[
                "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "table",
            ])
        {
            out.push_str("\n\n")
        } else if is(&["a"]) {
            if !closing {
                pending_href = attr(tag, "href")
            } else if let Some(h) = pending_href.take() {
                out.push_str(" (");
                out.push_str(&h);
                out.push(')');
            }
        }
        rest = &rest[lt + gt + 1..];
    }
    if skip_depth == 0 {
        out.push_str(rest);
    }
    // Each line's words joined by one space; runs of blank lines become one; none at the ends.
    let mut text = String::with_capacity(out.len());
    let mut gap = false;
    for line in decode_entities(&out).lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else {
            gap = true;
            continue;
        };
        if !text.is_empty() {
            text.push_str(if gap { "\n\n" } else { "\n" });
        }
        gap = false;
        text.push_str(first);
        for w in words {
            text.push(' ');
            text.push_str(w);
        }
    }
    text.push('\n');
    text
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let i = lower.find(&format!("{name}="))?;
    let v = &tag[i + name.len() + 1..];
    let (q, body) = match v.chars().next()? {
        '"' => ('"', &v[1..]),
        '\'' => ('\'', &v[1..]),
        _ => (' ', v),
    };
    Some(decode_entities(body.split(q).next().unwrap_or_default()))
}

/// Decodes the entities the escaping makes (and `&nbsp;`) in one pass: what a decoded entity
/// gives is never read again, so `&amp;lt;` is `&lt;`.
fn decode_entities(s: &str) -> String {
    const ENTITIES: [(&str, char); 6] = [
        ("&nbsp;", ' '),
        ("&lt;", '<'),
        ("&gt;", '>'),
        ("&quot;", '"'),
        ("&#39;", '\''),
        ("&amp;", '&'),
    ];
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (c, len) = ENTITIES
            .iter()
            .find(|(e, _)| tail.starts_with(e))
            .map_or(('&', 1), |(e, c)| (*c, e.len()));
        out.push(c);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

struct Strings {
    lang: &'static str,
    subject_code: &'static str,
    subject_link: &'static str,
    intro_code: &'static str,
    intro_link: &'static str,
    button: &'static str,
    expires: &'static str,
    ignore: &'static str,
}

const STRINGS: &[Strings] = &[
    Strings {
        lang: "en",
        subject_code: "{{ code }} is your verification code for {{ application.name }}",
        subject_link: "Sign in to {{ application.name }}",
        intro_code: "Your verification code for <strong>{{ application.name }}</strong> is:",
        intro_link: "Click the button below to sign in to <strong>{{ application.name }}</strong>.",
        button: "Sign in",
        expires: "It expires in {{ lifetime_minutes }} {% if lifetime_minutes == 1 %}minute{% else %}minutes{% endif %} and works once.",
        ignore: "If you did not ask to sign in, you can ignore this email.",
    },
    Strings {
        lang: "de",
        subject_code: "{{ code }} ist Ihr Bestätigungscode für {{ application.name }}",
        subject_link: "Bei {{ application.name }} anmelden",
        intro_code: "Ihr Bestätigungscode für <strong>{{ application.name }}</strong> lautet:",
        intro_link: "Klicken Sie auf die Schaltfläche, um sich bei <strong>{{ application.name }}</strong> anzumelden.",
        button: "Anmelden",
        expires: "Er ist {{ lifetime_minutes }} {% if lifetime_minutes == 1 %}Minute{% else %}Minuten{% endif %} lang gültig und funktioniert nur einmal.",
        ignore: "Wenn Sie keine Anmeldung angefordert haben, können Sie diese E-Mail ignorieren.",
    },
    Strings {
        lang: "fr",
        subject_code: "{{ code }} est votre code de vérification pour {{ application.name }}",
        subject_link: "Connexion à {{ application.name }}",
        intro_code: "Votre code de vérification pour <strong>{{ application.name }}</strong> est :",
        intro_link: "Cliquez sur le bouton ci-dessous pour vous connecter à <strong>{{ application.name }}</strong>.",
        button: "Se connecter",
        expires: "Il expire dans {{ lifetime_minutes }} {% if lifetime_minutes == 1 %}minute{% else %}minutes{% endif %} et ne fonctionne qu'une fois.",
        ignore: "Si vous n'avez pas demandé à vous connecter, vous pouvez ignorer cet e-mail.",
    },
    Strings {
        lang: "es",
        subject_code: "{{ code }} es tu código de verificación para {{ application.name }}",
        subject_link: "Inicia sesión en {{ application.name }}",
        intro_code: "Tu código de verificación para <strong>{{ application.name }}</strong> es:",
        intro_link: "Haz clic en el botón para iniciar sesión en <strong>{{ application.name }}</strong>.",
        button: "Iniciar sesión",
        expires: "Caduca en {{ lifetime_minutes }} {% if lifetime_minutes == 1 %}minuto{% else %}minutos{% endif %} y solo funciona una vez.",
        ignore: "Si no has pedido iniciar sesión, puedes ignorar este correo.",
    },
    Strings {
        lang: "nl",
        subject_code: "{{ code }} is je verificatiecode voor {{ application.name }}",
        subject_link: "Inloggen bij {{ application.name }}",
        intro_code: "Je verificatiecode voor <strong>{{ application.name }}</strong> is:",
        intro_link: "Klik op de knop hieronder om in te loggen bij <strong>{{ application.name }}</strong>.",
        button: "Inloggen",
        expires: "Hij verloopt over {{ lifetime_minutes }} {% if lifetime_minutes == 1 %}minuut{% else %}minuten{% endif %} en werkt maar één keer.",
        ignore: "Als je niet hebt gevraagd om in te loggen, kun je deze e-mail negeren.",
    },
];

/// The built-in template for a language (English when unknown).
pub fn builtin_template(lang: &str) -> EmailTemplate {
    let s = STRINGS
        .iter()
        .find(|s| s.lang == lang)
        .unwrap_or(&STRINGS[0]);
    let body = format!(
        r#"<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{{{{ application.name }}}}</title></head>
<body style="font-family: -apple-system, Segoe UI, Roboto, sans-serif; color: #1f2328; background: #f6f8fa; padding: 24px;">
<div style="max-width: 480px; margin: 0 auto; background: #ffffff; border-radius: 8px; padding: 32px;">
{{% if send == 'link' or send == 'link_ios' or send == 'link_android' %}}
<p>{intro_link}</p>
<p style="margin: 24px 0;"><a href="{{{{ link }}}}" style="background: #1f6feb; color: #ffffff; padding: 12px 20px; border-radius: 6px; text-decoration: none; font-weight: 600;">{button}</a></p>
{{% else %}}
<p>{intro_code}</p>
<p style="font-size: 32px; letter-spacing: 6px; font-weight: 700; margin: 24px 0;">{{{{ code }}}}</p>
{{% endif %}}
<p>{expires}</p>
<p style="color: #656d76; font-size: 13px;">{ignore}</p>
</div></body></html>
"#,
        lang = s.lang,
        intro_link = s.intro_link,
        button = s.button,
        intro_code = s.intro_code,
        expires = s.expires,
        ignore = s.ignore,
    );
    EmailTemplate {
        from: None,
        subject: format!(
            "{{% if send == 'code' %}}{}{{% else %}}{}{{% endif %}}",
            s.subject_code, s.subject_link
        ),
        body,
        syntax: "liquid".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> EmailVars {
        EmailVars {
            application_name: name.into(),
            ..sample_vars("code", None)
        }
    }

    /// The built-in email made from a render with stand-ins is the one Liquid renders, in
    /// every language and kind, whatever else the variables hold: each case is first made
    /// with other values (other user, code, link, tenant), so that what a render with
    /// stand-ins keeps for the next is what is checked.
    #[test]
    fn the_built_in_email_filled_in_is_the_one_liquid_renders() {
        let link = "https://login.example.com/passwordless/verify_redirect?verification_code=\
                    {code}&connection=email&client_id=c<\"x\">&email=jane%40example.com";
        let mut checked = 0;
        for lang in LANGUAGES.iter().copied().chain(["pt"]) {
            for send in ["code", "link", "link_ios", "link_android"] {
                for app in ["Acme", "A & <B> \"C\" 'D'", "Ünïcødé 東京"] {
                    for minutes in [1, 5] {
                        let case = |code: &str, email: &str, tenant: &str| EmailVars {
                            code: code.into(),
                            link: (send != "code").then(|| link.replace("{code}", code)),
                            send: send.into(),
                            application_name: app.into(),
                            request_language: Some(format!("{lang};q=0.9")),
                            user_email: email.into(),
                            lifetime_minutes: minutes,
                            tenant: Tenant {
                                name: tenant.into(),
                                ..sample_vars(send, None).tenant
                            },
                            ..sample_vars(send, None)
                        };
                        let first = case("000111", "first@example.com", "one");
                        let filled = builtin_filled(&first, "T <t@example.com>", "a@t").unwrap();
                        assert!(filled.is_some());
                        let v = case("987654", "second@example.com", "two");
                        let filled = builtin_filled(&v, "T <t@example.com>", "b@t").unwrap();
                        let rendered = render_liquid(None, &v, "T <t@example.com>", "b@t").unwrap();
                        assert_eq!(filled, Some(rendered), "{lang} {send} {app} {minutes}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 6 * 4 * 3 * 2);
        // Values the stand-ins could not stand for are left to Liquid.
        let spaced = EmailVars {
            code: "12 34".into(),
            ..sample_vars("code", None)
        };
        assert_eq!(
            builtin_filled(&spaced, "T <t@example.com>", "c@t").unwrap(),
            None
        );
        let marked = EmailVars {
            application_name: "A\u{E000}code\u{E000}".into(),
            ..sample_vars("code", None)
        };
        assert_eq!(
            builtin_filled(&marked, "T <t@example.com>", "c@t").unwrap(),
            None
        );
        let m = render(None, &marked, "T <t@example.com>", "c@t").unwrap();
        assert!(
            m.subject
                .starts_with("123456 is your verification code for A\u{E000}code")
        );
    }

    /// The built-in email as the outbox keeps it is made, at delivery, into the one rendered
    /// when the code is issued, in every language and kind, with values Liquid renders
    /// itself (white space in the code, the stand-in character) and every other variable set;
    /// and it is a fraction of the made email's size.
    #[test]
    fn the_built_in_email_queued_is_made_into_the_one_rendered() {
        let from = "Tessera <no-reply@example.com>";
        let mut checked = 0;
        for lang in ["en", "de-CH", "fr-FR,fr;q=0.9", "es", "nl;q=0.5", "pt", "*"] {
            for send in ["code", "link", "link_ios", "link_android"] {
                for (app, code) in [
                    ("Acme", "482913"),
                    ("A & <B> \"C\" 'D'", "000001"),
                    ("Ünïcødé 東京 \u{E000}code\u{E000}", "12 34"),
                ] {
                    let v = EmailVars {
                        code: code.into(),
                        application_name: app.into(),
                        request_language: Some(lang.into()),
                        lifetime_minutes: 1 + checked % 3,
                        ..sample_vars(send, None)
                    };
                    let rendered = render(None, &v, from, "m@t").unwrap();
                    let q = queued(None, &v, from, "m@t").unwrap();
                    assert!(matches!(q, QueuedEmail::Builtin(_)));
                    let bytes = q.to_bytes();
                    assert_eq!(
                        QueuedEmail::from_bytes(&bytes),
                        Ok(rendered.clone()),
                        "{lang} {send} {app}"
                    );
                    assert!(
                        bytes.len() * 2 < rendered.to_bytes().len(),
                        "{} of {}",
                        bytes.len(),
                        rendered.to_bytes().len()
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 7 * 4 * 3);
    }

    /// An operator's template is rendered when the code is issued, and a message queued made
    /// (as every message was before the built-in form) still reads as it was.
    #[test]
    fn made_emails_are_queued_and_read_as_they_are() {
        let t = EmailTemplate {
            from: None,
            subject: "Code {{ code }}".into(),
            body: "<p>{{ code }} for {{ user.email }}</p>".into(),
            syntax: "liquid".into(),
        };
        let v = sample_vars("code", None);
        let q = queued(Some(&t), &v, "T <t@example.com>", "m@t").unwrap();
        let made = render(Some(&t), &v, "T <t@example.com>", "m@t").unwrap();
        assert_eq!(q, QueuedEmail::Made(made.clone()));
        assert_eq!(QueuedEmail::from_bytes(&q.to_bytes()), Ok(made.clone()));
        assert_eq!(QueuedEmail::from_bytes(&made.to_bytes()), Ok(made));
        assert!(QueuedEmail::from_bytes(br#"{"message_id":"m@t","to":"x"}"#).is_err());
    }

    #[test]
    fn renders_the_code_in_every_part() {
        let m = render(None, &vars("Acme"), "T <t@example.com>", "m1@t").unwrap();
        assert_eq!(m.subject, "123456 is your verification code for Acme");
        assert!(m.text.contains("123456") && m.text.contains("3 minutes"));
        assert!(m.html.contains(">123456<"));
        assert_eq!(
            (m.from.as_str(), m.to.as_str(), m.message_id.as_str()),
            ("T <t@example.com>", "jane@example.com", "m1@t")
        );
        let one = render(
            None,
            &EmailVars {
                lifetime_minutes: 1,
                ..vars("Acme")
            },
            "T <t@example.com>",
            "m",
        )
        .unwrap();
        assert!(one.text.contains("expires in 1 minute and"));
    }

    #[test]
    fn hostile_values_are_escaped_in_html_and_kept_on_one_line_in_headers() {
        let m = render(
            None,
            &vars("<script>x</script>\r\nBcc: evil@example.com"),
            "T <t@example.com>",
            "m",
        )
        .unwrap();
        assert!(!m.html.contains("<script>"));
        assert!(m.html.contains("&lt;script&gt;"));
        assert!(!m.subject.contains('\n') && !m.subject.contains('\r'));
        let t = EmailTemplate {
            from: Some("{{ application.name }} <login@example.com>".into()),
            subject: "Hi\r\nBcc: x@evil.com {{ code }}".into(),
            body: "<p>{{ application.name }}</p>".into(),
            syntax: "liquid".into(),
        };
        let m = render(Some(&t), &vars("A\r\nB"), "T <t@example.com>", "m").unwrap();
        assert!(!m.subject.contains('\r') && !m.subject.contains('\n'));
        assert!(!m.from.contains('\n'));
        assert_eq!(m.html, "<p>A\r\nB</p>");
    }

    #[test]
    fn languages_are_negotiated() {
        assert_eq!(pick_language(None), "en");
        assert_eq!(pick_language(Some("fr-FR")), "fr");
        assert_eq!(pick_language(Some("de-CH,de;q=0.9,en;q=0.8")), "de");
        assert_eq!(pick_language(Some("ja-JP,nl;q=0.5,es;q=0.7")), "es");
        assert_eq!(pick_language(Some("ja-JP")), "en");
        assert_eq!(pick_language(Some("fr;q=0, nl")), "nl");
        let fr = render(
            None,
            &sample_vars("code", Some("fr-FR")),
            "T <t@example.com>",
            "m",
        )
        .unwrap();
        assert_eq!(
            fr.subject,
            "123456 est votre code de vérification pour Sample App"
        );
        assert!(fr.html.contains("lang=\"fr\""));
    }

    #[test]
    fn the_seeds_multi_language_template_works() {
        let t = EmailTemplate {
            from: None,
            subject: "{% if request_language contains 'fr-FR' %}Bienvenue{% else %}Welcome{% endif %} to {{ application.name }}".into(),
            body: "<html><body>{% if request_language contains 'fr-FR' %}<p>Votre code: {{ code }}</p>{% else %}<p>Your code: {{ code }}</p>{% endif %}</body></html>".into(),
            syntax: "liquid".into(),
        };
        validate(&t).unwrap();
        let fr = render(
            Some(&t),
            &sample_vars("code", Some("fr-FR,fr;q=0.9")),
            "T <t@example.com>",
            "m",
        )
        .unwrap();
        assert_eq!(fr.subject, "Bienvenue to Sample App");
        assert_eq!(fr.text, "Votre code: 123456\n");
        let en = render(
            Some(&t),
            &sample_vars("code", Some("en-US")),
            "T <t@example.com>",
            "m",
        )
        .unwrap();
        assert_eq!(en.subject, "Welcome to Sample App");
        let none = render(
            Some(&t),
            &sample_vars("code", None),
            "T <t@example.com>",
            "m",
        )
        .unwrap();
        assert_eq!(
            none.subject, "Welcome to Sample App",
            "no language header at all"
        );
    }

    #[test]
    fn broken_templates_are_refused_with_place_and_reason() {
        let t = |subject: &str, body: &str| EmailTemplate {
            from: None,
            subject: subject.into(),
            body: body.into(),
            syntax: "liquid".into(),
        };
        let e = validate(&t("ok", "<p>\n{% if code %}x{% endfor %}")).unwrap_err();
        assert_eq!(e.part, "body");
        assert!(!e.reason.is_empty());
        let e = validate(&t("ok", "<p>{{ code | no_such_filter }}</p>")).unwrap_err();
        assert!(e.reason.contains("no_such_filter"), "{}", e.reason);
        let e = validate(&t("{{ code ", "<p></p>")).unwrap_err();
        assert_eq!(e.part, "subject");
        assert!(e.reason.contains("1:"), "{}", e.reason);
        let e = validate(&t("x", "{% for i in (1..100000000) %}x{% endfor %}")).unwrap_err();
        assert!(e.reason.contains("range"), "{}", e.reason);
        let e = validate(&t("x", "{% for i in (1..code) %}x{% endfor %}")).unwrap_err();
        assert!(e.reason.contains("literal bounds"), "{}", e.reason);
        assert!(validate(&t("x", "<p>Prose (see 1..2) is fine</p>")).is_ok());
        assert!(validate(&t("x", "{% for i in (1..3) %}{{ i }}{% endfor %}")).is_ok());
        let e = validate(&EmailTemplate {
            syntax: "md_with_macros".into(),
            ..t("x", "y")
        })
        .unwrap_err();
        assert_eq!(e.part, "syntax");
    }

    #[test]
    fn text_is_made_from_html() {
        let t = html_to_text(
            "<html><head><title>T</title><style>p{}</style></head><body><h1>Hi &amp; welcome</h1><p>Line one<br>line two</p><p><a href=\"https://x.example/?a=1&amp;b=2\">Sign in</a></p></body></html>",
        );
        assert_eq!(
            t,
            "Hi & welcome\n\nLine one\nline two\n\nSign in (https://x.example/?a=1&b=2)\n"
        );
        // Tags in capitals; a decoded entity is not decoded again; unknown entities stay;
        // runs of blank lines become one, and none is left at either end.
        let t = html_to_text(
            "\n\n<P>a &amp;lt; b</P>\n\n\n<DIV>  c   d </DIV><BR/>e &bogus; &nbsp;f &amp;&quot;&#39;&gt;\n\n",
        );
        assert_eq!(t, "a &lt; b\n\nc d\n\ne &bogus; f &\"'>\n");
        assert_eq!(html_to_text(""), "\n");
    }

    #[test]
    fn every_builtin_template_in_every_language_snapshot() {
        for lang in LANGUAGES {
            for send in ["code", "link"] {
                let m = render(
                    None,
                    &sample_vars(send, Some(lang)),
                    "Tessera <no-reply@example.com>",
                    "sample@tessera",
                )
                .unwrap();
                insta::assert_snapshot!(
                    format!("{lang}_{send}"),
                    format!(
                        "From: {}\nSubject: {}\n\n--- text ---\n{}\n--- html ---\n{}",
                        m.from, m.subject, m.text, m.html
                    )
                );
            }
        }
    }
}

pub use tessera_core::connection::SmsTemplate;

/// What an SMS template may use.
#[derive(Debug, Clone)]
pub struct SmsVars {
    pub code: String,
    pub phone_number: String,
    pub application_name: String,
    pub request_language: Option<String>,
    pub lifetime_minutes: i64,
    /// `@<host> #<code>` is appended (WebOTP and iOS one-time-code autofill) when set.
    pub autofill_host: Option<String>,
}

const SMS_BUILTIN: &[(&str, &str)] = &[
    (
        "en",
        "{{ code }} is your verification code for {{ application.name }}. It expires in {{ lifetime_minutes }} minutes.",
    ),
    (
        "de",
        "{{ code }} ist Ihr Bestätigungscode für {{ application.name }}. Er läuft in {{ lifetime_minutes }} Minuten ab.",
    ),
    (
        "fr",
        "{{ code }} est votre code de vérification pour {{ application.name }}. Il expire dans {{ lifetime_minutes }} minutes.",
    ),
    (
        "es",
        "{{ code }} es tu código de verificación para {{ application.name }}. Caduca en {{ lifetime_minutes }} minutos.",
    ),
    (
        "nl",
        "{{ code }} is je verificatiecode voor {{ application.name }}. Hij verloopt over {{ lifetime_minutes }} minuten.",
    ),
];

/// Renders an SMS: the operator's template, else the built-in one in the request's language.
pub fn render_sms(template: Option<&SmsTemplate>, v: &SmsVars) -> Result<String, TemplateError> {
    let lang = pick_language(v.request_language.as_deref());
    let builtin = SMS_BUILTIN
        .iter()
        .find(|(l, _)| *l == lang)
        .map(|(_, t)| *t)
        .unwrap_or(SMS_BUILTIN[0].1);
    let mut body = match template {
        Some(t) if t.syntax == "md_with_macros" => {
            let minutes = v.lifetime_minutes.max(1).to_string();
            let mut out = t.body.clone();
            for (k, val) in [
                ("@@password@@", v.code.as_str()),
                ("@@code@@", v.code.as_str()),
                ("@@application.name@@", v.application_name.as_str()),
                ("@@phone_number@@", v.phone_number.as_str()),
                (
                    "@@request_language@@",
                    v.request_language.as_deref().unwrap_or_default(),
                ),
                ("@@lifetime_minutes@@", minutes.as_str()),
            ] {
                out = out.replace(k, val);
            }
            out
        }
        Some(t) => render_part("sms", &*parsed("sms", &t.body)?, &sms_globals(v))?,
        None => render_part("sms", &*parsed("sms", builtin)?, &sms_globals(v))?,
    };
    body = body.trim().to_string();
    if let Some(host) = &v.autofill_host {
        body.push_str(&format!("\n\n@{host} #{}", v.code));
    }
    Ok(body)
}

fn sms_globals(v: &SmsVars) -> liquid::Object {
    let value = json!({
        "code": v.code,
        "password": v.code,
        "send": "code",
        "phone_number": v.phone_number,
        "application": { "name": v.application_name },
        "request_language": v.request_language.as_deref().unwrap_or_default(),
        "lifetime_minutes": v.lifetime_minutes.max(1),
    });
    liquid::model::to_object(&value).unwrap_or_default()
}

/// Checks an SMS template compiles (at start, so a typo fails early).
pub fn validate_sms(t: &SmsTemplate) -> Result<(), TemplateError> {
    match t.syntax.as_str() {
        "md_with_macros" => Ok(()),
        "liquid" => parse("sms", &t.body).map(|_| ()),
        other => Err(TemplateError {
            part: "sms",
            reason: format!("syntax must be liquid or md_with_macros, not {other:?}"),
        }),
    }
}

#[cfg(test)]
mod sms_tests {
    use super::*;

    fn vars() -> SmsVars {
        SmsVars {
            code: "123456".into(),
            phone_number: "+14155552671".into(),
            application_name: "Acme".into(),
            request_language: Some("de-DE".into()),
            lifetime_minutes: 3,
            autofill_host: Some("login.acme.test".into()),
        }
    }

    #[test]
    fn sms_in_both_syntaxes_with_the_autofill_line() {
        let body = render_sms(None, &vars()).unwrap();
        assert_eq!(
            body,
            "123456 ist Ihr Bestätigungscode für Acme. Er läuft in 3 Minuten ab.\n\n@login.acme.test #123456"
        );
        let md = SmsTemplate {
            syntax: "md_with_macros".into(),
            body: "Code @@password@@ for @@application.name@@".into(),
        };
        let mut v = vars();
        v.autofill_host = None;
        assert_eq!(render_sms(Some(&md), &v).unwrap(), "Code 123456 for Acme");
        let liquid = SmsTemplate {
            syntax: "liquid".into(),
            body: "{% if request_language contains 'de' %}Ihr Code{% else %}Your code{% endif %}: {{ password }}".into(),
        };
        assert_eq!(render_sms(Some(&liquid), &v).unwrap(), "Ihr Code: 123456");
        assert!(
            validate_sms(&SmsTemplate {
                syntax: "liquid".into(),
                body: "{% if %}".into()
            })
            .is_err()
        );
        assert!(
            validate_sms(&SmsTemplate {
                syntax: "xml".into(),
                body: "x".into()
            })
            .is_err()
        );
    }
}
