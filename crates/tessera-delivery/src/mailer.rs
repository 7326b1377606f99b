//! Where email goes: real SMTP, or (dev mode only) the in-memory dev mailbox.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::message::EmailMessage;
use crate::smtp::SmtpMailer;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying later (4xx answers, timeouts, connection failures).
    #[error("temporary delivery failure: {0}")]
    Transient(String),
    /// Retrying will not help (5xx answers, malformed addresses).
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
}

#[allow(clippy::large_enum_variant)] // one per server, never moved around
pub enum Mailer {
    Smtp(SmtpMailer),
    Dev(DevMailbox),
}

impl Mailer {
    pub async fn send(&self, msg: &EmailMessage) -> Result<(), DeliveryError> {
        match self {
            Mailer::Smtp(s) => s.send(msg).await,
            Mailer::Dev(d) => {
                d.push(msg);
                Ok(())
            }
        }
    }

    pub fn dev_mailbox(&self) -> Option<&DevMailbox> {
        match self {
            Mailer::Dev(d) => Some(d),
            Mailer::Smtp(_) => None,
        }
    }
}

/// Keeps the last 500 outgoing messages in memory. Exists only in dev mode.
#[derive(Clone, Default)]
pub struct DevMailbox {
    inner: Arc<Mutex<VecDeque<EmailMessage>>>,
}

const DEV_MAILBOX_CAP: usize = 500;

impl DevMailbox {
    pub fn push(&self, m: &EmailMessage) {
        let mut q = match self.inner.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        if q.len() >= DEV_MAILBOX_CAP {
            q.pop_front();
        }
        q.push_back(m.clone());
    }

    /// Newest first.
    pub fn messages(&self) -> Vec<EmailMessage> {
        let q = match self.inner.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        q.iter().rev().cloned().collect()
    }
}
