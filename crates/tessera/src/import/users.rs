//! Auth0's user export (the export job's JSON lines, or a JSON array) into `users`.
//!
//! Each row is parsed into a [`User`] with Auth0's own `user_id`, so the `sub` claim an
//! application stored stays the same. Rows go to the store 1,000 at a time, each batch in one
//! transaction; a row whose id (or whose connection and email or phone number) is already there
//! is left alone, which makes a second run change nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::{Map, Value, json};
use tessera_core::UnixTime;
use tessera_core::connection::Strategy;
use tessera_core::email::EmailAddress;
use tessera_core::phone::PhoneNumber;
use tessera_core::user::User;
use tessera_store::Store;

use super::progress::Progress;
use super::report::{Skips, fmt_count};

/// Users per `insert_users` call (one transaction each).
const BATCH: usize = 1_000;
/// Auth0's limit, and the Management API's here (see `ops.rs`).
const METADATA_MAX: usize = 16 * 1024;

/// Why a row was not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    InvalidJson,
    MissingUserId,
    OtherConnection,
    UnknownConnection,
    BadUserId,
    MissingEmail,
    InvalidEmail,
    MissingPhoneNumber,
    InvalidPhoneNumber,
    InvalidField,
    MetadataTooLarge,
    DuplicateInFile,
    TakenByAnotherUser,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::InvalidJson => "invalid_json",
            Reason::MissingUserId => "missing_user_id",
            Reason::OtherConnection => "other_connection",
            Reason::UnknownConnection => "unknown_connection",
            Reason::BadUserId => "bad_user_id",
            Reason::MissingEmail => "missing_email",
            Reason::InvalidEmail => "invalid_email",
            Reason::MissingPhoneNumber => "missing_phone_number",
            Reason::InvalidPhoneNumber => "invalid_phone_number",
            Reason::InvalidField => "invalid_field",
            Reason::MetadataTooLarge => "metadata_too_large",
            Reason::DuplicateInFile => "duplicate_in_file",
            Reason::TakenByAnotherUser => "taken_by_another_user",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Reason::InvalidJson => "not a JSON object",
            Reason::MissingUserId => "no user_id",
            Reason::OtherConnection => {
                "not a passwordless user (database, social or enterprise connection)"
            }
            Reason::UnknownConnection => "its connection is not configured on this server",
            Reason::BadUserId => "user_id does not match its connection, or is not a valid id",
            Reason::MissingEmail => "an email user without an email",
            Reason::InvalidEmail => "not a valid email address",
            Reason::MissingPhoneNumber => "an sms user without a phone_number",
            Reason::InvalidPhoneNumber => "not a valid E.164 phone number",
            Reason::InvalidField => "a field has the wrong type or an invalid value",
            Reason::MetadataTooLarge => "app_metadata or user_metadata larger than 16 KiB",
            Reason::DuplicateInFile => {
                "the same user_id, email or phone number earlier in the file"
            }
            Reason::TakenByAnotherUser => {
                "the email or phone number belongs to another Tessera user"
            }
        }
    }
}

/// A skipped row: the reason, and a detail that names no person (a connection or field name).
#[derive(Debug)]
pub struct Skip {
    pub reason: Reason,
    pub detail: Option<String>,
}

fn skip(reason: Reason) -> Skip {
    Skip {
        reason,
        detail: None,
    }
}

fn skip_with(reason: Reason, detail: impl Into<String>) -> Skip {
    Skip {
        reason,
        detail: Some(detail.into()),
    }
}

/// What the users import did.
#[derive(Debug, Default)]
pub struct UserReport {
    pub file: String,
    pub read: u64,
    pub imported: u64,
    pub already_present: u64,
    pub skips: Skips<Reason>,
    /// Fields of imported rows that Tessera does not keep, with how many rows had them.
    pub ignored_fields: BTreeMap<String, u64>,
    /// Imported users that had linked (secondary) identities, which are not kept.
    pub linked_identities: u64,
    pub seconds: f64,
}

impl UserReport {
    pub fn rows_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.read as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "file": self.file,
            "read": self.read,
            "imported": self.imported,
            "already_present": self.already_present,
            "skipped": self.skips.total(),
            "skipped_by_reason": self.skips.to_json(|r| (r.code(), r.describe())),
            "ignored_fields": self.ignored_fields,
            "linked_identities_not_kept": self.linked_identities,
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
            "rows_per_sec": self.rows_per_sec().round() as u64,
        })
    }

    pub fn print_table(&self) {
        println!(
            "Users ({}): {} rows read in {:.1} s ({} rows/s)",
            self.file,
            fmt_count(self.read),
            self.seconds,
            fmt_count(self.rows_per_sec().round() as u64)
        );
        println!("  {:<18}{:>10}", "imported", fmt_count(self.imported));
        println!(
            "  {:<18}{:>10}",
            "already present",
            fmt_count(self.already_present)
        );
        println!("  {:<18}{:>10}", "skipped", fmt_count(self.skips.total()));
        self.skips.print_table("    ", |r| (r.code(), r.describe()));
        if !self.ignored_fields.is_empty() {
            let list: Vec<String> = self
                .ignored_fields
                .iter()
                .map(|(k, n)| format!("{k} ({})", fmt_count(*n)))
                .collect();
            println!("  fields not kept: {}", list.join(", "));
        }
        if self.linked_identities > 0 {
            println!(
                "  {} users had linked identities: only the primary one is kept",
                fmt_count(self.linked_identities)
            );
        }
    }
}

/// Rows ready for the store, with their line numbers.
#[derive(Default)]
struct Batch {
    users: Vec<(User, String)>,
    lines: Vec<u64>,
}

/// Imports the users in `path`. One thread reads and parses the file while this task writes
/// the batches before it, so parsing and the database work overlap.
pub async fn import(
    store: Arc<dyn Store>,
    path: &Path,
    now: UnixTime,
    progress: Progress,
) -> anyhow::Result<UserReport> {
    let started = Instant::now();
    let connections: HashMap<String, Strategy> = store
        .list_connections()
        .await?
        .into_iter()
        .map(|c| (c.name, c.strategy))
        .collect();
    let source = Source::open(path)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(2);
    let reader =
        tokio::task::spawn_blocking(move || read_all(source, &connections, now, progress, &tx));
    let mut stored = Stored::default();
    while let Some(batch) = rx.recv().await {
        // On an error, `rx` is dropped, and the reader stops at its next batch.
        flush(&store, batch, &mut stored).await?;
    }
    let mut report = reader.await.context("the reader thread failed")??;
    report.file = path.display().to_string();
    report.imported = stored.imported;
    report.already_present = stored.already_present;
    stored.taken.sort_unstable();
    for (line, connection) in stored.taken {
        report
            .skips
            .add(Reason::TakenByAnotherUser, line, Some(connection));
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Reads and parses every row, sending batches of new rows; returns the parsing side of the
/// report (rows read, skipped, fields not kept).
fn read_all(
    mut source: Source,
    connections: &HashMap<String, Strategy>,
    now: UnixTime,
    mut progress: Progress,
    tx: &tokio::sync::mpsc::Sender<Batch>,
) -> anyhow::Result<UserReport> {
    progress.start("users", source.total_bytes());
    let mut report = UserReport::default();
    let mut seen_ids = HashSet::new();
    let mut seen_identities = HashSet::new();
    let mut batch = Batch::default();
    while let Some((line, value)) = source.next_row()? {
        report.read += 1;
        let row = value
            .ok_or_else(|| skip(Reason::InvalidJson))
            .and_then(|v| parse_row(v, connections, now, &mut report))
            .and_then(|(user, identifier)| {
                // The first row wins; a later copy is reported, not merged.
                let identity = format!("{}\u{0}{identifier}", user.connection);
                if seen_ids.contains(&user.user_id) || seen_identities.contains(&identity) {
                    return Err(skip(Reason::DuplicateInFile));
                }
                seen_ids.insert(user.user_id.clone());
                seen_identities.insert(identity);
                Ok((user, identifier))
            });
        match row {
            Ok(r) => {
                batch.lines.push(line);
                batch.users.push(r);
            }
            Err(s) => report.skips.add(s.reason, line, s.detail),
        }
        if batch.users.len() >= BATCH && tx.blocking_send(std::mem::take(&mut batch)).is_err() {
            break;
        }
        progress.update(report.read, source.bytes_read());
    }
    if !batch.users.is_empty() {
        // A closed channel means the writer failed; it reports why.
        let _ = tx.blocking_send(batch);
    }
    progress.finish(report.read);
    Ok(report)
}

/// What the writing side found.
#[derive(Default)]
struct Stored {
    imported: u64,
    already_present: u64,
    /// Rows whose email or phone number another user has: (line, connection).
    taken: Vec<(u64, String)>,
}

/// Lookups at once when sorting out rows that were not inserted.
const LOOKUPS: usize = 4;

/// Inserts one batch in one transaction, then sorts out the rows that were not inserted:
/// already there (same id) or taken by another user (same email or phone, another id).
async fn flush(store: &Arc<dyn Store>, batch: Batch, stored: &mut Stored) -> anyhow::Result<()> {
    let inserted: HashSet<String> = store
        .insert_users(&batch.users)
        .await
        .context("inserting users")?
        .into_iter()
        .collect();
    stored.imported += inserted.len() as u64;
    let missing: Vec<(String, u64, String)> = batch
        .users
        .into_iter()
        .zip(batch.lines)
        .filter(|((u, _), _)| !inserted.contains(&u.user_id))
        .map(|((u, _), line)| (u.user_id, line, u.connection))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // A second run looks every row up: a few lookups at once keep it near the first run's pace.
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = missing.len().div_ceil(LOOKUPS);
    let mut rest = missing;
    while !rest.is_empty() {
        let chunk: Vec<_> = rest.drain(..per_task.min(rest.len())).collect();
        let store = Arc::clone(store);
        tasks.spawn(async move {
            let mut present = 0u64;
            let mut taken = Vec::new();
            for (id, line, connection) in chunk {
                if store.get_user(&id).await?.is_some() {
                    present += 1;
                } else {
                    taken.push((line, connection));
                }
            }
            Ok::<_, tessera_store::StoreError>((present, taken))
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (present, mut taken) = done.context("a lookup task failed")??;
        stored.already_present += present;
        stored.taken.append(&mut taken);
    }
    Ok(())
}

/// The fields Tessera keeps; every other field of an imported row is counted as not kept.
const KEPT: &[&str] = &[
    "user_id",
    "email",
    "email_verified",
    "phone_number",
    "phone_verified",
    "identities",
    "identities[0].connection",
    "identities[0].provider",
    "created_at",
    "updated_at",
    "last_login",
    "logins_count",
    "blocked",
    "name",
    "nickname",
    "picture",
    "app_metadata",
    "user_metadata",
];

/// One export row into a user and its normalised identifier.
fn parse_row(
    v: Value,
    connections: &HashMap<String, Strategy>,
    now: UnixTime,
    report: &mut UserReport,
) -> Result<(User, String), Skip> {
    let Value::Object(m) = v else {
        return Err(skip(Reason::InvalidJson));
    };
    let user_id = opt_str(&m, "user_id")?.ok_or_else(|| skip(Reason::MissingUserId))?;
    let (strategy, connection, linked) = identity(&m, user_id, connections)?;
    let bare = user_id
        .strip_prefix(strategy.as_str())
        .and_then(|r| r.strip_prefix('|'))
        .filter(|b| {
            !b.is_empty()
                && b.len() <= 128
                && !b
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == '|')
        })
        .ok_or_else(|| skip_with(Reason::BadUserId, strategy.as_str()))?;
    let (mut user, identifier) = match strategy {
        Strategy::Email => {
            let raw = opt_str(&m, "email")?.ok_or_else(|| skip(Reason::MissingEmail))?;
            let e = EmailAddress::parse(raw).map_err(|_| skip(Reason::InvalidEmail))?;
            let mut u = User::new_email_user(bare, connection, e.as_str(), now);
            u.email_verified = opt_bool(&m, "email_verified")?.unwrap_or(false);
            (u, e.as_str().to_string())
        }
        Strategy::Sms => {
            let raw =
                opt_str(&m, "phone_number")?.ok_or_else(|| skip(Reason::MissingPhoneNumber))?;
            let p = PhoneNumber::parse(raw.trim()).map_err(|_| skip(Reason::InvalidPhoneNumber))?;
            let mut u = User::new_sms_user(bare, connection, p.as_str(), now);
            u.phone_verified = opt_bool(&m, "phone_verified")?.unwrap_or(false);
            (u, p.as_str().to_string())
        }
    };
    apply_profile(&mut user, &m, now)?;
    if linked {
        report.linked_identities += 1;
    }
    for (k, v) in &m {
        if !v.is_null() && !KEPT.contains(&k.as_str()) {
            *report.ignored_fields.entry(k.clone()).or_default() += 1;
        }
    }
    Ok((user, identifier))
}

/// The user's strategy and connection, from `identities[0]` (or the flat
/// `identities[0].connection` an export job with named fields writes), falling back on the
/// `user_id` prefix: Auth0's passwordless connections are always named `email` and `sms`.
/// Also says whether the user has linked identities.
fn identity<'a>(
    m: &'a Map<String, Value>,
    user_id: &str,
    connections: &HashMap<String, Strategy>,
) -> Result<(Strategy, &'a str, bool), Skip> {
    let first = match m.get("identities") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => match a.first() {
            None => None,
            Some(Value::Object(o)) => Some(o),
            Some(_) => return Err(skip_with(Reason::InvalidField, "identities")),
        },
        Some(_) => return Err(skip_with(Reason::InvalidField, "identities")),
    };
    let linked = matches!(m.get("identities"), Some(Value::Array(a)) if a.len() > 1);
    let field = |key: &str, flat: &str| -> Result<Option<&'a str>, Skip> {
        match first {
            Some(o) => opt_str(o, key),
            None => opt_str(m, flat),
        }
    };
    let prefix = user_id.split_once('|').map(|(p, _)| p);
    let provider = field("provider", "identities[0].provider")?
        .or(prefix)
        .unwrap_or_default();
    let connection = match field("connection", "identities[0].connection")? {
        Some(c) => c,
        None => match (provider, prefix) {
            ("email", Some("email")) => "email",
            ("sms", Some("sms")) => "sms",
            _ => return Err(skip_with(Reason::OtherConnection, provider.to_string())),
        },
    };
    let wanted = match provider {
        "email" => Strategy::Email,
        "sms" => Strategy::Sms,
        _ => return Err(skip_with(Reason::OtherConnection, connection)),
    };
    match connections.get(connection) {
        None => Err(skip_with(Reason::UnknownConnection, connection)),
        Some(s) if *s != wanted => Err(skip_with(
            Reason::UnknownConnection,
            format!("{connection} is an {} connection here", s.as_str()),
        )),
        Some(_) => Ok((wanted, connection, linked)),
    }
}

/// Auth0's profile fields, where present.
fn apply_profile(u: &mut User, m: &Map<String, Value>, now: UnixTime) -> Result<(), Skip> {
    if let Some(n) = opt_str(m, "name")?.filter(|s| !s.is_empty()) {
        u.name = n.to_string();
    }
    if let Some(n) = opt_str(m, "nickname")?.filter(|s| !s.is_empty()) {
        u.nickname = n.to_string();
    }
    if let Some(p) = opt_str(m, "picture")?.filter(|s| !s.is_empty()) {
        u.picture = p.to_string();
    }
    u.created_at = opt_time(m, "created_at")?.unwrap_or(now);
    u.updated_at = opt_time(m, "updated_at")?.unwrap_or(u.created_at);
    u.last_login = opt_time(m, "last_login")?;
    u.logins_count = match m.get("logins_count") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| skip_with(Reason::InvalidField, "logins_count"))?,
    };
    u.blocked = opt_bool(m, "blocked")?.unwrap_or(false);
    u.app_metadata = opt_metadata(m, "app_metadata")?;
    u.user_metadata = opt_metadata(m, "user_metadata")?;
    Ok(())
}

fn opt_str<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Skip> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(skip_with(Reason::InvalidField, key)),
    }
}

fn opt_bool(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, Skip> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(skip_with(Reason::InvalidField, key)),
    }
}

/// An RFC 3339 time (`2024-03-01T10:20:30.123Z`), or the `{"$date": …}` form some export
/// tools write, as Unix seconds.
fn opt_time(m: &Map<String, Value>, key: &str) -> Result<Option<UnixTime>, Skip> {
    let text = match m.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(o)) => match o.get("$date") {
            Some(Value::String(s)) => s.as_str(),
            _ => return Err(skip_with(Reason::InvalidField, key)),
        },
        Some(_) => return Err(skip_with(Reason::InvalidField, key)),
    };
    parse_rfc3339(text)
        .map(Some)
        .ok_or_else(|| skip_with(Reason::InvalidField, key))
}

pub fn parse_rfc3339(text: &str) -> Option<UnixTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

fn opt_metadata(m: &Map<String, Value>, key: &str) -> Result<Map<String, Value>, Skip> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => {
            let size = serde_json::to_vec(o).map(|b| b.len()).unwrap_or(usize::MAX);
            if size > METADATA_MAX {
                return Err(skip_with(Reason::MetadataTooLarge, key));
            }
            Ok(o.clone())
        }
        Some(_) => Err(skip_with(Reason::InvalidField, key)),
    }
}

/// Checks a users file's format from its first bytes, before the import touches the database:
/// true for a JSON array, false for JSON lines.
pub fn sniff(path: &Path) -> anyhow::Result<bool> {
    let mut file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut head = [0u8; 512];
    let n = file.read(&mut head)?;
    let head = &head[..n];
    if head.starts_with(&[0x1f, 0x8b]) {
        anyhow::bail!(
            "{} is gzip-compressed (Auth0's export job writes .json.gz): gunzip it first",
            path.display()
        );
    }
    match head.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Ok(true),
        Some(b'{') | None => Ok(false),
        Some(_) => anyhow::bail!(
            "{} is neither JSON lines nor a JSON array (export the users with format \"json\"; CSV is not read)",
            path.display()
        ),
    }
}

/// The rows of an export file: JSON lines (what Auth0's export job writes, once gunzipped)
/// or one JSON array. Row numbers are line numbers for JSON lines, positions for an array.
enum Source {
    Lines {
        reader: BufReader<std::fs::File>,
        line: u64,
        read: u64,
        total: u64,
        buf: String,
    },
    Array {
        rows: std::vec::IntoIter<Value>,
        index: u64,
        total: u64,
    },
}

impl Source {
    fn open(path: &Path) -> anyhow::Result<Source> {
        let open = || std::fs::File::open(path).with_context(|| format!("{}", path.display()));
        let total = open()?.metadata().map(|m| m.len()).unwrap_or(0);
        if sniff(path)? {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
            let rows: Vec<Value> = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON array", path.display()))?;
            Ok(Source::Array {
                rows: rows.into_iter(),
                index: 0,
                total,
            })
        } else {
            Ok(Source::Lines {
                reader: BufReader::with_capacity(1 << 20, open()?),
                line: 0,
                read: 0,
                total,
                buf: String::new(),
            })
        }
    }

    fn total_bytes(&self) -> u64 {
        match self {
            Source::Lines { total, .. } | Source::Array { total, .. } => *total,
        }
    }

    fn bytes_read(&self) -> u64 {
        match self {
            Source::Lines { read, .. } => *read,
            Source::Array {
                rows, index, total, ..
            } => {
                let all = index + rows.len() as u64;
                (total * index).checked_div(all).unwrap_or(*total)
            }
        }
    }

    /// The next row: its number, and its value (`None` when it is not JSON). Blank lines are
    /// not rows.
    fn next_row(&mut self) -> anyhow::Result<Option<(u64, Option<Value>)>> {
        match self {
            Source::Array { rows, index, .. } => Ok(rows.next().map(|v| {
                *index += 1;
                (*index, Some(v))
            })),
            Source::Lines {
                reader,
                line,
                read,
                buf,
                ..
            } => loop {
                buf.clear();
                let n = reader.read_line(buf)?;
                if n == 0 {
                    return Ok(None);
                }
                *line += 1;
                *read += n as u64;
                let text = buf.trim();
                if text.is_empty() {
                    continue;
                }
                return Ok(Some((*line, serde_json::from_str(text).ok())));
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns() -> HashMap<String, Strategy> {
        HashMap::from([
            ("email".to_string(), Strategy::Email),
            ("sms".to_string(), Strategy::Sms),
        ])
    }

    fn parse(v: Value) -> Result<(User, String), Skip> {
        parse_row(v, &conns(), 1_000, &mut UserReport::default())
    }

    #[test]
    fn an_email_user_keeps_its_id_and_profile() {
        let (u, ident) = parse(json!({
            "user_id": "email|65c4bca2b6c3ddf424cef5d5", "email": "Jane@Example.COM",
            "email_verified": true, "identities": [{"connection": "email", "provider": "email",
            "user_id": "65c4bca2b6c3ddf424cef5d5", "isSocial": false}],
            "created_at": "2023-01-02T03:04:05.678Z", "last_login": "2024-05-06T07:08:09Z",
            "logins_count": 7, "name": "Jane", "app_metadata": {"plan": "pro"}
        }))
        .unwrap();
        assert_eq!(u.user_id, "email|65c4bca2b6c3ddf424cef5d5");
        assert_eq!(ident, "jane@example.com");
        assert_eq!(u.name, "Jane");
        assert_eq!(u.nickname, "jane");
        assert_eq!(u.created_at, 1_672_628_645);
        assert_eq!(u.updated_at, u.created_at);
        assert_eq!(u.last_login, Some(1_714_979_289));
        assert_eq!((u.logins_count, u.email_verified), (7, true));
        assert_eq!(u.app_metadata["plan"], "pro");
    }

    #[test]
    fn an_sms_user_from_the_flat_export_fields() {
        let (u, ident) = parse(json!({
            "user_id": "sms|abc", "phone_number": "+14155552671",
            "identities[0].connection": "sms", "phone_verified": true
        }))
        .unwrap();
        assert_eq!(
            (u.user_id.as_str(), ident.as_str()),
            ("sms|abc", "+14155552671")
        );
        assert!(u.phone_verified && u.email.is_none());
        assert_eq!(u.created_at, 1_000);
    }

    #[test]
    fn rows_that_are_skipped_and_why() {
        let cases = [
            (json!([1]), Reason::InvalidJson),
            (json!({"email": "a@b.c"}), Reason::MissingUserId),
            (
                json!({"user_id": "auth0|1", "email": "a@b.c", "identities": [{"connection": "Username-Password-Authentication", "provider": "auth0"}]}),
                Reason::OtherConnection,
            ),
            (
                json!({"user_id": "google-oauth2|1", "email": "a@b.c"}),
                Reason::OtherConnection,
            ),
            (
                json!({"user_id": "email|1", "email": "a@b.c", "identities": [{"connection": "magic", "provider": "email"}]}),
                Reason::UnknownConnection,
            ),
            (
                json!({"user_id": "sms|1", "email": "a@b.c", "identities": [{"connection": "email", "provider": "email"}]}),
                Reason::BadUserId,
            ),
            (
                json!({"user_id": "email|", "email": "a@b.c"}),
                Reason::BadUserId,
            ),
            (json!({"user_id": "email|1"}), Reason::MissingEmail),
            (
                json!({"user_id": "email|1", "email": "not an email"}),
                Reason::InvalidEmail,
            ),
            (json!({"user_id": "sms|1"}), Reason::MissingPhoneNumber),
            (
                json!({"user_id": "sms|1", "phone_number": "0415 555 2671"}),
                Reason::InvalidPhoneNumber,
            ),
            (
                json!({"user_id": "email|1", "email": "a@b.c", "created_at": "yesterday"}),
                Reason::InvalidField,
            ),
            (
                json!({"user_id": "email|1", "email": "a@b.c", "logins_count": -1}),
                Reason::InvalidField,
            ),
            (
                json!({"user_id": "email|1", "email": "a@b.c", "user_metadata": {"x": "y".repeat(17_000)}}),
                Reason::MetadataTooLarge,
            ),
        ];
        for (v, want) in cases {
            let got = parse(v.clone()).map(|_| ()).unwrap_err().reason;
            assert_eq!(got, want, "{v}");
        }
    }

    #[test]
    fn unkept_fields_are_counted() {
        let mut r = UserReport::default();
        parse_row(
            json!({"user_id": "email|1", "email": "a@b.c", "given_name": "A", "last_ip": null,
                   "identities": [{"connection": "email", "provider": "email"}, {"connection": "github", "provider": "github"}]}),
            &conns(),
            0,
            &mut r,
        )
        .unwrap();
        assert_eq!(r.ignored_fields.get("given_name"), Some(&1));
        assert!(!r.ignored_fields.contains_key("last_ip"));
        assert_eq!(r.linked_identities, 1);
    }

    #[test]
    fn file_formats_are_told_apart_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        assert!(!sniff(&file("a.json", b"{\"user_id\":\"email|1\"}\n")).unwrap());
        assert!(sniff(&file("b.json", b"  [\n{}]")).unwrap());
        assert!(!sniff(&file("empty.json", b"")).unwrap());
        let gz = sniff(&file("c.json.gz", &[0x1f, 0x8b, 8, 0])).unwrap_err();
        assert!(gz.to_string().contains("gunzip"), "{gz}");
        let csv = sniff(&file("d.csv", b"user_id,email\n")).unwrap_err();
        assert!(csv.to_string().contains("CSV"), "{csv}");
    }

    #[test]
    fn mongo_style_dates() {
        let m = json!({"created_at": {"$date": "2020-01-01T00:00:00.000Z"}});
        assert_eq!(
            opt_time(m.as_object().unwrap(), "created_at").unwrap(),
            Some(1_577_836_800)
        );
    }
}
