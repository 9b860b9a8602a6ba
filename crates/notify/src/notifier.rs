//! Turning a record (or a digest) into a message, sending it on every channel, and writing
//! down in the record what happened.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use lettre::message::Mailbox;
use opsline::{FieldPath, Record};
use serde_json::{Map, Value};

use crate::channel::{Channel, Message};
use crate::digest::Summary;
use crate::limit::RateLimit;
use crate::template::{TemplateError, Templates, record_context};

/// The record field notify adds.
pub const NOTIFIED: &str = "notified";

/// Who gets the e-mail and what is attached.
#[derive(Debug, Default)]
pub struct Addressing {
    /// `--to`.
    pub to: Vec<Mailbox>,
    /// `--to-field`.
    pub to_field: Option<FieldPath>,
    /// `--attach`.
    pub attach: Vec<PathBuf>,
    /// `--attach-field`.
    pub attach_fields: Vec<FieldPath>,
    /// `--max-attachment-size`, in bytes.
    pub max_attachment: u64,
}

/// Sends messages on every channel and keeps the tally.
#[derive(Debug)]
pub struct Notifier<'c> {
    channels: Vec<Box<dyn Channel + 'c>>,
    templates: Templates,
    addressing: Addressing,
    limit: Option<RateLimit>,
    dry_run: bool,
    undelivered: u64,
    suppressed: u64,
}

/// What became of one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent (or previewed) on every channel.
    Sent,
    /// Held back by `--max-per-minute`.
    Suppressed,
    /// At least one channel could not deliver it.
    Undelivered(String),
}

impl<'c> Notifier<'c> {
    /// A notifier over `channels`.
    pub fn new(
        channels: Vec<Box<dyn Channel + 'c>>,
        templates: Templates,
        addressing: Addressing,
        limit: Option<RateLimit>,
        dry_run: bool,
    ) -> Self {
        Notifier { channels, templates, addressing, limit, dry_run, undelivered: 0, suppressed: 0 }
    }

    /// Messages that could not be delivered so far.
    pub fn undelivered(&self) -> u64 {
        self.undelivered
    }

    /// Messages held back by the rate limit so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Sends the message for one record and adds `notified` (and an `error` when it failed).
    pub fn notify_record(&mut self, record: &mut Record) {
        let context = record_context(record);
        match self.templates.wanted(&context) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => return record.set_error(crate::TOOL, e),
        }
        let texts = match self.templates.render(&context) {
            Ok(texts) => texts,
            Err(e) => return record.set_error(crate::TOOL, e),
        };
        let payload = match self.templates.render_payload(&context).transpose() {
            Ok(payload) => payload,
            Err(e) => return record.set_error(crate::TOOL, e),
        };
        let (to, recipient_error) = self.recipients(record);
        let attachments = self.attachments(record);
        let data = record.as_map().clone();
        let message = Message { texts, to, attachments, data: &data, payload };
        let skip_email = recipient_error.is_some();
        let (notified, outcome) = self.send(&message, skip_email);
        add_notified(record, notified);
        let errors: Vec<String> = recipient_error
            .into_iter()
            .chain(match outcome {
                Outcome::Undelivered(message) => Some(message),
                Outcome::Sent | Outcome::Suppressed => None,
            })
            .collect();
        if !errors.is_empty() {
            record.set_error(crate::TOOL, errors.join("; "));
        }
    }

    /// True when `--when` (if given) picks the record.
    pub fn wants(&self, record: &Record) -> Result<bool, TemplateError> {
        self.templates.wanted(&record_context(record))
    }

    /// Sends one digest message; `Err` says why it could not be delivered.
    pub fn notify_digest(&mut self, summary: &Summary) -> Outcome {
        let value = serde_json::to_value(summary).expect("a summary serialises");
        let context = minijinja::Value::from_serialize(&value);
        let data = value.as_object().cloned().unwrap_or_default();
        let rendered = self.templates.render(&context).and_then(|texts| {
            let payload = self.templates.render_payload(&context).transpose()?;
            Ok((texts, payload))
        });
        let (texts, payload) = match rendered {
            Ok(rendered) => rendered,
            Err(e) => {
                self.undelivered += 1;
                return Outcome::Undelivered(e.to_string());
            }
        };
        let attachments = self.addressing.attach.clone();
        let message =
            Message { texts, to: self.addressing.to.clone(), attachments, data: &data, payload };
        self.send(&message, false).1
    }

    fn send(&mut self, message: &Message<'_>, skip_email: bool) -> (Map<String, Value>, Outcome) {
        let mut notified = Map::new();
        if let Some(limit) = &mut self.limit
            && !limit.admit(Instant::now())
        {
            self.suppressed += 1;
            notified.insert("suppressed".into(), "over --max-per-minute".into());
            return (notified, Outcome::Suppressed);
        }
        if self.dry_run {
            preview(&self.channels, message, skip_email, &mut notified);
            return (notified, Outcome::Sent);
        }
        let mut failures = Vec::new();
        for channel in &self.channels {
            if skip_email && channel.name() == "email" {
                continue;
            }
            let entry = match channel.send(message) {
                Ok(mut details) => {
                    details.insert("status".into(), "sent".into());
                    details
                }
                Err(failure) => {
                    tracing::error!("{}: {}", channel.name(), failure.message);
                    failures.push(format!("{}: {}", channel.name(), failure.message));
                    let mut details = Map::new();
                    details.insert("status".into(), "failed".into());
                    details.insert("attempts".into(), failure.attempts.into());
                    details
                }
            };
            notified.insert(channel.name().into(), reorder_status(entry));
        }
        if failures.is_empty() {
            return (notified, Outcome::Sent);
        }
        self.undelivered += 1;
        (notified, Outcome::Undelivered(failures.join("; ")))
    }

    /// The record's e-mail recipients, and the error when its recipient field is missing.
    fn recipients(&self, record: &Record) -> (Vec<Mailbox>, Option<String>) {
        let mut to = self.addressing.to.clone();
        let Some(field) = &self.addressing.to_field else { return (to, None) };
        match record.get_field(field).map(addresses) {
            Some(Ok(found)) if !found.is_empty() => {
                to.extend(found);
                (to, None)
            }
            Some(Ok(_)) | None => {
                (to, Some(format!("no recipient: the record has no field \"{field}\"")))
            }
            Some(Err(e)) => (to, Some(format!("bad recipient in \"{field}\": {e}"))),
        }
    }

    /// `--attach` files and the files `--attach-field` names; files that are gone or too big
    /// are left out with a warning, so the uploader still hears that the video is ready.
    fn attachments(&self, record: &Record) -> Vec<PathBuf> {
        let from_fields = self.addressing.attach_fields.iter().filter_map(|field| {
            record
                .get_field(field)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        });
        self.addressing
            .attach
            .iter()
            .cloned()
            .chain(from_fields)
            .filter(|path| attachable(path, self.addressing.max_attachment))
            .collect()
    }
}

fn attachable(path: &std::path::Path, max: u64) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() <= max => true,
        Ok(meta) if meta.is_file() => {
            tracing::warn!(file = %path.display(), bytes = meta.len(), "attachment larger than --max-attachment-size; sending without it");
            false
        }
        _ => {
            tracing::warn!(file = %path.display(), "attachment not found; sending without it");
            false
        }
    }
}

/// Adds this run's channels to `notified`, keeping what an earlier notify in the pipeline put
/// there (mail first, then a push, each by its own notify).
pub fn add_notified(record: &mut Record, notified: Map<String, Value>) {
    match record.as_map_mut().get_mut(NOTIFIED) {
        Some(Value::Object(earlier)) => earlier.extend(notified),
        _ => record.insert(NOTIFIED, Value::Object(notified)),
    }
}

/// `status` first in each channel's entry, for people reading the records.
fn reorder_status(mut entry: Map<String, Value>) -> Value {
    let mut ordered = Map::new();
    if let Some(status) = entry.remove("status") {
        ordered.insert("status".into(), status);
    }
    ordered.extend(entry);
    Value::Object(ordered)
}

fn preview(
    channels: &[Box<dyn Channel + '_>],
    message: &Message<'_>,
    skip_email: bool,
    notified: &mut Map<String, Value>,
) {
    let mut stderr = std::io::stderr().lock();
    for channel in channels.iter().filter(|c| !(skip_email && c.name() == "email")) {
        let _ = writeln!(stderr, "notify: dry run: {}", channel.preview(message));
        let mut entry = Map::new();
        entry.insert("status".into(), "dry-run".into());
        notified.insert(channel.name().into(), Value::Object(entry));
    }
}

/// Addresses from a field: `"a@b"`, `"a@b, c@d"` or `["a@b", "c@d"]`.
pub fn addresses(value: &Value) -> Result<Vec<Mailbox>, String> {
    let texts: Vec<&str> = match value {
        Value::String(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        Value::Null => Vec::new(),
        other => return Err(format!("{other} is not an e-mail address")),
    };
    texts
        .into_iter()
        .map(|t| t.parse().map_err(|_| format!("{t:?} is not an e-mail address")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn notified_keeps_earlier_channels() {
        let mut record = Record::from_map(
            json!({"kind": "video", "notified": {"email": {"status": "sent"}}})
                .as_object()
                .unwrap()
                .clone(),
        );
        let mut now = Map::new();
        now.insert("pushover".into(), json!({"status": "sent"}));
        add_notified(&mut record, now);
        assert_eq!(
            record.get(NOTIFIED).unwrap(),
            &json!({"email": {"status": "sent"}, "pushover": {"status": "sent"}})
        );
    }

    #[test]
    fn addresses_come_in_several_shapes() {
        let one = addresses(&json!("ann@example.org")).unwrap();
        assert_eq!(one[0].email.to_string(), "ann@example.org");
        assert_eq!(addresses(&json!("a@x.org, b@x.org")).unwrap().len(), 2);
        assert_eq!(addresses(&json!(["a@x.org", "Bob <b@x.org>"])).unwrap().len(), 2);
        assert!(addresses(&json!("not an address")).is_err());
        assert!(addresses(&json!(42)).is_err());
        assert!(addresses(&json!(null)).unwrap().is_empty());
    }
}
