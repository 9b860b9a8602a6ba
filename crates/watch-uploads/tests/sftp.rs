//! Uploads through a real OpenSSH server with the real `sftp` client: what the server does
//! (link+unlink renames, forced closes, chroots) is what the watcher sees.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{TIMEOUT, Watcher, canonical, path_of};
use opsline_testkit::sshd::{SshAccount, Sshd};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

struct Setup {
    sshd: Sshd,
    local: tempfile::TempDir,
    users: PathBuf,
}

fn setup() -> Setup {
    let sshd = Sshd::start().expect("sshd starts");
    let local = tempfile::tempdir().unwrap();
    let users = local.path().join("users.json");
    let entries = json!([
        {"login": "opsline-sftp", "name": "Shell User", "email": "shell@example.org"},
        {"login": "opsline-jail", "name": "Jailed User", "email": "jail@example.org",
         "chroot": sshd.jail_root().to_str().unwrap()},
    ]);
    fs::write(&users, entries.to_string()).unwrap();
    Setup { sshd, local, users }
}

impl Setup {
    fn watch(&self, account: SshAccount, settle: &str) -> Watcher {
        let dir = self.sshd.upload_dir(account);
        Watcher::start(&[
            "--settle".as_ref(),
            settle.as_ref(),
            "--no-state".as_ref(),
            "--users".as_ref(),
            self.users.as_os_str(),
            // Files lie directly in the upload folder: no path component names a user, so
            // the user in a record can only come from the SFTP log's session line.
            "--owner-from".as_ref(),
            "path:1".as_ref(),
            "--sftp-log".as_ref(),
            self.sshd.sftp_log_path().as_os_str(),
            dir.as_os_str(),
        ])
    }

    fn local_file(&self, name: &str, len: usize) -> PathBuf {
        let path = self.local.path().join(name);
        let mut file = fs::File::create(&path).unwrap();
        let mut block = [0u8; 4096];
        let mut written = 0;
        let mut seed = len as u64 ^ 0x9e37_79b9;
        while written < len {
            for byte in block.iter_mut() {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                *byte = (seed >> 56) as u8;
            }
            let n = block.len().min(len - written);
            file.write_all(&block[..n]).unwrap();
            written += n;
        }
        path
    }

    fn remote(&self, account: SshAccount, name: &str) -> String {
        format!("{}/{name}", self.sshd.remote_dir(account))
    }

    fn sftp_ok(&self, account: SshAccount, batch: &str) {
        let output = self.sshd.sftp(account, batch).unwrap();
        assert!(
            output.status.success(),
            "sftp failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn sha256(path: &Path) -> Vec<u8> {
    Sha256::digest(fs::read(path).unwrap()).to_vec()
}

#[test]
fn put_is_reported_with_the_session_user_also_in_a_chroot() {
    let s = setup();
    let w = s.watch(SshAccount::Shell, "500ms");
    let local = s.local_file("clip.mp4", 100_000);
    s.sftp_ok(
        SshAccount::Shell,
        &format!("put {} {}\n", local.display(), s.remote(SshAccount::Shell, "clip.mp4")),
    );
    let record = w.next();
    assert_eq!(path_of(&record), canonical(&s.sshd.upload_dir(SshAccount::Shell).join("clip.mp4")));
    assert_eq!(record["size"], 100_000);
    assert_eq!(record["via"], "close_write");
    assert_eq!(record["user"]["email"], "shell@example.org");
    assert!(w.drain_for(Duration::from_secs(1)).is_empty());

    let jail = s.watch(SshAccount::Jail, "500ms");
    s.sftp_ok(SshAccount::Jail, &format!("put {} /upload/jailed.mov\n", local.display()));
    let record = jail.next();
    assert_eq!(
        path_of(&record),
        canonical(&s.sshd.upload_dir(SshAccount::Jail).join("jailed.mov"))
    );
    assert_eq!(
        record["user"]["email"], "jail@example.org",
        "the log's /upload path is placed in the chroot"
    );
}

#[test]
fn a_throttled_large_put_is_reported_once_after_it_finished() {
    let s = setup();
    let w = s.watch(SshAccount::Shell, "1s");
    let local = s.local_file("big.mp4", 1_500_000);
    let remote = s.remote(SshAccount::Shell, "big.mp4");
    let started = Instant::now();
    let mut client = s.sshd.sftp_command(SshAccount::Shell, Some(3_000));
    let mut child =
        client.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("put {} {remote}\n", local.display()).as_bytes())
        .unwrap();
    // Nothing may be reported while the transfer runs.
    while child.try_wait().unwrap().is_none() {
        assert_eq!(
            w.next_within(Duration::from_millis(200)),
            None,
            "reported before the upload finished"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "upload too slow");
    }
    let finished = Instant::now();
    assert!(child.wait().unwrap().success());
    assert!(
        finished.duration_since(started) >= Duration::from_secs(3),
        "the throttle did not hold the upload back"
    );
    let record = w.next();
    assert_eq!(record["size"], 1_500_000);
    let uploaded = s.sshd.upload_dir(SshAccount::Shell).join("big.mp4");
    assert_eq!(sha256(&uploaded), sha256(&local));
    assert!(w.drain_for(Duration::from_secs(2)).is_empty(), "reported once");
}

/// Starts a throttled `put` and kills the client once part of the file has arrived.
fn cut_off_put(s: &Setup, local: &Path, remote: &str, uploaded: &Path) {
    let mut client = s.sshd.sftp_command(SshAccount::Shell, Some(800));
    let mut child =
        client.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("put {} {remote}\n", local.display()).as_bytes()).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while fs::metadata(uploaded).map_or(0, |m| m.len()) < 50_000 {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
}

#[test]
fn an_upload_cut_off_midway_is_vetoed_and_its_resumed_upload_reported() {
    let s = setup();
    let w = s.watch(SshAccount::Shell, "500ms");
    let local = s.local_file("cut.mp4", 1_000_000);
    let remote = s.remote(SshAccount::Shell, "cut.mp4");
    let uploaded = s.sshd.upload_dir(SshAccount::Shell).join("cut.mp4");
    cut_off_put(&s, &local, &remote, &uploaded);
    s.sshd.wait_for_sftp_log("forced close", TIMEOUT).unwrap();
    assert!(w.drain_for(Duration::from_secs(2)).is_empty(), "a cut-off upload was reported");
    assert!(fs::metadata(&uploaded).unwrap().len() < 1_000_000);
    w.wait_stderr("forced close");

    s.sftp_ok(SshAccount::Shell, &format!("reput {} {remote}\n", local.display()));
    let record = w.next();
    assert_eq!(record["size"], 1_000_000);
    assert_eq!(sha256(&uploaded), sha256(&local));
    assert!(w.drain_for(Duration::from_secs(1)).is_empty());
}

#[test]
fn an_upload_whose_server_died_is_vetoed_as_never_closed() {
    let mut s = setup();
    let w = s.watch(SshAccount::Shell, "500ms");
    let local = s.local_file("died.mp4", 1_000_000);
    let remote = s.remote(SshAccount::Shell, "died.mp4");
    let uploaded = s.sshd.upload_dir(SshAccount::Shell).join("died.mp4");
    let mut client = s.sshd.sftp_command(SshAccount::Shell, Some(800));
    let mut child =
        client.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("put {} {remote}\n", local.display()).as_bytes())
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while fs::metadata(&uploaded).map_or(0, |m| m.len()) < 50_000 {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.sshd.kill_server();
    let _ = child.wait();
    assert!(
        w.drain_for(Duration::from_secs(2)).is_empty(),
        "an upload that never closed was reported"
    );
    w.wait_stderr("never closed");
}

#[test]
fn uploads_renamed_into_place_plain_and_posix_are_reported_at_once() {
    let s = setup();
    let w = s.watch(SshAccount::Shell, "10s");
    let local = s.local_file("r.bin", 200_000);
    let dir = s.sshd.upload_dir(SshAccount::Shell);
    let temp = s.remote(SshAccount::Shell, "plain.mp4.filepart");
    let plain = s.remote(SshAccount::Shell, "plain.mp4");
    let started = Instant::now();
    // `rename -l` is the legacy SFTP rename: the server links and unlinks.
    s.sftp_ok(
        SshAccount::Shell,
        &format!("put {} {temp}\nrename -l {temp} {plain}\n", local.display()),
    );
    let record = w.next();
    assert!(started.elapsed() < Duration::from_secs(10), "waited for the settle time");
    assert_eq!(path_of(&record), canonical(&dir.join("plain.mp4")));
    assert_eq!(record["via"], "moved_to");
    assert_eq!(record["user"]["login"], "opsline-sftp");

    let temp = s.remote(SshAccount::Shell, "posix.mp4.partial");
    let posix = s.remote(SshAccount::Shell, "posix.mp4");
    s.sftp_ok(
        SshAccount::Shell,
        &format!("put {} {temp}\nrename {temp} {posix}\n", local.display()),
    );
    let record = w.next();
    assert_eq!(path_of(&record), canonical(&dir.join("posix.mp4")));
    assert_eq!(record["via"], "moved_to");
    let log = s.sshd.wait_for_sftp_log("posix-rename old", TIMEOUT).unwrap();
    assert!(log.contains("rename old"), "{log}");
    assert_eq!(w.drain_for(Duration::from_secs(1)), Vec::<Value>::new());
}

#[test]
fn a_plain_rename_the_watcher_reads_late_is_still_reported_at_once() {
    let s = setup();
    let w = s.watch(SshAccount::Shell, "10s");
    let local = s.local_file("late.bin", 200_000);
    let temp = s.remote(SshAccount::Shell, "late.mp4.filepart");
    let name = s.remote(SshAccount::Shell, "late.mp4");
    // On a busy machine the whole upload, link and unlink may be done before the watcher
    // reads the first of their events.
    w.freeze();
    s.sftp_ok(
        SshAccount::Shell,
        &format!("put {} {temp}\nrename -l {temp} {name}\n", local.display()),
    );
    let thawed = Instant::now();
    w.signal("-CONT");
    let record = w.next();
    assert!(thawed.elapsed() < Duration::from_secs(10), "waited for the settle time");
    let dir = s.sshd.upload_dir(SshAccount::Shell);
    assert_eq!(path_of(&record), canonical(&dir.join("late.mp4")));
    assert_eq!(record["via"], "moved_to");
    assert_eq!(record["size"], 200_000);
    assert_eq!(record["user"]["login"], "opsline-sftp");
    assert!(w.drain_for(Duration::from_secs(1)).is_empty());
}

#[test]
fn names_with_spaces_quotes_and_non_ascii_match_their_escaped_log_lines() {
    let s = setup();
    let w = s.watch(SshAccount::Shell, "300ms");
    let local = s.local_file("n.bin", 1000);
    let dir = s.sshd.upload_dir(SshAccount::Shell);
    let names = ["a b.mp4", "caf\u{e9} \u{fc}.mp4", "-lead.mp4", "it's.mp4"];
    let batch: String = names
        .iter()
        .map(|name| format!("put {} \"{}\"\n", local.display(), s.remote(SshAccount::Shell, name)))
        .collect();
    s.sftp_ok(SshAccount::Shell, &batch);
    let mut records = w.take(names.len());
    records.sort_by(|a, b| path_of(a).cmp(path_of(b)));
    let mut expected: Vec<String> = names.iter().map(|n| canonical(&dir.join(n))).collect();
    expected.sort();
    for (record, path) in records.iter().zip(&expected) {
        assert_eq!(path_of(record), path);
        // Only the log can name the user here: its octal escapes were decoded.
        assert_eq!(record["user"]["login"], "opsline-sftp", "{record}");
    }
    assert!(s.sshd.sftp_log().contains("\\303\\251"), "the log escapes non-ASCII bytes");
}
