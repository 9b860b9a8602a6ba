//! Upload mode against a real OpenSSH server.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::*;
use opsline_testkit::sshd::{SshAccount, Sshd};
use serde_json::json;

#[test]
fn upload_with_sha256_over_a_shell_account() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let big = pattern_file(&local.path().join("dump-20250630.zip"), 5 << 20, 1);
    let odd = pattern_file(&local.path().join("it's a \"quoted\" name.txt"), 1000, 2);
    age(&big, 3600);
    let remote_dir = format!("{}/backups/tse", sshd.remote_dir(SshAccount::Shell));
    let mut command = ship(&sshd, SshAccount::Shell, &remote_dir);
    command.args(["--verify", "sha256"]);
    let input = format!(
        "{}\n{}\n{{\"kind\":\"note\",\"text\":\"no path\"}}\n",
        json!({"kind": "dump", "path": big, "user": {"email": "a@b"}}),
        odd.display()
    );
    let (code, records, stderr) = parse(&run_with(command, &input));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records.len(), 3, "{records:?}");
    let note = records.iter().find(|r| r["kind"] == "note").unwrap();
    assert_eq!(note["text"], "no path");
    let dump = records.iter().find(|r| r["path"] == json!(big)).unwrap();
    assert_eq!(dump["kind"], "shipped");
    assert_eq!(dump["user"]["email"], "a@b", "other fields are kept");
    let sftp = &dump["sftp"];
    assert_eq!(sftp["host"], format!("127.0.0.1:{}", sshd.port()));
    assert_eq!(sftp["remote"], format!("{remote_dir}/dump-20250630.zip"));
    assert_eq!(sftp["bytes"], 5 << 20);
    assert_eq!(sftp["sha256"], sha256(&big));
    assert!(sftp["seconds"].as_f64().unwrap() >= 0.0);
    assert!(sftp.get("skipped").is_none());

    let server_dir = sshd.upload_dir(SshAccount::Shell).join("backups/tse");
    assert_eq!(names(&server_dir), ["dump-20250630.zip", "it's a \"quoted\" name.txt"]);
    let arrived = server_dir.join("dump-20250630.zip");
    let (here, there) = (fs::metadata(&big).unwrap(), fs::metadata(&arrived).unwrap());
    assert_eq!(there.mtime(), here.mtime(), "mtime preserved");
    assert_eq!(there.atime(), here.mtime(), "atime set with it (as aged), not zeroed");
    assert_eq!(fs::read(&arrived).unwrap(), fs::read(&big).unwrap());
    assert_eq!(
        fs::read(server_dir.join("it's a \"quoted\" name.txt")).unwrap(),
        fs::read(&odd).unwrap()
    );

    // The final name is only ever created by the rename of the temporary file.
    let log = sshd.wait_for_sftp_log("name.txt\"", Duration::from_secs(5)).unwrap();
    let final_path = format!("{remote_dir}/dump-20250630.zip");
    assert!(!log.contains(&format!("open \"{final_path}\"")), "{log}");
    // The hash came from sha256sum on the server, not from reading the file back over SFTP.
    assert!(log.contains(&format!("bytes read 0 written {}", 5 << 20)), "{log}");
    assert!(
        log.contains(&format!(
            "rename old \"{remote_dir}/.dump-20250630.zip.ship-sftp.part\" new \"{final_path}\""
        )),
        "{log}"
    );
}

#[test]
fn sha256_without_a_shell_reads_the_file_back() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    // Large enough for the bulk writer, which must work on a chrooted internal-sftp too.
    let file = pattern_file(&local.path().join("archive 1.tar"), 9 << 20, 7);
    let mut command = ship(&sshd, SshAccount::Jail, "/upload/in");
    command.args(["--verify", "sha256"]).arg(&file);
    let (code, records, stderr) = run(command);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records[0]["sftp"]["sha256"], sha256(&file));
    assert_eq!(records[0]["sftp"]["remote"], "/upload/in/archive 1.tar");
    let arrived = sshd.upload_dir(SshAccount::Jail).join("in/archive 1.tar");
    assert_eq!(fs::read(arrived).unwrap(), fs::read(&file).unwrap());
    // The read-back shows as a read of the whole temporary file.
    let log = sshd.wait_for_sftp_log("rename old", Duration::from_secs(5)).unwrap();
    assert!(log.contains(&format!("read {} written 0", 9 << 20)), "{log}");
    assert!(log.contains(&format!("read 0 written {}", 9 << 20)), "{log}");
}

#[test]
fn size_verification_is_the_default() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let file = pattern_file(&local.path().join("plain.bin"), 100_000, 3);
    let dir = sshd.remote_dir(SshAccount::Shell);
    let mut command = ship(&sshd, SshAccount::Shell, &dir);
    command.arg(&file);
    let (code, records, stderr) = run(command);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records[0]["sftp"]["bytes"], 100_000);
    assert!(records[0]["sftp"].get("sha256").is_none());
    let arrived = sshd.upload_dir(SshAccount::Shell).join("plain.bin");
    assert_eq!(fs::read(arrived).unwrap(), fs::read(&file).unwrap());
}

#[test]
fn rerun_skips_identical_and_refuses_different_without_overwrite() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let file = pattern_file(&local.path().join("nightly.zip"), 200_000, 4);
    let dir = sshd.remote_dir(SshAccount::Shell);
    let first = |extra: &[&str]| {
        let mut command = ship(&sshd, SshAccount::Shell, &dir);
        command.args(extra).arg(&file);
        run(command)
    };
    let (code, records, stderr) = first(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(records[0]["sftp"].get("skipped").is_none());

    let (code, records, stderr) = first(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records[0]["kind"], "shipped");
    assert_eq!(records[0]["sftp"]["skipped"], true);

    pattern_file(&file, 150_000, 5);
    let (code, records, _) = first(&[]);
    assert_eq!(code, 1);
    let message = records[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("differs") && message.contains("--overwrite"), "{message}");
    let arrived = sshd.upload_dir(SshAccount::Shell).join("nightly.zip");
    assert_eq!(fs::metadata(&arrived).unwrap().len(), 200_000, "the old file is untouched");

    let (code, records, stderr) = first(&["--overwrite"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(records[0]["sftp"].get("skipped").is_none());
    assert_eq!(fs::read(&arrived).unwrap(), fs::read(&file).unwrap());
    assert_eq!(names(&sshd.upload_dir(SshAccount::Shell)), ["nightly.zip"], "no temporary left");
}

#[test]
fn server_killed_mid_upload_leaves_no_partial_file_and_the_retry_completes() {
    server_killed_mid_upload(6 << 20, "2M");
}

/// Files of 8 MiB and more go over the bulk writer's own SFTP channel.
#[test]
fn server_killed_mid_bulk_upload_leaves_no_partial_file_and_the_retry_completes() {
    server_killed_mid_upload(12 << 20, "4M");
}

fn server_killed_mid_upload(size: usize, bwlimit: &str) {
    let mut sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let file = pattern_file(&local.path().join("big.tar"), size, 9);
    let dir = sshd.remote_dir(SshAccount::Shell);
    let mut command = ship(&sshd, SshAccount::Shell, &dir);
    command.args(["--bwlimit", bwlimit, "--retries", "8", "--timeout", "5"]).arg(&file);
    let child = spawn(command);

    let server_dir = sshd.upload_dir(SshAccount::Shell);
    opsline_testkit::net::wait_until(Duration::from_secs(10), || {
        fs::metadata(server_dir.join(".big.tar.ship-sftp.part")).is_ok_and(|m| m.len() > 1 << 20)
    })
    .unwrap();
    sshd.kill_server();
    assert!(!server_dir.join("big.tar").exists(), "no partial file under the final name");
    sshd.restart().unwrap();

    let (code, records, stderr) = parse(&child.wait_with_output().unwrap());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records[0]["kind"], "shipped", "{records:?}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert_eq!(fs::read(server_dir.join("big.tar")).unwrap(), fs::read(&file).unwrap());
    assert_eq!(names(&server_dir), ["big.tar"]);
}

#[test]
fn a_server_that_stays_down_gives_an_error_record_and_exit_75() {
    let mut sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let file = pattern_file(&local.path().join("x.bin"), 1000, 1);
    let dir = sshd.remote_dir(SshAccount::Shell);
    sshd.kill_server();
    let mut command = ship(&sshd, SshAccount::Shell, &dir);
    command.args(["--retries", "2", "--keep-days", "1"]).arg(&file);
    let (code, records, stderr) = run(command);
    assert_eq!(code, 75, "{stderr}");
    assert_eq!(records.len(), 1, "no retention after a failure: {records:?}");
    let message = records[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("gave up after 3 attempts"), "{message}");
    assert_eq!(records[0]["error"]["tool"], "ship-sftp");
}

#[test]
fn retention_deletes_old_dated_files_only_after_a_successful_upload() {
    let sshd = Sshd::start().unwrap();
    let server_dir = sshd.upload_dir(SshAccount::Shell);
    let today = chrono::Local::now().date_naive();
    let dated =
        |days: u64| format!("dump-{}.zip", (today - chrono::Days::new(days)).format("%Y%m%d"));
    for name in
        [dated(40), dated(31), dated(5), "notes.txt".to_owned(), "dump-latest.zip".to_owned()]
    {
        fs::write(server_dir.join(&name), "old").unwrap();
        age(&server_dir.join(&name), 90 * 86400);
    }
    let local = tempfile::tempdir().unwrap();
    let new = pattern_file(&local.path().join(dated(0)), 1000, 1);
    let dir = sshd.remote_dir(SshAccount::Shell);
    let with = |extra: &[&str], path: &std::path::Path| {
        let mut command = ship(&sshd, SshAccount::Shell, &dir);
        command.args(["--keep-days", "30"]).args(extra).arg(path);
        run(command)
    };

    // A failed upload prunes nothing.
    let (code, _, _) = with(&[], &local.path().join("missing.zip"));
    assert_eq!(code, 1);
    assert_eq!(names(&server_dir).len(), 5);

    let (code, records, stderr) = with(&["--dry-run"], &new);
    assert_eq!(code, 0, "{stderr}");
    let pruned: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["kind"] == "pruned").collect();
    let listed: Vec<&str> = pruned.iter().map(|r| r["sftp"]["remote"].as_str().unwrap()).collect();
    assert_eq!(listed, [format!("{dir}/{}", dated(40)), format!("{dir}/{}", dated(31))]);
    assert!(pruned.iter().all(|r| r["sftp"]["dry_run"] == true));
    assert_eq!(pruned[0]["sftp"]["date"], (today - chrono::Days::new(40)).to_string());
    assert_eq!(names(&server_dir).len(), 6, "dry run deletes nothing");

    let (code, records, stderr) = with(&[], &new);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records.iter().filter(|r| r["kind"] == "pruned").count(), 2);
    assert_eq!(records[0]["sftp"]["skipped"], true, "already shipped by the dry run");
    let mut expected =
        vec![dated(0), dated(5), "dump-latest.zip".to_owned(), "notes.txt".to_owned()];
    expected.sort();
    assert_eq!(names(&server_dir), expected, "undatable files stay");
}

#[test]
fn retention_by_mtime_with_a_glob() {
    let sshd = Sshd::start().unwrap();
    let server_dir = sshd.upload_dir(SshAccount::Shell);
    for (name, days) in [("a.tar", 10), ("b.tar", 1), ("c.log", 10)] {
        fs::write(server_dir.join(name), "x").unwrap();
        age(&server_dir.join(name), days * 86400);
    }
    let local = tempfile::tempdir().unwrap();
    let new = pattern_file(&local.path().join("d.tar"), 10, 1);
    let mut command = ship(&sshd, SshAccount::Shell, &sshd.remote_dir(SshAccount::Shell));
    command.args(["--keep-days", "5", "--prune-by", "mtime", "--prune-glob", "*.tar"]).arg(&new);
    let (code, records, stderr) = run(command);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records.iter().filter(|r| r["kind"] == "pruned").count(), 1, "{records:?}");
    assert_eq!(names(&server_dir), ["b.tar", "c.log", "d.tar"]);
}

#[test]
fn a_stalled_session_is_dropped_and_the_file_sent_again() {
    stalled_session(6 << 20, "2M");
}

#[test]
fn a_stalled_bulk_upload_is_dropped_and_the_file_sent_again() {
    stalled_session(12 << 20, "4M");
}

fn stalled_session(size: usize, bwlimit: &str) {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let file = pattern_file(&local.path().join("stall.bin"), size, 3);
    let dir = sshd.remote_dir(SshAccount::Shell);
    let mut command = ship(&sshd, SshAccount::Shell, &dir);
    command.args(["--bwlimit", bwlimit, "--timeout", "2"]).arg(&file);
    let child = spawn(command);
    let server_dir = sshd.upload_dir(SshAccount::Shell);
    opsline_testkit::net::wait_until(Duration::from_secs(10), || {
        fs::metadata(server_dir.join(".stall.bin.ship-sftp.part")).is_ok_and(|m| m.len() > 1 << 20)
    })
    .unwrap();
    // Freeze the session (not the listener): the connection stays open but nothing moves.
    let frozen = descendants(sshd.pid().unwrap());
    assert!(!frozen.is_empty());
    signal(&frozen, "STOP");
    let output = child.wait_with_output().unwrap();
    signal(&frozen, "KILL");
    let (code, records, stderr) = parse(&output);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert_eq!(records[0]["kind"], "shipped");
    assert_eq!(fs::read(server_dir.join("stall.bin")).unwrap(), fs::read(&file).unwrap());
}

#[test]
fn a_large_file_goes_over_several_sessions_in_ranges() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let file = pattern_file(&local.path().join("large.img"), (70 << 20) + 4321, 5);
    let dir = sshd.remote_dir(SshAccount::Shell);
    let mut command = ship(&sshd, SshAccount::Shell, &dir);
    command.args(["--transfers", "3"]).arg(&file);
    let (code, records, stderr) = run(command);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records[0]["sftp"]["bytes"], (70 << 20) + 4321);
    let arrived = sshd.upload_dir(SshAccount::Shell).join("large.img");
    assert!(fs::read(&arrived).unwrap() == fs::read(&file).unwrap(), "content differs");
    let temp = format!("{dir}/.large.img.ship-sftp.part");
    let log = sshd.wait_for_sftp_log("rename old", Duration::from_secs(5)).unwrap();
    let opens = log.matches(&format!("open \"{temp}\"")).count();
    assert_eq!(opens, 2, "two ranges: {log}");
    let logins = sshd.sshd_log().matches("Accepted publickey").count();
    assert_eq!(logins, 2, "two sessions: {}", sshd.sshd_log());
}

#[test]
fn a_relative_folder_is_the_sftp_start_folder_even_for_the_hash() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let file = pattern_file(&local.path().join("rel.bin"), 300_000, 8);
    let mut command = ship(&sshd, SshAccount::Shell, "nightly/db");
    command.args(["--verify", "sha256"]).arg(&file);
    let (code, records, stderr) = run(command);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records[0]["sftp"]["remote"], "nightly/db/rel.bin");
    assert_eq!(records[0]["sftp"]["sha256"], sha256(&file));
    let arrived = sshd.upload_dir(SshAccount::Shell).join("nightly/db/rel.bin");
    assert_eq!(fs::read(arrived).unwrap(), fs::read(&file).unwrap());
    let log = sshd.wait_for_sftp_log("rename old", Duration::from_secs(5)).unwrap();
    assert!(
        log.contains("bytes read 0 written 300000"),
        "hashed by sha256sum, not read back: {log}"
    );
}

#[test]
fn ciphers_default_to_aes_ctr_with_an_etm_mac_and_can_be_chosen() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let file = pattern_file(&local.path().join("c.bin"), 1000, 4);
    let dir = sshd.remote_dir(SshAccount::Shell);
    let connected = |extra: &[&str]| {
        let mut command = ship(&sshd, SshAccount::Shell, &dir);
        command.arg("-vv").args(extra).arg(&file);
        let (code, _, stderr) = run(command);
        assert_eq!(code, 0, "{stderr}");
        stderr.lines().find(|l| l.contains("connected")).unwrap_or_default().to_owned()
    };
    let line = connected(&[]);
    assert!(line.contains("cipher=\"aes128-ctr\""), "{line}");
    assert!(line.contains("mac=\"hmac-sha2-256-etm@openssh.com\""), "{line}");
    let line = connected(&["--ciphers", "chacha20-poly1305@openssh.com,aes128-ctr"]);
    assert!(line.contains("cipher=\"chacha20-poly1305@openssh.com\""), "{line}");
    let line = connected(&["--ciphers", "aes256-gcm@openssh.com"]);
    assert!(line.contains("cipher=\"aes256-gcm@openssh.com\""), "{line}");

    let mut command = ship(&sshd, SshAccount::Shell, &dir);
    command.args(["--ciphers", "aes128-gcm@openssh.com,rc4"]).arg(&file);
    let (code, _, stderr) = run(command);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown cipher \"rc4\""), "{stderr}");
}

#[test]
fn a_server_allowing_one_channel_per_connection_gets_files_through_libssh2() {
    let mut sshd = Sshd::start().unwrap();
    sshd.restart_with_config("MaxSessions 1\n").unwrap();
    let local = tempfile::tempdir().unwrap();
    let large = pattern_file(&local.path().join("large.bin"), 70 << 20, 6);
    let checked = pattern_file(&local.path().join("checked.bin"), 9 << 20, 7);
    let dir = sshd.remote_dir(SshAccount::Shell);
    let mut command = ship(&sshd, SshAccount::Shell, &dir);
    command.arg(&large);
    let (code, _, stderr) = run(command);
    assert_eq!(code, 0, "{stderr}");
    let mut command = ship(&sshd, SshAccount::Shell, &dir);
    command.args(["--verify", "sha256"]).arg(&checked);
    let (code, records, stderr) = run(command);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records[0]["sftp"]["sha256"], sha256(&checked));
    let server_dir = sshd.upload_dir(SshAccount::Shell);
    assert!(fs::read(server_dir.join("large.bin")).unwrap() == fs::read(&large).unwrap());
    assert!(fs::read(server_dir.join("checked.bin")).unwrap() == fs::read(&checked).unwrap());
    let logins = sshd.sshd_log().matches("Accepted publickey").count();
    assert_eq!(logins, 2, "one session per file, no ranges: {}", sshd.sshd_log());
}
