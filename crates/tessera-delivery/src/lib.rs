//! Delivery: how messages reach people, without any request waiting on it.
//!
//! `/passwordless/start` renders the message ([`templates`]), seals it, and stores it in the
//! outbox in the same transaction as the code. The [`outbox::Worker`] claims due messages with
//! a lease, hands them to a [`mailer::Mailer`] (real SMTP, or the dev mailbox in dev mode), and
//! settles each: delivered, retried with backoff, or given up and recorded.

pub mod mailer;
pub mod message;
pub mod mime;
pub mod outbox;
pub mod sms;
pub mod smtp;
pub mod stats;
pub mod templates;

pub use mailer::{DeliveryError, DevMailbox, Mailer};
pub use message::{BuiltinEmail, EmailMessage, QueuedEmail};
pub use sms::{SmsMessage, SmsProvider, SmsSender};
