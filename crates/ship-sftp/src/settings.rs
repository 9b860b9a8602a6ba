//! The effective settings: options and environment first, then the TARGET URL, then the
//! `--config` file, then defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use opsline::{Code, Secret, WithCode, exit::err};
use serde::Deserialize;

use crate::args::{ConnectArgs, TransferArgs, Verify};

/// The server and folder to ship to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Server name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Account name.
    pub user: String,
    /// Target folder: absolute, or relative to the login folder ("" is the login folder).
    pub dir: String,
}

impl Target {
    /// `user@host:port` for messages and records.
    pub fn display_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Credentials to try, in this order: the key file, the agent's identities, the password.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Private key file.
    pub identity: Option<PathBuf>,
    /// Passphrase of the key file.
    pub passphrase: Option<Secret>,
    /// Account password.
    pub password: Option<Secret>,
}

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct Connect {
    /// The server and folder.
    pub target: Target,
    /// Credentials.
    pub auth: Auth,
    /// known_hosts file.
    pub known_hosts: PathBuf,
    /// Append unknown host keys instead of refusing them.
    pub accept_new: bool,
    /// Ciphers to offer, most preferred first.
    pub ciphers: String,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Longest stall of any network operation.
    pub timeout: Duration,
    /// Seconds between keepalives.
    pub keepalive: u32,
}

/// How files travel.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// How an upload is checked.
    pub verify: Verify,
    /// Copy the local mtime.
    pub preserve: bool,
    /// Parallel sessions.
    pub transfers: usize,
    /// Total upload rate limit in bytes/s.
    pub bwlimit: Option<u64>,
    /// Retries after a lost connection.
    pub retries: u32,
    /// Delay before the first retry.
    pub retry_delay: Duration,
}

/// Everything a run needs to talk to the server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Connection.
    pub connect: Connect,
    /// Transfers.
    pub transfer: Transfer,
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    url: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    dir: Option<String>,
    identity: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    password_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    accept_new: Option<bool>,
    ciphers: Option<String>,
    connect_timeout: Option<f64>,
    timeout: Option<f64>,
    keepalive: Option<u32>,
    transfers: Option<usize>,
    bwlimit: Option<u64>,
    retries: Option<u32>,
    retry_delay: Option<f64>,
    verify: Option<Verify>,
}

/// The parts of an `sftp://` URL.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Url {
    /// Account, if given.
    pub user: Option<String>,
    /// Host.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// Folder, if given.
    pub dir: Option<String>,
}

/// Parses `sftp://[user@]host[:port][/dir]`. As with curl, `/dir` is absolute and `/~/dir` is
/// relative to the login folder; `%XX` escapes are decoded.
pub fn parse_url(text: &str) -> anyhow::Result<Url> {
    let bad = |why: &str| err(Code::Usage, format!("bad target {text:?}: {why}"));
    let rest = text.strip_prefix("sftp://").ok_or_else(|| bad("it must start with sftp://"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((user, hostport)) => (Some(percent_decode(user).map_err(|e| bad(&e))?), hostport),
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport).map_err(|e| bad(&e))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let dir = match path {
        "" => None,
        _ => {
            let decoded = percent_decode(path).map_err(|e| bad(&e))?;
            Some(match decoded.strip_prefix("/~") {
                Some(rel) => rel.trim_start_matches('/').to_owned(),
                None => decoded,
            })
        }
    };
    Ok(Url { user, host, port, dir })
}

fn split_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let parse_port = |p: &str| p.parse::<u16>().map_err(|_| format!("bad port {p:?}"));
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed [ in host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected {after:?} after host")),
        };
        return Ok((host.to_owned(), port));
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_owned(), Some(parse_port(port)?))),
        None => Ok((text.to_owned(), None)),
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad %-escape %{hex}"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "%-escapes do not form UTF-8".to_owned())
}

/// Builds the settings of a run.
pub fn resolve(
    tool: &str,
    target: Option<&str>,
    connect: &ConnectArgs,
    transfer: &TransferArgs,
) -> anyhow::Result<Settings> {
    let file = match &connect.config {
        Some(path) => read_config(path)?,
        None => ConfigFile::default(),
    };
    let url = target.map(parse_url).transpose()?;
    let file_url = file.url.as_deref().map(parse_url).transpose()?;
    let from_urls = |pick: &dyn Fn(&Url) -> Option<String>| {
        url.as_ref().and_then(pick).or_else(|| file_url.as_ref().and_then(pick))
    };
    let host = connect
        .host
        .clone()
        .or_else(|| url.as_ref().map(|u| u.host.clone()))
        .or(file.host.clone())
        .or_else(|| file_url.as_ref().map(|u| u.host.clone()))
        .ok_or_else(|| {
            err(Code::Usage, "no server: give TARGET (sftp://user@host/dir) or --host")
        })?;
    let port = connect
        .port
        .or(url.as_ref().and_then(|u| u.port))
        .or(file.port)
        .or(file_url.as_ref().and_then(|u| u.port))
        .unwrap_or(22);
    let user = match connect.user.clone().or_else(|| from_urls(&|u| u.user.clone())) {
        Some(user) => user,
        None => file.user.clone().map_or_else(local_user, Ok)?,
    };
    let dir = connect
        .dir
        .clone()
        .or_else(|| url.as_ref().and_then(|u| u.dir.clone()))
        .or(file.dir.clone())
        .or_else(|| file_url.as_ref().and_then(|u| u.dir.clone()))
        .unwrap_or_default();
    let target = Target { host, port, user, dir };

    let identity = connect.identity.clone().or(file.identity.clone());
    let passphrase_file = connect.passphrase_file.clone().or(file.passphrase_file.clone());
    let password_file = connect.password_file.clone().or(file.password_file.clone());
    let auth = Auth {
        identity,
        passphrase: Secret::resolve(tool, "passphrase", passphrase_file.as_deref())?,
        password: Secret::resolve(tool, "password", password_file.as_deref())?,
    };
    let known_hosts = match connect.known_hosts.clone().or(file.known_hosts.clone()) {
        Some(path) => path,
        None => default_known_hosts()?,
    };
    let connect = Connect {
        target,
        auth,
        known_hosts,
        accept_new: connect.accept_new || file.accept_new.unwrap_or(false),
        ciphers: connect
            .ciphers
            .clone()
            .or(file.ciphers.clone())
            .unwrap_or_else(|| crate::connect::DEFAULT_CIPHERS.to_owned()),
        connect_timeout: seconds(connect.connect_timeout.or(file.connect_timeout), 10.0)?,
        timeout: seconds(connect.timeout.or(file.timeout), 60.0)?,
        keepalive: connect.keepalive.or(file.keepalive).unwrap_or(15).max(1),
    };
    let transfer = Transfer {
        verify: transfer.verify.or(file.verify).unwrap_or(Verify::Size),
        preserve: !transfer.no_preserve,
        transfers: transfer.transfers.or(file.transfers).unwrap_or(4).clamp(1, 64),
        bwlimit: transfer.bwlimit.or(file.bwlimit),
        retries: transfer.retries.or(file.retries).unwrap_or(3),
        retry_delay: seconds(transfer.retry_delay.or(file.retry_delay), 2.0)?,
    };
    Ok(Settings { connect, transfer })
}

fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_code(Code::Config, || format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_code(Code::Config, || format!("bad config file {}", path.display()))
}

fn seconds(value: Option<f64>, default: f64) -> anyhow::Result<Duration> {
    let value = value.unwrap_or(default);
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| err(Code::Usage, format!("{value} is not a positive number of seconds")))
}

fn local_user() -> anyhow::Result<String> {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .ok_or_else(|| err(Code::Usage, "no account name: give user@ in TARGET or --user"))
}

fn default_known_hosts() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".ssh/known_hosts"))
        .ok_or_else(|| err(Code::Config, "no $HOME to find ~/.ssh/known_hosts: give --known-hosts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_user_host_port_and_folder() {
        let url = parse_url("sftp://backup@backup.example.org:2222/srv/TSE%20INFORX").unwrap();
        assert_eq!(url.user.as_deref(), Some("backup"));
        assert_eq!(url.host, "backup.example.org");
        assert_eq!(url.port, Some(2222));
        assert_eq!(url.dir.as_deref(), Some("/srv/TSE INFORX"));
        let url = parse_url("sftp://[::1]:22/~/logs").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.dir.as_deref()),
            ("::1", Some(22), Some("logs"))
        );
        let url = parse_url("sftp://host").unwrap();
        assert_eq!((url.user, url.dir), (None, None));
        assert!(parse_url("ftp://host/x").is_err());
        assert!(parse_url("sftp://host:port/x").is_err());
    }

    #[test]
    fn options_win_over_target_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ship.toml");
        std::fs::write(&config, "url = \"sftp://cfg@cfghost:2200/cfgdir\"\nretries = 7\n").unwrap();
        let args = ConnectArgs {
            config: Some(config),
            port: Some(2022),
            known_hosts: Some(dir.path().join("kh")),
            ..ConnectArgs::default()
        };
        let s =
            resolve("ship-sftp", Some("sftp://u@h/d"), &args, &TransferArgs::default()).unwrap();
        let t = &s.connect.target;
        assert_eq!(
            (t.user.as_str(), t.host.as_str(), t.port, t.dir.as_str()),
            ("u", "h", 2022, "/d")
        );
        assert_eq!(s.transfer.retries, 7);
        let s = resolve("ship-sftp", None, &args, &TransferArgs::default()).unwrap();
        assert_eq!(s.connect.target.host, "cfghost");
        assert_eq!(s.connect.target.dir, "/cfgdir");
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ship.toml");
        std::fs::write(&config, "hots = \"typo\"\n").unwrap();
        let args = ConnectArgs { config: Some(config), ..ConnectArgs::default() };
        let e = resolve("ship-sftp", None, &args, &TransferArgs::default()).unwrap_err();
        assert_eq!(opsline::exit::code_of(&e), Code::Config);
    }
}
