//! A generic webhook: a JSON POST of the record (or digest), of a `--webhook-template`, or a
//! Slack-style `{"text": …}` payload, with extra headers.

use opsline::Secret;
use serde_json::{Map, Value};

use super::mattermost::{chat_post, chat_text};
use super::{Channel, Message};
use crate::http::{Api, Failure, Http, Payload, truncate};

/// What the webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The record itself (a digest: its summary with counts and lists)
    Record,
    /// The JSON that --webhook-template renders
    Template,
    /// A Slack-style message: {"text": "*title*\nbody"} with --channel, --username, --icon-url
    Slack,
}

/// Slack's advice: keep a message's text under 40,000 characters.
const SLACK_MAX_TEXT: usize = 40_000;

const API: Api = Api { name: "webhook", quota_429: None, error_text: |body| body.to_owned() };

/// Posts to one URL.
#[derive(Debug)]
pub struct Webhook<'h> {
    /// The URL (a secret when it came from a file: Slack's URLs are credentials).
    pub url: Secret,
    /// True when the URL may be shown (it came from the command line).
    pub url_public: bool,
    /// The payload.
    pub format: Format,
    /// Extra headers; their values may be tokens.
    pub headers: Vec<(String, Secret)>,
    /// For the Slack format: `--channel`, `--username`, `--icon-url`.
    pub channel: Option<String>,
    /// `--username`.
    pub username: Option<String>,
    /// `--icon-url`.
    pub icon_url: Option<String>,
    /// The HTTP client.
    pub http: &'h Http,
}

impl Webhook<'_> {
    fn body(&self, message: &Message<'_>) -> Vec<u8> {
        match self.format {
            Format::Record => serde_json::to_vec(message.data).expect("JSON values serialise"),
            Format::Template => message.payload.clone().unwrap_or_default(),
            Format::Slack => {
                let text = chat_text(message, "*", SLACK_MAX_TEXT);
                let post = chat_post(text, &self.username, &self.channel, &self.icon_url);
                serde_json::to_vec(&post).expect("JSON values serialise")
            }
        }
    }
}

impl Channel for Webhook<'_> {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn send(&self, message: &Message<'_>) -> Result<Map<String, Value>, Failure> {
        let body = self.body(message);
        let reply = self.http.post(&API, self.url.expose(), &self.headers, Payload::Json(&body))?;
        let mut details = Map::new();
        details.insert("http".into(), reply.status.into());
        details.insert("attempts".into(), reply.attempts.into());
        Ok(details)
    }

    fn preview(&self, message: &Message<'_>) -> String {
        let url = if self.url_public { self.url.expose() } else { "(URL hidden)" };
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        let body = String::from_utf8_lossy(&self.body(message)).into_owned();
        format!("webhook POST {url} (headers: {}): {}", names.join(", "), truncate(&body, 4000))
    }
}
