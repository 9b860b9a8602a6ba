//! The places a message goes: e-mail, Mattermost, Pushover, a webhook. Each channel sends one
//! [`Message`] and says what it did as a JSON object for the record's `notified` field.

use std::path::PathBuf;

use lettre::message::Mailbox;
use serde_json::{Map, Value};

use crate::http::Failure;
use crate::template::Texts;

pub mod email;
pub mod mattermost;
pub mod pushover;
pub mod webhook;

/// One message, as every channel sees it.
#[derive(Debug)]
pub struct Message<'a> {
    /// Subject, title, body and link.
    pub texts: Texts,
    /// E-mail recipients.
    pub to: Vec<Mailbox>,
    /// Files to attach to the e-mail.
    pub attachments: Vec<PathBuf>,
    /// What the message is about: the record, or the digest summary (the webhook's default
    /// payload).
    pub data: &'a Map<String, Value>,
    /// The webhook payload a `--webhook-template` rendered, if there is one.
    pub payload: Option<Vec<u8>>,
}

/// A channel.
pub trait Channel: std::fmt::Debug {
    /// Its key in `notified`: `email`, `mattermost`, `pushover`, `webhook`.
    fn name(&self) -> &'static str;

    /// Sends the message; on success, the details for `notified` (besides `"status": "sent"`).
    fn send(&self, message: &Message<'_>) -> Result<Map<String, Value>, Failure>;

    /// What would be sent, for `--dry-run` (secrets left out).
    fn preview(&self, message: &Message<'_>) -> String;
}
