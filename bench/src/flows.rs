//! The Auth0 API calls one benchmark operation makes, exactly as client SDKs make them, and
//! where the code comes from: the SMTP sink Tessera delivers to, or (with `--mailbox dev`) the
//! dev mailbox that dev mode serves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::sink::{Sink, Waiter};
use crate::tessera::{CALLBACK, CLIENT_ID, OTP_GRANT, SECRET};

/// How long a login waits for its code before it counts as an error.
const CODE_WAIT: Duration = Duration::from_secs(30);

/// Where codes are read.
#[derive(Clone)]
pub enum Codes {
    Smtp(Arc<Sink>),
    Dev,
}

/// A claim on the next code for one address, taken before `/passwordless/start`.
enum Pending {
    Smtp(Waiter),
    Dev(String),
}

/// A client of one running Tessera.
#[derive(Clone)]
pub struct Api {
    /// For the set-up calls and code-exchange (cookies, redirects, forms).
    pub http: reqwest::Client,
    /// For the calls the otp-login, start and userinfo loads are made of.
    pub wire: Arc<crate::wire::Client>,
    pub base: String,
    pub codes: Codes,
}

fn transport(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "transport: timeout".into()
    } else if e.is_connect() {
        "transport: connect".into()
    } else {
        "transport: other".into()
    }
}

fn status_err(r: &reqwest::Response) -> String {
    format!("HTTP {}", r.status().as_u16())
}

/// The body of a successful answer on the bench's own client, or the error the load counts
/// (the same categories as [`transport`] and [`status_err`]).
fn answered(r: Result<crate::wire::Response, crate::wire::Error>) -> Result<Vec<u8>, String> {
    match r {
        Err(crate::wire::Error::Connect) => Err("transport: connect".into()),
        Err(crate::wire::Error::Other(_)) => Err("transport: other".into()),
        Ok(r) if (200..300).contains(&r.status) => Ok(r.body),
        Ok(r) => Err(format!("HTTP {}", r.status)),
    }
}

impl Api {
    /// POSTs `body` as JSON; the answer's body when the status is 2xx. The bodies are
    /// serialised from structs and the answers read as they come, rather than through
    /// `serde_json::Value` (a map per object, a string per field): the bench shares the two
    /// cores with Tessera, so what it spends is taken from the logins it measures.
    async fn post(&self, path: &str, body: &impl serde::Serialize) -> Result<Vec<u8>, String> {
        let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        answered(
            self.wire
                .request("POST", path, &[], Some(("application/json", &body)))
                .await,
        )
    }

    /// `POST /passwordless/start` for an email code, as a confidential application's backend
    /// sends it.
    pub async fn start(&self, client_id: &str, email: &str) -> Result<(), String> {
        #[derive(serde::Serialize)]
        struct Start<'a> {
            client_id: &'a str,
            client_secret: &'a str,
            connection: &'a str,
            email: &'a str,
            send: &'a str,
        }
        let answer = self
            .post(
                "/passwordless/start",
                &Start {
                    client_id,
                    client_secret: SECRET,
                    connection: "email",
                    email,
                    send: "code",
                },
            )
            .await?;
        // Tessera answers an email start with a JSON object (Auth0's shape); anything else is
        // an error, as it was when the answer was parsed whole.
        serde_json::from_slice::<serde::de::IgnoredAny>(&answer)
            .map(|_| ())
            .map_err(|_| "bad JSON".to_string())
    }

    fn expect(&self, email: &str) -> Pending {
        match &self.codes {
            Codes::Smtp(sink) => Pending::Smtp(sink.expect(email)),
            Codes::Dev => Pending::Dev(email.to_string()),
        }
    }

    async fn code(&self, pending: Pending) -> Result<String, String> {
        match pending {
            Pending::Smtp(w) => tokio::time::timeout(CODE_WAIT, w.code())
                .await
                .map_err(|_| "no code delivered".to_string())?,
            Pending::Dev(email) => self.dev_mailbox_code(&email).await,
        }
    }

    /// Polls the dev mailbox (the delivery path of dev mode without SMTP) for `to`'s code.
    async fn dev_mailbox_code(&self, to: &str) -> Result<String, String> {
        let until = tokio::time::Instant::now() + CODE_WAIT;
        while tokio::time::Instant::now() < until {
            let v: Value = self
                .http
                .get(format!("{}/_dev/mailbox.json", self.base))
                .send()
                .await
                .map_err(transport)?
                .json()
                .await
                .map_err(|_| "mailbox JSON".to_string())?;
            if let Some(code) = v["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["to"] == to)
                .and_then(|m| m["subject"].as_str())
                .and_then(|s| s.split_whitespace().next())
            {
                return Ok(code.to_string());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Err("no code in the mailbox".into())
    }

    /// The whole email-code sign-in: start, the code as delivered, then the OTP grant. Checks
    /// that the id_token is signed with `alg`.
    pub async fn otp_login(
        &self,
        client_id: &str,
        alg: &str,
        email: &str,
    ) -> Result<Tokens, String> {
        self.otp_login_timed(client_id, alg, email)
            .await
            .map(|(tokens, _)| tokens)
    }

    /// [`Api::otp_login`], also returning how long each step took: start, waiting for the
    /// code, the token request.
    pub async fn otp_login_timed(
        &self,
        client_id: &str,
        alg: &str,
        email: &str,
    ) -> Result<(Tokens, [Duration; 3]), String> {
        let t0 = Instant::now();
        let pending = self.expect(email);
        self.start(client_id, email).await?;
        let t1 = Instant::now();
        let code = self.code(pending).await?;
        let t2 = Instant::now();
        #[derive(serde::Serialize)]
        struct Grant<'a> {
            grant_type: &'a str,
            client_id: &'a str,
            client_secret: &'a str,
            username: &'a str,
            otp: &'a str,
            realm: &'a str,
            scope: &'a str,
        }
        let answer = self
            .post(
                "/oauth/token",
                &Grant {
                    grant_type: OTP_GRANT,
                    client_id,
                    client_secret: SECRET,
                    username: email,
                    otp: &code,
                    realm: "email",
                    scope: "openid email",
                },
            )
            .await?;
        let tokens: Tokens = serde_json::from_slice(&answer).map_err(|_| "bad JSON".to_string())?;
        let got = tokens
            .id_token
            .as_deref()
            .and_then(jwt_alg)
            .unwrap_or_else(|| "none".into());
        if got != alg {
            return Err(format!("id_token alg {got}, not {alg}"));
        }
        Ok((tokens, [t1 - t0, t2 - t1, t2.elapsed()]))
    }

    /// `GET /userinfo` with an access token.
    pub async fn userinfo(&self, access_token: &str) -> Result<(), String> {
        let auth = format!("Bearer {access_token}");
        answered(
            self.wire
                .request("GET", "/userinfo", &[("authorization", &auth)], None)
                .await,
        )
        .map(|_| ())
    }

    /// A Tessera session cookie, the way Lock gets one: start, the code, `/co/authenticate`,
    /// then `/authorize` with the login ticket.
    pub async fn session_cookie(&self) -> Result<String, String> {
        let email = "session@bench.test";
        let pending = self.expect(email);
        self.start(CLIENT_ID, email).await?;
        let code = self.code(pending).await?;
        let r = self
            .http
            .post(format!("{}/co/authenticate", self.base))
            .json(&json!({"client_id": CLIENT_ID, "username": email, "otp": code, "realm": "email", "credential_type": OTP_GRANT}))
            .send()
            .await
            .map_err(transport)?;
        let co_cookie = cookies(&r);
        let ticket: Value = r.json().await.map_err(|_| "bad JSON".to_string())?;
        let r = no_redirect(1)?
            .get(format!(
                "{}/authorize?client_id={CLIENT_ID}&response_type=code&redirect_uri={}&scope=openid&realm=email&login_ticket={}",
                self.base,
                urlencode(CALLBACK),
                ticket["login_ticket"].as_str().unwrap_or_default()
            ))
            .header("cookie", co_cookie)
            .send()
            .await
            .map_err(transport)?;
        cookies(&r)
            .split("; ")
            .find(|c| c.starts_with("tessera_session="))
            .map(str::to_string)
            .ok_or_else(|| "no session cookie".to_string())
    }

    /// `/authorize?prompt=none` with a session gives a code; the backend exchanges it.
    /// `http` must not follow redirects.
    pub async fn code_exchange(&self, http: &reqwest::Client, cookie: &str) -> Result<(), String> {
        let r = http
            .get(format!(
                "{}/authorize?client_id={CLIENT_ID}&response_type=code&redirect_uri={}&scope=openid&prompt=none",
                self.base,
                urlencode(CALLBACK)
            ))
            .header("cookie", cookie)
            .send()
            .await
            .map_err(transport)?;
        let location = r
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default();
        let code = location
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("code="))
            .map(str::to_string)
            .ok_or_else(|| status_err(&r))?;
        let t = http
            .post(format!("{}/oauth/token", self.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("code", &code),
                ("redirect_uri", CALLBACK),
            ])
            .send()
            .await
            .map_err(transport)?;
        if t.status().is_success() {
            Ok(())
        } else {
            Err(status_err(&t))
        }
    }
}

/// A client that does not follow redirects (to read `/authorize`'s `Location`).
pub fn no_redirect(pool: usize) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(pool)
        .build()
        .map_err(|e| e.to_string())
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn cookies(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `alg` of a JWT's header.
/// What the bench reads of an `/oauth/token` answer.
#[derive(Debug, serde::Deserialize)]
pub struct Tokens {
    pub access_token: Option<String>,
    pub id_token: Option<String>,
}

pub fn jwt_alg(jwt: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(jwt.split('.').next()?).ok()?;
    let v: Value = serde_json::from_slice(&header).ok()?;
    v["alg"].as_str().map(str::to_string)
}
