//! Issuing tokens: the id_token, the access token (a JWT for an API, opaque for `/userinfo`),
//! and rotating refresh tokens. Tokens are returned once; refresh tokens are stored only as
//! SHA-256 digests, and opaque access tokens are sealed and stored nowhere ([`SealedAccess`]).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use tessera_core::client::{Client, GRANT_REFRESH_TOKEN};
use tessera_core::crypto::sha256;
use tessera_core::jwt::Alg;
use tessera_core::rand::{hex_id, token};
use tessera_core::scope::Scope;
use tessera_core::user::User;
use tessera_store::RefreshToken;

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// Whether to issue a refresh token, and into which family.
pub enum Refresh {
    No,
    /// Issue one if `offline_access` was asked for and is allowed.
    IfAllowed,
    /// Rotation: the new token joins this family and keeps its expiry, so a session has an
    /// absolute lifetime however often it is refreshed.
    Rotate {
        family_id: String,
        expires_at: i64,
    },
}

pub struct Grant<'a> {
    pub user: &'a User,
    pub client: &'a Client,
    pub scope: Scope,
    pub audience: Option<&'a ApiConfig>,
    /// Browser flows only; the OTP grant never puts a nonce in the id_token.
    pub nonce: Option<String>,
    pub refresh: Refresh,
    /// The authorization code these tokens come from: it tags the access token and names the
    /// refresh-token family, so a replayed code can revoke both.
    pub grant_id: Option<String>,
    /// Adds `at_hash` to the id_token (implicit `token id_token` responses).
    pub at_hash: bool,
    /// Adds `user_id` (= `sub`) to the id_token, as the old widgets expect from `/oauth/ro`.
    pub legacy_user_id: bool,
}

/// Issues the tokens and returns the `/oauth/token` JSON body.
pub async fn issue(st: &AppState, g: Grant<'_>) -> Result<Value, ApiError> {
    let now = st.now();
    let keys = st.keys.get();
    let mut body = Map::new();

    let family = match g.refresh {
        Refresh::No => None,
        Refresh::IfAllowed if offline_allowed(g.client, &g.scope, g.audience) => Some((
            g.grant_id
                .clone()
                .unwrap_or_else(|| hex_id(st.rng.as_ref())),
            now + st.tokens.refresh_token_lifetime_secs,
        )),
        Refresh::IfAllowed => None,
        Refresh::Rotate {
            family_id,
            expires_at,
        } => Some((family_id, expires_at)),
    };
    // Opaque access tokens carry the grant they come from (the authorization code, else the
    // refresh-token family), so a replayed code or refresh token revokes them too.
    let access_grant = g
        .grant_id
        .clone()
        .or_else(|| family.as_ref().map(|(f, _)| f.clone()));
    let (access_token, expires_in) = match g.audience {
        Some(api) => {
            let lifetime = api
                .token_lifetime_secs
                .unwrap_or(st.tokens.access_token_lifetime_secs);
            let aud = if g.scope.has("openid") {
                json!([api.identifier, format!("{}userinfo", st.issuer)])
            } else {
                json!(api.identifier)
            };
            let mut c = Map::new();
            c.insert("iss".into(), json!(st.issuer));
            c.insert("sub".into(), json!(g.user.user_id));
            c.insert("aud".into(), aud);
            c.insert("iat".into(), json!(now));
            c.insert("exp".into(), json!(now + lifetime));
            c.insert("scope".into(), json!(g.scope.as_string()));
            c.insert("azp".into(), json!(g.client.client_id));
            c.insert("jti".into(), json!(hex_id(st.rng.as_ref())));
            (keys.signing.sign(&c).map_err(ApiError::internal)?, lifetime)
        }
        None => {
            let lifetime = st.tokens.access_token_lifetime_secs;
            let t = seal_access_token(
                st,
                &SealedAccess {
                    user_id: g.user.user_id.clone(),
                    client_id: g.client.client_id.clone(),
                    scope: g.scope.as_string(),
                    expires_at: now + lifetime,
                    grant_id: access_grant,
                },
            );
            (t, lifetime)
        }
    };
    body.insert("access_token".into(), json!(access_token));

    if g.scope.has("openid") {
        let mut c = Map::new();
        c.insert("iss".into(), json!(st.issuer));
        c.insert("sub".into(), json!(g.user.user_id));
        c.insert("aud".into(), json!(g.client.client_id));
        c.insert("iat".into(), json!(now));
        let lifetime = g
            .client
            .settings
            .id_token_lifetime_secs
            .unwrap_or(st.tokens.id_token_lifetime_secs);
        c.insert("exp".into(), json!(now + lifetime));
        if let Some(n) = &g.nonce {
            c.insert("nonce".into(), json!(n));
        }
        if g.legacy_user_id {
            c.insert("user_id".into(), json!(g.user.user_id));
        }
        if g.at_hash {
            // OpenID Connect Core §3.2.2.9: the left half of the SHA-256 of the access token.
            let digest = sha256(&access_token);
            c.insert(
                "at_hash".into(),
                json!(URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])),
            );
        }
        c.extend(g.user.claims(&g.scope));
        let signer = match g.client.signing_alg() {
            Alg::RS256 => Arc::clone(&keys.signing),
            alg => st
                .keys
                .signer(alg, st.store.as_ref(), &st.secret, st.rng.as_ref(), now)
                .await
                .map_err(ApiError::internal)?,
        };
        body.insert(
            "id_token".into(),
            json!(signer.sign(&c).map_err(ApiError::internal)?),
        );
    }

    if let Some((family_id, expires_at)) = family {
        let t = token(st.rng.as_ref());
        let inserted = st
            .store
            .insert_refresh_token(&RefreshToken {
                token_hash: sha256(&t),
                family_id,
                user_id: g.user.user_id.clone(),
                client_id: g.client.client_id.clone(),
                scope: g.scope.as_string(),
                audience: g.audience.map(|a| a.identifier.clone()),
                created_at: now,
                expires_at,
            })
            .await?;
        if !inserted {
            // The family was revoked (reuse detected) while this rotation ran.
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "invalid_grant",
                "Unknown or invalid refresh token.",
            ));
        }
        body.insert("refresh_token".into(), json!(t));
    }

    body.insert("scope".into(), json!(g.scope.as_string()));
    body.insert("expires_in".into(), json!(expires_in));
    body.insert("token_type".into(), json!("Bearer"));
    Ok(Value::Object(body))
}

/// What an opaque access token (for `/userinfo`) carries. It is sealed with the server secret
/// (`ServerSecret::seal_token`) and stored nowhere; `/userinfo` opens it and checks, in one
/// statement, that the user, the application and the grant are still good.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SealedAccess {
    #[serde(rename = "u")]
    pub user_id: String,
    #[serde(rename = "c")]
    pub client_id: String,
    #[serde(rename = "s")]
    pub scope: String,
    #[serde(rename = "e")]
    pub expires_at: i64,
    /// The authorization code or refresh-token family it came from: revoking that revokes it.
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
}

const ACCESS_PURPOSE: &str = "tessera/access-token/v1";

fn seal_access_token(st: &AppState, a: &SealedAccess) -> String {
    let plain = serde_json::to_vec(a).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(
        st.secret
            .seal_token(st.rng.as_ref(), ACCESS_PURPOSE, &plain),
    )
}

/// Opens an opaque access token this server sealed; `None` for anything else (including the
/// stored tokens of earlier versions, which `/userinfo` looks up by digest).
pub fn open_access_token(st: &AppState, token: &str) -> Option<SealedAccess> {
    let sealed = URL_SAFE_NO_PAD.decode(token).ok()?;
    let plain = st.secret.open_token(ACCESS_PURPOSE, &sealed).ok()?;
    serde_json::from_slice(&plain).ok()
}

/// `offline_access` yields a refresh token only when the application may use the
/// refresh-token grant and, for an API, when that API allows offline access.
fn offline_allowed(client: &Client, scope: &Scope, api: Option<&ApiConfig>) -> bool {
    scope.has("offline_access")
        && client.allows_grant(GRANT_REFRESH_TOKEN)
        && api.is_none_or(|a| a.allow_offline_access)
}
