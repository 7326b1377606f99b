//! Settings: the configuration resolved, defaulted and checked, ready to start a server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tessera_core::client::{
    AppType, Client, ClientSettings, GRANT_AUTHORIZATION_CODE, GRANT_IMPLICIT,
    GRANT_PASSWORDLESS_OTP, GRANT_REFRESH_TOKEN,
};
use tessera_core::connection::ConnectionSettings;
use tessera_core::crypto::sha256;
use tessera_core::net::IpNet;
use tessera_core::rand::{Random, SystemRandom, hex_id, token};
use tessera_delivery::smtp::SmtpSettings;
use tessera_store::PoolOptions;

use crate::config::{
    self, ApiConfig, Config, LogConfig, OutboxConfig, RateLimitConfig, TokenConfig,
};

pub const DEV_LISTEN: &str = "127.0.0.1:3000";
pub const DEV_DATA_DIR: &str = ".tessera-dev";
pub const DEV_CALLBACK: &str = "http://localhost:5000/callback";

#[derive(Debug)]
pub enum EmailTransport {
    Smtp(SmtpSettings),
    /// Dev mode only: messages stay in memory and show at `/_dev/mailbox`.
    DevMailbox,
}

#[derive(Debug)]
pub enum SecretSource {
    Configured(Vec<u8>),
    /// Generated at first start, kept in this file (mode 0600).
    File(PathBuf),
}

/// The demo application dev mode creates, printed at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoApp {
    pub client_id: String,
    pub client_secret: String,
    pub callback: String,
}

#[derive(Debug)]
pub struct Settings {
    pub dev: bool,
    pub issuer: String,
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub pool: PoolOptions,
    pub secret: SecretSource,
    pub email: EmailTransport,
    pub email_from: String,
    pub email_connection: ConnectionSettings,
    /// The `sms` connection, when configured: its code settings and options.
    pub sms_connection: Option<(ConnectionSettings, crate::config::SmsOptions)>,
    /// Where SMS goes (credentials included); `None` in dev mode means the dev mailbox.
    pub sms_provider: Option<tessera_delivery::SmsProvider>,
    /// How long one call to the SMS provider may take.
    pub sms_timeout: Duration,
    pub tokens: TokenConfig,
    pub apis: Vec<ApiConfig>,
    pub clients: Vec<Client>,
    pub outbox: OutboxConfig,
    pub rate_limits: RateLimitConfig,
    pub trusted_proxies: Vec<IpNet>,
    pub tenant: tessera_delivery::templates::Tenant,
    pub log: LogConfig,
    pub demo_app: Option<DemoApp>,
    /// HTTPS: the certificate and key files, and the optional HTTP redirect listener.
    pub tls: Option<TlsSettings>,
    /// Where `GET /metrics` is served, if anywhere.
    pub metrics_listen: Option<String>,
    /// Who may sign in to the dashboard (normalised email addresses); empty: it is off.
    pub admin_emails: Vec<String>,
    /// Bounds on the main listener's requests.
    pub http: crate::config::HttpConfig,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Make a self-signed certificate in those files when they are missing (dev mode).
    pub self_signed: bool,
    pub redirect_http_listen: Option<String>,
}

impl Settings {
    pub fn from_config(c: Config, dev: bool) -> Result<Settings, String> {
        let listen = c.listen.clone().unwrap_or_else(|| DEV_LISTEN.to_string());
        let scheme = if c.tls.is_some() { "https" } else { "http" };
        let issuer = match (&c.issuer, dev) {
            (Some(i), _) => config::normalise_issuer(i, dev)?,
            (None, true) => format!("{scheme}://{}/", listen.replace("127.0.0.1", "localhost")),
            (None, false) => {
                return Err(
                    "issuer is required (e.g. issuer = \"https://login.example.com/\")".into(),
                );
            }
        };
        let (data_dir, database_url) = storage_location(&c, dev);
        let tls = match &c.tls {
            None => None,
            Some(t) => {
                if !issuer.starts_with("https://") {
                    return Err(format!(
                        "with [tls], the issuer must be https:// (it is {issuer})"
                    ));
                }
                if t.self_signed && !dev {
                    return Err(
                        "tls.self_signed is for dev mode only: configure tls.cert_file and tls.key_file"
                            .into(),
                    );
                }
                let (cert_file, key_file) = match (&t.cert_file, &t.key_file, t.self_signed) {
                    (Some(c), Some(k), _) => (c.clone(), k.clone()),
                    (None, None, true) => (
                        data_dir.join("tls").join("cert.pem"),
                        data_dir.join("tls").join("key.pem"),
                    ),
                    _ => {
                        return Err(
                            "[tls] needs both cert_file and key_file (or self_signed = true in dev mode)"
                                .into(),
                        );
                    }
                };
                Some(TlsSettings {
                    cert_file,
                    key_file,
                    self_signed: t.self_signed,
                    redirect_http_listen: t.redirect_http_listen.clone(),
                })
            }
        };
        let is_postgres =
            database_url.starts_with("postgres:") || database_url.starts_with("postgresql:");
        let secret = match &c.secret_key {
            Some(s) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.expose_secret().trim())
                    .map_err(|_| "secret_key must be base64".to_string())?;
                if bytes.len() < 32 {
                    return Err("secret_key must decode to at least 32 bytes".into());
                }
                SecretSource::Configured(bytes)
            }
            None if is_postgres => {
                return Err(
                    "secret_key is required with PostgreSQL: every node must share it \
                     (generate one with `openssl rand -base64 32`)"
                        .into(),
                );
            }
            None => SecretSource::File(data_dir.join("secret.key")),
        };
        let timeout = Duration::from_secs(c.email.timeout_secs.unwrap_or(10).clamp(1, 120));
        let email = match (&c.email.smtp_url, dev) {
            (Some(u), _) => {
                let mut smtp = SmtpSettings::from_url(u.expose_secret(), timeout)?;
                smtp.dkim = c.email.dkim.as_ref().map(dkim_settings).transpose()?;
                if let Some(f) = &c.email.ca_file {
                    smtp.ca_pem = Some(
                        std::fs::read(f)
                            .map_err(|e| format!("email.ca_file {}: {e}", f.display()))?,
                    );
                }
                EmailTransport::Smtp(smtp)
            }
            (None, true) => EmailTransport::DevMailbox,
            (None, false) => {
                return Err(
                    "email.smtp_url is required: Tessera will not start without a real email \
                     transport (the dev mailbox exists only in dev mode)"
                        .into(),
                );
            }
        };
        let email_from = match (&c.email.from, dev) {
            (Some(f), _) => f.clone(),
            (None, true) => "Tessera <no-reply@localhost.localdomain>".into(),
            (None, false) => {
                return Err("email.from is required (e.g. \"Acme <login@acme.example>\")".into());
            }
        };
        if email_from.chars().any(|ch| ch.is_control()) || !email_from.contains('@') {
            return Err(format!("email.from {email_from:?} is not a valid mailbox"));
        }
        let ec = &c.connections.email;
        let email_connection = ConnectionSettings {
            code_length: ec.code_length,
            code_lifetime_secs: ec.code_lifetime_secs,
            max_attempts: ec.max_attempts,
            disable_signup: ec.disable_signup,
            email_template: ec.template.clone(),
            magic_link_confirmation: ec.magic_link_confirmation,
            sms_template: None,
            sms_provider: None,
        };
        if let Some(t) = &email_connection.email_template {
            tessera_delivery::templates::validate(t)
                .map_err(|e| format!("connections.email.{e}"))?;
        }
        email_connection
            .validate()
            .map_err(|e| format!("connections.email: {e}"))?;
        let (sms_connection, sms_provider) = sms_settings(&c, dev)?;
        check_tokens(&c.tokens)?;
        c.outbox.validate()?;
        c.rate_limits.validate()?;
        c.http.validate()?;
        if let Some(f) = c.log.format.as_deref()
            && f != "text"
            && f != "json"
        {
            return Err(format!(
                "log.format must be \"text\" or \"json\", not {f:?}"
            ));
        }
        let mut seen_apis = std::collections::HashSet::new();
        for api in &c.apis {
            url::Url::parse(&api.identifier)
                .map_err(|e| format!("api {:?}: {e}", api.identifier))?;
            if !seen_apis.insert(api.identifier.as_str()) {
                return Err(format!("api {:?} is declared twice", api.identifier));
            }
            if let Some(t) = api.token_lifetime_secs
                && !(60..=30 * 86_400).contains(&t)
            {
                return Err(format!(
                    "api {:?}: token_lifetime_secs must be between 60 and 2592000, not {t}",
                    api.identifier
                ));
            }
        }
        // A claim must outlive one SMTP attempt, or a slow send could be claimed and sent twice.
        if c.outbox.lease_secs <= timeout.as_secs() as i64 {
            return Err(format!(
                "outbox.lease_secs ({}) must be longer than email.timeout_secs ({})",
                c.outbox.lease_secs,
                timeout.as_secs()
            ));
        }
        let trusted_proxies = c
            .trusted_proxies
            .iter()
            .map(|s| {
                s.parse::<IpNet>()
                    .map_err(|e| format!("trusted_proxies: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        config::check_unique_clients(&c.applications)?;
        let admin_emails = admin_emails(&c, dev)?;
        let mut clients = Vec::new();
        for app in &c.applications {
            let (grant_types, connections) = config::check_app(app)?;
            clients.push(Client {
                client_id: app.client_id.clone(),
                secret_hash: app
                    .client_secret
                    .as_ref()
                    .map(|s| sha256(s.expose_secret())),
                settings: ClientSettings {
                    name: app.name.clone(),
                    app_type: app.app_type,
                    callbacks: app.callbacks.clone(),
                    web_origins: app.web_origins.clone(),
                    grant_types,
                    connections,
                    trust_forwarded_for: app.trust_forwarded_for,
                    allowed_logout_urls: app.allowed_logout_urls.clone(),
                    allow_browser_start: app.allow_browser_start,
                    cross_origin_authentication: app.cross_origin_authentication,
                    legacy_passwordless: app.legacy_passwordless,
                    management_scopes: app.management_scopes.clone(),
                    id_token_lifetime_secs: app.id_token_lifetime_secs,
                    signing_alg: app.signing_alg.clone(),
                },
            });
        }
        let demo_app = if dev {
            let demo = load_or_create_demo(&data_dir)?;
            if !clients.iter().any(|cl| cl.client_id == demo.client_id) {
                clients.push(demo_client(&demo));
            }
            Some(demo)
        } else {
            None
        };
        let d = PoolOptions::default();
        let pool = PoolOptions {
            max_connections: c.database.max_connections.unwrap_or(d.max_connections),
            acquire_timeout_secs: c
                .database
                .acquire_timeout_secs
                .unwrap_or(d.acquire_timeout_secs),
            statement_timeout_ms: c
                .database
                .statement_timeout_ms
                .unwrap_or(d.statement_timeout_ms),
        };
        Ok(Settings {
            dev,
            issuer,
            listen,
            data_dir,
            database_url,
            pool,
            secret,
            email,
            email_from,
            email_connection,
            sms_connection,
            sms_provider,
            sms_timeout: Duration::from_secs(
                c.connections
                    .sms
                    .as_ref()
                    .map(|s| s.timeout_secs)
                    .unwrap_or(30),
            ),
            tokens: c.tokens,
            apis: c.apis,
            clients,
            outbox: c.outbox,
            rate_limits: c.rate_limits,
            trusted_proxies,
            tenant: tessera_delivery::templates::Tenant {
                name: c.tenant.name.clone(),
                friendly_name: c.tenant.friendly_name.clone(),
                support_email: c.tenant.support_email.clone(),
                support_url: c.tenant.support_url.clone(),
            },
            log: c.log,
            demo_app,
            tls,
            metrics_listen: c.metrics.listen.clone(),
            admin_emails,
            http: c.http.clone(),
        })
    }
}

/// The data folder and the database URL: as configured, or the defaults (an SQLite file in
/// `data`, or in `.tessera-dev` in dev mode).
pub fn storage_location(c: &Config, dev: bool) -> (PathBuf, String) {
    let data_dir = c
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(if dev { DEV_DATA_DIR } else { "data" }));
    let database_url = c
        .database
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("tessera.db").display()));
    (data_dir, database_url)
}

fn dkim_settings(d: &config::DkimConfig) -> Result<tessera_delivery::smtp::DkimSettings, String> {
    use tessera_delivery::smtp::{DkimSettings, DkimSigningAlgorithm};
    let algorithm = match d.algorithm.as_str() {
        "rsa" => DkimSigningAlgorithm::Rsa,
        "ed25519" => DkimSigningAlgorithm::Ed25519,
        other => {
            return Err(format!(
                "email.dkim.algorithm must be \"rsa\" or \"ed25519\", not {other:?}"
            ));
        }
    };
    let private_key = std::fs::read_to_string(&d.private_key_file).map_err(|e| {
        format!(
            "email.dkim.private_key_file {}: {e}",
            d.private_key_file.display()
        )
    })?;
    let s = DkimSettings {
        domain: d.domain.clone(),
        selector: d.selector.clone(),
        algorithm,
        private_key,
    };
    s.config().map_err(|e| format!("email.dkim: {e}"))?;
    Ok(s)
}

type SmsParts = (
    Option<(ConnectionSettings, crate::config::SmsOptions)>,
    Option<tessera_delivery::SmsProvider>,
);

/// The `sms` connection: checked, and split into what requests need and the provider.
fn sms_settings(c: &Config, dev: bool) -> Result<SmsParts, String> {
    use tessera_delivery::sms::{GatewaySettings, TwilioSettings};
    let uses_sms = c.applications.iter().any(|a| {
        a.connections
            .as_ref()
            .is_some_and(|cs| cs.iter().any(|x| x == "sms"))
    });
    let Some(s) = &c.connections.sms else {
        if uses_sms {
            return Err(
                "an application uses the sms connection, but [connections.sms] is not configured"
                    .into(),
            );
        }
        return Ok((None, None));
    };
    let settings = ConnectionSettings {
        code_length: s.code_length,
        code_lifetime_secs: s.code_lifetime_secs,
        max_attempts: s.max_attempts,
        disable_signup: s.disable_signup,
        email_template: None,
        magic_link_confirmation: Default::default(),
        sms_template: s.template.clone(),
        sms_provider: None,
    };
    settings
        .validate()
        .map_err(|e| format!("connections.sms: {e}"))?;
    if let Some(t) = &s.template {
        tessera_delivery::templates::validate_sms(t)
            .map_err(|e| format!("connections.sms.template: {}", e.reason))?;
    }
    for (name, v) in [
        ("per_number_per_hour", s.per_number_per_hour),
        ("per_prefix_per_hour", s.per_prefix_per_hour),
        ("budget_per_hour", s.budget_per_hour),
        ("alarm_min_sent", s.alarm_min_sent),
    ] {
        if v < 0 {
            return Err(format!(
                "connections.sms.{name} must be 0 (off) or more, not {v}"
            ));
        }
    }
    if !(1..=30).contains(&s.timeout_secs) {
        return Err("connections.sms.timeout_secs must be between 1 and 30".into());
    }
    if !(0.0..=1.0).contains(&s.alarm_verified_ratio) {
        return Err("connections.sms.alarm_verified_ratio must be between 0 and 1".into());
    }
    let provider = match (&s.twilio, &s.gateway) {
        (Some(_), Some(_)) => {
            return Err(
                "connections.sms: configure either [connections.sms.twilio] or [connections.sms.gateway], not both"
                    .into(),
            );
        }
        (Some(t), None) => {
            if t.messaging_service_sid.is_none() && s.from.is_none() {
                return Err(
                    "connections.sms: Twilio needs `from` (a number) or `twilio.messaging_service_sid`"
                        .into(),
                );
            }
            check_provider_url("connections.sms.twilio.api_base", &t.api_base)?;
            Some(tessera_delivery::SmsProvider::Twilio(TwilioSettings {
                api_base: t.api_base.clone(),
                account_sid: t.account_sid.clone(),
                auth_token: t.auth_token.expose_secret().to_string(),
                from: s.from.clone(),
                messaging_service_sid: t.messaging_service_sid.clone(),
            }))
        }
        (None, Some(g)) => {
            check_provider_url("connections.sms.gateway.url", &g.url)?;
            let jwt = match (&g.jwt_secret, &g.jwt_subject, &g.jwt_audience) {
                (Some(k), sub, aud) => Some((
                    k.expose_secret().to_string(),
                    sub.clone().unwrap_or_default(),
                    aud.clone().unwrap_or_default(),
                )),
                (None, None, None) => None,
                (None, _, _) => {
                    return Err(
                        "connections.sms.gateway: jwt_subject and jwt_audience need jwt_secret"
                            .into(),
                    );
                }
            };
            Some(tessera_delivery::SmsProvider::Gateway(GatewaySettings {
                url: g.url.clone(),
                from: s.from.clone(),
                forward_req_info: g.forward_req_info,
                jwt,
            }))
        }
        // Dev mode without a provider: SMS go to the dev mailbox, which exists only when email
        // does too (no smtp_url).
        (None, None) if dev && c.email.smtp_url.is_none() => None,
        (None, None) => {
            return Err(
                "connections.sms needs a provider: [connections.sms.twilio] or [connections.sms.gateway]"
                    .into(),
            );
        }
    };
    let options = crate::config::SmsOptions {
        autofill_line: s.autofill_line,
        allowed_countries: s.allowed_countries.clone(),
        per_number_per_hour: s.per_number_per_hour,
        per_prefix_per_hour: s.per_prefix_per_hour,
        budget_per_hour: s.budget_per_hour,
        alarm_min_sent: s.alarm_min_sent,
        alarm_verified_ratio: s.alarm_verified_ratio,
    };
    Ok((Some((settings, options)), provider))
}

/// Provider URLs: https, or http to a loopback host (tests and local relays).
pub fn check_provider_url(name: &str, u: &str) -> Result<(), String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("{name}: {e}"))?;
    let loopback = parsed
        .host_str()
        .is_some_and(crate::config::is_loopback_host);
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "{name} must be https (http only to a loopback host)"
        )),
    }
}

fn check_tokens(t: &TokenConfig) -> Result<(), String> {
    for (name, v, max) in [
        (
            "tokens.id_token_lifetime_secs",
            t.id_token_lifetime_secs,
            30 * 86_400,
        ),
        (
            "tokens.access_token_lifetime_secs",
            t.access_token_lifetime_secs,
            30 * 86_400,
        ),
        (
            "tokens.refresh_token_lifetime_secs",
            t.refresh_token_lifetime_secs,
            365 * 86_400,
        ),
        (
            "tokens.session_lifetime_secs",
            t.session_lifetime_secs,
            365 * 86_400,
        ),
    ] {
        if !(60..=max).contains(&v) {
            return Err(format!("{name} must be between 60 and {max}, not {v}"));
        }
    }
    for (name, v) in [
        (
            "tokens.authorization_code_lifetime_secs",
            t.authorization_code_lifetime_secs,
        ),
        (
            "tokens.login_ticket_lifetime_secs",
            t.login_ticket_lifetime_secs,
        ),
    ] {
        if !(10..=600).contains(&v) {
            return Err(format!("{name} must be between 10 and 600, not {v}"));
        }
    }
    Ok(())
}

fn demo_client(d: &DemoApp) -> Client {
    Client {
        client_id: d.client_id.clone(),
        secret_hash: Some(sha256(&d.client_secret)),
        settings: ClientSettings {
            name: "Demo App".into(),
            app_type: AppType::RegularWeb,
            callbacks: vec![d.callback.clone()],
            web_origins: vec!["http://localhost:5000".into()],
            grant_types: vec![
                GRANT_PASSWORDLESS_OTP.into(),
                GRANT_REFRESH_TOKEN.into(),
                GRANT_AUTHORIZATION_CODE.into(),
                GRANT_IMPLICIT.into(),
            ],
            connections: vec!["email".into()],
            trust_forwarded_for: false,
            allowed_logout_urls: vec!["http://localhost:5000/".into()],
            allow_browser_start: true,
            cross_origin_authentication: true,
            legacy_passwordless: true,
            management_scopes: vec![],
            id_token_lifetime_secs: None,
            signing_alg: None,
        },
    }
}

/// The demo app's credentials persist in the data folder so they survive restarts.
fn load_or_create_demo(dir: &Path) -> Result<DemoApp, String> {
    let path = dir.join("dev-app.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let rng = SystemRandom;
    let demo = DemoApp {
        client_id: format!("dev-{}", hex_id(&rng as &dyn Random)),
        client_secret: token(&rng as &dyn Random),
        callback: DEV_CALLBACK.into(),
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let text = serde_json::to_string_pretty(&demo).map_err(|e| e.to_string())?;
    crate::files::write_private(&path, text.as_bytes())?;
    Ok(demo)
}

/// Dev mode's administrator when `[admin] emails` is empty: its codes go to the dev mailbox.
pub const DEV_ADMIN: &str = "admin@example.com";

/// `[admin] emails`, each a valid address, normalised as sign-in normalises it (so the check
/// at sign-in is a plain comparison). The dashboard's application id is reserved.
fn admin_emails(c: &Config, dev: bool) -> Result<Vec<String>, String> {
    if let Some(app) = c
        .applications
        .iter()
        .find(|a| a.client_id == crate::ops::DASHBOARD_CLIENT_ID)
    {
        return Err(format!(
            "application {:?}: the client_id {} is reserved for the dashboard",
            app.name,
            crate::ops::DASHBOARD_CLIENT_ID
        ));
    }
    let mut out = Vec::new();
    for raw in &c.admin.emails {
        let e = tessera_core::email::EmailAddress::parse(raw)
            .map_err(|_| format!("admin.emails: {raw:?} is not a valid email address"))?;
        if !out.iter().any(|o| o == e.as_str()) {
            out.push(e.as_str().to_string());
        }
    }
    if out.is_empty() && dev {
        out.push(DEV_ADMIN.to_string());
    }
    Ok(out)
}
