//! A throwaway OpenSSH server on 127.0.0.1 with two real local accounts, and the real OpenSSH
//! clients pointed at it.
//!
//! Accounts: [`SshAccount::Shell`] (`opsline-sftp`, a shell, SFTP through `sftp-server`) and
//! [`SshAccount::Jail`] (`opsline-jail`, SFTP only, chrooted, `internal-sftp`). Both log every
//! SFTP operation at level INFO into one file ([`Sshd::sftp_log`]) in syslog's file format:
//! `Nov 23 07:12:40 localhost internal-sftp[PID]: open "/upload/a" flags WRITE,CREATE,TRUNCATE mode 0644`.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::net::{self, START_TIMEOUT};

const SSHD: &str = "/usr/sbin/sshd";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
const SSH: &str = "/usr/bin/ssh";
const SFTP: &str = "/usr/bin/sftp";
const LOGGER: &str = "/usr/bin/logger";

/// Chroot folders must be root-owned and not group- or world-writable up to `/`, which rules
/// out `/tmp`.
const JAIL_PARENT: &str = "/var/lib/opsline-test";

/// Another process may grab the free port before sshd binds it; a new port is tried then.
const START_ATTEMPTS: usize = 3;

/// How often the log relay looks at its stop flag.
const RELAY_POLL: Duration = Duration::from_millis(100);

/// A local account the test server lets in with the client key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SshAccount {
    /// `opsline-sftp`: a normal account with `/bin/sh`; SFTP starts in [`Sshd::upload_dir`].
    Shell,
    /// `opsline-jail`: SFTP only (`internal-sftp`), chrooted to [`Sshd::jail_root`], starting in `/upload`.
    Jail,
}

impl SshAccount {
    /// The login name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Shell => "opsline-sftp",
            Self::Jail => "opsline-jail",
        }
    }

    fn shell(self) -> &'static str {
        match self {
            Self::Shell => "/bin/sh",
            Self::Jail => "/usr/sbin/nologin",
        }
    }
}

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct SshdOptions {
    /// Enables password authentication and sets this password on both accounts (the accounts
    /// are shared by every test on the machine: tests using different passwords must not run
    /// at the same time).
    pub password: Option<String>,
}

/// A running `sshd`; it and every session process it forked are killed on drop.
#[derive(Debug)]
pub struct Sshd {
    port: u16,
    options: SshdOptions,
    child: Option<Child>,
    relay: Option<LogRelay>,
    jail: TempDir,
    dir: TempDir,
    /// Global configuration lines added by [`Sshd::restart_with_config`].
    extra_config: String,
}

impl Sshd {
    /// Starts a server with key authentication only.
    pub fn start() -> Result<Self> {
        Self::start_with(SshdOptions::default())
    }

    /// Prepares accounts, keys and folders, starts `sshd` and waits until it accepts connections.
    pub fn start_with(options: SshdOptions) -> Result<Self> {
        require_programs()?;
        fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        let dir = tempfile::Builder::new().prefix("opsline-sshd-").tempdir()?;
        // The shell account's folders live below it.
        fs::set_permissions(dir.path(), Permissions::from_mode(0o755))?;
        let jail = make_jail_root()?;
        ensure_accounts(options.password.as_deref())?;

        let mut sshd = Self {
            port: 0,
            options,
            child: None,
            relay: None,
            jail,
            dir,
            extra_config: String::new(),
        };
        sshd.prepare_files()?;
        sshd.relay = Some(LogRelay::start(&sshd.log_socket(), &sshd.sftp_log_path())?);
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            sshd.port = net::free_port()?;
            match sshd.launch() {
                Ok(()) => return Ok(sshd),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("sshd did not start")))
    }

    fn prepare_files(&self) -> Result<()> {
        let shell_home = self.upload_dir(SshAccount::Shell);
        fs::create_dir_all(&shell_home)?;
        own(&shell_home, SshAccount::Shell)?;
        let jail_upload = self.upload_dir(SshAccount::Jail);
        fs::create_dir_all(&jail_upload)?;
        own(&jail_upload, SshAccount::Jail)?;
        fs::create_dir_all(self.jail.path().join("dev"))?;

        generate_key(&self.host_key_path(), "opsline-test-host")?;
        generate_key(&self.client_key_path(), "opsline-test-client")?;
        fs::copy(
            self.client_key_path().with_extension("pub"),
            self.dir.path().join("authorized_keys"),
        )?;

        let wrapper = self.dir.path().join("sftp-server-logged.sh");
        fs::write(&wrapper, self.sftp_wrapper_script())?;
        fs::set_permissions(&wrapper, Permissions::from_mode(0o755))?;
        fs::write(self.dir.path().join("sshd_config"), self.config_text())?;
        Ok(())
    }

    /// `sftp-server -e` logs to stderr; the wrapper sends those lines to the log socket as
    /// syslog would, tagged with the session shell's process id.
    fn sftp_wrapper_script(&self) -> String {
        format!(
            "#!/bin/sh\nexec 3>&1\n{SFTP_SERVER} -l INFO -e -d \"$1\" 2>&1 >&3 3>&- | {LOGGER} -u {} -t sftp-server --id=$$\n",
            self.log_socket().display()
        )
    }

    fn config_text(&self) -> String {
        let dir = self.dir.path();
        let password = if self.options.password.is_some() { "yes" } else { "no" };
        format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {dir}/host_key\n\
             PidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             StrictModes no\n\
             UsePAM no\n\
             PasswordAuthentication {password}\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin no\n\
             AllowUsers {shell} {jail}\n\
             PrintMotd no\n\
             LogLevel VERBOSE\n\
             Subsystem sftp {dir}/sftp-server-logged.sh {dir}/users/%u\n\
             {extra}\
             Match User {jail}\n\
             \tChrootDirectory {root}\n\
             \tForceCommand internal-sftp -l INFO -d /upload\n\
             \tAllowTcpForwarding no\n\
             \tX11Forwarding no\n",
            port = self.port,
            dir = dir.display(),
            shell = SshAccount::Shell.name(),
            jail = SshAccount::Jail.name(),
            root = self.jail.path().display(),
            extra = self.extra_config,
        )
    }

    fn launch(&mut self) -> Result<()> {
        fs::write(self.dir.path().join("sshd_config"), self.config_text())?;
        let stderr = File::create(self.dir.path().join("sshd.stderr"))?;
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(self.dir.path().join("sshd_config"))
            .arg("-E")
            .arg(self.sshd_log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting sshd")?;
        let addr = self.addr();
        let mut exited = None;
        let listening = net::wait_until(START_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return true;
            }
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
        });
        if listening.is_err() || exited.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "sshd did not listen on {addr} ({}):\n{}\n{}",
                exited.map_or("timed out".to_owned(), |s| s.to_string()),
                fs::read_to_string(self.dir.path().join("sshd.stderr")).unwrap_or_default(),
                self.sshd_log()
            );
        }
        self.child = Some(child);
        self.write_known_hosts(&self.known_hosts_path())
    }

    /// Kills `sshd` and every session process it forked (as a crash or power loss would:
    /// clients see the connection drop, uploads are cut off). Idempotent.
    pub fn kill_server(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let sessions = descendants(child.id());
        let _ = child.kill();
        let _ = child.wait();
        for pid in sessions {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }

    /// Kills the server (if running) and starts it again on the same port with the same keys.
    pub fn restart(&mut self) -> Result<()> {
        self.kill_server();
        self.launch()
    }

    /// Kills the server, replaces its host key with a new one, and starts it again on the same
    /// port: clients holding the old key must refuse it. [`Sshd::known_hosts_path`] follows.
    pub fn restart_with_new_host_key(&mut self) -> Result<()> {
        self.kill_server();
        for path in [self.host_key_path(), self.host_key_path().with_extension("pub")] {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        generate_key(&self.host_key_path(), "opsline-test-host")?;
        self.launch()
    }

    /// Kills the server and starts it again on the same port with `lines` (each ending in a
    /// newline, for example `"MaxSessions 1\n"`) added to its global configuration, also for
    /// later restarts.
    pub fn restart_with_config(&mut self, lines: &str) -> Result<()> {
        self.kill_server();
        self.extra_config = lines.to_owned();
        self.launch()
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process id of the listening `sshd`, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where `account` lands, as a path on this machine (owned by the account).
    pub fn upload_dir(&self, account: SshAccount) -> PathBuf {
        match account {
            SshAccount::Shell => self.dir.path().join("users").join(account.name()),
            SshAccount::Jail => self.jail.path().join("upload"),
        }
    }

    /// Where `account` lands, as the SFTP client sees it (`/upload` inside the chroot).
    pub fn remote_dir(&self, account: SshAccount) -> String {
        match account {
            SshAccount::Shell => self.upload_dir(account).display().to_string(),
            SshAccount::Jail => "/upload".to_owned(),
        }
    }

    /// The chroot of [`SshAccount::Jail`] (root-owned, below `/var/lib/opsline-test`).
    pub fn jail_root(&self) -> &Path {
        self.jail.path()
    }

    /// The private key both accounts accept (ed25519, no passphrase).
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// The server's private host key.
    pub fn host_key_path(&self) -> PathBuf {
        self.dir.path().join("host_key")
    }

    /// The host public key: `ssh-ed25519 AAAA…`.
    pub fn host_public_key(&self) -> Result<String> {
        let path = self.host_key_path().with_extension("pub");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let fields: Vec<&str> = text.split_whitespace().take(2).collect();
        Ok(fields.join(" "))
    }

    /// The `known_hosts` line for the current host key: `[127.0.0.1]:PORT ssh-ed25519 AAAA…`.
    pub fn known_hosts_line(&self) -> Result<String> {
        Ok(format!("[127.0.0.1]:{} {}", self.port, self.host_public_key()?))
    }

    /// Writes a `known_hosts` file holding only [`Sshd::known_hosts_line`].
    pub fn write_known_hosts(&self, path: &Path) -> Result<()> {
        let line = self.known_hosts_line()?;
        fs::write(path, format!("{line}\n")).with_context(|| format!("writing {}", path.display()))
    }

    /// The `known_hosts` file the client helpers use; it always holds the current host key.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The host key's fingerprint as OpenSSH prints it: `SHA256:…`.
    pub fn host_key_fingerprint(&self) -> Result<String> {
        let output = Command::new(SSH_KEYGEN)
            .args(["-l", "-E", "sha256", "-f"])
            .arg(self.host_key_path().with_extension("pub"))
            .stdin(Stdio::null())
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.split_whitespace()
            .nth(1)
            .map(str::to_owned)
            .with_context(|| format!("unexpected ssh-keygen -l output {text:?}"))
    }

    /// Options for `ssh`/`sftp` (not the port): no user config, the client key only, batch mode,
    /// strict host key checking against `known_hosts`.
    pub fn client_options(&self, known_hosts: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> =
            vec!["-F".into(), "/dev/null".into(), "-i".into(), self.client_key_path().into()];
        for option in [
            "IdentitiesOnly=yes".to_owned(),
            "IdentityAgent=none".to_owned(),
            "BatchMode=yes".to_owned(),
            "StrictHostKeyChecking=yes".to_owned(),
            "GlobalKnownHostsFile=/dev/null".to_owned(),
            format!("UserKnownHostsFile={}", known_hosts.display()),
            "ConnectTimeout=5".to_owned(),
        ] {
            args.push("-o".into());
            args.push(option.into());
        }
        args
    }

    /// A ready `sftp -b -` command for `account` (optionally throttled to `limit_kbit` Kbit/s):
    /// the caller pipes the batch commands into its stdin.
    pub fn sftp_command(&self, account: SshAccount, limit_kbit: Option<u32>) -> Command {
        let mut command = Command::new(SFTP);
        command.args(["-b", "-", "-P"]).arg(self.port.to_string());
        command.args(self.client_options(&self.known_hosts_path()));
        if let Some(kbit) = limit_kbit {
            command.arg("-l").arg(kbit.to_string());
        }
        command.arg(format!("{}@127.0.0.1", account.name()));
        command
    }

    /// Runs the real `sftp` client with `batch` (one command per line) as `account`.
    pub fn sftp(&self, account: SshAccount, batch: &str) -> Result<Output> {
        run_with_input(self.sftp_command(account, None), batch)
    }

    /// Like [`Sshd::sftp`], throttled to `limit_kbit` Kbit/s (`sftp -l`).
    pub fn sftp_throttled(
        &self,
        account: SshAccount,
        batch: &str,
        limit_kbit: u32,
    ) -> Result<Output> {
        run_with_input(self.sftp_command(account, Some(limit_kbit)), batch)
    }

    /// A ready `ssh` command running `remote_command` as [`SshAccount::Shell`].
    pub fn ssh_command(&self, remote_command: &str) -> Command {
        let mut command = Command::new(SSH);
        command.arg("-p").arg(self.port.to_string());
        command.args(self.client_options(&self.known_hosts_path()));
        command
            .arg(format!("{}@127.0.0.1", SshAccount::Shell.name()))
            .arg("--")
            .arg(remote_command);
        command.stdin(Stdio::null());
        command
    }

    /// The file that collects the SFTP operation log of both accounts.
    pub fn sftp_log_path(&self) -> PathBuf {
        self.dir.path().join("sftp.log")
    }

    /// The SFTP operation log so far.
    pub fn sftp_log(&self) -> String {
        fs::read_to_string(self.sftp_log_path()).unwrap_or_default()
    }

    /// Waits until the SFTP log contains `needle` (lines arrive through a socket, shortly
    /// after the client saw the operation finish) and returns the whole log.
    pub fn wait_for_sftp_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        if net::wait_until(timeout, || self.sftp_log().contains(needle)).is_err() {
            bail!(
                "{needle:?} did not appear in the sftp log within {timeout:?}:\n{}",
                self.sftp_log()
            );
        }
        Ok(self.sftp_log())
    }

    /// The file `sshd -E` writes (authentication, sessions).
    pub fn sshd_log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// `sshd`'s own log so far.
    pub fn sshd_log(&self) -> String {
        fs::read_to_string(self.sshd_log_path()).unwrap_or_default()
    }

    /// Both accounts' `internal-sftp`/`sftp-server` log through this socket.
    fn log_socket(&self) -> PathBuf {
        self.jail.path().join("dev/log")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill_server();
        // Stop the relay before the TempDirs remove its socket and log file.
        self.relay.take();
    }
}

fn require_programs() -> Result<()> {
    for (program, package) in [
        (SSHD, "openssh-server"),
        (SFTP_SERVER, "openssh-sftp-server"),
        (SSH_KEYGEN, "openssh-client"),
        (SSH, "openssh-client"),
        (SFTP, "openssh-client"),
        (LOGGER, "bsdutils"),
    ] {
        net::require_program(Path::new(program), package)?;
    }
    Ok(())
}

fn make_jail_root() -> Result<TempDir> {
    fs::create_dir_all(JAIL_PARENT).with_context(|| format!("creating {JAIL_PARENT}"))?;
    fs::set_permissions(JAIL_PARENT, Permissions::from_mode(0o755))?;
    let jail = tempfile::Builder::new().prefix("jail-").tempdir_in(JAIL_PARENT)?;
    fs::set_permissions(jail.path(), Permissions::from_mode(0o755))?;
    Ok(jail)
}

/// Creates the accounts if missing and unlocks them (a locked account is refused even with a
/// key). Serialized across test processes by a lock file: useradd fails on a busy /etc/passwd.
fn ensure_accounts(password: Option<&str>) -> Result<()> {
    let lock = File::create(Path::new(JAIL_PARENT).join("accounts.lock"))?;
    lock.lock().context("locking the test accounts")?;
    for account in [SshAccount::Shell, SshAccount::Jail] {
        if uid_of(account).is_none() {
            let home = match account {
                SshAccount::Shell => "/nonexistent",
                SshAccount::Jail => "/upload",
            };
            run(Command::new("useradd").args([
                "-M",
                "-U",
                "-d",
                home,
                "-s",
                account.shell(),
                account.name(),
            ]))
            .context("creating a test account (package `passwd`)")?;
        }
        match password {
            Some(password) => set_password(account, password)?,
            None if is_locked(account)? => {
                run(Command::new("usermod").args(["-p", "*", account.name()]))?
            }
            None => {}
        }
    }
    Ok(())
}

fn set_password(account: SshAccount, password: &str) -> Result<()> {
    let mut child = Command::new("chpasswd").stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{}:{password}", account.name())?;
    }
    if !child.wait()?.success() {
        bail!("chpasswd failed for {}", account.name());
    }
    Ok(())
}

fn is_locked(account: SshAccount) -> Result<bool> {
    let shadow = fs::read_to_string("/etc/shadow").context("reading /etc/shadow")?;
    let prefix = format!("{}:", account.name());
    Ok(shadow
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .is_some_and(|rest| rest.starts_with('!')))
}

fn uid_of(account: SshAccount) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let prefix = format!("{}:", account.name());
    let line = passwd.lines().find(|line| line.starts_with(&prefix))?;
    let mut fields = line.split(':').skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

fn own(path: &Path, account: SshAccount) -> Result<()> {
    let (uid, gid) =
        uid_of(account).with_context(|| format!("account {} is missing", account.name()))?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    fs::set_permissions(path, Permissions::from_mode(0o755))?;
    Ok(())
}

fn generate_key(path: &Path, comment: &str) -> Result<()> {
    run(Command::new(SSH_KEYGEN)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path))
}

fn run(command: &mut Command) -> Result<()> {
    let output =
        command.stdin(Stdio::null()).output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn run_with_input(mut command: Command, input: &str) -> Result<Output> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {command:?}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// Every process below `root`, found through each process's parent in /proc.
fn descendants(root: u32) -> Vec<Pid> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        next += 1;
    }
    found.into_iter().skip(1).filter_map(|pid| i32::try_from(pid).ok()).map(Pid::from_raw).collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces: fields are counted after its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Receives syslog datagrams on a socket and appends them to a file in syslog's file format.
#[derive(Debug)]
struct LogRelay {
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
}

impl LogRelay {
    fn start(socket_path: &Path, log_path: &Path) -> Result<Self> {
        let socket = UnixDatagram::bind(socket_path)
            .with_context(|| format!("binding {}", socket_path.display()))?;
        // Session processes run as the test accounts.
        fs::set_permissions(socket_path, Permissions::from_mode(0o666))?;
        socket.set_read_timeout(Some(RELAY_POLL))?;
        let mut log = OpenOptions::new().create(true).append(true).open(log_path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || relay(&socket, &mut log, &stop))
        };
        Ok(Self { stop, worker: Some(worker) })
    }
}

impl Drop for LogRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn relay(socket: &UnixDatagram, log: &mut File, stop: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let line = syslog_file_line(&String::from_utf8_lossy(&buf[..n]));
                let _ = log.write_all(line.as_bytes());
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// `<38>Nov 23 07:12:40 internal-sftp[7]: msg\r\n` → `Nov 23 07:12:40 localhost internal-sftp[7]: msg\n`
/// (the line a syslog daemon would write to its file).
fn syslog_file_line(datagram: &str) -> String {
    let without_priority = match datagram.strip_prefix('<').and_then(|rest| rest.split_once('>')) {
        Some((_, rest)) => rest,
        None => datagram,
    };
    let message = without_priority.trim_end_matches(['\r', '\n', '\0']).replace('\r', "");
    // The timestamp is fixed-width: `Mmm dd hh:mm:ss`.
    match (message.get(..15), message.get(16..)) {
        (Some(stamp), Some(rest)) => format!("{stamp} localhost {rest}\n"),
        _ => format!("{message}\n"),
    }
}
