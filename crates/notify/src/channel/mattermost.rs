//! Mattermost incoming webhooks: `{"text", "username", "icon_url", "channel"}`; success is
//! 200 `ok`, errors are 400 with a JSON body carrying `id` and `message`.

use opsline::Secret;
use serde_json::{Map, Value, json};

use super::{Channel, Message};
use crate::http::{Api, Failure, Http, Payload, truncate};

/// Mattermost's post length limit (16383 characters since server 5.0).
pub const MAX_TEXT: usize = 16_383;

const API: Api = Api { name: "Mattermost", quota_429: None, error_text };

/// Posts to one incoming webhook.
#[derive(Debug)]
pub struct Mattermost<'h> {
    /// The webhook URL (a secret: it is the credential).
    pub url: Secret,
    /// `--channel`: overrides the webhook's channel.
    pub channel: Option<String>,
    /// `--username`: overrides the poster's name.
    pub username: Option<String>,
    /// `--icon-url`.
    pub icon_url: Option<String>,
    /// The HTTP client.
    pub http: &'h Http,
}

impl Mattermost<'_> {
    fn body(&self, message: &Message<'_>) -> Value {
        let text = chat_text(message, "**", MAX_TEXT);
        chat_post(text, &self.username, &self.channel, &self.icon_url)
    }
}

/// A Mattermost or Slack post: the text, and the name, channel and icon when given.
pub fn chat_post(
    text: String,
    username: &Option<String>,
    channel: &Option<String>,
    icon_url: &Option<String>,
) -> Value {
    let mut post = json!({ "text": text });
    for (key, value) in [("username", username), ("channel", channel), ("icon_url", icon_url)] {
        if let Some(value) = value {
            post[key] = Value::from(value.as_str());
        }
    }
    post
}

/// The title in bold (`**` Markdown, `*` Slack) over the body, cut to `max` characters.
pub fn chat_text(message: &Message<'_>, bold: &str, max: usize) -> String {
    let title = &message.texts.title;
    let body = message.texts.body.trim_end();
    let text = match (title.is_empty(), body.is_empty()) {
        (true, _) => body.to_owned(),
        (false, true) => format!("{bold}{title}{bold}"),
        (false, false) => format!("{bold}{title}{bold}\n{body}"),
    };
    truncate(&text, max)
}

impl Channel for Mattermost<'_> {
    fn name(&self) -> &'static str {
        "mattermost"
    }

    fn send(&self, message: &Message<'_>) -> Result<Map<String, Value>, Failure> {
        let body = serde_json::to_vec(&self.body(message)).expect("JSON values serialise");
        let reply = self.http.post(&API, self.url.expose(), &[], Payload::Json(&body))?;
        let mut details = Map::new();
        details.insert("attempts".into(), reply.attempts.into());
        Ok(details)
    }

    fn preview(&self, message: &Message<'_>) -> String {
        format!("mattermost (webhook URL hidden): {}", self.body(message))
    }
}

fn error_text(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => match (v["message"].as_str(), v["id"].as_str()) {
            (Some(message), Some(id)) => format!("{message} ({id})"),
            (Some(message), None) => message.to_owned(),
            _ => body.to_owned(),
        },
        Err(_) => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_show_message_and_id() {
        let body = r#"{"id":"web.incoming_webhook.invalid.app_error","message":"Invalid webhook.","status_code":400}"#;
        assert_eq!(error_text(body), "Invalid webhook. (web.incoming_webhook.invalid.app_error)");
        assert_eq!(error_text("plain"), "plain");
    }
}
