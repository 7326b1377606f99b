//! Where SMS goes: Twilio's Messages API, a custom SMS gateway (Auth0's `sms_gateway`), or,
//! in dev mode without a provider, the dev mailbox.
//!
//! Temporary failures (5xx, 429, timeouts, connection errors) are retried by the outbox;
//! permanent ones (Twilio 4xx such as 21211, a gateway's 4xx) are given up and recorded.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::mailer::{DeliveryError, DevMailbox};
use crate::message::EmailMessage;

/// One text message, sealed in the outbox until it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmsMessage {
    pub to: String,
    pub body: String,
    /// The requester's IP and User-Agent (the gateway's `forward_req_info`).
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl SmsMessage {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(b: &[u8]) -> Result<SmsMessage, serde_json::Error> {
        serde_json::from_slice(b)
    }
}

#[derive(Clone)]
pub struct TwilioSettings {
    /// `https://api.twilio.com` unless tests point it elsewhere.
    pub api_base: String,
    pub account_sid: String,
    pub auth_token: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
}

#[derive(Clone)]
pub struct GatewaySettings {
    pub url: String,
    /// The `sender` field.
    pub from: Option<String>,
    pub forward_req_info: bool,
    /// HS256 bearer token: secret, `sub`, `aud`.
    pub jwt: Option<(String, String, String)>,
}

#[derive(Clone)]
pub enum SmsProvider {
    Twilio(TwilioSettings),
    Gateway(GatewaySettings),
    /// Dev mode without a provider: messages land in the dev mailbox (`to` is the number).
    Dev(DevMailbox),
    /// No SMS connection is configured.
    None,
}

impl std::fmt::Debug for SmsProvider {
    /// Names the provider; never prints its credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SmsProvider::Twilio(t) => write!(f, "Twilio({})", t.api_base),
            SmsProvider::Gateway(g) => write!(f, "Gateway({})", g.url),
            SmsProvider::Dev(_) => f.write_str("Dev"),
            SmsProvider::None => f.write_str("None"),
        }
    }
}

pub struct SmsSender {
    provider: SmsProvider,
    http: reqwest::Client,
}

impl SmsSender {
    pub fn new(provider: SmsProvider, timeout: Duration) -> Result<SmsSender, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the SMS HTTP client: {e}"))?;
        Ok(SmsSender { provider, http })
    }

    pub fn provider_name(&self) -> &'static str {
        match self.provider {
            SmsProvider::Twilio(_) => "twilio",
            SmsProvider::Gateway(_) => "sms_gateway",
            SmsProvider::Dev(_) => "dev mailbox",
            SmsProvider::None => "none",
        }
    }

    pub async fn send(&self, m: &SmsMessage, now: i64) -> Result<(), DeliveryError> {
        self.send_with(&self.provider, m, now).await
    }

    /// Sends through `provider` instead of the configured one (a provider set in the database).
    pub async fn send_with(
        &self,
        provider: &SmsProvider,
        m: &SmsMessage,
        now: i64,
    ) -> Result<(), DeliveryError> {
        match provider {
            SmsProvider::Twilio(t) => self.twilio(t, m).await,
            SmsProvider::Gateway(g) => self.gateway(g, m, now).await,
            SmsProvider::Dev(d) => {
                d.push(&EmailMessage {
                    message_id: String::new(),
                    from: "SMS".into(),
                    to: m.to.clone(),
                    subject: m.body.lines().next().unwrap_or_default().to_string(),
                    text: m.body.clone(),
                    html: String::new(),
                });
                Ok(())
            }
            SmsProvider::None => Err(DeliveryError::Permanent(
                "no SMS provider is configured".into(),
            )),
        }
    }

    async fn twilio(&self, t: &TwilioSettings, m: &SmsMessage) -> Result<(), DeliveryError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            t.api_base.trim_end_matches('/'),
            t.account_sid
        );
        let mut form = vec![("To", m.to.as_str()), ("Body", m.body.as_str())];
        match (&t.messaging_service_sid, &t.from) {
            (Some(sid), _) => form.push(("MessagingServiceSid", sid)),
            (None, Some(from)) => form.push(("From", from)),
            (None, None) => {}
        }
        let resp = self
            .http
            .post(url)
            .basic_auth(&t.account_sid, Some(&t.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(|e| transport("Twilio", e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let text = format!(
            "{} (Code: {})",
            redact_numbers(
                body["message"]
                    .as_str()
                    .unwrap_or("Twilio refused the message")
            ),
            body["code"]
                .as_i64()
                .map(|c| c.to_string())
                .unwrap_or_else(|| status.as_u16().to_string())
        );
        if status.is_server_error() || status.as_u16() == 429 {
            Err(DeliveryError::Transient(text))
        } else {
            Err(DeliveryError::Permanent(text))
        }
    }

    async fn gateway(
        &self,
        g: &GatewaySettings,
        m: &SmsMessage,
        now: i64,
    ) -> Result<(), DeliveryError> {
        let mut body = json!({"recipient": m.to, "body": m.body, "sender": g.from});
        if g.forward_req_info {
            body["req"] = json!({"ip": m.ip, "user-agent": m.user_agent});
        }
        let mut req = self.http.post(&g.url).json(&body);
        if let Some((secret, sub, aud)) = &g.jwt {
            req = req.bearer_auth(hs256(
                secret,
                &json!({"sub": sub, "aud": aud, "iat": now, "exp": now + 300}),
            ));
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                // Without the URL: it can carry credentials or an account id.
                DeliveryError::Transient(format!(
                    "Timeout while calling the SMS gateway: {}",
                    e.without_url()
                ))
            } else {
                transport("the SMS gateway", e)
            }
        })?;
        let status = resp.status().as_u16();
        match status {
            200 => Ok(()),
            401 => Err(DeliveryError::Permanent(format!(
                "Authentication failed while calling the SMS gateway: {status}"
            ))),
            429 | 500..=599 => Err(DeliveryError::Transient(format!(
                "Unexpected response while calling the SMS gateway: {status}"
            ))),
            _ => Err(DeliveryError::Permanent(format!(
                "Unexpected response while calling the SMS gateway: {status}"
            ))),
        }
    }
}

/// Masks phone numbers (`+` and six or more digits) in provider messages, which end up in logs
/// and audit events: `+14155552671` becomes `+1…71`.
pub fn redact_numbers(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '+' {
            let digits: String = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if digits.len() >= 6 {
                out.push('+');
                out.push_str(&digits[..1]);
                out.push('…');
                out.push_str(&digits[digits.len() - 2..]);
                i += 1 + digits.len();
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn transport(who: &str, e: reqwest::Error) -> DeliveryError {
    // Without the URL: it can carry an account id.
    let e = e.without_url();
    DeliveryError::Transient(format!("could not reach {who}: {e}"))
}

/// An HS256 JWT (the gateway's bearer token).
pub fn hs256(secret: &str, claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// The provider a database entry describes, its secrets unsealed.
pub fn provider_from_settings(
    p: &tessera_core::connection::SmsProviderSettings,
    secret: &tessera_core::crypto::ServerSecret,
) -> Result<SmsProvider, String> {
    use base64::Engine as _;
    use tessera_core::connection::{SMS_PROVIDER_SEAL, SmsProviderSettings};
    let open = |sealed: &str| -> Result<String, String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| "the stored SMS provider secret is not base64".to_string())?;
        let plain = secret
            .open(SMS_PROVIDER_SEAL, &raw)
            .map_err(|e| format!("cannot open the stored SMS provider secret: {e}"))?;
        String::from_utf8(plain).map_err(|_| "the stored SMS provider secret is not text".into())
    };
    Ok(match p {
        SmsProviderSettings::Twilio {
            account_sid,
            auth_token_sealed,
            from,
            messaging_service_sid,
            api_base,
        } => SmsProvider::Twilio(TwilioSettings {
            api_base: api_base.clone(),
            account_sid: account_sid.clone(),
            auth_token: open(auth_token_sealed)?,
            from: from.clone(),
            messaging_service_sid: messaging_service_sid.clone(),
        }),
        SmsProviderSettings::SmsGateway {
            url,
            from,
            forward_req_info,
            jwt_secret_sealed,
            jwt_subject,
            jwt_audience,
        } => SmsProvider::Gateway(GatewaySettings {
            url: url.clone(),
            from: from.clone(),
            forward_req_info: *forward_req_info,
            jwt: match jwt_secret_sealed {
                Some(s) => Some((
                    open(s)?,
                    jwt_subject.clone().unwrap_or_default(),
                    jwt_audience.clone().unwrap_or_default(),
                )),
                None => None,
            },
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_masked_in_provider_messages() {
        assert_eq!(
            redact_numbers("The 'To' number +14155552671 is not a valid phone number."),
            "The 'To' number +1…71 is not a valid phone number."
        );
        assert_eq!(redact_numbers("Code +123 stays"), "Code +123 stays");
    }
}
