//! A real HTTP/1.1 (and HTTPS) server on 127.0.0.1 that records every request and answers from a
//! script the test sets: queued replies first, then a handler closure, then a default reply.
//!
//! Replies can also misbehave the way real servers do: hang without answering, or stall in the
//! middle of a body. Such connections stay open until the client gives up or the server drops.

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::tls::TestCa;

/// Largest request head (request line plus headers) accepted, against runaway clients.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target as sent: path plus `?query`.
    pub target: String,
    /// Header names and values in arrival order, names as the client spelled them.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// When the request head was complete, for measuring gaps between requests.
    pub received: Instant,
    /// The same moment on the wall clock.
    pub received_at: SystemTime,
}

impl RecordedRequest {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(path, _)| path)
    }

    /// The query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("request body is not JSON: {}", self.body_text()))
    }

    /// The body parsed as `application/x-www-form-urlencoded` pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

/// How a reply reaches the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    Whole,
    Hang,
    Stall { body_bytes: usize },
}

/// A scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delivery: Delivery,
    conditional: bool,
}

impl Reply {
    /// An empty reply with `status`.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delivery: Delivery::Whole,
            conditional: false,
        }
    }

    /// `status` with a `text/plain` body.
    pub fn text(status: u16, body: &str) -> Self {
        Self::status(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.as_bytes())
    }

    /// `status` with a JSON body.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self::status(status)
            .header("Content-Type", "application/json")
            .body(body.to_string().as_bytes())
    }

    /// 200 with the bytes of `path`, its `ETag` and `Last-Modified`, answered with
    /// 304 Not Modified when the request's validators match (see [`Reply::conditional`]).
    pub fn file(path: &Path) -> Result<Self> {
        let body = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let modified = fs::metadata(path)?.modified()?;
        let seconds = modified.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let etag = format!("\"{:x}-{seconds:x}\"", body.len());
        Ok(Self::status(200)
            .header("Content-Type", "application/octet-stream")
            .header("ETag", &etag)
            .header("Last-Modified", &httpdate::fmt_http_date(modified))
            .body(&body)
            .conditional())
    }

    /// Accepts the request and never answers; the connection stays open until the client
    /// closes it or the server is dropped.
    pub fn hang() -> Self {
        Self { delivery: Delivery::Hang, ..Self::status(200) }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    /// Sends the head with the full `Content-Length` and only the first `body_bytes` of the
    /// body, then stops sending without closing, until the client gives up or the server drops.
    pub fn stall_after(mut self, body_bytes: usize) -> Self {
        self.delivery = Delivery::Stall { body_bytes: body_bytes.min(self.body.len()) };
        self
    }

    /// Answers 304 Not Modified (with the validators, without the body) when the request's
    /// `If-None-Match` names this reply's `ETag`, or, without `If-None-Match`, when its
    /// `If-Modified-Since` is not older than this reply's `Last-Modified`.
    pub fn conditional(mut self) -> Self {
        self.conditional = true;
        self
    }

    fn not_modified_for(&self, request: &RecordedRequest) -> bool {
        if !self.conditional {
            return false;
        }
        if let Some(wanted) = request.header("If-None-Match") {
            let etag = header_value(&self.headers, "ETag");
            return wanted.split(',').map(str::trim).any(|tag| tag == "*" || Some(tag) == etag);
        }
        let since =
            request.header("If-Modified-Since").and_then(|v| httpdate::parse_http_date(v).ok());
        let modified = header_value(&self.headers, "Last-Modified")
            .and_then(|v| httpdate::parse_http_date(v).ok());
        matches!((since, modified), (Some(since), Some(modified)) if since >= modified)
    }

    /// The reply actually sent to `request`.
    fn for_request(&self, request: &RecordedRequest) -> Self {
        if !self.not_modified_for(request) {
            return self.clone();
        }
        let validators = self
            .headers
            .iter()
            .filter(|(name, _)| {
                name.eq_ignore_ascii_case("ETag") || name.eq_ignore_ascii_case("Last-Modified")
            })
            .cloned()
            .collect();
        Self { headers: validators, ..Self::status(304) }
    }
}

/// A handler that computes replies from requests.
type Handler = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

struct Script {
    queue: VecDeque<Reply>,
    handler: Option<Handler>,
    default: Reply,
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("queue", &self.queue)
            .field("handler", &self.handler.is_some())
            .field("default", &self.default)
            .finish()
    }
}

#[derive(Debug)]
struct Shared {
    stopping: AtomicBool,
    requests: Mutex<Vec<RecordedRequest>>,
    arrived: Condvar,
    script: Mutex<Script>,
    connections: Mutex<Vec<(TcpStream, JoinHandle<()>)>>,
}

impl Shared {
    fn record(&self, request: &RecordedRequest) {
        lock(&self.requests).push(request.clone());
        self.arrived.notify_all();
    }

    fn reply_to(&self, request: &RecordedRequest) -> Reply {
        let (queued, handler, default) = {
            let mut script = lock(&self.script);
            (script.queue.pop_front(), script.handler.clone(), script.default.clone())
        };
        // The handler runs outside the lock so that it may take its time.
        let reply = queued.or_else(|| handler.map(|handler| handler(request))).unwrap_or(default);
        reply.for_request(request)
    }
}

/// A running HTTP or HTTPS server on 127.0.0.1; stopped (every connection closed) on drop.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts a plain HTTP server whose default reply is 200 `ok`.
    pub fn start() -> Result<Self> {
        Self::spawn(None)
    }

    /// Starts an HTTPS server presenting `ca`'s server certificate.
    pub fn start_tls(ca: &TestCa) -> Result<Self> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.server_key_der().to_vec()));
        let certs = vec![CertificateDer::from(ca.server_cert_der().to_vec())];
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(certs, key)?;
        Self::spawn(Some(Arc::new(config)))
    }

    fn spawn(tls: Option<Arc<ServerConfig>>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the HTTP test server")?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            script: Mutex::new(Script {
                queue: VecDeque::new(),
                handler: None,
                default: Reply::text(200, "ok"),
            }),
            connections: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || accept_loop(&listener, tls.as_ref(), &shared))
        };
        Ok(Self { addr, scheme, shared, acceptor: Some(acceptor) })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (or `https://…`), without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The base URL followed by `path` (which should start with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Queues `reply` for the next request not answered by an earlier queued reply.
    pub fn enqueue(&self, reply: Reply) {
        lock(&self.shared.script).queue.push_back(reply);
    }

    /// Sets the reply used once the queue is empty and no handler is set.
    pub fn set_default(&self, reply: Reply) {
        lock(&self.shared.script).default = reply;
    }

    /// Answers every request the queue does not with `handler`.
    pub fn set_handler(&self, handler: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) {
        lock(&self.shared.script).handler = Some(Arc::new(handler));
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Waits until at least `count` requests arrived and returns all of them.
    pub fn wait_for_requests(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<RecordedRequest>> {
        let requests = lock(&self.shared.requests);
        let (requests, _) = self
            .shared
            .arrived
            .wait_timeout_while(requests, timeout, |requests| requests.len() < count)
            .unwrap_or_else(PoisonError::into_inner);
        if requests.len() < count {
            bail!("{} request(s) arrived within {timeout:?}, expected {count}", requests.len());
        }
        Ok(requests.clone())
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // The acceptor is blocked in accept(): one connection wakes it to see the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let connections = std::mem::take(&mut *lock(&self.shared.connections));
        for (stream, worker) in connections {
            let _ = stream.shutdown(Shutdown::Both);
            let _ = worker.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn accept_loop(listener: &TcpListener, tls: Option<&Arc<ServerConfig>>, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        // Replies go out as head then body: without this, Nagle's algorithm holds the body back
        // until the client's delayed ACK (about 40 ms), which would be charged to the client.
        let _ = stream.set_nodelay(true);
        let Ok(handle) = stream.try_clone() else { continue };
        let tls = tls.cloned();
        let worker = {
            let shared = Arc::clone(shared);
            thread::spawn(move || {
                // A connection that fails (client gone, bad TLS) just ends.
                let _ = serve_connection(stream, tls, &shared);
            })
        };
        lock(&shared.connections).push((handle, worker));
    }
}

/// A client connection, encrypted or not.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(stream) => stream.read(buf),
            Self::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(stream) => stream.write(buf),
            Self::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(stream) => stream.flush(),
            Self::Tls(stream) => stream.flush(),
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    tls: Option<Arc<ServerConfig>>,
    shared: &Shared,
) -> Result<()> {
    let conn = match tls {
        Some(config) => {
            Conn::Tls(Box::new(StreamOwned::new(ServerConnection::new(config)?, stream)))
        }
        None => Conn::Plain(stream),
    };
    let mut conn = BufReader::new(conn);
    while let Some(request) = read_request(&mut conn)? {
        shared.record(&request);
        let reply = shared.reply_to(&request);
        write_reply(conn.get_mut(), &request, &reply)?;
        if reply.delivery != Delivery::Whole {
            // Hold the connection open: reading returns once the client or the server closes it.
            io::copy(&mut conn, &mut io::sink())?;
            return Ok(());
        }
        if wants_close(&request) {
            return Ok(());
        }
    }
    Ok(())
}

fn wants_close(request: &RecordedRequest) -> bool {
    request.header("Connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// Reads one request; `None` when the client closed the connection between requests.
fn read_request(conn: &mut BufReader<Conn>) -> Result<Option<RecordedRequest>> {
    let Some(request_line) = read_line(conn)? else { return Ok(None) };
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        bail!("malformed request line {request_line:?}");
    };
    let mut headers = Vec::new();
    let mut head_bytes = request_line.len();
    loop {
        let line = read_line(conn)?.context("connection closed inside the request head")?;
        if line.is_empty() {
            break;
        }
        head_bytes += line.len();
        if head_bytes > MAX_HEAD_BYTES {
            bail!("request head larger than {MAX_HEAD_BYTES} bytes");
        }
        let (name, value) =
            line.split_once(':').with_context(|| format!("malformed header {line:?}"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let received = Instant::now();
    let received_at = SystemTime::now();
    if header_value(&headers, "Expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        conn.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        conn.get_mut().flush()?;
    }
    let body = read_body(conn, &headers)?;
    Ok(Some(RecordedRequest {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body,
        received,
        received_at,
    }))
}

/// One line without its CRLF; `None` at end of stream before any byte.
fn read_line(conn: &mut BufReader<Conn>) -> Result<Option<String>> {
    let mut line = Vec::new();
    let read = conn.by_ref().take(MAX_HEAD_BYTES as u64).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn read_body(conn: &mut BufReader<Conn>, headers: &[(String, String)]) -> Result<Vec<u8>> {
    if header_value(headers, "Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return read_chunked(conn);
    }
    let length: usize = match header_value(headers, "Content-Length") {
        Some(value) => value.parse().with_context(|| format!("bad Content-Length {value:?}"))?,
        None => 0,
    };
    let mut body = vec![0; length];
    conn.read_exact(&mut body)?;
    Ok(body)
}

fn read_chunked(conn: &mut BufReader<Conn>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size_line = read_line(conn)?.context("connection closed inside a chunked body")?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_line:?}"))?;
        if size == 0 {
            // Trailers, then the empty line that ends the body.
            while read_line(conn)?.is_some_and(|line| !line.is_empty()) {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..])?;
        read_line(conn)?;
    }
}

fn write_reply(conn: &mut Conn, request: &RecordedRequest, reply: &Reply) -> io::Result<()> {
    let body_bytes = match reply.delivery {
        Delivery::Hang => return Ok(()),
        Delivery::Stall { body_bytes } => body_bytes,
        Delivery::Whole => reply.body.len(),
    };
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let bodiless = matches!(reply.status, 100..=199 | 204 | 304);
    if !bodiless && header_value(&reply.headers, "Content-Length").is_none() {
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    if !bodiless && request.method != "HEAD" {
        conn.write_all(&reply.body[..body_bytes])?;
    }
    conn.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
