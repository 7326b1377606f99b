//! The OAuth/OIDC side of the app: random values, PKCE, the authorization_code grant at
//! Tessera's `/oauth/token`, and the id_token check against Tessera's JWKS.

use anyhow::{Context, anyhow, bail};
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::AppConfig;

/// 32 random bytes, base64url without padding (43 characters): states, nonces, PKCE
/// verifiers and session ids.
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow!("no random bytes"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The PKCE `code_challenge` for `verifier` with method S256 (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The part of Tessera's `/oauth/token` answer the app uses.
#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

/// A failure the user should see as Tessera said it (`error`, `error_description`).
#[derive(Debug)]
pub struct TokenError {
    pub status: u16,
    pub error: String,
    pub description: String,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.error, self.description)
    }
}

impl std::error::Error for TokenError {}

/// Exchanges an authorization code for tokens (form-encoded, with the client secret in the
/// body, as the Auth0 SDKs for regular web apps send it) and returns the raw id_token.
pub async fn exchange_code(
    http: &reqwest::Client,
    config: &AppConfig,
    code: &str,
    code_verifier: Option<&str>,
) -> anyhow::Result<String> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("client_id", config.client_id.as_str()),
        ("client_secret", config.client_secret.as_str()),
        ("code", code),
        ("redirect_uri", config.redirect_uri.as_str()),
    ];
    if let Some(v) = code_verifier {
        form.push(("code_verifier", v));
    }
    let url = format!("{}/oauth/token", config.tessera);
    let response = http
        .post(&url)
        .form(&form)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("POST {url}: the answer ({status}) is not JSON"))?;
    if !status.is_success() {
        let field = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        return Err(TokenError {
            status: status.as_u16(),
            error: field("error"),
            description: field("error_description"),
        }
        .into());
    }
    let token: TokenResponse = serde_json::from_value(body)?;
    token
        .id_token
        .ok_or_else(|| anyhow!("/oauth/token answered without an id_token"))
}

/// Checks `id_token`: an RS256 signature by a key in Tessera's JWKS, `iss` equal to Tessera's
/// issuer, `aud` equal to our client_id, not expired, and `nonce` equal to the one this sign-in
/// sent. Returns its claims.
pub async fn verify_id_token(
    http: &reqwest::Client,
    config: &AppConfig,
    id_token: &str,
    nonce: &str,
) -> anyhow::Result<Value> {
    let header = jsonwebtoken::decode_header(id_token).context("the id_token is not a JWT")?;
    if header.alg != Algorithm::RS256 {
        bail!(
            "the id_token is signed with {:?}; only RS256 is accepted",
            header.alg
        );
    }
    let url = format!("{}/.well-known/jwks.json", config.tessera);
    let jwks: JwkSet = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("GET {url}"))?
        .json()
        .await
        .with_context(|| format!("GET {url}: not a JWKS"))?;
    let jwk = match &header.kid {
        Some(kid) => jwks
            .find(kid)
            .ok_or_else(|| anyhow!("no key {kid} in {url}"))?,
        None => match jwks.keys.as_slice() {
            [only] => only,
            _ => bail!("the id_token names no key (kid) and {url} has several"),
        },
    };
    let key = DecodingKey::from_jwk(jwk).context("unusable key in the JWKS")?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[config.issuer.as_str()]);
    validation.set_audience(&[config.client_id.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation)
        .context("the id_token did not verify")?
        .claims;
    let token_nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if !constant_time_eq(token_nonce.as_bytes(), nonce.as_bytes()) {
        bail!("the id_token's nonce is not the one this sign-in sent");
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_the_rfc_example() {
        // RFC 7636, Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_tokens_differ() {
        let a = random_token().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token().unwrap());
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
