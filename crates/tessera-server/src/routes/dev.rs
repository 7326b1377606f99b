//! The dev mailbox (`/_dev/mailbox`, `/_dev/mailbox.json`): dev mode only.
//! Outside dev mode these routes are not mounted at all.

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, context};

use crate::error::ApiError;
use crate::state::AppState;

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tessera dev mailbox</title>
<style>
body { font-family: -apple-system, Segoe UI, Roboto, sans-serif; margin: 0; background: #f6f8fa; color: #1f2328; }
header { background: #24292f; color: #fff; padding: 16px 24px; }
main { max-width: 860px; margin: 24px auto; padding: 0 16px; }
article { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; margin-bottom: 16px; padding: 16px 20px; }
.meta { color: #656d76; font-size: 13px; }
pre { white-space: pre-wrap; background: #f6f8fa; padding: 12px; border-radius: 6px; }
</style></head>
<body><header><strong>Tessera</strong> · dev mailbox ({{ messages|length }} messages, newest first)</header>
<main>
{% for m in messages %}
<article>
  <h2>{{ m.subject }}</h2>
  <div class="meta">To {{ m.to }} · From {{ m.from }} · Message-ID {{ m.message_id }}</div>
  <pre>{{ m.text }}</pre>
</article>
{% else %}
<p>No messages yet. Start a sign-in with <code>POST /passwordless/start</code>.</p>
{% endfor %}
</main></body></html>
"#;

pub async fn mailbox_html(State(st): State<AppState>) -> Result<Response, ApiError> {
    let messages = st
        .mailer
        .dev_mailbox()
        .map(|m| m.messages())
        .unwrap_or_default();
    let mut env = Environment::new();
    env.add_template("mailbox.html", PAGE)
        .map_err(ApiError::internal)?;
    let html = env
        .get_template("mailbox.html")
        .and_then(|t| t.render(context! { messages => messages }))
        .map_err(ApiError::internal)?;
    Ok(Html(html).into_response())
}

pub async fn mailbox_json(State(st): State<AppState>) -> Response {
    let messages = st
        .mailer
        .dev_mailbox()
        .map(|m| m.messages())
        .unwrap_or_default();
    axum::Json(serde_json::json!({ "messages": messages })).into_response()
}
