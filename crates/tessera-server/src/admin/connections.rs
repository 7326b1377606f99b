//! Connections: their code settings, which applications use them, the email template editor
//! with its preview in each language, and the SMS text (Liquid or `md_with_macros`) with a
//! sample rendered as the phone would get it.
//!
//! The preview is a page of its own (`…/preview`), shown in a sandboxed frame of the editor:
//! the Preview button posts the editor's form into the frame (no JavaScript needed), and
//! `admin.js` presses it as the operator types. The rendering is the one `/passwordless/start`
//! uses (`tessera_delivery::templates::render`, with `sample_vars`), and the email's HTML is
//! shown in a nested `srcdoc` frame under a CSP with `sandbox`: no script of a template runs,
//! and nothing is fetched from elsewhere.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};
use serde_json::{Map, Value as Json, json};
use tessera_core::connection::{Connection, EmailTemplate, LinkConfirmation, Strategy};
use tessera_delivery::templates::{self, LANGUAGES};

use super::{Admin, AdminError, Form, flash, html, page, render_html, see_other, seg};
use crate::ops::{DASHBOARD_CLIENT_ID, OpError};
use crate::state::AppState;

/// Where the SMS editor starts when the built-in text is in use.
const SMS_STARTER: &str = "{{ code }} is your verification code for {{ application.name }}. It expires in {{ lifetime_minutes }} minutes.";

/// The preview page's own policy: inline styles (emails are made of them), images only as
/// `data:`, no scripts, no forms, an opaque origin, and only the dashboard may frame it.
pub const PREVIEW_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox";

fn href(name: &str) -> String {
    format!("/admin/connections/{}", seg(name))
}

/// `GET /admin/connections`.
pub async fn list(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
) -> Result<Response, AdminError> {
    let conns: Vec<Value> = admin
        .ops(&st)
        .list_connections()
        .await?
        .iter()
        .map(|(c, enabled)| {
            let apps = enabled
                .iter()
                .filter(|id| *id != DASHBOARD_CLIENT_ID)
                .count();
            let template = match (&c.strategy, &c.settings.email_template) {
                (Strategy::Email, Some(_)) => "custom",
                (Strategy::Email, None) => "built-in, translated",
                (Strategy::Sms, _) if c.settings.sms_template.is_some() => "custom",
                (Strategy::Sms, _) => "built-in, translated",
            };
            context! { name => c.name, href => href(&c.name), strategy => c.strategy.as_str(),
            apps, template, code_length => c.settings.code_length,
            lifetime => c.settings.code_lifetime_secs }
        })
        .collect();
    Ok(page(
        Some(&admin),
        StatusCode::OK,
        "connections.html",
        context! { section => "connections", conns },
    ))
}

/// The editor's fields, as text: from the stored connection, or as submitted.
struct Fields {
    code_length: String,
    code_lifetime: String,
    max_attempts: String,
    disable_signup: bool,
    magic: String,
    custom: bool,
    from: String,
    subject: String,
    body: String,
    sms_custom: bool,
    sms_body: String,
    sms_syntax: String,
    clients: Vec<String>,
}

impl Fields {
    fn stored(c: &Connection, enabled: &[String]) -> Fields {
        let s = &c.settings;
        // With the built-in email in use, the editor starts from its English text.
        let t = s
            .email_template
            .clone()
            .unwrap_or_else(|| templates::builtin_template("en"));
        Fields {
            code_length: s.code_length.to_string(),
            code_lifetime: s.code_lifetime_secs.to_string(),
            max_attempts: s.max_attempts.to_string(),
            disable_signup: s.disable_signup,
            magic: match s.magic_link_confirmation {
                LinkConfirmation::Auto => "auto",
                LinkConfirmation::Always => "always",
                LinkConfirmation::Never => "never",
            }
            .into(),
            custom: s.email_template.is_some(),
            from: t.from.unwrap_or_default(),
            subject: t.subject,
            body: t.body,
            sms_custom: s.sms_template.is_some(),
            sms_body: s
                .sms_template
                .as_ref()
                .map_or_else(|| SMS_STARTER.to_string(), |t| t.body.clone()),
            sms_syntax: s
                .sms_template
                .as_ref()
                .map_or_else(|| "liquid".to_string(), |t| t.syntax.clone()),
            clients: enabled.to_vec(),
        }
    }

    fn submitted(f: &Form) -> Fields {
        Fields {
            code_length: f.get("code_length").into(),
            code_lifetime: f.get("code_lifetime").into(),
            max_attempts: f.get("max_attempts").into(),
            disable_signup: f.has("disable_signup"),
            magic: f.get("magic_link_confirmation").into(),
            custom: f.get("template") == "custom",
            from: f.get("from").into(),
            subject: f.get("subject").into(),
            body: f.get("body").into(),
            sms_custom: f.get("sms_template") == "custom",
            sms_body: f.get("sms_body").into(),
            sms_syntax: f.get("sms_syntax").into(),
            clients: f.all("client"),
        }
    }

    /// The template the preview and the save use: `None` for the built-in one.
    fn template(&self) -> Option<EmailTemplate> {
        self.custom.then(|| EmailTemplate {
            from: Some(self.from.trim().to_string()).filter(|f| !f.is_empty()),
            subject: self.subject.trim().to_string(),
            body: self.body.clone(),
            syntax: "liquid".into(),
        })
    }
}

/// A number field: the number, or the text as typed (which Ops then refuses with its name).
fn num(text: &str) -> Json {
    let t = text.trim();
    t.parse::<i64>().map(|n| json!(n)).unwrap_or(json!(t))
}

/// The form as a connection patch in Auth0's names.
fn patch_from(c: &Connection, f: &Fields) -> Map<String, Json> {
    let mut o = Map::new();
    o.insert(
        "totp".into(),
        json!({"length": num(&f.code_length), "time_step": num(&f.code_lifetime)}),
    );
    o.insert("max_attempts".into(), num(&f.max_attempts));
    o.insert("disable_signup".into(), json!(f.disable_signup));
    if c.strategy == Strategy::Email {
        o.insert("magic_link_confirmation".into(), json!(f.magic));
        o.insert(
            "email".into(),
            match f.template() {
                None => Json::Null,
                Some(t) => json!({"from": t.from, "subject": t.subject, "body": t.body,
                                  "syntax": t.syntax}),
            },
        );
    }
    if c.strategy == Strategy::Sms {
        if f.sms_custom {
            o.insert("template".into(), json!(f.sms_body.trim()));
            o.insert("syntax".into(), json!(f.sms_syntax));
        } else {
            o.insert("template".into(), Json::Null);
        }
    }
    let mut m = Map::new();
    m.insert("options".into(), Json::Object(o));
    m.insert("enabled_clients".into(), json!(f.clients));
    m
}

async fn view(
    st: &AppState,
    admin: &Admin,
    c: &Connection,
    f: &Fields,
) -> Result<Value, AdminError> {
    let clients: Vec<Value> = admin
        .ops(st)
        .list_clients()
        .await?
        .iter()
        .filter(|a| a.client_id != DASHBOARD_CLIENT_ID)
        .map(|a| {
            context! { id => a.client_id, name => a.settings.name,
            on => f.clients.contains(&a.client_id) }
        })
        .collect();
    let base = href(&c.name);
    // What a phone gets with the saved text (sample values, English).
    let sms_sample = (c.strategy == Strategy::Sms).then(|| {
        let vars = templates::SmsVars {
            code: "123456".into(),
            phone_number: "+14155552671".into(),
            application_name: "My App".into(),
            request_language: Some("en".into()),
            lifetime_minutes: (c.settings.code_lifetime_secs.max(1) + 59) / 60,
            autofill_host: None,
        };
        templates::render_sms(c.settings.sms_template.as_ref(), &vars)
            .unwrap_or_else(|e| format!("(cannot render: {})", e.reason))
    });
    Ok(context! {
        section => "connections", clients, langs => LANGUAGES,
        conn => context! {
            name => c.name, strategy => c.strategy.as_str(), email => c.strategy == Strategy::Email,
            sms => c.strategy == Strategy::Sms, sms_sample,
            href => base.clone(), preview => format!("{base}/preview"),
            preview_src => format!("{base}/preview?lang=en&send=code"),
        },
        f => context! {
            code_length => f.code_length, code_lifetime => f.code_lifetime,
            max_attempts => f.max_attempts, disable_signup => f.disable_signup, magic => f.magic,
            custom => f.custom, from => f.from, subject => f.subject, body => f.body,
            sms_custom => f.sms_custom, sms_body => f.sms_body, sms_syntax => f.sms_syntax,
        },
    })
}

/// `GET /admin/connections/{name}`: the settings and the template editor.
pub async fn detail(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, AdminError> {
    let (c, enabled) = admin.ops(&st).get_connection(&name).await?;
    let v = view(&st, &admin, &c, &Fields::stored(&c, &enabled)).await?;
    Ok(page(
        Some(&admin),
        StatusCode::OK,
        "connection.html",
        context! { flash => flash(q.as_deref()), ..v },
    ))
}

/// `POST /admin/connections/{name}`: saves the settings and the template.
pub async fn update(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let (c, _) = admin.ops(&st).get_connection(&name).await?;
    let fields = Fields::submitted(&Form::parse(&body));
    match admin
        .ops(&st)
        .update_connection(&name, &patch_from(&c, &fields))
        .await
    {
        Ok(_) => Ok(see_other(&format!("{}?done=saved", href(&name)))),
        Err(OpError::Invalid(msg)) => {
            let v = view(&st, &admin, &c, &fields).await?;
            Ok(page(
                Some(&admin),
                StatusCode::BAD_REQUEST,
                "connection.html",
                context! { error => msg, ..v },
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The preview's language and kind of message, from the form or the query.
fn lang_and_send(lang: &str, send: &str) -> (&'static str, &'static str) {
    let lang = LANGUAGES.iter().find(|l| **l == lang).unwrap_or(&"en");
    let send = if send == "link" { "link" } else { "code" };
    (lang, send)
}

/// The rendered email (or the template's error) as the preview page.
fn preview(
    st: &AppState,
    template: Option<&EmailTemplate>,
    (lang, send): (&str, &str),
    lifetime_secs: i64,
) -> Response {
    let vars = templates::EmailVars {
        tenant: st.tenant.clone(),
        lifetime_minutes: (lifetime_secs.max(1) + 59) / 60,
        ..templates::sample_vars(send, Some(lang))
    };
    let source = match template {
        Some(_) => "your template".to_string(),
        None => format!(
            "the built-in template ({})",
            templates::pick_language(Some(lang))
        ),
    };
    let ctx = match templates::render(template, &vars, &st.email_from, "preview@tessera") {
        Ok(m) => context! { lang, send, source, from => m.from, to => m.to,
        subject => m.subject, html => m.html, text => m.text },
        Err(e) => context! { lang, send, source, error => e.to_string() },
    };
    let mut r = html(
        StatusCode::OK,
        render_html("preview.html", ctx),
        PREVIEW_CSP,
    );
    r.extensions_mut().insert(crate::authz::AllowFraming);
    r
}

/// `GET /admin/connections/{name}/preview?lang&send`: the saved template.
pub async fn preview_saved(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, AdminError> {
    let (c, _) = admin.ops(&st).get_connection(&name).await?;
    let f = Form::parse(q.unwrap_or_default().as_bytes());
    Ok(preview(
        &st,
        c.settings.email_template.as_ref(),
        lang_and_send(f.get("lang"), f.get("send")),
        c.settings.code_lifetime_secs,
    ))
}

/// `POST /admin/connections/{name}/preview`: the editor's form, unsaved.
pub async fn preview_form(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let (c, _) = admin.ops(&st).get_connection(&name).await?;
    let form = Form::parse(&body);
    let f = Fields::submitted(&form);
    let lifetime = f
        .code_lifetime
        .trim()
        .parse()
        .unwrap_or(c.settings.code_lifetime_secs);
    Ok(preview(
        &st,
        f.template().as_ref(),
        lang_and_send(form.get("preview_lang"), form.get("preview_send")),
        lifetime,
    ))
}
