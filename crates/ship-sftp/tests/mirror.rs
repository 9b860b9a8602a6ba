//! Mirror mode against a real OpenSSH server.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;

use common::*;
use opsline_testkit::sshd::{SshAccount, Sshd};

fn logins(sshd: &Sshd) -> usize {
    sshd.sshd_log().matches("Accepted publickey").count()
}

fn shipped_paths(records: &[serde_json::Value]) -> Vec<String> {
    let mut paths: Vec<String> = records
        .iter()
        .filter(|r| r["kind"] == "shipped" && r.get("error").is_none())
        .map(|r| r["path"].as_str().unwrap().to_owned())
        .collect();
    paths.sort();
    paths
}

#[test]
fn mirror_a_nested_tree_then_reship_grown_logs_and_late_files() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let logs = local.path().join("logs");
    let quoted = "sub/deep/it's \"odd\" name.log";
    for (rel, text) in
        [("a.log", "a1\n"), ("sub/b.log", "b1\n"), (quoted, "c1\n"), ("skip.txt", "x\n")]
    {
        let path = logs.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        age(&path, 3600);
    }
    fs::write(logs.join("young.log"), "still being written\n").unwrap();
    let state = local.path().join("state/mirror.json");
    let dir = format!("{}/archive", sshd.remote_dir(SshAccount::Shell));
    let pass = || {
        let mut command = mirror(&sshd, SshAccount::Shell, &dir, &logs, &state);
        command.args(["--glob", "*.log", "--agent-id", "node1", "--min-age", "60"]);
        run(command)
    };

    let (code, records, stderr) = pass();
    assert_eq!(code, 0, "{stderr}");
    let expected: Vec<String> = ["a.log", quoted, "sub/b.log"]
        .iter()
        .map(|rel| logs.join(rel).display().to_string())
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(shipped_paths(&records), expected_sorted);
    let remote = sshd.upload_dir(SshAccount::Shell).join("archive/node1");
    assert_eq!(fs::read_to_string(remote.join("a.log")).unwrap(), "a1\n");
    assert_eq!(fs::read_to_string(remote.join("sub/b.log")).unwrap(), "b1\n");
    assert_eq!(fs::read_to_string(remote.join(quoted)).unwrap(), "c1\n");
    assert!(!remote.join("skip.txt").exists(), "not matched by --glob");
    assert!(!remote.join("young.log").exists(), "modified within --min-age: waits");
    assert!(fs::metadata(&state).is_ok());

    // Nothing new: no records and no connection at all.
    let before = logins(&sshd);
    let (code, records, stderr) = pass();
    assert_eq!((code, records.len()), (0, 0), "{stderr}");
    assert_eq!(logins(&sshd), before);

    // New lines in a log and a file that is finished now.
    fs::write(logs.join("a.log"), "a1\na2\n").unwrap();
    age(&logs.join("a.log"), 120);
    age(&logs.join("young.log"), 120);
    let (code, records, stderr) = pass();
    assert_eq!(code, 0, "{stderr}");
    let mut again = vec![
        logs.join("a.log").display().to_string(),
        logs.join("young.log").display().to_string(),
    ];
    again.sort();
    assert_eq!(shipped_paths(&records), again);
    assert_eq!(fs::read_to_string(remote.join("a.log")).unwrap(), "a1\na2\n");
    assert_eq!(fs::read_to_string(remote.join("young.log")).unwrap(), "still being written\n");
    // A file that is gone leaves the state.
    fs::remove_file(logs.join("sub/b.log")).unwrap();
    let (code, records, stderr) = pass();
    assert_eq!((code, records.len()), (0, 0), "{stderr}");
    assert!(!fs::read_to_string(&state).unwrap().contains("sub/b.log"));
    let mut left: Vec<String> = names(&remote);
    left.sort();
    assert_eq!(left, ["a.log", "sub", "young.log"], "no temporaries left");
}

#[test]
fn a_mirror_killed_mid_pass_resumes_without_resending() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let logs = local.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let files: Vec<String> = (0..6).map(|i| format!("part{i}.log")).collect();
    for (i, name) in files.iter().enumerate() {
        pattern_file(&logs.join(name), 1 << 20, i as u8);
        age(&logs.join(name), 3600);
    }
    let state = local.path().join("mirror.json");
    let dir = sshd.remote_dir(SshAccount::Shell);
    let command = |extra: &[&str]| {
        let mut command = mirror(&sshd, SshAccount::Shell, &dir, &logs, &state);
        command.args(["--agent-id", "n", "--min-age", "0", "--transfers", "1"]).args(extra);
        command
    };

    let mut first = spawn(command(&["--bwlimit", "2M"]));
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let early: Vec<serde_json::Value> =
        (0..2).map(|_| serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap()).collect();
    first.kill().unwrap();
    first.wait().unwrap();
    let rest: Vec<serde_json::Value> =
        lines.map_while(Result::ok).map(|l| serde_json::from_str(&l).unwrap()).collect();
    let early_paths = shipped_paths(&early.iter().chain(&rest).cloned().collect::<Vec<_>>());
    assert!(early_paths.len() >= 2 && early_paths.len() < 6, "{early:?} {rest:?}");

    let (code, records, stderr) = run(command(&[]));
    assert_eq!(code, 0, "{stderr}");
    let late = shipped_paths(&records);
    for path in &early_paths {
        assert!(!late.contains(path), "{path} was sent again");
    }
    let remote = sshd.upload_dir(SshAccount::Shell).join("n");
    for name in &files {
        assert_eq!(fs::read(remote.join(name)).unwrap(), fs::read(logs.join(name)).unwrap());
    }
    assert_eq!(names(&remote), files, "the killed upload's temporary was replaced");
}

#[test]
fn paths_that_escape_are_refused() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let logs = local.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    fs::write(local.path().join("secret.log"), "secret\n").unwrap();
    fs::write(logs.join("real.log"), "real\n").unwrap();
    std::os::unix::fs::symlink(local.path().join("secret.log"), logs.join("leak.log")).unwrap();
    std::os::unix::fs::symlink(Path::new("real.log"), logs.join("alias.log")).unwrap();
    for name in ["real.log", "leak.log", "alias.log"] {
        age(&logs.join(name), 3600);
    }
    let state = local.path().join("mirror.json");
    let dir = sshd.remote_dir(SshAccount::Shell);

    let mut command = mirror(&sshd, SshAccount::Shell, &dir, &logs, &state);
    command.args(["--agent-id", "node1"]);
    let (code, records, stderr) = run(command);
    assert_eq!(code, 1, "{stderr}");
    let refused: Vec<&serde_json::Value> =
        records.iter().filter(|r| r.get("error").is_some()).collect();
    assert_eq!(refused.len(), 1, "{records:?}");
    let message = refused[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("leak.log") && message.contains("outside"), "{message}");
    let remote = sshd.upload_dir(SshAccount::Shell).join("node1");
    assert_eq!(names(&remote), ["alias.log", "real.log"]);

    let mut command = mirror(&sshd, SshAccount::Shell, &dir, &logs, &state);
    command.args(["--agent-id", "../escape"]);
    let (code, _, stderr) = run(command);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("plain folder name"), "{stderr}");
}

#[test]
fn every_keeps_passing_until_sigterm() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let logs = local.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    fs::write(logs.join("first.log"), "1\n").unwrap();
    let state = local.path().join("mirror.json");
    let dir = sshd.remote_dir(SshAccount::Shell);
    let mut command = mirror(&sshd, SshAccount::Shell, &dir, &logs, &state);
    command.args(["--agent-id", "n", "--min-age", "0", "--every", "0.2"]);
    let child = spawn(command);
    let remote = sshd.upload_dir(SshAccount::Shell).join("n");
    let arrived = |name: &str| {
        opsline_testkit::net::wait_until(std::time::Duration::from_secs(10), || {
            remote.join(name).exists()
        })
    };
    arrived("first.log").unwrap();
    fs::write(logs.join("second.log"), "2\n").unwrap();
    arrived("second.log").unwrap();
    signal(&[child.id()], "TERM");
    let output = child.wait_with_output().unwrap();
    let (code, records, stderr) = parse(&output);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(shipped_paths(&records).len(), 2, "{records:?}");
    let saved = fs::read_to_string(&state).unwrap();
    assert!(saved.contains("first.log") && saved.contains("second.log"), "{saved}");
}
