//! HTTP delivery for the webhook, Mattermost and Pushover channels: one keep-alive agent,
//! timeouts, retries with backoff for 5xx and network errors, `Retry-After` for 429, and no
//! retry for other 4xx answers (their API error text is shown instead).

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use opsline::{Code, Secret, WithCode};
use ureq::Agent;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::redact::Redactor;
use crate::retry::Retry;

/// A request body.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// `application/json`.
    Json(&'a [u8]),
    /// `application/x-www-form-urlencoded`.
    Form(&'a [(&'a str, &'a str)]),
}

/// How one service's answers are read.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    /// The service's name in messages: `Mattermost`, `Pushover`, `webhook`.
    pub name: &'static str,
    /// What a 429 means when it is not "slow down" (Pushover: the monthly quota is spent).
    pub quota_429: Option<&'static str>,
    /// The error text of a failed answer's body.
    pub error_text: fn(&str) -> String,
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body, at most [`MAX_BODY`] bytes of it.
    pub body: String,
    /// Attempts it took.
    pub attempts: u32,
}

/// A message that could not be delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// What went wrong, secrets scrubbed.
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
}

/// The most of an answer's body that is read.
const MAX_BODY: u64 = 64 * 1024;

/// The longest API error text shown.
const MAX_ERROR_TEXT: usize = 300;

/// An HTTP client with the tool's retry policy.
#[derive(Debug)]
pub struct Http {
    agent: Agent,
    retry: Retry,
    redactor: Redactor,
}

/// What one attempt came to.
enum Attempt {
    Done(Reply),
    Fatal(String),
    Again { message: String, wait: Option<Duration> },
}

impl Http {
    /// A client with `timeout` per request (connect to last byte) that trusts the
    /// `ca_cert` PEM file's certificates instead of the built-in roots when one is given.
    pub fn new(
        timeout: Duration,
        ca_cert: Option<&Path>,
        retry: Retry,
        redactor: Redactor,
    ) -> anyhow::Result<Self> {
        let mut config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .user_agent(concat!("opsline-notify/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_cert {
            let roots = read_certificates(path)?;
            config = config.tls_config(
                TlsConfig::builder().root_certs(RootCerts::new_with_certs(&roots)).build(),
            );
        }
        Ok(Http { agent: config.build().new_agent(), retry, redactor })
    }

    /// POSTs `payload` to `url` with `headers`, retrying as the policy allows.
    pub fn post(
        &self,
        api: &Api,
        url: &str,
        headers: &[(String, Secret)],
        payload: Payload<'_>,
    ) -> Result<Reply, Failure> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (message, wait) = match self.attempt(api, url, headers, payload) {
                Attempt::Done(reply) => return Ok(Reply { attempts, ..reply }),
                Attempt::Fatal(message) => return Err(self.failure(message, attempts)),
                Attempt::Again { message, wait } => (message, wait),
            };
            if !self.retry.may_retry(attempts) {
                let message = format!("{message} (gave up after {attempts} attempts)");
                return Err(self.failure(message, attempts));
            }
            let wait = wait.unwrap_or_else(|| self.retry.backoff(attempts));
            if wait > self.retry.max_retry_after {
                let message = format!(
                    "{message}: the server asks to wait {}s, longer than --max-retry-after",
                    wait.as_secs()
                );
                return Err(self.failure(message, attempts));
            }
            tracing::warn!(
                "{}: {}; retrying in {:.1}s",
                api.name,
                self.redactor.scrub(&message),
                wait.as_secs_f64()
            );
            if !self.retry.wait(wait) {
                return Err(self.failure(format!("{message} (stopped before retrying)"), attempts));
            }
        }
    }

    fn failure(&self, message: String, attempts: u32) -> Failure {
        Failure { message: self.redactor.scrub(&message), attempts }
    }

    fn attempt(
        &self,
        api: &Api,
        url: &str,
        headers: &[(String, Secret)],
        payload: Payload<'_>,
    ) -> Attempt {
        let mut request = self.agent.post(url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.expose());
        }
        let sent = match payload {
            Payload::Json(bytes) => request.content_type("application/json").send(bytes),
            Payload::Form(fields) => request.send_form(fields.iter().copied()),
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return Attempt::Again { message: transport_error(&e), wait: None },
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body =
            response.body_mut().with_config().limit(MAX_BODY).read_to_string().unwrap_or_default();
        classify(api, status, body, retry_after)
    }
}

/// Decides what an answer means.
fn classify(api: &Api, status: u16, body: String, retry_after: Option<Duration>) -> Attempt {
    let text = || truncate((api.error_text)(&body).trim(), MAX_ERROR_TEXT);
    match status {
        200..=299 => Attempt::Done(Reply { status, body, attempts: 0 }),
        429 => match api.quota_429 {
            Some(meaning) => Attempt::Fatal(format!("{} answered 429: {meaning}", api.name)),
            None => Attempt::Again {
                message: format!("{} answered 429 Too Many Requests", api.name),
                wait: retry_after,
            },
        },
        400..=499 => {
            Attempt::Fatal(format!("{} refused the message ({status}): {}", api.name, text()))
        }
        500..=599 => Attempt::Again {
            message: format!("{} answered {status}: {}", api.name, text()),
            wait: retry_after,
        },
        _ => Attempt::Fatal(format!("{} answered an unexpected {status}", api.name)),
    }
}

fn transport_error(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "no answer before --timeout".to_owned(),
        ureq::Error::ConnectionFailed => "cannot connect".to_owned(),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        other => other.to_string(),
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The first `max` characters of `text`, with an ellipsis when something was cut.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if text.chars().count() > max => format!("{}…", &text[..cut]),
        _ => text.to_owned(),
    }
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<Certificate<'static>>> {
    let pem = std::fs::read(path)
        .with_code(Code::Config, || format!("cannot read CA certificate {}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(cert) = item
            .with_context(|| format!("{} is not PEM", path.display()))
            .code(Code::Config, "bad --ca-cert")?
        {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(opsline::exit::err(
            Code::Config,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: Api = Api { name: "Test", quota_429: None, error_text: |b| b.to_owned() };

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn answers_are_classified() {
        assert!(matches!(classify(&API, 200, "ok".into(), None), Attempt::Done(_)));
        assert!(matches!(
            classify(&API, 429, String::new(), Some(Duration::from_secs(2))),
            Attempt::Again { wait: Some(w), .. } if w == Duration::from_secs(2)
        ));
        assert!(matches!(
            classify(&API, 503, String::new(), None),
            Attempt::Again { wait: None, .. }
        ));
        let Attempt::Fatal(m) = classify(&API, 400, "bad channel".into(), None) else {
            panic!("400 is final")
        };
        assert_eq!(m, "Test refused the message (400): bad channel");
        let quota = Api { quota_429: Some("quota spent"), ..API };
        let Attempt::Fatal(m) = classify(&quota, 429, String::new(), None) else {
            panic!("a quota 429 is final")
        };
        assert!(m.contains("quota spent"));
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abcd", 4), "abcd");
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("", 3), "");
    }
}
