//! Applications (OAuth clients) and the rules that gate what they may do.

use serde::{Deserialize, Serialize};

pub const GRANT_PASSWORDLESS_OTP: &str = "http://auth0.com/oauth/grant-type/passwordless/otp";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
/// Tokens straight from `/authorize` (`response_type` `token`, `id_token`).
pub const GRANT_IMPLICIT: &str = "implicit";
/// Machine-to-machine tokens; Tessera issues them for its Management API only.
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppType {
    /// A server-side app with its own back end: confidential, has a secret.
    RegularWeb,
    /// A browser app: public, no secret.
    Spa,
    /// A mobile or desktop app: public, no secret.
    Native,
}

impl AppType {
    pub fn is_confidential(self) -> bool {
        matches!(self, AppType::RegularWeb)
    }

    /// Auth0's `app_type` value.
    pub fn auth0_name(self) -> &'static str {
        match self {
            AppType::RegularWeb => "regular_web",
            AppType::Spa => "spa",
            AppType::Native => "native",
        }
    }
}

/// The parts of an application that are not secret, stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientSettings {
    pub name: String,
    pub app_type: AppType,
    #[serde(default)]
    pub callbacks: Vec<String>,
    #[serde(default)]
    pub web_origins: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub connections: Vec<String>,
    /// Whether this (confidential) application's `auth0-forwarded-for` header names the end
    /// user's IP, for rate limits. Believed only when it authenticated in the same request.
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// Where `/v2/logout` may send the browser back to (exact match).
    #[serde(default)]
    pub allowed_logout_urls: Vec<String>,
    /// Whether this confidential application's pages may call `/passwordless/start` from the
    /// browser without the secret (Lock, auth0-js), from its web origins only.
    #[serde(default)]
    pub allow_browser_start: bool,
    /// Whether `/co/authenticate` (embedded login with Lock or auth0-js) is allowed.
    #[serde(default = "yes")]
    pub cross_origin_authentication: bool,
    /// The old widgets' endpoints (`/oauth/ro`, `/tokeninfo`, JSONP, `/passwordless/verify`
    /// without a `client_id`): Lock Passwordless v2 and auth0.js v7.
    #[serde(default)]
    pub legacy_passwordless: bool,
    /// Management API scopes this application may ask for with `client_credentials`
    /// (`read:users`, `update:users`, `delete:users`, `read:logs`, `read:clients`).
    #[serde(default)]
    pub management_scopes: Vec<String>,
    /// This application's id_token lifetime (Auth0's `jwt_configuration.lifetime_in_seconds`);
    /// `None` keeps the server's `tokens.id_token_lifetime_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_lifetime_secs: Option<i64>,
    /// The id_token's algorithm (`RS256`, `ES256`, `EdDSA`; Auth0's `jwt_configuration.alg`);
    /// `None` is RS256, the only one auth0-js and Lock accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_alg: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub client_id: String,
    /// SHA-256 of the client secret; `None` for public clients.
    pub secret_hash: Option<Vec<u8>>,
    pub settings: ClientSettings,
}

impl Client {
    /// The algorithm of this application's id_tokens.
    pub fn signing_alg(&self) -> crate::jwt::Alg {
        self.settings
            .signing_alg
            .as_deref()
            .and_then(crate::jwt::Alg::parse)
            .unwrap_or_default()
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.settings.grant_types.iter().any(|g| g == grant)
    }

    pub fn has_connection(&self, name: &str) -> bool {
        self.settings.connections.iter().any(|c| c == name)
    }

    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some()
    }

    /// Exact, byte-for-byte match against the allowed callback URLs.
    pub fn allows_callback(&self, redirect_uri: &str) -> bool {
        self.settings.callbacks.iter().any(|c| c == redirect_uri)
    }

    /// Exact match against the allowed logout URLs.
    pub fn allows_logout_url(&self, url: &str) -> bool {
        self.settings.allowed_logout_urls.iter().any(|c| c == url)
    }

    /// Whether a browser on `origin` (`scheme://host[:port]`) may call this application's
    /// endpoints: its web origins, and the origins of its callback URLs (as Auth0 allows).
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.settings.web_origins.iter().any(|o| o == origin)
            || self
                .settings
                .callbacks
                .iter()
                .any(|c| origin_of(c).is_some_and(|o| o == origin))
    }
}

/// `scheme://host[:port]` of an absolute http(s) URL, as a browser writes it in `Origin`.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let lower = authority.to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = lower.strip_suffix(default_port).unwrap_or(&lower);
    Some(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            client_id: "c".into(),
            secret_hash: Some(vec![1; 32]),
            settings: ClientSettings {
                name: "App".into(),
                app_type: AppType::RegularWeb,
                callbacks: vec!["https://app.example.com/callback".into()],
                web_origins: vec![],
                grant_types: vec![GRANT_PASSWORDLESS_OTP.into()],
                connections: vec!["email".into()],
                trust_forwarded_for: false,
                allowed_logout_urls: vec![],
                allow_browser_start: false,
                cross_origin_authentication: true,
                legacy_passwordless: false,
                management_scopes: vec![],
                id_token_lifetime_secs: None,
                signing_alg: None,
            },
        }
    }

    #[test]
    fn gates() {
        let c = client();
        assert!(c.allows_grant(GRANT_PASSWORDLESS_OTP));
        assert!(!c.allows_grant(GRANT_REFRESH_TOKEN));
        assert!(c.has_connection("email"));
        assert!(!c.has_connection("sms"));
        assert!(c.is_confidential());
        assert!(c.allows_callback("https://app.example.com/callback"));
        assert!(c.allows_origin("https://app.example.com"));
        assert!(!c.allows_origin("https://app.example.com:444"));
        assert!(!c.allows_origin("https://evil.example.com"));
        assert_eq!(
            origin_of("https://A.example.com:443/x?y"),
            Some("https://a.example.com".into())
        );
        assert_eq!(origin_of("myapp://cb"), None);
        for bad in [
            "https://app.example.com/callback/",
            "https://APP.example.com/callback",
            "http://app.example.com/callback",
            "https://app.example.com:444/callback",
        ] {
            assert!(!c.allows_callback(bad), "{bad}");
        }
    }
}
