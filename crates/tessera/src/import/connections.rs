//! Auth0's passwordless connections (`GET /api/v2/connections`, strategies `email` and `sms`)
//! onto the connections Tessera has: code length and lifetime, sign-up, the email template, and
//! which applications may use them. Other strategies are skipped.
//!
//! Where SMS goes (Twilio, a gateway) and its credentials live in the configuration file, not
//! in the database, so those options are reported by name for the operator to set there, never
//! imported or printed. The SMS text (`template`, `syntax`) is imported like the email's.

use std::collections::HashSet;

use serde_json::{Map, Value, json};
use tessera_core::connection::{Connection, Strategy};
use tessera_server::ops::{Ops, apply_connection_options};

use super::clients::refused;
use super::{Outcome, Status, meaningful};

/// SMS options that belong in `[connections.sms]` of the configuration file.
const SMS_CONFIG: &[&str] = &[
    "from",
    "messaging_service_sid",
    "twilio_sid",
    "twilio_token",
    "provider",
    "gateway_url",
    "gateway_authentication",
    "forward_req_info",
];

/// Top-level fields read, or Auth0's own bookkeeping: not reported.
const TOP_QUIET: &[&str] = &[
    "id",
    "name",
    "strategy",
    "options",
    "enabled_clients",
    "realms",
    "is_domain_connection",
    "display_name",
    "metadata",
    "show_as_button",
];

/// The options mapped to Tessera's, with notes on what was not.
#[derive(Debug, Default)]
pub struct MappedOptions {
    pub options: Map<String, Value>,
    pub notes: Vec<String>,
}

/// Maps Auth0's connection options (`totp`, `disable_signup`, `brute_force_protection`,
/// `email` for email, `template` and `syntax` for sms) for a connection of `strategy`.
pub fn map_options(strategy: &str, o: &Map<String, Value>) -> MappedOptions {
    let mut out = MappedOptions::default();
    let mut for_config = Vec::new();
    for (k, v) in o {
        match k.as_str() {
            "totp" => {
                if let Some(t) = v.as_object() {
                    let mut totp = Map::new();
                    for f in ["length", "time_step"] {
                        if let Some(n) = t.get(f).filter(|x| x.is_i64()) {
                            totp.insert(f.into(), n.clone());
                        }
                    }
                    out.options.insert("totp".into(), Value::Object(totp));
                }
            }
            "disable_signup" => {
                if let Some(b) = v.as_bool() {
                    out.options.insert(k.clone(), json!(b));
                }
            }
            "brute_force_protection" if v == &Value::Bool(false) => out.notes.push(
                "brute_force_protection false: Tessera always protects against brute force".into(),
            ),
            "brute_force_protection" => {}
            "email" if strategy == "email" => {
                if let Some(e) = v.as_object() {
                    out.options
                        .insert("email".into(), email_template(e, &mut out.notes));
                }
            }
            // The syntax alone means nothing: it is the syntax of a template.
            "template" | "syntax"
                if strategy == "sms"
                    && v.is_string()
                    && o.get("template").is_some_and(Value::is_string) =>
            {
                out.options.insert(k.clone(), v.clone());
            }
            "name" => {}
            k if strategy == "sms" && SMS_CONFIG.contains(&k) && meaningful(v) => {
                for_config.push(format!("options.{k}"));
            }
            k if strategy == "sms" && SMS_CONFIG.contains(&k) => {}
            _ if meaningful(v) => out.notes.push(format!("options.{k}: not kept")),
            _ => {}
        }
    }
    if !for_config.is_empty() {
        // Names only: these hold credentials (twilio_token), never printed.
        out.notes.push(format!(
            "{}: not imported; the SMS provider and its credentials are set in [connections.sms] of the configuration file",
            for_config.join(", ")
        ));
    }
    out
}

/// Auth0's email template (from, subject, body, syntax). Auth0's own default sender
/// (`…@auth0.com`) is left out: mail from that domain would not pass SPF or DMARC.
fn email_template(e: &Map<String, Value>, notes: &mut Vec<String>) -> Value {
    let mut t = Map::new();
    for f in ["from", "subject", "body", "syntax"] {
        if let Some(s) = e.get(f).and_then(Value::as_str) {
            if f == "from" && s.to_ascii_lowercase().contains("@auth0.com") {
                notes.push(format!(
                    "options.email.from {s:?}: Auth0's sender, not kept (the server's email.from is used)"
                ));
                continue;
            }
            t.insert(f.into(), json!(s));
        }
    }
    Value::Object(t)
}

/// Updates each passwordless connection that exists here. `governed` are the applications the
/// clients export named: their access to a connection follows the export. Applications that
/// exist only in Tessera keep theirs.
pub async fn import(
    ops: &Ops<'_>,
    rows: &[Value],
    governed: &HashSet<String>,
) -> anyhow::Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for row in rows {
        let name = row
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let strategy = row
            .get("strategy")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut o = Outcome {
            id: name.clone(),
            name: name.clone(),
            kind: strategy.clone(),
            status: Status::Unchanged,
            notes: vec![],
            new_secret: None,
        };
        o.status = match (strategy.as_str(), name.is_empty()) {
            (_, true) => Status::Skipped("no name".into()),
            ("email" | "sms", false) => import_one(ops, row, &name, governed, &mut o.notes).await?,
            (other, false) => Status::Skipped(format!(
                "strategy {other:?} is not passwordless (Tessera has email and sms only)"
            )),
        };
        out.push(o);
    }
    Ok(out)
}

async fn import_one(
    ops: &Ops<'_>,
    row: &Value,
    name: &str,
    governed: &HashSet<String>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Status> {
    let strategy = row["strategy"].as_str().unwrap_or_default();
    let (conn, enabled_now) = match ops.get_connection(name).await {
        Ok(c) => c,
        Err(e) => {
            return Ok(Status::Skipped(format!(
                "{e} Configure it ([connections.{strategy}]) and start Tessera once, then import again."
            )));
        }
    };
    if conn.strategy.as_str() != strategy {
        return Ok(Status::Skipped(format!(
            "{name} is an {} connection in Tessera",
            conn.strategy.as_str()
        )));
    }
    let empty = Map::new();
    let options = row
        .get("options")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut mapped = map_options(strategy, options);
    if let Some(obj) = row.as_object() {
        for (k, v) in obj {
            if !TOP_QUIET.contains(&k.as_str()) && meaningful(v) {
                mapped.notes.push(format!("{k}: not kept"));
            }
        }
    }
    drop_invalid_template(&conn, &mut mapped);
    notes.append(&mut mapped.notes);
    let mut wanted = conn.clone();
    if let Err(e) = apply_connection_options(&mut wanted, &mapped.options) {
        return refused(e);
    }
    let enabled = enabled_clients(ops, row, &enabled_now, governed, notes).await?;
    let as_set = |v: &[String]| v.iter().cloned().collect::<HashSet<_>>();
    let mut patch = Map::new();
    if wanted.settings != conn.settings {
        patch.insert("options".into(), Value::Object(mapped.options));
    }
    if as_set(&enabled) != as_set(&enabled_now) {
        patch.insert("enabled_clients".into(), json!(enabled));
    }
    if patch.is_empty() {
        return Ok(Status::Unchanged);
    }
    let fields: Vec<String> = patch.keys().cloned().collect();
    match ops.update_connection(name, &patch).await {
        Ok(_) => Ok(Status::Updated(fields)),
        Err(e) => refused(e),
    }
}

/// A template Tessera cannot render is left out, with the reason, so the rest still applies.
fn drop_invalid_template(conn: &Connection, mapped: &mut MappedOptions) {
    let (keys, what): (&[&str], &str) = match conn.strategy {
        Strategy::Email => (&["email"], "email"),
        Strategy::Sms => (&["template", "syntax"], "text"),
    };
    let only: Map<String, Value> = keys
        .iter()
        .filter_map(|k| mapped.options.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    if only.is_empty() {
        return;
    }
    let mut trial = conn.clone();
    if let Err(e) = apply_connection_options(&mut trial, &only) {
        for k in keys {
            mapped.options.remove(*k);
        }
        mapped.notes.push(format!(
            "options.{}: not kept ({e}); Tessera's current {what} stays",
            keys[0]
        ));
    }
}

/// The applications that may use the connection after the import: those the export enables
/// (if they exist here), and those Tessera has that the clients export did not name.
async fn enabled_clients(
    ops: &Ops<'_>,
    row: &Value,
    enabled_now: &[String],
    governed: &HashSet<String>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<String>> {
    let known: HashSet<String> = ops
        .store
        .list_clients()
        .await?
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    let mut out: Vec<String> = enabled_now
        .iter()
        .filter(|id| !governed.contains(*id))
        .cloned()
        .collect();
    let mut missing = Vec::new();
    for id in row
        .get("enabled_clients")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !known.contains(id) {
            missing.push(id.to_string());
        } else if !out.iter().any(|x| x == id) {
            out.push(id.to_string());
        }
    }
    if !missing.is_empty() {
        notes.push(format!(
            "enabled_clients: {} not in Tessera (skipped or not imported)",
            missing.join(", ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_options_are_mapped_and_auth0s_sender_left_out() {
        let o = json!({"name": "email", "totp": {"length": 8, "time_step": 300},
            "disable_signup": true, "brute_force_protection": true,
            "email": {"from": "{{ application.name }} <root@auth0.com>", "subject": "Hi",
                      "body": "<p>{{ code }}</p>", "syntax": "liquid"},
            "authParams": {}, "upstream_params": {"x": 1}});
        let m = map_options("email", o.as_object().unwrap());
        assert_eq!(m.options["totp"], json!({"length": 8, "time_step": 300}));
        assert_eq!(m.options["disable_signup"], true);
        assert_eq!(
            m.options["email"],
            json!({"subject": "Hi", "body": "<p>{{ code }}</p>", "syntax": "liquid"})
        );
        let notes = m.notes.join("\n");
        assert!(notes.contains("root@auth0.com") && notes.contains("upstream_params"));
        assert!(!notes.contains("authParams"), "{notes}");
    }

    #[test]
    fn sms_provider_settings_are_reported_not_imported() {
        let o = json!({"totp": {"length": 6, "time_step": 180}, "template": "@@password@@",
            "syntax": "md_with_macros", "twilio_sid": "AC1", "twilio_token": "sekrit",
            "brute_force_protection": false});
        let m = map_options("sms", o.as_object().unwrap());
        assert_eq!(
            m.options,
            *json!({"totp": {"length": 6, "time_step": 180}, "template": "@@password@@",
                    "syntax": "md_with_macros"})
            .as_object()
            .unwrap()
        );
        let notes = m.notes.join("\n");
        assert!(notes.contains("options.twilio_token") && notes.contains("options.twilio_sid"));
        assert!(notes.contains("brute_force_protection"));
        assert!(!notes.contains("sekrit"), "values are never printed");
    }
}
