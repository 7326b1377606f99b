//! Signing keys: the list, rotation (a new current key) and revocation of a previous key.
//! After a change this node reloads its key ring at once; the others pick it up on their next
//! periodic refresh (or at the first token signed with a key they do not know).

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};
use tessera_store::KeyStatus;

use super::{Admin, AdminError, confirm, flash, page, see_other, seg, when};
use crate::state::AppState;

/// `GET /admin/keys`.
pub async fn list(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    RawQuery(q): RawQuery,
) -> Result<Response, AdminError> {
    let keys: Vec<Value> = admin
        .ops(&st)
        .list_keys()
        .await?
        .iter()
        .map(|k| {
            context! {
                kid => k.kid, alg => k.alg, status => k.status.as_str(), created => when(k.created_at),
                revocable => k.status == KeyStatus::Previous,
                revoke => format!("/admin/keys/{}/revoke", seg(&k.kid)),
                published => matches!(k.status, KeyStatus::Current | KeyStatus::Previous),
            }
        })
        .collect();
    Ok(page(
        Some(&admin),
        StatusCode::OK,
        "keys.html",
        context! { section => "keys", keys, flash => flash(q.as_deref()) },
    ))
}

/// `GET /admin/keys/rotate`: asks first.
pub async fn rotate_confirm(Extension(admin): Extension<Admin>) -> Response {
    confirm(
        &admin,
        "keys",
        "Rotate the signing key?",
        "A new key becomes current and signs every new token. The current key stays in the \
         JWKS as the previous key, so the tokens it signed keep verifying."
            .into(),
        ("/admin/keys/rotate", "/admin/keys"),
        "Rotate",
    )
}

/// `POST /admin/keys/rotate`.
pub async fn rotate(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
) -> Result<Response, AdminError> {
    admin.ops(&st).rotate_key(&st.secret).await?;
    refresh(&st).await;
    Ok(see_other("/admin/keys?done=rotated"))
}

/// `GET /admin/keys/{kid}/revoke`: asks first.
pub async fn revoke_confirm(
    Extension(admin): Extension<Admin>,
    Path(kid): Path<String>,
) -> Response {
    confirm(
        &admin,
        "keys",
        "Revoke this key?",
        format!(
            "{kid} leaves the JWKS at once: every token it signed stops verifying, and the \
             users holding them must sign in again."
        ),
        (&format!("/admin/keys/{}/revoke", seg(&kid)), "/admin/keys"),
        "Revoke",
    )
}

/// `POST /admin/keys/{kid}/revoke`.
pub async fn revoke(
    State(st): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path(kid): Path<String>,
) -> Result<Response, AdminError> {
    admin.ops(&st).revoke_key(&kid).await?;
    refresh(&st).await;
    Ok(see_other("/admin/keys?done=revoked"))
}

async fn refresh(st: &AppState) {
    if let Err(e) = st.keys.refresh(st.store.as_ref(), &st.secret).await {
        tracing::warn!(error = %e, "could not refresh signing keys");
    }
}
