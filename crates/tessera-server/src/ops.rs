//! Domain operations on applications, connections, users, signing keys and the audit log: one
//! implementation for the Management API, the dashboard and the CLI. Each operation checks its
//! input the way the configuration file is checked, writes through the store, and records an
//! audit event (`sapi`) naming who acted. Input and output use Auth0's Management API shapes.
//!
//! Nothing here is cached: every node reads applications and connections from the database on
//! each request, so a change applies on every node at once, without a restart. Signing keys are
//! cached per node and refreshed (see `keys::KeyRing::refresh`).

use std::fmt;

use secrecy::SecretString;
use serde_json::{Map, Value, json};
use tessera_core::UnixTime;
use tessera_core::client::{AppType, Client, ClientSettings};
use tessera_core::clock::rfc3339;
use tessera_core::connection::{Connection, EmailTemplate, LinkConfirmation, Strategy};
use tessera_core::crypto::{ServerSecret, sha256};
use tessera_core::email::EmailAddress;
use tessera_core::phone::PhoneNumber;
use tessera_core::rand::{Random, ordered_id, token};
use tessera_core::user::User;
use tessera_store::{Event, EventFilter, KeyStatus, Store, StoreError, StoredKey};

use crate::config::{AppConfig, check_app};

/// Who acts, for the audit event.
#[derive(Debug, Clone)]
pub struct Actor {
    /// How the event's description names the actor: `Management API`, `Dashboard (…)`, `CLI`.
    pub label: String,
    /// The application that called the Management API.
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    pub fn cli() -> Actor {
        let user = std::env::var("USER").unwrap_or_default();
        Actor {
            label: if user.is_empty() {
                "CLI".into()
            } else {
                format!("CLI ({user})")
            },
            client_id: None,
            ip: None,
            user_agent: None,
        }
    }

    pub fn api(client_id: &str, ip: Option<String>, user_agent: Option<String>) -> Actor {
        Actor {
            label: "Management API".into(),
            client_id: Some(client_id.to_string()),
            ip,
            user_agent,
        }
    }

    pub fn admin(email: &str, ip: Option<String>, user_agent: Option<String>) -> Actor {
        Actor {
            label: format!("Dashboard ({email})"),
            client_id: None,
            ip,
            user_agent,
        }
    }
}

/// Why an operation was refused.
#[derive(Debug)]
pub enum OpError {
    /// What does not exist (`client`, `connection`, `user`, `key`), and the message.
    NotFound(&'static str, String),
    Invalid(String),
    Conflict(String),
    Store(StoreError),
    Internal(String),
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::NotFound(_, m) | OpError::Invalid(m) | OpError::Conflict(m) => f.write_str(m),
            OpError::Internal(m) => write!(f, "internal error: {m}"),
            OpError::Store(e) => write!(f, "storage error: {e}"),
        }
    }
}

impl std::error::Error for OpError {}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}

fn invalid(m: impl Into<String>) -> OpError {
    OpError::Invalid(m.into())
}

fn no_client(id: &str) -> OpError {
    OpError::NotFound("client", format!("The client {id} does not exist."))
}

fn no_connection(name: &str) -> OpError {
    OpError::NotFound(
        "connection",
        format!("The connection {name} does not exist."),
    )
}

fn no_user(id: &str) -> OpError {
    OpError::NotFound("user", format!("The user {id} does not exist."))
}

/// The dashboard's own sign-in application (see `crate::admin`): made at every start, and
/// never created, changed, rotated or deleted through these operations.
pub const DASHBOARD_CLIENT_ID: &str = "tessera-dashboard";

fn not_reserved(id: &str) -> Result<(), OpError> {
    if id == DASHBOARD_CLIENT_ID {
        return Err(invalid(format!(
            "{id} is Tessera's own dashboard application: it cannot be created, changed or deleted"
        )));
    }
    Ok(())
}

/// Management API scopes an application can be granted, as Auth0 names them.
pub const SCOPES: &[&str] = &[
    "read:users",
    "create:users",
    "update:users",
    "delete:users",
    "read:logs",
    "read:clients",
    "create:clients",
    "update:clients",
    "delete:clients",
    "read:connections",
    "update:connections",
    "read:signing_keys",
    "create:signing_keys",
    "update:signing_keys",
];

/// The operations, bound to a store, a moment and an actor.
pub struct Ops<'a> {
    pub store: &'a dyn Store,
    pub rng: &'a dyn Random,
    pub now: UnixTime,
    pub actor: Actor,
    /// Seals the secrets an operator gives (the SMS provider's credentials).
    pub secret: &'a ServerSecret,
}

impl Ops<'_> {
    async fn audit(
        &self,
        client_id: Option<&str>,
        connection: Option<&str>,
        user_id: Option<&str>,
        what: String,
    ) -> Result<(), OpError> {
        self.store
            .record_event(&Event {
                id: ordered_id(self.now.saturating_mul(1000), self.rng),
                at: self.now,
                kind: "sapi".into(),
                client_id: client_id
                    .map(str::to_string)
                    .or(self.actor.client_id.clone()),
                connection: connection.map(str::to_string),
                user_id: user_id.map(str::to_string),
                ip: self.actor.ip.clone(),
                user_agent: self.actor.user_agent.clone(),
                description: format!("{}: {what}", self.actor.label),
            })
            .await?;
        Ok(())
    }

    // Applications.

    pub async fn list_clients(&self) -> Result<Vec<Client>, OpError> {
        Ok(self.store.list_clients().await?)
    }

    pub async fn get_client(&self, id: &str) -> Result<Client, OpError> {
        self.store
            .get_client(id)
            .await?
            .ok_or_else(|| no_client(id))
    }

    /// Creates an application from Auth0's client fields. A confidential application gets a
    /// generated secret, returned once (an import may bring its own `client_secret`).
    pub async fn create_client(
        &self,
        body: &Map<String, Value>,
    ) -> Result<(Client, Option<String>), OpError> {
        let name = str_field(body, "name")?
            .ok_or_else(|| invalid("Payload validation error: Missing required property: name"))?;
        let app_type = match str_field(body, "app_type")? {
            None => AppType::RegularWeb,
            Some(t) => parse_app_type(&t)?,
        };
        let client_id = match str_field(body, "client_id")? {
            Some(id) => id,
            None => random_client_id(self.rng),
        };
        not_reserved(&client_id)?;
        let secret = match (
            app_type.is_confidential(),
            str_field(body, "client_secret")?,
        ) {
            (true, Some(s)) => Some(s),
            (true, None) => Some(token(self.rng)),
            (false, Some(_)) => {
                return Err(invalid(format!(
                    "a {} application is public and has no client_secret",
                    app_type.auth0_name()
                )));
            }
            (false, None) => None,
        };
        let mut settings = ClientSettings {
            name,
            app_type,
            callbacks: vec![],
            web_origins: vec![],
            grant_types: vec![],
            connections: vec!["email".into()],
            trust_forwarded_for: false,
            allowed_logout_urls: vec![],
            allow_browser_start: false,
            cross_origin_authentication: true,
            legacy_passwordless: false,
            management_scopes: vec![],
            id_token_lifetime_secs: None,
            signing_alg: None,
        };
        let mut rest = body.clone();
        for k in ["name", "app_type", "client_id", "client_secret"] {
            rest.remove(k);
        }
        let grants_given = rest.contains_key("grant_types");
        apply_client_fields(&mut settings, &rest)?;
        let mut client = Client {
            client_id,
            secret_hash: secret.as_deref().map(sha256),
            settings,
        };
        let grants = validate_client(&client, secret.as_deref(), grants_given)?;
        client.settings.grant_types = grants;
        self.check_connections_exist(&client.settings.connections)
            .await?;
        if !self.store.insert_client(&client, self.now).await? {
            return Err(OpError::Conflict(format!(
                "An application with client_id {} already exists.",
                client.client_id
            )));
        }
        self.audit(
            Some(&client.client_id),
            None,
            None,
            format!("application {} created", client.client_id),
        )
        .await?;
        Ok((client, secret))
    }

    /// Changes an application's fields (Auth0's PATCH: absent fields stay as they are).
    pub async fn update_client(
        &self,
        id: &str,
        patch: &Map<String, Value>,
    ) -> Result<Client, OpError> {
        not_reserved(id)?;
        let mut client = self.get_client(id).await?;
        if let Some(k) = ["client_id", "client_secret", "app_type"]
            .iter()
            .find(|k| patch.contains_key(**k))
        {
            return Err(invalid(format!(
                "{k} cannot be changed (rotate the secret, or create a new application)"
            )));
        }
        let mut rest = patch.clone();
        if let Some(n) = str_field(patch, "name")? {
            client.settings.name = n;
            rest.remove("name");
        }
        apply_client_fields(&mut client.settings, &rest)?;
        validate_client(&client, None, true)?;
        self.check_connections_exist(&client.settings.connections)
            .await?;
        if !self.store.update_client(&client, self.now).await? {
            return Err(no_client(id));
        }
        let mut fields: Vec<&str> = patch.keys().map(String::as_str).collect();
        fields.sort_unstable();
        self.audit(
            Some(id),
            None,
            None,
            format!("application {id} updated ({})", fields.join(", ")),
        )
        .await?;
        Ok(client)
    }

    pub async fn delete_client(&self, id: &str) -> Result<(), OpError> {
        not_reserved(id)?;
        if !self.store.delete_client(id).await? {
            return Err(no_client(id));
        }
        self.audit(Some(id), None, None, format!("application {id} deleted"))
            .await
    }

    /// A new secret for a confidential application; the old one stops working at once. The
    /// secret is returned once and stored only as a digest.
    pub async fn rotate_secret(&self, id: &str) -> Result<(Client, String), OpError> {
        not_reserved(id)?;
        let mut client = self.get_client(id).await?;
        if !client.is_confidential() {
            return Err(invalid(format!(
                "{id} is a public ({}) application: it has no secret",
                client.settings.app_type.auth0_name()
            )));
        }
        let secret = token(self.rng);
        client.secret_hash = Some(sha256(&secret));
        if !self.store.update_client(&client, self.now).await? {
            return Err(no_client(id));
        }
        self.audit(
            Some(id),
            None,
            None,
            format!("application {id}: client secret rotated"),
        )
        .await?;
        Ok((client, secret))
    }

    async fn check_connections_exist(&self, names: &[String]) -> Result<(), OpError> {
        for n in names {
            if self.store.get_connection(n).await?.is_none() {
                return Err(invalid(format!(
                    "connection {n:?} is not configured on this server"
                )));
            }
        }
        Ok(())
    }

    // Connections.

    pub async fn list_connections(&self) -> Result<Vec<(Connection, Vec<String>)>, OpError> {
        let clients = self.store.list_clients().await?;
        Ok(self
            .store
            .list_connections()
            .await?
            .into_iter()
            .map(|c| {
                let enabled = enabled_clients(&clients, &c.name);
                (c, enabled)
            })
            .collect())
    }

    pub async fn get_connection(&self, name: &str) -> Result<(Connection, Vec<String>), OpError> {
        let c = self
            .store
            .get_connection(name)
            .await?
            .ok_or_else(|| no_connection(name))?;
        let clients = self.store.list_clients().await?;
        let enabled = enabled_clients(&clients, name);
        Ok((c, enabled))
    }

    /// Changes a connection's `options` (Auth0's names, see [`apply_connection_options`]) and,
    /// with `enabled_clients`, which applications may use it.
    pub async fn update_connection(
        &self,
        name: &str,
        patch: &Map<String, Value>,
    ) -> Result<(Connection, Vec<String>), OpError> {
        let (mut conn, _) = self.get_connection(name).await?;
        if let Some(k) = patch
            .keys()
            .find(|k| !matches!(k.as_str(), "options" | "enabled_clients"))
        {
            return Err(invalid(format!(
                "Payload validation error: Additional properties not allowed: {k}"
            )));
        }
        if let Some(o) = patch.get("options") {
            let o = o
                .as_object()
                .ok_or_else(|| invalid("options must be an object"))?;
            let (provider, rest): (Map<String, Value>, Map<String, Value>) =
                o.clone().into_iter().partition(|(k, _)| {
                    conn.strategy == Strategy::Sms && SMS_PROVIDER_KEYS.contains(&k.as_str())
                });
            apply_connection_options(&mut conn, &rest)?;
            if !provider.is_empty() {
                apply_sms_provider(&mut conn, &provider, self.secret, self.rng)?;
            }
        }
        let enabled = match patch.get("enabled_clients") {
            None => None,
            Some(v) => Some(string_list(v, "enabled_clients")?),
        };
        let mut clients = Vec::new();
        if let Some(ids) = &enabled {
            for id in ids {
                clients.push(self.get_client(id).await?);
            }
        }
        if !self.store.update_connection(&conn, self.now).await? {
            return Err(no_connection(name));
        }
        if let Some(ids) = &enabled {
            // The dashboard's application keeps its connections whatever the list says.
            for mut c in self.store.list_clients().await? {
                if c.client_id == DASHBOARD_CLIENT_ID {
                    continue;
                }
                let on = ids.contains(&c.client_id);
                if on != c.has_connection(name) {
                    if on {
                        c.settings.connections.push(name.to_string());
                    } else {
                        c.settings.connections.retain(|x| x != name);
                    }
                    self.store.update_client(&c, self.now).await?;
                }
            }
        }
        let mut fields: Vec<&str> = patch.keys().map(String::as_str).collect();
        fields.sort_unstable();
        self.audit(
            None,
            Some(name),
            None,
            format!("connection {name} updated ({})", fields.join(", ")),
        )
        .await?;
        self.get_connection(name).await
    }

    // Users.

    pub async fn search_users(&self, q: &str, limit: i64) -> Result<Vec<User>, OpError> {
        Ok(self
            .store
            .list_users(&q.trim().to_lowercase(), limit)
            .await?)
    }

    pub async fn get_user(&self, id: &str) -> Result<User, OpError> {
        self.store.get_user(id).await?.ok_or_else(|| no_user(id))
    }

    /// Creates a user of the `email` or `sms` connection (Auth0's `POST /api/v2/users`).
    pub async fn create_user(&self, body: &Map<String, Value>) -> Result<User, OpError> {
        const KNOWN: &[&str] = &[
            "connection",
            "email",
            "phone_number",
            "email_verified",
            "phone_verified",
            "user_id",
            "name",
            "nickname",
            "picture",
            "blocked",
            "app_metadata",
            "user_metadata",
        ];
        if let Some(k) = body.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(invalid(format!(
                "Payload validation error: Additional properties not allowed: {k}"
            )));
        }
        let connection = str_field(body, "connection")?.ok_or_else(|| {
            invalid("Payload validation error: Missing required property: connection")
        })?;
        let conn = self
            .store
            .get_connection(&connection)
            .await?
            .ok_or_else(|| no_connection(&connection))?;
        let id_part = match str_field(body, "user_id")? {
            None => ordered_id(self.now.saturating_mul(1000), self.rng),
            Some(id) => {
                let prefix = format!("{}|", conn.strategy.as_str());
                let bare = id.strip_prefix(&prefix).unwrap_or(&id).to_string();
                if bare.is_empty()
                    || bare.len() > 128
                    || bare
                        .chars()
                        .any(|c| c.is_control() || c.is_whitespace() || c == '|')
                {
                    return Err(invalid(format!("user_id {id:?} is not a valid id")));
                }
                bare
            }
        };
        let (mut user, identifier) = match conn.strategy {
            Strategy::Email => {
                let raw = str_field(body, "email")?.ok_or_else(|| {
                    invalid("Payload validation error: Missing required property: email")
                })?;
                let e = EmailAddress::parse(&raw)
                    .map_err(|_| invalid(format!("email {raw:?} is not a valid address")))?;
                let mut u = User::new_email_user(&id_part, &connection, e.as_str(), self.now);
                u.email_verified = bool_field(body, "email_verified")?.unwrap_or(false);
                (u, e.as_str().to_string())
            }
            Strategy::Sms => {
                let raw = str_field(body, "phone_number")?.ok_or_else(|| {
                    invalid("Payload validation error: Missing required property: phone_number")
                })?;
                let p = PhoneNumber::parse(&raw).map_err(|_| {
                    invalid(format!(
                        "phone_number {raw:?} is not a valid number in E.164 form (+14155552671)"
                    ))
                })?;
                let mut u = User::new_sms_user(&id_part, &connection, p.as_str(), self.now);
                u.phone_verified = bool_field(body, "phone_verified")?.unwrap_or(false);
                (u, p.as_str().to_string())
            }
        };
        user.last_login = None;
        user.logins_count = 0;
        if let Some(n) = str_field(body, "name")? {
            user.name = n;
        }
        if let Some(n) = str_field(body, "nickname")? {
            user.nickname = n;
        }
        if let Some(p) = str_field(body, "picture")? {
            user.picture = p;
        }
        user.blocked = bool_field(body, "blocked")?.unwrap_or(false);
        for (key, slot) in [
            ("app_metadata", &mut user.app_metadata),
            ("user_metadata", &mut user.user_metadata),
        ] {
            if let Some(v) = body.get(key) {
                merge_metadata(slot, v, key)?;
            }
        }
        let inserted = self
            .store
            .insert_users(&[(user.clone(), identifier)])
            .await?;
        if inserted.is_empty() {
            return Err(OpError::Conflict("The user already exists.".into()));
        }
        self.audit(
            None,
            Some(&connection),
            Some(&user.user_id),
            "user created".into(),
        )
        .await?;
        Ok(user)
    }

    /// Auth0's `PATCH /api/v2/users/{id}`: `blocked`, and `app_metadata` / `user_metadata`
    /// merged key by key (a key set to `null` is removed).
    pub async fn update_user(&self, id: &str, patch: &Map<String, Value>) -> Result<User, OpError> {
        if let Some(k) = patch
            .keys()
            .find(|k| !matches!(k.as_str(), "blocked" | "app_metadata" | "user_metadata"))
        {
            return Err(invalid(format!(
                "Payload validation error: Additional properties not allowed: {k} \
                 (blocked, app_metadata and user_metadata can be changed)"
            )));
        }
        let blocked = bool_field(patch, "blocked")?;
        let mut user = self.get_user(id).await?;
        let metadata = patch.contains_key("app_metadata") || patch.contains_key("user_metadata");
        for (key, slot) in [
            ("app_metadata", &mut user.app_metadata),
            ("user_metadata", &mut user.user_metadata),
        ] {
            if let Some(v) = patch.get(key) {
                merge_metadata(slot, v, key)?;
            }
        }
        if metadata && !self.store.set_user_metadata(&user, self.now).await? {
            return Err(no_user(id));
        }
        if let Some(b) = blocked
            && !self.store.set_user_blocked(id, b, self.now).await?
        {
            return Err(no_user(id));
        }
        let mut what = Vec::new();
        if let Some(b) = blocked {
            what.push(if b { "blocked" } else { "unblocked" });
        }
        if metadata {
            what.push("metadata updated");
        }
        self.audit(
            None,
            Some(&user.connection),
            Some(id),
            format!("user {}", what.join(", ")),
        )
        .await?;
        self.get_user(id).await
    }

    pub async fn delete_user(&self, id: &str) -> Result<(), OpError> {
        let user = self.get_user(id).await?;
        if !self.store.delete_user(id).await? {
            return Err(no_user(id));
        }
        self.audit(
            None,
            Some(&user.connection),
            Some(id),
            "user deleted".into(),
        )
        .await
    }

    // Signing keys.

    pub async fn list_keys(&self) -> Result<Vec<StoredKey>, OpError> {
        Ok(self.store.all_signing_keys().await?)
    }

    /// Makes a new current key for every algorithm in use (RS256's first); each current key
    /// stays published as its algorithm's previous key.
    pub async fn rotate_key(&self, secret: &ServerSecret) -> Result<Vec<String>, OpError> {
        let kids = crate::keys::rotate(self.store, secret, self.rng, self.now)
            .await
            .map_err(|e| OpError::Internal(e.to_string()))?;
        self.audit(
            None,
            None,
            None,
            format!("signing key rotated: {} now current", kids.join(", ")),
        )
        .await?;
        Ok(kids)
    }

    /// Takes a previous key out of the JWKS at once: the tokens it signed stop verifying.
    pub async fn revoke_key(&self, kid: &str) -> Result<(), OpError> {
        let keys = self.store.all_signing_keys().await?;
        match keys.iter().find(|k| k.kid == kid) {
            None => {
                return Err(OpError::NotFound(
                    "key",
                    format!("The signing key {kid} does not exist."),
                ));
            }
            Some(k) if k.status == KeyStatus::Current => {
                return Err(invalid(
                    "The current signing key cannot be revoked: rotate first, then revoke it.",
                ));
            }
            Some(k) if k.status == KeyStatus::Revoked => {
                return Err(OpError::Conflict(format!(
                    "The signing key {kid} is already revoked."
                )));
            }
            Some(_) => {}
        }
        if !self.store.revoke_key(kid).await? {
            return Err(OpError::Conflict(format!(
                "The signing key {kid} changed meanwhile; try again."
            )));
        }
        self.audit(None, None, None, format!("signing key {kid} revoked"))
            .await
    }

    // Logs.

    pub async fn logs(&self, filter: &EventFilter) -> Result<Vec<(i64, Event)>, OpError> {
        Ok(self.store.find_events(filter).await?)
    }
}

fn enabled_clients(clients: &[Client], connection: &str) -> Vec<String> {
    clients
        .iter()
        .filter(|c| c.has_connection(connection))
        .map(|c| c.client_id.clone())
        .collect()
}

/// A client id in Auth0's shape: 32 letters and digits.
fn random_client_id(rng: &dyn Random) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..32)
        .map(|_| ALPHABET[tessera_core::rand::below(rng, ALPHABET.len() as u32) as usize] as char)
        .collect()
}

fn parse_app_type(t: &str) -> Result<AppType, OpError> {
    match t {
        "regular_web" => Ok(AppType::RegularWeb),
        "spa" => Ok(AppType::Spa),
        "native" => Ok(AppType::Native),
        other => Err(invalid(format!(
            "app_type must be regular_web, spa or native, not {other:?}"
        ))),
    }
}

fn str_field(m: &Map<String, Value>, key: &str) -> Result<Option<String>, OpError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(invalid(format!("{key} must be a string"))),
    }
}

fn bool_field(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, OpError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(format!("{key} must be a boolean"))),
    }
}

fn int_field(m: &Map<String, Value>, key: &str) -> Result<Option<i64>, OpError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(format!("{key} must be an integer"))),
    }
}

fn string_list(v: &Value, key: &str) -> Result<Vec<String>, OpError> {
    let a = v
        .as_array()
        .ok_or_else(|| invalid(format!("{key} must be an array of strings")))?;
    a.iter()
        .map(|x| {
            x.as_str()
                .map(|s| s.trim().to_string())
                .ok_or_else(|| invalid(format!("{key} must be an array of strings")))
        })
        .collect()
}

/// Applies Auth0's client fields (and Tessera's own) to `s`; unknown fields are refused.
pub fn apply_client_fields(s: &mut ClientSettings, m: &Map<String, Value>) -> Result<(), OpError> {
    for (k, v) in m {
        match k.as_str() {
            "name" => {
                s.name = str_field(m, k)?.ok_or_else(|| invalid("name must not be empty"))?;
            }
            "callbacks" => s.callbacks = string_list(v, k)?,
            "web_origins" | "allowed_origins" => s.web_origins = string_list(v, k)?,
            "allowed_logout_urls" => s.allowed_logout_urls = string_list(v, k)?,
            "grant_types" => s.grant_types = string_list(v, k)?,
            "connections" => s.connections = string_list(v, k)?,
            "management_scopes" => s.management_scopes = string_list(v, k)?,
            "cross_origin_authentication" => {
                s.cross_origin_authentication = bool_field(m, k)?.unwrap_or(true);
            }
            "allow_browser_start" => s.allow_browser_start = bool_field(m, k)?.unwrap_or(false),
            "legacy_passwordless" => s.legacy_passwordless = bool_field(m, k)?.unwrap_or(false),
            "trust_forwarded_for" => s.trust_forwarded_for = bool_field(m, k)?.unwrap_or(false),
            "jwt_configuration" => {
                let j = v
                    .as_object()
                    .ok_or_else(|| invalid("jwt_configuration must be an object"))?;
                for (jk, _) in j {
                    match jk.as_str() {
                        "lifetime_in_seconds" => {
                            s.id_token_lifetime_secs = int_field(j, jk)?;
                        }
                        "alg" => match str_field(j, jk)?.as_deref() {
                            None | Some("RS256") => s.signing_alg = None,
                            Some(a) if tessera_core::jwt::Alg::parse(a).is_some() => {
                                s.signing_alg = Some(a.to_string());
                            }
                            Some(other) => {
                                return Err(invalid(format!(
                                    "jwt_configuration.alg must be RS256, ES256 or EdDSA, not {other:?}"
                                )));
                            }
                        },
                        // Auth0 exports carry this; Tessera never uses a shared-secret alg.
                        "secret_encoded" => {}
                        other => {
                            return Err(invalid(format!(
                                "Payload validation error: Additional properties not allowed: jwt_configuration.{other}"
                            )));
                        }
                    }
                }
            }
            other => {
                return Err(invalid(format!(
                    "Payload validation error: Additional properties not allowed: {other}"
                )));
            }
        }
    }
    Ok(())
}

/// Checks an application as the configuration file would, and returns its grants (the
/// defaults for its type when none were given).
fn validate_client(
    c: &Client,
    secret: Option<&str>,
    grants_given: bool,
) -> Result<Vec<String>, OpError> {
    if let Some(s) = secret
        && s.len() < 32
    {
        return Err(invalid("client_secret must be at least 32 characters"));
    }
    let s = &c.settings;
    if s.name.is_empty() || s.name.len() > 200 {
        return Err(invalid("name must be 1 to 200 characters"));
    }
    let as_file = AppConfig {
        name: s.name.clone(),
        client_id: c.client_id.clone(),
        // Its length was checked above; a stored secret is a digest, and long enough.
        client_secret: c
            .secret_hash
            .as_ref()
            .map(|_| SecretString::from("x".repeat(32))),
        app_type: s.app_type,
        callbacks: s.callbacks.clone(),
        web_origins: s.web_origins.clone(),
        grant_types: grants_given.then(|| s.grant_types.clone()),
        connections: Some(s.connections.clone()),
        trust_forwarded_for: s.trust_forwarded_for,
        allowed_logout_urls: s.allowed_logout_urls.clone(),
        allow_browser_start: s.allow_browser_start,
        cross_origin_authentication: s.cross_origin_authentication,
        legacy_passwordless: s.legacy_passwordless,
        management_scopes: s.management_scopes.clone(),
        id_token_lifetime_secs: s.id_token_lifetime_secs,
        signing_alg: s.signing_alg.clone(),
    };
    let (grants, _) = check_app(&as_file).map_err(OpError::Invalid)?;
    Ok(grants)
}

/// Applies a connection's `options` in Auth0's names: `totp.length`, `totp.time_step`,
/// `disable_signup`, `brute_force_protection` (always on), `email` (`from`, `subject`, `body`,
/// `syntax`; `null` restores the built-in, translated email), and Tessera's `max_attempts` and
/// `magic_link_confirmation` (`auto`, `always`, `never`).
pub fn apply_connection_options(c: &mut Connection, o: &Map<String, Value>) -> Result<(), OpError> {
    let s = &mut c.settings;
    for (k, v) in o {
        match k.as_str() {
            "totp" => {
                let t = v
                    .as_object()
                    .ok_or_else(|| invalid("options.totp must be an object"))?;
                for (tk, _) in t {
                    match tk.as_str() {
                        "length" => {
                            let n = int_field(t, tk)?.unwrap_or(6);
                            s.code_length = u8::try_from(n).map_err(|_| {
                                invalid(format!("code length must be between 4 and 10, not {n}"))
                            })?;
                        }
                        "time_step" => s.code_lifetime_secs = int_field(t, tk)?.unwrap_or(180),
                        other => {
                            return Err(invalid(format!(
                                "Payload validation error: Additional properties not allowed: options.totp.{other}"
                            )));
                        }
                    }
                }
            }
            "disable_signup" => s.disable_signup = bool_field(o, k)?.unwrap_or(false),
            "brute_force_protection" => {
                if bool_field(o, k)? == Some(false) {
                    return Err(invalid(
                        "brute_force_protection cannot be turned off in Tessera",
                    ));
                }
            }
            "max_attempts" => s.max_attempts = int_field(o, k)?.unwrap_or(3),
            "magic_link_confirmation" => {
                s.magic_link_confirmation = match str_field(o, k)?.as_deref() {
                    None | Some("auto") => LinkConfirmation::Auto,
                    Some("always") => LinkConfirmation::Always,
                    Some("never") => LinkConfirmation::Never,
                    Some(other) => {
                        return Err(invalid(format!(
                            "magic_link_confirmation must be auto, always or never, not {other:?}"
                        )));
                    }
                };
            }
            "email" if c.strategy == Strategy::Email => {
                if v.is_null() {
                    s.email_template = None;
                    continue;
                }
                let e = v
                    .as_object()
                    .ok_or_else(|| invalid("options.email must be an object or null"))?;
                let mut t = s.email_template.clone().unwrap_or(EmailTemplate {
                    from: None,
                    subject: String::new(),
                    body: String::new(),
                    syntax: "liquid".into(),
                });
                for (ek, _) in e {
                    match ek.as_str() {
                        "from" => t.from = str_field(e, ek)?.filter(|f| !f.is_empty()),
                        "subject" => t.subject = str_field(e, ek)?.unwrap_or_default(),
                        "body" => t.body = str_field(e, ek)?.unwrap_or_default(),
                        "syntax" => t.syntax = str_field(e, ek)?.unwrap_or("liquid".into()),
                        other => {
                            return Err(invalid(format!(
                                "Payload validation error: Additional properties not allowed: options.email.{other}"
                            )));
                        }
                    }
                }
                if t.subject.is_empty() || t.body.is_empty() {
                    return Err(invalid(
                        "options.email needs a subject and a body (or null for the built-in email)",
                    ));
                }
                tessera_delivery::templates::validate(&t)
                    .map_err(|e| invalid(format!("options.email.{}: {}", e.part, e.reason)))?;
                s.email_template = Some(t);
            }
            // Auth0's sms connection keeps its text in `options.template` and `options.syntax`.
            "template" if c.strategy == Strategy::Sms => {
                s.sms_template = match str_field(o, k)? {
                    None => None,
                    Some(body) => Some(tessera_core::connection::SmsTemplate {
                        syntax: s
                            .sms_template
                            .as_ref()
                            .map_or("liquid".into(), |t| t.syntax.clone()),
                        body,
                    }),
                };
            }
            "syntax" if c.strategy == Strategy::Sms => {}
            k if c.strategy == Strategy::Sms && SMS_PROVIDER_KEYS.contains(&k) => {
                return Err(invalid(format!(
                    "options.{k}: the SMS provider is set through the Management API, the \
                     dashboard or the CLI (or the configuration file), not here"
                )));
            }
            "name" | "strategy" => {
                return Err(invalid(format!("{k} cannot be changed")));
            }
            other => {
                return Err(invalid(format!(
                    "Payload validation error: Additional properties not allowed: options.{other}"
                )));
            }
        }
    }
    if c.strategy == Strategy::Sms
        && let Some(syntax) = o.get("syntax")
    {
        let syntax = syntax
            .as_str()
            .ok_or_else(|| invalid("options.syntax must be liquid or md_with_macros"))?;
        match &mut s.sms_template {
            Some(t) => t.syntax = syntax.to_string(),
            None => {
                return Err(invalid(
                    "options.syntax needs options.template (the built-in text is translated)",
                ));
            }
        }
    }
    if let Some(t) = &s.sms_template {
        tessera_delivery::templates::validate_sms(t)
            .map_err(|e| invalid(format!("options.template: {}", e.reason)))?;
    }
    s.validate().map_err(OpError::Invalid)
}

/// Merges Auth0 metadata: top-level keys replace, `null` removes.
fn merge_metadata(slot: &mut Map<String, Value>, v: &Value, key: &str) -> Result<(), OpError> {
    let m = v
        .as_object()
        .ok_or_else(|| invalid(format!("{key} must be an object")))?;
    for (k, x) in m {
        if x.is_null() {
            slot.remove(k);
        } else {
            slot.insert(k.clone(), x.clone());
        }
    }
    if serde_json::to_vec(slot).map(|b| b.len()).unwrap_or(0) > 16 * 1024 {
        return Err(invalid(format!("{key} must be at most 16 KiB")));
    }
    Ok(())
}

/// The `sms` connection's provider options, in Auth0's names (plus Tessera's `twilio_api_base`).
pub const SMS_PROVIDER_KEYS: &[&str] = &[
    "provider",
    "twilio_sid",
    "twilio_token",
    "messaging_service_sid",
    "twilio_api_base",
    "from",
    "gateway_url",
    "forward_req_info",
    "gateway_authentication",
];

fn seal(secret: &ServerSecret, rng: &dyn Random, plain: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(secret.seal(
        rng,
        tessera_core::connection::SMS_PROVIDER_SEAL,
        plain.as_bytes(),
    ))
}

/// Sets the `sms` connection's provider from Auth0's options: `provider` (`twilio`,
/// `sms_gateway`, or `null` for the configuration file's), `twilio_sid`, `twilio_token`,
/// `messaging_service_sid`, `from`, `gateway_url`, `forward_req_info`,
/// `gateway_authentication` (`{method: "bearer", subject, audience, secret}`). Secrets are
/// sealed; one left out keeps the stored one while the provider stays the same.
fn apply_sms_provider(
    c: &mut Connection,
    o: &Map<String, Value>,
    secret: &ServerSecret,
    rng: &dyn Random,
) -> Result<(), OpError> {
    use tessera_core::connection::SmsProviderSettings as P;
    let current = c.settings.sms_provider.clone();
    let kind = match o.get("provider") {
        Some(Value::Null) => {
            if o.len() > 1 {
                return Err(invalid(
                    "options.provider null goes back to the configuration file's provider; give no other provider option",
                ));
            }
            c.settings.sms_provider = None;
            return Ok(());
        }
        Some(_) => str_field(o, "provider")?.unwrap_or_default(),
        None => match &current {
            Some(P::Twilio { .. }) => "twilio".into(),
            Some(P::SmsGateway { .. }) => "sms_gateway".into(),
            None => {
                return Err(invalid(
                    "options.provider is needed (twilio or sms_gateway) to set the SMS provider here",
                ));
            }
        },
    };
    let check_url = |name: &str, u: &str| {
        crate::settings::check_provider_url(name, u).map_err(OpError::Invalid)
    };
    let from = match o.get("from") {
        Some(_) => str_field(o, "from")?.filter(|f| !f.is_empty()),
        None => match &current {
            Some(P::Twilio { from, .. } | P::SmsGateway { from, .. }) => from.clone(),
            None => None,
        },
    };
    if let Some(f) = &from
        && (f.len() > 32 || f.chars().any(char::is_control))
    {
        return Err(invalid(
            "options.from must be at most 32 visible characters",
        ));
    }
    let next = match kind.as_str() {
        "twilio" => {
            let (old_sid, old_token, old_msid, old_base) = match &current {
                Some(P::Twilio {
                    account_sid,
                    auth_token_sealed,
                    messaging_service_sid,
                    api_base,
                    ..
                }) => (
                    Some(account_sid.clone()),
                    Some(auth_token_sealed.clone()),
                    messaging_service_sid.clone(),
                    Some(api_base.clone()),
                ),
                _ => (None, None, None, None),
            };
            if let Some(k) = o.keys().find(|k| {
                !matches!(
                    k.as_str(),
                    "provider"
                        | "twilio_sid"
                        | "twilio_token"
                        | "messaging_service_sid"
                        | "twilio_api_base"
                        | "from"
                )
            }) {
                return Err(invalid(format!("options.{k} is not a Twilio setting")));
            }
            let account_sid = str_field(o, "twilio_sid")?
                .or(old_sid)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| invalid("options.twilio_sid is needed for Twilio"))?;
            if !account_sid.starts_with("AC")
                || account_sid.len() != 34
                || !account_sid.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(invalid(
                    "options.twilio_sid must be Twilio's account SID (AC and 32 characters)",
                ));
            }
            let auth_token_sealed = match str_field(o, "twilio_token")?.filter(|t| !t.is_empty()) {
                Some(t) => seal(secret, rng, &t),
                None => {
                    old_token.ok_or_else(|| invalid("options.twilio_token is needed for Twilio"))?
                }
            };
            let messaging_service_sid = match o.get("messaging_service_sid") {
                Some(_) => str_field(o, "messaging_service_sid")?.filter(|s| !s.is_empty()),
                None => old_msid,
            };
            if messaging_service_sid.is_none() && from.is_none() {
                return Err(invalid(
                    "Twilio needs options.from (a number) or options.messaging_service_sid",
                ));
            }
            let api_base = str_field(o, "twilio_api_base")?
                .or(old_base)
                .unwrap_or_else(|| "https://api.twilio.com".into());
            check_url("options.twilio_api_base", &api_base)?;
            P::Twilio {
                account_sid,
                auth_token_sealed,
                from,
                messaging_service_sid,
                api_base,
            }
        }
        "sms_gateway" => {
            let (old_url, old_fwd, old_jwt) = match &current {
                Some(P::SmsGateway {
                    url,
                    forward_req_info,
                    jwt_secret_sealed,
                    jwt_subject,
                    jwt_audience,
                    ..
                }) => (
                    Some(url.clone()),
                    *forward_req_info,
                    jwt_secret_sealed
                        .clone()
                        .map(|s| (s, jwt_subject.clone(), jwt_audience.clone())),
                ),
                _ => (None, false, None),
            };
            if let Some(k) = o.keys().find(|k| {
                !matches!(
                    k.as_str(),
                    "provider"
                        | "gateway_url"
                        | "forward_req_info"
                        | "gateway_authentication"
                        | "from"
                )
            }) {
                return Err(invalid(format!(
                    "options.{k} is not an SMS gateway setting"
                )));
            }
            let url = str_field(o, "gateway_url")?
                .or(old_url)
                .ok_or_else(|| invalid("options.gateway_url is needed for sms_gateway"))?;
            check_url("options.gateway_url", &url)?;
            let forward_req_info = bool_field(o, "forward_req_info")?.unwrap_or(old_fwd);
            let jwt = match o.get("gateway_authentication") {
                None => old_jwt,
                Some(Value::Null) => None,
                Some(Value::Object(a)) => {
                    match str_field(a, "method")?.as_deref() {
                        None | Some("bearer") => {}
                        Some(m) => {
                            return Err(invalid(format!(
                                "gateway_authentication.method must be bearer, not {m:?}"
                            )));
                        }
                    }
                    if bool_field(a, "secret_base64_encoded")? == Some(true) {
                        return Err(invalid(
                            "gateway_authentication.secret_base64_encoded is not supported: give the secret as text",
                        ));
                    }
                    let sealed = match str_field(a, "secret")?.filter(|s| !s.is_empty()) {
                        Some(k) => seal(secret, rng, &k),
                        None => old_jwt
                            .as_ref()
                            .map(|j| j.0.clone())
                            .ok_or_else(|| invalid("gateway_authentication.secret is needed"))?,
                    };
                    Some((sealed, str_field(a, "subject")?, str_field(a, "audience")?))
                }
                Some(_) => {
                    return Err(invalid("gateway_authentication must be an object or null"));
                }
            };
            let (jwt_secret_sealed, jwt_subject, jwt_audience) = match jwt {
                Some((s, sub, aud)) => (Some(s), sub, aud),
                None => (None, None, None),
            };
            P::SmsGateway {
                url,
                from,
                forward_req_info,
                jwt_secret_sealed,
                jwt_subject,
                jwt_audience,
            }
        }
        other => {
            return Err(invalid(format!(
                "options.provider must be twilio or sms_gateway (or null), not {other:?}"
            )));
        }
    };
    c.settings.sms_provider = Some(next);
    Ok(())
}

/// A connection in the Management API's shape.
pub fn connection_json(c: &Connection, enabled: &[String]) -> Value {
    let s = &c.settings;
    let mut options = json!({
        "totp": {"length": s.code_length, "time_step": s.code_lifetime_secs},
        "disable_signup": s.disable_signup,
        "brute_force_protection": true,
        "max_attempts": s.max_attempts,
        "magic_link_confirmation": match s.magic_link_confirmation {
            LinkConfirmation::Auto => "auto",
            LinkConfirmation::Always => "always",
            LinkConfirmation::Never => "never",
        },
        "name": c.name,
    });
    if let Some(t) = &s.email_template {
        options["email"] =
            json!({"from": t.from, "subject": t.subject, "body": t.body, "syntax": t.syntax});
    }
    if let Some(t) = &s.sms_template {
        options["template"] = json!(t.body);
        options["syntax"] = json!(t.syntax);
    }
    // The provider, without its secrets (they are never shown again).
    match &s.sms_provider {
        Some(tessera_core::connection::SmsProviderSettings::Twilio {
            account_sid,
            from,
            messaging_service_sid,
            api_base,
            ..
        }) => {
            options["provider"] = json!("twilio");
            options["twilio_sid"] = json!(account_sid);
            options["messaging_service_sid"] = json!(messaging_service_sid);
            options["from"] = json!(from);
            options["twilio_api_base"] = json!(api_base);
        }
        Some(tessera_core::connection::SmsProviderSettings::SmsGateway {
            url,
            from,
            forward_req_info,
            jwt_secret_sealed,
            jwt_subject,
            jwt_audience,
        }) => {
            options["provider"] = json!("sms_gateway");
            options["gateway_url"] = json!(url);
            options["from"] = json!(from);
            options["forward_req_info"] = json!(forward_req_info);
            if jwt_secret_sealed.is_some() {
                options["gateway_authentication"] =
                    json!({"method": "bearer", "subject": jwt_subject, "audience": jwt_audience});
            }
        }
        None => {}
    }
    json!({
        "id": format!("con_{}", c.name),
        "name": c.name,
        "strategy": c.strategy.as_str(),
        "options": options,
        "enabled_clients": enabled,
    })
}

/// A signing key in the Management API's shape (`GET /api/v2/keys/signing`): with its
/// certificate (`cert` in PEM, `fingerprint` and `thumbprint` of SHA-1, as Auth0 gives them)
/// when the key has one (keys made before Tessera made certificates have none).
pub fn key_json(k: &StoredKey) -> Value {
    let mut v = json!({
        "kid": k.kid,
        "alg": k.alg,
        "status": k.status.as_str(),
        "current": k.status == KeyStatus::Current,
        "next": false,
        "previous": k.status == KeyStatus::Previous,
        "revoked": k.status == KeyStatus::Revoked,
        "created_at": rfc3339(k.created_at),
        "current_since": rfc3339(k.created_at),
    });
    if let Some(der) = key_certificate(k) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        let sha1 = crate::keys::sha1(&der);
        v["cert"] = json!(format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        ));
        v["thumbprint"] = json!(hex::encode(&sha1));
        v["fingerprint"] = json!(
            sha1.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        );
    }
    v
}

/// The DER certificate in a stored key's JWK (`x5c`), if it has one.
fn key_certificate(k: &StoredKey) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let jwk: Value = serde_json::from_str(&k.public_jwk).ok()?;
    let first = jwk.get("x5c")?.as_array()?.first()?.as_str()?;
    base64::engine::general_purpose::STANDARD.decode(first).ok()
}

/// An audit event in the Management API's log shape.
pub fn log_json(seq: i64, e: &Event) -> Value {
    json!({"log_id": e.id, "seq": seq, "date": rfc3339(e.at), "type": e.kind,
           "client_id": e.client_id, "connection": e.connection, "user_id": e.user_id,
           "ip": e.ip, "user_agent": e.user_agent, "description": e.description})
}
