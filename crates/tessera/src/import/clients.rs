//! Auth0's applications (`GET /api/v2/clients`) into Tessera's, through the domain operations
//! in `ops.rs`, so each change is checked and audited as a Management API call would be.
//!
//! Each export field is mapped to one Tessera knows, or reported as not kept. An application
//! already in Tessera is compared with the export's version: equal is "unchanged", otherwise
//! it is updated to the export's version, so a second run changes nothing.

use serde_json::{Map, Value, json};
use tessera_core::client::{
    AppType, ClientSettings, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_IMPLICIT,
    GRANT_PASSWORDLESS_OTP, GRANT_REFRESH_TOKEN,
};
use tessera_core::crypto::sha256;
use tessera_server::config::{check_callback, check_origin};
use tessera_server::ops::{OpError, Ops, apply_client_fields};

use super::{Outcome, Status, meaningful};

const KNOWN_GRANTS: &[&str] = &[
    GRANT_PASSWORDLESS_OTP,
    GRANT_REFRESH_TOKEN,
    GRANT_AUTHORIZATION_CODE,
    GRANT_IMPLICIT,
    GRANT_CLIENT_CREDENTIALS,
];

/// Export fields that are read (mapped, or checked and reported).
const READ: &[&str] = &[
    "client_id",
    "name",
    "app_type",
    "client_secret",
    "callbacks",
    "allowed_logout_urls",
    "web_origins",
    "allowed_origins",
    "grant_types",
    "cross_origin_auth",
    "cross_origin_authentication",
    "jwt_configuration",
    "token_endpoint_auth_method",
];

/// Export fields that describe Auth0 itself, or say what Tessera always does: not reported.
const SILENT: &[&str] = &[
    "tenant",
    "global",
    "is_first_party",
    "signing_keys",
    "oidc_conformant",
    "sso_disabled",
    "custom_login_page_on",
];

/// An export entry mapped to Tessera's fields.
#[derive(Debug)]
pub struct Mapped {
    pub client_id: String,
    pub name: String,
    pub app_type: AppType,
    /// Fields `ops::apply_client_fields` knows (no client_id, app_type or secret).
    pub fields: Map<String, Value>,
    pub secret: Option<String>,
    /// What was dropped, and why.
    pub notes: Vec<String>,
}

/// Maps one entry, or says why it is skipped.
pub fn map_client(v: &Value) -> Result<Mapped, (Option<String>, String)> {
    let m = v
        .as_object()
        .ok_or((None, "not a JSON object".to_string()))?;
    let client_id = m
        .get("client_id")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or((None, "no client_id".to_string()))?
        .to_string();
    let id = Some(client_id.clone());
    if m.get("global") == Some(&Value::Bool(true)) {
        return Err((id, "Auth0's global client (All Applications)".into()));
    }
    let name = m
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or((id.clone(), "no name".to_string()))?
        .to_string();
    let app_type = match m.get("app_type").and_then(Value::as_str) {
        Some("regular_web") => AppType::RegularWeb,
        Some("spa") => AppType::Spa,
        Some("native") => AppType::Native,
        Some("non_interactive") => {
            return Err((
                id,
                "app_type non_interactive (machine to machine): Tessera issues client_credentials \
                 tokens for its own Management API only"
                    .into(),
            ));
        }
        Some(other) => {
            return Err((
                id,
                format!("app_type {other}: Tessera has regular_web, spa and native applications"),
            ));
        }
        None => {
            return Err((
                id,
                "no app_type: set it in Auth0 (Application Type) and export again".into(),
            ));
        }
    };
    let mut out = Mapped {
        client_id,
        name: name.clone(),
        app_type,
        fields: Map::new(),
        secret: None,
        notes: Vec::new(),
    };
    out.fields.insert("name".into(), json!(name));
    map_urls(m, &mut out);
    map_grants(m, &mut out);
    map_tokens(m, &mut out);
    for (k, v) in m {
        if !READ.contains(&k.as_str()) && !SILENT.contains(&k.as_str()) && meaningful(v) {
            out.notes.push(format!("{k}: not kept"));
        }
    }
    Ok(out)
}

fn strings(m: &Map<String, Value>, key: &str, notes: &mut Vec<String>) -> Vec<String> {
    match m.get(key) {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(Value::as_str)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        Some(_) => {
            notes.push(format!("{key}: not a list of strings, not kept"));
            vec![]
        }
    }
}

/// Callbacks, logout URLs and origins. Tessera matches URLs exactly, so Auth0's wildcards
/// cannot be kept; each URL Tessera would refuse is dropped alone, not the application.
fn map_urls(m: &Map<String, Value>, out: &mut Mapped) {
    for key in ["callbacks", "allowed_logout_urls"] {
        if !m.contains_key(key) {
            continue;
        }
        let mut kept = Vec::new();
        for u in strings(m, key, &mut out.notes) {
            if u.contains('*') {
                out.notes
                    .push(format!("{key}: {u} dropped (wildcards are not supported)"));
            } else if let Err(e) = check_callback(&out.name, &u) {
                out.notes.push(format!("{key}: {u} dropped ({e})"));
            } else {
                kept.push(Value::String(u));
            }
        }
        out.fields.insert(key.into(), Value::Array(kept));
    }
    if !m.contains_key("web_origins") && !m.contains_key("allowed_origins") {
        return;
    }
    // Auth0 keeps CORS origins (allowed_origins) and web-message origins (web_origins) apart;
    // Tessera's web_origins serve both.
    let mut kept: Vec<String> = Vec::new();
    for key in ["web_origins", "allowed_origins"] {
        for o in strings(m, key, &mut out.notes) {
            if o.contains('*') {
                out.notes
                    .push(format!("{key}: {o} dropped (wildcards are not supported)"));
                continue;
            }
            // Auth0 accepts "https://app.example.com/"; an origin has no path.
            let o = match url::Url::parse(&o) {
                Ok(u) if u.path() == "/" && u.query().is_none() && u.fragment().is_none() => {
                    u.origin().ascii_serialization()
                }
                _ => o,
            };
            match check_origin(&out.name, &o) {
                Err(e) => out.notes.push(format!("{key}: {o} dropped ({e})")),
                Ok(()) if !kept.contains(&o) => kept.push(o),
                Ok(()) => {}
            }
        }
    }
    out.fields.insert("web_origins".into(), json!(kept));
}

fn map_grants(m: &Map<String, Value>, out: &mut Mapped) {
    if !m.contains_key("grant_types") {
        return;
    }
    let mut kept = Vec::new();
    for g in strings(m, "grant_types", &mut out.notes) {
        if KNOWN_GRANTS.contains(&g.as_str()) {
            kept.push(g);
        } else {
            out.notes.push(format!(
                "grant_types: {g} dropped (Tessera does not have it)"
            ));
        }
    }
    out.fields.insert("grant_types".into(), json!(kept));
}

/// The secret, cross-origin authentication and the id_token settings.
fn map_tokens(m: &Map<String, Value>, out: &mut Mapped) {
    if let Some(s) = m.get("client_secret").and_then(Value::as_str) {
        if !out.app_type.is_confidential() {
            // Auth0 gives public applications a secret too; Tessera's have none.
        } else if s.len() < 32 {
            out.notes
                .push("client_secret: shorter than 32 characters, not kept".into());
        } else {
            out.secret = Some(s.to_string());
        }
    }
    for key in ["cross_origin_authentication", "cross_origin_auth"] {
        if let Some(b) = m.get(key).and_then(Value::as_bool) {
            out.fields
                .insert("cross_origin_authentication".into(), json!(b));
            break;
        }
    }
    if let Some(j) = m.get("jwt_configuration").and_then(Value::as_object) {
        match j.get("alg").and_then(Value::as_str) {
            None | Some("RS256") => {}
            Some(alg) => out.notes.push(format!(
                "jwt_configuration.alg {alg}: Tessera signs id_tokens with RS256 (verify them with the JWKS)"
            )),
        }
        match j.get("lifetime_in_seconds").and_then(Value::as_i64) {
            Some(l) if (60..=2_592_000).contains(&l) => {
                out.fields.insert(
                    "jwt_configuration".into(),
                    json!({"lifetime_in_seconds": l}),
                );
            }
            Some(l) => out.notes.push(format!(
                "jwt_configuration.lifetime_in_seconds {l}: not between 60 and 2592000, not kept"
            )),
            None => {}
        }
    }
    match m.get("token_endpoint_auth_method").and_then(Value::as_str) {
        Some("private_key_jwt") => out.notes.push(
            "token_endpoint_auth_method private_key_jwt: not supported, the client secret is used"
                .into(),
        ),
        Some("none") if out.app_type.is_confidential() => out.notes.push(
            "token_endpoint_auth_method none: a regular_web application authenticates with its secret in Tessera"
                .into(),
        ),
        _ => {}
    }
}

/// Creates, updates or leaves each application.
pub async fn import(ops: &Ops<'_>, rows: &[Value]) -> anyhow::Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for row in rows {
        let outcome = match map_client(row) {
            Err((id, reason)) => Outcome {
                id: id.unwrap_or_default(),
                name: row
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                kind: row
                    .get("app_type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                status: Status::Skipped(reason),
                notes: vec![],
                new_secret: None,
            },
            Ok(m) => import_one(ops, m).await?,
        };
        out.push(outcome);
    }
    Ok(out)
}

async fn import_one(ops: &Ops<'_>, m: Mapped) -> anyhow::Result<Outcome> {
    let mut o = Outcome {
        id: m.client_id.clone(),
        name: m.name.clone(),
        kind: m.app_type.auth0_name().to_string(),
        status: Status::Unchanged,
        notes: m.notes.clone(),
        new_secret: None,
    };
    let existing = ops.store.get_client(&m.client_id).await?;
    o.status = match existing {
        None => {
            let mut body = m.fields.clone();
            body.insert("client_id".into(), json!(m.client_id));
            body.insert("app_type".into(), json!(m.app_type.auth0_name()));
            if let Some(s) = &m.secret {
                body.insert("client_secret".into(), json!(s));
            }
            match ops.create_client(&body).await {
                Ok((_, secret)) => {
                    if m.secret.is_none() {
                        o.new_secret = secret;
                    }
                    Status::Created
                }
                Err(e) => refused(e)?,
            }
        }
        Some(c) if c.settings.app_type != m.app_type => Status::Skipped(format!(
            "already in Tessera as a {} application (app_type cannot change)",
            c.settings.app_type.auth0_name()
        )),
        Some(c) => {
            if let (Some(s), Some(h)) = (&m.secret, &c.secret_hash)
                && sha256(s) != *h
            {
                o.notes.push(
                    "client_secret: differs from Tessera's, which is kept (to take the export's, delete the application in Tessera and import it again)"
                        .into(),
                );
            }
            let mut wanted = c.settings.clone();
            match apply_client_fields(&mut wanted, &m.fields) {
                Err(e) => refused(e)?,
                Ok(()) if wanted == c.settings => Status::Unchanged,
                Ok(()) => match ops.update_client(&m.client_id, &m.fields).await {
                    Ok(_) => Status::Updated(changed(&c.settings, &wanted)),
                    Err(e) => refused(e)?,
                },
            }
        }
    };
    Ok(o)
}

/// A refusal becomes a skip with its message; a storage failure stops the import.
pub fn refused(e: OpError) -> anyhow::Result<Status> {
    match e {
        OpError::Invalid(m) | OpError::Conflict(m) | OpError::NotFound(_, m) => {
            Ok(Status::Skipped(m))
        }
        other => Err(anyhow::anyhow!(other)),
    }
}

/// The settings that differ, by name.
fn changed(before: &ClientSettings, after: &ClientSettings) -> Vec<String> {
    let (a, b) = (
        serde_json::to_value(before).unwrap_or_default(),
        serde_json::to_value(after).unwrap_or_default(),
    );
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec![];
    };
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_regular_web_client_and_reports_what_is_dropped() {
        let m = map_client(&json!({
            "client_id": "abc", "name": " Acme ", "app_type": "regular_web",
            "tenant": "acme", "global": false, "is_first_party": true,
            "callbacks": ["https://acme.test/cb", "https://*.acme.test/cb", "not a url"],
            "allowed_origins": ["https://acme.test/"], "web_origins": ["https://acme.test", "https://www.acme.test"],
            "allowed_logout_urls": ["https://acme.test/"],
            "grant_types": ["authorization_code", "password", "http://auth0.com/oauth/grant-type/passwordless/otp"],
            "cross_origin_auth": false, "logo_uri": "https://acme.test/logo.png", "description": "",
            "jwt_configuration": {"alg": "HS256", "lifetime_in_seconds": 36000, "secret_encoded": false},
            "client_secret": "s".repeat(64), "sso": false
        }))
        .unwrap();
        assert_eq!(m.name, "Acme");
        assert_eq!(m.app_type, AppType::RegularWeb);
        assert_eq!(m.fields["callbacks"], json!(["https://acme.test/cb"]));
        assert_eq!(
            m.fields["web_origins"],
            json!(["https://acme.test", "https://www.acme.test"])
        );
        assert_eq!(
            m.fields["grant_types"],
            json!([
                "authorization_code",
                "http://auth0.com/oauth/grant-type/passwordless/otp"
            ])
        );
        assert_eq!(m.fields["cross_origin_authentication"], false);
        assert_eq!(m.fields["jwt_configuration"]["lifetime_in_seconds"], 36000);
        assert_eq!(m.secret.as_deref().map(str::len), Some(64));
        let notes = m.notes.join("\n");
        for want in [
            "*.acme.test",
            "not a url",
            "password dropped",
            "HS256",
            "logo_uri",
        ] {
            assert!(notes.contains(want), "{want} in {notes}");
        }
        for quiet in ["tenant", "description", "sso", "is_first_party"] {
            assert!(!notes.contains(quiet), "{quiet} in {notes}");
        }
    }

    #[test]
    fn skips_what_tessera_has_no_place_for() {
        for (v, want) in [
            (
                json!({"client_id": "m", "name": "API", "app_type": "non_interactive"}),
                "non_interactive",
            ),
            (
                json!({"client_id": "g", "name": "All Applications", "global": true}),
                "global",
            ),
            (json!({"client_id": "x", "name": "Old"}), "no app_type"),
            (json!({"name": "Nameless"}), "no client_id"),
        ] {
            let (_, reason) = map_client(&v).unwrap_err();
            assert!(reason.contains(want), "{reason}");
        }
    }

    #[test]
    fn a_public_client_keeps_no_secret() {
        let m = map_client(&json!({"client_id": "s", "name": "SPA", "app_type": "spa",
            "client_secret": "s".repeat(64), "token_endpoint_auth_method": "none"}))
        .unwrap();
        assert!(m.secret.is_none() && m.notes.is_empty(), "{:?}", m.notes);
    }
}
