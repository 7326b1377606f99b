//! `POST /passwordless/start`: sends a one-time code.
//!
//! Parse → authenticate the application → check the connection and identifier → store the
//! code (hashed) and the sealed message in one transaction → wake the outbox → answer. No
//! request waits on SMTP. Blocked users, and unknown users when sign-up is disabled, get the
//! same answer as everyone else and are sent nothing; the answer never says whether the
//! address has an account.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};
use tessera_core::connection::{Connection, Strategy};
use tessera_core::email::EmailAddress;
use tessera_core::otp;
use tessera_core::phone::{PhoneError, PhoneNumber};
use tessera_core::rand::hex_id;
use tessera_delivery::SmsMessage;
use tessera_delivery::outbox::{Handed, SEAL_PURPOSE, VOID_CHANNEL};
use tessera_delivery::templates::{self, EmailVars, SmsVars};
use tessera_store::{
    IssueEvents, IssueOptions, Issued, NewChallenge, NewOutboxMessage, OutboxMessage,
};

use crate::cache::Lookup;
use crate::clientauth::{self, Endpoint};
use crate::error::ApiError;
use crate::limits;
use crate::params::Params;
use crate::routes::{Body, no_store_json, parse_body};
use crate::state::{AppState, RequestMeta};
use tessera_core::client::Client;

/// The properties `/passwordless/start` accepts; anything else is refused as Auth0 does.
const ALLOWED: &[&str] = &[
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "connection",
    "email",
    "phone_number",
    "send",
    "authParams",
    "captcha",
];

pub async fn start(
    State(st): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    // The per-IP limit counts every request, good or bad, and every answer carries its state.
    // The IP is the connecting client's, unless a confidential application that just proved
    // its secret, and is trusted to, names its end user's IP in `auth0-forwarded-for` (the
    // way a regular web app's back end calls this endpoint for its users).
    let rl = &st.rate_limits;
    let authed = parse_and_authenticate(&st, &headers, &body, Lookup::Cached).await;
    let mut meta = meta;
    if let (Ok((p, client, _)), Some(fwd)) = (&authed, meta.forwarded_for)
        && client.is_confidential()
        && client.settings.trust_forwarded_for
        && proved_secret(&headers, p)
    {
        meta.ip = Some(fwd);
    }
    let ip = meta.ip_key();
    let ip_state = limits::hit(
        &st,
        &format!("start:ip:{ip}"),
        rl.start_per_ip,
        rl.start_per_ip_window_secs,
    )
    .await?;
    let result = match (ip_state, authed) {
        (Some(s), _) if s.exceeded() => {
            st.event("limit_mu", &meta, |e| {
                e.description = "Too many /passwordless/start requests from one IP".into()
            })
            .await;
            Err(limits::too_many_requests(&s))
        }
        (_, Err(e)) => Err(e),
        (_, Ok((p, client, version))) => {
            match start_checked(&st, &meta, p, client, version, Count::Limits).await {
                // The in-memory application or connection was out of date and nothing was
                // stored: once more on fresh reads. The limits (set in the file, not the
                // database) already counted and allowed this request.
                Err(e) if e.is_stale_config() => {
                    match parse_and_authenticate(&st, &headers, &body, Lookup::Fresh).await {
                        Ok((p, client, _)) => {
                            start_checked(&st, &meta, p, client, None, Count::Nothing).await
                        }
                        Err(e) => Err(e),
                    }
                }
                other => other,
            }
        }
    };
    match (result, ip_state) {
        (Ok(mut resp), Some(s)) => {
            s.apply(&mut resp);
            Ok(resp)
        }
        (Err(mut e), Some(s)) if e.headers.is_empty() => {
            e.headers = s.headers();
            Err(e)
        }
        (other, _) => other,
    }
}

/// Whether the request carried the client secret (which `authenticate` then checked): a
/// browser call let in by its origin (`allow_browser_start`) did not, and its
/// `auth0-forwarded-for` header is not believed.
fn proved_secret(headers: &HeaderMap, p: &Params) -> bool {
    matches!(p.str("client_secret"), Ok(Some(_)))
        || headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // Exactly the forms clientauth reads: anything else was not checked as a secret.
            .is_some_and(|v| v.starts_with("Basic ") || v.starts_with("basic "))
}

/// Reads the body, refuses unknown properties, and authenticates the application. With
/// [`Lookup::Cached`] the application may come from memory: then the version of its copy comes
/// back too, for the store to check.
async fn parse_and_authenticate(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    lookup: Lookup,
) -> Result<(Params, Client, Option<i64>), ApiError> {
    let p = parse_body(body, "bad.request")?;
    if let Some(k) = p.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            "bad.request",
            format!("the following properties are not allowed: {k}"),
        ));
    }
    match lookup {
        Lookup::Cached => {
            let (client, version) =
                clientauth::authenticate_cached(st, headers, &p, Endpoint::PasswordlessStart)
                    .await?;
            Ok((p, client, version))
        }
        Lookup::Fresh => {
            let client =
                clientauth::authenticate(st, headers, &p, Endpoint::PasswordlessStart).await?;
            Ok((p, client, None))
        }
    }
}

/// Whether a pass through [`start_checked`] counts the request against the limits (the
/// second pass after a stale in-memory configuration does not count it again).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Count {
    Limits,
    Nothing,
}

async fn start_checked(
    st: &AppState,
    meta: &RequestMeta,
    p: Params,
    client: Client,
    version: Option<i64>,
    count: Count,
) -> Result<Response, ApiError> {
    let rl = &st.rate_limits;
    if count == Count::Limits {
        let key = format!("start:client:{}", client.client_id);
        limits::enforce(
            st,
            &key,
            rl.start_per_client,
            rl.start_per_client_window_secs,
        )
        .await?;
    }
    let connection = connection_for(st, &p, &client, version).await?;
    let sms = connection.strategy == Strategy::Sms;
    let send = match p.str("send") {
        // Auth0's defaults: a link by email, a code by SMS.
        Ok(None) if sms => "code",
        Ok(None) | Ok(Some("link")) if !sms => "link",
        Ok(Some("code")) => "code",
        _ if sms => {
            return Err(ApiError::bad_request(
                "bad.send",
                "error in send - must be code for the sms connection",
            ));
        }
        _ => {
            return Err(ApiError::bad_request(
                "bad.send",
                "error in send - must be one of: link, code",
            ));
        }
    };
    let mut auth_params = match p.get("authParams") {
        None => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(v) => {
            return Err(ApiError::bad_request(
                "bad.authParams",
                format!(
                    "error in authParams - invalid type: {} (expected object)",
                    type_name(v)
                ),
            ));
        }
    };
    if send == "link" {
        match link_params(&client, &mut auth_params) {
            // The callbacks came from memory: a refusal is confirmed on fresh reads.
            Err(_) if version.is_some() => return Err(ApiError::stale_config()),
            other => other?,
        }
    }
    let (email, phone);
    let to = if sms {
        phone = phone_for(st, &p)?;
        Recipient::Phone(&phone)
    } else {
        email = email_for(&p)?;
        Recipient::Email(&email)
    };

    if count == Count::Limits {
        // Per identifier: counted for every address, known or not, so the answer stays the
        // same.
        let key = format!("start:id:{}:{}", connection.name, to.as_str());
        limits::enforce(
            st,
            &key,
            rl.start_per_identifier,
            rl.start_per_identifier_window_secs,
        )
        .await?;
        if let Recipient::Phone(phone) = to {
            sms_limits(st, meta, &client, phone).await?;
        }
    }
    let id = st.ordered_id();
    issue_code(
        st,
        meta,
        &client,
        &connection,
        to,
        &id,
        send,
        &auth_params,
        version,
    )
    .await?;
    // `email_verified` / `phone_verified` is always false: answering true for known users would
    // tell anyone which addresses have accounts. Clients only check the status.
    Ok(no_store_json(match to {
        Recipient::Email(e) => json!({
            "_id": id,
            "email": e.as_str(),
            "email_verified": false,
        }),
        Recipient::Phone(ph) => json!({
            "_id": id,
            "phone_number": ph.as_str(),
            "phone_verified": false,
            "request_language": meta.language,
        }),
    }))
}

fn email_for(p: &Params) -> Result<EmailAddress, ApiError> {
    match p.str("email") {
        Ok(None) => Err(ApiError::bad_request(
            "bad.email",
            "Missing required property: email",
        )),
        Err(_) => Err(ApiError::bad_request(
            "bad.email",
            "error in email - invalid type (expected string)",
        )),
        Ok(Some(raw)) => EmailAddress::parse(raw).map_err(|_| {
            ApiError::bad_request(
                "bad.email",
                format!(
                    "error in email - email format validation failed: {}",
                    raw.chars().take(254).collect::<String>()
                ),
            )
        }),
    }
}

/// An E.164 number that exists, in a country the connection allows.
fn phone_for(st: &AppState, p: &Params) -> Result<PhoneNumber, ApiError> {
    let bad = |d: &str| ApiError::bad_request("bad.phone_number", d);
    let raw = match p.str("phone_number") {
        Ok(None) => return Err(bad("Missing required property: phone_number")),
        Err(_) => {
            return Err(bad(
                "error in phone_number - invalid type (expected string)",
            ));
        }
        Ok(Some(raw)) => raw,
    };
    let phone = PhoneNumber::parse(raw).map_err(|e| match e {
        PhoneError::NotE164 => bad("String does not match pattern: ^\\+[0-9]{1,15}$"),
        PhoneError::Invalid => bad("The phone number is not a valid number for its country"),
    })?;
    if !country_allowed(st, &phone) {
        return Err(bad("Sending codes to this country is not allowed"));
    }
    Ok(phone)
}

/// Whether the sms connection may send to this number's country (`allowed_countries`).
pub fn country_allowed(st: &AppState, phone: &PhoneNumber) -> bool {
    let allowed = st
        .sms
        .as_ref()
        .map(|o| o.allowed_countries.as_slice())
        .unwrap_or_default();
    allowed.is_empty() || allowed.contains(&phone.country_code())
}

/// Toll-fraud limits: per number, per prefix, and a global hourly budget. Counted for every
/// request, sent or not; an alarm event when a prefix receives many codes that nobody uses.
pub async fn sms_limits(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    phone: &PhoneNumber,
) -> Result<(), ApiError> {
    let Some(o) = &st.sms else { return Ok(()) };
    let prefix = phone.prefix();
    for (key, limit, what) in [
        (
            format!("sms:number:{}", phone.as_str()),
            o.per_number_per_hour,
            "number",
        ),
        (
            format!("sms:prefix:{prefix}"),
            o.per_prefix_per_hour,
            "prefix",
        ),
        ("sms:budget".to_string(), o.budget_per_hour, "hourly budget"),
    ] {
        if let Some(state) = limits::hit(st, &key, limit, 3600).await?
            && state.exceeded()
        {
            st.event("limit_sms", meta, |e| {
                e.client_id = Some(client.client_id.clone());
                e.connection = Some("sms".into());
                e.description = format!("SMS {what} limit reached (prefix {prefix})");
            })
            .await;
            // Without the x-ratelimit headers: they would tell how much of the budget is left.
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Too many text messages were asked for. Try again later.",
            ));
        }
    }
    let sent = st
        .store
        .hit_rate_limit(&format!("sms:sent:{prefix}"), 3600, st.now())
        .await?
        .count;
    let verified = st
        .store
        .peek_rate_limit(&format!("sms:verified:{prefix}"), 3600, st.now())
        .await?
        .count;
    if o.alarm_min_sent > 0
        && sent >= o.alarm_min_sent
        && (verified as f64) < o.alarm_verified_ratio * sent as f64
        && (sent == o.alarm_min_sent || sent % 10 == 0)
    {
        tracing::warn!(
            country = phone.country_code(),
            sent,
            verified,
            "possible SMS pumping: many codes, few sign-ins (see the sms_pumping event)"
        );
        st.event("sms_pumping", meta, |e| {
            e.client_id = Some(client.client_id.clone());
            e.connection = Some("sms".into());
            e.description = format!(
                "Possible SMS pumping: {sent} codes to {prefix}… this hour, {verified} used"
            );
        })
        .await;
    }
    Ok(())
}

/// Checks what a magic link will carry: `redirect_uri` must be an allowed callback (the
/// application's only one when absent), `response_type` defaults to `code`, and every value
/// must be a string.
fn link_params(client: &Client, auth_params: &mut Value) -> Result<(), ApiError> {
    let Value::Object(map) = auth_params else {
        return Ok(());
    };
    for (k, v) in map.iter_mut() {
        match v {
            Value::String(_) => {}
            Value::Number(n) => *v = Value::String(n.to_string()),
            Value::Bool(b) => *v = Value::String(b.to_string()),
            _ => {
                return Err(ApiError::bad_request(
                    "bad.authParams",
                    format!("error in authParams - {k} must be a string"),
                ));
            }
        }
    }
    match map.get("redirect_uri").and_then(Value::as_str) {
        Some(r) if client.allows_callback(r) => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "bad.redirect_uri",
                "The redirect_uri is not in the list of allowed callback URLs",
            ));
        }
        None => match client.settings.callbacks.as_slice() {
            [only] => {
                map.insert("redirect_uri".into(), Value::String(only.clone()));
            }
            _ => {
                return Err(ApiError::bad_request(
                    "bad.redirect_uri",
                    "authParams.redirect_uri is required for magic links",
                ));
            }
        },
    }
    map.entry("response_type")
        .or_insert_with(|| Value::String("code".into()));
    map.entry("scope")
        .or_insert_with(|| Value::String("openid".into()));
    Ok(())
}

/// The magic link: `verify_redirect` with the stored authParams and the code.
fn magic_link(
    issuer: &str,
    auth_params: &Value,
    code: &str,
    connection: &str,
    client_id: &str,
    email: &str,
) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    if let Value::Object(map) = auth_params {
        for (k, v) in map {
            let reserved = ["verification_code", "connection", "client_id", "email"];
            if let (Some(v), false) = (v.as_str(), reserved.contains(&k.as_str())) {
                ser.append_pair(k, v);
            }
        }
    }
    ser.append_pair("verification_code", code);
    ser.append_pair("connection", connection);
    ser.append_pair("client_id", client_id);
    ser.append_pair("email", email);
    format!(
        "{issuer}passwordless/verify_redirect?{}",
        ser.finish().replace('+', "%20")
    )
}

/// The connection the request names. With the version of an in-memory application, the
/// connection comes from memory too, and must carry the same version.
async fn connection_for(
    st: &AppState,
    p: &Params,
    client: &tessera_core::client::Client,
    version: Option<i64>,
) -> Result<Connection, ApiError> {
    let name = match p.str("connection") {
        Ok(Some(n)) if !n.is_empty() => n,
        Ok(_) => {
            return Err(ApiError::bad_request(
                "bad.connection",
                "Missing required property: connection",
            ));
        }
        Err(_) => {
            return Err(ApiError::bad_request(
                "bad.connection",
                "Connection does not exist",
            ));
        }
    };
    let conn = match version {
        Some(v) => match st.config.connection(st.store.as_ref(), name).await? {
            Some((c, cv)) if cv == v => Some((*c).clone()),
            Some(_) => return Err(ApiError::stale_config()),
            None => None,
        },
        None => st.store.get_connection(name).await?,
    };
    let Some(conn) = conn else {
        return Err(ApiError::bad_request(
            "bad.connection",
            "Connection does not exist",
        ));
    };
    if !client.has_connection(&conn.name) {
        // A refusal is never taken from the in-memory copies alone: on fresh reads again.
        if version.is_some() {
            return Err(ApiError::stale_config());
        }
        return Err(ApiError::bad_request(
            "bad.connection",
            "Connection is disabled",
        ));
    }
    Ok(conn)
}

/// Stores a new code for `to` and queues its message (a code or a magic link). Blocked users,
/// and unknown identities when sign-up is disabled, are sent nothing, but the work is the same
/// (rendering, sealing, one transaction), so the time taken does not tell known identities
/// from unknown ones; only the outbox channel differs, and the store picks it in the statement
/// that stores the code.
///
/// `version` is the version of the in-memory application and connection the request was
/// checked against (`None`: they were read from the database): if the database's differs,
/// nothing is stored and the answer is [`ApiError::stale_config`].
#[allow(clippy::too_many_arguments)]
pub async fn issue_code(
    st: &AppState,
    meta: &RequestMeta,
    client: &Client,
    connection: &Connection,
    to: Recipient<'_>,
    id: &str,
    send: &str,
    auth_params: &Value,
    version: Option<i64>,
) -> Result<(), ApiError> {
    let identifier = to.as_str();
    let now = st.now();
    let s = &connection.settings;
    let client_id = client.client_id.as_str();
    let app_name = client.settings.name.as_str();
    let code = otp::generate(st.rng.as_ref(), s.code_length);
    let link = (send == "link").then(|| {
        magic_link(
            &st.issuer,
            auth_params,
            &code,
            &connection.name,
            client_id,
            identifier,
        )
    });
    let expires_at = now + s.code_lifetime_secs;
    let domain = st
        .issuer
        .split("//")
        .nth(1)
        .and_then(|h| h.split(['/', ':']).next())
        .unwrap_or("tessera");
    let lifetime_minutes = (s.code_lifetime_secs + 59) / 60;
    let (channel, payload) = match to {
        Recipient::Email(email) => {
            let vars = EmailVars {
                code: code.clone(),
                link,
                send: send.to_string(),
                application_name: app_name.to_string(),
                client_id: client_id.to_string(),
                connection: connection.name.clone(),
                request_language: meta.language.clone(),
                user_email: email.as_str().to_string(),
                lifetime_minutes,
                tenant: st.tenant.clone(),
            };
            let message_id = format!("{}@{}", hex_id(st.rng.as_ref()), domain);
            let message = templates::queued(
                s.email_template.as_ref(),
                &vars,
                &st.email_from,
                &message_id,
            )
            .map_err(ApiError::internal)?;
            ("email", message.to_bytes())
        }
        Recipient::Phone(phone) => {
            let options = st.sms.as_ref();
            let vars = SmsVars {
                code: code.clone(),
                phone_number: phone.as_str().to_string(),
                application_name: app_name.to_string(),
                request_language: meta.language.clone(),
                lifetime_minutes,
                autofill_host: options
                    .is_none_or(|o| o.autofill_line)
                    .then(|| domain.to_string()),
            };
            let body = templates::render_sms(s.sms_template.as_ref(), &vars)
                .map_err(ApiError::internal)?;
            let sms = SmsMessage {
                to: phone.as_str().to_string(),
                body,
                ip: meta.ip_text(),
                user_agent: meta.user_agent.clone(),
            };
            ("sms", sms.to_bytes())
        }
    };
    let challenge = NewChallenge {
        id: id.to_string(),
        connection: connection.name.clone(),
        identifier: identifier.to_string(),
        client_id: client_id.to_string(),
        code_hash: st.secret.hash_code(&connection.name, identifier, &code),
        send: send.to_string(),
        auth_params: auth_params.to_string(),
        created_at: now,
        expires_at,
        max_attempts: s.max_attempts,
        ip: meta.ip_text(),
        user_agent: meta.user_agent.clone(),
    };
    let outbox = NewOutboxMessage {
        id: st.ordered_id(),
        channel: channel.into(),
        payload: st.secret.seal(st.rng.as_ref(), SEAL_PURPOSE, &payload),
        created_at: now,
        not_after: Some(expires_at),
    };
    // This node's worker takes the message from memory when it has room; else any worker
    // claims it from the store.
    let handoff = st.outbox_handoff.get();
    let slot = handoff.and_then(|h| h.reserve());
    let lease = handoff.filter(|_| slot.is_some()).map(|h| h.lease(now));
    let lease_until = lease.as_ref().map(|(_, until)| *until).unwrap_or(now);
    // Recorded either way (the operator sees which), so both paths do the same writes; in the
    // same write as the code, which alone knows which applies.
    let event = |deliver: bool| {
        st.new_event(if deliver { "cls" } else { "fcls" }, meta, |e| {
            e.client_id = Some(client_id.to_string());
            e.connection = Some(connection.name.clone());
            e.description = if deliver {
                format!("Passwordless {send} sent")
            } else {
                format!("Passwordless {send} not sent: blocked user, or unknown address with sign-up disabled")
            };
        })
    };
    let options = IssueOptions {
        allow_signup: !connection.settings.disable_signup,
        config_version: version,
        lease,
        events: Some(IssueEvents {
            sent: event(true),
            not_sent: event(false),
        }),
    };
    let deliver = match st
        .store
        .issue_challenge(&challenge, &outbox, &options)
        .await?
    {
        Issued::Stale { config_version } => {
            st.config.observe(config_version);
            return Err(ApiError::stale_config());
        }
        Issued::Queued { delivered } => delivered,
    };
    match slot {
        Some(slot) => {
            let channel = if deliver {
                outbox.channel
            } else {
                VOID_CHANNEL.into()
            };
            slot.send(Handed {
                message: OutboxMessage {
                    id: outbox.id,
                    channel,
                    payload: outbox.payload,
                    created_at: now,
                    not_after: outbox.not_after,
                    attempts: 1,
                },
                lease_until,
            });
        }
        None => st.outbox_wake.notify_one(),
    }
    if deliver {
        tracing::info!(connection = %connection.name, to = %to.masked(), client_id, send, "code issued");
    } else {
        tracing::info!(connection = %connection.name, to = %to.masked(), "no code sent (blocked user or sign-up disabled)");
    }
    // Counted as `AppState::event` counts the events it records.
    if let Some(events) = &options.events {
        let e = events.chosen(deliver);
        st.metrics.event(&e.kind, e.connection.as_deref());
    }
    Ok(())
}

/// Who a code goes to.
#[derive(Clone, Copy)]
pub enum Recipient<'a> {
    Email(&'a EmailAddress),
    Phone(&'a PhoneNumber),
}

impl Recipient<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            Recipient::Email(e) => e.as_str(),
            Recipient::Phone(p) => p.as_str(),
        }
    }

    fn masked(&self) -> String {
        match self {
            Recipient::Email(e) => e.masked(),
            Recipient::Phone(p) => p.masked(),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Array(_) => "array",
        Value::Null => "null",
        Value::Object(_) => "object",
    }
}
