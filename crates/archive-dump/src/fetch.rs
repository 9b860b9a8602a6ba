//! Downloading the zip: verified TLS, a connect timeout and a stall timeout (never a deadline
//! for the whole body), retries with backoff on transient failures, a conditional GET against
//! the last ETag/Last-Modified, and streaming to a capped temp file.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

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
/// A retry after a body that broke off asks only for the rest (`Range` with `If-Range`), so a
/// big download is not started over when the server supports it.
pub fn fetch(
    options: &HttpOptions,
    previous: Option<&Validators>,
    dir: &Path,
    progress: &ProgressBar,
    shutdown: &Shutdown,
) -> anyhow::Result<Fetched> {
    let agent = agent(options)?;
    let previous = previous.filter(|v| !v.is_empty());
    let file = tempfile::Builder::new()
        .prefix(".archive-dump-")
        .suffix(".zip.part")
        .tempfile_in(dir)
        .with_code(Code::IoErr, || format!("cannot create a temp file in {}", dir.display()))?;
    let mut resume = None;
    let mut delay = options.retry_delay;
    let attempts = options.retries.saturating_add(1);
    for attempt in 1..=attempts {
        let (result, seen) =
            once(&agent, options, previous, resume.as_ref(), file.as_file(), progress, shutdown);
        let (e, wait) = match result {
            Ok(Got::Unchanged) => return Ok(Fetched::Unchanged),
            Ok(Got::Body { bytes, validators }) => {
                return Ok(Fetched::Downloaded(Download { file, bytes, validators }));
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient(e) | Failure::Busy(e, _)) if attempt == attempts => {
                return Err(e.context(format!("gave up after {attempts} attempts")));
            }
            Err(Failure::Transient(e)) => (e, delay),
            Err(Failure::Busy(e, asked)) => (e, asked.min(MAX_RETRY_AFTER).max(delay)),
        };
        let kept = file.as_file().metadata().map_or(0, |m| m.len());
        resume = Resume::after(seen.as_ref(), kept).or(resume.filter(|r| r.offset == kept));
        retry_after(&e, wait, attempt + 1, attempts, progress, shutdown)?;
        delay = (delay * 2).min(MAX_BACKOFF);
    }
    unreachable!("the last attempt always returns")
}

/// Where a retry picks up: the bytes already on disk, and the validator that makes the server
/// send the rest only if the file is still the same (`If-Range`).
#[derive(Debug, Clone)]
struct Resume {
    offset: u64,
    validator: String,
}

impl Resume {
    fn after(seen: Option<&Validators>, offset: u64) -> Option<Resume> {
        let seen = seen.filter(|_| offset > 0)?;
        // A weak ETag may not be used with If-Range.
        let strong = seen.etag.clone().filter(|e| !e.starts_with("W/"));
        let validator = strong.or_else(|| seen.last_modified.clone())?;
        Some(Resume { offset, validator })
    }
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
/// even while the server is silent (the stall timeout may be long); the abandoned thread ends
/// with the process. Returns what it got and the validators the server sent, if any.
fn once(
    agent: &Agent,
    options: &HttpOptions,
    previous: Option<&Validators>,
    resume: Option<&Resume>,
    file: &fs::File,
    progress: &ProgressBar,
    shutdown: &Shutdown,
) -> (Result<Got, Failure>, Option<Validators>) {
    let offset = resume.map_or(0, |r| r.offset);
    let sink = file.try_clone().and_then(|mut sink| {
        sink.set_len(offset)?;
        sink.seek(SeekFrom::Start(offset))?;
        Ok(sink)
    });
    let sink = match sink {
        Ok(sink) => sink,
        Err(e) => {
            let e = coded(Code::IoErr, "cannot prepare the temp file".to_owned(), e);
            return (Err(Failure::Fatal(e)), None);
        }
    };
    progress.set_position(offset);
    let attempt = Attempt {
        agent: agent.clone(),
        options: options.clone(),
        previous: previous.cloned(),
        resume: resume.cloned(),
        progress: progress.clone(),
        shutdown: shutdown.clone(),
    };
    let (done, result) = crossbeam_channel::bounded(1);
    let spawned = thread::Builder::new()
        .name("download".to_owned())
        .spawn(move || drop(done.send(attempt.run(sink))));
    if let Err(e) = spawned {
        return (
            Err(Failure::Fatal(coded(Code::Usage, "cannot start the download".to_owned(), e))),
            None,
        );
    }
    crossbeam_channel::select! {
        recv(result) -> got => got.unwrap_or_else(|_| {
            (Err(Failure::Fatal(err(Code::Usage, "the download thread ended without an answer"))), None)
        }),
        recv(shutdown.receiver()) -> _ => {
            (Err(Failure::Fatal(err(Code::TempFail, "stopped by a signal while downloading"))), None)
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
    resume: Option<Resume>,
    progress: ProgressBar,
    shutdown: Shutdown,
}

impl Attempt {
    fn run(self, mut file: fs::File) -> (Result<Got, Failure>, Option<Validators>) {
        let mut seen = None;
        let result = self.transfer(&mut file, &mut seen);
        (result, seen)
    }

    fn transfer(&self, file: &mut fs::File, seen: &mut Option<Validators>) -> Result<Got, Failure> {
        let options = &self.options;
        let shown = redact(&options.url);
        let mut request = self.agent.get(&options.url);
        if let Some((user, password)) = &options.credentials {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{}", password.expose()));
            request = request.header(header::AUTHORIZATION, format!("Basic {token}"));
        }
        let previous = self.previous.as_ref().filter(|_| self.resume.is_none());
        if let Some(resume) = &self.resume {
            request = request
                .header(header::RANGE, format!("bytes={}-", resume.offset))
                .header(header::IF_RANGE, resume.validator.as_str());
        }
        if let Some(etag) = previous.and_then(|v| v.etag.as_deref()) {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(date) = previous.and_then(|v| v.last_modified.as_deref()) {
            request = request.header(header::IF_MODIFIED_SINCE, date);
        }
        let response = request.call().map_err(|e| classify_call(e, &shown))?;
        let status = response.status();
        let start = match (status, &self.resume) {
            (StatusCode::OK, _) => 0,
            (StatusCode::PARTIAL_CONTENT, Some(resume)) => {
                check_content_range(response.headers(), resume.offset, &shown)?;
                resume.offset
            }
            (StatusCode::NOT_MODIFIED, None) if previous.is_some() => return Ok(Got::Unchanged),
            (s, _)
                if s.is_server_error()
                    || s == StatusCode::REQUEST_TIMEOUT
                    || s == StatusCode::TOO_MANY_REQUESTS =>
            {
                let e = err(Code::TempFail, format!("GET {shown}: the server answered {s}"));
                return Err(match retry_after_seconds(response.headers()) {
                    Some(wait) => Failure::Busy(e, wait),
                    None => Failure::Transient(e),
                });
            }
            (s, _) => {
                return Err(Failure::Fatal(err(
                    status_code(s),
                    format!("GET {shown}: the server answered {s}"),
                )));
            }
        };
        if start == 0 && self.resume.is_some() {
            tracing::info!("the server sent the whole file again; starting over");
            restart(file).map_err(Failure::Fatal)?;
            self.progress.set_position(0);
        }
        let validators = Validators::from_headers(response.headers());
        *seen = Some(validators.clone());
        let length = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = length {
            let total = start.saturating_add(length);
            if total > options.max_download {
                return Err(Failure::Fatal(too_large(&shown, total, options.max_download)));
            }
            self.progress.set_length(total);
        }
        let body = response.into_body().into_reader();
        let copy = Copy {
            max: options.max_download,
            progress: &self.progress,
            shutdown: &self.shutdown,
            shown: &shown,
        };
        let bytes = copy.run(body, file, start)?;
        Ok(Got::Body { bytes, validators })
    }
}

fn restart(file: &mut fs::File) -> anyhow::Result<()> {
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
        .code(Code::IoErr, "cannot truncate the temp file")
}

/// A 206 must continue exactly where the file ends.
fn check_content_range(headers: &HeaderMap, offset: u64, shown: &str) -> Result<(), Failure> {
    let range = headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let starts_at = range
        .strip_prefix("bytes ")
        .and_then(|r| r.split_once('-'))
        .and_then(|(first, _)| first.trim().parse::<u64>().ok());
    if starts_at == Some(offset) {
        return Ok(());
    }
    Err(Failure::Fatal(err(
        Code::Unavailable,
        format!(
            "GET {shown}: asked for bytes from {offset}, the server sent Content-Range {range:?}"
        ),
    )))
}

/// Copies a response body into the temp file under the size cap.
struct Copy<'a> {
    max: u64,
    progress: &'a ProgressBar,
    shutdown: &'a Shutdown,
    shown: &'a str,
}

impl Copy<'_> {
    /// Appends the body to `file`, which already holds `start` bytes; returns the new size.
    fn run(&self, mut body: impl Read, file: &mut fs::File, start: u64) -> Result<u64, Failure> {
        let mut buf = vec![0u8; CHUNK];
        let mut total = start;
        loop {
            if self.shutdown.requested() {
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
                        format!("GET {}: the download broke off after {total} bytes", self.shown),
                        describe_io(e),
                    )));
                }
            };
            total += n as u64;
            if total > self.max {
                return Err(Failure::Fatal(too_large(self.shown, total, self.max)));
            }
            file.write_all(&buf[..n])
                .code(Code::IoErr, "cannot write the downloaded zip")
                .map_err(Failure::Fatal)?;
            self.progress.inc(n as u64);
        }
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
