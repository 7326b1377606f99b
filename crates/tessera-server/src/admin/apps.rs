//! Applications: the list, a new one (its secret shown once), the settings form with its
//! quick-start snippets, secret rotation and deletion. The dashboard's own application is
//! neither listed nor reachable here.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};
use serde_json::{Map, Value as Json, json};
use tessera_core::client::Client;

use super::{Admin, AdminError, Form, GRANTS, confirm, flash, page, see_other, seg};
use crate::ops::{DASHBOARD_CLIENT_ID, OpError, SCOPES, apply_client_fields};
use crate::state::AppState;

const TYPES: &[[&str; 3]] = &[
    [
        "regular_web",
        "Regular web application",
        "a server-side app, with a client secret",
    ],
    [
        "spa",
        "Single-page application",
        "runs in the browser: public, no secret",
    ],
    [
        "native",
        "Native application",
        "mobile or desktop: public, no secret",
    ],
];

/// The on/off settings the form shows, with a word on each.
const SWITCHES: &[[&str; 2]] = &[
    [
        "allow_browser_start",
        "Lock or auth0-js may start a sign-in from the web origins without the secret",
    ],
    [
        "cross_origin_authentication",
        "Lock and auth0-js may check codes at /co/authenticate",
    ],
    [
        "legacy_passwordless",
        "the older widgets' endpoints (Lock Passwordless v2, auth0.js v7)",
    ],
    [
        "trust_forwarded_for",
        "believe this back end's auth0-forwarded-for header",
    ],
];

fn href(id: &str) -> String {
    format!("/admin/applications/{}", seg(id))
}

/// The application, unless it is the dashboard's own.
async fn visible(st: &AppState, admin: &Admin, id: &str) -> Result<Client, AdminError> {
    if id == DASHBOARD_CLIENT_ID {
        return Err(AdminError::not_found(format!(
            "The client {id} does not exist."
        )));
    }
    Ok(admin.ops(st).get_client(id).await?)
}

async fn connection_names(st: &AppState, admin: &Admin) -> Result<Vec<String>, AdminError> {
    Ok(admin
        .ops(st)
        .list_connections()
        .await?
        .into_iter()
        .map(|(c, _)| c.name)
        .collect())
}

/// `GET /admin/applications`.
pub async fn list(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    RawQuery(q): RawQuery,
) -> Result<Response, AdminError> {
    let apps: Vec<Value> = admin
        .ops(&st)
        .list_clients()
        .await?
        .iter()
        .filter(|c| c.client_id != DASHBOARD_CLIENT_ID)
        .map(|c| {
            let s = &c.settings;
            context! { name => s.name, client_id => c.client_id, href => href(&c.client_id),
            app_type => s.app_type.auth0_name(), connections => s.connections,
            callbacks => s.callbacks }
        })
        .collect();
    Ok(page(
        Some(&admin),
        StatusCode::OK,
        "apps.html",
        context! { section => "applications", apps, flash => flash(q.as_deref()) },
    ))
}

fn new_view(f: &Form, connections: &[String]) -> Value {
    let app_type = match f.get("app_type") {
        "" => "regular_web",
        t => t,
    };
    let chosen = f.all("connection");
    let fresh = !f.has("name");
    let connections: Vec<Value> = connections
        .iter()
        .map(
            |n| context! { name => n, on => if fresh { n == "email" } else { chosen.contains(n) } },
        )
        .collect();
    context! {
        section => "applications", app_types => TYPES, connections,
        app => context! { name => f.get("name"), app_type, callbacks => f.get("callbacks"),
                          web_origins => f.get("web_origins"),
                          allowed_logout_urls => f.get("allowed_logout_urls") },
    }
}

/// `GET /admin/applications/new`.
pub async fn new_form(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
) -> Result<Response, AdminError> {
    let names = connection_names(&st, &admin).await?;
    Ok(page(
        Some(&admin),
        StatusCode::OK,
        "app_new.html",
        new_view(&Form::parse(b""), &names),
    ))
}

/// `POST /admin/applications`: creates it and shows its secret, once.
pub async fn create(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let f = Form::parse(&body);
    let mut m = Map::new();
    m.insert("name".into(), json!(f.get("name")));
    m.insert("app_type".into(), json!(f.get("app_type")));
    m.insert("callbacks".into(), json!(f.lines("callbacks")));
    m.insert("web_origins".into(), json!(f.lines("web_origins")));
    m.insert(
        "allowed_logout_urls".into(),
        json!(f.lines("allowed_logout_urls")),
    );
    m.insert("connections".into(), json!(f.all("connection")));
    match admin.ops(&st).create_client(&m).await {
        Ok((c, secret)) => Ok(page(
            Some(&admin),
            StatusCode::CREATED,
            "secret.html",
            context! { section => "applications", title => "Application created",
            name => c.settings.name, client_id => c.client_id, href => href(&c.client_id),
            secret, app_type => c.settings.app_type.auth0_name() },
        )),
        Err(OpError::Invalid(msg) | OpError::Conflict(msg)) => {
            let names = connection_names(&st, &admin).await?;
            let view = new_view(&f, &names);
            Ok(page(
                Some(&admin),
                StatusCode::BAD_REQUEST,
                "app_new.html",
                context! { error => msg, ..view },
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The settings page's values for `c` (as saved, or as just submitted).
fn detail_view(st: &AppState, c: &Client, connections: &[String]) -> Value {
    let s = &c.settings;
    let on = |list: &[String], n: &str| list.iter().any(|x| x == n);
    let grants: Vec<Value> = GRANTS
        .iter()
        .map(|g| context! { name => g, on => on(&s.grant_types, g) })
        .collect();
    let conns: Vec<Value> = connections
        .iter()
        .map(|n| context! { name => n, on => on(&s.connections, n) })
        .collect();
    let scopes: Vec<Value> = SCOPES
        .iter()
        .map(|n| context! { name => n, on => on(&s.management_scopes, n) })
        .collect();
    let switch_on = |name: &str| match name {
        "allow_browser_start" => s.allow_browser_start,
        "cross_origin_authentication" => s.cross_origin_authentication,
        "legacy_passwordless" => s.legacy_passwordless,
        _ => s.trust_forwarded_for,
    };
    let switches: Vec<Value> = SWITCHES
        .iter()
        .map(|[n, help]| context! { name => n, help, on => switch_on(n) })
        .collect();
    let domain = st.issuer.trim_end_matches('/').to_string();
    let tenant = if st.tenant.name.is_empty() {
        "tessera".to_string()
    } else {
        st.tenant.name.clone()
    };
    let response_type = if c.is_confidential() {
        "code"
    } else {
        "token id_token"
    };
    let callback = s
        .callbacks
        .first()
        .cloned()
        .unwrap_or_else(|| "https://app.example.com/callback".into());
    context! {
        section => "applications", domain, tenant, response_type, callback,
        grants, connections => conns, scopes, switches,
        app => context! {
            name => s.name, client_id => c.client_id, href => href(&c.client_id),
            app_type => s.app_type.auth0_name(), confidential => c.is_confidential(),
            callbacks => s.callbacks.join("\n"), web_origins => s.web_origins.join("\n"),
            allowed_logout_urls => s.allowed_logout_urls.join("\n"),
            id_token_lifetime => s.id_token_lifetime_secs.map(|l| l.to_string()).unwrap_or_default(),
            signing_alg => s.signing_alg.clone().unwrap_or_else(|| "RS256".into()),
            has_scopes => !s.management_scopes.is_empty(),
        },
    }
}

/// `GET /admin/applications/{id}`.
pub async fn detail(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, AdminError> {
    let c = visible(&st, &admin, &id).await?;
    let names = connection_names(&st, &admin).await?;
    let view = detail_view(&st, &c, &names);
    Ok(page(
        Some(&admin),
        StatusCode::OK,
        "app.html",
        context! { flash => flash(q.as_deref()), ..view },
    ))
}

/// The settings form as an Auth0 client patch: every field, so unticked boxes turn things off.
fn patch_from(f: &Form) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("name".into(), json!(f.get("name")));
    for key in ["callbacks", "web_origins", "allowed_logout_urls"] {
        m.insert(key.into(), json!(f.lines(key)));
    }
    m.insert("grant_types".into(), json!(f.all("grant")));
    m.insert("connections".into(), json!(f.all("connection")));
    m.insert("management_scopes".into(), json!(f.all("scope")));
    for [name, _] in SWITCHES {
        m.insert((*name).into(), json!(f.has(name)));
    }
    let lifetime = f.get("id_token_lifetime").trim();
    let lifetime = match lifetime.parse::<i64>() {
        _ if lifetime.is_empty() => Json::Null,
        Ok(n) => json!(n),
        Err(_) => json!(lifetime),
    };
    let mut jwt = json!({ "lifetime_in_seconds": lifetime });
    if f.has("signing_alg") {
        jwt["alg"] = json!(f.get("signing_alg"));
    }
    m.insert("jwt_configuration".into(), jwt);
    m
}

/// `POST /admin/applications/{id}`: saves the settings form.
pub async fn update(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let c = visible(&st, &admin, &id).await?;
    let patch = patch_from(&Form::parse(&body));
    match admin.ops(&st).update_client(&id, &patch).await {
        Ok(_) => Ok(see_other(&format!("{}?done=saved", href(&id)))),
        Err(OpError::Invalid(msg)) => {
            // Shown as submitted, so nothing typed is lost.
            let mut shown = c.clone();
            let _ = apply_client_fields(&mut shown.settings, &patch);
            let names = connection_names(&st, &admin).await?;
            let view = detail_view(&st, &shown, &names);
            Ok(page(
                Some(&admin),
                StatusCode::BAD_REQUEST,
                "app.html",
                context! { error => msg, ..view },
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /admin/applications/{id}/rotate-secret`: asks first.
pub async fn rotate_confirm(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let c = visible(&st, &admin, &id).await?;
    Ok(confirm(
        &admin,
        "applications",
        "Rotate the client secret?",
        format!(
            "{} gets a new secret, shown once. The current secret stops working at once: \
             update the application's configuration right after.",
            c.settings.name
        ),
        (&format!("{}/rotate-secret", href(&id)), &href(&id)),
        "Rotate the secret",
    ))
}

/// `POST /admin/applications/{id}/rotate-secret`: the new secret, shown once.
pub async fn rotate(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    visible(&st, &admin, &id).await?;
    let (c, secret) = admin.ops(&st).rotate_secret(&id).await?;
    Ok(page(
        Some(&admin),
        StatusCode::OK,
        "secret.html",
        context! { section => "applications", title => "New client secret",
        name => c.settings.name, client_id => c.client_id, href => href(&id),
        secret, app_type => c.settings.app_type.auth0_name() },
    ))
}

/// `GET /admin/applications/{id}/delete`: asks first.
pub async fn delete_confirm(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let c = visible(&st, &admin, &id).await?;
    Ok(confirm(
        &admin,
        "applications",
        "Delete the application?",
        format!(
            "{} ({}) and its codes, tokens and grants are deleted. Its users stay.",
            c.settings.name, c.client_id
        ),
        (&format!("{}/delete", href(&id)), &href(&id)),
        "Delete the application",
    ))
}

/// `POST /admin/applications/{id}/delete`.
pub async fn delete(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    visible(&st, &admin, &id).await?;
    admin.ops(&st).delete_client(&id).await?;
    Ok(see_other("/admin/applications?done=deleted"))
}
