//! `tessera`: run the server, run it in dev mode, or migrate its database.

/// mimalloc, not glibc's malloc: under load glibc's arenas were locked and waited for (memory
/// freed or grown on another thread than the one that took it: two thirds of Tessera's
/// `futex` calls), where mimalloc frees across threads without a lock. Its version 3 keeps
/// the idle RSS within the target (version 2 raised it to 30 MB). See bench/README.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod import;
use tessera_server::config::{self, Config};
use tessera_server::ops::{Actor, Ops, connection_json, key_json, log_json};
use tessera_server::routes::management::{client_json, user_json};
use tessera_server::settings::Settings;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera: a self-hosted passwordless identity provider that speaks Auth0's API"
)]
struct Cli {
    /// The TOML configuration file (every key can also be set as TESSERA_<SECTION>__<KEY>).
    #[arg(long, global = true, env = "TESSERA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve {
        /// Dev mode: SQLite in ./.tessera-dev, a dev mailbox at /_dev/mailbox, a demo application.
        #[arg(long)]
        dev: bool,
        /// Address to listen on (overrides `listen`).
        #[arg(long)]
        listen: Option<String>,
        /// Folder for the SQLite database and the server secret (overrides `data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Shorthand for `serve --dev`.
    Dev {
        #[arg(long)]
        listen: Option<String>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Serve HTTPS with a self-signed certificate for localhost (made once, in the data
        /// folder), for the old widgets that only speak https.
        #[arg(long)]
        tls: bool,
    },
    /// Signing keys: list, rotate, revoke (works on the database; no server needs to run).
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
        /// Use the dev-mode defaults (as `tessera dev` does).
        #[arg(long, global = true)]
        dev: bool,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        /// Folder for the SQLite database and the server secret (overrides `data_dir`).
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Email templates: preview what users receive.
    Templates {
        #[command(subcommand)]
        cmd: TemplatesCmd,
        /// Use the dev-mode defaults (as `tessera dev` does).
        #[arg(long, global = true)]
        dev: bool,
    },
    /// Applications: list, create, show, update, delete, rotate the secret (works on the
    /// database; no server needs to run; every change is an audit event).
    Apps {
        #[command(subcommand)]
        cmd: AppsCmd,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        /// Use the dev-mode defaults (as `tessera dev` does).
        #[arg(long, global = true)]
        dev: bool,
        /// Folder for the SQLite database and the server secret (overrides `data_dir`).
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Passwordless connections (`email`, `sms`): list, show, update (works on the database).
    Connections {
        #[command(subcommand)]
        cmd: ConnectionsCmd,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        /// Use the dev-mode defaults (as `tessera dev` does).
        #[arg(long, global = true)]
        dev: bool,
        /// Folder for the SQLite database and the server secret (overrides `data_dir`).
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Users: list and search, show, create, block, unblock, delete (works on the database).
    Users {
        #[command(subcommand)]
        cmd: UsersCmd,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        /// Use the dev-mode defaults (as `tessera dev` does).
        #[arg(long, global = true)]
        dev: bool,
        /// Folder for the SQLite database and the server secret (overrides `data_dir`).
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// The audit log, newest first: sign-ins, failures, codes sent, limits hit, token reuse,
    /// administration. `tessera logs tail` follows it.
    Logs {
        #[command(subcommand)]
        cmd: Option<LogsCmd>,
        #[command(flatten)]
        filter: LogFilter,
        /// Print JSON lines instead of a table.
        #[arg(long, global = true)]
        json: bool,
        /// Use the dev-mode defaults (as `tessera dev` does).
        #[arg(long, global = true)]
        dev: bool,
        /// Folder for the SQLite database and the server secret (overrides `data_dir`).
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Import from another provider (works on the database; no server needs to run).
    Import {
        #[command(subcommand)]
        cmd: ImportCmd,
        /// Use the dev-mode defaults (as `tessera dev` does).
        #[arg(long, global = true)]
        dev: bool,
        /// Folder for the SQLite database and the server secret (overrides `data_dir`).
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Apply pending database migrations, then exit.
    Migrate {
        /// Use the dev-mode database location when no database URL is configured.
        #[arg(long)]
        dev: bool,
    },
}

/// Which events `tessera logs` shows.
#[derive(clap::Args, Clone)]
struct LogFilter {
    /// How many events to show (the newest).
    #[arg(long, default_value_t = 50, global = true)]
    limit: i64,
    /// Only events of this type (Auth0's codes: s, f, cls, fcls, limit_wc, limit_mu, ferrt, sapi, …).
    #[arg(long = "type", global = true)]
    kind: Option<String>,
    /// Only events about this user.
    #[arg(long = "user", global = true)]
    user_id: Option<String>,
    /// Only events about this application.
    #[arg(long = "client", global = true)]
    client_id: Option<String>,
    /// Only events at or after this time (RFC 3339, or seconds since the epoch).
    #[arg(long, global = true)]
    since: Option<String>,
    /// Only events before this time (RFC 3339, or seconds since the epoch).
    #[arg(long, global = true)]
    until: Option<String>,
}

#[derive(Subcommand, Clone)]
enum ImportCmd {
    /// Auth0's exports: users (the export job's JSON lines), clients and passwordless
    /// connections (Management API JSON). User ids are kept, so `sub` claims stay the same.
    /// Running it twice changes nothing.
    Auth0 {
        /// Auth0's user export (JSON lines, or a JSON array).
        #[arg(long)]
        users: Option<PathBuf>,
        /// `GET /api/v2/clients` output (a JSON array).
        #[arg(long)]
        clients: Option<PathBuf>,
        /// `GET /api/v2/connections` output (a JSON array); only email and sms are imported.
        #[arg(long)]
        connections: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Clone)]
enum TemplatesCmd {
    /// Print the rendered From, Subject, text and HTML, with sample values.
    Preview {
        /// The passwordless connection.
        #[arg(long, default_value = "email")]
        connection: String,
        /// `code` or `link`.
        #[arg(long, default_value = "code")]
        send: String,
        /// The request language, as X-Request-Language would give it (e.g. fr-FR).
        #[arg(long)]
        lang: Option<String>,
    },
}

#[derive(Subcommand, Clone)]
enum AppsCmd {
    /// Every application.
    List,
    /// One application (its secret is never shown: it is stored as a digest).
    Show { client_id: String },
    /// A new application; a regular_web one gets a secret, printed once.
    Create {
        #[arg(long)]
        name: String,
        /// regular_web (a server-side app with a secret), spa or native.
        #[arg(long = "type", default_value = "regular_web")]
        app_type: String,
        #[command(flatten)]
        fields: AppFields,
    },
    /// Change an application: only the options given change (a list option replaces the list).
    Update {
        client_id: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: AppFields,
    },
    /// Delete an application with its codes and tokens.
    Delete {
        client_id: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// A new client secret, printed once; the old one stops working at once.
    RotateSecret { client_id: String },
}

/// Application fields for `apps create` and `apps update`, in Auth0's names.
#[derive(clap::Args, Clone, Default)]
struct AppFields {
    /// An allowed callback URL (repeat for several; exact match).
    #[arg(long = "callback")]
    callbacks: Vec<String>,
    /// An allowed web origin, scheme://host[:port] (repeat for several).
    #[arg(long = "web-origin")]
    web_origins: Vec<String>,
    /// An allowed logout URL (repeat for several).
    #[arg(long = "logout-url")]
    logout_urls: Vec<String>,
    /// A grant type, e.g. authorization_code, refresh_token,
    /// http://auth0.com/oauth/grant-type/passwordless/otp (repeat for several).
    #[arg(long = "grant")]
    grants: Vec<String>,
    /// A connection the application may use: email, sms (repeat for several).
    #[arg(long = "connection")]
    connections: Vec<String>,
    /// Allow embedded login (/co/authenticate, Lock and auth0-js).
    #[arg(long)]
    cross_origin_authentication: Option<bool>,
    /// Let this confidential application's pages call /passwordless/start from the browser.
    #[arg(long)]
    allow_browser_start: Option<bool>,
    /// id_token lifetime in seconds (Auth0's jwt_configuration.lifetime_in_seconds).
    #[arg(long)]
    id_token_lifetime: Option<i64>,
    /// Any other Auth0 client fields, as a JSON object (applied after the options above).
    #[arg(long = "json-fields")]
    json_fields: Option<String>,
}

impl AppFields {
    fn to_map(&self) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        use serde_json::json;
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("callbacks", &self.callbacks),
            ("web_origins", &self.web_origins),
            ("allowed_logout_urls", &self.logout_urls),
            ("grant_types", &self.grants),
            ("connections", &self.connections),
        ] {
            if !v.is_empty() {
                m.insert(k.into(), json!(v));
            }
        }
        if let Some(b) = self.cross_origin_authentication {
            m.insert("cross_origin_authentication".into(), json!(b));
        }
        if let Some(b) = self.allow_browser_start {
            m.insert("allow_browser_start".into(), json!(b));
        }
        if let Some(l) = self.id_token_lifetime {
            m.insert(
                "jwt_configuration".into(),
                json!({ "lifetime_in_seconds": l }),
            );
        }
        if let Some(text) = &self.json_fields {
            match serde_json::from_str(text) {
                Ok(serde_json::Value::Object(extra)) => m.extend(extra),
                _ => anyhow::bail!("--json-fields must be a JSON object"),
            }
        }
        Ok(m)
    }
}

#[derive(Subcommand, Clone)]
#[allow(clippy::large_enum_variant)] // parsed once per run; boxing buys nothing
enum ConnectionsCmd {
    /// Every connection, with the applications that use it.
    List,
    /// A connection's settings (`email` or `sms`).
    Show { name: String },
    /// Change a connection: only the options given change.
    Update {
        name: String,
        /// Digits per code (4 to 10).
        #[arg(long)]
        code_length: Option<i64>,
        /// Seconds a code stays valid.
        #[arg(long)]
        code_lifetime: Option<i64>,
        /// Wrong attempts allowed per code.
        #[arg(long)]
        max_attempts: Option<i64>,
        /// Refuse codes to unknown identities.
        #[arg(long)]
        disable_signup: Option<bool>,
        /// Magic-link confirmation page: auto, always or never.
        #[arg(long)]
        link_confirmation: Option<String>,
        /// The email's From header (Liquid).
        #[arg(long)]
        email_from: Option<String>,
        /// The email's Subject (Liquid).
        #[arg(long)]
        email_subject: Option<String>,
        /// A file holding the email's HTML body (Liquid).
        #[arg(long)]
        email_body_file: Option<PathBuf>,
        /// Go back to the built-in, translated email.
        #[arg(long, conflicts_with_all = ["email_from", "email_subject", "email_body_file"])]
        builtin_email: bool,
        /// The SMS text (the sms connection), in `--sms-syntax`.
        #[arg(long)]
        sms_template: Option<String>,
        /// liquid (`{{ code }}`) or md_with_macros (`@@password@@`).
        #[arg(long, requires = "sms_template")]
        sms_syntax: Option<String>,
        /// Go back to the built-in, translated SMS text.
        #[arg(long, conflicts_with_all = ["sms_template", "sms_syntax"])]
        builtin_sms: bool,
        /// Any other options in Auth0's names, as a JSON object, e.g. the SMS provider:
        /// '{"provider": "twilio", "twilio_sid": "AC…", "twilio_token": "…", "from": "+1…"}'.
        #[arg(long = "options-json")]
        options_json: Option<String>,
        /// The applications allowed to use the connection (repeat; replaces the list).
        #[arg(long = "enable-for")]
        enabled_clients: Vec<String>,
    },
}

#[derive(Subcommand, Clone)]
enum UsersCmd {
    /// Users whose email or phone number contains SEARCH (all without it), newest first.
    List {
        search: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One user's profile.
    Show {
        user_id: String,
    },
    /// Make a user (an email or sms user, before their first sign-in).
    Create {
        /// email or sms.
        #[arg(long, default_value = "email")]
        connection: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        phone_number: Option<String>,
    },
    /// Block a user: no more codes, sign-ins or token refreshes.
    Block {
        user_id: String,
    },
    Unblock {
        user_id: String,
    },
    /// Delete a user with their sessions and tokens.
    Delete {
        user_id: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Clone)]
enum KeysCmd {
    /// Every key (the current one signs; the previous one still verifies; retired and revoked
    /// ones are no longer published).
    List,
    /// Make a new current key; the current one becomes the previous, the previous one retires.
    Rotate,
    /// Take a previous key out of the JWKS now: tokens it signed stop verifying.
    Revoke {
        /// A key id is 22 characters of base64url, so one in 64 starts with `-`: it is a kid
        /// still, not an option (clap would refuse it as an unknown one).
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[derive(Subcommand, Clone, Copy)]
enum LogsCmd {
    /// Follow the log: print new events as they are recorded, until interrupted.
    Tail {
        /// Seconds between two reads of the database.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut cfg = match config::load(cli.config.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let (dev, action) = match cli.cmd {
        Cmd::Serve {
            dev,
            listen,
            data_dir,
        } => {
            override_paths(&mut cfg, listen, data_dir);
            (dev, Action::Serve)
        }
        Cmd::Dev {
            listen,
            data_dir,
            tls,
        } => {
            override_paths(&mut cfg, listen, data_dir);
            if tls && cfg.tls.is_none() {
                cfg.tls = Some(config::TlsConfig {
                    self_signed: true,
                    ..Default::default()
                });
            }
            (true, Action::Serve)
        }
        Cmd::Migrate { dev } => (dev, Action::Migrate),
        Cmd::Apps {
            cmd,
            json,
            dev,
            data_dir,
        } => {
            override_paths(&mut cfg, None, data_dir);
            (dev, Action::Apps(cmd, json))
        }
        Cmd::Connections {
            cmd,
            json,
            dev,
            data_dir,
        } => {
            override_paths(&mut cfg, None, data_dir);
            (dev, Action::Connections(cmd, json))
        }
        Cmd::Users {
            cmd,
            json,
            dev,
            data_dir,
        } => {
            override_paths(&mut cfg, None, data_dir);
            (dev, Action::Users(cmd, json))
        }
        Cmd::Logs {
            cmd,
            filter,
            json,
            dev,
            data_dir,
        } => {
            override_paths(&mut cfg, None, data_dir);
            (dev, Action::Logs { cmd, filter, json })
        }
        Cmd::Templates { cmd, dev } => (dev, Action::Templates(cmd)),
        Cmd::Import {
            cmd:
                ImportCmd::Auth0 {
                    users,
                    clients,
                    connections,
                    json,
                },
            dev,
            data_dir,
        } => {
            override_paths(&mut cfg, None, data_dir);
            (
                dev,
                Action::Import(import::ImportArgs {
                    users,
                    clients,
                    connections,
                    json,
                }),
            )
        }
        Cmd::Keys {
            cmd,
            dev,
            json,
            data_dir,
        } => {
            override_paths(&mut cfg, None, data_dir);
            (dev, Action::Keys(cmd, json))
        }
    };
    init_logging(&cfg.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = match action {
        Action::Migrate => runtime.block_on(migrate(&cfg, dev)),
        other => match Settings::from_config(cfg, dev) {
            Ok(settings) => match other {
                Action::Keys(cmd, json) => runtime.block_on(keys(settings, cmd, json)),
                Action::Users(cmd, json) => runtime.block_on(users(settings, cmd, json)),
                Action::Apps(cmd, json) => runtime.block_on(apps(settings, cmd, json)),
                Action::Import(args) => runtime.block_on(import::auth0(settings, args)),
                Action::Connections(cmd, json) => {
                    runtime.block_on(connections(settings, cmd, json))
                }
                Action::Logs { cmd, filter, json } => {
                    runtime.block_on(logs(settings, cmd, filter, json))
                }
                Action::Templates(TemplatesCmd::Preview {
                    connection,
                    send,
                    lang,
                }) => runtime.block_on(preview(&settings, &connection, &send, lang.as_deref())),
                _ => runtime.block_on(tessera_server::serve(settings)),
            },
            Err(e) => return fail(&e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

enum Action {
    Serve,
    Migrate,
    Keys(KeysCmd, bool),
    Templates(TemplatesCmd),
    Logs {
        cmd: Option<LogsCmd>,
        filter: LogFilter,
        json: bool,
    },
    Users(UsersCmd, bool),
    Apps(AppsCmd, bool),
    Connections(ConnectionsCmd, bool),
    Import(import::ImportArgs),
}

/// The domain operations the Management API and the dashboard use, on the database directly,
/// acting as the CLI (every change is an audit event).
struct CliOps {
    store: std::sync::Arc<dyn tessera_store::Store>,
    secret: tessera_core::crypto::ServerSecret,
}

impl CliOps {
    async fn open(settings: &Settings) -> anyhow::Result<CliOps> {
        use tessera_core::rand::SystemRandom;
        let (store, secret) = tessera_server::app::open_store(settings, &SystemRandom).await?;
        Ok(CliOps { store, secret })
    }

    fn ops(&self) -> Ops<'_> {
        use tessera_core::clock::{Clock, SystemClock};
        Ops {
            store: self.store.as_ref(),
            rng: &tessera_core::rand::SystemRandom,
            now: SystemClock.now(),
            actor: Actor::cli(),
            secret: &self.secret,
        }
    }
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints `key: value` lines for a JSON object (nested objects flattened with dots).
fn print_fields(v: &serde_json::Value) {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, out);
                }
            }
            serde_json::Value::Array(a) => out.push((
                prefix.to_string(),
                a.iter()
                    .map(|x| x.as_str().map(str::to_string).unwrap_or(x.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
            serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
            serde_json::Value::Null => out.push((prefix.to_string(), "-".into())),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut rows = Vec::new();
    walk("", v, &mut rows);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, x) in rows {
        // Multi-line values (an email body) are indented under their key.
        let x = x.replace('\n', &format!("\n{:width$}  ", ""));
        println!("{k:<width$}  {x}");
    }
}

fn print_secret_once(client_id: &str, secret: &str) {
    println!();
    println!("client_secret for {client_id} (shown once; store it now): {secret}");
}

/// `tessera apps …`: the same operations as the Management API and the dashboard.
async fn apps(settings: Settings, cmd: AppsCmd, json: bool) -> anyhow::Result<()> {
    use serde_json::json;
    let db = CliOps::open(&settings).await?;
    let ops = db.ops();
    match cmd {
        AppsCmd::List => {
            let list = ops.list_clients().await?;
            if json {
                let rows: Vec<_> = list.iter().map(client_json).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(
                    "{:<32} {:<12} {:<28} CONNECTIONS",
                    "CLIENT_ID", "TYPE", "NAME"
                );
                for c in &list {
                    println!(
                        "{:<32} {:<12} {:<28} {}",
                        c.client_id,
                        c.settings.app_type.auth0_name(),
                        c.settings.name,
                        c.settings.connections.join(",")
                    );
                }
            }
        }
        AppsCmd::Show { client_id } => {
            let c = ops.get_client(&client_id).await?;
            if json {
                print_json(&client_json(&c))?;
            } else {
                print_fields(&client_json(&c));
            }
        }
        AppsCmd::Create {
            name,
            app_type,
            fields,
        } => {
            let mut body = fields.to_map()?;
            body.insert("name".into(), json!(name));
            body.insert("app_type".into(), json!(app_type));
            let (c, secret) = ops.create_client(&body).await?;
            if json {
                let mut v = client_json(&c);
                if let Some(s) = &secret {
                    v["client_secret"] = json!(s);
                }
                print_json(&v)?;
            } else {
                println!("created: {}", c.client_id);
                print_fields(&client_json(&c));
                if let Some(s) = &secret {
                    print_secret_once(&c.client_id, s);
                }
            }
        }
        AppsCmd::Update {
            client_id,
            name,
            fields,
        } => {
            let mut body = fields.to_map()?;
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            anyhow::ensure!(!body.is_empty(), "nothing to change: give an option");
            let c = ops.update_client(&client_id, &body).await?;
            if json {
                print_json(&client_json(&c))?;
            } else {
                println!("updated: {client_id}");
                print_fields(&client_json(&c));
            }
        }
        AppsCmd::Delete { client_id, yes } => {
            anyhow::ensure!(
                yes,
                "deleting {client_id} cannot be undone (its tokens stop working): add --yes"
            );
            ops.delete_client(&client_id).await?;
            if !json {
                println!("deleted: {client_id}");
            }
        }
        AppsCmd::RotateSecret { client_id } => {
            let (c, secret) = ops.rotate_secret(&client_id).await?;
            if json {
                print_json(&json!({"client_id": c.client_id, "client_secret": secret}))?;
            } else {
                println!("rotated: the old secret of {client_id} no longer works");
                print_secret_once(&client_id, &secret);
            }
        }
    }
    Ok(())
}

/// `tessera connections …`.
async fn connections(settings: Settings, cmd: ConnectionsCmd, json: bool) -> anyhow::Result<()> {
    use serde_json::json;
    let db = CliOps::open(&settings).await?;
    let ops = db.ops();
    let show = |c: &tessera_core::connection::Connection, enabled: &[String]| {
        let v = connection_json(c, enabled);
        if json {
            print_json(&v)
        } else {
            print_fields(&v);
            Ok(())
        }
    };
    match cmd {
        ConnectionsCmd::List => {
            let list = ops.list_connections().await?;
            if json {
                let rows: Vec<_> = list.iter().map(|(c, e)| connection_json(c, e)).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(
                    "{:<12} {:<9} {:<8} APPLICATIONS",
                    "NAME", "STRATEGY", "TEMPLATE"
                );
                for (c, e) in &list {
                    println!(
                        "{:<12} {:<9} {:<8} {}",
                        c.name,
                        c.strategy.as_str(),
                        if c.settings.email_template.is_some() {
                            "custom"
                        } else {
                            "built-in"
                        },
                        e.join(",")
                    );
                }
            }
        }
        ConnectionsCmd::Show { name } => {
            let (c, e) = ops.get_connection(&name).await?;
            show(&c, &e)?;
        }
        ConnectionsCmd::Update {
            name,
            code_length,
            code_lifetime,
            max_attempts,
            disable_signup,
            link_confirmation,
            email_from,
            email_subject,
            email_body_file,
            builtin_email,
            sms_template,
            sms_syntax,
            builtin_sms,
            options_json,
            enabled_clients,
        } => {
            let mut options = serde_json::Map::new();
            let mut totp = serde_json::Map::new();
            if let Some(n) = code_length {
                totp.insert("length".into(), json!(n));
            }
            if let Some(n) = code_lifetime {
                totp.insert("time_step".into(), json!(n));
            }
            if !totp.is_empty() {
                options.insert("totp".into(), serde_json::Value::Object(totp));
            }
            if let Some(n) = max_attempts {
                options.insert("max_attempts".into(), json!(n));
            }
            if let Some(b) = disable_signup {
                options.insert("disable_signup".into(), json!(b));
            }
            if let Some(m) = link_confirmation {
                options.insert("magic_link_confirmation".into(), json!(m));
            }
            if builtin_email {
                options.insert("email".into(), serde_json::Value::Null);
            } else if email_from.is_some() || email_subject.is_some() || email_body_file.is_some() {
                let mut e = serde_json::Map::new();
                if let Some(f) = email_from {
                    e.insert("from".into(), json!(f));
                }
                if let Some(t) = email_subject {
                    e.insert("subject".into(), json!(t));
                }
                if let Some(p) = email_body_file {
                    let body = std::fs::read_to_string(&p)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                    e.insert("body".into(), json!(body));
                }
                options.insert("email".into(), serde_json::Value::Object(e));
            }
            if builtin_sms {
                options.insert("template".into(), serde_json::Value::Null);
            }
            if let Some(t) = sms_template {
                options.insert("template".into(), json!(t));
            }
            if let Some(x) = sms_syntax {
                options.insert("syntax".into(), json!(x));
            }
            if let Some(text) = &options_json {
                match serde_json::from_str(text) {
                    Ok(serde_json::Value::Object(extra)) => options.extend(extra),
                    _ => anyhow::bail!("--options-json must be a JSON object"),
                }
            }
            let mut patch = serde_json::Map::new();
            if !options.is_empty() {
                patch.insert("options".into(), serde_json::Value::Object(options));
            }
            if !enabled_clients.is_empty() {
                patch.insert("enabled_clients".into(), json!(enabled_clients));
            }
            anyhow::ensure!(!patch.is_empty(), "nothing to change: give an option");
            let (c, e) = ops.update_connection(&name, &patch).await?;
            if !json {
                println!("updated: {name}");
            }
            show(&c, &e)?;
        }
    }
    Ok(())
}

/// `tessera users …`: the same operations as the Management API and the dashboard.
async fn users(settings: Settings, cmd: UsersCmd, json: bool) -> anyhow::Result<()> {
    use serde_json::json;
    let db = CliOps::open(&settings).await?;
    let ops = db.ops();
    let block = |b: bool| {
        let mut m = serde_json::Map::new();
        m.insert("blocked".into(), json!(b));
        m
    };
    match cmd {
        UsersCmd::List { search, limit } => {
            let list = ops
                .search_users(&search.unwrap_or_default(), limit.clamp(1, 10_000))
                .await?;
            if json {
                let rows: Vec<_> = list.iter().map(user_json).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(
                    "{:<34} {:<36} {:<8} {:>6} CREATED",
                    "USER_ID", "EMAIL/PHONE", "BLOCKED", "LOGINS"
                );
                for u in &list {
                    let who = u
                        .email
                        .clone()
                        .or(u.phone_number.clone())
                        .unwrap_or_default();
                    println!(
                        "{:<34} {:<36} {:<8} {:>6} {}",
                        u.user_id,
                        who,
                        if u.blocked { "yes" } else { "no" },
                        u.logins_count,
                        tessera_core::clock::rfc3339(u.created_at)
                    );
                }
            }
        }
        UsersCmd::Show { user_id } => {
            let u = ops.get_user(&user_id).await?;
            if json {
                print_json(&user_json(&u))?;
            } else {
                print_fields(&user_json(&u));
            }
        }
        UsersCmd::Create {
            connection,
            email,
            phone_number,
        } => {
            let mut body = serde_json::Map::new();
            body.insert("connection".into(), json!(connection));
            if let Some(e) = email {
                body.insert("email".into(), json!(e));
            }
            if let Some(p) = phone_number {
                body.insert("phone_number".into(), json!(p));
            }
            let u = ops.create_user(&body).await?;
            if json {
                print_json(&user_json(&u))?;
            } else {
                println!("created: {}", u.user_id);
            }
        }
        UsersCmd::Block { user_id } => {
            ops.update_user(&user_id, &block(true)).await?;
            if !json {
                println!("blocked: {user_id}");
            }
        }
        UsersCmd::Unblock { user_id } => {
            ops.update_user(&user_id, &block(false)).await?;
            if !json {
                println!("unblocked: {user_id}");
            }
        }
        UsersCmd::Delete { user_id, yes } => {
            anyhow::ensure!(yes, "deleting {user_id} cannot be undone: add --yes");
            ops.delete_user(&user_id).await?;
            if !json {
                println!("deleted: {user_id}");
            }
        }
    }
    Ok(())
}

/// A time given on the command line: RFC 3339, or seconds since the epoch.
fn cli_time(raw: &str) -> anyhow::Result<i64> {
    if let Ok(n) = raw.parse::<i64>() {
        return Ok(n);
    }
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| anyhow::anyhow!("{raw:?} is not an RFC 3339 time or seconds since the epoch"))
}

/// Prints the audit log (codes, tokens and secrets are never in it); `tail` follows it.
async fn logs(
    settings: Settings,
    cmd: Option<LogsCmd>,
    f: LogFilter,
    json: bool,
) -> anyhow::Result<()> {
    let db = CliOps::open(&settings).await?;
    let mut filter = tessera_store::EventFilter {
        kind: f.kind,
        user_id: f.user_id,
        client_id: f.client_id,
        from: f.since.as_deref().map(cli_time).transpose()?,
        to: f.until.as_deref().map(cli_time).transpose()?,
        after_seq: None,
        limit: f.limit.clamp(1, 100_000),
    };
    let clean = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let print = |rows: &[(i64, tessera_store::Event)]| {
        // Oldest first when following, so the newest line is the last one.
        for (seq, e) in rows {
            if json {
                println!("{}", log_json(*seq, e));
            } else {
                println!(
                    "{} {:<9} {:<16} {:<10} {:<34} {:<15} {}",
                    tessera_core::clock::rfc3339(e.at),
                    e.kind,
                    clean(&e.client_id),
                    clean(&e.connection),
                    clean(&e.user_id),
                    clean(&e.ip),
                    e.description
                );
            }
        }
    };
    let rows = db.ops().logs(&filter).await?;
    match cmd {
        None => print(&rows),
        Some(LogsCmd::Tail { interval }) => {
            use std::io::Write;
            let mut rows = rows;
            rows.reverse();
            print(&rows);
            let pause = std::time::Duration::from_secs_f64(interval.clamp(0.1, 60.0));
            // Without earlier events, start from the newest one recorded so far.
            let mut last = match rows.last() {
                Some((seq, _)) => *seq,
                None => {
                    let newest = tessera_store::EventFilter {
                        limit: 1,
                        ..Default::default()
                    };
                    db.ops().logs(&newest).await?.first().map_or(0, |r| r.0)
                }
            };
            filter.limit = 1_000;
            loop {
                std::io::stdout().flush()?;
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
                filter.after_seq = Some(last);
                let mut new = db.ops().logs(&filter).await?;
                new.reverse();
                if let Some((seq, _)) = new.last() {
                    last = *seq;
                }
                print(&new);
            }
        }
    }
    Ok(())
}

/// The same rendering `/passwordless/start` uses, with sample values, of the connection as
/// the database has it (edited in the dashboard, the API or the CLI), or as the file has it
/// before the first start.
async fn preview(
    settings: &Settings,
    connection: &str,
    send: &str,
    lang: Option<&str>,
) -> anyhow::Result<()> {
    use tessera_delivery::templates;
    anyhow::ensure!(
        connection == "email",
        "only the email connection has email templates"
    );
    anyhow::ensure!(
        matches!(send, "code" | "link" | "link_ios" | "link_android"),
        "--send must be code or link, not {send:?}"
    );
    let db = CliOps::open(settings).await?;
    let conn = match db.store.get_connection("email").await? {
        Some(c) => c.settings,
        None => settings.email_connection.clone(),
    };
    let vars = templates::EmailVars {
        tenant: settings.tenant.clone(),
        lifetime_minutes: (conn.code_lifetime_secs + 59) / 60,
        ..templates::sample_vars(send, lang)
    };
    let template = conn.email_template.as_ref();
    let m = templates::render(template, &vars, &settings.email_from, "preview@tessera")?;
    let source = match template {
        Some(_) => "the configured template".to_string(),
        None => format!("the built-in template ({})", templates::pick_language(lang)),
    };
    println!(
        "# {source}, send={send}, request_language={}",
        lang.unwrap_or("(none)")
    );
    println!(
        "From: {}\nSubject: {}\n\n--- text ---\n{}\n--- html ---\n{}",
        m.from, m.subject, m.text, m.html
    );
    Ok(())
}

async fn keys(settings: Settings, cmd: KeysCmd, json: bool) -> anyhow::Result<()> {
    let db = CliOps::open(&settings).await?;
    let ops = db.ops();
    // A fresh database gets its first key as a server's first start would make it.
    tessera_server::keys::KeyRing::load(db.store.as_ref(), &db.secret, ops.rng, ops.now).await?;
    match cmd {
        KeysCmd::List => {}
        KeysCmd::Rotate => {
            let kids = ops.rotate_key(&db.secret).await?;
            if !json {
                println!(
                    "rotated: the new current keys are {} (servers use them within a minute)",
                    kids.join(", ")
                );
            }
        }
        KeysCmd::Revoke { kid } => {
            ops.revoke_key(&kid).await?;
            if !json {
                println!("revoked: {kid} (servers stop accepting its tokens within a minute)");
            }
        }
    }
    let keys = ops.list_keys().await?;
    if json {
        let rows: Vec<_> = keys.iter().map(key_json).collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        println!("{:<24} {:<6} {:<9} CREATED", "KID", "ALG", "STATUS");
        for k in &keys {
            println!(
                "{:<24} {:<6} {:<9} {}",
                k.kid,
                k.alg,
                k.status.as_str(),
                tessera_core::clock::rfc3339(k.created_at)
            );
        }
    }
    Ok(())
}

fn override_paths(cfg: &mut Config, listen: Option<String>, data_dir: Option<PathBuf>) {
    if listen.is_some() {
        cfg.listen = listen;
    }
    if data_dir.is_some() {
        cfg.data_dir = data_dir;
    }
}

async fn migrate(cfg: &Config, dev: bool) -> anyhow::Result<()> {
    let (data_dir, url) = tessera_server::settings::storage_location(cfg, dev);
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&data_dir)?;
    }
    let pool = tessera_store::PoolOptions {
        max_connections: 1,
        ..Default::default()
    };
    let store = tessera_store::open(&url, &pool).await?;
    store.migrate().await?;
    println!("migrations applied ({})", store.backend());
    Ok(())
}

fn init_logging(log: &config::LogConfig) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| log.level.clone())
        .unwrap_or_else(|| "info,sqlx=warn".to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if log.format.as_deref() == Some("json") {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    // Times every SQL statement for /metrics, whatever the log level.
    let store = tessera_server::metrics::StoreLatencyLayer
        .with_filter(tessera_server::metrics::statement_events());
    tracing_subscriber::registry().with(fmt).with(store).init();
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("tessera: error: {msg}");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kid that starts with `-` (one in 64 do) is revocable, before or after the options.
    #[test]
    fn a_kid_starting_with_a_hyphen_is_taken_as_the_kid() {
        for args in [
            &[
                "tessera", "keys", "revoke", "-tQx9", "--config", "c.toml", "--json",
            ][..],
            &[
                "tessera", "--config", "c.toml", "keys", "revoke", "--json", "-tQx9",
            ],
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.config, Some(PathBuf::from("c.toml")), "{args:?}");
            let Cmd::Keys {
                cmd: KeysCmd::Revoke { kid },
                json,
                ..
            } = cli.cmd
            else {
                panic!("{args:?}: not keys revoke");
            };
            assert_eq!((kid.as_str(), json), ("-tQx9", true), "{args:?}");
        }
        // A kid is still required.
        assert!(Cli::try_parse_from(["tessera", "keys", "revoke"]).is_err());
    }
}
