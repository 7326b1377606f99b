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
