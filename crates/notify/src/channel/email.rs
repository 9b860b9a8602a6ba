//! E-mail over SMTP with lettre: `smtps://` is implicit TLS, `smtp://` requires STARTTLS
//! unless the server is on this machine (or `--smtp-insecure` is given), where STARTTLS is used
//! when offered and plain SMTP is accepted otherwise.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};
use opsline::{Code, Secret, WithCode};
use serde_json::{Map, Value};

use super::{Channel, Message};
use crate::http::Failure;
use crate::redact::Redactor;
use crate::retry::Retry;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (`smtps://`, port 465).
    Implicit,
    /// STARTTLS, and fail if the server does not offer it.
    StartTlsRequired,
    /// STARTTLS if offered, plain otherwise (local servers, `--smtp-insecure`).
    StartTlsIfOffered,
}

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// Port (default 587 for `smtp://`, 465 for `smtps://`).
    pub port: u16,
    /// Protection.
    pub security: Security,
}

/// Parses `smtp://host[:port]` or `smtps://host[:port]`; credentials in the URL are refused
/// because the command line is visible to every user of the machine.
pub fn parse_endpoint(url: &str, insecure: bool) -> Result<Endpoint, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!("--smtp {url:?}: expected smtp://HOST[:PORT] or smtps://HOST[:PORT]")
    })?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('@') {
        return Err("--smtp: put the user in --smtp-user and the password in --smtp-password-file or NOTIFY_SMTP_PASSWORD, not in the URL".to_owned());
    }
    if authority.contains('/') || authority.is_empty() {
        return Err(format!("--smtp {url:?}: expected smtp://HOST[:PORT]"));
    }
    let (host, port) =
        split_host_port(authority).ok_or_else(|| format!("--smtp {url:?}: bad port"))?;
    let local = is_local(&host);
    let (default_port, security) = match scheme {
        "smtps" => (465, Security::Implicit),
        "smtp" if local || insecure => (587, Security::StartTlsIfOffered),
        "smtp" => (587, Security::StartTlsRequired),
        other => return Err(format!("--smtp: unknown scheme {other:?} (use smtp:// or smtps://)")),
    };
    Ok(Endpoint { host, port: port.unwrap_or(default_port), security })
}

fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), Some(port.parse().ok()?))),
        None => Some((authority.to_owned(), None)),
    }
}

/// True for `localhost` and loopback addresses: mail to them never crosses a network.
pub fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The SMTP settings.
#[derive(Debug)]
pub struct Settings<'a> {
    /// `--smtp`.
    pub url: &'a str,
    /// `--smtp-insecure`.
    pub insecure: bool,
    /// `--smtp-user`.
    pub user: Option<&'a str>,
    /// The password.
    pub password: Option<Secret>,
    /// `--smtp-ca-cert`.
    pub ca_cert: Option<&'a Path>,
    /// `--from`.
    pub from: &'a str,
    /// `--timeout`.
    pub timeout: Duration,
}

/// Sends mail through one SMTP server.
#[derive(Debug)]
pub struct Email {
    transport: SmtpTransport,
    from: Mailbox,
    server: String,
    retry: Retry,
    redactor: Redactor,
}

impl Email {
    /// Sets up the transport (no connection is made until the first message).
    pub fn new(settings: Settings<'_>, retry: Retry, redactor: Redactor) -> anyhow::Result<Self> {
        let endpoint = parse_endpoint(settings.url, settings.insecure)
            .map_err(|m| opsline::exit::err(Code::Usage, m))?;
        let from: Mailbox = settings.from.parse().with_code(Code::Usage, || {
            format!("--from {:?} is not an e-mail address", settings.from)
        })?;
        let tls = tls(&endpoint, settings.ca_cert)?;
        let mut builder = SmtpTransport::builder_dangerous(endpoint.host.as_str())
            .port(endpoint.port)
            .tls(tls)
            .timeout(Some(settings.timeout));
        match (settings.user, settings.password) {
            (Some(user), Some(password)) => {
                builder = builder
                    .credentials(Credentials::new(user.to_owned(), password.expose().to_owned()));
            }
            (Some(_), None) => {
                return Err(opsline::exit::err(
                    Code::Config,
                    "--smtp-user needs a password: --smtp-password-file or NOTIFY_SMTP_PASSWORD",
                ));
            }
            (None, Some(_)) => {
                tracing::warn!("an SMTP password is set but no --smtp-user: not logging in")
            }
            (None, None) => {}
        }
        let server = format!("{}:{}", endpoint.host, endpoint.port);
        Ok(Email { transport: builder.build(), from, server, retry, redactor })
    }

    fn build(&self, message: &Message<'_>) -> Result<(lettre::Message, Vec<String>), String> {
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(message.texts.subject.as_str())
            .date_now()
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_owned(),
            ));
        for to in &message.to {
            builder = builder.to(to.clone());
        }
        let text = SinglePart::plain(message.texts.body.clone());
        let mut names = Vec::new();
        let email = if message.attachments.is_empty() {
            builder.singlepart(text)
        } else {
            let mut parts = MultiPart::mixed().singlepart(text);
            for path in &message.attachments {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("cannot read attachment {}: {e}", path.display()))?;
                let name =
                    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                parts =
                    parts.singlepart(Attachment::new(name.clone()).body(bytes, content_type(path)));
                names.push(name);
            }
            builder.multipart(parts)
        };
        email.map(|e| (e, names)).map_err(|e| format!("cannot build the e-mail: {e}"))
    }

    fn deliver(&self, email: &lettre::Message) -> Result<u32, Failure> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match self.transport.send(email) {
                Ok(_) => return Ok(attempts),
                Err(e) => e,
            };
            let message = self.redactor.scrub(&format!("SMTP {}: {error}", self.server));
            let final_error = error.is_permanent() || error.is_tls() || error.is_client();
            if final_error || !self.retry.may_retry(attempts) {
                let message = if final_error {
                    message
                } else {
                    format!("{message} (gave up after {attempts} attempts)")
                };
                return Err(Failure { message, attempts });
            }
            let wait = self.retry.backoff(attempts);
            tracing::warn!("{message}; retrying in {:.1}s", wait.as_secs_f64());
            if !self.retry.wait(wait) {
                return Err(Failure {
                    message: format!("{message} (stopped before retrying)"),
                    attempts,
                });
            }
        }
    }
}

fn tls(endpoint: &Endpoint, ca_cert: Option<&Path>) -> anyhow::Result<Tls> {
    let mut params = TlsParameters::builder(endpoint.host.clone());
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .with_code(Code::Config, || format!("cannot read --smtp-ca-cert {}", path.display()))?;
        let cert = Certificate::from_pem(&pem)
            .with_code(Code::Config, || format!("{} is not a PEM certificate", path.display()))?;
        params = params.add_root_certificate(cert);
    }
    let params = params.build_rustls().code(Code::Config, "cannot set up TLS for SMTP")?;
    Ok(match endpoint.security {
        Security::Implicit => Tls::Wrapper(params),
        Security::StartTlsRequired => Tls::Required(params),
        Security::StartTlsIfOffered => Tls::Opportunistic(params),
    })
}

/// The attachment's type by its extension: mail clients preview images and text inline.
fn content_type(path: &Path) -> ContentType {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let mime = match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "txt" | "log" => "text/plain; charset=utf-8",
        "json" | "jsonl" => "application/json",
        "csv" => "text/csv; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "pdf" => "application/pdf",
        "gz" | "tgz" => "application/gzip",
        "zip" => "application/zip",
        "mp4" => "video/mp4",
        "flv" => "video/x-flv",
        _ => "application/octet-stream",
    };
    ContentType::parse(mime).expect("the table holds valid content types")
}

impl Channel for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    fn send(&self, message: &Message<'_>) -> Result<Map<String, Value>, Failure> {
        let (email, attached) =
            self.build(message).map_err(|message| Failure { message, attempts: 0 })?;
        let attempts = self.deliver(&email)?;
        let mut details = Map::new();
        let to: Vec<Value> = message.to.iter().map(|m| m.email.to_string().into()).collect();
        details.insert("to".into(), to.into());
        if !attached.is_empty() {
            details.insert("attachments".into(), attached.into());
        }
        details.insert("attempts".into(), attempts.into());
        Ok(details)
    }

    fn preview(&self, message: &Message<'_>) -> String {
        let to: Vec<String> = message.to.iter().map(ToString::to_string).collect();
        let attachments: Vec<String> =
            message.attachments.iter().map(|p| p.display().to_string()).collect();
        format!(
            "email via {} from {} to {}\nSubject: {}\nAttachments: {}\n\n{}",
            self.server,
            self.from,
            to.join(", "),
            message.texts.subject,
            if attachments.is_empty() { "none".to_owned() } else { attachments.join(", ") },
            message.texts.body.trim_end()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_choose_the_protection() {
        let e = parse_endpoint("smtp://mail.example.org", false).unwrap();
        assert_eq!((e.port, e.security), (587, Security::StartTlsRequired));
        let e = parse_endpoint("smtps://mail.example.org", false).unwrap();
        assert_eq!((e.port, e.security), (465, Security::Implicit));
        let e = parse_endpoint("smtp://localhost:25", false).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.security),
            ("localhost", 25, Security::StartTlsIfOffered)
        );
        let e = parse_endpoint("smtp://[::1]:2525/", false).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.security),
            ("::1", 2525, Security::StartTlsIfOffered)
        );
        let e = parse_endpoint("smtp://mail.example.org:25", true).unwrap();
        assert_eq!(e.security, Security::StartTlsIfOffered);
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(parse_endpoint("mail.example.org", false).is_err());
        assert!(parse_endpoint("http://mail.example.org", false).is_err());
        assert!(parse_endpoint("smtp://mail.example.org:x", false).is_err());
        let e = parse_endpoint("smtp://bob:hunter2@mail.example.org", false).unwrap_err();
        assert!(e.contains("--smtp-password-file") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn attachments_get_their_type() {
        assert_eq!(
            content_type(Path::new("/t/thumb.PNG")),
            ContentType::parse("image/png").unwrap()
        );
        assert_eq!(content_type(Path::new("/t/backup.log")), ContentType::TEXT_PLAIN);
        assert_eq!(
            content_type(Path::new("/t/blob")),
            ContentType::parse("application/octet-stream").unwrap()
        );
    }
}
