//! The passwordless email, rendered when the code is issued.
//!
//! HTML is rendered by minijinja with auto-escaping, so an application name cannot inject
//! markup; the text part is rendered from its own template. The subject is a single line:
//! any line break in a value is replaced, so nothing can be smuggled into a header.

use minijinja::{AutoEscape, Environment, context};

use crate::message::EmailMessage;

/// Everything a template may use.
pub struct EmailContext<'a> {
    pub message_id: String,
    pub from: &'a str,
    pub to: &'a str,
    pub code: &'a str,
    pub application_name: &'a str,
    pub client_id: &'a str,
    pub connection: &'a str,
    pub lifetime_minutes: i64,
}

const SUBJECT: &str = "{{ code }} is your verification code for {{ application.name }}";
const TEXT: &str = "Your verification code for {{ application.name }} is:

    {{ code }}

It expires in {{ lifetime_minutes }} minute{% if lifetime_minutes != 1 %}s{% endif %} and works once.
If you did not ask to sign in, you can ignore this email.
";
const HTML: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ application.name }}</title></head>
<body style="font-family: -apple-system, Segoe UI, Roboto, sans-serif; color: #1f2328; background: #f6f8fa; padding: 24px;">
<div style="max-width: 480px; margin: 0 auto; background: #ffffff; border-radius: 8px; padding: 32px;">
<p>Your verification code for <strong>{{ application.name }}</strong> is:</p>
<p style="font-size: 32px; letter-spacing: 6px; font-weight: 700; margin: 24px 0;">{{ code }}</p>
<p>It expires in {{ lifetime_minutes }} minute{% if lifetime_minutes != 1 %}s{% endif %} and works once.</p>
<p style="color: #656d76; font-size: 13px;">If you did not ask to sign in, you can ignore this email.</p>
</div></body></html>
"#;

pub fn render_code_email(c: &EmailContext<'_>) -> Result<EmailMessage, minijinja::Error> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.add_template("subject.txt", SUBJECT)?;
    env.add_template("body.txt", TEXT)?;
    env.add_template("body.html", HTML)?;
    let ctx = context! {
        code => c.code,
        application => context! { name => c.application_name, clientID => c.client_id },
        connection => context! { name => c.connection },
        lifetime_minutes => c.lifetime_minutes.max(1),
        send => "code",
    };
    let subject = env.get_template("subject.txt")?.render(&ctx)?;
    Ok(EmailMessage {
        message_id: c.message_id.clone(),
        from: c.from.to_string(),
        to: c.to.to_string(),
        subject: one_line(&subject),
        text: env.get_template("body.txt")?.render(&ctx)?,
        html: env.get_template("body.html")?.render(&ctx)?,
    })
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(name: &'a str) -> EmailContext<'a> {
        EmailContext {
            message_id: "m1@t".into(),
            from: "Tessera <no-reply@example.com>",
            to: "user@example.com",
            code: "123456",
            application_name: name,
            client_id: "cid",
            connection: "email",
            lifetime_minutes: 3,
        }
    }

    #[test]
    fn renders_code_in_all_parts() {
        let m = render_code_email(&ctx("Acme")).unwrap();
        assert_eq!(m.subject, "123456 is your verification code for Acme");
        assert!(m.text.contains("123456") && m.text.contains("3 minutes"));
        let one = render_code_email(&EmailContext {
            lifetime_minutes: 1,
            ..ctx("Acme")
        })
        .unwrap();
        assert!(one.text.contains("expires in 1 minute and") && one.html.contains("1 minute and"));
        assert!(m.html.contains(">123456<"));
    }

    #[test]
    fn hostile_application_names_are_escaped_and_kept_on_one_line() {
        let m = render_code_email(&ctx("<script>x</script>\r\nBcc: evil@example.com")).unwrap();
        assert!(!m.html.contains("<script>"));
        assert!(m.html.contains("&lt;script&gt;"));
        assert!(!m.subject.contains('\n') && !m.subject.contains('\r'));
    }
}
