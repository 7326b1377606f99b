//! `tessera`: run the server, run it in dev mode, or migrate its database.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tessera_server::config::{self, Config};
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
    /// Signing keys: list them, or rotate (works on the database; no server needs to run).
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
    /// Applications as the database has them: list, show (secrets are never shown).
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
    /// A passwordless connection's settings (`email` or `sms`) as the database has them.
    Connections {
        #[command(subcommand)]
        cmd: ConnectionsCmd,
        /// Use the dev-mode defaults (as `tessera dev` does).
        #[arg(long, global = true)]
        dev: bool,
        /// Folder for the SQLite database and the server secret (overrides `data_dir`).
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Users: list and search, show, block, unblock, delete (works on the database).
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
    /// The audit log, newest first: sign-ins, failures, codes sent, limits hit, token reuse.
    Logs {
        /// How many events to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only events of this type (Auth0's codes: s, f, cls, fcls, limit_wc, limit_mu, ferrt, …).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        /// Use the dev-mode defaults (as `tessera dev` does).
        #[arg(long)]
        dev: bool,
        /// Folder for the SQLite database and the server secret (overrides `data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Apply pending database migrations, then exit.
    Migrate {
        /// Use the dev-mode database location when no database URL is configured.
        #[arg(long)]
        dev: bool,
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
    List,
    Show { client_id: String },
}

#[derive(Subcommand, Clone)]
enum ConnectionsCmd {
    /// Prints the connection's settings as JSON.
    Show { name: String },
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

#[derive(Subcommand, Clone, Copy)]
enum KeysCmd {
    /// The published keys (the current one signs; the previous one still verifies).
    List,
    /// Make a new current key; the current one becomes the previous, the previous one retires.
    Rotate,
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
        Cmd::Connections { cmd, dev, data_dir } => {
            override_paths(&mut cfg, None, data_dir);
            (dev, Action::Connections(cmd))
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
            limit,
            kind,
            json,
            dev,
            data_dir,
        } => {
            override_paths(&mut cfg, None, data_dir);
            (dev, Action::Logs { limit, kind, json })
        }
        Cmd::Templates { cmd, dev } => (dev, Action::Templates(cmd)),
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
                Action::Connections(ConnectionsCmd::Show { name }) => {
                    runtime.block_on(connection_show(settings, &name))
                }
                Action::Logs { limit, kind, json } => {
                    runtime.block_on(logs(settings, limit, kind, json))
                }
                Action::Templates(TemplatesCmd::Preview {
                    connection,
                    send,
                    lang,
                }) => preview(&settings, &connection, &send, lang.as_deref()),
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
        limit: i64,
        kind: Option<String>,
        json: bool,
    },
    Users(UsersCmd, bool),
    Apps(AppsCmd, bool),
    Connections(ConnectionsCmd),
}

/// `tessera apps list|show`: what the database holds (the configuration file's applications
/// are written there at every start). Secrets are stored as digests and never shown.
async fn apps(settings: Settings, cmd: AppsCmd, json: bool) -> anyhow::Result<()> {
    use tessera_core::rand::SystemRandom;
    let (store, _) = tessera_server::app::open_store(&settings, &SystemRandom).await?;
    match cmd {
        AppsCmd::List => {
            let list = store.list_clients().await?;
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
            let c = store
                .get_client(&client_id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no application {client_id}"))?;
            println!("{}", serde_json::to_string_pretty(&client_json(&c))?);
        }
    }
    Ok(())
}

async fn connection_show(settings: Settings, name: &str) -> anyhow::Result<()> {
    use tessera_core::rand::SystemRandom;
    let (store, _) = tessera_server::app::open_store(&settings, &SystemRandom).await?;
    let c = store
        .get_connection(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no connection {name}"))?;
    let mut v = serde_json::to_value(&c.settings)?;
    v["name"] = serde_json::json!(c.name);
    v["strategy"] = serde_json::json!(c.strategy.as_str());
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn cli_event(user_id: &str, description: &str, now: i64) -> tessera_store::Event {
    tessera_store::Event {
        id: tessera_core::rand::hex_id(&tessera_core::rand::SystemRandom),
        at: now,
        kind: "sapi".into(),
        client_id: None,
        connection: None,
        user_id: Some(user_id.to_string()),
        ip: None,
        user_agent: None,
        description: description.into(),
    }
}

async fn set_blocked(
    store: &dyn tessera_store::Store,
    user_id: &str,
    blocked: bool,
    json: bool,
    now: i64,
) -> anyhow::Result<()> {
    if !store.set_user_blocked(user_id, blocked, now).await? {
        anyhow::bail!("no user {user_id}");
    }
    let what = if blocked {
        "User blocked (CLI)"
    } else {
        "User unblocked (CLI)"
    };
    store.record_event(&cli_event(user_id, what, now)).await?;
    if !json {
        println!(
            "{}: {user_id}",
            if blocked { "blocked" } else { "unblocked" }
        );
    }
    Ok(())
}

/// `tessera users …`: works on the database; every change is an audit event.
async fn users(settings: Settings, cmd: UsersCmd, json: bool) -> anyhow::Result<()> {
    use tessera_core::clock::{Clock, SystemClock};
    use tessera_core::rand::SystemRandom;
    let (store, _) = tessera_server::app::open_store(&settings, &SystemRandom).await?;
    let now = SystemClock.now();
    match cmd {
        UsersCmd::List { search, limit } => {
            let q = search.unwrap_or_default().trim().to_lowercase();
            let list = store.list_users(&q, limit.clamp(1, 10_000)).await?;
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
            let u = store
                .get_user(&user_id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user {user_id}"))?;
            println!("{}", serde_json::to_string_pretty(&user_json(&u))?);
        }
        UsersCmd::Block { user_id } => {
            set_blocked(store.as_ref(), &user_id, true, json, now).await?
        }
        UsersCmd::Unblock { user_id } => {
            set_blocked(store.as_ref(), &user_id, false, json, now).await?
        }
        UsersCmd::Delete { user_id, yes } => {
            if !yes {
                anyhow::bail!("deleting {user_id} cannot be undone: add --yes");
            }
            if !store.delete_user(&user_id).await? {
                anyhow::bail!("no user {user_id}");
            }
            store
                .record_event(&cli_event(&user_id, "User deleted (CLI)", now))
                .await?;
            if !json {
                println!("deleted: {user_id}");
            }
        }
    }
    Ok(())
}

/// Prints the audit log (codes, tokens and secrets are never in it).
async fn logs(
    settings: Settings,
    limit: i64,
    kind: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    use tessera_core::rand::SystemRandom;
    let (store, _) = tessera_server::app::open_store(&settings, &SystemRandom).await?;
    // Filtering happens here, so ask for more than shown when a type is given.
    let fetch = if kind.is_some() {
        limit.saturating_mul(20)
    } else {
        limit
    };
    let events: Vec<_> = store
        .list_events(fetch.clamp(1, 100_000))
        .await?
        .into_iter()
        .filter(|e| kind.as_ref().is_none_or(|k| &e.kind == k))
        .take(limit.max(0) as usize)
        .collect();
    let clean = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    for e in &events {
        if json {
            println!(
                "{}",
                serde_json::json!({"id": e.id, "date": tessera_core::clock::rfc3339(e.at), "type": e.kind,
                    "client_id": e.client_id, "connection": e.connection, "user_id": e.user_id,
                    "ip": e.ip, "user_agent": e.user_agent, "description": e.description})
            );
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
    Ok(())
}

/// The same rendering `/passwordless/start` uses, with sample values.
fn preview(
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
    let vars = templates::EmailVars {
        tenant: settings.tenant.clone(),
        lifetime_minutes: (settings.email_connection.code_lifetime_secs + 59) / 60,
        ..templates::sample_vars(send, lang)
    };
    let template = settings.email_connection.email_template.as_ref();
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
    use tessera_core::clock::{Clock, SystemClock};
    use tessera_core::rand::SystemRandom;
    let (store, secret) = tessera_server::app::open_store(&settings, &SystemRandom).await?;
    if let KeysCmd::Rotate = cmd {
        let now = SystemClock.now();
        let ring = tessera_server::keys::KeyRing::load(store.as_ref(), &secret, &SystemRandom, now)
            .await?;
        let kid = ring
            .rotate(store.as_ref(), &secret, &SystemRandom, now)
            .await?;
        if !json {
            println!("rotated: the new current key is {kid}");
        }
    }
    let keys = store.signing_keys().await?;
    if json {
        let rows: Vec<_> = keys
            .iter()
            .map(|k| serde_json::json!({"kid": k.kid, "alg": k.alg, "status": k.status.as_str(), "created_at": tessera_core::clock::rfc3339(k.created_at)}))
            .collect();
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
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| log.level.clone())
        .unwrap_or_else(|| "info,sqlx=warn".to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if log.format.as_deref() == Some("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("tessera: error: {msg}");
    ExitCode::from(2)
}
