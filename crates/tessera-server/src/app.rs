//! Building and running a Tessera server: settings in, router and background tasks out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use tessera_core::clock::{Clock, SystemClock};
use tessera_core::connection::{Connection, Strategy};
use tessera_core::crypto::ServerSecret;
use tessera_core::rand::{Random, SystemRandom, hex_id};
use tessera_delivery::outbox::{Worker, WorkerOptions};

use tessera_delivery::smtp::SmtpMailer;
use tessera_delivery::{DevMailbox, Mailer, SmsProvider, SmsSender};
use tokio::sync::{Notify, watch};

use crate::error::ApiError;
use crate::keys::KeyRing;
use crate::limits::OncePerSecond;
use crate::routes;
use crate::settings::{EmailTransport, SecretSource, Settings};
use crate::state::{AppState, Inner};

/// A built server: its state, and the outbox worker to run beside it.
pub struct Tessera {
    pub state: AppState,
    pub worker: Arc<Worker>,
}

/// Opens the store (migrated) and the server secret: what the CLI needs to work on the data.
pub async fn open_store(
    s: &Settings,
    rng: &dyn Random,
) -> anyhow::Result<(Arc<dyn tessera_store::Store>, ServerSecret)> {
    prepare_sqlite_dir(&s.database_url)?;
    let secret = ServerSecret::new(&load_secret(&s.secret, rng)?)?;
    let store = tessera_store::open(&s.database_url, &s.pool).await?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("database migration failed: {e}"))?;
    Ok((store, secret))
}

/// Opens the store (migrating it), applies the configuration's bootstrap state, loads keys.
pub async fn build(
    s: &Settings,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Random>,
) -> anyhow::Result<Tessera> {
    prepare_sqlite_dir(&s.database_url)?;
    let secret = ServerSecret::new(&load_secret(&s.secret, rng.as_ref())?)?;
    let store = tessera_store::open(&s.database_url, &s.pool).await?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("database migration failed: {e}"))?;
    let now = clock.now();
    let email = Connection {
        name: "email".into(),
        strategy: Strategy::Email,
        settings: s.email_connection.clone(),
    };
    let mut connections = vec![email];
    if let Some((settings, _)) = &s.sms_connection {
        connections.push(Connection {
            name: "sms".into(),
            strategy: Strategy::Sms,
            settings: settings.clone(),
        });
    }
    // The file is declarative bootstrap: an entry is written when the file's version of it is
    // new or changed since the last start; otherwise the database (edited in the dashboard, the
    // Management API or the CLI) wins. README: "When the file and the dashboard disagree".
    for c in &connections {
        let hash = file_hash(&[
            c.strategy.as_str().as_bytes(),
            &serde_json::to_vec(&c.settings)?,
        ]);
        if store.bootstrap_connection(c, &hash, now).await? {
            tracing::info!(connection = %c.name, "applied the configuration file's connection settings");
        }
    }
    for c in &s.clients {
        let secret = c.secret_hash.as_deref().unwrap_or_default();
        let hash = file_hash(&[secret, &serde_json::to_vec(&c.settings)?]);
        if store.bootstrap_client(c, &hash, now).await? {
            tracing::info!(client_id = %c.client_id, "applied the configuration file's application settings");
        }
    }
    if !s.admin_emails.is_empty() {
        store
            .upsert_client(&crate::admin::dashboard_client(&s.issuer), now)
            .await?;
    }
    let keys = KeyRing::load(store.as_ref(), &secret, rng.as_ref(), now).await?;
    let mailer = Arc::new(match &s.email {
        EmailTransport::Smtp(cfg) => {
            // The outbox runs up to `batch` deliveries at once: keep as many connections.
            Mailer::Smtp(
                SmtpMailer::new(cfg.clone())
                    .map_err(anyhow::Error::msg)?
                    .keep_idle(s.outbox.batch as usize),
            )
        }
        EmailTransport::DevMailbox => Mailer::Dev(DevMailbox::default()),
    });
    let sms = Arc::new(
        SmsSender::new(
            match (&s.sms_provider, mailer.dev_mailbox()) {
                (Some(p), _) => p.clone(),
                (None, Some(dev)) => SmsProvider::Dev(dev.clone()),
                (None, None) => SmsProvider::None,
            },
            s.sms_timeout,
        )
        .map_err(anyhow::Error::msg)?,
    );
    let wake = Arc::new(Notify::new());
    let worker = Arc::new(Worker {
        store: Arc::clone(&store),
        secret: secret.clone(),
        mailer: Arc::clone(&mailer),
        sms: Arc::clone(&sms),
        clock: Arc::clone(&clock),
        rng: Arc::clone(&rng),
        owner: format!("node-{}", hex_id(rng.as_ref())),
        wake: Arc::clone(&wake),
        options: WorkerOptions {
            batch: s.outbox.batch,
            lease_secs: s.outbox.lease_secs,
            max_attempts: s.outbox.max_attempts,
            poll_interval: Duration::from_millis(s.outbox.poll_interval_ms),
            base_backoff_secs: s.outbox.base_backoff_secs,
        },
    });
    let state = AppState(Arc::new(Inner {
        store,
        secret,
        keys,
        clock,
        rng,
        issuer: s.issuer.clone(),
        tokens: s.tokens.clone(),
        rate_limits: s.rate_limits.clone(),
        trusted_proxies: s.trusted_proxies.clone(),
        apis: s.apis.clone(),
        mailer,
        outbox_wake: wake,
        outbox_handoff: Default::default(),
        config: Default::default(),
        email_from: s.email_from.clone(),
        sms: s.sms_connection.as_ref().map(|(_, o)| o.clone()),
        tenant: s.tenant.clone(),
        dev: s.dev,
        metrics: Default::default(),
        admins: s.admin_emails.clone(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(s.http.max_in_flight)),
        health_in_flight: Arc::new(tokio::sync::Semaphore::new(HEALTH_IN_FLIGHT)),
        request_timeout: Duration::from_secs(s.http.request_timeout_secs),
    }));
    Ok(Tessera { state, worker })
}

/// A digest of an entry's version in the configuration file.
fn file_hash(parts: &[&[u8]]) -> String {
    let joined: Vec<String> = parts.iter().map(hex::encode).collect();
    hex::encode(tessera_core::crypto::sha256(&joined.join(".")))
}

/// The HTTP surface.
pub fn router(state: AppState) -> Router {
    // HSTS binds a host name on every port: never for localhost or a loopback address, where
    // it would force the developer's other local apps onto https too.
    let hsts = state.issuer.starts_with("https://")
        && url::Url::parse(&state.issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .is_some_and(|h| !crate::config::is_loopback_host(&h));
    let st2 = state.clone();
    // Endpoints browser SDKs call from the application's origin.
    let cors = Router::new()
        .route(
            "/passwordless/start",
            post(routes::passwordless::start).get(routes::legacy::jsonp),
        )
        .route(
            "/passwordless/verify",
            post(routes::verify::verify).get(routes::legacy::jsonp),
        )
        .route(
            "/oauth/ro",
            post(routes::legacy::oauth_ro).get(routes::legacy::jsonp),
        )
        .route(
            "/tokeninfo",
            post(routes::legacy::tokeninfo).get(routes::legacy::jsonp),
        )
        .route("/oauth/token", post(routes::token::token))
        .route(
            "/userinfo",
            get(routes::userinfo::userinfo).post(routes::userinfo::userinfo),
        )
        .route("/co/authenticate", post(routes::co::authenticate))
        .route("/user/geoloc/country", get(routes::co::geoloc_country))
        .route(
            "/passwordless/challenge",
            post(routes::co::passwordless_challenge),
        )
        .route(
            "/usernamepassword/challenge",
            post(routes::co::passwordless_challenge),
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            routes::co::cors,
        ));
    let mut r = Router::new()
        .merge(cors)
        .merge(routes::management::router())
        .merge(crate::admin::router(state.clone()))
        .route("/authorize", get(routes::authorize::authorize))
        .route("/login/start", post(routes::authorize::login_start))
        .route("/login/verify", post(routes::authorize::login_verify))
        .route("/v2/logout", get(routes::authorize::logout))
        .route("/oidc/logout", get(routes::authorize::logout))
        .route(
            "/passwordless/verify_redirect",
            get(routes::verify::verify_redirect).post(routes::verify::verify_redirect),
        )
        .route("/client/{file}", get(routes::co::client_js))
        .route("/static/webotp.js", get(webotp_js))
        .route(
            "/.well-known/openid-configuration",
            get(routes::discovery::openid_configuration),
        )
        .route("/.well-known/jwks.json", get(routes::discovery::jwks))
        .route("/health", get(routes::discovery::health))
        .route("/openapi.json", get(routes::discovery::openapi));
    if state.dev {
        r = r
            .route("/_dev/mailbox", get(routes::dev::mailbox_html))
            .route("/_dev/mailbox.json", get(routes::dev::mailbox_json));
    }
    r.fallback(not_found)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(middleware::from_fn_with_state(state.clone(), bounded))
        .layer(middleware::from_fn_with_state(st2, move |s, req, next| {
            observe(s, hsts, req, next)
        }))
        .with_state(state)
}

/// How many connections the kernel holds for Tessera before they are accepted (capped by
/// `net.core.somaxconn`). tokio's `TcpListener::bind` asks for 128, as the standard library
/// does: in a burst of new connections larger than that (a load balancer's pool opening again,
/// clients after a pause, the bench's open loop after a stall), the SYNs past it are dropped,
/// and each of those clients tries again only after a second.
const LISTEN_BACKLOG: u32 = 1024;

/// Listens on `addr` (`host:port`; the first of its addresses that binds) as tokio's
/// `TcpListener::bind` does (`SO_REUSEADDR`, so that a restart can take the port while the
/// last run's connections are in TIME_WAIT), with a backlog of [`LISTEN_BACKLOG`].
async fn listen(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        let bound = socket
            .set_reuseaddr(true)
            .and_then(|()| socket.bind(a))
            .and_then(|()| socket.listen(LISTEN_BACKLOG));
        match bound {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}

/// `GET /metrics`, for the metrics listener only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(st): axum::extract::State<AppState>| async move {
                    let depth = st.store.outbox_depth().await.ok();
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        st.metrics.render(depth),
                    )
                },
            ),
        )
        .with_state(state)
}

/// The hosted code page's WebOTP helper (the page's CSP allows scripts from 'self' only).
async fn webotp_js() -> Response {
    let mut r = axum::response::IntoResponse::into_response((
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("routes/webotp.js"),
    ));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "Not found")
}

/// `GET /health`'s own places: a node whose `[http] max_in_flight` places are all taken is
/// busy, not dead, and a liveness probe must not see it as dead and restart it; nor may a
/// flood of health checks take more than these.
const HEALTH_IN_FLIGHT: usize = 32;

/// Sheds what is beyond `[http] max_in_flight` at once (`/health` beyond its own
/// [`HEALTH_IN_FLIGHT`]), and gives up a request that takes longer than `[http]
/// request_timeout_secs` (a slow body included). Both answer `503 temporarily_unavailable`
/// with `Retry-After: 1`, and the request is logged and counted by [`observe`] like any other.
/// A handler given up is dropped where it waits: what it handed to the store's writer still
/// runs to its end, as when a client goes away.
async fn bounded(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let places = if req.uri().path() == "/health" {
        &st.health_in_flight
    } else {
        &st.in_flight
    };
    // Under a flood these come by the thousand a second: one warning a second says so (with
    // how many it stands for), and `observe` still logs and counts each request.
    static REFUSED: OncePerSecond = OncePerSecond::new();
    static GIVEN_UP: OncePerSecond = OncePerSecond::new();
    let Ok(_place) = places.clone().try_acquire_owned() else {
        if let Some(more) = REFUSED.due() {
            tracing::warn!(
                refused_since_last_warning = more,
                "request refused: [http] max_in_flight requests are already running"
            );
        }
        return retry_soon(ApiError::unavailable());
    };
    match tokio::time::timeout(st.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            if let Some(more) = GIVEN_UP.due() {
                tracing::warn!(
                    given_up_since_last_warning = more,
                    "request given up after [http] request_timeout_secs"
                );
            }
            retry_soon(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "The request took too long. Please try again shortly.",
            ))
        }
    }
}

fn retry_soon(e: ApiError) -> Response {
    let mut r = axum::response::IntoResponse::into_response(e);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Logs each request (path only: query strings may carry codes) and sets security headers.
async fn observe(
    axum::extract::State(st): axum::extract::State<AppState>,
    hsts: bool,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The route pattern (`/client/{file}`), never the raw path: bounded label values.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    // A request id: the caller's when it is sane, else a new one; in the log and the answer.
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_string)
        .unwrap_or_else(|| hex_id(&SystemRandom));
    let started = Instant::now();
    let mut resp = next.run(req).await;
    let framable = resp
        .extensions()
        .get::<crate::authz::AllowFraming>()
        .is_some();
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if !framable {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ));
    st.metrics.request(
        method.as_str(),
        &route,
        resp.status().as_u16(),
        started.elapsed(),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    tracing::info!(
        %method,
        path = %path,
        request_id = %request_id,
        status = resp.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    resp
}

/// Runs Tessera until SIGINT or SIGTERM.
pub async fn serve(s: Settings) -> anyhow::Result<()> {
    // The certificate is checked before anything listens: a bad one stops the start at once.
    let tls_config = match &s.tls {
        Some(tls) => {
            if tls.self_signed {
                crate::tls::ensure_self_signed(&tls.cert_file, &tls.key_file)
                    .map_err(anyhow::Error::msg)?;
            }
            Some(
                crate::tls::server_config(&tls.cert_file, &tls.key_file)
                    .map_err(anyhow::Error::msg)?,
            )
        }
        None => None,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let rng: Arc<dyn Random> = Arc::new(SystemRandom);
    let t = build(&s, clock, rng).await?;
    let listener = listen(&s.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", s.listen))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (worker, handoff) = Arc::clone(&t.worker).spawn(stop_rx.clone());
    let _ = t.state.outbox_handoff.set(handoff);
    tokio::spawn(maintenance(t.state.clone(), stop_rx.clone()));
    if let Mailer::Smtp(m) = t.state.mailer.as_ref() {
        let (host, port) = (m.settings().host.clone(), m.settings().port);
        let state = t.state.clone();
        tokio::spawn(async move {
            if let Mailer::Smtp(m) = state.mailer.as_ref() {
                match m.check().await {
                    Ok(()) => tracing::info!(%host, port, "SMTP server reachable"),
                    Err(e) => tracing::error!(%host, port, error = %e,
                        "SMTP server check failed: mail is queued and retried until it works"),
                }
            }
        });
    }
    tracing::info!(%addr, issuer = %s.issuer, database = t.state.store.backend(), dev = s.dev, "Tessera is listening");
    if s.admin_emails.is_empty() {
        tracing::info!("the dashboard (/admin) is off: no [admin] emails are configured");
    } else {
        tracing::info!(
            administrators = s.admin_emails.len(),
            "the dashboard is at /admin"
        );
    }
    if let Some(d) = &s.demo_app {
        println!(
            "\nTessera dev server on {}://{addr}  (issuer {})",
            if s.tls.is_some() { "https" } else { "http" },
            s.issuer
        );
        println!("  dev mailbox:    {}_dev/mailbox", s.issuer);
        println!(
            "  dashboard:      {}admin  (administrators: {})",
            s.issuer,
            s.admin_emails.join(", ")
        );
        println!("  demo app:       client_id     = {}", d.client_id);
        println!("                  client_secret = {}", d.client_secret);
        println!("                  callback      = {}", d.callback);
        println!("  data folder:    {}\n", s.data_dir.display());
    }
    if let Some(addr) = &s.metrics_listen {
        let l = listen(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (metrics): {e}"))?;
        tracing::info!(%addr, "metrics at /metrics");
        let metrics = metrics_router(t.state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, metrics).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    let app = router(t.state.clone());
    match &s.tls {
        None => {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?
        }
        Some(tls) => {
            let config = tls_config.ok_or_else(|| anyhow::anyhow!("TLS configuration missing"))?;
            if let Some(plain) = &tls.redirect_http_listen {
                let l = listen(plain)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {plain}: {e}"))?;
                tracing::info!(addr = %plain, "redirecting plain HTTP to the issuer");
                let redirect = crate::tls::redirect_router(s.issuer.clone());
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(l, redirect).await {
                        tracing::error!(error = %e, "the HTTP redirect listener stopped");
                    }
                });
            }
            let tls_listener = crate::tls::TlsListener::new(listener, config)?;
            let app = app.into_make_service_with_connect_info::<crate::tls::PeerAddr>();
            axum::serve(tls_listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), worker).await;
    Ok(())
}

/// Purges expired rows and picks up keys rotated by other nodes.
async fn maintenance(st: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut rounds: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        rounds += 1;
        match st.store.outbox_depth().await {
            Ok(0) => {}
            Ok(depth) => tracing::info!(depth, "outbox depth: messages waiting for delivery"),
            Err(e) => tracing::warn!(error = %e, "could not read the outbox depth"),
        }
        if let Err(e) = st.keys.refresh(st.store.as_ref(), &st.secret).await {
            tracing::warn!(error = %e, "could not refresh signing keys");
        }
        if rounds.is_multiple_of(6) {
            match st.store.purge_expired(st.now()).await {
                Ok(n) if n > 0 => tracing::debug!(rows = n, "purged expired codes and tokens"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purge failed"),
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

fn prepare_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(());
    };
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            anyhow::anyhow!("cannot create the data folder {}: {e}", parent.display())
        })?;
    }
    Ok(())
}

/// The configured secret, or the one in the data folder (created at first start).
fn load_secret(src: &SecretSource, rng: &dyn Random) -> anyhow::Result<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let path = match src {
        SecretSource::Configured(b) => return Ok(b.clone()),
        SecretSource::File(p) => p,
    };
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes);
        // Another process may win the race to create it; then we read theirs.
        if crate::files::write_private(path, b64.encode(bytes).as_bytes()).is_ok() {
            tracing::info!(path = %path.display(), "generated a new server secret");
        }
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the server secret {}: {e}", path.display()))?;
    b64.decode(text.trim())
        .map_err(|_| anyhow::anyhow!("the server secret {} is not base64", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// A burst of new connections larger than tokio's default backlog (128) waits in the
    /// kernel's queue while nothing accepts them: none has its SYN dropped (which would hold
    /// it a second, until the client sends it again).
    #[tokio::test]
    async fn the_listener_holds_a_burst_of_connections() {
        let l = super::listen("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut held = Vec::new();
        for n in 0..600 {
            let c = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(addr),
            )
            .await;
            match c {
                Ok(Ok(c)) => held.push(c),
                other => panic!("connection {n} not queued: {other:?}"),
            }
        }
        assert!(
            super::listen(&addr.to_string()).await.is_err(),
            "the port is taken"
        );
        drop(l);
    }
}
