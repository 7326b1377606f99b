//! HTTPS served by Tessera itself (rustls), for operators who want no reverse proxy and for
//! the old widgets that hard-code `https://`. Optional: a plain-HTTP listener that redirects
//! to the issuer, and, in dev mode, a self-signed certificate made on first start.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Reads a PEM certificate chain and private key into a rustls server configuration.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("tls.cert_file {}: {e}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert_file {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.cert_file {}: no certificate in it",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("tls.key_file {}: {e}", key_file.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!("tls: the key does not fit the certificate, or is unsupported: {e}")
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Makes a self-signed certificate for `localhost` (dev mode), unless one is there already.
pub fn ensure_self_signed(cert_file: &Path, key_file: &Path) -> Result<(), String> {
    if cert_file.exists() && key_file.exists() {
        return Ok(());
    }
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("self-signed certificate: {e}"))?;
    if let Some(dir) = cert_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // Each written whole (`files`), the key first: a certificate that is there has its key.
    crate::files::replace(key_file, signing_key.serialize_pem().as_bytes(), true)?;
    crate::files::replace(cert_file, cert.pem().as_bytes(), false)?;
    tracing::info!(cert = %cert_file.display(), "made a self-signed certificate for localhost (dev mode)");
    Ok(())
}

/// Concurrent TLS handshakes per listener.
const MAX_HANDSHAKES: usize = 512;

/// A TLS listener for `axum::serve`: TCP accepts feed handshakes that run concurrently (a
/// slow or silent client cannot hold up the others), bounded by a timeout.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(
        tcp: TcpListener,
        config: Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, rx) = mpsc::channel(64);
        // At most this many handshakes at once: a flood of half-open connections waits for a
        // slot instead of taking memory without bound.
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The client's address on a TLS connection (what `ConnectInfo<SocketAddr>` is on plain TCP).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// The plain-HTTP listener's only answer: a permanent redirect to the same path on the issuer.
pub fn redirect_router(issuer: String) -> axum::Router {
    use axum::http::{HeaderValue, StatusCode, Uri, header};
    use axum::response::IntoResponse;
    let base = issuer.trim_end_matches('/').to_string();
    axum::Router::new().fallback(move |uri: Uri| {
        let base = base.clone();
        async move {
            let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut r = StatusCode::PERMANENT_REDIRECT.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("{base}{pq}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
    })
}
