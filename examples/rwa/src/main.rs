//! An example regular web app that signs its users in through Tessera.
//!
//! It is an ordinary client of Tessera's Auth0-compatible API, written the way a customer app
//! would be: it knows Tessera's base URL and its own client id and secret, and nothing else.
//! Three ways in, each ending at `/callback` with an authorization code:
//!
//! - `/login`: Tessera's hosted login page (`/authorize`), with PKCE;
//! - `/lock`: the Lock passwordless widget (`Auth0LockPasswordless`), code or magic link;
//! - `/custom`: a page of our own driving auth0-js (`passwordlessStart`/`passwordlessLogin`).
//!
//! `/callback` exchanges the code at `/oauth/token` and checks the id_token against Tessera's
//! JWKS before it keeps anything in the (in-memory, server-side) session.

mod oidc;
mod pages;
mod routes;
mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use url::Url;

/// The command line. Every option can also come from the environment variable it names.
#[derive(Debug, Parser)]
#[command(
    name = "tessera-example",
    version,
    about = "An example web app that signs in with Tessera"
)]
struct Args {
    /// Tessera's base URL (its issuer), e.g. http://localhost:3000.
    #[arg(long, env = "RWA_TESSERA")]
    tessera: String,
    /// This app's client_id at Tessera.
    #[arg(long, env = "RWA_CLIENT_ID")]
    client_id: String,
    /// This app's client_secret at Tessera.
    #[arg(long, env = "RWA_CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    /// The address to listen on.
    #[arg(long, env = "RWA_LISTEN", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// The URL the browser uses to reach this app; the callback is {public-url}/callback.
    #[arg(long, env = "RWA_PUBLIC_URL", default_value = "http://localhost:5000")]
    public_url: String,
    /// A folder holding node_modules with auth0-lock and auth0-js, served under /vendor/.
    #[arg(long, env = "RWA_VENDOR_DIR")]
    vendor_dir: Option<PathBuf>,
}

/// What every handler needs, built once from [`Args`].
pub struct AppConfig {
    /// Tessera's base URL without a trailing slash, e.g. `http://localhost:3000`.
    pub tessera: String,
    /// Tessera's origin (scheme://host[:port]), for the Content-Security-Policy.
    pub tessera_origin: String,
    /// The `iss` Tessera's tokens carry: the base URL with a trailing slash.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// This app's public base URL without a trailing slash.
    pub public_url: String,
    pub redirect_uri: String,
    /// Cookies get `Secure` when the app is served over https.
    pub secure_cookies: bool,
    pub vendor_dir: Option<PathBuf>,
}

impl AppConfig {
    fn from_args(args: Args) -> anyhow::Result<Self> {
        let tessera = base_url(&args.tessera).context("--tessera")?;
        let public_url = base_url(&args.public_url).context("--public-url")?;
        let tessera_origin = Url::parse(&tessera)?.origin().ascii_serialization();
        Ok(Self {
            issuer: format!("{tessera}/"),
            redirect_uri: format!("{public_url}/callback"),
            secure_cookies: public_url.starts_with("https://"),
            tessera_origin,
            tessera,
            public_url,
            client_id: args.client_id,
            client_secret: args.client_secret,
            vendor_dir: args.vendor_dir,
        })
    }
}

/// Checks that `raw` is an absolute http(s) URL and returns it without its trailing slash.
fn base_url(raw: &str) -> anyhow::Result<String> {
    let url = Url::parse(raw).with_context(|| format!("not a URL: {raw}"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https"),
        "{raw}: only http and https URLs are supported"
    );
    anyhow::ensure!(
        url.query().is_none() && url.fragment().is_none(),
        "{raw}: a base URL takes no query or fragment"
    );
    Ok(raw.trim_end_matches('/').to_string())
}

/// Runs the app; a start-up failure prints `tessera-example: error: …` and exits with status 2.
fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(serve(args)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera-example: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listen = args.listen;
    let config = AppConfig::from_args(args)?;
    if let Some(dir) = &config.vendor_dir
        && !dir.join("node_modules").is_dir()
    {
        tracing::warn!(dir = %dir.display(), "--vendor-dir has no node_modules folder");
    }
    let state = routes::AppState::new(config)?;
    let app = routes::router(Arc::new(state));

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, "tessera-example is listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_lose_their_trailing_slash() {
        assert_eq!(
            base_url("http://localhost:3000/").unwrap(),
            "http://localhost:3000"
        );
        assert_eq!(
            base_url("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("http://x/?a=b").is_err());
    }
}
