//! Authorization requests and responses: what `/authorize`, the hosted login page, magic links
//! (`/passwordless/verify_redirect`) and login tickets share.
//!
//! A request is checked in two stages, as OAuth 2.0 demands (RFC 6749 §4.1.2.1): while the
//! client or the redirect URI is in doubt, errors are shown on a Tessera page and the browser
//! is never sent anywhere; once the redirect URI is known to be registered (exact match),
//! errors go back to the application in the requested response mode, with `state`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tessera_core::client::{Client, GRANT_AUTHORIZATION_CODE, GRANT_IMPLICIT, origin_of};
use tessera_core::crypto::{ct_eq, sha256};
use tessera_core::rand::{hex_id, token};
use tessera_core::scope::Scope;
use tessera_core::user::User;
use tessera_store::AuthCode;

use crate::error::ApiError;
use crate::pages::{self, Lang};
use crate::params::Params;
use crate::state::{AppState, RequestMeta};
use crate::tokens::{self, Grant, Refresh};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseType {
    Code,
    IdToken,
    Token,
    TokenIdToken,
}

impl ResponseType {
    fn parse(raw: &str) -> Option<ResponseType> {
        let mut parts: Vec<&str> = raw.split(' ').filter(|p| !p.is_empty()).collect();
        parts.sort_unstable();
        match parts.as_slice() {
            ["code"] => Some(ResponseType::Code),
            ["id_token"] => Some(ResponseType::IdToken),
            ["token"] => Some(ResponseType::Token),
            ["id_token", "token"] => Some(ResponseType::TokenIdToken),
            _ => None,
        }
    }

    fn default_mode(self) -> ResponseMode {
        match self {
            ResponseType::Code => ResponseMode::Query,
            _ => ResponseMode::Fragment,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResponseType::Code => "code",
            ResponseType::IdToken => "id_token",
            ResponseType::Token => "token",
            ResponseType::TokenIdToken => "token id_token",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseMode {
    Query,
    Fragment,
    FormPost,
    WebMessage,
}

impl ResponseMode {
    fn parse(raw: &str) -> Option<ResponseMode> {
        match raw {
            "query" => Some(ResponseMode::Query),
            "fragment" => Some(ResponseMode::Fragment),
            "form_post" => Some(ResponseMode::FormPost),
            "web_message" => Some(ResponseMode::WebMessage),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResponseMode::Query => "query",
            ResponseMode::Fragment => "fragment",
            ResponseMode::FormPost => "form_post",
            ResponseMode::WebMessage => "web_message",
        }
    }
}

/// A checked authorization request. It travels through the hosted login page sealed, so it
/// is serialisable; the client is looked up again on every step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub response_type: ResponseType,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub scope: String,
    pub audience: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub login_hint: Option<String>,
    pub connection: Option<String>,
    pub ui_locales: Option<String>,
    /// When the request was checked: a hosted page older than an hour is not accepted.
    #[serde(default)]
    pub issued_at: i64,
}

/// Where errors and results go once the redirect URI is trusted.
#[derive(Debug, Clone)]
pub struct Target {
    pub redirect_uri: String,
    pub mode: ResponseMode,
    pub state: Option<String>,
}

/// A request that failed its checks.
#[derive(Debug)]
pub enum AuthError {
    /// Shown on a Tessera page: the redirect URI cannot be trusted.
    Page {
        status: StatusCode,
        title: &'static str,
        message: String,
    },
    /// Sent back to the application.
    Redirect {
        target: Target,
        error: String,
        description: String,
    },
    Api(ApiError),
}

impl From<ApiError> for AuthError {
    fn from(e: ApiError) -> Self {
        AuthError::Api(e)
    }
}

impl From<tessera_store::StoreError> for AuthError {
    fn from(e: tessera_store::StoreError) -> Self {
        AuthError::Api(e.into())
    }
}

pub const CALLBACK_MISMATCH: &str = "Callback URL mismatch. The provided redirect_uri is not in the list of allowed callback URLs. Please go to the Application Settings page and make sure you are sending a valid callback url from your application.";

impl AuthError {
    pub fn redirect(target: &Target, error: &str, description: impl Into<String>) -> AuthError {
        AuthError::Redirect {
            target: target.clone(),
            error: error.into(),
            description: description.into(),
        }
    }

    pub fn page(status: StatusCode, title: &'static str, message: impl Into<String>) -> AuthError {
        AuthError::Page {
            status,
            title,
            message: message.into(),
        }
    }

    pub fn into_response(self, lang: Lang) -> Response {
        match self {
            AuthError::Page {
                status,
                title,
                message,
            } => pages::error_page(lang, status, title, &message),
            AuthError::Redirect {
                target,
                error,
                description,
            } => deliver(
                &target,
                vec![
                    ("error".into(), error),
                    ("error_description".into(), description),
                ],
            ),
            AuthError::Api(e) => {
                let status = e.status;
                pages::error_page(lang, status, "Something went wrong", &e.description)
            }
        }
    }
}

fn text(p: &Params, name: &str) -> Result<Option<String>, AuthError> {
    match p.str(name) {
        Ok(v) => Ok(v.filter(|s| !s.is_empty()).map(str::to_string)),
        Err(_) => Err(AuthError::page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            format!("The parameter {name} must be a string."),
        )),
    }
}

/// Looks the client up and checks the redirect URI: the two checks whose failure must not
/// redirect.
pub async fn client_and_redirect(
    st: &AppState,
    meta: &RequestMeta,
    p: &Params,
) -> Result<(Client, String), AuthError> {
    let Some(client_id) = text(p, "client_id")? else {
        return Err(AuthError::page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "Missing required parameter: client_id",
        ));
    };
    let Some(client) = st.store.get_client(&client_id).await? else {
        return Err(AuthError::page(
            StatusCode::BAD_REQUEST,
            "Unknown client",
            format!("Unknown client: {}", clip(&client_id)),
        ));
    };
    let Some(redirect_uri) = text(p, "redirect_uri")? else {
        return Err(AuthError::page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "Missing required parameter: redirect_uri",
        ));
    };
    if !client.allows_callback(&redirect_uri) {
        tracing::info!(client_id = %client.client_id, "redirect_uri not in the allowed callbacks");
        st.event("f", meta, |e| {
            e.client_id = Some(client.client_id.clone());
            e.description = format!(
                "Callback URL mismatch: {} is not an allowed callback URL",
                clip(&redirect_uri)
            );
        })
        .await;
        return Err(AuthError::page(
            StatusCode::BAD_REQUEST,
            "Callback URL mismatch",
            CALLBACK_MISMATCH,
        ));
    }
    Ok((client, redirect_uri))
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Checks an authorization request (from `/authorize` or a magic link's query).
pub async fn parse(
    st: &AppState,
    meta: &RequestMeta,
    p: &Params,
) -> Result<(Client, AuthRequest), AuthError> {
    let (client, redirect_uri) = client_and_redirect(st, meta, p).await?;
    let state = text(p, "state")?;
    let raw_type = text(p, "response_type")?;
    let parsed_type = raw_type.as_deref().and_then(ResponseType::parse);
    let raw_mode = text(p, "response_mode")?;
    let mode = match (&raw_mode, parsed_type) {
        (Some(m), _) => ResponseMode::parse(m),
        (None, Some(t)) => Some(t.default_mode()),
        (None, None) => Some(ResponseMode::Query),
    };
    let target = Target {
        redirect_uri: redirect_uri.clone(),
        mode: mode.unwrap_or(ResponseMode::Query),
        state: state.clone(),
    };
    let Some(mode) = mode else {
        return Err(AuthError::redirect(
            &target,
            "invalid_request",
            format!(
                "Unsupported response_mode: {}",
                clip(raw_mode.as_deref().unwrap_or_default())
            ),
        ));
    };
    let Some(response_type) = parsed_type else {
        return Err(AuthError::redirect(
            &target,
            "unsupported_response_type",
            format!(
                "Unsupported response type: {}",
                clip(raw_type.as_deref().unwrap_or_default())
            ),
        ));
    };
    if response_type != ResponseType::Code && mode == ResponseMode::Query {
        // Tokens never go in a query string (RFC 9700 §2.1.2, OAuth multiple response types).
        return Err(AuthError::redirect(
            &target,
            "invalid_request",
            "Tokens cannot be returned with response_mode=query",
        ));
    }
    let grant = match response_type {
        ResponseType::Code => GRANT_AUTHORIZATION_CODE,
        _ => GRANT_IMPLICIT,
    };
    if !client.allows_grant(grant) {
        return Err(AuthError::redirect(
            &target,
            "unauthorized_client",
            format!("Grant type '{grant}' not allowed for the client."),
        ));
    }
    let nonce = text(p, "nonce")?;
    if matches!(
        response_type,
        ResponseType::IdToken | ResponseType::TokenIdToken
    ) && nonce.is_none()
    {
        return Err(AuthError::redirect(
            &target,
            "invalid_request",
            "Nonce is required for implicit flows returning an id_token",
        ));
    }
    let code_challenge = text(p, "code_challenge")?;
    let mut code_challenge_method = text(p, "code_challenge_method")?;
    if let Some(c) = &code_challenge {
        let method = code_challenge_method.get_or_insert_with(|| "plain".into());
        if method != "S256" && method != "plain" {
            return Err(AuthError::redirect(
                &target,
                "invalid_request",
                "code_challenge_method must be S256 or plain",
            ));
        }
        // RFC 7636 §4.2: 43 to 128 characters of [A-Za-z0-9-._~].
        let ok_chars = c
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-._~".contains(ch));
        if !(43..=128).contains(&c.len()) || !ok_chars {
            return Err(AuthError::redirect(
                &target,
                "invalid_request",
                "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
            ));
        }
    } else {
        code_challenge_method = None;
    }
    if response_type == ResponseType::Code && !client.is_confidential() && code_challenge.is_none()
    {
        return Err(AuthError::redirect(
            &target,
            "invalid_request",
            "Public clients must use PKCE: code_challenge is required",
        ));
    }
    let audience = text(p, "audience")?;
    if let Some(a) = &audience
        && st.api(a).is_none()
    {
        return Err(AuthError::redirect(
            &target,
            "access_denied",
            format!("Service not found: {}", clip(a)),
        ));
    }
    let scope = text(p, "scope")?.unwrap_or_else(|| "openid".into());
    let req = AuthRequest {
        client_id: client.client_id.clone(),
        redirect_uri,
        response_type,
        response_mode: mode,
        state,
        nonce,
        scope,
        audience,
        code_challenge,
        code_challenge_method,
        prompt: text(p, "prompt")?,
        login_hint: text(p, "login_hint")?,
        connection: text(p, "connection")?,
        ui_locales: text(p, "ui_locales")?,
        issued_at: st.now(),
    };
    Ok((client, req))
}

impl AuthRequest {
    pub fn target(&self) -> Target {
        Target {
            redirect_uri: self.redirect_uri.clone(),
            mode: self.response_mode,
            state: self.state.clone(),
        }
    }

    /// The parameters a magic link carries so that `verify_redirect` can finish this request.
    pub fn link_params(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("client_id", self.client_id.clone()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("response_type", self.response_type.as_str().to_string()),
            ("response_mode", self.response_mode.as_str().to_string()),
            ("scope", self.scope.clone()),
        ];
        for (k, val) in [
            ("state", &self.state),
            ("nonce", &self.nonce),
            ("audience", &self.audience),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
        ] {
            if let Some(x) = val {
                v.push((k, x.clone()));
            }
        }
        v
    }

    /// Sealed for the hosted page's hidden field (authenticated encryption: it cannot be
    /// altered on the way, and its content is not shown).
    pub fn seal(&self, st: &AppState) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(st.secret.seal(st.rng.as_ref(), SEAL_PURPOSE, &json))
    }

    pub fn unseal(st: &AppState, sealed: &str) -> Option<AuthRequest> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let json = st.secret.open(SEAL_PURPOSE, &raw).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

const SEAL_PURPOSE: &str = "tessera/authorize-request/v1";

/// Whether a PKCE verifier matches the stored challenge (RFC 7636 §4.6), in constant time.
pub fn pkce_matches(challenge: &str, method: &str, verifier: &str) -> bool {
    let ok_chars = verifier
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || "-._~".contains(ch));
    if !(43..=128).contains(&verifier.len()) || !ok_chars {
        return false;
    }
    let computed = match method {
        "S256" => URL_SAFE_NO_PAD.encode(sha256(verifier)),
        "plain" => verifier.to_string(),
        _ => return false,
    };
    ct_eq(computed.as_bytes(), challenge.as_bytes())
}

/// Finishes a request for a signed-in user: a code, or tokens, delivered in the requested
/// mode. Magic-link logins pass `allow_refresh = false`.
pub async fn complete(
    st: &AppState,
    client: &Client,
    req: &AuthRequest,
    user: &User,
    allow_refresh: bool,
) -> Result<Response, ApiError> {
    let now = st.now();
    let mut out: Vec<(String, String)> = Vec::new();
    match req.response_type {
        ResponseType::Code => {
            let code = token(st.rng.as_ref());
            st.store
                .insert_auth_code(&AuthCode {
                    code_hash: sha256(&code),
                    grant_id: hex_id(st.rng.as_ref()),
                    client_id: client.client_id.clone(),
                    user_id: user.user_id.clone(),
                    redirect_uri: req.redirect_uri.clone(),
                    scope: req.scope.clone(),
                    audience: req.audience.clone(),
                    nonce: req.nonce.clone(),
                    code_challenge: req.code_challenge.clone(),
                    code_challenge_method: req.code_challenge_method.clone(),
                    allow_refresh,
                    created_at: now,
                    expires_at: now + st.tokens.authorization_code_lifetime_secs,
                })
                .await?;
            out.push(("code".into(), code));
        }
        rt => {
            let mut scope = Scope::parse(&req.scope);
            if rt == ResponseType::IdToken && !scope.has("openid") {
                scope = Scope::parse(&format!("openid {}", req.scope));
            }
            let api = req.audience.as_deref().and_then(|a| st.api(a));
            let body = tokens::issue(
                st,
                Grant {
                    user,
                    client,
                    scope,
                    audience: api,
                    nonce: req.nonce.clone(),
                    refresh: Refresh::No,
                    grant_id: None,
                    at_hash: rt == ResponseType::TokenIdToken,
                    legacy_user_id: false,
                },
            )
            .await?;
            let get = |k: &str| body.get(k).map(value_text);
            if matches!(rt, ResponseType::Token | ResponseType::TokenIdToken) {
                for k in ["access_token", "scope", "expires_in", "token_type"] {
                    if let Some(v) = get(k) {
                        out.push((k.into(), v));
                    }
                }
            }
            if matches!(rt, ResponseType::IdToken | ResponseType::TokenIdToken)
                && let Some(v) = get("id_token")
            {
                out.push(("id_token".into(), v));
            }
        }
    }
    Ok(deliver(&req.target(), out))
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sends `params` (plus `state`) to the redirect URI in the response mode.
pub fn deliver(target: &Target, mut params: Vec<(String, String)>) -> Response {
    if let Some(s) = &target.state {
        params.push(("state".into(), s.clone()));
    }
    let encoded = || {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            ser.append_pair(k, v);
        }
        ser.finish().replace('+', "%20")
    };
    match target.mode {
        ResponseMode::Query => {
            let sep = if target.redirect_uri.contains('?') {
                '&'
            } else {
                '?'
            };
            redirect_to(&format!("{}{sep}{}", target.redirect_uri, encoded()))
        }
        ResponseMode::Fragment => redirect_to(&format!("{}#{}", target.redirect_uri, encoded())),
        ResponseMode::FormPost => form_post(&target.redirect_uri, &params),
        ResponseMode::WebMessage => web_message(&target.redirect_uri, &params),
    }
}

/// A `302 Found` that is never cached.
pub fn redirect_to(location: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Marks a response that may be shown in a frame of the given origin (web_message), so the
/// security-header middleware leaves `X-Frame-Options` off.
#[derive(Clone, Debug)]
pub struct AllowFraming;

fn script_nonce(st_rand: &[u8; 16]) -> String {
    URL_SAFE_NO_PAD.encode(st_rand)
}

fn fresh_nonce() -> String {
    let mut b = [0u8; 16];
    tessera_core::rand::Random::fill(&tessera_core::rand::SystemRandom, &mut b);
    script_nonce(&b)
}

fn form_post(redirect_uri: &str, params: &[(String, String)]) -> Response {
    let nonce = fresh_nonce();
    let esc = tessera_delivery::templates::escape_html;
    let mut inputs = String::new();
    for (k, v) in params {
        inputs.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        ));
    }
    let body = format!(
        "<!DOCTYPE html><html><head><title>Submit This Form</title><meta charset=\"utf-8\"></head>\
         <body><form method=\"post\" action=\"{}\">{inputs}<noscript><p>JavaScript is off. \
         Press the button to continue.</p><button type=\"submit\">Continue</button></noscript></form>\
         <script nonce=\"{nonce}\">document.forms[0].submit();</script></body></html>",
        esc(redirect_uri)
    );
    let action = origin_of(redirect_uri).unwrap_or_else(|| redirect_uri.to_string());
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; form-action {action}; frame-ancestors 'none'; base-uri 'none'"
    );
    html_with_csp(body, &csp, false)
}

fn web_message(redirect_uri: &str, params: &[(String, String)]) -> Response {
    let nonce = fresh_nonce();
    let origin = origin_of(redirect_uri).unwrap_or_default();
    let mut response = Map::new();
    for (k, v) in params {
        let value = if k == "expires_in" {
            v.parse::<i64>().map(Value::from).unwrap_or(json!(v))
        } else {
            json!(v)
        };
        response.insert(k.clone(), value);
    }
    // JSON inside <script>: `<` is escaped so no value can close the element.
    let js = |v: &Value| v.to_string().replace('<', "\\u003c");
    let body = format!(
        "<!DOCTYPE html><html><head><title>Authorization Response</title></head><body>\
         <script type=\"text/javascript\" nonce=\"{nonce}\">(function(window, document) {{\n\
         var targetOrigin = {};\n\
         var webMessageRequest = {{}};\n\
         var authorizationResponse = {{type: \"authorization_response\", response: {}}};\n\
         var mainWin = (window.opener) ? window.opener : window.parent;\n\
         if (webMessageRequest[\"web_message_uri\"] && webMessageRequest[\"web_message_target\"]) {{\n\
           window.addEventListener(\"message\", function(evt) {{}});\n\
         }} else {{\n\
           mainWin.postMessage(authorizationResponse, targetOrigin);\n\
         }}\n\
         }})(this, this.document);</script></body></html>",
        js(&json!(origin)),
        js(&Value::Object(response)),
    );
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; frame-ancestors {}; base-uri 'none'",
        if origin.is_empty() { "'none'" } else { &origin }
    );
    let mut r = html_with_csp(body, &csp, true);
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    r
}

/// The CSP of Tessera's own pages whose forms end in a redirect to the application: Chromium
/// applies `form-action` to the redirects that follow a form submission, so the application's
/// origin is allowed next to `'self'`.
pub fn page_csp_for(resp: &mut Response, redirect_uri: &str) {
    let target = origin_of(redirect_uri)
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'{target}"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// An HTML response with its own Content-Security-Policy.
pub fn html_with_csp(body: String, csp: &str, framable: bool) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html;charset=UTF-8")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(csp) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if framable {
        r.extensions_mut().insert(AllowFraming);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_types_parse_in_any_order() {
        assert_eq!(ResponseType::parse("code"), Some(ResponseType::Code));
        assert_eq!(
            ResponseType::parse("id_token token"),
            Some(ResponseType::TokenIdToken)
        );
        assert_eq!(
            ResponseType::parse("token id_token"),
            Some(ResponseType::TokenIdToken)
        );
        assert_eq!(ResponseType::parse("code id_token"), None);
        assert_eq!(ResponseType::parse(""), None);
    }

    #[test]
    fn pkce_s256_and_plain() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(challenge, "S256", verifier));
        assert!(!pkce_matches(challenge, "plain", verifier));
        assert!(pkce_matches(verifier, "plain", verifier));
        assert!(!pkce_matches(challenge, "S256", "short"));
        assert!(!pkce_matches(challenge, "S512", verifier));
    }
}
