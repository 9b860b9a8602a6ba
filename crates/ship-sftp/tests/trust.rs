//! Host keys and credentials against a real OpenSSH server.

mod common;

use std::fs;
use std::process::Command;

use common::*;
use opsline_testkit::sshd::{SshAccount, Sshd, SshdOptions};

#[test]
fn unknown_host_refused_then_accepted_then_changed_key_refused() {
    let mut sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let file = pattern_file(&local.path().join("a.bin"), 1000, 1);
    let known = local.path().join("ssh/known_hosts");
    fs::create_dir_all(known.parent().unwrap()).unwrap();
    // A comment, a line libssh2 cannot parse and another host's entry: all must survive, and
    // the bad line must not switch checking off.
    let before = "# keep me\ngarbage line here\n@cert-authority *.example.org ssh-ed25519 AAAA\nother.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFs9cpufQm5mLSYLz+1rE0c4Trpvj0YIUCrRQ978i/Dq\n";
    fs::write(&known, before).unwrap();
    let dir = sshd.remote_dir(SshAccount::Shell);
    let attempt = |sshd: &Sshd, extra: &[&str]| {
        let mut command =
            ship_trusting(sshd, SshAccount::Shell, &dir, &sshd.client_key_path(), &known);
        command.args(extra).arg(&file);
        run(command)
    };

    let (code, records, stderr) = attempt(&sshd, &[]);
    assert_eq!(code, 77, "{stderr}");
    let fingerprint = sshd.host_key_fingerprint().unwrap();
    assert!(stderr.contains(&fingerprint), "fingerprint shown: {stderr}");
    assert!(stderr.contains("--accept-new") && stderr.contains("ssh-keyscan"), "{stderr}");
    assert!(stderr.contains("line=2") && stderr.contains("cannot be read"), "warned: {stderr}");
    assert!(records.iter().all(|r| r.get("error").is_some()), "{records:?}");
    assert!(!sshd.upload_dir(SshAccount::Shell).join("a.bin").exists());
    assert_eq!(fs::read_to_string(&known).unwrap(), before);

    let (code, _, stderr) = attempt(&sshd, &["--accept-new"]);
    assert_eq!(code, 0, "{stderr}");
    let after = fs::read_to_string(&known).unwrap();
    assert!(after.starts_with(before), "appended, not rewritten: {after}");
    let added: Vec<&str> = after[before.len()..].lines().collect();
    assert_eq!(added, [sshd.known_hosts_line().unwrap()], "one [host]:port line");
    // OpenSSH itself accepts the line we wrote.
    let ssh = Command::new("ssh-keygen")
        .args(["-F", &format!("[127.0.0.1]:{}", sshd.port()), "-f"])
        .arg(&known)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ssh.stdout).contains("ssh-ed25519"));

    let (code, _, stderr) = attempt(&sshd, &[]);
    assert_eq!(code, 0, "now known: {stderr}");

    sshd.restart_with_new_host_key().unwrap();
    let (code, _, stderr) = attempt(&sshd, &["--accept-new"]);
    assert_eq!(code, 77, "{stderr}");
    assert!(stderr.contains("HOST KEY CHANGED"), "{stderr}");
    assert!(stderr.contains(&sshd.host_key_fingerprint().unwrap()), "{stderr}");
    assert_eq!(fs::read_to_string(&known).unwrap(), after, "a changed key is never added");
}

#[test]
fn a_wrong_key_is_a_clear_authentication_error() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let key = local.path().join("stranger");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let file = pattern_file(&local.path().join("a.bin"), 10, 1);
    let dir = sshd.remote_dir(SshAccount::Shell);
    let known = sshd.known_hosts_path();
    let mut command = ship_trusting(&sshd, SshAccount::Shell, &dir, &key, &known);
    command.arg(&file);
    let (code, _, stderr) = run(command);
    assert_eq!(code, 77, "{stderr}");
    assert!(stderr.contains("authentication as opsline-sftp failed"), "{stderr}");
    assert!(stderr.contains(&key.display().to_string()), "names the key: {stderr}");

    let missing = local.path().join("missing_key");
    let mut command = ship_trusting(&sshd, SshAccount::Shell, &dir, &missing, &known);
    command.arg(&file);
    let (code, _, stderr) = run(command);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("cannot read key file"), "{stderr}");
}

#[test]
fn target_url_and_config_file_reach_the_server() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let file = pattern_file(&local.path().join("cfg.bin"), 10, 1);
    let config = local.path().join("ship.toml");
    fs::write(
        &config,
        format!(
            "identity = {:?}\nknown_hosts = {:?}\n",
            sshd.client_key_path(),
            sshd.known_hosts_path()
        ),
    )
    .unwrap();
    let url = format!(
        "sftp://{}@127.0.0.1:{}{}/from%20url",
        SshAccount::Shell.name(),
        sshd.port(),
        sshd.remote_dir(SshAccount::Shell)
    );
    let mut command = Command::new(BIN);
    command.env_remove("SSH_AUTH_SOCK").arg(&url).arg("--config").arg(&config).arg(&file);
    let (code, records, stderr) = run(command);
    assert_eq!(code, 0, "{stderr}");
    assert!(records[0]["sftp"]["remote"].as_str().unwrap().ends_with("/from url/cfg.bin"));
    assert!(sshd.upload_dir(SshAccount::Shell).join("from url/cfg.bin").exists());
}

#[test]
fn every_identity_of_the_agent_is_tried() {
    let sshd = Sshd::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let stranger = local.path().join("stranger");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .unwrap();
    assert!(made.success());
    let socket = local.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    opsline_testkit::net::wait_until(std::time::Duration::from_secs(5), || socket.exists())
        .unwrap();
    // The first identity is refused by the server; only the second one works.
    for key in [stranger.clone(), sshd.client_key_path()] {
        let added =
            Command::new("ssh-add").arg("-q").arg(&key).env("SSH_AUTH_SOCK", &socket).status();
        assert!(added.unwrap().success());
    }
    let file = pattern_file(&local.path().join("agent.bin"), 10, 1);
    let mut command = Command::new(BIN);
    command
        .args(["--host", "127.0.0.1", "--port", &sshd.port().to_string()])
        .args(["--user", SshAccount::Shell.name(), "--dir", &sshd.remote_dir(SshAccount::Shell)])
        .arg("--known-hosts")
        .arg(sshd.known_hosts_path())
        .env("SSH_AUTH_SOCK", &socket)
        .arg(&file);
    let (code, _, stderr) = run(command);
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(sshd.upload_dir(SshAccount::Shell).join("agent.bin").exists());
}

/// The password the test kit's other users of password logins set too (the accounts are shared).
const PASSWORD: &str = "Opsline-test-1";

#[test]
fn password_from_a_file_or_the_environment() {
    let sshd = Sshd::start_with(SshdOptions { password: Some(PASSWORD.into()) }).unwrap();
    let local = tempfile::tempdir().unwrap();
    let file = pattern_file(&local.path().join("pw.bin"), 10, 1);
    let secret = local.path().join("password");
    fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let without_key = || {
        let mut command = Command::new(BIN);
        command
            .args(["--host", "127.0.0.1", "--port", &sshd.port().to_string()])
            .args([
                "--user",
                SshAccount::Shell.name(),
                "--dir",
                &sshd.remote_dir(SshAccount::Shell),
            ])
            .arg("--known-hosts")
            .arg(sshd.known_hosts_path())
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("SHIP_SFTP_PASSWORD")
            .arg(&file);
        command
    };

    let mut command = without_key();
    command.arg("--password-file").arg(&secret);
    let (code, _, stderr) = run(command);
    assert_eq!(code, 0, "{stderr}");

    let mut command = without_key();
    command.env("SHIP_SFTP_PASSWORD", PASSWORD).arg("--overwrite");
    let (code, records, stderr) = run(command);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records[0]["sftp"]["skipped"], true);

    let mut command = without_key();
    command.env("SHIP_SFTP_PASSWORD", "wrong");
    let (code, _, stderr) = run(command);
    assert_eq!(code, 77, "{stderr}");
    assert!(stderr.contains("password:") && !stderr.contains("wrong"), "{stderr}");
}
