//! Users (search, profile, block, unblock, delete) and the audit log (filters, one event).

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};
use serde_json::json;
use tessera_core::user::User;
use tessera_store::{Event, EventFilter};

use super::{Admin, AdminError, Form, confirm, flash, page, see_other, seg, when};
use crate::ops::log_json;
use crate::routes::management::user_json;
use crate::state::AppState;

/// How many users a search shows, and how many events the log shows.
const PAGE_SIZE: i64 = 100;

/// The audit event types Tessera records, for the log's filter.
const EVENT_TYPES: &[&str] = &[
    "s",
    "f",
    "cls",
    "fcls",
    "limit_wc",
    "limit_mu",
    "limit_sms",
    "sms_pumping",
    "fn",
    "seacft",
    "seccft",
    "sertft",
    "ferrt",
    "fecte",
    "slo",
    "sapi",
    "fapi",
];

fn href(id: &str) -> String {
    format!("/admin/users/{}", seg(id))
}

fn user_row(u: &User) -> Value {
    context! {
        user_id => u.user_id, href => href(&u.user_id), connection => u.connection,
        identity => u.email.clone().or(u.phone_number.clone()).unwrap_or_default(),
        created => when(u.created_at), last_login => u.last_login.map(when),
        logins => u.logins_count, blocked => u.blocked,
    }
}

/// `GET /admin/users?q=…`: users whose email or phone number contains the text, newest first.
pub async fn list(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    RawQuery(q): RawQuery,
) -> Result<Response, AdminError> {
    let f = Form::parse(q.as_deref().unwrap_or_default().as_bytes());
    let search = f.get("q").trim();
    let users: Vec<Value> = admin
        .ops(&st)
        .search_users(search, PAGE_SIZE)
        .await?
        .iter()
        .map(user_row)
        .collect();
    Ok(page(
        Some(&admin),
        StatusCode::OK,
        "users.html",
        context! { section => "users", q => search, users, limit => PAGE_SIZE,
        flash => flash(q.as_deref()) },
    ))
}

fn event_row(seq: i64, e: &Event) -> Value {
    context! {
        href => format!("/admin/logs/{seq}?at={}", e.at), date => when(e.at), kind => e.kind,
        description => e.description, client_id => e.client_id, ip => e.ip,
        user_id => e.user_id, user_href => e.user_id.as_deref().map(href),
    }
}

/// `GET /admin/users/{id}`: the profile, its metadata, and its latest events.
pub async fn detail(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, AdminError> {
    let ops = admin.ops(&st);
    let u = ops.get_user(&id).await?;
    let events: Vec<Value> = ops
        .logs(&EventFilter {
            kind: None,
            user_id: Some(u.user_id.clone()),
            client_id: None,
            from: None,
            to: None,
            after_seq: None,
            limit: 20,
        })
        .await?
        .iter()
        .map(|(seq, e)| event_row(*seq, e))
        .collect();
    let pretty = |v: &serde_json::Map<String, serde_json::Value>| {
        serde_json::to_string_pretty(v).unwrap_or_default()
    };
    let json = serde_json::to_string_pretty(&user_json(&u)).unwrap_or_default();
    Ok(page(
        Some(&admin),
        StatusCode::OK,
        "user.html",
        context! {
            section => "users", user => user_row(&u), events, json,
            email => u.email, email_verified => u.email_verified,
            phone => u.phone_number, phone_verified => u.phone_verified,
            name => u.name, nickname => u.nickname,
            app_metadata => pretty(&u.app_metadata), user_metadata => pretty(&u.user_metadata),
            logs_href => format!("/admin/logs?user_id={}",
                form_urlencoded::byte_serialize(u.user_id.as_bytes()).collect::<String>()),
            flash => flash(q.as_deref()),
        },
    ))
}

async fn set_blocked(
    st: &AppState,
    admin: &Admin,
    id: &str,
    blocked: bool,
) -> Result<Response, AdminError> {
    let patch = json!({ "blocked": blocked });
    let patch = patch.as_object().cloned().unwrap_or_default();
    admin.ops(st).update_user(id, &patch).await?;
    let done = if blocked { "blocked" } else { "unblocked" };
    Ok(see_other(&format!("{}?done={done}", href(id))))
}

/// `POST /admin/users/{id}/block`.
pub async fn block(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    set_blocked(&st, &admin, &id, true).await
}

/// `POST /admin/users/{id}/unblock`.
pub async fn unblock(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    set_blocked(&st, &admin, &id, false).await
}

/// `GET /admin/users/{id}/delete`: asks first.
pub async fn delete_confirm(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let u = admin.ops(&st).get_user(&id).await?;
    let who = u
        .email
        .clone()
        .or(u.phone_number.clone())
        .unwrap_or_default();
    Ok(confirm(
        &admin,
        "users",
        "Delete the user?",
        format!(
            "{who} ({}) is deleted with their sessions, tokens and pending code. \
             Signing in again makes a new user.",
            u.user_id
        ),
        (&format!("{}/delete", href(&id)), &href(&id)),
        "Delete the user",
    ))
}

/// `POST /admin/users/{id}/delete`.
pub async fn delete(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    admin.ops(&st).delete_user(&id).await?;
    Ok(see_other("/admin/users?done=deleted"))
}

/// A filter's time: `datetime-local` (`2026-11-22T02:31`, taken as UTC), RFC 3339, or Unix
/// seconds.
fn filter_time(raw: &str) -> Result<Option<i64>, AdminError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    if let Ok(n) = raw.parse::<i64>() {
        return Ok(Some(n));
    }
    if let Ok(t) = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
    {
        return Ok(Some(t.unix_timestamp()));
    }
    let local = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let local_secs =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(raw, &local)
        .or_else(|_| time::PrimitiveDateTime::parse(raw, &local_secs))
        .map(|t| Some(t.assume_utc().unix_timestamp()))
        .map_err(|_| {
            AdminError::new(
                StatusCode::BAD_REQUEST,
                "Invalid filter",
                format!("{raw:?} is not a time (use 2026-11-22T02:31, in UTC)"),
            )
        })
}

/// `GET /admin/logs?type&user_id&client_id&from&to`: the newest matching events.
pub async fn logs(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    RawQuery(q): RawQuery,
) -> Result<Response, AdminError> {
    let f = Form::parse(q.as_deref().unwrap_or_default().as_bytes());
    let text = |k: &str| Some(f.get(k).trim().to_string()).filter(|s| !s.is_empty());
    let filter = EventFilter {
        kind: text("type"),
        user_id: text("user_id"),
        client_id: text("client_id"),
        from: filter_time(f.get("from"))?,
        to: filter_time(f.get("to"))?,
        after_seq: None,
        limit: PAGE_SIZE,
    };
    let events: Vec<Value> = admin
        .ops(&st)
        .logs(&filter)
        .await?
        .iter()
        .map(|(seq, e)| event_row(*seq, e))
        .collect();
    Ok(page(
        Some(&admin),
        StatusCode::OK,
        "logs.html",
        context! {
            section => "logs", events, types => EVENT_TYPES, limit => PAGE_SIZE,
            filter => context! { kind => f.get("type"), user_id => f.get("user_id"),
                                 client_id => f.get("client_id"), from => f.get("from"),
                                 to => f.get("to") },
        },
    ))
}

/// `GET /admin/logs/{seq}?at=…`: one event. The store finds events by filter, so the link
/// carries the event's second (`at`) and the event is looked for among that second's.
pub async fn log_detail(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(seq): Path<i64>,
    RawQuery(q): RawQuery,
) -> Result<Response, AdminError> {
    let f = Form::parse(q.as_deref().unwrap_or_default().as_bytes());
    let missing = || AdminError::not_found(format!("There is no event {seq} at that time."));
    let at: i64 = f.get("at").parse().map_err(|_| missing())?;
    let found = admin
        .ops(&st)
        .logs(&EventFilter {
            kind: None,
            user_id: None,
            client_id: None,
            from: Some(at),
            to: Some(at + 1),
            after_seq: Some(seq - 1),
            limit: 10_000,
        })
        .await?
        .into_iter()
        .find(|(s, _)| *s == seq)
        .ok_or_else(missing)?;
    let (seq, e) = found;
    let json = serde_json::to_string_pretty(&log_json(seq, &e)).unwrap_or_default();
    Ok(page(
        Some(&admin),
        StatusCode::OK,
        "log.html",
        context! { section => "logs", e => event_row(seq, &e), seq, log_id => e.id,
        connection => e.connection, user_agent => e.user_agent, json },
    ))
}
