//! SMTP through lettre: URL parsing, TLS modes, and error classification.
//!
//! `smtp://[user:pass@]host[:port][?tls=required|opportunistic|none]` uses STARTTLS (required
//! unless told otherwise, port 587 by default); `smtps://` uses implicit TLS (port 465).
//! Plain SMTP (`tls=none`) is accepted only for loopback hosts, so credentials and codes never
//! cross a network in clear text.

use std::time::Duration;

pub use lettre::message::dkim::DkimSigningAlgorithm;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningKey,
};
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

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

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    settings: SmtpSettings,
    dkim: Option<DkimConfig>,
}

impl SmtpMailer {
    pub fn new(settings: SmtpSettings) -> Result<SmtpMailer, String> {
        let tls_params = || {
            let mut b = TlsParameters::builder(settings.host.clone());
            if let Some(pem) = &settings.ca_pem {
                let ca = Certificate::from_pem(pem).map_err(|e| format!("email.ca_file: {e}"))?;
                b = b.add_root_certificate(ca);
            }
            b.build().map_err(|e| format!("SMTP TLS setup: {e}"))
        };
        let tls = match settings.tls {
            TlsMode::Required => Tls::Required(tls_params()?),
            TlsMode::Opportunistic => Tls::Opportunistic(tls_params()?),
            TlsMode::Implicit => Tls::Wrapper(tls_params()?),
            TlsMode::None => Tls::None,
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout));
        if let (Some(u), Some(p)) = (&settings.username, &settings.password) {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        let dkim = settings
            .dkim
            .as_ref()
            .map(DkimSettings::config)
            .transpose()?;
        Ok(SmtpMailer {
            transport: b.build(),
            settings,
            dkim,
        })
    }

    pub fn settings(&self) -> &SmtpSettings {
        &self.settings
    }

    /// Connects, greets and authenticates, to report a misconfiguration at start-up.
    pub async fn check(&self) -> Result<(), String> {
        match tokio::time::timeout(self.deadline(), self.transport.test_connection()).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err("the SMTP server did not accept the connection".into()),
            Ok(Err(e)) => Err(redact_addresses(&e.to_string())),
            Err(_) => Err("the SMTP server did not answer in time".into()),
        }
    }

    /// An overall bound on one SMTP conversation. lettre's own timeout covers connecting and
    /// single reads, but a server that goes silent mid-conversation must not stall a worker.
    fn deadline(&self) -> Duration {
        self.settings.timeout * 3
    }

    pub async fn send(&self, m: &EmailMessage) -> Result<(), DeliveryError> {
        let mut msg = build(m)?;
        if let Some(d) = &self.dkim {
            msg.sign(d);
        }
        let sent = tokio::time::timeout(self.deadline(), self.transport.send(msg))
            .await
            .map_err(|_| {
                DeliveryError::Transient("the SMTP server did not answer in time".into())
            })?;
        sent.map(|_| ()).map_err(|e| {
            // Servers often quote the recipient in their answer; keep addresses out of logs.
            let text = redact_addresses(&e.to_string());
            if e.is_permanent() {
                DeliveryError::Permanent(text)
            } else {
                DeliveryError::Transient(text)
            }
        })
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

/// Builds the MIME message: multipart/alternative with text and HTML, a stable Message-ID.
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
