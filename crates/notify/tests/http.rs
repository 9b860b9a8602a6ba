//! Mattermost, Pushover and webhooks against a real recording HTTP server: payloads as the APIs
//! document them, 429 with Retry-After, 4xx, 5xx, hangs, a server that is down, rate limits,
//! dry runs, and secrets kept out of every log line.

mod common;

use std::time::Duration;

use common::{assert_no_secrets, lines, notify, secret_file};
use opsline_testkit::http::{HttpServer, Reply};
use opsline_testkit::tls::TestCa;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const HOOK_SECRET: &str = "hooks/xq7ej4w9nbg5tmd3";
const TOKEN: &str = "azGDORePK8gMaC0QOYAMyEEuzJnyUi";
const USER_KEY: &str = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG";

fn login() -> Value {
    json!({"kind": "line", "path": "/var/log/auth.log",
           "sshd": {"event": "accepted", "user": "root", "ip": "203.0.113.9", "port": 50022, "method": "publickey"}})
}

#[test]
fn mattermost_gets_the_documented_payload() {
    let server = HttpServer::start().unwrap();
    let url = server.url(&format!("/{HOOK_SECRET}"));
    let run = notify(
        &[
            "-vv",
            "--mattermost",
            "--channel",
            "town-square",
            "--username",
            "opsline",
            "--icon-url",
            "https://example.org/i.png",
        ],
        &[("NOTIFY_MATTERMOST_URL", &url)],
        &lines(&[login()]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = server.wait_for_requests(1, WAIT).unwrap();
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path(), format!("/{HOOK_SECRET}"));
    assert!(request.header("content-type").unwrap().starts_with("application/json"));
    let body = request.json().unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["text", "username", "channel", "icon_url"]);
    assert_eq!(body["channel"], "town-square");
    assert_eq!(body["username"], "opsline");
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("**SSH login accepted: root from 203.0.113.9**\n"), "{text}");
    assert_eq!(
        run.records[0]["notified"],
        json!({"mattermost": {"status": "sent", "attempts": 1}})
    );
    assert_no_secrets(&run, &[HOOK_SECRET]);
}

#[test]
fn mattermost_errors_show_the_api_text_without_retrying() {
    let server = HttpServer::start().unwrap();
    server.set_default(Reply::json(
        400,
        &json!({"id": "web.incoming_webhook.disabled.app_error", "message": "Incoming webhooks have been disabled by the system admin.", "status_code": 400}),
    ));
    let dir = tempfile::tempdir().unwrap();
    let url_file = secret_file(dir.path(), "mm.url", &server.url(&format!("/{HOOK_SECRET}")));
    let run = notify(
        &["-vvv", "--mattermost", "--mattermost-url-file", url_file.to_str().unwrap()],
        &[],
        &lines(&[login(), login()]),
    );
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert_eq!(server.requests().len(), 2, "one request per record, no retries");
    let message = run.records[0]["error"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "mattermost: Mattermost refused the message (400): Incoming webhooks have been disabled by the system admin. (web.incoming_webhook.disabled.app_error)"
    );
    assert_eq!(run.records.len(), 2, "the stream goes on");
    assert_no_secrets(&run, &[HOOK_SECRET]);
}

#[test]
fn long_mattermost_texts_are_cut_with_an_ellipsis() {
    let server = HttpServer::start().unwrap();
    let long = "x".repeat(20_000);
    let run = notify(
        &["--mattermost", "--body", "{{ note }}"],
        &[("NOTIFY_MATTERMOST_URL", &server.url("/hooks/abcd"))],
        &lines(&[json!({"kind": "note", "note": long})]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let body = server.wait_for_requests(1, WAIT).unwrap()[0].json().unwrap();
    let text = body["text"].as_str().unwrap();
    assert_eq!(text.chars().count(), 16_383);
    assert!(text.ends_with("x…"));
}

#[test]
fn pushover_gets_the_documented_form_within_its_limits() {
    let server = HttpServer::start().unwrap();
    server.set_default(Reply::json(
        200,
        &json!({"status": 1, "request": "647d2300-702c-4b38-8b2f-d56326ae460b"}),
    ));
    let dir = tempfile::tempdir().unwrap();
    let token = secret_file(dir.path(), "token", TOKEN);
    let user = secret_file(dir.path(), "user", USER_KEY);
    let run = notify(
        &[
            "-vvv",
            "--pushover",
            "--pushover-api",
            &server.base_url(),
            "--pushover-token-file",
            token.to_str().unwrap(),
            "--pushover-user-file",
            user.to_str().unwrap(),
            "--priority",
            "1",
            "--sound",
            "siren",
            "--title",
            "{{ 'T' * 300 }}",
            "--body",
            "{{ 'm' * 2000 }}",
            "--url",
            "https://files.example.org/{{ sshd.user }}",
        ],
        &[],
        &lines(&[login()]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = server.wait_for_requests(1, WAIT).unwrap();
    assert_eq!(requests[0].path(), "/1/messages.json");
    assert!(
        requests[0]
            .header("content-type")
            .unwrap()
            .starts_with("application/x-www-form-urlencoded")
    );
    let form = requests[0].form();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["token", "user", "message", "title", "url", "priority", "sound"]);
    assert_eq!(field("token"), Some(TOKEN));
    assert_eq!(field("user"), Some(USER_KEY));
    let message = field("message").unwrap();
    assert_eq!(message.chars().count(), 1024);
    assert!(message.ends_with("m…"));
    assert_eq!(field("title").unwrap().chars().count(), 250);
    assert_eq!(field("url"), Some("https://files.example.org/root"));
    assert_eq!(field("priority"), Some("1"));
    assert_eq!(field("sound"), Some("siren"));
    assert_eq!(
        run.records[0]["notified"]["pushover"]["request"],
        "647d2300-702c-4b38-8b2f-d56326ae460b"
    );
    assert_no_secrets(&run, &[TOKEN, USER_KEY]);
}

#[test]
fn pushover_429_means_the_quota_is_spent_and_is_not_retried() {
    let server = HttpServer::start().unwrap();
    server.set_default(
        Reply::json(429, &json!({"status": 0, "errors": ["monthly limit reached"]}))
            .header("Retry-After", "1"),
    );
    let run = notify(
        &["--pushover", "--pushover-api", &server.base_url()],
        &[("NOTIFY_PUSHOVER_TOKEN", TOKEN), ("NOTIFY_PUSHOVER_USER", USER_KEY)],
        &lines(&[login()]),
    );
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert_eq!(server.requests().len(), 1, "no retry against a spent quota");
    let message = run.records[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("monthly message quota is spent"), "{message}");
    assert_no_secrets(&run, &[TOKEN, USER_KEY]);
}

#[test]
fn a_429_is_retried_after_its_retry_after() {
    let server = HttpServer::start().unwrap();
    server.enqueue(Reply::text(429, "slow down").header("Retry-After", "1"));
    let run = notify(
        &["--webhook", &server.url("/in"), "--retry-delay", "0"],
        &[],
        &lines(&[json!({"kind": "upload", "path": "/u/a.mp4"})]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = server.wait_for_requests(2, WAIT).unwrap();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].received.duration_since(requests[0].received);
    assert!(gap >= Duration::from_millis(900), "waited only {gap:?}");
    assert_eq!(requests[1].json().unwrap()["path"], "/u/a.mp4", "the record itself is posted");
    assert_eq!(
        run.records[0]["notified"]["webhook"],
        json!({"status": "sent", "http": 200, "attempts": 2})
    );
    assert!(run.stderr.contains("429"), "the retry is logged: {}", run.stderr);
}

#[test]
fn server_errors_and_hangs_are_retried_then_given_up() {
    let server = HttpServer::start().unwrap();
    server.enqueue(Reply::text(500, "boom"));
    server.enqueue(Reply::hang());
    server.set_default(Reply::text(503, "still down"));
    let run = notify(
        &[
            "--webhook",
            &server.url("/in"),
            "--timeout",
            "0.5",
            "--retries",
            "2",
            "--retry-delay",
            "0.05",
        ],
        &[],
        &lines(&[json!({"kind": "a"}), json!({"kind": "b"})]),
    );
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert_eq!(run.records.len(), 2, "every record is passed on");
    let message = run.records[0]["error"]["message"].as_str().unwrap();
    assert_eq!(message, "webhook: webhook answered 503: still down (gave up after 3 attempts)");
    assert!(run.stderr.contains("no answer before --timeout"), "{}", run.stderr);
    assert_eq!(server.requests().len(), 6);
}

#[test]
fn a_server_that_is_down_marks_records_and_the_stream_goes_on() {
    let server = HttpServer::start().unwrap();
    let url = server.url("/in");
    drop(server);
    let run = notify(
        &["--webhook", &url, "--retries", "1", "--retry-delay", "0.01"],
        &[],
        &lines(&[json!({"kind": "a"}), json!({"kind": "b"}), json!({"kind": "c"})]),
    );
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert_eq!(run.records.len(), 3);
    for record in &run.records {
        assert_eq!(record["error"]["tool"], "notify");
        assert_eq!(record["notified"]["webhook"], json!({"status": "failed", "attempts": 2}));
    }
}

#[test]
fn max_per_minute_holds_back_a_burst() {
    let server = HttpServer::start().unwrap();
    let records: Vec<Value> = (0..5).map(|_| login()).collect();
    let run =
        notify(&["--webhook", &server.url("/in"), "--max-per-minute", "2"], &[], &lines(&records));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(server.requests().len(), 2);
    let suppressed = run.records.iter().filter(|r| r["notified"]["suppressed"].is_string()).count();
    assert_eq!(suppressed, 3);
    assert!(
        run.stderr.contains("3 message(s) not sent because of --max-per-minute"),
        "{}",
        run.stderr
    );
}

#[test]
fn webhook_templates_headers_and_tls() {
    let ca = TestCa::new().unwrap();
    let server = HttpServer::start_tls(&ca).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let headers = secret_file(dir.path(), "headers", &format!("Authorization: Bearer {TOKEN}"));
    let template = dir.path().join("payload.json");
    std::fs::write(
        &template,
        "{\"file\": {{ path | tojson }}, \"size\": {{ size | size | tojson }}}",
    )
    .unwrap();
    let run = notify(
        &[
            "-vvv",
            "--webhook",
            &server.url("/in"),
            "--ca-cert",
            ca.ca_cert_path().to_str().unwrap(),
            "--webhook-template",
            template.to_str().unwrap(),
            "--header",
            "X-Source: opsline",
            "--header-file",
            headers.to_str().unwrap(),
        ],
        &[],
        &lines(&[json!({"kind": "upload", "path": "/u/a.mp4", "size": 1536})]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let request = &server.wait_for_requests(1, WAIT).unwrap()[0];
    assert_eq!(request.json().unwrap(), json!({"file": "/u/a.mp4", "size": "1.5 KiB"}));
    assert_eq!(request.header("x-source"), Some("opsline"));
    assert_eq!(request.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_no_secrets(&run, &[TOKEN]);

    let untrusted = notify(
        &["--webhook", &server.url("/in"), "--retries", "0"],
        &[],
        &lines(&[json!({"kind": "upload"})]),
    );
    assert_eq!(untrusted.code, 75, "a certificate from an unknown CA is refused");
}

#[test]
fn slack_payloads_carry_text_channel_and_name() {
    let server = HttpServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url_file =
        secret_file(dir.path(), "slack.url", &server.url(&format!("/services/{HOOK_SECRET}")));
    let run = notify(
        &[
            "--webhook-url-file",
            url_file.to_str().unwrap(),
            "--webhook-format",
            "slack",
            "--channel",
            "#ops",
            "--username",
            "backup",
            "--dry-run",
        ],
        &[],
        &lines(&[login()]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(server.requests().is_empty(), "a dry run sends nothing");
    assert!(run.stderr.contains("(URL hidden)"), "{}", run.stderr);
    assert!(run.stderr.contains("SSH login accepted: root from 203.0.113.9"), "{}", run.stderr);
    assert_eq!(run.records[0]["notified"]["webhook"]["status"], "dry-run");
    assert_no_secrets(&run, &[HOOK_SECRET]);

    let run = notify(
        &[
            "--webhook-url-file",
            url_file.to_str().unwrap(),
            "--webhook-format",
            "slack",
            "--channel",
            "#ops",
            "--username",
            "backup",
        ],
        &[],
        &lines(&[login()]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let body = server.wait_for_requests(1, WAIT).unwrap()[0].json().unwrap();
    assert_eq!(body["channel"], "#ops");
    assert_eq!(body["username"], "backup");
    assert!(
        body["text"].as_str().unwrap().starts_with("*SSH login accepted: root from 203.0.113.9*\n")
    );
}

#[test]
fn template_errors_name_the_template_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.txt");
    std::fs::write(&body, "Hello {{ user.name }},\n{{ size | }}\nbig\n").unwrap();
    let run = notify(
        &["--webhook", "http://127.0.0.1:9/in", "--body-file", body.to_str().unwrap()],
        &[],
        &lines(&[login()]),
    );
    assert_eq!(run.code, 78, "{}", run.stderr);
    let expected = format!("notify: error: template {}, line 2: syntax error", body.display());
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert!(run.records.is_empty());

    let server = HttpServer::start().unwrap();
    let run = notify(
        &[
            "--webhook",
            &server.url("/in"),
            "--body",
            "line one\n{% if size %}{{ size + 'x' }}{% endif %}",
        ],
        &[],
        &lines(&[json!({"kind": "upload", "size": 5}), json!({"kind": "note"})]),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let message = run.records[0]["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("template --body, line 2: invalid operation"), "{message}");
    assert!(run.records[1].get("error").is_none(), "the next record renders");
    assert_eq!(server.wait_for_requests(1, WAIT).unwrap().len(), 1);
}

#[test]
fn a_stream_digest_goes_out_every_interval() {
    use std::io::Write;
    let server = HttpServer::start().unwrap();
    let mut child = common::command()
        .args(["--digest", "--every", "1s", "--webhook", &server.url("/in")])
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", json!({"kind": "line"})).unwrap();
    writeln!(
        stdin,
        "{}",
        json!({"kind": "line", "error": {"tool": "log-tail", "message": "gone"}})
    )
    .unwrap();
    stdin.flush().unwrap();
    let first = server.wait_for_requests(1, WAIT).unwrap()[0].json().unwrap();
    assert_eq!(first["count"], 2);
    assert_eq!(first["summary"], "1 error");
    writeln!(stdin, "{}", json!({"kind": "token"})).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let requests = server.wait_for_requests(2, WAIT).unwrap();
    let last = requests.last().unwrap().json().unwrap();
    assert_eq!((last["count"].clone(), last["summary"].clone()), (json!(1), json!("OK")));
    assert_eq!(String::from_utf8(output.stdout).unwrap().lines().count(), 3);
}

#[test]
fn sigterm_sends_what_the_digest_holds_and_exits() {
    use std::io::{BufRead, BufReader, Write};
    let server = HttpServer::start().unwrap();
    let mut child = common::command()
        .args(["--digest", "--every", "1h", "--webhook", &server.url("/in")])
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", json!({"kind": "line"})).unwrap();
    writeln!(stdin, "{}", json!({"kind": "session"})).unwrap();
    stdin.flush().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..2 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("\"queued\""), "{line}");
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "a stop is not a failure");
    let requests = server.wait_for_requests(1, WAIT).unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].json().unwrap()["count"], 2);
    drop(stdin);
}

#[test]
fn when_picks_the_records_to_tell_about() {
    let server = HttpServer::start().unwrap();
    let failed =
        json!({"kind": "line", "sshd": {"event": "failed", "user": "x", "ip": "198.51.100.7"}});
    let records = [login(), failed, login()];
    let run = notify(
        &["--webhook", &server.url("/in"), "--when", "sshd.event == \"accepted\""],
        &[],
        &lines(&records),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(server.wait_for_requests(2, WAIT).unwrap().len(), 2);
    assert_eq!(run.records.len(), 3);
    assert_eq!(run.records[1], records[1], "a record not picked passes through untouched");
    assert_eq!(run.records[2]["notified"]["webhook"]["status"], "sent");

    let digest = HttpServer::start().unwrap();
    let run = notify(
        &["--digest", "--webhook", &digest.url("/in"), "--when", "sshd.event != \"accepted\""],
        &[],
        &lines(&records),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = digest.wait_for_requests(1, WAIT).unwrap()[0].json().unwrap();
    assert_eq!(summary["count"], 1);
    assert_eq!(run.records[1]["notified"]["digest"], "queued");
    assert!(run.records[0].get("notified").is_none());
}

#[test]
fn a_batch_digest_reports_even_an_empty_input() {
    let server = HttpServer::start().unwrap();
    let run = notify(
        &["--digest", "--webhook", &server.url("/in"), "--webhook-format", "slack"],
        &[],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let body = server.wait_for_requests(1, WAIT).unwrap()[0].json().unwrap();
    assert!(body["text"].as_str().unwrap().starts_with("*OK: 0 records*\n"), "{body}");
}

#[test]
fn emergency_pushes_carry_retry_and_expire() {
    let run = notify(
        &["--pushover", "--priority", "2", "--dry-run", "--title", "down", "--body", "{{ kind }}"],
        &[("NOTIFY_PUSHOVER_TOKEN", TOKEN), ("NOTIFY_PUSHOVER_USER", USER_KEY)],
        &lines(&[json!({"kind": "session"})]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            r#"{"message":"session","title":"down","priority":"2","retry":"60","expire":"3600"}"#
        ),
        "{}",
        run.stderr
    );
    assert_no_secrets(&run, &[TOKEN, USER_KEY]);
}

#[test]
fn json_logs_keep_secrets_out_too() {
    let server = HttpServer::start().unwrap();
    server.set_default(Reply::text(500, "upstream broke"));
    let run = notify(
        &[
            "-vvv",
            "--log-format",
            "json",
            "--mattermost",
            "--pushover",
            "--pushover-api",
            &server.base_url(),
            "--retries",
            "1",
            "--retry-delay",
            "0",
        ],
        &[
            ("NOTIFY_MATTERMOST_URL", &server.url(&format!("/{HOOK_SECRET}"))),
            ("NOTIFY_PUSHOVER_TOKEN", TOKEN),
            ("NOTIFY_PUSHOVER_USER", USER_KEY),
        ],
        &lines(&[login()]),
    );
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert_eq!(server.requests().len(), 4, "two attempts on each channel");
    for line in run.stderr.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line: {line}: {e}"));
    }
    assert!(run.stderr.contains("upstream broke"), "{}", run.stderr);
    assert_no_secrets(&run, &[HOOK_SECRET, TOKEN, USER_KEY]);
}
