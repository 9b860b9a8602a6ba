//! A real SMTP server (Debian's `python3-aiosmtpd`) on 127.0.0.1 that keeps every message it
//! accepts, for the test to parse back.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mailparse::{DispositionType, ParsedMail};
use serde::Deserialize;
use tempfile::TempDir;

use crate::net::{self, START_TIMEOUT};
use crate::tls::TestCa;

/// Debian's Python, which sees Debian's `python3-aiosmtpd` (a `python3` on `PATH` may not).
const PYTHON: &str = "/usr/bin/python3";

/// Another process may grab the free port before Python binds it; a new port is tried then.
const START_ATTEMPTS: usize = 3;

const SERVER_SCRIPT: &str = include_str!("smtp_server.py");

/// How the server protects its sessions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No TLS at all.
    #[default]
    Plain,
    /// STARTTLS offered; required before AUTH, optional otherwise.
    StartTls,
    /// STARTTLS required before MAIL.
    StartTlsRequired,
    /// TLS from the first byte (smtps, port 465 style).
    ImplicitTls,
}

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct SmtpOptions {
    /// TLS mode; TLS modes use a fresh [`TestCa`], see [`Smtp::ca`].
    pub security: SmtpSecurity,
    /// `(user, password)` accepted with AUTH PLAIN or LOGIN; when set, sending requires it.
    pub auth: Option<(String, String)>,
}

/// A file attached to a message.
#[derive(Clone, Debug)]
pub struct Attachment {
    /// The `filename` (or content type `name`) parameter.
    pub filename: Option<String>,
    /// The part's MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// The decoded bytes.
    pub bytes: Vec<u8>,
}

/// One accepted message.
#[derive(Clone, Debug)]
pub struct Mail {
    /// The envelope sender (`MAIL FROM`).
    pub envelope_from: String,
    /// The envelope recipients (`RCPT TO`), in order.
    pub recipients: Vec<String>,
    /// Whether the session was encrypted (STARTTLS or implicit TLS) when the message came.
    pub tls: bool,
    /// The login the session authenticated with, if any.
    pub auth_user: Option<String>,
    /// The message as received.
    pub raw: Vec<u8>,
    /// Top-level headers, values decoded (RFC 2047), in order.
    pub headers: Vec<(String, String)>,
    /// The first `text/plain` part that is not an attachment, decoded.
    pub text: Option<String>,
    /// The first `text/html` part that is not an attachment, decoded.
    pub html: Option<String>,
    /// Every attached file, in order.
    pub attachments: Vec<Attachment>,
}

impl Mail {
    /// The first value of top-level header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn parse(meta: Envelope, raw: Vec<u8>) -> Result<Self> {
        let parsed = mailparse::parse_mail(&raw).context("parsing a received message")?;
        let headers =
            parsed.get_headers().into_iter().map(|h| (h.get_key(), h.get_value())).collect();
        let mut mail = Self {
            envelope_from: meta.mail_from,
            recipients: meta.rcpt_tos,
            tls: meta.tls,
            auth_user: meta.auth_user,
            raw: Vec::new(),
            headers,
            text: None,
            html: None,
            attachments: Vec::new(),
        };
        mail.collect_parts(&parsed)?;
        mail.raw = raw;
        Ok(mail)
    }

    fn collect_parts(&mut self, part: &ParsedMail<'_>) -> Result<()> {
        if !part.subparts.is_empty() {
            for sub in &part.subparts {
                self.collect_parts(sub)?;
            }
            return Ok(());
        }
        let disposition = part.get_content_disposition();
        let filename =
            disposition.params.get("filename").or_else(|| part.ctype.params.get("name")).cloned();
        let mimetype = part.ctype.mimetype.to_ascii_lowercase();
        if disposition.disposition == DispositionType::Attachment || filename.is_some() {
            self.attachments.push(Attachment {
                filename,
                content_type: mimetype,
                bytes: part.get_body_raw()?,
            });
        } else if mimetype == "text/plain" && self.text.is_none() {
            self.text = Some(part.get_body()?);
        } else if mimetype == "text/html" && self.html.is_none() {
            self.html = Some(part.get_body()?);
        }
        Ok(())
    }
}

/// The `.json` file the server writes beside each message.
#[derive(Deserialize)]
struct Envelope {
    mail_from: String,
    rcpt_tos: Vec<String>,
    tls: bool,
    auth_user: Option<String>,
}

/// A running SMTP server; its Python process is killed on drop.
#[derive(Debug)]
pub struct Smtp {
    child: Child,
    port: u16,
    ca: Option<TestCa>,
    dir: TempDir,
}

impl Smtp {
    /// Starts a plain server without authentication.
    pub fn start() -> Result<Self> {
        Self::start_with(&SmtpOptions::default())
    }

    /// Starts a server as `options` say and waits until it accepts connections.
    pub fn start_with(options: &SmtpOptions) -> Result<Self> {
        net::require_program(Path::new(PYTHON), "python3")?;
        require_aiosmtpd()?;
        let dir = tempfile::Builder::new().prefix("opsline-smtp-").tempdir()?;
        fs::create_dir(dir.path().join("mail"))?;
        let script = dir.path().join("smtp_server.py");
        fs::write(&script, SERVER_SCRIPT)?;
        let ca = match options.security {
            SmtpSecurity::Plain => None,
            _ => Some(TestCa::new()?),
        };
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = net::free_port()?;
            let mut child = spawn(&dir, &script, port, options, ca.as_ref())?;
            match wait_until_listening(&mut child, port) {
                Ok(()) => return Ok(Self { child, port, ca, dir }),
                Err(error) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = Some(error.context(read_log(dir.path())));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the SMTP server did not start")))
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The CA whose certificate the server presents (TLS modes only).
    pub fn ca(&self) -> Option<&TestCa> {
        self.ca.as_ref()
    }

    /// The folder holding the received messages (`NNNNNN.eml` + `NNNNNN.json`).
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// The server's own output (errors, tracebacks).
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Result<Vec<Mail>> {
        let maildir = self.maildir();
        let mut stems: Vec<PathBuf> = fs::read_dir(&maildir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        stems.sort();
        stems.iter().map(|meta| read_mail(meta)).collect()
    }

    /// Waits until at least `count` messages arrived and returns all of them.
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> Result<Vec<Mail>> {
        let arrived = || self.messages().map(|m| m.len() >= count).unwrap_or(false);
        if net::wait_until(timeout, arrived).is_err() {
            bail!(
                "fewer than {count} message(s) arrived within {timeout:?}; server log:\n{}",
                self.log()
            );
        }
        self.messages()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_aiosmtpd() -> Result<()> {
    let found = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if !found {
        bail!(
            "{PYTHON} cannot import aiosmtpd: install the Debian package `python3-aiosmtpd` (apt-get install -y python3-aiosmtpd)"
        );
    }
    Ok(())
}

fn spawn(
    dir: &TempDir,
    script: &Path,
    port: u16,
    options: &SmtpOptions,
    ca: Option<&TestCa>,
) -> Result<Child> {
    let log = File::create(dir.path().join("server.log"))?;
    let mut command = Command::new(PYTHON);
    command
        .arg(script)
        .arg("--port")
        .arg(port.to_string())
        .arg("--maildir")
        .arg(dir.path().join("mail"))
        .arg("--security")
        .arg(security_arg(options.security))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(ca) = ca {
        command.arg("--cert").arg(ca.server_cert_path()).arg("--key").arg(ca.server_key_path());
    }
    if let Some((user, password)) = &options.auth {
        command.arg("--user").arg(user).env("OPSLINE_SMTP_PASSWORD", password);
    }
    command.spawn().context("starting the SMTP server")
}

fn security_arg(security: SmtpSecurity) -> &'static str {
    match security {
        SmtpSecurity::Plain => "plain",
        SmtpSecurity::StartTls => "starttls",
        SmtpSecurity::StartTlsRequired => "starttls-required",
        SmtpSecurity::ImplicitTls => "implicit",
    }
}

/// Waits for the port, giving up early when the process died (a taken port, a Python error).
fn wait_until_listening(child: &mut Child, port: u16) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut exited = None;
    net::wait_until(START_TIMEOUT, || {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            return true;
        }
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
    })
    .context("the SMTP server did not listen in time")?;
    match exited {
        Some(status) => bail!("the SMTP server exited ({status})"),
        None => Ok(()),
    }
}

fn read_log(dir: &Path) -> String {
    fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

fn read_mail(meta_path: &Path) -> Result<Mail> {
    let meta: Envelope = serde_json::from_slice(&fs::read(meta_path)?)
        .with_context(|| format!("reading {}", meta_path.display()))?;
    let raw = fs::read(meta_path.with_extension("eml"))?;
    Mail::parse(meta, raw)
}
