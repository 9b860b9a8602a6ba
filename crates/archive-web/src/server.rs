//! The read-only HTTP server: search, browse, view and download.

use std::fs::File;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use flate2::read::MultiGzDecoder;
use opsline::{Code, Shutdown, WithCode};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::archive::{Archive, Query};
use crate::html;

/// How much of a file a view page shows.
const VIEW_LIMIT: u64 = 2 << 20;
/// How many search results a page shows.
const PAGE_LIMIT: usize = 500;

/// Binds `listen`; the bound address is known before any request is served.
pub fn bind(listen: SocketAddr) -> anyhow::Result<Server> {
    Server::http(listen)
        .map_err(|e| anyhow::anyhow!(e))
        .with_code(Code::Unavailable, || format!("cannot listen on {listen}"))
}

/// Serves requests on `threads` workers until a stop is asked for.
pub fn serve(server: Server, archive: Archive, threads: usize, shutdown: &Shutdown) {
    let server = Arc::new(server);
    let archive = Arc::new(archive);
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (server, archive) = (Arc::clone(&server), Arc::clone(&archive));
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    handle(&archive, request);
                }
            })
        })
        .collect();
    shutdown.watch();
    let _ = shutdown.receiver().recv();
    for _ in &workers {
        server.unblock();
    }
    for worker in workers {
        let _ = worker.join();
    }
}

fn handle(archive: &Archive, request: Request) {
    let reply = route(archive, &request);
    let status = reply.status_code().0;
    tracing::info!(method = %request.method(), url = request.url(), status, "request");
    if let Err(e) = request.respond(reply) {
        tracing::debug!(error = %e, "client went away");
    }
}

type Reply = Response<Box<dyn Read + Send>>;

fn route(archive: &Archive, request: &Request) -> Reply {
    if !matches!(request.method(), Method::Get | Method::Head) {
        return page(405, html::error_page(405, "this archive is read-only"));
    }
    let (path, query) = request.url().split_once('?').unwrap_or((request.url(), ""));
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let param = |name: &str| {
        params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
    };
    let result = match path {
        "/" => search(archive, &param),
        "/browse" => browse(archive, param("path").as_deref().unwrap_or("")),
        "/view" => view(archive, param("path").as_deref().unwrap_or("")),
        "/download" => download(archive, param("path").as_deref().unwrap_or("")),
        _ => Err((404, "no such page".to_owned())),
    };
    result.unwrap_or_else(|(status, message)| page(status, html::error_page(status, &message)))
}

type Routed = Result<Reply, (u16, String)>;

fn search(archive: &Archive, param: &dyn Fn(&str) -> Option<String>) -> Routed {
    let day = |name: &str| -> Result<Option<NaiveDate>, (u16, String)> {
        param(name)
            .map(|v| {
                NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                    .map_err(|_| (400, format!("{name}: not a date (YYYY-MM-DD): {v}")))
            })
            .transpose()
    };
    let query =
        Query { name: param("name"), agent: param("agent"), from: day("from")?, to: day("to")? };
    let agents = archive.agents().map_err(|e| (500, e.to_string()))?;
    let found = archive.search(&query, PAGE_LIMIT).map_err(|e| (404, format!("{e:#}")))?;
    Ok(page(200, html::search_page(&agents, &query, &found)))
}

fn browse(archive: &Archive, rel: &str) -> Routed {
    let items = archive.list_dir(rel).map_err(|e| (404, format!("{rel}: {e}")))?;
    Ok(page(200, html::dir_page(rel, &items)))
}

fn view(archive: &Archive, rel: &str) -> Routed {
    let path = archive.resolve_file(rel).map_err(refused)?;
    let (text, truncated) =
        read_start(&path).map_err(|e| (500, format!("cannot read {rel}: {e}")))?;
    Ok(page(200, html::view_page(rel, &text, truncated)))
}

fn download(archive: &Archive, rel: &str) -> Routed {
    let path = archive.resolve_file(rel).map_err(refused)?;
    let file = File::open(&path).map_err(|e| (500, format!("cannot read {rel}: {e}")))?;
    let length = file.metadata().map(|m| m.len()).ok();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("download");
    let disposition = format!("attachment; filename*=UTF-8''{}", html::encode(name));
    let body: Box<dyn Read + Send> = Box::new(file);
    let response =
        Response::new(200.into(), vec![], body, length.and_then(|l| usize::try_from(l).ok()), None)
            .with_header(header("Content-Type", "application/octet-stream"))
            .with_header(header("Content-Disposition", &disposition))
            .with_header(header("X-Content-Type-Options", "nosniff"));
    Ok(response)
}

fn refused(error: anyhow::Error) -> (u16, String) {
    let status = if opsline::exit::code_of(&error) == Code::NoInput { 404 } else { 400 };
    (status, format!("{error:#}"))
}

/// The start of a file as text (decompressed for `.gz`), and whether there was more.
fn read_start(path: &Path) -> io::Result<(String, bool)> {
    let file = File::open(path)?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut bytes = Vec::new();
    reader.take(VIEW_LIMIT + 1).read_to_end(&mut bytes)?;
    let truncated = bytes.len() as u64 > VIEW_LIMIT;
    bytes.truncate(usize::try_from(VIEW_LIMIT).unwrap_or(usize::MAX));
    Ok((String::from_utf8_lossy(&bytes).into_owned(), truncated))
}

fn page(status: u16, html: String) -> Reply {
    let length = html.len();
    let body: Box<dyn Read + Send> = Box::new(io::Cursor::new(html.into_bytes()));
    Response::new(status.into(), vec![], body, Some(length), None)
        .with_header(header("Content-Type", "text/html; charset=utf-8"))
        .with_header(header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        ))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header("Referrer-Policy", "no-referrer"))
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("header names and values are ASCII")
}
