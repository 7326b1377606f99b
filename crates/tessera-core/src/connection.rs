//! Passwordless connections (`email`, `sms`) and their settings.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Email,
    Sms,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Email => "email",
            Strategy::Sms => "sms",
        }
    }
}

/// A connection's settings, stored as JSON so that later options do not need a migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionSettings {
    /// Digits per code, 4 to 10.
    pub code_length: u8,
    /// Seconds a code stays valid.
    pub code_lifetime_secs: i64,
    /// Wrong attempts allowed per code.
    pub max_attempts: i64,
    /// When true, unknown identities get no code and cannot sign up.
    pub disable_signup: bool,
    /// The operator's email template; `None` uses the built-in, translated ones.
    pub email_template: Option<EmailTemplate>,
    /// When a magic link asks for a click before it is used (against link scanners).
    pub magic_link_confirmation: LinkConfirmation,
    /// The operator's SMS text (the `sms` connection); `None` uses the built-in, translated one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms_template: Option<SmsTemplate>,
    /// The SMS provider set in the dashboard, the Management API or the CLI; `None` uses the
    /// configuration file's `[connections.sms]` provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms_provider: Option<SmsProviderSettings>,
}

/// The sealing purpose of the SMS provider's secrets at rest.
pub const SMS_PROVIDER_SEAL: &str = "tessera/sms-provider/v1";

/// An SMS provider kept in the database, Auth0's two kinds. Secrets (Twilio's auth token, the
/// gateway's JWT secret) are sealed with the server secret (base64 of the sealed bytes) and
/// never shown again.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum SmsProviderSettings {
    Twilio {
        account_sid: String,
        auth_token_sealed: String,
        #[serde(default)]
        from: Option<String>,
        #[serde(default)]
        messaging_service_sid: Option<String>,
        /// Twilio's API; a loopback URL only for tests.
        api_base: String,
    },
    SmsGateway {
        url: String,
        #[serde(default)]
        from: Option<String>,
        #[serde(default)]
        forward_req_info: bool,
        #[serde(default)]
        jwt_secret_sealed: Option<String>,
        #[serde(default)]
        jwt_subject: Option<String>,
        #[serde(default)]
        jwt_audience: Option<String>,
    },
}

impl std::fmt::Debug for SmsProviderSettings {
    /// Names the provider; never prints its (sealed) credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SmsProviderSettings::Twilio { api_base, .. } => write!(f, "Twilio({api_base})"),
            SmsProviderSettings::SmsGateway { url, .. } => write!(f, "SmsGateway({url})"),
        }
    }
}

/// When a magic link shows a one-click confirmation page instead of signing in on `GET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkConfirmation {
    /// Confirm unless the browser is the one that asked for the link.
    #[default]
    Auto,
    /// Always confirm.
    Always,
    /// Never confirm: a `GET` signs in (Auth0's behaviour; scanners can burn links).
    Never,
}

/// An operator's passwordless email, in Liquid, as Auth0 configures it per connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplate {
    /// The From header; `None` keeps the server's `email.from`.
    #[serde(default)]
    pub from: Option<String>,
    pub subject: String,
    /// The HTML body. The text part is generated from it.
    pub body: String,
    /// Only `liquid` is supported.
    #[serde(default = "liquid_syntax")]
    pub syntax: String,
}

fn liquid_syntax() -> String {
    "liquid".into()
}

/// An operator's SMS text, in Auth0's two syntaxes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsTemplate {
    /// `liquid` (`{{ code }}`, `{{ application.name }}`, …) or `md_with_macros` (`@@password@@`).
    #[serde(default = "liquid_syntax")]
    pub syntax: String,
    pub body: String,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            code_length: 6,
            code_lifetime_secs: 180,
            max_attempts: 3,
            disable_signup: false,
            email_template: None,
            magic_link_confirmation: LinkConfirmation::Auto,
            sms_template: None,
            sms_provider: None,
        }
    }
}

impl ConnectionSettings {
    /// Checks the ranges; the message names the offending setting.
    pub fn validate(&self) -> Result<(), String> {
        if !(crate::otp::MIN_LENGTH..=crate::otp::MAX_LENGTH).contains(&self.code_length) {
            return Err(format!(
                "code_length must be between 4 and 10, not {}",
                self.code_length
            ));
        }
        if !(30..=86_400).contains(&self.code_lifetime_secs) {
            return Err(format!(
                "code_lifetime_secs must be between 30 and 86400, not {}",
                self.code_lifetime_secs
            ));
        }
        if !(1..=10).contains(&self.max_attempts) {
            return Err(format!(
                "max_attempts must be between 1 and 10, not {}",
                self.max_attempts
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub name: String,
    pub strategy: Strategy,
    pub settings: ConnectionSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_auth0() {
        let s = ConnectionSettings::default();
        assert_eq!(
            (s.code_length, s.code_lifetime_secs, s.max_attempts),
            (6, 180, 3)
        );
        assert!(s.validate().is_ok());
    }

    #[test]
    fn ranges_are_checked() {
        let bad = [
            ConnectionSettings {
                code_length: 3,
                ..Default::default()
            },
            ConnectionSettings {
                code_length: 11,
                ..Default::default()
            },
            ConnectionSettings {
                code_lifetime_secs: 0,
                ..Default::default()
            },
            ConnectionSettings {
                max_attempts: 0,
                ..Default::default()
            },
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
    }
}
