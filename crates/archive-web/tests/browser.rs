//! The archive pages as a real browser renders them: headless Chromium (Debian's `chromium`)
//! against `archive-web serve` on 127.0.0.1.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const ARCHIVE_WEB: &str = env!("CARGO_BIN_EXE_archive-web");
const CHROMIUM: &str = "/usr/bin/chromium";

/// A running `archive-web serve`, stopped with SIGTERM when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start(root: &Path) -> Served {
        let mut child = Command::new(ARCHIVE_WEB)
            .args(["--root", root.to_str().expect("utf-8"), "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("archive-web starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("a record");
        let record: Value = serde_json::from_str(&line).expect("the listening record");
        assert_eq!(record["kind"], "listening");
        let url = record["url"].as_str().expect("url").trim_end_matches('/').to_owned();
        Served { child, url }
    }

    fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        self.child.wait().expect("exits").code()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn archive() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let files: [(&str, &[u8]); 4] = [
        ("node1/app/app.log", b"Nov 23 07:12:40 node1 app[1]: started <ok>\n"),
        ("node1/app/app-20261101.log", b"old lines\n"),
        ("node2/nginx/access log.txt", b"GET / 200\n"),
        ("node2/nginx/error.log.gz", &gzip(b"upstream timed out\n")),
    ];
    for (path, body) in files {
        let full = dir.path().join(path);
        fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        fs::write(full, body).expect("write");
    }
    std::os::unix::fs::symlink("/etc", dir.path().join("node1/etc")).expect("symlink");
    dir
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip runs");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), bytes).expect("write");
    child.wait_with_output().expect("gzip output").stdout
}

/// The DOM Chromium builds for `url`.
fn render(url: &str) -> String {
    assert!(Path::new(CHROMIUM).exists(), "headless Chromium is missing: apt-get install chromium");
    let profile = tempfile::tempdir().expect("profile dir");
    let output: Output = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 DOM")
}

fn curl(url: &str) -> (String, Vec<u8>) {
    let output =
        Command::new("curl").args(["-sS", "-D", "-", "-o", "-", url]).output().expect("curl runs");
    assert!(output.status.success());
    let text = output.stdout;
    let split = text.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end") + 4;
    (String::from_utf8_lossy(&text[..split]).into_owned(), text[split..].to_vec())
}

#[test]
fn a_browser_lists_searches_views_and_downloads() {
    let dir = archive();
    let served = Served::start(dir.path());

    let agents = render(&format!("{}/browse", served.url));
    assert!(agents.contains(">node1/</a>") && agents.contains(">node2/</a>"), "{agents}");
    let folder = render(&format!("{}/browse?path=node2%2Fnginx", served.url));
    assert!(
        folder.contains(">access log.txt</a>") && folder.contains(">error.log.gz</a>"),
        "{folder}"
    );
    let node1 = render(&format!("{}/browse?path=node1", served.url));
    assert!(!node1.contains(">etc"), "symbolic links are not listed: {node1}");

    let all = render(&format!("{}/", served.url));
    assert!(all.contains("4 files found"), "{all}");
    let by_name = render(&format!("{}/?name=APP-2026&agent=&from=&to=", served.url));
    assert!(by_name.contains("1 file found") && by_name.contains("app-20261101.log"), "{by_name}");
    let by_agent = render(&format!("{}/?agent=node2", served.url));
    assert!(
        by_agent.contains("2 files found") && !by_agent.contains(">app/app.log<"),
        "{by_agent}"
    );
    let today = chrono::Local::now().date_naive();
    let future = render(&format!("{}/?from={}", served.url, today.succ_opt().expect("tomorrow")));
    assert!(future.contains("0 files found"), "{future}");

    let view = render(&format!("{}/view?path=node1%2Fapp%2Fapp.log", served.url));
    assert!(view.contains("started &lt;ok&gt;"), "text is shown escaped: {view}");
    let gz = render(&format!("{}/view?path=node2%2Fnginx%2Ferror.log.gz", served.url));
    assert!(gz.contains("upstream timed out"), "gzip logs are shown decompressed: {gz}");

    let (headers, body) =
        curl(&format!("{}/download?path=node2%2Fnginx%2Faccess%20log.txt", served.url));
    assert_eq!(body, b"GET / 200\n");
    assert!(headers.contains("filename*=UTF-8''access%20log%2Etxt"), "{headers}");

    for bad in ["node1%2Fetc%2Fpasswd", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"] {
        let (headers, body) = curl(&format!("{}/download?path={bad}", served.url));
        assert!(headers.starts_with("HTTP/1.1 40"), "{bad} refused: {headers}");
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{bad} leaked /etc/passwd");
    }

    assert_eq!(served.stop(), Some(0), "SIGTERM stops the server cleanly");
}

#[test]
fn search_prints_records() {
    let dir = archive();
    let output = Command::new(ARCHIVE_WEB)
        .args(["--root", dir.path().to_str().expect("utf-8"), "search", "--name", "*.gz"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0));
    let records: Vec<Value> = output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("JSON"))
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["kind"], "archived");
    assert_eq!(records[0]["archive"]["agent"], "node2");
    assert_eq!(records[0]["archive"]["file"], "nginx/error.log.gz");
    assert!(Path::new(records[0]["path"].as_str().expect("path")).is_file());
}

#[test]
fn a_missing_root_exits_66() {
    let output = Command::new(ARCHIVE_WEB)
        .args(["--root", "/nonexistent/archive", "search"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(66));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .starts_with("archive-web: error: archive root /nonexistent/archive")
    );
}
