//! Configuration: defaults, then a TOML file, then `TESSERA_*` environment variables.
//!
//! Every key of the file can be overridden by an environment variable: the path is upper-cased
//! and nested keys are joined by a double underscore, with array items by index
//! (`TESSERA_DATABASE__URL`, `TESSERA_EMAIL__SMTP_URL`, `TESSERA_APPLICATIONS__0__CLIENT_SECRET`).
//! Values are read as TOML when they look like a number, boolean, array or inline table, and as
//! strings otherwise (quote a string that looks like a number: `'"123"'`).
//! Unknown keys and contradictory settings stop the start-up with a message naming the key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tessera_core::client::{
    AppType, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_IMPLICIT,
    GRANT_PASSWORDLESS_OTP, GRANT_REFRESH_TOKEN,
};
use tessera_core::connection::ConnectionSettings;

pub const ENV_PREFIX: &str = "TESSERA_";
const KNOWN_GRANTS: &[&str] = &[
    GRANT_PASSWORDLESS_OTP,
    GRANT_REFRESH_TOKEN,
    GRANT_AUTHORIZATION_CODE,
    GRANT_IMPLICIT,
    GRANT_CLIENT_CREDENTIALS,
];

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The public base URL; tokens carry it as `iss` (with a trailing slash).
    pub issuer: Option<String>,
    /// Address to listen on.
    pub listen: Option<String>,
    /// Folder for the SQLite database and the generated server secret.
    pub data_dir: Option<PathBuf>,
    /// Base64 of at least 32 random bytes. Required with PostgreSQL (all nodes share it).
    pub secret_key: Option<SecretString>,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub email: EmailConfig,
    #[serde(default)]
    pub connections: ConnectionsConfig,
    #[serde(default)]
    pub tokens: TokenConfig,
    #[serde(default)]
    pub apis: Vec<ApiConfig>,
    #[serde(default)]
    pub applications: Vec<AppConfig>,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub rate_limits: RateLimitConfig,
    #[serde(default)]
    pub tenant: TenantConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// HTTPS served by Tessera itself.
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub http: HttpConfig,
}

/// Bounds on the main listener's work, so that a flood slows no answer down without limit and
/// cannot make the process grow until it is killed.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Requests handled at once on this node. One more is refused at once with `503
    /// temporarily_unavailable` and `Retry-After: 1` rather than queued.
    pub max_in_flight: usize,
    /// How long one request may take, its body's arrival included, before it is given up with
    /// `503 temporarily_unavailable`. A write already handed to the store still completes.
    pub request_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_in_flight: 1024,
            request_timeout_secs: 30,
        }
    }
}

impl HttpConfig {
    pub fn validate(&self) -> Result<(), String> {
        if (1..=1_000_000).contains(&self.max_in_flight)
            && (1..=3600).contains(&self.request_timeout_secs)
        {
            Ok(())
        } else {
            Err("http: max_in_flight 1-1000000, request_timeout_secs 1-3600".into())
        }
    }
}

/// The dashboard at `/admin`: who may sign in to it (with Tessera itself, by email).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The administrators' email addresses. None: the dashboard is off (dev mode: one dev
    /// administrator, `admin@example.com`).
    #[serde(default)]
    pub emails: Vec<String>,
}

/// Prometheus metrics on a listener of their own (never on the public one).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// e.g. `127.0.0.1:9100`; absent: no metrics listener.
    pub listen: Option<String>,
}

/// HTTPS on `listen`, from a PEM certificate chain and key (or, in dev mode, a self-signed
/// certificate made on first start).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Dev mode only: make (once) and use a self-signed certificate for localhost.
    #[serde(default)]
    pub self_signed: bool,
    /// A plain-HTTP address whose every request is redirected (308) to the issuer.
    pub redirect_http_listen: Option<String>,
}

/// Tenant-wide values that email templates can show (`tenant`, `friendly_name`,
/// `support_email`, `support_url`).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    pub name: String,
    pub friendly_name: String,
    pub support_email: String,
    pub support_url: String,
}

/// Rate limits, counted in the store so that every node shares them. A limit of 0 turns
/// that limit off.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// `/passwordless/start` requests per client IP (Auth0: 50 an hour).
    pub start_per_ip: i64,
    pub start_per_ip_window_secs: i64,
    /// Codes asked for one email address or phone number.
    pub start_per_identifier: i64,
    pub start_per_identifier_window_secs: i64,
    /// `/passwordless/start` requests per application.
    pub start_per_client: i64,
    pub start_per_client_window_secs: i64,
    /// Wrong codes for one identity (across all its codes) before `/oauth/token` refuses
    /// further attempts with `429 too_many_attempts` until the window ends.
    pub failed_attempts_per_identifier: i64,
    pub failed_attempts_window_secs: i64,
    /// Wrong codes for one identity from one IP (counted in the same window) before that IP
    /// is blocked for that identity. Lower than the per-identity limit, so an attacker blocks
    /// themselves long before they can lock the real user out.
    pub failed_attempts_per_ip_identifier: i64,
    /// The first block after a limit is reached; each further one doubles, up to the maximum.
    pub lockout_base_secs: i64,
    pub lockout_max_secs: i64,
    /// `/oauth/token` requests per client IP (every grant). Past it: `429 too_many_requests`.
    pub token_per_ip: i64,
    pub token_per_ip_window_secs: i64,
    /// Browser endpoints per client IP: `/co/authenticate`, `/passwordless/verify`,
    /// `/passwordless/verify_redirect` (Auth0 documents 5 a second for cross-origin login).
    pub browser_per_ip: i64,
    pub browser_per_ip_window_secs: i64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            start_per_ip: 50,
            start_per_ip_window_secs: 3600,
            start_per_identifier: 5,
            start_per_identifier_window_secs: 900,
            start_per_client: 10_000,
            start_per_client_window_secs: 3600,
            failed_attempts_per_identifier: 10,
            failed_attempts_window_secs: 3600,
            failed_attempts_per_ip_identifier: 8,
            lockout_base_secs: 900,
            lockout_max_secs: 86_400,
            token_per_ip: 600,
            token_per_ip_window_secs: 60,
            browser_per_ip: 300,
            browser_per_ip_window_secs: 60,
        }
    }
}

impl RateLimitConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, limit, window) in [
            (
                "start_per_ip",
                self.start_per_ip,
                self.start_per_ip_window_secs,
            ),
            (
                "start_per_identifier",
                self.start_per_identifier,
                self.start_per_identifier_window_secs,
            ),
            (
                "start_per_client",
                self.start_per_client,
                self.start_per_client_window_secs,
            ),
            (
                "failed_attempts_per_identifier",
                self.failed_attempts_per_identifier,
                self.failed_attempts_window_secs,
            ),
            (
                "token_per_ip",
                self.token_per_ip,
                self.token_per_ip_window_secs,
            ),
            (
                "browser_per_ip",
                self.browser_per_ip,
                self.browser_per_ip_window_secs,
            ),
            (
                "failed_attempts_per_ip_identifier",
                self.failed_attempts_per_ip_identifier,
                self.failed_attempts_window_secs,
            ),
        ] {
            if limit < 0 || !(1..=30 * 86_400).contains(&window) {
                return Err(format!(
                    "rate_limits.{name}: the limit must be 0 (off) or more, and its window 1-2592000 seconds"
                ));
            }
        }
        if !(1..=30 * 86_400).contains(&self.lockout_base_secs)
            || self.lockout_max_secs < self.lockout_base_secs
            || self.lockout_max_secs > 30 * 86_400
        {
            return Err(
                "rate_limits: lockout_base_secs must be 1-2592000 and lockout_max_secs between it and 2592000"
                    .into(),
            );
        }
        Ok(())
    }
}

/// How the outbox worker paces itself.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Messages claimed per round (and sent concurrently).
    pub batch: i64,
    /// How long a claim holds; a node that dies mid-delivery loses its claims after this.
    pub lease_secs: i64,
    /// Delivery attempts before a temporarily failing message is given up.
    pub max_attempts: i64,
    /// How often to look for due messages when nothing woke the worker.
    pub poll_interval_ms: u64,
    /// First retry delay; doubles each attempt (with jitter), up to 15 minutes.
    pub base_backoff_secs: i64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            batch: 50,
            lease_secs: 60,
            max_attempts: 8,
            poll_interval_ms: 1000,
            base_backoff_secs: 5,
        }
    }
}

impl OutboxConfig {
    pub fn validate(&self) -> Result<(), String> {
        let ok = (1..=1000).contains(&self.batch)
            && (2..=3600).contains(&self.lease_secs)
            && (1..=50).contains(&self.max_attempts)
            && (50..=60_000).contains(&self.poll_interval_ms)
            && (1..=3600).contains(&self.base_backoff_secs);
        if ok {
            Ok(())
        } else {
            Err("outbox: batch 1-1000, lease_secs 2-3600, max_attempts 1-50, poll_interval_ms 50-60000, base_backoff_secs 1-3600".into())
        }
    }
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: Option<String>,
    pub max_connections: Option<u32>,
    pub acquire_timeout_secs: Option<u64>,
    pub statement_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `Name <address>` or a bare address.
    pub from: Option<String>,
    /// `smtp://user:pass@host:587`, `smtps://host:465`, `smtp://127.0.0.1:2525?tls=none`.
    pub smtp_url: Option<SecretString>,
    pub timeout_secs: Option<u64>,
    /// Optional DKIM signing of every outgoing message.
    pub dkim: Option<DkimConfig>,
    /// A PEM file of extra trusted root certificates, for an SMTP relay with a private CA.
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct DkimConfig {
    /// The signing domain (`d=`), usually the From address's domain.
    pub domain: String,
    /// The selector (`s=`): the public key is published at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// `rsa` (default) or `ed25519`.
    #[serde(default = "default_dkim_algorithm")]
    pub algorithm: String,
    /// RSA: a PKCS#1 PEM file; Ed25519: a file holding the base64 of the 32-byte seed.
    pub private_key_file: std::path::PathBuf,
}

fn default_dkim_algorithm() -> String {
    "rsa".into()
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsConfig {
    #[serde(default)]
    pub email: EmailConnectionConfig,
    /// The `sms` connection exists only when this section does.
    pub sms: Option<SmsConnectionConfig>,
}

/// The `sms` connection: codes, the template, the provider, and toll-fraud limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConnectionConfig {
    pub code_length: u8,
    pub code_lifetime_secs: i64,
    pub max_attempts: i64,
    pub disable_signup: bool,
    /// Liquid (`{{ code }}`) or `md_with_macros` (`@@password@@`); absent: built-in, translated.
    pub template: Option<tessera_delivery::templates::SmsTemplate>,
    /// The sender: Twilio's `From`, the gateway's `sender`.
    pub from: Option<String>,
    /// Appends `@<issuer host> #<code>` so phones offer the code for autofill.
    pub autofill_line: bool,
    /// Country calling codes that may receive codes (`[1, 44]`); empty: every country.
    pub allowed_countries: Vec<u16>,
    /// Codes sent to one number per hour.
    pub per_number_per_hour: i64,
    /// Codes sent to one prefix (the number without its last four digits) per hour.
    pub per_prefix_per_hour: i64,
    /// Codes sent in all per hour.
    pub budget_per_hour: i64,
    /// Alarm (an `sms_pumping` event) when a prefix got at least this many codes in the hour…
    pub alarm_min_sent: i64,
    /// …and fewer than this share of them were used to sign in.
    pub alarm_verified_ratio: f64,
    /// How long one call to the provider may take (Auth0's gateway limit is 30 s).
    pub timeout_secs: u64,
    pub twilio: Option<TwilioConfig>,
    pub gateway: Option<GatewayConfig>,
}

impl Default for SmsConnectionConfig {
    fn default() -> Self {
        let d = ConnectionSettings::default();
        SmsConnectionConfig {
            code_length: d.code_length,
            code_lifetime_secs: d.code_lifetime_secs,
            max_attempts: d.max_attempts,
            disable_signup: false,
            template: None,
            from: None,
            autofill_line: true,
            allowed_countries: Vec::new(),
            per_number_per_hour: 3,
            per_prefix_per_hour: 30,
            budget_per_hour: 1_000,
            alarm_min_sent: 20,
            alarm_verified_ratio: 0.2,
            timeout_secs: 30,
            twilio: None,
            gateway: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: SecretString,
    pub messaging_service_sid: Option<String>,
    #[serde(default = "twilio_api")]
    pub api_base: String,
}

fn twilio_api() -> String {
    "https://api.twilio.com".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub url: String,
    #[serde(default)]
    pub forward_req_info: bool,
    pub jwt_secret: Option<SecretString>,
    pub jwt_subject: Option<String>,
    pub jwt_audience: Option<String>,
}

/// What the request path needs of the `sms` connection (no credentials).
#[derive(Debug, Clone)]
pub struct SmsOptions {
    pub autofill_line: bool,
    pub allowed_countries: Vec<u16>,
    pub per_number_per_hour: i64,
    pub per_prefix_per_hour: i64,
    pub budget_per_hour: i64,
    pub alarm_min_sent: i64,
    pub alarm_verified_ratio: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConnectionConfig {
    pub code_length: u8,
    pub code_lifetime_secs: i64,
    pub max_attempts: i64,
    pub disable_signup: bool,
    /// The email's From, Subject and HTML body in Liquid; absent: the built-in templates.
    pub template: Option<tessera_core::connection::EmailTemplate>,
    /// `auto`, `always` or `never`: when a magic link asks for a click before it signs in.
    pub magic_link_confirmation: tessera_core::connection::LinkConfirmation,
}

impl Default for EmailConnectionConfig {
    fn default() -> Self {
        let d = ConnectionSettings::default();
        EmailConnectionConfig {
            code_length: d.code_length,
            code_lifetime_secs: d.code_lifetime_secs,
            max_attempts: d.max_attempts,
            disable_signup: d.disable_signup,
            magic_link_confirmation: d.magic_link_confirmation,
            template: None,
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    pub id_token_lifetime_secs: i64,
    pub access_token_lifetime_secs: i64,
    pub refresh_token_lifetime_secs: i64,
    /// Absolute lifetime of a Tessera sign-in session (the SSO cookie).
    pub session_lifetime_secs: i64,
    /// Lifetime of an authorization code.
    pub authorization_code_lifetime_secs: i64,
    /// Lifetime of a `/co/authenticate` login ticket.
    pub login_ticket_lifetime_secs: i64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            id_token_lifetime_secs: 36_000,
            access_token_lifetime_secs: 86_400,
            refresh_token_lifetime_secs: 30 * 86_400,
            session_lifetime_secs: 3 * 86_400,
            authorization_code_lifetime_secs: 60,
            login_ticket_lifetime_secs: 120,
        }
    }
}

/// An API (resource server) that access tokens can be issued for.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub identifier: String,
    pub name: Option<String>,
    #[serde(default)]
    pub allow_offline_access: bool,
    pub token_lifetime_secs: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub name: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub app_type: AppType,
    #[serde(default)]
    pub callbacks: Vec<String>,
    #[serde(default)]
    pub web_origins: Vec<String>,
    pub grant_types: Option<Vec<String>>,
    pub connections: Option<Vec<String>>,
    /// Believe this application's `auth0-forwarded-for` header (confidential apps only).
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// Where `/v2/logout` may return the browser to.
    #[serde(default)]
    pub allowed_logout_urls: Vec<String>,
    /// Let this confidential application's pages call `/passwordless/start` from the browser
    /// without the secret, from its web origins only.
    #[serde(default)]
    pub allow_browser_start: bool,
    /// Allow `/co/authenticate` (embedded login with Lock or auth0-js).
    #[serde(default = "default_true")]
    pub cross_origin_authentication: bool,
    /// The old widgets' endpoints (Lock Passwordless v2, auth0.js v7). Off by default.
    #[serde(default)]
    pub legacy_passwordless: bool,
    /// Management API scopes this (confidential) application may ask for with the
    /// `client_credentials` grant.
    #[serde(default)]
    pub management_scopes: Vec<String>,
    /// This application's id_token lifetime in seconds (60 to 2,592,000); default
    /// `tokens.id_token_lifetime_secs`.
    pub id_token_lifetime_secs: Option<i64>,
    /// This application's id_token algorithm: `RS256` (default; auth0-js and Lock accept
    /// nothing else), `ES256` or `EdDSA`.
    pub signing_alg: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: Option<String>,
    /// A tracing filter such as `info` or `tessera=debug`; `RUST_LOG` wins when set.
    pub level: Option<String>,
}

/// Reads the file (if any) and applies environment overrides.
pub fn load(path: Option<&Path>, env: &[(String, String)]) -> Result<Config, String> {
    let mut root = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the configuration file {}: {e}", p.display()))?;
            text.parse::<toml::Table>()
                .map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => toml::Table::new(),
    };
    // Natural order (…__2__… before …__10__…), so array items can be given in any order.
    let mut env: Vec<&(String, String)> = env.iter().collect();
    env.sort_by_key(|e| natural_key(&e.0));
    for (k, v) in env {
        let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if rest == "CONFIG" {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        set_path(&mut root, &path, env_value(v)).map_err(|e| format!("{k}: {e}"))?;
    }
    let where_ = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "configuration".into());
    Config::deserialize(toml::Value::Table(root))
        .map_err(|e| format!("{where_}: {}", e.to_string().trim()))
}

fn natural_key(k: &str) -> Vec<(u64, String)> {
    k.split("__")
        .map(|seg| (seg.parse::<u64>().unwrap_or(u64::MAX), seg.to_string()))
        .collect()
}

fn env_value(raw: &str) -> toml::Value {
    let t = raw.trim();
    let looks_typed = t == "true"
        || t == "false"
        || t.starts_with('[')
        || t.starts_with('{')
        || t.starts_with('"')
        || (!t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == '.'));
    if looks_typed
        && let Ok(tbl) = format!("v = {t}").parse::<toml::Table>()
        && let Some(v) = tbl.get("v")
    {
        return v.clone();
    }
    toml::Value::String(raw.to_string())
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (first, rest) = path.split_first().ok_or("empty key")?;
    if first.is_empty() {
        return Err("empty key segment".into());
    }
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return Ok(());
    }
    let entry = table.entry(first.clone()).or_insert_with(|| {
        if rest[0].parse::<usize>().is_ok() {
            toml::Value::Array(vec![])
        } else {
            toml::Value::Table(toml::Table::new())
        }
    });
    set_value(entry, rest, value)
}

fn set_value(target: &mut toml::Value, path: &[String], value: toml::Value) -> Result<(), String> {
    match target {
        toml::Value::Table(t) => set_path(t, path, value),
        toml::Value::Array(a) => {
            let (idx, rest) = path.split_first().ok_or("empty key")?;
            let i: usize = idx
                .parse()
                .map_err(|_| format!("{idx:?} is not an array index"))?;
            if i > a.len() {
                return Err(format!(
                    "array index {i} skips items (there are {})",
                    a.len()
                ));
            }
            if i == a.len() {
                a.push(toml::Value::Table(toml::Table::new()));
            }
            if rest.is_empty() {
                a[i] = value;
                Ok(())
            } else {
                set_value(&mut a[i], rest, value)
            }
        }
        _ => Err("cannot set a key inside a plain value".into()),
    }
}

/// Normalises an issuer URL to `scheme://host[:port]/path/` and checks it is safe.
pub fn normalise_issuer(raw: &str, dev: bool) -> Result<String, String> {
    let mut u = url::Url::parse(raw.trim()).map_err(|e| format!("issuer {raw:?}: {e}"))?;
    if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
        return Err(format!(
            "issuer {raw:?} must not have a query, fragment or user info"
        ));
    }
    match u.scheme() {
        "https" => {}
        "http" if dev || is_loopback_host(u.host_str().unwrap_or_default()) => {}
        "http" => {
            return Err(format!(
                "issuer {raw:?} must use https (plain http is only allowed for loopback hosts or in dev mode)"
            ));
        }
        s => return Err(format!("issuer scheme must be https, not {s:?}")),
    }
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(u.to_string())
}

pub fn is_loopback_host(h: &str) -> bool {
    h == "localhost"
        || h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks a callback URL: absolute, no fragment, http(s) or a custom scheme for native apps.
pub fn check_callback(app: &str, cb: &str) -> Result<(), String> {
    let u =
        url::Url::parse(cb).map_err(|e| format!("application {app:?}: callback {cb:?}: {e}"))?;
    if u.fragment().is_some() {
        return Err(format!(
            "application {app:?}: callback {cb:?} must not contain a fragment"
        ));
    }
    if matches!(u.scheme(), "javascript" | "data" | "file" | "vbscript") {
        return Err(format!(
            "application {app:?}: callback {cb:?} uses a forbidden scheme"
        ));
    }
    if matches!(u.scheme(), "http" | "https") && u.host_str().is_none_or(|h| h.is_empty()) {
        return Err(format!("application {app:?}: callback {cb:?} has no host"));
    }
    Ok(())
}

/// Checks a web origin: `scheme://host[:port]` exactly.
pub fn check_origin(app: &str, o: &str) -> Result<(), String> {
    let u =
        url::Url::parse(o).map_err(|e| format!("application {app:?}: web origin {o:?}: {e}"))?;
    let origin = u.origin().ascii_serialization();
    if origin != o {
        return Err(format!(
            "application {app:?}: web origin {o:?} must be just scheme://host[:port] (did you mean {origin:?}?)"
        ));
    }
    Ok(())
}

/// Checks what one application declares, and returns its effective grants and connections.
pub fn check_app(app: &AppConfig) -> Result<(Vec<String>, Vec<String>), String> {
    let name = &app.name;
    if app.client_id.trim().is_empty()
        || app.client_id.len() > 128
        || app
            .client_id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "application {name:?}: client_id must be 1-128 visible characters"
        ));
    }
    match (app.app_type.is_confidential(), &app.client_secret) {
        (true, None) => {
            return Err(format!(
                "application {name:?}: a regular_web application needs a client_secret"
            ));
        }
        (false, Some(_)) => {
            return Err(format!(
                "application {name:?}: a {} application is public and must not have a client_secret",
                app.app_type.auth0_name()
            ));
        }
        (true, Some(s)) if s.expose_secret().len() < 32 => {
            return Err(format!(
                "application {name:?}: client_secret must be at least 32 characters"
            ));
        }
        _ => {}
    }
    if app.trust_forwarded_for && !app.app_type.is_confidential() {
        return Err(format!(
            "application {name:?}: trust_forwarded_for needs a confidential (regular_web) application: \
             a public client cannot prove it is the one sending the header"
        ));
    }
    for cb in &app.callbacks {
        check_callback(name, cb)?;
    }
    for o in &app.web_origins {
        check_origin(name, o)?;
    }
    for u in &app.allowed_logout_urls {
        check_callback(name, u)?;
    }
    for sc in &app.management_scopes {
        if !crate::routes::management::SCOPES.contains(&sc.as_str()) {
            return Err(format!(
                "application {name:?}: unknown management scope {sc:?} (known: {})",
                crate::routes::management::SCOPES.join(", ")
            ));
        }
    }
    if !app.management_scopes.is_empty() && !app.app_type.is_confidential() {
        return Err(format!(
            "application {name:?}: management_scopes need a confidential (regular_web) application"
        ));
    }
    if app.allow_browser_start && !app.app_type.is_confidential() {
        return Err(format!(
            "application {name:?}: allow_browser_start is for regular_web applications; \
             public applications may always call /passwordless/start from the browser"
        ));
    }
    if app.allow_browser_start && app.web_origins.is_empty() {
        return Err(format!(
            "application {name:?}: allow_browser_start needs web_origins (the pages allowed to call)"
        ));
    }
    if let Some(l) = app.id_token_lifetime_secs
        && !(60..=2_592_000).contains(&l)
    {
        return Err(format!(
            "application {name:?}: id_token_lifetime_secs must be between 60 and 2592000, not {l}"
        ));
    }
    if let Some(a) = &app.signing_alg
        && tessera_core::jwt::Alg::parse(a).is_none()
    {
        return Err(format!(
            "application {name:?}: signing_alg must be RS256, ES256 or EdDSA, not {a:?}"
        ));
    }
    let grants = app.grant_types.clone().unwrap_or_else(|| {
        let mut g = vec![
            GRANT_AUTHORIZATION_CODE.to_string(),
            GRANT_IMPLICIT.to_string(),
            GRANT_REFRESH_TOKEN.to_string(),
        ];
        if app.app_type.is_confidential() {
            g.push(GRANT_PASSWORDLESS_OTP.to_string());
        }
        if !app.management_scopes.is_empty() {
            g.push(GRANT_CLIENT_CREDENTIALS.to_string());
        }
        g
    });
    for g in &grants {
        if !KNOWN_GRANTS.contains(&g.as_str()) {
            return Err(format!(
                "application {name:?}: unknown grant type {g:?} (known: {})",
                KNOWN_GRANTS.join(", ")
            ));
        }
    }
    let connections = app
        .connections
        .clone()
        .unwrap_or_else(|| vec!["email".into()]);
    for c in &connections {
        match c.as_str() {
            "email" => {}
            "sms" => {}
            other => {
                return Err(format!(
                    "application {name:?}: unknown connection {other:?}"
                ));
            }
        }
    }
    Ok((grants, connections))
}

/// Checks the whole file for contradictions that no single section shows.
pub fn check_unique_clients(apps: &[AppConfig]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for a in apps {
        if !seen.insert(a.client_id.as_str()) {
            return Err(format!("client_id {:?} is declared twice", a.client_id));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn http_bounds_are_read_and_checked() {
        assert!(HttpConfig::default().validate().is_ok());
        let c = load(
            None,
            &env(&[
                ("TESSERA_HTTP__MAX_IN_FLIGHT", "64"),
                ("TESSERA_HTTP__REQUEST_TIMEOUT_SECS", "5"),
            ]),
        )
        .unwrap();
        assert_eq!((c.http.max_in_flight, c.http.request_timeout_secs), (64, 5));
        assert!(c.http.validate().is_ok());
        for (key, value) in [
            ("MAX_IN_FLIGHT", "0"),
            ("MAX_IN_FLIGHT", "1000001"),
            ("REQUEST_TIMEOUT_SECS", "0"),
            ("REQUEST_TIMEOUT_SECS", "3601"),
        ] {
            let c = load(None, &env(&[(&format!("TESSERA_HTTP__{key}"), value)])).unwrap();
            let e = c.http.validate().unwrap_err();
            assert!(e.starts_with("http: "), "{key}={value}: {e}");
        }
    }

    #[test]
    fn env_overrides_nested_keys_and_array_items() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(
            &p,
            "issuer = \"https://a.example/\"\n[[applications]]\nname = \"A\"\nclient_id = \"a\"\napp_type = \"spa\"\n",
        )
        .unwrap();
        let c = load(
            Some(&p),
            &env(&[
                ("TESSERA_ISSUER", "https://b.example/"),
                ("TESSERA_DATABASE__MAX_CONNECTIONS", "7"),
                ("TESSERA_CONNECTIONS__EMAIL__CODE_LENGTH", "8"),
                ("TESSERA_APPLICATIONS__2__NAME", "Third"),
                ("TESSERA_APPLICATIONS__2__CLIENT_ID", "c"),
                ("TESSERA_APPLICATIONS__2__APP_TYPE", "spa"),
                ("TESSERA_APPLICATIONS__1__NAME", "Second"),
                ("TESSERA_APPLICATIONS__1__CLIENT_ID", "b"),
                ("TESSERA_APPLICATIONS__1__APP_TYPE", "spa"),
                ("TESSERA_APPLICATIONS__0__NAME", "Renamed"),
                ("TESSERA_CONFIG", "ignored"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.issuer.as_deref(), Some("https://b.example/"));
        assert_eq!(c.database.max_connections, Some(7));
        assert_eq!(c.connections.email.code_length, 8);
        assert_eq!(c.applications[0].name, "Renamed");
        assert_eq!(c.applications[1].name, "Second");
        assert_eq!(c.applications[2].name, "Third");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let e = load(None, &env(&[("TESSERA_DATABSE__URL", "sqlite://x")])).unwrap_err();
        assert!(e.contains("databse"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, "[email]\nsmtp_host = \"x\"\n").unwrap();
        let e = load(Some(&p), &[]).unwrap_err();
        assert!(e.contains("smtp_host"), "{e}");
    }

    #[test]
    fn issuer_rules() {
        assert_eq!(
            normalise_issuer("https://id.example.com", false).unwrap(),
            "https://id.example.com/"
        );
        assert_eq!(
            normalise_issuer("http://127.0.0.1:3000", false).unwrap(),
            "http://127.0.0.1:3000/"
        );
        assert!(normalise_issuer("http://id.example.com", false).is_err());
        assert!(normalise_issuer("http://id.example.com", true).is_ok());
        assert!(normalise_issuer("https://id.example.com/?x=1", false).is_err());
        assert!(normalise_issuer("ftp://id.example.com", false).is_err());
    }

    fn app(t: AppType, secret: Option<&str>) -> AppConfig {
        AppConfig {
            name: "A".into(),
            client_id: "a".into(),
            client_secret: secret.map(|s| SecretString::from(s.to_string())),
            app_type: t,
            callbacks: vec!["https://app.example.com/cb".into()],
            web_origins: vec!["https://app.example.com".into()],
            grant_types: None,
            connections: None,
            trust_forwarded_for: false,
            allowed_logout_urls: vec![],
            allow_browser_start: false,
            cross_origin_authentication: true,
            legacy_passwordless: false,
            management_scopes: vec![],
            id_token_lifetime_secs: None,
            signing_alg: None,
        }
    }

    #[test]
    fn contradictory_applications_are_refused() {
        let long = "s".repeat(32);
        assert!(check_app(&app(AppType::RegularWeb, Some(&long))).is_ok());
        assert!(check_app(&app(AppType::RegularWeb, None)).is_err());
        assert!(check_app(&app(AppType::RegularWeb, Some("short"))).is_err());
        assert!(check_app(&app(AppType::Spa, Some(&long))).is_err());
        let mut a = app(AppType::Spa, None);
        a.web_origins = vec!["https://app.example.com/path".into()];
        assert!(check_app(&a).is_err());
        let mut a = app(AppType::Spa, None);
        a.callbacks = vec!["javascript:alert(1)".into()];
        assert!(check_app(&a).is_err());
        let mut a = app(AppType::Spa, None);
        a.grant_types = Some(vec!["password".into()]);
        assert!(check_app(&a).is_err());
        let mut a = app(AppType::Spa, None);
        a.connections = Some(vec!["github".into()]);
        assert!(check_app(&a).is_err());
        let mut a = app(AppType::Spa, None);
        a.trust_forwarded_for = true;
        assert!(check_app(&a).is_err());
        let (grants, conns) = check_app(&app(AppType::RegularWeb, Some(&long))).unwrap();
        assert!(grants.contains(&GRANT_PASSWORDLESS_OTP.to_string()));
        assert_eq!(conns, vec!["email".to_string()]);
        assert!(check_unique_clients(&[app(AppType::Spa, None), app(AppType::Spa, None)]).is_err());
    }
}
