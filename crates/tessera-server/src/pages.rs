//! Tessera's own HTML pages: the hosted login page, the magic-link confirmation, errors.
//!
//! Server-rendered with minijinja, auto-escaped, no JavaScript (the default CSP forbids
//! scripts), usable on a phone, and translated into the languages of the email templates.

use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{Environment, Value, context};

/// A page language: one of [`tessera_delivery::templates::LANGUAGES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lang(pub &'static str);

impl Lang {
    /// From `ui_locales` (space-separated, preferred first), else the request's languages.
    pub fn pick(ui_locales: Option<&str>, accept: Option<&str>) -> Lang {
        let langs = tessera_delivery::templates::LANGUAGES;
        for tag in ui_locales.unwrap_or_default().split_whitespace() {
            let primary = tag.split(['-', '_']).next().unwrap_or_default();
            if let Some(l) = langs.iter().find(|l| l.eq_ignore_ascii_case(primary)) {
                return Lang(l);
            }
        }
        Lang(tessera_delivery::templates::pick_language(accept))
    }
}

/// The words on the pages, per language.
struct Words {
    sign_in_to: &'static str,
    email_label: &'static str,
    send_code: &'static str,
    send_link: &'static str,
    code_label: &'static str,
    code_sent: &'static str,
    verify: &'static str,
    use_other: &'static str,
    check_email: &'static str,
    link_sent: &'static str,
    confirm_title: &'static str,
    confirm_text: &'static str,
    requested_from: &'static str,
    confirm: &'static str,
    not_you: &'static str,
    logged_out: &'static str,
    phone_label: &'static str,
    send_sms: &'static str,
    or: &'static str,
}

const EN: Words = Words {
    sign_in_to: "Sign in to",
    email_label: "Email address",
    send_code: "Email me a code",
    send_link: "Email me a link",
    code_label: "Verification code",
    code_sent: "We sent a code to",
    verify: "Continue",
    use_other: "Use another email address",
    check_email: "Check your email",
    link_sent: "We sent a sign-in link to",
    confirm_title: "Confirm sign-in",
    confirm_text: "Press the button to sign in to",
    requested_from: "The link was requested from",
    confirm: "Sign in",
    not_you: "If you did not ask for this link, close this page: nothing happens.",
    logged_out: "You are signed out.",
    phone_label: "Phone number",
    send_sms: "Text me a code",
    or: "or",
};

const DE: Words = Words {
    sign_in_to: "Anmelden bei",
    email_label: "E-Mail-Adresse",
    send_code: "Code per E-Mail senden",
    send_link: "Link per E-Mail senden",
    code_label: "Bestätigungscode",
    code_sent: "Wir haben einen Code gesendet an",
    verify: "Weiter",
    use_other: "Andere E-Mail-Adresse verwenden",
    check_email: "Sehen Sie in Ihr Postfach",
    link_sent: "Wir haben einen Anmeldelink gesendet an",
    confirm_title: "Anmeldung bestätigen",
    confirm_text: "Klicken Sie auf die Schaltfläche, um sich anzumelden bei",
    requested_from: "Der Link wurde angefordert von",
    confirm: "Anmelden",
    not_you: "Wenn Sie diesen Link nicht angefordert haben, schließen Sie diese Seite: Es passiert nichts.",
    logged_out: "Sie sind abgemeldet.",
    phone_label: "Telefonnummer",
    send_sms: "Code per SMS senden",
    or: "oder",
};

const FR: Words = Words {
    sign_in_to: "Se connecter à",
    email_label: "Adresse e-mail",
    send_code: "Recevoir un code par e-mail",
    send_link: "Recevoir un lien par e-mail",
    code_label: "Code de vérification",
    code_sent: "Nous avons envoyé un code à",
    verify: "Continuer",
    use_other: "Utiliser une autre adresse",
    check_email: "Consultez vos e-mails",
    link_sent: "Nous avons envoyé un lien de connexion à",
    confirm_title: "Confirmer la connexion",
    confirm_text: "Appuyez sur le bouton pour vous connecter à",
    requested_from: "Le lien a été demandé depuis",
    confirm: "Se connecter",
    not_you: "Si vous n'avez pas demandé ce lien, fermez cette page : rien ne se passera.",
    logged_out: "Vous êtes déconnecté.",
    phone_label: "Numéro de téléphone",
    send_sms: "Recevoir un code par SMS",
    or: "ou",
};

const ES: Words = Words {
    sign_in_to: "Iniciar sesión en",
    email_label: "Correo electrónico",
    send_code: "Enviarme un código",
    send_link: "Enviarme un enlace",
    code_label: "Código de verificación",
    code_sent: "Hemos enviado un código a",
    verify: "Continuar",
    use_other: "Usar otra dirección",
    check_email: "Revisa tu correo",
    link_sent: "Hemos enviado un enlace de acceso a",
    confirm_title: "Confirmar inicio de sesión",
    confirm_text: "Pulsa el botón para iniciar sesión en",
    requested_from: "El enlace se solicitó desde",
    confirm: "Iniciar sesión",
    not_you: "Si no pediste este enlace, cierra esta página: no pasará nada.",
    logged_out: "Has cerrado la sesión.",
    phone_label: "Número de teléfono",
    send_sms: "Enviarme un código por SMS",
    or: "o",
};

const NL: Words = Words {
    sign_in_to: "Inloggen bij",
    email_label: "E-mailadres",
    send_code: "Stuur mij een code",
    send_link: "Stuur mij een link",
    code_label: "Verificatiecode",
    code_sent: "We hebben een code gestuurd naar",
    verify: "Doorgaan",
    use_other: "Een ander e-mailadres gebruiken",
    check_email: "Controleer je e-mail",
    link_sent: "We hebben een inloglink gestuurd naar",
    confirm_title: "Inloggen bevestigen",
    confirm_text: "Druk op de knop om in te loggen bij",
    requested_from: "De link is aangevraagd vanaf",
    confirm: "Inloggen",
    not_you: "Heb je deze link niet aangevraagd? Sluit deze pagina: er gebeurt niets.",
    logged_out: "Je bent uitgelogd.",
    phone_label: "Telefoonnummer",
    send_sms: "Stuur mij een code per sms",
    or: "of",
};

fn words(lang: Lang) -> &'static Words {
    match lang.0 {
        "de" => &DE,
        "fr" => &FR,
        "es" => &ES,
        "nl" => &NL,
        _ => &EN,
    }
}

fn words_value(lang: Lang) -> Value {
    let w = words(lang);
    context! {
        sign_in_to => w.sign_in_to, email_label => w.email_label, send_code => w.send_code,
        send_link => w.send_link, code_label => w.code_label, code_sent => w.code_sent,
        verify => w.verify, use_other => w.use_other, check_email => w.check_email,
        link_sent => w.link_sent, confirm_title => w.confirm_title, confirm_text => w.confirm_text,
        requested_from => w.requested_from, confirm => w.confirm, not_you => w.not_you,
        logged_out => w.logged_out, phone_label => w.phone_label, send_sms => w.send_sms,
        or => w.or,
    }
}

const LAYOUT: &str = r#"<!DOCTYPE html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{% block title %}{% endblock %}</title>
<style>
*{box-sizing:border-box}
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f3f4f6;color:#111827}
main{max-width:400px;margin:8vh auto;padding:32px 28px;background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:22px;margin:0 0 20px}
label{display:block;font-size:14px;margin:0 0 6px;color:#374151}
input[type=email],input[type=text],input[type=tel]{width:100%;font-size:18px;padding:12px;border:1px solid #d1d5db;border-radius:8px;margin-bottom:16px}
input#code{letter-spacing:.3em;text-align:center;font-size:24px}
button{width:100%;font-size:16px;padding:12px;border:0;border-radius:8px;background:#1f2937;color:#fff;cursor:pointer;margin-bottom:10px}
button.secondary{background:#fff;color:#1f2937;border:1px solid #d1d5db}
.error{background:#fef2f2;color:#991b1b;border:1px solid #fecaca;border-radius:8px;padding:10px 12px;margin-bottom:16px;font-size:14px}
.muted{color:#6b7280;font-size:14px}
a{color:#1f2937}
@media (max-width:480px){main{margin:0;border-radius:0;min-height:100vh}}
</style></head>
<body><main>{% block body %}{% endblock %}</main></body></html>"#;

const LOGIN: &str = r#"{% extends "layout.html" %}
{% block title %}{{ w.sign_in_to }} {{ app }}{% endblock %}
{% block body %}
<h1>{{ w.sign_in_to }} {{ app }}</h1>
{% if error %}<div class="error" id="error" role="alert">{{ error }}</div>{% endif %}
{% if email_enabled %}
<form method="post" action="/login/start">
  <input type="hidden" name="req" value="{{ req }}">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <label for="email">{{ w.email_label }}</label>
  <input type="email" id="email" name="email" value="{{ email }}" autocomplete="email" inputmode="email" required autofocus>
  <button type="submit" id="send-code" name="send" value="code">{{ w.send_code }}</button>
  <button type="submit" id="send-link" name="send" value="link" class="secondary">{{ w.send_link }}</button>
</form>
{% endif %}
{% if email_enabled and sms_enabled %}<p class="muted" style="text-align:center">{{ w.or }}</p>{% endif %}
{% if sms_enabled %}
<form method="post" action="/login/start">
  <input type="hidden" name="req" value="{{ req }}">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <label for="phone">{{ w.phone_label }}</label>
  <input type="tel" id="phone" name="phone" value="{{ phone }}" autocomplete="tel" inputmode="tel" placeholder="+14155552671" required{% if not email_enabled %} autofocus{% endif %}>
  <button type="submit" id="send-sms" name="send" value="sms">{{ w.send_sms }}</button>
</form>
{% endif %}
{% endblock %}"#;

const CODE: &str = r#"{% extends "layout.html" %}
{% block title %}{{ w.sign_in_to }} {{ app }}{% endblock %}
{% block body %}
<h1>{{ w.sign_in_to }} {{ app }}</h1>
{% if error %}<div class="error" id="error" role="alert">{{ error }}</div>{% endif %}
<p class="muted">{{ w.code_sent }} <strong id="sent-to">{{ email }}</strong>.</p>
<form method="post" action="/login/verify">
  <input type="hidden" name="req" value="{{ req }}">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <input type="hidden" name="connection" value="{{ connection }}">
  <input type="hidden" name="{{ 'phone' if connection == 'sms' else 'email' }}" value="{{ email }}">
  <label for="code">{{ w.code_label }}</label>
  <input type="text" id="code" name="code" autocomplete="one-time-code" inputmode="numeric" pattern="[0-9]*" maxlength="10" required autofocus>
  <button type="submit" id="verify">{{ w.verify }}</button>
</form>
<p class="muted"><a href="{{ restart }}">{{ w.use_other }}</a></p>
{% if connection == 'sms' %}<script src="/static/webotp.js"></script>{% endif %}
{% endblock %}"#;

const CHECK_EMAIL: &str = r#"{% extends "layout.html" %}
{% block title %}{{ w.check_email }}{% endblock %}
{% block body %}
<h1 id="check-email">{{ w.check_email }}</h1>
<p>{{ w.link_sent }} <strong id="sent-to">{{ email }}</strong>.</p>
<p class="muted"><a href="{{ restart }}">{{ w.use_other }}</a></p>
{% endblock %}"#;

const CONFIRM: &str = r#"{% extends "layout.html" %}
{% block title %}{{ w.confirm_title }}{% endblock %}
{% block body %}
<h1>{{ w.confirm_title }}</h1>
<p>{{ w.confirm_text }} <strong id="app-name">{{ app }}</strong> ({{ email }}).</p>
<p class="muted" id="requested-from">{{ w.requested_from }} {{ device }}{% if ip %} ({{ ip }}){% endif %}{% if when %}, {{ when }}{% endif %}.</p>
<form method="post" action="/passwordless/verify_redirect">
  {% for p in params %}<input type="hidden" name="{{ p[0] }}" value="{{ p[1] }}">{% endfor %}
  <button type="submit" id="confirm">{{ w.confirm }}</button>
</form>
<p class="muted">{{ w.not_you }}</p>
{% endblock %}"#;

const ERROR: &str = r#"{% extends "layout.html" %}
{% block title %}{{ title }}{% endblock %}
{% block body %}
<h1>{{ title }}</h1>
<div class="error" id="error" role="alert">{{ message }}</div>
{% endblock %}"#;

const MESSAGE: &str = r#"{% extends "layout.html" %}
{% block title %}{{ message }}{% endblock %}
{% block body %}
<h1 id="message">{{ message }}</h1>
{% endblock %}"#;

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut e = Environment::new();
        // `.html` names switch auto-escaping on.
        for (name, src) in [
            ("layout.html", LAYOUT),
            ("login.html", LOGIN),
            ("code.html", CODE),
            ("check_email.html", CHECK_EMAIL),
            ("confirm.html", CONFIRM),
            ("error.html", ERROR),
            ("message.html", MESSAGE),
        ] {
            if let Err(err) = e.add_template(name, src) {
                tracing::error!(error = %err, name, "a built-in page template does not compile");
            }
        }
        e
    })
}

fn render(name: &str, lang: Lang, status: StatusCode, ctx: Value) -> Response {
    let ctx = context! { lang => lang.0, w => words_value(lang), ..ctx };
    let html = env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, name, "page rendering failed");
            "<!DOCTYPE html><title>Error</title><p>Something went wrong.</p>".into()
        });
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The first step of the hosted login page: the email address.
pub struct LoginPage<'a> {
    pub app: &'a str,
    pub req: &'a str,
    pub csrf: &'a str,
    pub email: &'a str,
    pub phone: &'a str,
    pub email_enabled: bool,
    pub sms_enabled: bool,
}

pub fn login(lang: Lang, page: &LoginPage<'_>, error: Option<&str>) -> Response {
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let p = page;
    render(
        "login.html",
        lang,
        status,
        context! { app => p.app, req => p.req, csrf => p.csrf, email => p.email, phone => p.phone,
        email_enabled => p.email_enabled, sms_enabled => p.sms_enabled, error },
    )
}

/// The second step: the code.
#[allow(clippy::too_many_arguments)]
pub fn code(
    lang: Lang,
    app: &str,
    req: &str,
    csrf: &str,
    (connection, email): (&str, &str),
    restart: &str,
    error: Option<&str>,
) -> Response {
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    render(
        "code.html",
        lang,
        status,
        context! { app, req, csrf, connection, email, restart, error },
    )
}

pub fn check_email(lang: Lang, email: &str, restart: &str) -> Response {
    render(
        "check_email.html",
        lang,
        StatusCode::OK,
        context! { email, restart },
    )
}

/// The magic-link confirmation page: one button that POSTs the link's parameters.
pub fn confirm(
    lang: Lang,
    app: &str,
    email: &str,
    device: &str,
    ip: Option<&str>,
    when: Option<&str>,
    params: &[(String, String)],
) -> Response {
    let params: Vec<[&str; 2]> = params
        .iter()
        .map(|(k, v)| [k.as_str(), v.as_str()])
        .collect();
    render(
        "confirm.html",
        lang,
        StatusCode::OK,
        context! { app, email, device, ip, when, params },
    )
}

pub fn error_page(lang: Lang, status: StatusCode, title: &str, message: &str) -> Response {
    render("error.html", lang, status, context! { title, message })
}

pub fn logged_out(lang: Lang) -> Response {
    let message = words(lang).logged_out;
    render("message.html", lang, StatusCode::OK, context! { message })
}

/// A short description of a browser from its User-Agent ("Firefox on Linux").
pub fn describe_device(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent else {
        return "an unknown device".into();
    };
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("python", "a Python program"),
        ("node", "a Node.js program"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_string(),
        (None, Some(o)) => format!("a browser on {o}"),
        (None, None) => "an unknown device".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    async fn body(r: Response) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn pages_escape_and_translate() {
        let page = LoginPage {
            app: "<script>alert(1)</script>",
            req: "r",
            csrf: "c",
            email: "\"><img>",
            phone: "",
            email_enabled: true,
            sms_enabled: true,
        };
        let html = body(login(Lang("de"), &page, None)).await;
        assert!(html.contains("id=\"phone\"") && html.contains("Code per SMS senden"));
        assert!(html.contains("Anmelden bei"));
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("\"><img>"));
        let html = body(code(
            Lang("en"),
            "App",
            "r",
            "c",
            ("email", "a@b.co"),
            "/x",
            None,
        ))
        .await;
        assert!(html.contains("autocomplete=\"one-time-code\""));
        assert!(!html.contains("webotp.js"));
        let html = body(code(
            Lang("en"),
            "App",
            "r",
            "c",
            ("sms", "+14155552671"),
            "/x",
            None,
        ))
        .await;
        assert!(html.contains("webotp.js") && html.contains("name=\"phone\""));
        for l in ["en", "de", "fr", "es", "nl"] {
            let html = body(check_email(Lang(l), "a@b.co", "/x")).await;
            assert!(html.contains("id=\"check-email\""), "{l}");
            assert!(html.contains(&format!("lang=\"{l}\"")), "{l}");
        }
    }

    #[test]
    fn languages_are_picked_from_ui_locales_first() {
        assert_eq!(Lang::pick(Some("fr-CA en"), Some("de")), Lang("fr"));
        assert_eq!(Lang::pick(Some("xx"), Some("nl;q=0.9")), Lang("nl"));
        assert_eq!(Lang::pick(None, None), Lang("en"));
    }

    #[test]
    fn devices_are_described_without_details() {
        assert_eq!(
            describe_device(Some(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
            )),
            "Chrome on Linux"
        );
        assert_eq!(describe_device(None), "an unknown device");
    }
}
