//! Pushover: POST `/1/messages.json` with `token`, `user`, `message` (≤ 1024 characters),
//! `title` (≤ 250), `url` (≤ 512), `priority`, `sound`. A 429 means the application's monthly
//! quota is spent: it is reported, never retried.

use opsline::Secret;
use serde_json::{Map, Value};

use super::{Channel, Message};
use crate::http::{Api, Failure, Http, Payload, truncate};

/// Pushover's limits, in characters.
pub const MAX_MESSAGE: usize = 1024;
/// Title limit.
pub const MAX_TITLE: usize = 250;
/// Supplementary URL limit.
pub const MAX_URL: usize = 512;

/// How often (seconds) an emergency message (priority 2) is repeated until acknowledged, and
/// for how long: Pushover requires both for that priority.
const EMERGENCY_RETRY: &str = "60";
const EMERGENCY_EXPIRE: &str = "3600";

const API: Api = Api {
    name: "Pushover",
    quota_429: Some(
        "the application's monthly message quota is spent; no more messages until it resets",
    ),
    error_text,
};

/// Sends push messages through Pushover.
#[derive(Debug)]
pub struct Pushover<'h> {
    /// `--pushover-api`: the API's base URL.
    pub api: String,
    /// The application token.
    pub token: Secret,
    /// The user (or group) key.
    pub user: Secret,
    /// `--priority`, -2 to 2.
    pub priority: Option<i8>,
    /// `--sound`.
    pub sound: Option<String>,
    /// The HTTP client.
    pub http: &'h Http,
}

impl Pushover<'_> {
    /// The message's fields, cut to Pushover's limits (secrets not included).
    fn fields(&self, message: &Message<'_>) -> Vec<(&'static str, String)> {
        let texts = &message.texts;
        let body = if texts.body.trim().is_empty() { &texts.title } else { &texts.body };
        let mut fields = vec![("message", truncate(body.trim_end(), MAX_MESSAGE))];
        if !texts.title.is_empty() {
            fields.push(("title", truncate(&texts.title, MAX_TITLE)));
        }
        match &texts.url {
            Some(url) if url.chars().count() <= MAX_URL => fields.push(("url", url.clone())),
            Some(_) => tracing::warn!(
                "Pushover: the --url text is longer than {MAX_URL} characters; sent without it"
            ),
            None => {}
        }
        if let Some(priority) = self.priority {
            fields.push(("priority", priority.to_string()));
            if priority == 2 {
                fields.push(("retry", EMERGENCY_RETRY.to_owned()));
                fields.push(("expire", EMERGENCY_EXPIRE.to_owned()));
            }
        }
        if let Some(sound) = &self.sound {
            fields.push(("sound", sound.clone()));
        }
        fields
    }
}

impl Channel for Pushover<'_> {
    fn name(&self) -> &'static str {
        "pushover"
    }

    fn send(&self, message: &Message<'_>) -> Result<Map<String, Value>, Failure> {
        let fields = self.fields(message);
        let mut form: Vec<(&str, &str)> =
            vec![("token", self.token.expose()), ("user", self.user.expose())];
        form.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
        let url = format!("{}/1/messages.json", self.api.trim_end_matches('/'));
        let reply = self.http.post(&API, &url, &[], Payload::Form(&form))?;
        let mut details = Map::new();
        details.insert("attempts".into(), reply.attempts.into());
        let answer: Value = serde_json::from_str(&reply.body).unwrap_or_default();
        if let Some(request) = answer.get("request").and_then(Value::as_str) {
            details.insert("request".into(), request.into());
        }
        Ok(details)
    }

    fn preview(&self, message: &Message<'_>) -> String {
        let fields: Map<String, Value> =
            self.fields(message).into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect();
        format!("pushover (token and user key hidden): {}", Value::Object(fields))
    }
}

fn error_text(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_default();
    match value.get("errors").and_then(Value::as_array) {
        Some(errors) => errors.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "),
        None => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_are_joined() {
        let body = r#"{"user":"invalid","errors":["user identifier is not a valid user, group, or subscribed user key"],"status":0,"request":"5042853c"}"#;
        assert_eq!(
            error_text(body),
            "user identifier is not a valid user, group, or subscribed user key"
        );
    }
}
