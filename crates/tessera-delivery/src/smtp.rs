//! SMTP through lettre: URL parsing, TLS modes, our own connections (with `TCP_NODELAY`),
//! and error classification.
//!
//! `smtp://[user:pass@]host[:port][?tls=required|opportunistic|none]` uses STARTTLS (required
//! unless told otherwise, port 587 by default); `smtps://` uses implicit TLS (port 465).
//! Plain SMTP (`tls=none`) is accepted only for loopback hosts, so credentials and codes never
//! cross a network in clear text.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::Message;
use lettre::address::Envelope;
pub use lettre::message::dkim::DkimSigningAlgorithm;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningKey,
};
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::mailer::DeliveryError;
use crate::message::EmailMessage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS, and refuse to send if the server does not offer it.
    Required,
    /// STARTTLS when offered.
    Opportunistic,
    /// TLS from the first byte (`smtps://`).
    Implicit,
    /// No TLS: loopback only.
    None,
}

#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout: Duration,
    /// Sign outgoing mail with DKIM.
    pub dkim: Option<DkimSettings>,
    /// Extra trusted root certificates (PEM), for relays with a private CA.
    pub ca_pem: Option<Vec<u8>>,
}

/// A DKIM signing key: RSA as PKCS#1 PEM, or Ed25519 as the base64 of its 32-byte seed.
#[derive(Clone)]
pub struct DkimSettings {
    pub domain: String,
    pub selector: String,
    pub algorithm: DkimSigningAlgorithm,
    pub private_key: String,
}

impl DkimSettings {
    /// Checks the key and builds lettre's signing configuration.
    pub fn config(&self) -> Result<DkimConfig, String> {
        let key = DkimSigningKey::new(self.private_key.trim(), self.algorithm)
            .map_err(|e| format!("DKIM private key: {e} (RSA keys must be PKCS#1 PEM, \"BEGIN RSA PRIVATE KEY\"; Ed25519 keys the base64 of the 32-byte seed)"))?;
        // relaxed/relaxed: what most signers use; it survives harmless re-folding in transit.
        let headers = ["From", "To", "Subject", "Date", "Message-ID"]
            .map(HeaderName::new_from_ascii_str)
            .to_vec();
        let canonicalization = DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        };
        Ok(DkimConfig::new(
            self.selector.clone(),
            self.domain.clone(),
            key,
            headers,
            canonicalization,
        ))
    }
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "dkim",
                &self
                    .dkim
                    .as_ref()
                    .map(|d| format!("{} {}._domainkey.{}", d.algorithm, d.selector, d.domain)),
            )
            .finish()
    }
}

impl SmtpSettings {
    pub fn from_url(raw: &str, timeout: Duration) -> Result<SmtpSettings, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("invalid SMTP URL: {e}"))?;
        let host = url
            .host_str()
            .ok_or("the SMTP URL has no host")?
            .to_string();
        let mut tls = match url.scheme() {
            "smtp" => TlsMode::Required,
            "smtps" => TlsMode::Implicit,
            s => {
                return Err(format!(
                    "the SMTP URL scheme must be smtp or smtps, not {s:?}"
                ));
            }
        };
        for (k, v) in url.query_pairs() {
            match (k.as_ref(), v.as_ref()) {
                ("tls", "required") if tls != TlsMode::Implicit => tls = TlsMode::Required,
                ("tls", "opportunistic") if tls != TlsMode::Implicit => {
                    tls = TlsMode::Opportunistic
                }
                ("tls", "none") if tls != TlsMode::Implicit => tls = TlsMode::None,
                ("tls", v) => {
                    return Err(format!("unsupported SMTP tls mode {v:?} for this scheme"));
                }
                (k, _) => return Err(format!("unknown SMTP URL parameter {k:?}")),
            }
        }
        if tls == TlsMode::None && !is_loopback(&host) {
            return Err(format!(
                "plain SMTP (tls=none) is only allowed to a loopback host, not {host:?}: use STARTTLS or smtps://"
            ));
        }
        let port = url
            .port()
            .unwrap_or(if tls == TlsMode::Implicit { 465 } else { 587 });
        let username = (!url.username().is_empty()).then(|| percent_decode(url.username()));
        let password = url.password().map(percent_decode);
        Ok(SmtpSettings {
            host,
            port,
            tls,
            username,
            password,
            timeout,
            dkim: None,
            ca_pem: None,
        })
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Sends mail over SMTP, keeping connections open between messages (up to [`MAX_IDLE`], or
/// what [`SmtpMailer::keep_idle`] says).
///
/// The connections are made here rather than by lettre's transport so that each socket gets
/// `TCP_NODELAY`: lettre writes a message and its final `.` in two writes, and with Nagle's
/// algorithm the second waits for the server to acknowledge the first. A server delays that
/// acknowledgement (Linux: 40 ms) because it has nothing to answer yet, so every message
/// cost 40 ms or more on a reused connection. lettre still speaks the protocol: greeting,
/// EHLO, STARTTLS, AUTH, and the transaction of a message that is not all ASCII.
///
/// The transaction of an ASCII message is ours ([`transact`]): with a server that offers
/// PIPELINING (RFC 2920) and CHUNKING (RFC 3030), `MAIL`, `RCPT` and `BDAT` with the message
/// go in one write, one round trip where lettre takes four; with PIPELINING alone, `MAIL`,
/// `RCPT` and `DATA` go in one write and the message with its final `.` in another.
pub struct SmtpMailer {
    settings: SmtpSettings,
    dkim: Option<DkimConfig>,
    /// For STARTTLS (lettre's own TLS upgrade).
    starttls: Option<TlsParameters>,
    /// For implicit TLS (`smtps://`), where the TLS session starts before SMTP does.
    implicit: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: Mutex<Vec<(Conn, Instant)>>,
    max_idle: usize,
}

/// An open SMTP connection, and whether its server offers PIPELINING and CHUNKING.
struct Conn {
    smtp: AsyncSmtpConnection,
    pipelining: bool,
    chunking: bool,
}

/// Whether `e` is the server's 421: it is closing the connection, and took nothing.
fn closing(e: &lettre::transport::smtp::Error) -> bool {
    e.status().map(u16::from) == Some(421)
}

/// Drops the kept connections idle for [`IDLE_FOR`] or longer. They are kept oldest first
/// (each goes back on top, and the newest is taken), so those are at the bottom, where after a
/// burst nothing would take them: left there, their sockets stay open, often half closed by
/// the server, and count against its limit of connections per client.
fn drop_expired<T>(idle: &mut Vec<(T, Instant)>, now: Instant) {
    let expired =
        idle.partition_point(|(_, since)| now.saturating_duration_since(*since) >= IDLE_FOR);
    idle.drain(..expired);
}

/// Open connections kept between messages unless [`SmtpMailer::keep_idle`] says otherwise,
/// and how long one may sit unused (servers close idle connections after a minute or more;
/// RFC 5321 §4.5.3.2.7 asks for at least 5 minutes).
pub const MAX_IDLE: usize = 16;
const IDLE_FOR: Duration = Duration::from_secs(50);

impl SmtpMailer {
    pub fn new(settings: SmtpSettings) -> Result<SmtpMailer, String> {
        let starttls = match settings.tls {
            TlsMode::Required | TlsMode::Opportunistic => {
                let mut b = TlsParameters::builder(settings.host.clone());
                if let Some(pem) = &settings.ca_pem {
                    let ca =
                        Certificate::from_pem(pem).map_err(|e| format!("email.ca_file: {e}"))?;
                    b = b.add_root_certificate(ca);
                }
                Some(b.build().map_err(|e| format!("SMTP TLS setup: {e}"))?)
            }
            TlsMode::Implicit | TlsMode::None => None,
        };
        let implicit = match settings.tls {
            TlsMode::Implicit => Some(implicit_tls(&settings)?),
            _ => None,
        };
        let credentials = match (&settings.username, &settings.password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.clone())),
            _ => None,
        };
        let dkim = settings
            .dkim
            .as_ref()
            .map(DkimSettings::config)
            .transpose()?;
        Ok(SmtpMailer {
            settings,
            dkim,
            starttls,
            implicit,
            credentials,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
            max_idle: MAX_IDLE,
        })
    }

    /// Keeps up to `n` connections open between messages. A sender that runs `n` deliveries
    /// at once (the outbox's batch) should keep `n`: with fewer, every message past the kept
    /// connections pays for a new one (TCP, greeting, EHLO twice) and its close.
    pub fn keep_idle(mut self, n: usize) -> SmtpMailer {
        self.max_idle = n.max(1);
        self
    }

    pub fn settings(&self) -> &SmtpSettings {
        &self.settings
    }

    /// Connects, greets and authenticates, to report a misconfiguration at start-up.
    pub async fn check(&self) -> Result<(), String> {
        let checked = async {
            let mut conn = self.connect().await?;
            if conn.smtp.test_connected().await {
                self.put_back(conn);
                Ok(())
            } else {
                Err(SendError::Net(
                    "the SMTP server did not accept the connection".into(),
                ))
            }
        };
        match tokio::time::timeout(self.deadline(), checked).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(redact_addresses(&e.to_string())),
            Err(_) => Err("the SMTP server did not answer in time".into()),
        }
    }

    /// An overall bound on one SMTP conversation. Connecting has its own timeout, but a
    /// server that goes silent mid-conversation must not stall a worker.
    fn deadline(&self) -> Duration {
        self.settings.timeout * 3
    }

    pub async fn send(&self, m: &EmailMessage) -> Result<(), DeliveryError> {
        let (envelope, body) = match &self.dkim {
            // lettre's signer signs a message of its builder.
            Some(d) => {
                let mut msg = build(m)?;
                msg.sign(d);
                (msg.envelope().clone(), msg.formatted())
            }
            None => crate::mime::compose(m)?,
        };
        let sent = tokio::time::timeout(self.deadline(), async {
            // A kept connection the server has closed meanwhile fails before anything is
            // accepted, or answers 421 (it is closing: an idle timeout, say; a message is
            // never accepted with a 421): then once more on a new one.
            if let Some(mut conn) = self.take_idle() {
                match transact(&mut conn, &envelope, &body).await {
                    Ok(()) => {
                        self.put_back(conn);
                        return Ok(());
                    }
                    Err(e) if closing(&e) => conn.smtp.abort().await,
                    // The server answered (4xx, 5xx): it is alive, and it has spoken.
                    Err(e) if e.is_permanent() || e.is_transient() => {
                        conn.smtp.abort().await;
                        return Err(SendError::Smtp(e));
                    }
                    Err(_) => conn.smtp.abort().await,
                }
            }
            // Boxed: connecting (TLS included) is most of the size of a send's future, and
            // a kept connection spares it; unboxed, every delivery's task would carry and
            // copy those 7 KB, connected or not.
            let mut conn = Box::pin(self.connect()).await?;
            match transact(&mut conn, &envelope, &body).await {
                Ok(()) => {
                    self.put_back(conn);
                    Ok(())
                }
                Err(e) => {
                    conn.smtp.abort().await;
                    Err(SendError::Smtp(e))
                }
            }
        })
        .await
        .map_err(|_| DeliveryError::Transient("the SMTP server did not answer in time".into()))?;
        sent.map_err(|e| {
            // Servers often quote the recipient in their answer; keep addresses out of logs.
            let text = redact_addresses(&e.to_string());
            if matches!(&e, SendError::Smtp(e) if e.is_permanent()) {
                DeliveryError::Permanent(text)
            } else {
                DeliveryError::Transient(text)
            }
        })
    }

    /// A new connection: TCP with `TCP_NODELAY`, TLS as configured, EHLO, and AUTH.
    async fn connect(&self) -> Result<Conn, SendError> {
        let addr = (self.settings.host.as_str(), self.settings.port);
        let net = |what: &str, e: std::io::Error| SendError::Net(format!("{what}: {e}"));
        let tcp = tokio::time::timeout(self.settings.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| SendError::Net("connection timed out".into()))?
            .map_err(|e| net("connection error", e))?;
        tcp.set_nodelay(true)
            .map_err(|e| net("connection error", e))?;
        let mut conn = match &self.implicit {
            Some((connector, name)) => {
                let tls = tokio::time::timeout(
                    self.settings.timeout,
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| SendError::Net("TLS handshake timed out".into()))?
                .map_err(|e| net("TLS error", e))?;
                AsyncSmtpConnection::connect_with_transport(Box::new(TlsTcp(tls)), &self.hello)
                    .await?
            }
            None => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?,
        };
        if let Some(params) = &self.starttls {
            match (self.settings.tls, conn.can_starttls()) {
                (_, true) => conn.starttls(params.clone(), &self.hello).await?,
                (TlsMode::Opportunistic, false) => {}
                _ => {
                    conn.abort().await;
                    return Err(SendError::Net(
                        "the SMTP server does not offer STARTTLS, which tls=required needs".into(),
                    ));
                }
            }
        }
        // lettre keeps only the extensions it uses from the EHLO answer; PIPELINING and
        // CHUNKING are not among them. So EHLO once more (after STARTTLS, whose EHLO is the
        // one that counts, and before AUTH) and read it here: one round trip per connection,
        // and connections are kept.
        let ehlo = conn.command(Ehlo::new(self.hello.clone())).await?;
        let pipelining = offers(ehlo.message(), "PIPELINING");
        let chunking = offers(ehlo.message(), "CHUNKING");
        if let Some(c) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, c).await?;
        }
        Ok(Conn {
            smtp: conn,
            pipelining,
            chunking,
        })
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < IDLE_FOR && !conn.smtp.has_broken() {
                return Some(conn);
            }
            // Dropped: the socket closes (a QUIT would mean waiting on the server here).
        }
        None
    }

    fn put_back(&self, conn: Conn) {
        if conn.smtp.has_broken() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        drop_expired(&mut idle, now);
        if idle.len() < self.max_idle {
            idle.push((conn, now));
        }
    }
}

/// Whether an EHLO answer's lines (the first names the server) offer `extension`.
fn offers<'a>(mut lines: impl Iterator<Item = &'a str>, extension: &str) -> bool {
    lines.next();
    lines.any(|l| {
        l.split_ascii_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case(extension))
    })
}

/// One mail transaction on an open connection: `MAIL`, one `RCPT` per recipient, then the
/// message after `DATA` or in `BDAT`. An error leaves the connection in no known state: the
/// caller aborts it.
///
/// A message lettre would send with the SMTPUTF8 or 8BITMIME parameters (an address or a body
/// that is not ASCII) goes through lettre's own transaction, which checks that the server
/// offers them. Ours sends no parameters, so it takes only ASCII.
///
/// With CHUNKING the message goes as it is, its size given, in one `BDAT … LAST` (RFC 3030
/// §2: no dot-stuffing, no `354` to wait for); with PIPELINING too, `MAIL`, the `RCPT`s and
/// the `BDAT` with its octets are one group in one write, and their answers are read in
/// order (RFC 3030 §4.2: a server that refused the recipients still reads the chunk and
/// refuses it). Without CHUNKING: with PIPELINING the three commands go in one write and
/// their answers are read in order (RFC 2920 §3.1: `DATA` ends the group); without it, each
/// waits for its answer; either way the message, dot-stuffed, and its final `.` go in one
/// write.
async fn transact(
    conn: &mut Conn,
    envelope: &Envelope,
    body: &[u8],
) -> Result<(), lettre::transport::smtp::Error> {
    let ascii = |a: &lettre::Address| AsRef::<str>::as_ref(a).is_ascii();
    let text = std::str::from_utf8(body).ok().filter(|t| {
        t.is_ascii() && envelope.from().is_none_or(ascii) && envelope.to().iter().all(ascii)
    });
    let Some(text) = text else {
        return Box::pin(conn.smtp.send(envelope, body)).await.map(|_| ());
    };
    let mail = Mail::new(envelope.from().cloned(), vec![]).to_string();
    let rcpts: Vec<String> = envelope
        .to()
        .iter()
        .map(|to| Rcpt::new(to.clone(), vec![]).to_string())
        .collect();
    // lettre's `command` writes any text and reads one answer (an error unless positive).
    if conn.chunking {
        // ASCII, so the size in octets is the text's length.
        let chunk = format!("BDAT {} LAST\r\n{text}", text.len());
        if conn.pipelining {
            conn.smtp
                .command(format!("{mail}{}{chunk}", rcpts.concat()))
                .await?;
            for _ in &rcpts {
                conn.smtp.read_response().await?;
            }
            conn.smtp.read_response().await?;
        } else {
            conn.smtp.command(mail).await?;
            for rcpt in rcpts {
                conn.smtp.command(rcpt).await?;
            }
            conn.smtp.command(chunk).await?;
        }
        return Ok(());
    }
    if conn.pipelining {
        let group = format!("{mail}{}{Data}", rcpts.concat());
        conn.smtp.command(group).await?;
        for _ in &rcpts {
            conn.smtp.read_response().await?;
        }
        conn.smtp.read_response().await?;
    } else {
        conn.smtp.command(mail).await?;
        for rcpt in rcpts {
            conn.smtp.command(rcpt).await?;
        }
        conn.smtp.command(Data).await?;
    }
    conn.smtp.command(dot_stuffed(body)).await?;
    Ok(())
}

/// The message as `DATA` carries it (RFC 5321 §4.5.2): a `.` that begins a line doubled, and
/// `CRLF . CRLF` at the end. The same transparency as lettre's own, which writes the end
/// apart. For ASCII bodies (each byte is its own `char`).
fn dot_stuffed(body: &[u8]) -> String {
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 8);
    let mut line_start = true;
    let mut after_cr = false;
    for &b in body {
        if b == b'.' && line_start {
            out.push('.');
        }
        out.push(char::from(b));
        line_start = after_cr && b == b'\n';
        after_cr = b == b'\r';
    }
    out.push_str("\r\n.\r\n");
    out
}

/// Why a conversation failed: the server's answer (or lettre's reading of it), or the network.
#[derive(Debug)]
enum SendError {
    Smtp(lettre::transport::smtp::Error),
    Net(String),
}

impl From<lettre::transport::smtp::Error> for SendError {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        SendError::Smtp(e)
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Smtp(e) => e.fmt(f),
            SendError::Net(e) => f.write_str(e),
        }
    }
}

/// The rustls client for implicit TLS: the public roots, plus the configured CA if any.
fn implicit_tls(
    settings: &SmtpSettings,
) -> Result<
    (
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    ),
    String,
> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = &settings.ca_pem {
        let mut added = 0;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("email.ca_file: {e}"))?;
            roots.add(cert).map_err(|e| format!("email.ca_file: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("email.ca_file: no certificate found".into());
        }
    }
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("SMTP TLS setup: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(settings.host.clone())
        .map_err(|e| format!("SMTP TLS setup: {e}"))?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

/// A TLS stream lettre can speak SMTP over.
#[derive(Debug)]
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for TlsTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A fixed-value header (RFC 3834 `Auto-Submitted`, Microsoft's `X-Auto-Response-Suppress`),
/// so that auto-responders and out-of-office replies leave our messages alone.
macro_rules! fixed_header {
    ($ty:ident, $name:literal, $value:literal) => {
        #[derive(Clone)]
        struct $ty;
        impl Header for $ty {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($name)
            }
            fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok($ty)
            }
            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), $value.to_string())
            }
        }
    };
}

fixed_header!(AutoSubmitted, "Auto-Submitted", "auto-generated");
fixed_header!(AutoResponseSuppress, "X-Auto-Response-Suppress", "All");

/// Replaces every word that contains an `@` (an address) with `<address>`.
pub fn redact_addresses(text: &str) -> String {
    text.split(' ')
        .map(|w| if w.contains('@') { "<address>" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Builds the MIME message with lettre's builder: multipart/alternative with text and HTML, a
/// stable Message-ID. Used when the message is DKIM-signed; otherwise [`crate::mime::compose`]
/// writes the same message for less.
pub fn build(m: &EmailMessage) -> Result<Message, DeliveryError> {
    let bad = |what: &str, e: String| DeliveryError::Permanent(format!("{what}: {e}"));
    let from: Mailbox = m
        .from
        .parse()
        .map_err(|e: lettre::address::AddressError| bad("from", e.to_string()))?;
    let to: Mailbox =
        m.to.parse()
            .map_err(|e: lettre::address::AddressError| bad("to", e.to_string()))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(m.subject.clone())
        .message_id(Some(format!("<{}>", m.message_id)))
        .header(AutoSubmitted)
        .header(AutoResponseSuppress)
        .multipart(MultiPart::alternative_plain_html(
            m.text.clone(),
            m.html.clone(),
        ))
        .map_err(|e| bad("message", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(u: &str) -> Result<SmtpSettings, String> {
        SmtpSettings::from_url(u, Duration::from_secs(5))
    }

    #[test]
    fn parses_modes_ports_and_credentials() {
        let s = parse("smtp://user%40x:p%2Fw@mail.example.com").unwrap();
        assert_eq!((s.tls, s.port), (TlsMode::Required, 587));
        assert_eq!(s.username.as_deref(), Some("user@x"));
        assert_eq!(s.password.as_deref(), Some("p/w"));
        assert!(!format!("{s:?}").contains("p/w"));
        let s = parse("smtps://mail.example.com").unwrap();
        assert_eq!((s.tls, s.port), (TlsMode::Implicit, 465));
        let s = parse("smtp://mail.example.com:2525?tls=opportunistic").unwrap();
        assert_eq!((s.tls, s.port), (TlsMode::Opportunistic, 2525));
        let s = parse("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!(s.tls, TlsMode::None);
        assert!(parse("smtp://localhost:25?tls=none").is_ok());
    }

    #[test]
    fn refuses_plain_smtp_off_loopback_and_bad_urls() {
        assert!(parse("smtp://mail.example.com?tls=none").is_err());
        assert!(parse("smtp://10.0.0.1?tls=none").is_err());
        assert!(parse("http://mail.example.com").is_err());
        assert!(parse("smtp://mail.example.com?tls=bogus").is_err());
        assert!(parse("smtp://mail.example.com?foo=bar").is_err());
        assert!(parse("smtps://mail.example.com?tls=none").is_err());
    }

    #[test]
    fn addresses_are_redacted_from_server_answers() {
        assert_eq!(
            redact_addresses("550 5.1.1 <jane@example.com>: Recipient address rejected"),
            "550 5.1.1 <address> Recipient address rejected"
        );
    }

    #[test]
    fn reads_extensions_from_the_ehlo_answer() {
        let pipelining = |lines: &[&str]| offers(lines.iter().copied(), "PIPELINING");
        assert!(pipelining(&[
            "mx.test",
            "8BITMIME",
            "pipelining",
            "SIZE 10"
        ]));
        assert!(!pipelining(&["mx.test", "8BITMIME", "SIZE 10"]));
        // The first line names the server; only a keyword of its own counts.
        assert!(!pipelining(&["PIPELINING ready"]));
        assert!(!pipelining(&["mx.test", "X-NOPIPELINING"]));
        let chunking = |lines: &[&str]| offers(lines.iter().copied(), "CHUNKING");
        assert!(chunking(&["mx.test", "PIPELINING", "CHUNKING"]));
        assert!(!chunking(&["mx.test", "PIPELINING", "BINARYMIME"]));
    }

    #[test]
    fn data_is_dot_stuffed_and_ended() {
        assert_eq!(dot_stuffed(b"a\r\n.b\r\n"), "a\r\n..b\r\n\r\n.\r\n");
        assert_eq!(dot_stuffed(b".first"), "..first\r\n.\r\n");
        // Only after CRLF does a line begin; a dot mid-line or after a bare LF stays one.
        assert_eq!(dot_stuffed(b"x.y\n.z\r.w"), "x.y\n.z\r.w\r\n.\r\n");
        assert_eq!(dot_stuffed(b"\r\n.\r\n"), "\r\n..\r\n\r\n.\r\n");
    }

    type Reader = tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>;
    type Writer = tokio::net::tcp::OwnedWriteHalf;

    /// Accepts the next connection, greets it and answers both EHLOs (lettre's, then ours)
    /// with `ehlo`.
    async fn accepted(listener: &tokio::net::TcpListener, ehlo: &str) -> (Reader, Writer) {
        use tokio::io::AsyncWriteExt;
        let (stream, _) = listener.accept().await.unwrap();
        let (r, mut w) = stream.into_split();
        let mut r = tokio::io::BufReader::new(r);
        w.write_all(b"220 scripted ESMTP\r\n").await.unwrap();
        for _ in 0..2 {
            let line = read_lines(&mut r, 1).await.remove(0);
            assert!(line.starts_with("EHLO "), "{line:?}");
            w.write_all(ehlo.as_bytes()).await.unwrap();
        }
        (r, w)
    }

    /// A scripted SMTP server on loopback: it greets, answers EHLO with `ehlo`, then calls
    /// `script` with the connection's reader and writer. Returns the port.
    async fn scripted<F, Fut>(ehlo: &'static str, script: F) -> u16
    where
        F: FnOnce(Reader, Writer) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (r, w) = accepted(&listener, ehlo).await;
            script(r, w).await;
        });
        port
    }

    fn mailer(port: u16) -> SmtpMailer {
        let url = format!("smtp://127.0.0.1:{port}?tls=none");
        SmtpMailer::new(SmtpSettings::from_url(&url, Duration::from_secs(2)).unwrap()).unwrap()
    }

    fn message() -> EmailMessage {
        EmailMessage {
            message_id: "pipe@tessera.test".into(),
            from: "Tessera <no-reply@example.com>".into(),
            to: "user@example.com".into(),
            subject: "123456 is your code".into(),
            text: "Code 123456\n.a line that begins with a dot\n".into(),
            html: "<p>Code 123456</p>".into(),
        }
    }

    /// Reads `n` lines, each with its CRLF.
    async fn read_lines(r: &mut (impl tokio::io::AsyncBufRead + Unpin), n: usize) -> Vec<String> {
        use tokio::io::AsyncBufReadExt;
        let mut lines = Vec::new();
        for _ in 0..n {
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            lines.push(line);
        }
        lines
    }

    /// Reads `DATA`'s content up to the lone dot, as it came on the wire (still stuffed).
    async fn read_stuffed(r: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> String {
        use tokio::io::AsyncBufReadExt;
        let mut data = String::new();
        loop {
            let mut line = String::new();
            assert!(
                r.read_line(&mut line).await.unwrap() > 0,
                "the data ended early"
            );
            if line == ".\r\n" {
                return data;
            }
            data.push_str(&line);
        }
    }

    /// With PIPELINING, the server answers nothing until `MAIL`, `RCPT` and `DATA` are all
    /// there: a client that waited for each answer would time out here.
    #[tokio::test]
    async fn a_pipelining_server_gets_the_envelope_in_one_group() {
        use tokio::io::AsyncWriteExt;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let port = scripted(
            "250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            |mut r, mut w| async move {
                let group = read_lines(&mut r, 3).await;
                w.write_all(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go on\r\n")
                    .await
                    .unwrap();
                let data = read_stuffed(&mut r).await;
                w.write_all(b"250 2.0.0 queued\r\n").await.unwrap();
                tx.send((group, data)).unwrap();
            },
        )
        .await;
        let m = mailer(port);
        m.send(&message()).await.unwrap();
        let (group, data) = rx.await.unwrap();
        assert_eq!(
            group,
            [
                "MAIL FROM:<no-reply@example.com>\r\n",
                "RCPT TO:<user@example.com>\r\n",
                "DATA\r\n"
            ]
        );
        assert!(
            data.contains("\r\n..a line that begins with a dot\r\n"),
            "{data}"
        );
        assert!(
            data.contains("Message-ID: <pipe@tessera.test>\r\n"),
            "{data}"
        );
        // The connection is kept for the next message.
        assert_eq!(m.idle.lock().unwrap().len(), 1);
    }

    /// Without PIPELINING each command waits for its answer; a server that sees a second
    /// command before it has answered the first fails the test.
    #[tokio::test]
    async fn a_server_without_pipelining_gets_one_command_at_a_time() {
        use tokio::io::AsyncWriteExt;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let port = scripted(
            "250-scripted\r\n250 8BITMIME\r\n",
            |mut r, mut w| async move {
                let mut verbs = Vec::new();
                for answer in ["250 Ok\r\n", "250 Ok\r\n", "354 go on\r\n"] {
                    let line = read_lines(&mut r, 1).await.remove(0);
                    assert!(r.buffer().is_empty(), "{line:?} came with more behind it");
                    verbs.push(line[..4].to_string());
                    w.write_all(answer.as_bytes()).await.unwrap();
                }
                let data = read_stuffed(&mut r).await;
                w.write_all(b"250 queued\r\n").await.unwrap();
                tx.send((verbs, data)).unwrap();
            },
        )
        .await;
        mailer(port).send(&message()).await.unwrap();
        let (verbs, data) = rx.await.unwrap();
        assert_eq!(verbs, ["MAIL", "RCPT", "DATA"]);
        assert!(
            data.contains("\r\n..a line that begins with a dot\r\n"),
            "{data}"
        );
    }

    /// Reads `BDAT <size> LAST` and then exactly that many octets; returns the size the
    /// command gave and the octets.
    async fn read_chunk(r: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> (String, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        let line = read_lines(r, 1).await.remove(0);
        let size: usize = line
            .strip_prefix("BDAT ")
            .and_then(|rest| rest.strip_suffix(" LAST\r\n"))
            .unwrap_or_else(|| panic!("not a last chunk: {line:?}"))
            .parse()
            .unwrap();
        let mut octets = vec![0; size];
        r.read_exact(&mut octets).await.unwrap();
        (line, octets)
    }

    /// Reads one pipelined CHUNKING transaction: `MAIL` and `RCPT`, then a last `BDAT` and
    /// its octets. Returns the envelope's lines, the `BDAT` line and the octets.
    async fn read_chunked(
        r: &mut (impl tokio::io::AsyncBufRead + Unpin),
    ) -> (Vec<String>, String, Vec<u8>) {
        let envelope = read_lines(r, 2).await;
        let (bdat, octets) = read_chunk(r).await;
        (envelope, bdat, octets)
    }

    /// With PIPELINING and CHUNKING the whole transaction is one group: the server answers
    /// nothing until `MAIL`, `RCPT` and `BDAT` with all its octets are there, and the message
    /// goes as it is (no dot-stuffing, no final dot), its size exact.
    #[tokio::test]
    async fn a_chunking_server_gets_the_message_in_the_group() {
        use tokio::io::AsyncWriteExt;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let port = scripted(
            "250-scripted\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n",
            |mut r, mut w| async move {
                let (envelope, bdat, octets) = read_chunked(&mut r).await;
                // Nothing more was sent: the client waits for the answers now.
                assert!(r.buffer().is_empty());
                w.write_all(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 queued\r\n")
                    .await
                    .unwrap();
                tx.send((envelope, bdat, octets)).unwrap();
            },
        )
        .await;
        let m = mailer(port);
        m.send(&message()).await.unwrap();
        let (envelope, bdat, octets) = rx.await.unwrap();
        assert_eq!(
            envelope,
            [
                "MAIL FROM:<no-reply@example.com>\r\n",
                "RCPT TO:<user@example.com>\r\n"
            ]
        );
        assert_eq!(bdat, format!("BDAT {} LAST\r\n", octets.len()));
        let data = String::from_utf8(octets).unwrap();
        assert!(
            data.contains("\r\n.a line that begins with a dot\r\n"),
            "{data}"
        );
        assert!(!data.contains("\r\n..a line"), "{data}");
        assert!(!data.ends_with("\r\n.\r\n"), "{data}");
        assert!(
            data.contains("Message-ID: <pipe@tessera.test>\r\n"),
            "{data}"
        );
        assert_eq!(m.idle.lock().unwrap().len(), 1);
    }

    /// CHUNKING without PIPELINING: each command waits for its answer, and `BDAT` takes the
    /// place of `DATA`, its `354` and the final dot.
    #[tokio::test]
    async fn a_chunking_server_without_pipelining_gets_one_command_at_a_time() {
        use tokio::io::AsyncWriteExt;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let port = scripted(
            "250-scripted\r\n250 CHUNKING\r\n",
            |mut r, mut w| async move {
                let mut verbs = Vec::new();
                for _ in 0..2 {
                    let line = read_lines(&mut r, 1).await.remove(0);
                    assert!(r.buffer().is_empty(), "{line:?} came with more behind it");
                    verbs.push(line[..4].to_string());
                    w.write_all(b"250 Ok\r\n").await.unwrap();
                }
                let (_, octets) = read_chunk(&mut r).await;
                w.write_all(b"250 queued\r\n").await.unwrap();
                tx.send((verbs, octets)).unwrap();
            },
        )
        .await;
        mailer(port).send(&message()).await.unwrap();
        let (verbs, octets) = rx.await.unwrap();
        assert_eq!(verbs, ["MAIL", "RCPT"]);
        assert!(
            String::from_utf8(octets)
                .unwrap()
                .contains("\r\n.a line that begins")
        );
    }

    /// A refused recipient in a pipelined group (with `DATA`, or with CHUNKING the `BDAT` and
    /// its message) is a permanent failure with the address kept out of its text, and the
    /// connection, whose remaining answers were not read, is not kept.
    async fn a_refused_recipient_fails_permanently(chunking: bool) {
        use tokio::io::AsyncWriteExt;
        let ehlo = if chunking {
            "250-scripted\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
        } else {
            "250-scripted\r\n250 PIPELINING\r\n"
        };
        let port = scripted(ehlo, move |mut r, mut w| async move {
            if chunking {
                read_chunked(&mut r).await;
            } else {
                read_lines(&mut r, 3).await;
            }
            w.write_all(
                b"250 Ok\r\n550 5.1.1 <user@example.com>: no such user\r\n554 5.5.1 no valid recipients\r\n",
            )
            .await
            .unwrap();
            let mut rest = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut r, &mut rest).await;
        })
        .await;
        let m = mailer(port);
        match m.send(&message()).await {
            Err(DeliveryError::Permanent(e)) => {
                assert!(e.contains("no such user"), "{e}");
                assert!(!e.contains("user@example.com"), "{e}");
            }
            other => panic!("expected a permanent failure, got {other:?}"),
        }
        assert!(m.idle.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_recipient_in_a_group_fails_permanently() {
        a_refused_recipient_fails_permanently(false).await;
    }

    #[tokio::test]
    async fn a_refused_recipient_in_a_chunking_group_fails_permanently() {
        a_refused_recipient_fails_permanently(true).await;
    }

    /// A kept connection whose server answers 421 (it is closing it: an idle timeout, say)
    /// took nothing: the message goes at once on a new connection, not back to the outbox.
    #[tokio::test]
    async fn a_kept_connection_that_answers_421_is_replaced_at_once() {
        use tokio::io::AsyncWriteExt;
        const EHLO: &str = "250-scripted\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut r, mut w) = accepted(&listener, EHLO).await;
            read_chunked(&mut r).await;
            w.write_all(b"250 Ok\r\n250 Ok\r\n250 queued\r\n")
                .await
                .unwrap();
            // The next message, on the kept connection: the server is closing.
            read_chunked(&mut r).await;
            w.write_all(b"421 4.4.2 idle too long, closing\r\n")
                .await
                .unwrap();
            drop((r, w));
            // It comes again on a new connection.
            let (mut r2, mut w2) = accepted(&listener, EHLO).await;
            let (_, _, octets) = read_chunked(&mut r2).await;
            w2.write_all(b"250 Ok\r\n250 Ok\r\n250 queued\r\n")
                .await
                .unwrap();
            tx.send(octets).unwrap();
            let mut rest = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut r2, &mut rest).await;
        });
        let m = mailer(port);
        m.send(&message()).await.unwrap();
        let second = EmailMessage {
            message_id: "second@tessera.test".into(),
            ..message()
        };
        m.send(&second).await.unwrap();
        let octets = String::from_utf8(rx.await.unwrap()).unwrap();
        assert!(
            octets.contains("Message-ID: <second@tessera.test>"),
            "{octets}"
        );
        assert_eq!(
            m.idle.lock().unwrap().len(),
            1,
            "the new connection is kept"
        );
    }

    #[test]
    fn kept_connections_idle_too_long_are_dropped_from_the_bottom() {
        let now = Instant::now() + IDLE_FOR * 2;
        let ago = |secs: u64| now - Duration::from_secs(secs);
        let mut idle = vec![
            ("a", ago(70)),
            ("b", ago(50)),
            ("c", ago(49)),
            ("d", ago(1)),
        ];
        drop_expired(&mut idle, now);
        let left: Vec<&str> = idle.iter().map(|(c, _)| *c).collect();
        assert_eq!(left, ["c", "d"]);
        drop_expired(&mut idle, now + Duration::from_secs(60));
        assert!(idle.is_empty());
    }

    #[test]
    fn builds_multipart_with_message_id() {
        let m = EmailMessage {
            message_id: "abc@tessera.test".into(),
            from: "Tessera <no-reply@example.com>".into(),
            to: "user@example.com".into(),
            subject: "Your code".into(),
            text: "Code 123456".into(),
            html: "<p>Code 123456</p>".into(),
        };
        let raw = String::from_utf8(build(&m).unwrap().formatted()).unwrap();
        assert!(raw.contains("Message-ID: <abc@tessera.test>"));
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("Date: "));
        assert!(raw.contains("Auto-Submitted: auto-generated"));
        assert!(raw.contains("X-Auto-Response-Suppress: All"));
        let bad = EmailMessage {
            to: "x@example.com\r\nBcc: evil@example.com".into(),
            ..m
        };
        assert!(build(&bad).is_err());
    }
}
