//! The email message as stored (sealed) in the outbox.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailMessage {
    /// A stable Message-ID (without angle brackets), kept across retries.
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl EmailMessage {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(b: &[u8]) -> Result<EmailMessage, serde_json::Error> {
        serde_json::from_slice(b)
    }
}

/// An email as the outbox keeps it: made when its code was issued, or, for the built-in
/// template, what that template shows, to be made when it is delivered
/// ([`crate::templates::queued`]). A made email is one and a half kilobytes, which SQLite
/// writes to its log twice (queued, then deleted once sent) and copies back into the database
/// file; what the built-in template shows is a few hundred bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Untagged, so that a message queued as an `EmailMessage` before this form existed still
// reads: each form has fields the other lacks.
#[serde(untagged)]
pub enum QueuedEmail {
    Builtin(BuiltinEmail),
    Made(EmailMessage),
}

/// What the built-in template shows, and the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuiltinEmail {
    pub message_id: String,
    pub from: String,
    pub to: String,
    /// One of [`crate::templates::LANGUAGES`], as picked from the request.
    pub lang: String,
    /// `code` or `link`.
    pub send: String,
    pub code: String,
    pub link: Option<String>,
    pub application_name: String,
    pub lifetime_minutes: i64,
}

impl QueuedEmail {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The email to send, made now if it was queued as the built-in template's.
    pub fn from_bytes(b: &[u8]) -> Result<EmailMessage, String> {
        match serde_json::from_slice(b).map_err(|e| e.to_string())? {
            QueuedEmail::Made(m) => Ok(m),
            QueuedEmail::Builtin(b) => crate::templates::made(b).map_err(|e| e.to_string()),
        }
    }
}
