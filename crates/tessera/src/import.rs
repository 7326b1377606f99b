//! `tessera import auth0`: moving over from Auth0 (users, clients, passwordless connections).
//!
//! The import works on the database, with or without a running server. It first applies the
//! configuration file as a server start does (connections, applications, the first signing
//! key), so a fresh database has the `email` and `sms` connections users belong to. Then it
//! imports applications, connections and users, in that order (a connection names the
//! applications that may use it). Every part is idempotent: a second run reports everything
//! as already present or unchanged, and writes nothing.

mod clients;
mod connections;
mod progress;
mod report;
mod users;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde_json::{Value, json};
use tessera_core::clock::{Clock, SystemClock};
use tessera_core::rand::{SystemRandom, ordered_id};
use tessera_server::ops::{Actor, Ops};
use tessera_server::settings::Settings;
use tessera_store::{Event, Store};

use report::fmt_count;

/// What to import.
pub struct ImportArgs {
    pub users: Option<PathBuf>,
    pub clients: Option<PathBuf>,
    pub connections: Option<PathBuf>,
    pub json: bool,
}

/// What happened to one application or connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Created,
    /// The fields that changed.
    Updated(Vec<String>),
    Unchanged,
    Skipped(String),
}

/// One application or connection of an export, and what the import did with it.
#[derive(Debug)]
pub struct Outcome {
    /// The client_id, or the connection's name.
    pub id: String,
    pub name: String,
    /// The app_type, or the connection's strategy.
    pub kind: String,
    pub status: Status,
    /// What was not kept, and why.
    pub notes: Vec<String>,
    /// A secret Tessera generated because the export had none: shown once, in the report.
    pub new_secret: Option<String>,
}

/// Whether an export value says anything (not null, false, 0-length): worth reporting when
/// it is not kept.
fn meaningful(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

pub async fn auth0(settings: Settings, args: ImportArgs) -> anyhow::Result<()> {
    if args.users.is_none() && args.clients.is_none() && args.connections.is_none() {
        anyhow::bail!("nothing to import: give --users, --clients and/or --connections");
    }
    // Read and check every file before the database is touched.
    let client_rows = args
        .clients
        .as_deref()
        .map(|p| read_list(p, "clients"))
        .transpose()?;
    let connection_rows = args
        .connections
        .as_deref()
        .map(|p| read_list(p, "connections"))
        .transpose()?;
    if let Some(p) = &args.users {
        users::sniff(p)?;
    }
    let tessera =
        tessera_server::app::build(&settings, Arc::new(SystemClock), Arc::new(SystemRandom))
            .await?;
    let store = Arc::clone(&tessera.state.0.store);
    let ops = Ops {
        store: store.as_ref(),
        rng: &SystemRandom,
        now: SystemClock.now(),
        actor: Actor::cli(),
        secret: &tessera.state.0.secret,
    };
    let mut parts = Parts::default();
    if let (Some(rows), Some(p)) = (&client_rows, &args.clients) {
        parts.clients = Some((display(p), clients::import(&ops, rows).await?));
    }
    if let (Some(rows), Some(p)) = (&connection_rows, &args.connections) {
        let governed: HashSet<String> = client_rows
            .iter()
            .flatten()
            .filter_map(|c| c.get("client_id").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        parts.connections = Some((
            display(p),
            connections::import(&ops, rows, &governed).await?,
        ));
    }
    if let Some(p) = &args.users {
        let progress = progress::Progress::for_stderr();
        let r = users::import(Arc::clone(&store), p, ops.now, progress).await?;
        audit_users(store.as_ref(), &ops.actor, &r, ops.now).await?;
        parts.users = Some(r);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&parts.to_json())?);
    } else {
        parts.print_table();
    }
    Ok(())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// A Management API list: a JSON array, or the object `include_totals=true` gives
/// (`{"clients": […], "total": …}`).
fn read_list(path: &Path, key: &str) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    match v {
        Value::Array(a) => Ok(a),
        Value::Object(mut o) => match o.remove(key) {
            Some(Value::Array(a)) => Ok(a),
            _ => anyhow::bail!(
                "{}: expected a JSON array of {key} (GET /api/v2/{key})",
                path.display()
            ),
        },
        _ => anyhow::bail!(
            "{}: expected a JSON array of {key} (GET /api/v2/{key})",
            path.display()
        ),
    }
}

/// One `sapi` event for the whole users import (none when nothing was imported: a second run
/// leaves the database as it was).
async fn audit_users(
    store: &dyn Store,
    actor: &Actor,
    r: &users::UserReport,
    now: i64,
) -> anyhow::Result<()> {
    if r.imported == 0 {
        return Ok(());
    }
    store
        .record_event(&Event {
            id: ordered_id(now.saturating_mul(1000), &SystemRandom),
            at: now,
            kind: "sapi".into(),
            client_id: None,
            connection: None,
            user_id: None,
            ip: None,
            user_agent: None,
            description: format!(
                "{}: imported {} users from Auth0 ({} already present, {} skipped)",
                actor.label,
                r.imported,
                r.already_present,
                r.skips.total()
            ),
        })
        .await?;
    Ok(())
}

/// The report: what each part did.
#[derive(Default)]
struct Parts {
    clients: Option<(String, Vec<Outcome>)>,
    connections: Option<(String, Vec<Outcome>)>,
    users: Option<users::UserReport>,
}

impl Parts {
    fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        if let Some((file, list)) = &self.clients {
            out.insert(
                "clients".into(),
                outcomes_json(file, list, "client_id", "app_type"),
            );
        }
        if let Some((file, list)) = &self.connections {
            out.insert(
                "connections".into(),
                outcomes_json(file, list, "name", "strategy"),
            );
        }
        if let Some(u) = &self.users {
            out.insert("users".into(), u.to_json());
        }
        Value::Object(out)
    }

    fn print_table(&self) {
        if let Some((file, list)) = &self.clients {
            print_outcomes("Applications", file, list);
        }
        if let Some((file, list)) = &self.connections {
            print_outcomes("Connections", file, list);
        }
        if let Some(u) = &self.users {
            u.print_table();
        }
        let secrets: Vec<&Outcome> = self
            .clients
            .iter()
            .flat_map(|(_, l)| l)
            .filter(|o| o.new_secret.is_some())
            .collect();
        if !secrets.is_empty() {
            println!();
            println!(
                "NEW CLIENT SECRETS. The export had none, so Tessera made these. They are shown this once:"
            );
            println!(
                "Tessera keeps only a digest. Put each one in its application's settings now."
            );
            for o in secrets {
                println!(
                    "  {}  {}",
                    o.id,
                    o.new_secret.as_deref().unwrap_or_default()
                );
            }
        }
    }
}

fn status_word(s: &Status) -> &'static str {
    match s {
        Status::Created => "created",
        Status::Updated(_) => "updated",
        Status::Unchanged => "unchanged",
        Status::Skipped(_) => "skipped",
    }
}

fn counts(list: &[Outcome]) -> [(&'static str, u64); 4] {
    let n = |w: &str| list.iter().filter(|o| status_word(&o.status) == w).count() as u64;
    [
        ("created", n("created")),
        ("updated", n("updated")),
        ("unchanged", n("unchanged")),
        ("skipped", n("skipped")),
    ]
}

fn outcomes_json(file: &str, list: &[Outcome], id_key: &str, kind_key: &str) -> Value {
    let items: Vec<Value> = list
        .iter()
        .map(|o| {
            let mut v = json!({id_key: o.id, "name": o.name, kind_key: o.kind,
                               "status": status_word(&o.status), "notes": o.notes});
            match &o.status {
                Status::Updated(f) => v["changed"] = json!(f),
                Status::Skipped(r) => v["reason"] = json!(r),
                _ => {}
            }
            if let Some(s) = &o.new_secret {
                v["generated_client_secret"] = json!(s);
            }
            v
        })
        .collect();
    let mut out = json!({"file": file, "items": items});
    for (k, n) in counts(list) {
        out[k] = json!(n);
    }
    out
}

fn print_outcomes(title: &str, file: &str, list: &[Outcome]) {
    let summary: Vec<String> = counts(list)
        .iter()
        .map(|(k, n)| format!("{} {k}", fmt_count(*n)))
        .collect();
    println!("{title} ({file}): {}", summary.join(", "));
    for o in list {
        let what = match &o.status {
            Status::Updated(f) => format!(" ({})", f.join(", ")),
            Status::Skipped(r) => format!(": {r}"),
            _ => String::new(),
        };
        let mut label = o.id.clone();
        if o.name != o.id {
            label = format!("{label}  {}", o.name);
        }
        if !o.kind.is_empty() {
            label = format!("{label} ({})", o.kind);
        }
        println!("  {:<10} {label}{what}", status_word(&o.status));
        for n in &o.notes {
            println!("  {:<10} - {n}", "");
        }
    }
}
