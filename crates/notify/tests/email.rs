//! E-mail through a real SMTP server (aiosmtpd): STARTTLS with a test CA, implicit TLS, AUTH,
//! attachments, digests, missing recipients.

mod common;

use std::time::Duration;

use common::{assert_no_secrets, lines, notify, secret_file};
use opsline_testkit::smtp::{Smtp, SmtpOptions, SmtpSecurity};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "pw-9f3c1d7e";

fn server(security: SmtpSecurity) -> Smtp {
    Smtp::start_with(&SmtpOptions {
        security,
        auth: Some(("notify".to_owned(), PASSWORD.to_owned())),
    })
    .expect("the SMTP server starts")
}

#[test]
fn mails_the_uploader_over_starttls_with_the_thumbnail() {
    let smtp = server(SmtpSecurity::StartTlsRequired);
    let dir = tempfile::tempdir().unwrap();
    let thumbnail = dir.path().join("clip.png");
    let png: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    std::fs::write(&thumbnail, &png).unwrap();
    let too_big = dir.path().join("big.png");
    std::fs::write(&too_big, vec![0u8; 20_000]).unwrap();
    let password = secret_file(dir.path(), "smtp.pw", PASSWORD);
    let url = format!("smtp://127.0.0.1:{}", smtp.port());
    let ca = smtp.ca().unwrap().ca_cert_path();
    let records = [
        json!({"kind": "video", "path": "/srv/out/clip.flv",
               "user": {"login": "ann", "name": "Ann Example", "email": "ann@example.org"},
               "video": {"source": "/srv/in/clip.mp4", "thumbnail": thumbnail,
                         "metadata": {"duration": 187.4, "size": 3_670_016, "width": 640, "height": 360}}}),
        json!({"kind": "video", "path": "/srv/out/other.flv",
               "user": {"login": "bob", "email": "bob@example.org"}, "video": {"thumbnail": too_big}}),
    ];
    let run = notify(
        &[
            "-vvv",
            "--smtp",
            &url,
            "--smtp-ca-cert",
            ca.to_str().unwrap(),
            "--smtp-user",
            "notify",
            "--smtp-password-file",
            password.to_str().unwrap(),
            "--from",
            "Videos <videos@example.org>",
            "--to-field",
            "user.email",
            "--attach-field",
            "video.thumbnail",
            "--max-attachment-size",
            "10000",
        ],
        &[],
        &lines(&records),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mails = smtp.wait_for_messages(2, WAIT).unwrap();
    let ann = mails.iter().find(|m| m.recipients == ["ann@example.org"]).expect("Ann's mail");
    assert!(ann.tls, "the session was encrypted");
    assert_eq!(ann.auth_user.as_deref(), Some("notify"));
    assert_eq!(ann.envelope_from, "videos@example.org");
    assert_eq!(ann.header("Subject"), Some("Your video is ready: clip.mp4"));
    assert_eq!(ann.header("Auto-Submitted"), Some("auto-generated"));
    let text = ann.text.as_deref().unwrap();
    assert!(text.contains("Hello Ann Example"), "{text}");
    assert!(text.contains("3m 07s") && text.contains("3.5 MiB"), "{text}");
    assert_eq!(ann.attachments.len(), 1);
    assert_eq!(ann.attachments[0].filename.as_deref(), Some("clip.png"));
    assert_eq!(ann.attachments[0].content_type, "image/png");
    assert_eq!(ann.attachments[0].bytes, png);
    let bob = mails.iter().find(|m| m.recipients == ["bob@example.org"]).expect("Bob's mail");
    assert!(bob.attachments.is_empty(), "too big to attach");
    assert!(run.stderr.contains("larger than --max-attachment-size"), "{}", run.stderr);

    assert_eq!(run.records.len(), 2);
    assert_eq!(run.records[0]["notified"]["email"]["status"], "sent");
    assert_eq!(run.records[0]["notified"]["email"]["to"], json!(["ann@example.org"]));
    assert_eq!(run.records[0]["notified"]["email"]["attachments"], json!(["clip.png"]));
    assert_eq!(run.records[0]["user"], records[0]["user"], "fields are kept");
    assert_no_secrets(&run, &[PASSWORD]);
}

#[test]
fn implicit_tls_needs_a_trusted_certificate() {
    let smtp = server(SmtpSecurity::ImplicitTls);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("smtps://127.0.0.1:{}", smtp.port());
    let ca = smtp.ca().unwrap().ca_cert_path();
    let record = lines(&[
        json!({"kind": "shipped", "path": "/a/20261123.tgz", "sftp": {"host": "backup1"}}),
    ]);
    let env = [("NOTIFY_SMTP_PASSWORD", PASSWORD)];
    let base = [
        "--smtp",
        &url,
        "--smtp-user",
        "notify",
        "--from",
        "ops@example.org",
        "--to",
        "admin@example.org",
    ];

    let untrusted = notify(&[&base[..], &["--retries", "0"]].concat(), &env, &record);
    assert_eq!(untrusted.code, 75, "{}", untrusted.stderr);
    assert_eq!(untrusted.records[0]["error"]["tool"], "notify");
    assert_eq!(untrusted.records[0]["notified"]["email"]["status"], "failed");

    let trusted =
        notify(&[&base[..], &["--smtp-ca-cert", ca.to_str().unwrap()]].concat(), &env, &record);
    assert_eq!(trusted.code, 0, "{}", trusted.stderr);
    let mails = smtp.wait_for_messages(1, WAIT).unwrap();
    assert_eq!(mails.len(), 1, "only the trusted run delivered");
    assert!(mails[0].tls);
    assert_eq!(mails[0].header("Subject"), Some("Shipped 20261123.tgz to backup1"));
    assert_no_secrets(&untrusted, &[PASSWORD]);
    assert_no_secrets(&trusted, &[PASSWORD]);
    drop(dir);
}

#[test]
fn a_missing_recipient_fails_that_record_only() {
    let smtp = Smtp::start().unwrap();
    let url = format!("smtp://127.0.0.1:{}", smtp.port());
    let records = [
        json!({"kind": "video", "path": "/o/1.flv", "user": {"email": "one@example.org"}}),
        json!({"kind": "video", "path": "/o/2.flv", "user": {"login": "nomail"}}),
        json!({"kind": "video", "path": "/o/3.flv", "user": {"email": "three@example.org"}}),
    ];
    let run = notify(
        &["--smtp", &url, "--from", "v@example.org", "--to-field", "user.email"],
        &[],
        &lines(&records),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let mails = smtp.wait_for_messages(2, WAIT).unwrap();
    let mut to: Vec<&str> = mails.iter().map(|m| m.recipients[0].as_str()).collect();
    to.sort_unstable();
    assert_eq!(to, ["one@example.org", "three@example.org"]);
    assert_eq!(run.records.len(), 3);
    assert!(run.records[0].get("error").is_none());
    assert_eq!(
        run.records[1]["error"]["message"],
        "no recipient: the record has no field \"user.email\""
    );
    assert_eq!(run.records[2]["notified"]["email"]["status"], "sent");
}

#[test]
fn a_digest_puts_errors_first_and_attaches_the_log() {
    let smtp = Smtp::start().unwrap();
    let url = format!("smtp://localhost:{}", smtp.port());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("backup.log");
    std::fs::write(&log, "started\nfinished with 2 errors\n").unwrap();
    let records = [
        json!({"kind": "archive", "path": "/a/db.tgz", "archive": {"status": "created"}}),
        json!({"kind": "archive", "archive": {"status": "stale", "member": "db.sql"}}),
        json!({"kind": "shipped", "path": "/a/db.tgz"}),
        json!({"kind": "archive", "error": {"tool": "archive-dump", "message": "zip is truncated"}}),
        json!({"kind": "shipped", "path": "/a/web.tgz", "error": {"tool": "ship-sftp", "message": "host key changed"}}),
    ];
    let run = notify(
        &[
            "--digest",
            "--smtp",
            &url,
            "--from",
            "backup@example.org",
            "--to",
            "admin@example.org,ops@example.org",
            "--attach",
            log.to_str().unwrap(),
        ],
        &[],
        &lines(&records),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mails = smtp.wait_for_messages(1, WAIT).unwrap();
    assert_eq!(mails.len(), 1, "one digest for the whole input");
    let mail = &mails[0];
    assert_eq!(mail.recipients, ["admin@example.org", "ops@example.org"]);
    assert_eq!(
        mail.header("Subject"),
        Some("2 errors, 1 warning: 5 records (3 archive, 2 shipped)")
    );
    let text = mail.text.as_deref().unwrap().replace("\r\n", "\n");
    let errors = text.find("Errors (2):").expect("errors listed");
    let warnings = text.find("Warnings (1):").expect("warnings listed");
    let details = text.find("Details:").expect("details listed");
    assert!(errors < warnings && warnings < details, "{text}");
    assert!(text.contains("archive: archive-dump: zip is truncated"), "{text}");
    assert!(text.contains("shipped /a/web.tgz: ship-sftp: host key changed"), "{text}");
    assert!(text.contains("archive stale"), "{text}");
    assert!(text.contains("  error: 2\n  warning: 1\n  ok: 2\n"), "{text}");
    assert_eq!(mail.attachments.len(), 1);
    assert_eq!(mail.attachments[0].bytes, std::fs::read(&log).unwrap());
    assert_eq!(run.records.len(), 5, "every record is passed on");
    assert!(run.records.iter().all(|r| r["notified"]["digest"] == "queued"));
}

#[test]
fn an_undeliverable_digest_exits_75() {
    let smtp = Smtp::start().unwrap();
    let url = format!("smtp://127.0.0.1:{}", smtp.port());
    drop(smtp);
    let run = notify(
        &[
            "--digest",
            "--smtp",
            &url,
            "--from",
            "b@example.org",
            "--to",
            "a@example.org",
            "--retries",
            "1",
            "--retry-delay",
            "0.1",
        ],
        &[],
        &lines(&[json!({"kind": "archive"})]),
    );
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert!(run.stderr.contains("digest of 1 records not delivered"), "{}", run.stderr);
    assert!(run.stderr.contains("gave up after 2 attempts"), "{}", run.stderr);
    assert_eq!(run.records.len(), 1);
}

#[test]
fn a_refused_login_is_not_retried_and_the_password_stays_hidden() {
    let smtp = server(SmtpSecurity::StartTls);
    let url = format!("smtp://localhost:{}", smtp.port());
    let ca = smtp.ca().unwrap().ca_cert_path();
    let wrong = "wrong-pw-55e1a9";
    let run = notify(
        &[
            "-vvv",
            "--smtp",
            &url,
            "--smtp-ca-cert",
            ca.to_str().unwrap(),
            "--smtp-user",
            "notify",
            "--from",
            "ops@example.org",
            "--to",
            "admin@example.org",
            "--retry-delay",
            "5",
        ],
        &[("NOTIFY_SMTP_PASSWORD", wrong)],
        &lines(&[json!({"kind": "archive"})]),
    );
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert_eq!(run.records[0]["notified"]["email"], json!({"status": "failed", "attempts": 1}));
    let message = run.records[0]["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("email: SMTP localhost:"), "{message}");
    assert!(message.contains("535"), "the server's refusal is shown: {message}");
    assert!(smtp.messages().unwrap().is_empty());
    assert_no_secrets(&run, &[wrong, PASSWORD]);
}
