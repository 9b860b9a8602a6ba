//! Downloads from a real HTTP and HTTPS server on 127.0.0.1 (opsline-testkit), with the
//! failures real servers have: errors, stalls, truncated bodies, 304s.

mod support;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use opsline_testkit::http::{HttpServer, Reply};
use opsline_testkit::tls::TestCa;
use support::{Entry, Scratch, Stamp, dump, extract, listing, make_zip, path_str, run};

const WAIT: Duration = Duration::from_secs(10);

/// A server whose every request gets `zip` (with ETag, Last-Modified and 304 support).
fn serving(zip: &std::path::Path) -> HttpServer {
    let server = HttpServer::start().unwrap();
    server.set_default(Reply::file(zip).unwrap());
    server
}

fn fresh_zip(s: &Scratch, data: &[u8]) -> std::path::PathBuf {
    let zip = s.path("served.zip");
    make_zip(&zip, &[Entry::new("dump.sql", data)]);
    zip
}

#[test]
fn fresh_dump_is_downloaded_and_repacked_keeping_the_zip() {
    let s = Scratch::new();
    let data = dump(2 << 20, 1);
    let zip = fresh_zip(&s, &data);
    let server = serving(&zip);
    let url = server.url("/backup/nightly.zip");
    let out = s.out_str();
    let run = run(
        &[
            "--url",
            &url,
            "--member",
            "dump.sql",
            "--out-dir",
            &out,
            "--name",
            "db.tgz",
            "--keep-zip",
        ],
        &[],
    );
    assert_eq!(run.code, Some(0), "{run:#?}");
    let archive = run.archive();
    assert_eq!(archive["status"], "created");
    assert_eq!(archive["source"], url.as_str());
    assert_eq!(archive["bytes_in"], data.len());
    let tgz = s.out().canonicalize().unwrap().join("db.tgz");
    assert_eq!(run.record()["path"], path_str(&tgz));
    assert!(fs::read(extract(&tgz).path().join("dump.sql")).unwrap() == data);
    assert_eq!(listing(&s.out()), ["db.tgz", "db.zip"]);
    assert!(fs::read(s.out().join("db.zip")).unwrap() == fs::read(&zip).unwrap());
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path(), "/backup/nightly.zip");
    assert!(requests[0].header("If-None-Match").is_none());
}

#[test]
fn https_is_verified_against_the_given_ca() {
    let s = Scratch::new();
    let data = dump(100_000, 2);
    let zip = fresh_zip(&s, &data);
    let ca = TestCa::new().unwrap();
    let server = HttpServer::start_tls(&ca).unwrap();
    server.set_default(Reply::file(&zip).unwrap());
    let url = server.url("/nightly.zip");
    let out = s.out_str();

    let untrusted =
        run(&["--url", &url, "--member", "dump.sql", "--out-dir", &out, "--retries", "0"], &[]);
    assert_eq!(untrusted.code, Some(69), "{untrusted:#?}");
    assert!(untrusted.error().contains("TLS failed"), "{untrusted:#?}");
    assert!(listing(&s.out()).is_empty());

    let ca_path = ca.ca_cert_path();
    let trusted = run(
        &[
            "--url",
            &url,
            "--member",
            "dump.sql",
            "--out-dir",
            &out,
            "--ca-cert",
            path_str(&ca_path),
            "--name",
            "a.tgz",
        ],
        &[],
    );
    assert_eq!(trusted.code, Some(0), "{trusted:#?}");
    assert!(fs::read(extract(&s.out().join("a.tgz")).path().join("dump.sql")).unwrap() == data);

    let from_env = run(
        &["--url", &url, "--member", "dump.sql", "--out-dir", &out, "--name", "c.tgz"],
        &[("SSL_CERT_FILE", path_str(&ca_path))],
    );
    assert_eq!(from_env.code, Some(0), "SSL_CERT_FILE names the trusted bundle: {from_env:#?}");

    let insecure = run(
        &[
            "--url",
            &url,
            "--member",
            "dump.sql",
            "--out-dir",
            &out,
            "--insecure",
            "--name",
            "b.tgz",
        ],
        &[],
    );
    assert_eq!(insecure.code, Some(0), "{insecure:#?}");
    assert!(insecure.stderr.contains("NOT verified"), "--insecure is loud: {}", insecure.stderr);
}

#[test]
fn stale_dump_over_http_is_a_normal_end() {
    let s = Scratch::new();
    let zip = s.path("served.zip");
    make_zip(&zip, &[Entry::new("dump.sql", b"yesterday\n").stamped(Stamp::hours_ago(30))]);
    let server = serving(&zip);
    let run = run(
        &[
            "--url",
            &server.url("/n.zip"),
            "--member",
            "dump.sql",
            "--out-dir",
            &s.out_str(),
            "--keep-zip",
        ],
        &[],
    );
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.archive()["status"], "stale");
    assert!(run.record().get("path").is_none());
    assert!(listing(&s.out()).is_empty(), "no archive, no zip, no temp file");
}

#[test]
fn missing_member_in_a_downloaded_zip_lists_what_it_holds() {
    let s = Scratch::new();
    let zip = s.path("served.zip");
    make_zip(&zip, &[Entry::new("other.sql", b"x")]);
    let server = serving(&zip);
    let run = run(
        &["--url", &server.url("/n.zip"), "--member", "dump-*.sql", "--out-dir", &s.out_str()],
        &[],
    );
    assert_eq!(run.code, Some(65), "{run:#?}");
    assert!(
        run.error().contains("no entry matches \"dump-*.sql\"")
            && run.error().contains("other.sql"),
        "{run:#?}"
    );
    assert!(listing(&s.out()).is_empty());
}

#[test]
fn not_found_is_a_clear_error_without_retries() {
    let s = Scratch::new();
    let server = HttpServer::start().unwrap();
    server.set_default(Reply::text(404, "no such file"));
    let run = run(
        &[
            "--url",
            &server.url("/gone.zip"),
            "--member",
            "dump.sql",
            "--out-dir",
            &s.out_str(),
            "--retry-delay",
            "10ms",
        ],
        &[],
    );
    assert_eq!(run.code, Some(66), "{run:#?}");
    assert!(run.error().contains("answered 404 Not Found"), "{run:#?}");
    assert_eq!(server.requests().len(), 1, "a 4xx is not retried");
    assert!(listing(&s.out()).is_empty());
}

#[test]
fn a_server_error_is_retried_with_backoff() {
    let s = Scratch::new();
    let data = dump(20_000, 3);
    let zip = fresh_zip(&s, &data);
    let server = serving(&zip);
    server.enqueue(Reply::text(500, "database busy"));
    server.enqueue(Reply::text(503, "still busy"));
    let retried = run(
        &[
            "--url",
            &server.url("/n.zip"),
            "--member",
            "dump.sql",
            "--out-dir",
            &s.out_str(),
            "--retries",
            "3",
            "--retry-delay",
            "100ms",
            "--name",
            "x.tgz",
        ],
        &[],
    );
    assert_eq!(retried.code, Some(0), "{retried:#?}");
    assert_eq!(retried.archive()["status"], "created");
    assert!(
        retried.stderr.contains("500 Internal Server Error") && retried.stderr.contains("retrying"),
        "{}",
        retried.stderr
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let first_gap = requests[1].received - requests[0].received;
    let second_gap = requests[2].received - requests[1].received;
    assert!(first_gap >= Duration::from_millis(100), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(200), "the delay doubles: {second_gap:?}");

    let s2 = Scratch::new();
    let always = HttpServer::start().unwrap();
    always.set_default(Reply::text(502, "down"));
    let failed = run(
        &[
            "--url",
            &always.url("/n.zip"),
            "--member",
            "dump.sql",
            "--out-dir",
            &s2.out_str(),
            "--retries",
            "1",
            "--retry-delay",
            "10ms",
        ],
        &[],
    );
    assert_eq!(failed.code, Some(75), "{failed:#?}");
    assert!(failed.error().contains("gave up after 2 attempts"), "{failed:#?}");
    assert_eq!(always.requests().len(), 2);
}

#[test]
fn retry_after_is_honoured() {
    let s = Scratch::new();
    let zip = fresh_zip(&s, &dump(20_000, 12));
    let server = serving(&zip);
    server.enqueue(Reply::text(503, "maintenance").header("Retry-After", "1"));
    let run = run(
        &[
            "--url",
            &server.url("/n.zip"),
            "--member",
            "dump.sql",
            "--out-dir",
            &s.out_str(),
            "--retry-delay",
            "10ms",
        ],
        &[],
    );
    assert_eq!(run.code, Some(0), "{run:#?}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].received - requests[0].received;
    assert!(gap >= Duration::from_secs(1), "waited as asked, not 10 ms: {gap:?}");
}

#[test]
fn a_stalled_body_times_out_and_leaves_no_file() {
    let s = Scratch::new();
    let zip = fresh_zip(&s, &dump(300_000, 4));
    let server = HttpServer::start().unwrap();
    server.set_default(Reply::file(&zip).unwrap().stall_after(20_000));
    let run = run(
        &[
            "--url",
            &server.url("/n.zip"),
            "--member",
            "dump.sql",
            "--out-dir",
            &s.out_str(),
            "--stall-timeout",
            "500ms",
            "--retries",
            "1",
            "--retry-delay",
            "10ms",
        ],
        &[],
    );
    assert_eq!(run.code, Some(75), "{run:#?}");
    let message = run.error();
    assert!(message.contains("broke off after 20000 bytes"), "{message}");
    assert!(message.contains("stall timeout"), "{message}");
    assert_eq!(server.wait_for_requests(2, WAIT).unwrap().len(), 2, "retried once");
    assert!(listing(&s.out()).is_empty(), "no partial download left");
}

#[test]
fn a_broken_download_resumes_where_it_stopped() {
    let s = Scratch::new();
    let data = dump(300_000, 13);
    let zip = fresh_zip(&s, &data);
    let bytes = fs::read(&zip).unwrap();
    let total = bytes.len();
    let full = Reply::file(&zip).unwrap();
    let args = |url: &str, name: &'static str| {
        let out = s.out_str();
        run(
            &[
                "--url",
                url,
                "--member",
                "dump.sql",
                "--out-dir",
                &out,
                "--name",
                name,
                "--stall-timeout",
                "300ms",
                "--retry-delay",
                "10ms",
            ],
            &[],
        )
    };

    let ranges = HttpServer::start().unwrap();
    ranges.enqueue(full.clone().stall_after(20_000));
    let rest = bytes[20_000..].to_vec();
    let whole = full.clone();
    ranges.set_handler(move |request| match request.header("Range") {
        Some("bytes=20000-") => Reply::status(206)
            .header("Content-Range", &format!("bytes 20000-{}/{total}", total - 1))
            .body(&rest),
        _ => whole.clone(),
    });
    let resumed = args(&ranges.url("/n.zip"), "resumed.tgz");
    assert_eq!(resumed.code, Some(0), "{resumed:#?}");
    let requests = ranges.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].header("Range"), Some("bytes=20000-"));
    assert!(requests[1].header("If-Range").is_some(), "{:?}", requests[1].headers);
    assert!(
        fs::read(extract(&s.out().join("resumed.tgz")).path().join("dump.sql")).unwrap() == data
    );

    // A server without range support sends everything again: the file starts over.
    let plain = HttpServer::start().unwrap();
    plain.enqueue(full.clone().stall_after(20_000));
    plain.set_default(full);
    let restarted = args(&plain.url("/n.zip"), "restarted.tgz");
    assert_eq!(restarted.code, Some(0), "{restarted:#?}");
    assert_eq!(plain.requests().len(), 2);
    assert!(
        fs::read(extract(&s.out().join("restarted.tgz")).path().join("dump.sql")).unwrap() == data
    );
    assert_eq!(listing(&s.out()), ["restarted.tgz", "resumed.tgz"]);
}

#[test]
fn a_slow_download_that_keeps_flowing_is_not_cut() {
    // Ten pieces 200 ms apart: two seconds in all, twice the stall timeout, yet never silent
    // for more than a fifth of it.
    let s = Scratch::new();
    let data = dump(100_000, 10);
    let zip = fresh_zip(&s, &data);
    let url = support::trickle_server(fs::read(&zip).unwrap(), 10, Duration::from_millis(200));
    let run = run(
        &[
            "--url",
            &url,
            "--member",
            "dump.sql",
            "--out-dir",
            &s.out_str(),
            "--stall-timeout",
            "1s",
            "--retries",
            "0",
        ],
        &[],
    );
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.archive()["seconds"].as_f64().unwrap() >= 1.9, "{run:#?}");
    assert_eq!(run.archive()["bytes_in"], data.len());
}

#[test]
fn a_truncated_download_is_a_corrupt_zip() {
    let s = Scratch::new();
    let zip = fresh_zip(&s, &dump(100_000, 5));
    let bytes = fs::read(&zip).unwrap();
    let server = HttpServer::start().unwrap();
    server.set_default(Reply::status(200).body(&bytes[..bytes.len() - 100]));
    let run = run(
        &["--url", &server.url("/n.zip"), "--member", "dump.sql", "--out-dir", &s.out_str()],
        &[],
    );
    assert_eq!(run.code, Some(65), "{run:#?}");
    assert!(run.error().contains("truncated or corrupt"), "{run:#?}");
    assert!(listing(&s.out()).is_empty());
}

#[test]
fn unsafe_downloads_are_refused_and_cleaned_up() {
    let s = Scratch::new();
    let slip = s.path("slip.zip");
    make_zip(&slip, &[Entry::new("../dump.sql", b"evil")]);
    let bomb = s.path("bomb.zip");
    make_zip(&bomb, &[Entry::new("dump.sql", &vec![0u8; 32 << 20])]);
    fs::write(s.path("dump.sql"), b"secret rows\n").unwrap();
    let status = Command::new("zip")
        .current_dir(s.dir.path())
        .args(["-q", "-P", "pw", "enc.zip", "dump.sql"])
        .status()
        .expect("the zip program (Debian package zip) is installed");
    assert!(status.success());
    let cases =
        [(slip, "zip-slip"), (bomb, "more than --max-bytes"), (s.path("enc.zip"), "encrypted")];
    for (zip, expected) in cases {
        let server = serving(&zip);
        let run = run(
            &[
                "--url",
                &server.url("/n.zip"),
                "--member",
                "*dump.sql",
                "--out-dir",
                &s.out_str(),
                "--max-bytes",
                "1M",
            ],
            &[],
        );
        assert_eq!(run.code, Some(65), "{run:#?}");
        assert!(run.error().contains(expected), "{expected}: {run:#?}");
        assert!(listing(&s.out()).is_empty(), "{expected}: {:?}", listing(&s.out()));
    }
}

#[test]
fn max_download_caps_the_body() {
    let s = Scratch::new();
    let zip = fresh_zip(&s, &dump(200_000, 6));
    let server = serving(&zip);
    let run = run(
        &[
            "--url",
            &server.url("/n.zip"),
            "--member",
            "dump.sql",
            "--out-dir",
            &s.out_str(),
            "--max-download",
            "4K",
        ],
        &[],
    );
    assert_eq!(run.code, Some(65), "{run:#?}");
    assert!(run.error().contains("over --max-download 4096"), "{run:#?}");
    assert!(listing(&s.out()).is_empty());
}

#[test]
fn an_unchanged_zip_is_not_downloaded_again() {
    let s = Scratch::new();
    let zip = fresh_zip(&s, &dump(100_000, 7));
    let server = serving(&zip);
    let url = server.url("/n.zip");
    let state = s.path("state/archive-dump.json");
    let out = s.out_str();
    let args = [
        "--url",
        &url,
        "--member",
        "dump.sql",
        "--out-dir",
        &out,
        "--state",
        path_str(&state),
        "--name",
        "today.tgz",
    ];
    let first = run(&args, &[]);
    assert_eq!(first.code, Some(0), "{first:#?}");
    let tgz = s.out().join("today.tgz");
    let made = fs::metadata(&tgz).unwrap().modified().unwrap();

    let second = run(&args, &[]);
    assert_eq!(second.code, Some(0), "{second:#?}");
    let record = second.record();
    assert!(record.get("path").is_none(), "{record}");
    assert_eq!(record["archive"]["status"], "unchanged");
    assert_eq!(record["archive"]["previous_status"], "created");
    assert_eq!(record["archive"]["previous_path"], path_str(&tgz.canonicalize().unwrap()));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].header("If-None-Match").is_some(),
        "conditional GET: {:?}",
        requests[1].headers
    );
    assert!(requests[1].header("If-Modified-Since").is_some());
    assert_eq!(fs::metadata(&tgz).unwrap().modified().unwrap(), made, "the archive is untouched");
    assert_eq!(listing(&s.out()), ["today.tgz"]);

    // A new zip arrives while today's archive exists: refused, and the state keeps the old
    // validators so that a run with --overwrite still fetches it.
    let newer = dump(120_000, 8);
    make_zip(&zip, &[Entry::new("dump.sql", &newer)]);
    server.set_default(Reply::file(&zip).unwrap());
    let third = run(&args, &[]);
    assert_eq!(third.code, Some(74), "{third:#?}");
    assert!(third.error().contains("already exists"), "{third:#?}");
    let mut overwrite = args.to_vec();
    overwrite.push("--overwrite");
    let fourth = run(&overwrite, &[]);
    assert_eq!(fourth.code, Some(0), "{fourth:#?}");
    assert_eq!(fourth.archive()["status"], "created");
    assert!(fs::read(extract(&tgz).path().join("dump.sql")).unwrap() == newer);
    assert_eq!(listing(&s.out()), ["today.tgz"]);
}

#[test]
fn basic_auth_takes_the_password_from_a_file_or_the_environment() {
    let s = Scratch::new();
    let zip = fresh_zip(&s, &dump(10_000, 9));
    let expected =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("backup:pa55 word"));
    let server = HttpServer::start().unwrap();
    let reply = Reply::file(&zip).unwrap();
    server.set_handler(move |request| {
        if request.header("Authorization") == Some(expected.as_str()) {
            reply.clone()
        } else {
            Reply::text(401, "who are you").header("WWW-Authenticate", "Basic realm=\"backup\"")
        }
    });
    let url = server.url("/n.zip");
    let out = s.out_str();
    let base = [
        "--url",
        url.as_str(),
        "--member",
        "dump.sql",
        "--out-dir",
        out.as_str(),
        "--user",
        "backup",
    ];

    let from_env = run(
        &[&base[..], &["--name", "env.tgz"]].concat(),
        &[("ARCHIVE_DUMP_PASSWORD", "pa55 word")],
    );
    assert_eq!(from_env.code, Some(0), "{from_env:#?}");

    let password_file = s.path("password");
    fs::write(&password_file, "pa55 word\n").unwrap();
    let from_file = run(
        &[&base[..], &["--name", "file.tgz", "--password-file", path_str(&password_file)]].concat(),
        &[],
    );
    assert_eq!(from_file.code, Some(0), "{from_file:#?}");

    let wrong =
        run(&[&base[..], &["--name", "wrong.tgz"]].concat(), &[("ARCHIVE_DUMP_PASSWORD", "guess")]);
    assert_eq!(wrong.code, Some(77), "{wrong:#?}");
    assert!(wrong.error().contains("401 Unauthorized"), "{wrong:#?}");
    assert!(!wrong.stderr.contains("guess") && !wrong.error().contains("guess"));

    let no_password = run(&base, &[]);
    assert_eq!(no_password.code, Some(78), "{no_password:#?}");
    assert_eq!(server.requests().len(), 3, "no request without a password");
    assert_eq!(listing(&s.out()), ["env.tgz", "file.tgz"]);
}

#[test]
fn sigterm_during_a_silent_download_stops_at_once_and_cleans_up() {
    let s = Scratch::new();
    let zip = fresh_zip(&s, &dump(300_000, 11));
    let server = HttpServer::start().unwrap();
    server.set_default(Reply::file(&zip).unwrap().stall_after(10_000));
    let mut child = Command::new(support::BIN)
        .args([
            "--url",
            &server.url("/n.zip"),
            "--member",
            "dump.sql",
            "--out-dir",
            &s.out_str(),
            "--stall-timeout",
            "5m",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    server.wait_for_requests(1, WAIT).unwrap();
    opsline_testkit::net::wait_until(WAIT, || listing(&s.out()).len() == 1).unwrap();
    let started = Instant::now();
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    opsline_testkit::net::wait_until(WAIT, || child.try_wait().unwrap().is_some())
        .expect("archive-dump stops long before its 5 minute stall timeout");
    let output = child.wait_with_output().unwrap();
    assert!(started.elapsed() < WAIT);
    assert_eq!(output.status.code(), Some(75), "{}", String::from_utf8_lossy(&output.stderr));
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        record["error"]["message"].as_str().unwrap().contains("stopped by a signal"),
        "{record}"
    );
    assert!(listing(&s.out()).is_empty(), "the partial download is removed");
}
