//! The five workflows end to end: the tools' real binaries chained in bash pipelines against
//! real servers on 127.0.0.1 (OpenSSH with the real `sftp` client, SMTP, HTTPS, HTTP), with
//! assertions on what arrived there. Needs the tools built: `cargo build --workspace`.

use std::fs;

use opsline_workflows::Lab;
use opsline_workflows::summary::{file_sha256, sha256_hex};
use opsline_workflows::workflows::{backup, license, log_archive, ssh_alarm, text, video};

fn lab() -> Lab {
    Lab::start().expect("the lab starts (servers, and the tools built by cargo build --workspace)")
}

#[test]
fn video_uploads_mail_the_uploader_the_thumbnail_and_the_admin_failures() {
    let lab = lab();
    let s = video::run(&lab).unwrap();
    assert_eq!(s.problems(), Vec::<String>::new(), "{s}");

    assert_eq!(s.mails.len(), 2, "{:#?}", s.mails);
    for mail in &s.mails {
        assert_eq!(mail.from, "Videos <videos@example.org>");
    }
    let ready = s
        .mails
        .iter()
        .find(|m| m.subject.contains(video::GOOD_NAME))
        .expect("a mail for the good upload");
    assert!(!ready.subject.contains("error"), "{ready}");
    assert_eq!(ready.recipients, [video::UPLOADER_EMAIL], "{ready}");
    let [thumbnail] = ready.attachments.as_slice() else { panic!("one attachment: {ready}") };
    assert_eq!(thumbnail.filename, "holiday.png");
    assert_eq!(thumbnail.content_type, "image/png");
    assert_eq!(
        thumbnail.sha256, s.thumbnail_sha256,
        "the thumbnail beside the FLV is the one attached"
    );

    let failed = s
        .mails
        .iter()
        .find(|m| m.subject.contains(video::BROKEN_NAME))
        .expect("a mail for the broken upload");
    assert!(failed.subject.starts_with("[error]"), "{failed}");
    assert_eq!(failed.recipients, [video::ADMIN_EMAIL], "failures go to the admin: {failed}");
    assert!(failed.attachments.is_empty(), "no thumbnail for a broken upload: {failed}");

    assert_eq!(s.converted_format, "flv");
    assert_eq!(s.converted.file_name().unwrap(), "holiday.flv");
    assert!(s.converted_bytes > 10_000);

    assert_eq!(s.records.len(), 2, "{:#?}", s.records);
    let good = s.records.iter().find(|r| r.get("error").is_none()).unwrap();
    assert_eq!(good["kind"], "video");
    assert_eq!(good["user"]["login"], s.account);
    assert_eq!(good["notified"]["email"]["status"], "sent");
    assert_eq!(good["notified"]["email"]["attachments"][0], "holiday.png");
    let bad = s.records.iter().find(|r| r.get("error").is_some()).unwrap();
    assert_eq!(bad["error"]["tool"], "convert-video");
    assert!(text(bad, "path").ends_with(video::BROKEN_NAME));
    assert_eq!(s.run.status.code(), Some(1), "one record failed: {}", s.run.stderr);
}

#[test]
fn nightly_backup_ships_the_archive_prunes_old_ones_and_sends_a_recap() {
    let lab = lab();
    let s = backup::run(&lab).unwrap();
    assert_eq!(s.problems(), Vec::<String>::new(), "{s}");

    assert_eq!(s.downloads, 1);
    assert_eq!(s.archive.file_name().unwrap().to_str().unwrap(), backup::archive_name(0));
    assert_eq!(s.remote_sha256, s.local_sha256, "the copy on the server is the archive");
    assert_eq!(s.reported_sha256, s.local_sha256);
    let tar = std::process::Command::new("tar").arg("-tzf").arg(&s.archive).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&tar.stdout).trim(), "dump.sql");

    let pruned: Vec<&str> = s.pruned.iter().map(|p| p.rsplit('/').next().unwrap()).collect();
    assert_eq!(pruned, [backup::archive_name(40), backup::archive_name(31)]);
    let mut expected =
        vec![backup::archive_name(29), backup::archive_name(5), backup::archive_name(0)];
    expected.sort();
    assert_eq!(s.after, expected);

    assert_eq!(s.mail.recipients, [backup::ADMIN_EMAIL]);
    assert!(s.mail.subject.starts_with("OK"), "{}", s.mail);
    assert!(
        s.mail.subject.contains("1 shipped") && s.mail.subject.contains("2 pruned"),
        "{}",
        s.mail
    );
    let [log] = s.mail.attachments.as_slice() else { panic!("the run's log attached: {}", s.mail) };
    assert!(!s.run_log.is_empty(), "the tools logged the run");
    assert_eq!(log.sha256, sha256_hex(s.run_log.as_bytes()), "the attachment is the run's log");
    let shipped = backup::archive_name(0);
    assert!(s.mail.text.contains(&shipped), "the recap names {shipped}: {}", s.mail.text);
    assert!(s.run_log.contains("shipped to 127.0.0.1"), "{}", s.run_log);
    for old in [backup::archive_name(40), backup::archive_name(31)] {
        assert!(
            s.run_log.contains("pruned ") && s.run_log.contains(&old),
            "the log names {old}: {}",
            s.run_log
        );
        assert!(s.mail.text.contains(&old), "the recap names the pruned {old}: {}", s.mail.text);
    }

    let [post] = s.mattermost.as_slice() else { panic!("one Mattermost post: {:?}", s.mattermost) };
    let post = text(post, "text");
    assert!(post.contains("1 shipped") && post.contains("2 pruned"), "{post}");
}

#[test]
fn nightly_backup_of_a_stale_dump_ships_nothing_and_the_recap_warns() {
    let lab = lab();
    let s = backup::run_stale(&lab).unwrap();
    assert_eq!(s.problems(), Vec::<String>::new(), "{s}");

    assert_eq!(s.records.len(), 1, "{:#?}", s.records);
    assert_eq!(s.records[0]["archive"]["status"], "stale");
    assert!(s.records[0].get("path").is_none());
    assert_eq!(s.after, s.before);
    assert!(s.local.is_empty());
    assert_eq!(s.mail.recipients, [backup::ADMIN_EMAIL]);
    assert!(s.mail.subject.contains("1 warning"), "{}", s.mail);
    assert!(s.mail.text.contains("stale"), "{}", s.mail.text);
    let [post] = s.mattermost.as_slice() else { panic!("one post: {:?}", s.mattermost) };
    assert!(text(post, "text").contains("warning"), "{post}");
}

#[test]
fn log_archive_mirrors_logs_ships_appended_lines_and_finds_them() {
    let lab = lab();
    let s = log_archive::run(&lab).unwrap();
    assert_eq!(s.problems(), Vec::<String>::new(), "{s}");

    assert_eq!(s.first_shipped, log_archive::LOG_FILES);
    assert_eq!(s.second_shipped, ["app.log"], "only the log that grew goes again");
    assert_eq!(s.central_files, log_archive::LOG_FILES, "skip.txt is not a log");
    let lines: Vec<&str> = s.central_app_log.lines().collect();
    assert_eq!(lines.len(), 1 + log_archive::APPENDED.len(), "{}", s.central_app_log);
    assert_eq!(lines[1..], *log_archive::APPENDED);

    let mut found: Vec<&str> = s.found.iter().map(|r| text(r, "path")).collect();
    found.sort();
    assert_eq!(found.len(), 2, "{:#?}", s.found);
    assert!(found[0].ends_with("/log-archive/node1/app.log"), "{found:?}");
    assert!(found[1].ends_with("/log-archive/node1/worker/jobs.log"), "{found:?}");
    assert_eq!(fs::read_to_string(found[0]).unwrap(), s.central_app_log);
}

#[test]
fn log_archive_agent_as_a_service_ships_changes_until_stopped() {
    let lab = lab();
    let s = log_archive::run_service(&lab).unwrap();
    assert_eq!(s.problems(), Vec::<String>::new(), "{s}");

    assert_eq!(s.shipped.last().map(String::as_str), Some("app.log"), "the grown log went last");
    let lines: Vec<&str> = s.central_app_log.lines().collect();
    assert_eq!(lines[1..], *log_archive::APPENDED);
    assert_eq!(s.run.status.code(), Some(0), "SIGTERM is a clean stop: {}", s.run.stderr);
}

#[test]
fn ssh_alarm_pushes_each_login_once_across_a_rotation_and_nothing_else() {
    let lab = lab();
    let s = ssh_alarm::run(&lab).unwrap();
    assert_eq!(s.problems(), Vec::<String>::new(), "{s}");

    let alarms = s.alarm_lines();
    assert_eq!(alarms.len(), 12);
    assert_eq!(s.pushed_per_run, [4, 8, 0], "{s}");
    assert_eq!(s.pushed.len(), alarms.len(), "nothing but logins and failures is pushed");
    assert!(s.pushed.iter().all(|p| p.authenticated), "token and user key from their files");
    for line in alarms {
        let ip = line.split(" from ").nth(1).unwrap().split(' ').next().unwrap();
        let event = if line.contains("Accepted") { "accepted" } else { "failed" };
        let matching: Vec<&ssh_alarm::Push> = s
            .pushed
            .iter()
            .filter(|p| p.title.ends_with(&format!(" from {ip}")) && p.title.contains(event))
            .collect();
        assert_eq!(matching.len(), 1, "exactly one push for {line:?}: {:#?}", s.pushed);
    }
}

#[test]
fn ssh_alarm_as_a_service_pushes_each_login_once_across_a_rotation() {
    let lab = lab();
    let s = ssh_alarm::run_follow(&lab).unwrap();
    assert_eq!(s.problems(), Vec::<String>::new(), "{s}");

    let alarms = s.alarm_lines();
    assert_eq!(alarms.len(), 8);
    assert_eq!(s.pushed.len(), alarms.len(), "nothing but logins and failures is pushed: {s}");
    for line in alarms {
        assert_eq!(s.pushes_for(line), 1, "exactly one push for {line:?}: {s}");
    }
    assert!(s.pushed.iter().all(|p| p.authenticated));
    assert_eq!(s.runs[0].status.code(), Some(0), "SIGTERM is a clean stop: {}", s.runs[0].stderr);
}

#[test]
fn license_usage_reports_seconds_per_user_and_day_and_who_is_connected() {
    let lab = lab();
    let s = license::run(&lab).unwrap();
    assert_eq!(s.problems(), Vec::<String>::new(), "{s}");

    // Day 1: ann 08:15:10-10:15:10 and 23:50-24:00; bob 09:03:12-12:00; Jean 09:30-17:45;
    // carol denied at 11:00, then 14:30-24:00. Day 2, up to the last line at 14:00:01:
    // ann until 00:40, carol until 09:00, bob from 08:10 and Jean from 09:20 still connected.
    let row = |period: &str, user: &str, seconds: i64, denials: i64| license::ReportRow {
        period: period.to_owned(),
        user: user.to_owned(),
        seconds,
        denials,
    };
    assert_eq!(
        s.rows,
        [
            row("2026-11-16", "Jean Dupré", 8 * 3600 + 15 * 60, 0),
            row("2026-11-16", "ann", 2 * 3600 + 10 * 60, 0),
            row("2026-11-16", "bob", 2 * 3600 + 56 * 60 + 48, 0),
            row("2026-11-16", "carol", 9 * 3600 + 30 * 60, 1),
            row("2026-11-17", "Jean Dupré", 4 * 3600 + 40 * 60 + 1, 0),
            row("2026-11-17", "ann", 40 * 60, 0),
            row("2026-11-17", "bob", 5 * 3600 + 50 * 60 + 1, 0),
            row("2026-11-17", "carol", 9 * 3600, 0),
        ]
    );
    let xlsx = fs::read(&s.xlsx).unwrap();
    assert!(xlsx.starts_with(b"PK\x03\x04"), "an .xlsx is a zip");

    let holders: Vec<(&str, &str, &str)> =
        s.holders.iter().map(|h| (h.user.as_str(), h.host.as_str(), h.feature.as_str())).collect();
    assert_eq!(holders, [("bob", "pc-bob", "OriginPro"), ("Jean Dupré", "pc-lab3", "Origin")]);
    assert!(s.holders[0].since.starts_with("2026-11-17T08:10:00"), "{:?}", s.holders[0]);
    assert_eq!(s.holders[0].seconds, 5 * 3600 + 50 * 60 + 1);
    assert_ne!(file_sha256(&s.xlsx).unwrap(), "");
}

#[test]
fn license_events_follow_the_log_live_through_a_rotation_and_a_restart() {
    let lab = lab();
    let s = license::run_follow(&lab).unwrap();
    assert_eq!(s.problems(), Vec::<String>::new());
    let ann_back = s.live.iter().find(|e| {
        e["event"] == "in"
            && e["user"] == "ann"
            && e["time"].as_str().is_some_and(|t| t.contains("T00:40:00"))
    });
    let ann_back = ann_back.expect("ann's check-in after midnight");
    assert_eq!(
        ann_back["time"], "2026-11-17T00:40:00+00:00",
        "the date runs on across the rotation"
    );
    for run in &s.runs {
        assert_eq!(run.status.code(), Some(0), "SIGTERM is a clean stop: {}", run.stderr);
    }
}
