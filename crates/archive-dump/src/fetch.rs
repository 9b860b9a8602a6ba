//! Downloading the zip: verified TLS, a connect timeout and a stall timeout (never a deadline
//! for the whole body), retries with backoff on transient failures, a conditional GET against
//! the last ETag/Last-Modified, and streaming to a capped temp file.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use anyhow::Context as _;

use base64::Engine as _;
use indicatif::ProgressBar;
use opsline::exit::{Coded, err};
use opsline::{Code, Secret, Shutdown, WithCode};
use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;
use ureq::Agent;
use ureq::http::{HeaderMap, StatusCode, header};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Longest wait a server's `Retry-After` gets.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Copy buffer for the body.
const CHUNK: usize = 256 << 10;

/// The CA bundles of the common distributions, tried in order after `SSL_CERT_FILE`.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Everything the download needs.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// What to fetch.
    pub url: String,
    /// Basic auth user and password.
    pub credentials: Option<(String, Secret)>,
    /// Extra trusted CA certificates (PEM).
    pub ca_cert: Option<PathBuf>,
    /// Skip certificate verification.
    pub insecure: bool,
    /// Limit for establishing the connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Limit for any single wait on the server: the response headers, and each read of the
    /// body (re-armed whenever bytes arrive).
    pub stall_timeout: Duration,
    /// Further attempts after a transient failure.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_delay: Duration,
    /// Largest download accepted.
    pub max_download: u64,
}

/// What the server said about the version it sent, for the next conditional GET.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// `ETag` header.
    pub etag: Option<String>,
    /// `Last-Modified` header.
    pub last_modified: Option<String>,
}

impl Validators {
    fn from_headers(headers: &HeaderMap) -> Self {
        let get = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Validators { etag: get(header::ETAG), last_modified: get(header::LAST_MODIFIED) }
    }

    fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// The outcome of a download.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the zip has not changed since the validators were saved.
    Unchanged,
    /// The zip, in a temp file.
    Downloaded(Download),
}

/// A downloaded zip in a temp file (removed when dropped).
#[derive(Debug)]
pub struct Download {
    /// The temp file.
    pub file: NamedTempFile,
    /// Its size.
    pub bytes: u64,
    /// The validators of this version.
    pub validators: Validators,
}

enum Failure {
    /// Worth another attempt: timeouts, resets, 5xx.
    Transient(anyhow::Error),
    /// The server asked to come back after a while (`Retry-After` on a 429 or 503).
    Busy(anyhow::Error, Duration),
    /// Another attempt would fail the same way.
    Fatal(anyhow::Error),
}

/// Downloads `options.url` into a temp file in `dir`, retrying transient failures. With
/// `previous` validators the request is conditional and a 304 gives [`Fetched::Unchanged`].
pub fn fetch(
    options: &HttpOptions,
    previous: Option<&Validators>,
    dir: &Path,
    progress: &ProgressBar,
    shutdown: &Shutdown,
) -> anyhow::Result<Fetched> {
    let agent = agent(options)?;
    let previous = previous.filter(|v| !v.is_empty());
    let mut delay = options.retry_delay;
    let attempts = options.retries.saturating_add(1);
    for attempt in 1..=attempts {
        match once(&agent, options, previous, dir, progress, shutdown) {
            Ok(fetched) => return Ok(fetched),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient(e) | Failure::Busy(e, _)) if attempt == attempts => {
                return Err(e.context(format!("gave up after {attempts} attempts")));
            }
            Err(Failure::Transient(e)) => {
                retry_after(&e, delay, attempt + 1, attempts, progress, shutdown)?;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
            Err(Failure::Busy(e, asked)) => {
                let wait = asked.min(MAX_RETRY_AFTER).max(delay);
                retry_after(&e, wait, attempt + 1, attempts, progress, shutdown)?;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
    unreachable!("the last attempt always returns")
}

fn retry_after(
    e: &anyhow::Error,
    wait: Duration,
    next: u32,
    attempts: u32,
    progress: &ProgressBar,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    tracing::warn!("{e:#}; retrying in {:.1}s (attempt {next} of {attempts})", wait.as_secs_f64());
    progress.reset();
    pause(wait, shutdown)
}

fn pause(delay: Duration, shutdown: &Shutdown) -> anyhow::Result<()> {
    match shutdown.receiver().recv_timeout(delay) {
        Err(e) if e.is_timeout() => Ok(()),
        _ => Err(err(Code::TempFail, "stopped by a signal before retrying")),
    }
}

fn agent(options: &HttpOptions) -> anyhow::Result<Agent> {
    let config = Agent::config_builder()
        .timeout_connect(Some(options.connect_timeout))
        .timeout_recv_response(Some(options.stall_timeout))
        .timeout_per_read(Some(options.stall_timeout))
        .http_status_as_error(false)
        .user_agent(format!("archive-dump/{}", env!("CARGO_PKG_VERSION")))
        .tls_config(tls_config(options)?)
        .build();
    Ok(config.into())
}

fn tls_config(options: &HttpOptions) -> anyhow::Result<TlsConfig> {
    let builder = TlsConfig::builder();
    if options.insecure {
        tracing::warn!(
            "--insecure: the server's TLS certificate is NOT verified; anyone on the network path \
             can read or replace the download"
        );
        return Ok(builder.disable_verification(true).build());
    }
    let mut roots = system_roots();
    if let Some(path) = &options.ca_cert {
        roots.get_or_insert_with(Vec::new).extend(read_certificates(path)?);
    }
    Ok(match roots {
        Some(roots) => builder.root_certs(RootCerts::from(roots)).build(),
        None => builder.build(),
    })
}

/// The system's CA bundle (`SSL_CERT_FILE`, else the distribution's), or `None` to use the
/// Mozilla roots built into the HTTP client.
fn system_roots() -> Option<Vec<Certificate<'static>>> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let path = from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file())?;
    match read_certificates(&path) {
        Ok(certs) => Some(certs),
        Err(e) => {
            tracing::warn!("ignoring the CA bundle {}: {e:#}", path.display());
            None
        }
    }
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<Certificate<'static>>> {
    let pem = fs::read(path)
        .with_code(Code::Config, || format!("cannot read CA certificates {}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        let item =
            item.with_code(Code::Config, || format!("{} is not a valid PEM file", path.display()))?;
        if let PemItem::Certificate(cert) = item {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(err(Code::Config, format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// One attempt. The request runs on its own thread so that a signal ends the wait at once,
/// even while the server is silent (the stall timeout may be long); the temp file is then
/// removed here and the abandoned thread ends with the process.
fn once(
    agent: &Agent,
    options: &HttpOptions,
    previous: Option<&Validators>,
    dir: &Path,
    progress: &ProgressBar,
    shutdown: &Shutdown,
) -> Result<Fetched, Failure> {
    let file = tempfile::Builder::new()
        .prefix(".archive-dump-")
        .suffix(".zip.part")
        .tempfile_in(dir)
        .with_code(Code::IoErr, || format!("cannot create a temp file in {}", dir.display()))
        .map_err(Failure::Fatal)?;
    let sink = file
        .as_file()
        .try_clone()
        .with_code(Code::IoErr, || "cannot reopen the temp file".to_owned())
        .map_err(Failure::Fatal)?;
    let attempt = Attempt {
        agent: agent.clone(),
        options: options.clone(),
        previous: previous.cloned(),
        progress: progress.clone(),
        shutdown: shutdown.clone(),
    };
    let (done, result) = crossbeam_channel::bounded(1);
    thread::Builder::new()
        .name("download".to_owned())
        .spawn(move || drop(done.send(attempt.run(&sink))))
        .context("starting the download thread")
        .map_err(Failure::Fatal)?;
    crossbeam_channel::select! {
        recv(result) -> got => match got {
            Ok(Ok(Got::Unchanged)) => Ok(Fetched::Unchanged),
            Ok(Ok(Got::Body { bytes, validators })) => {
                Ok(Fetched::Downloaded(Download { file, bytes, validators }))
            }
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(Failure::Fatal(err(Code::Usage, "the download thread ended without an answer"))),
        },
        recv(shutdown.receiver()) -> _ => {
            Err(Failure::Fatal(err(Code::TempFail, "stopped by a signal while downloading")))
        }
    }
}

/// What the download thread got.
enum Got {
    Unchanged,
    Body { bytes: u64, validators: Validators },
}

/// Everything one attempt needs, owned, for the download thread.
struct Attempt {
    agent: Agent,
    options: HttpOptions,
    previous: Option<Validators>,
    progress: ProgressBar,
    shutdown: Shutdown,
}

impl Attempt {
    fn run(self, file: &fs::File) -> Result<Got, Failure> {
        let options = &self.options;
        let previous = self.previous.as_ref();
        let shown = redact(&options.url);
        let mut request = self.agent.get(&options.url);
        if let Some((user, password)) = &options.credentials {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{}", password.expose()));
            request = request.header(header::AUTHORIZATION, format!("Basic {token}"));
        }
        if let Some(etag) = previous.and_then(|v| v.etag.as_deref()) {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(date) = previous.and_then(|v| v.last_modified.as_deref()) {
            request = request.header(header::IF_MODIFIED_SINCE, date);
        }
        let response = request.call().map_err(|e| classify_call(e, &shown))?;
        let status = response.status();
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_MODIFIED if previous.is_some() => return Ok(Got::Unchanged),
            s if s.is_server_error()
                || s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS =>
            {
                let e = err(Code::TempFail, format!("GET {shown}: the server answered {s}"));
                return Err(match retry_after_seconds(response.headers()) {
                    Some(wait) => Failure::Busy(e, wait),
                    None => Failure::Transient(e),
                });
            }
            s => {
                return Err(Failure::Fatal(err(
                    status_code(s),
                    format!("GET {shown}: the server answered {s}"),
                )));
            }
        }
        let validators = Validators::from_headers(response.headers());
        let length = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = length {
            if length > options.max_download {
                return Err(Failure::Fatal(too_large(&shown, length, options.max_download)));
            }
            self.progress.set_length(length);
        }
        let body = response.into_body().into_reader();
        let bytes =
            copy_body(body, file, options.max_download, &self.progress, &self.shutdown, &shown)?;
        Ok(Got::Body { bytes, validators })
    }
}

fn copy_body(
    mut body: impl Read,
    mut file: &fs::File,
    max: u64,
    progress: &ProgressBar,
    shutdown: &Shutdown,
    shown: &str,
) -> Result<u64, Failure> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        if shutdown.requested() {
            return Err(Failure::Fatal(err(
                Code::TempFail,
                "stopped by a signal while downloading",
            )));
        }
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Failure::Transient(coded(
                    Code::TempFail,
                    format!("GET {shown}: the download broke off after {total} bytes"),
                    describe_io(e),
                )));
            }
        };
        total += n as u64;
        if total > max {
            return Err(Failure::Fatal(too_large(shown, total, max)));
        }
        file.write_all(&buf[..n])
            .with_code(Code::IoErr, || "cannot write the downloaded zip".to_owned())
            .map_err(Failure::Fatal)?;
        progress.inc(n as u64);
    }
}

/// A body read error with ureq's own error (a timeout) put into words.
fn describe_io(e: io::Error) -> io::Error {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<ureq::Error>()) {
        Some(ureq::Error::Timeout(_)) => io::Error::new(
            io::ErrorKind::TimedOut,
            "the server sent nothing within the stall timeout",
        ),
        _ => e,
    }
}

/// `Retry-After` in its delta-seconds form (the date form is left to the backoff).
fn retry_after_seconds(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn too_large(shown: &str, bytes: u64, max: u64) -> anyhow::Error {
    err(
        Code::DataErr,
        format!("GET {shown}: the download is {bytes} bytes or more, over --max-download {max}"),
    )
}

fn classify_call(e: ureq::Error, shown: &str) -> Failure {
    let message = format!("GET {shown}");
    match e {
        ureq::Error::Timeout(what) => {
            Failure::Transient(err(Code::TempFail, format!("{message}: timed out ({what})")))
        }
        ureq::Error::ConnectionFailed => {
            Failure::Transient(err(Code::TempFail, format!("{message}: cannot connect")))
        }
        ureq::Error::Io(io) if is_transient(&io) => {
            Failure::Transient(coded(Code::TempFail, message, io))
        }
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => {
            Failure::Fatal(coded(Code::Unavailable, format!("{message}: TLS failed"), e))
        }
        // rustls reports a refused handshake (an untrusted certificate) as invalid data.
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::InvalidData => Failure::Fatal(coded(
            Code::Unavailable,
            format!(
                "{message}: TLS failed (for a private CA, pass its certificate with --ca-cert)"
            ),
            io,
        )),
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
            Failure::Fatal(coded(Code::Usage, format!("{message}: bad URL"), e))
        }
        other => Failure::Fatal(coded(Code::Unavailable, message, other)),
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

fn coded(code: Code, message: String, cause: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Coded::caused_by(code, message, cause))
}

/// The exit status for a final HTTP error status.
fn status_code(status: StatusCode) -> Code {
    match status.as_u16() {
        401 | 403 => Code::NoPerm,
        404 | 410 => Code::NoInput,
        _ => Code::Unavailable,
    }
}

/// The URL as it may appear in logs and records: without a `user:password@` part.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        assert_eq!(redact("https://u:p@h.example/x@y"), "https://h.example/x@y");
        assert_eq!(redact("https://h.example/a"), "https://h.example/a");
        assert_eq!(redact("/local/path.zip"), "/local/path.zip");
    }

    #[test]
    fn statuses_map_to_exit_codes() {
        assert_eq!(status_code(StatusCode::NOT_FOUND), Code::NoInput);
        assert_eq!(status_code(StatusCode::FORBIDDEN), Code::NoPerm);
        assert_eq!(status_code(StatusCode::IM_A_TEAPOT), Code::Unavailable);
    }
}
