//! The harness itself, exercised with real clients: curl, OpenSSH's sftp/ssh/ssh-keygen and
//! Python's smtplib.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use opsline_testkit::http::{HttpServer, Reply};
use opsline_testkit::smtp::{Smtp, SmtpOptions, SmtpSecurity};
use opsline_testkit::sshd::{SshAccount, Sshd, SshdOptions};
use opsline_testkit::tls::TestCa;

const WAIT: Duration = Duration::from_secs(5);

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--noproxy", "*"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running curl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------- HTTP

#[test]
fn http_records_requests_and_plays_the_script() {
    let server = HttpServer::start().unwrap();
    server.enqueue(Reply::json(400, &serde_json::json!({"id": "bad.request", "message": "no"})));
    server.enqueue(Reply::text(429, "slow down").header("Retry-After", "1"));

    let first = curl(&[
        "-w",
        "%{http_code}",
        "-H",
        "X-Test: one",
        "--json",
        r#"{"text":"hi"}"#,
        &server.url("/hook?a=1"),
    ]);
    assert_eq!(text(&first.stdout), r#"{"id":"bad.request","message":"no"}400"#);
    let second = curl(&["-i", &server.url("/hook")]);
    let head = text(&second.stdout);
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(head.contains("Retry-After: 1"), "{head}");
    let third = curl(&[
        "-w",
        " %{http_code}",
        "-d",
        "token=t&message=hello+world",
        &server.url("/1/messages.json"),
    ]);
    assert_eq!(text(&third.stdout), "ok 200");

    let requests = server.wait_for_requests(3, WAIT).unwrap();
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path(), "/hook");
    assert_eq!(requests[0].query(), Some("a=1"));
    assert_eq!(requests[0].header("x-test"), Some("one"));
    assert_eq!(requests[0].json().unwrap()["text"], "hi");
    assert_eq!(requests[1].method, "GET");
    assert!(requests[2].form().contains(&("message".to_owned(), "hello world".to_owned())));
    assert!(requests[1].received <= requests[2].received);
}

#[test]
fn https_needs_the_test_ca() {
    let ca = TestCa::new().unwrap();
    let server = HttpServer::start_tls(&ca).unwrap();
    server.set_handler(|request| Reply::text(200, &format!("you asked {}", request.path())));
    let cacert = ca.ca_cert_path();
    let trusted = curl(&["--cacert", cacert.to_str().unwrap(), &server.url("/x")]);
    assert_eq!(text(&trusted.stdout), "you asked /x", "{}", text(&trusted.stderr));
    let by_name = curl(&[
        "--cacert",
        cacert.to_str().unwrap(),
        &format!("https://localhost:{}/y", server.addr().port()),
    ]);
    assert_eq!(text(&by_name.stdout), "you asked /y", "{}", text(&by_name.stderr));
    let untrusted = curl(&[&server.url("/z")]);
    assert_eq!(untrusted.status.code(), Some(60), "{}", text(&untrusted.stderr));
}

#[test]
fn http_hang_and_stall_keep_the_client_waiting() {
    let server = HttpServer::start().unwrap();
    server.enqueue(Reply::hang());
    server.enqueue(Reply::status(200).body(&[b'x'; 1000]).stall_after(100));

    let started = Instant::now();
    let hung = curl(&["--max-time", "1", &server.url("/hang")]);
    assert_eq!(hung.status.code(), Some(28), "{}", text(&hung.stderr));
    assert!(started.elapsed() >= Duration::from_secs(1));

    let stalled = curl(&["--max-time", "1", &server.url("/stall")]);
    assert_eq!(stalled.status.code(), Some(28), "{}", text(&stalled.stderr));
    assert_eq!(stalled.stdout.len(), 100);
}

#[test]
fn http_drop_releases_a_hung_client() {
    let server = HttpServer::start().unwrap();
    server.set_default(Reply::hang());
    let mut client = Command::new("curl")
        .args(["-sS", "--max-time", "20", &server.url("/")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    server.wait_for_requests(1, WAIT).unwrap();
    let started = Instant::now();
    drop(server);
    let status = client.wait().unwrap();
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn http_file_reply_answers_304_to_matching_validators() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.bin");
    fs::write(&file, b"file contents").unwrap();
    let server = HttpServer::start().unwrap();
    server.set_default(Reply::file(&file).unwrap());

    let full = curl(&["-i", &server.url("/data.bin")]);
    let response = text(&full.stdout);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("file contents"), "{response}");
    let header = |name: &str| {
        response
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(|v| v.trim().to_owned())
            .unwrap()
    };
    let (etag, modified) = (header("ETag"), header("Last-Modified"));

    for validator in [format!("If-None-Match: {etag}"), format!("If-Modified-Since: {modified}")] {
        let cached = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &validator,
            &server.url("/data.bin"),
        ]);
        assert_eq!(text(&cached.stdout), "304", "{validator}");
    }
    let changed = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "If-None-Match: \"other\"",
        &server.url("/data.bin"),
    ]);
    assert_eq!(text(&changed.stdout), "200");
}

// ---------------------------------------------------------------- SMTP

/// Sends a message with an attachment through Debian's Python smtplib; returns its output.
fn send_with_smtplib(
    smtp: &Smtp,
    starttls: bool,
    implicit: bool,
    login: Option<(&str, &str)>,
) -> Output {
    let script = r#"
import smtplib, ssl, sys
from email.message import EmailMessage
port, cafile, starttls, implicit, user, password = sys.argv[1:7]
msg = EmailMessage()
msg["From"] = "ops@example.org"
msg["To"] = "team@example.org"
msg["Subject"] = "Upload finished é"
msg.set_content("The upload is done.\n")
msg.add_attachment(bytes(range(256)), maintype="application", subtype="octet-stream", filename="report.bin")
context = ssl.create_default_context(cafile=cafile) if cafile else None
if implicit == "1":
    s = smtplib.SMTP_SSL("127.0.0.1", int(port), context=context, timeout=5)
else:
    s = smtplib.SMTP("127.0.0.1", int(port), timeout=5)
    if starttls == "1":
        s.starttls(context=context)
if user:
    s.login(user, password)
s.send_message(msg, from_addr="bounce@example.org", to_addrs=["team@example.org", "boss@example.org"])
s.quit()
"#;
    let cafile = smtp.ca().map(|ca| ca.ca_cert_path().display().to_string()).unwrap_or_default();
    let (user, password) = login.unwrap_or(("", ""));
    let flag = |b: bool| if b { "1" } else { "0" };
    Command::new("/usr/bin/python3")
        .args([
            "-c",
            script,
            &smtp.port().to_string(),
            &cafile,
            flag(starttls),
            flag(implicit),
            user,
            password,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn smtp_plain_receives_a_message_from_curl() {
    let smtp = Smtp::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let message = dir.path().join("mail.eml");
    fs::write(
        &message,
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nbody line\r\n",
    )
    .unwrap();
    let sent = curl(&[
        &format!("smtp://127.0.0.1:{}", smtp.port()),
        "--mail-from",
        "a@example.org",
        "--mail-rcpt",
        "b@example.org",
        "-T",
        message.to_str().unwrap(),
    ]);
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let mails = smtp.wait_for_messages(1, WAIT).unwrap();
    assert_eq!(mails[0].envelope_from, "a@example.org");
    assert_eq!(mails[0].recipients, ["b@example.org"]);
    assert_eq!(mails[0].header("subject"), Some("hello"));
    assert_eq!(mails[0].text.as_deref().map(str::trim_end), Some("body line"));
    assert!(!mails[0].tls);
}

/// Sends a small message over STARTTLS with curl, authenticating with `mechanism`.
fn curl_smtp_login(smtp: &Smtp, mechanism: &str, user_password: &str) -> Output {
    let cacert = smtp.ca().unwrap().ca_cert_path();
    let mut child = Command::new("curl")
        .args(["-sS", "--ssl-reqd", "--cacert", cacert.to_str().unwrap(), "--user", user_password])
        .args(["--login-options", &format!("AUTH={mechanism}")])
        .args(["--mail-from", "a@example.org", "--mail-rcpt", "b@example.org", "-T", "-"])
        .arg(format!("smtp://127.0.0.1:{}", smtp.port()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"Subject: login test\r\n\r\nhi\r\n").unwrap();
    }
    child.wait_with_output().unwrap()
}

#[test]
fn smtp_starttls_with_auth_and_an_attachment() {
    let options = SmtpOptions {
        security: SmtpSecurity::StartTls,
        auth: Some(("mailer".into(), "s3cret".into())),
    };
    let smtp = Smtp::start_with(&options).unwrap();

    let refused = send_with_smtplib(&smtp, false, false, Some(("mailer", "s3cret")));
    assert!(!refused.status.success(), "AUTH must need STARTTLS");
    for mechanism in ["PLAIN", "LOGIN"] {
        let wrong = curl_smtp_login(&smtp, mechanism, "mailer:wrong");
        assert_eq!(wrong.status.code(), Some(67), "{mechanism}: {}", text(&wrong.stderr));
        let right = curl_smtp_login(&smtp, mechanism, "mailer:s3cret");
        assert!(right.status.success(), "{mechanism}: {}", text(&right.stderr));
    }
    let sent = send_with_smtplib(&smtp, true, false, Some(("mailer", "s3cret")));
    assert!(sent.status.success(), "{}\n{}", text(&sent.stderr), smtp.log());

    let mails = smtp.wait_for_messages(3, WAIT).unwrap();
    assert_eq!(mails.len(), 3);
    let mail = &mails[2];
    assert!(mail.tls);
    assert_eq!(mail.auth_user.as_deref(), Some("mailer"));
    assert_eq!(mail.envelope_from, "bounce@example.org");
    assert_eq!(mail.recipients, ["team@example.org", "boss@example.org"]);
    assert_eq!(mail.header("Subject"), Some("Upload finished é"));
    assert_eq!(mail.text.as_deref().map(str::trim_end), Some("The upload is done."));
    assert_eq!(mail.attachments.len(), 1);
    assert_eq!(mail.attachments[0].filename.as_deref(), Some("report.bin"));
    assert_eq!(mail.attachments[0].bytes, (0..=255).collect::<Vec<u8>>());
}

#[test]
fn smtp_implicit_tls_with_auth() {
    let options = SmtpOptions {
        security: SmtpSecurity::ImplicitTls,
        auth: Some(("mailer".into(), "pw".into())),
    };
    let smtp = Smtp::start_with(&options).unwrap();
    let sent = send_with_smtplib(&smtp, false, true, Some(("mailer", "pw")));
    assert!(sent.status.success(), "{}\n{}", text(&sent.stderr), smtp.log());
    let mails = smtp.wait_for_messages(1, WAIT).unwrap();
    assert!(mails[0].tls);
    assert_eq!(mails[0].auth_user.as_deref(), Some("mailer"));
}

// ---------------------------------------------------------------- OpenSSH

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn sftp_put_and_get_through_both_accounts_with_operation_log() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("source.bin");
    let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(&source, &payload).unwrap();

    for (account, program) in
        [(SshAccount::Jail, "internal-sftp"), (SshAccount::Shell, "sftp-server")]
    {
        let remote = sshd.remote_dir(account);
        let back = local.path().join(format!("back-{}.bin", account.name()));
        let batch = format!(
            "put {src} {remote}/a.bin\nrename {remote}/a.bin {remote}/b.bin\nget {remote}/b.bin {back}\n",
            src = source.display(),
            back = back.display()
        );
        assert_ok(&sshd.sftp(account, &batch).unwrap());
        assert_eq!(fs::read(&back).unwrap(), payload);
        assert_eq!(fs::read(sshd.upload_dir(account).join("b.bin")).unwrap(), payload);

        let log = sshd.wait_for_sftp_log(&format!("{program}["), WAIT).unwrap();
        let closed = format!("close \"{remote}/a.bin\" bytes read 0 written {}", payload.len());
        let log = sshd.wait_for_sftp_log(&closed, WAIT).map_err(|_| log).unwrap();
        assert!(
            log.contains(&format!("open \"{remote}/a.bin\" flags WRITE,CREATE,TRUNCATE mode 0644")),
            "{log}"
        );
        assert!(
            log.contains(&format!("rename old \"{remote}/a.bin\" new \"{remote}/b.bin\"")),
            "{log}"
        );
    }
}

#[test]
fn sftp_client_killed_mid_upload_logs_forced_close() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("big.bin");
    fs::write(&source, vec![7u8; 2_000_000]).unwrap();
    let mut command = sshd.sftp_command(SshAccount::Jail, Some(800));
    let mut client =
        command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = client.stdin.take().unwrap();
        writeln!(stdin, "put {} /upload/big.bin", source.display()).unwrap();
    }
    sshd.wait_for_sftp_log("open \"/upload/big.bin\"", WAIT).unwrap();
    client.kill().unwrap();
    client.wait().unwrap();
    sshd.wait_for_sftp_log("forced close \"/upload/big.bin\"", WAIT).unwrap();
}

#[test]
fn sshd_killed_mid_upload_comes_back_on_the_same_port() {
    let mut sshd = Sshd::start().unwrap();
    let port = sshd.port();
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("big.bin");
    fs::write(&source, vec![1u8; 2_000_000]).unwrap();
    let mut client = sshd
        .sftp_command(SshAccount::Shell, Some(800))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = client.stdin.take().unwrap();
        writeln!(stdin, "put {} big.bin", source.display()).unwrap();
    }
    sshd.wait_for_sftp_log("open \"", WAIT).unwrap();
    sshd.kill_server();
    let status = client.wait().unwrap();
    assert!(!status.success());
    let partial = fs::metadata(sshd.upload_dir(SshAccount::Shell).join("big.bin")).unwrap().len();
    assert!(partial < 2_000_000);

    sshd.restart().unwrap();
    assert_eq!(sshd.port(), port);
    let listed = sshd.sftp(SshAccount::Shell, "ls -l\n").unwrap();
    assert_ok(&listed);
    assert!(text(&listed.stdout).contains("big.bin"));
}

fn ssh_true(sshd: &Sshd, known_hosts: &Path) -> Output {
    Command::new("ssh")
        .arg("-p")
        .arg(sshd.port().to_string())
        .args(sshd.client_options(known_hosts))
        .arg(format!("{}@127.0.0.1", SshAccount::Shell.name()))
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn changed_host_key_is_detected() {
    let mut sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let known_hosts = local.path().join("known_hosts");
    sshd.write_known_hosts(&known_hosts).unwrap();
    let host = format!("[127.0.0.1]:{}", sshd.port());
    let found =
        Command::new("ssh-keygen").args(["-F", &host, "-f"]).arg(&known_hosts).output().unwrap();
    assert_ok(&found);
    assert_ok(&ssh_true(&sshd, &known_hosts));
    let old_fingerprint = sshd.host_key_fingerprint().unwrap();
    assert!(old_fingerprint.starts_with("SHA256:"));

    sshd.restart_with_new_host_key().unwrap();
    assert_ne!(sshd.host_key_fingerprint().unwrap(), old_fingerprint);
    let refused = ssh_true(&sshd, &known_hosts);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        text(&refused.stderr)
    );
    assert_ok(&sshd.ssh_command("true").output().unwrap());
}

#[test]
fn password_authentication_when_asked() {
    let sshd = Sshd::start_with(SshdOptions { password: Some("Opsline-test-1".into()) }).unwrap();
    let local = tempfile::tempdir().unwrap();
    let askpass = local.path().join("askpass.sh");
    fs::write(&askpass, "#!/bin/sh\necho Opsline-test-1\n").unwrap();
    fs::set_permissions(&askpass, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let output = Command::new("ssh")
        .args(["-F", "/dev/null", "-p", &sshd.port().to_string()])
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", sshd.known_hosts_path().display()))
        .arg(format!("{}@127.0.0.1", SshAccount::Shell.name()))
        .arg("echo logged-in")
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ok(&output);
    assert_eq!(text(&output.stdout).trim(), "logged-in");
    assert!(sshd.sshd_log().contains("Accepted password for opsline-sftp"), "{}", sshd.sshd_log());
}
