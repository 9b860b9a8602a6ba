//! One SSH connection with its SFTP channel: TCP with a connect timeout, a handshake bounded by
//! the I/O timeout, host key checking, and authentication.

use std::collections::HashSet;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::Path;

use opsline::{Code, exit::err};
use ssh2::{MethodType, Session, Sftp};

use crate::hostkeys;
use crate::settings::{Auth, Connect};

/// Ciphers offered unless `--ciphers` says otherwise, cheapest first for libssh2 and OpenSSH
/// together, as client and server often share a machine's cores. libssh2 hands OpenSSL one
/// 16-byte block per call, so for AES the per-call cost dominates: CTR with a SHA-2 MAC (SHA
/// instructions) costs it less than GCM, whose GHASH then goes block by block too, and less
/// than its portable chacha20-poly1305; on the server AES costs less than chacha20-poly1305
/// (medians of three 1 GiB uploads: client CPU 3.15 s CTR, 3.18 s chacha20-poly1305, 3.99 s
/// GCM; server 2.76, 3.01 and 2.75 s). Only CTR with an SHA-2 MAC and AEAD ciphers: libssh2 would also offer CBC
/// modes, 3DES, Blowfish, CAST and arcfour.
pub const DEFAULT_CIPHERS: &str = "aes128-ctr,aes256-ctr,aes128-gcm@openssh.com,\
                                   aes256-gcm@openssh.com,chacha20-poly1305@openssh.com";

/// MACs for the CTR ciphers (the AEAD ciphers bring their own): SHA-2 only, encrypt-then-MAC
/// first; libssh2 would also offer SHA-1, MD5 and RIPEMD-160.
const MACS: &str = "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha2-256,\
                    hmac-sha2-512";

/// A live connection. All its objects share one lock inside libssh2, so each transfer thread
/// has its own.
#[allow(missing_debug_implementations)]
pub struct Connection {
    /// The SSH session.
    pub session: Session,
    /// Its SFTP channel.
    pub sftp: Sftp,
    /// Remote folders known to exist, so each is checked once per connection.
    pub made_dirs: HashSet<String>,
    /// Whether `sha256sum` over an exec channel works for this account (None: not tried yet).
    pub exec_hash: Option<bool>,
    /// The session's socket, to cut it when the connection is given up.
    socket: TcpStream,
}

impl Connection {
    /// Cuts the socket of a broken or stalled connection, so that closing its handles and
    /// session fails at once instead of waiting out the I/O timeout once more for each.
    pub fn abandon(&self) {
        self.socket.shutdown(Shutdown::Both).ok();
    }
}

/// Why a connection could not be made.
#[derive(Debug)]
pub struct ConnectError {
    /// True when retrying cannot help (host key, credentials): the run stops.
    pub fatal: bool,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl ConnectError {
    fn retry(error: anyhow::Error) -> Self {
        ConnectError { fatal: false, error }
    }

    fn fatal(error: anyhow::Error) -> Self {
        ConnectError { fatal: true, error }
    }
}

/// Connects, checks the host key and logs in.
pub fn connect(settings: &Connect) -> Result<Connection, ConnectError> {
    let target = &settings.target;
    let where_ = target.display_host();
    let stream = tcp_connect(settings).map_err(ConnectError::retry)?;
    let socket = stream.try_clone().map_err(|e| {
        ConnectError::retry(err(Code::TempFail, format!("connection to {where_}: {e}")))
    })?;
    let mut session = Session::new()
        .map_err(|e| ConnectError::fatal(err(Code::Unavailable, format!("libssh2: {e}"))))?;
    // Without a timeout libssh2 waits forever on a stalled peer, including in the handshake.
    session.set_timeout(u32::try_from(settings.timeout.as_millis()).unwrap_or(u32::MAX));
    session.set_tcp_stream(stream);
    pin_known_key_types(&session, settings).map_err(ConnectError::fatal)?;
    prefer_algorithms(&session, &settings.ciphers).map_err(ConnectError::fatal)?;
    session.handshake().map_err(|e| {
        ConnectError::retry(err(Code::TempFail, format!("SSH handshake with {where_}: {e}")))
    })?;
    hostkeys::verify(
        &session,
        &settings.known_hosts,
        &target.host,
        target.port,
        settings.accept_new,
    )
    .map_err(ConnectError::fatal)?;
    authenticate(&session, &target.user, &settings.auth)
        .map_err(|e| ConnectError::fatal(e.context(format!("logging in to {where_}"))))?;
    tracing::debug!(
        host = %where_,
        cipher = session.methods(MethodType::CryptCs).unwrap_or("?"),
        mac = session.methods(MethodType::MacCs).unwrap_or("?"),
        "connected"
    );
    session.set_keepalive(false, settings.keepalive);
    let sftp = session.sftp().map_err(|e| {
        ConnectError::retry(err(Code::TempFail, format!("starting SFTP on {where_}: {e}")))
    })?;
    Ok(Connection { session, sftp, made_dirs: HashSet::new(), exec_hash: None, socket })
}

fn tcp_connect(settings: &Connect) -> anyhow::Result<TcpStream> {
    let target = &settings.target;
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| err(Code::TempFail, format!("cannot resolve {}: {e}", target.host)))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, settings.connect_timeout) {
            Ok(stream) => {
                // Small SFTP requests (open, stat, rename) must not wait for Nagle.
                stream.set_nodelay(true).ok();
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(err(
        Code::TempFail,
        format!(
            "cannot connect to {}: {}",
            target.display_host(),
            last.map_or_else(|| "no address".to_owned(), |e| e.to_string())
        ),
    ))
}

/// Offers `ciphers` (checked against what this libssh2 supports) and the SHA-2 MACs, in both
/// directions.
fn prefer_algorithms(session: &Session, ciphers: &str) -> anyhow::Result<()> {
    let supported = session.supported_algs(MethodType::CryptCs).unwrap_or_default();
    let names: Vec<&str> = ciphers.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
    if let Some(unknown) = names.iter().find(|name| !supported.contains(name)) {
        return Err(err(
            Code::Usage,
            format!("unknown cipher {unknown:?} in --ciphers (known: {})", supported.join(",")),
        ));
    }
    if names.is_empty() {
        return Err(err(Code::Usage, "--ciphers names no cipher"));
    }
    let ciphers = names.join(",");
    for (method, list) in [
        (MethodType::CryptCs, ciphers.as_str()),
        (MethodType::CryptSc, ciphers.as_str()),
        (MethodType::MacCs, MACS),
        (MethodType::MacSc, MACS),
    ] {
        session
            .method_pref(method, list)
            .map_err(|e| err(Code::Unavailable, format!("libssh2 refuses {list}: {e}")))?;
    }
    Ok(())
}

/// Asks for a host key of a type known_hosts already holds, so a server with several keys is
/// checked against the one we have rather than reported as changed.
fn pin_known_key_types(session: &Session, settings: &Connect) -> anyhow::Result<()> {
    let target = &settings.target;
    let known = hostkeys::entries_for(session, &settings.known_hosts, &target.host, target.port)?;
    let supported = session.supported_algs(MethodType::HostKey).unwrap_or_default();
    let prefs = known.preferred_algorithms(&supported);
    if !prefs.is_empty() {
        session
            .method_pref(MethodType::HostKey, &prefs)
            .map_err(|e| err(Code::Unavailable, format!("host key preference {prefs}: {e}")))?;
    }
    Ok(())
}

/// Tries the key file, then every identity of the ssh-agent (libssh2's own agent call tries
/// only the first), then the password.
fn authenticate(session: &Session, user: &str, auth: &Auth) -> anyhow::Result<()> {
    let mut tried = Vec::new();
    if let Some(key) = &auth.identity {
        check_readable(key)?;
        let passphrase = auth.passphrase.as_ref().map(opsline::Secret::expose);
        match session.userauth_pubkey_file(user, None, key, passphrase) {
            Ok(()) => return Ok(()),
            Err(e) => tried.push(format!("key {}: {}", key.display(), e.message())),
        }
    }
    if std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()) {
        match agent_auth(session, user) {
            Ok(()) => return Ok(()),
            Err(e) => tried.push(format!("ssh-agent: {e}")),
        }
    }
    if let Some(password) = &auth.password {
        match session.userauth_password(user, password.expose()) {
            Ok(()) => return Ok(()),
            Err(e) => tried.push(format!("password: {}", e.message())),
        }
    }
    if tried.is_empty() {
        return Err(err(
            Code::Config,
            "no credentials: give --identity, run an ssh-agent (SSH_AUTH_SOCK), or give \
             --password-file / SHIP_SFTP_PASSWORD",
        ));
    }
    Err(err(Code::NoPerm, format!("authentication as {user} failed ({})", tried.join("; "))))
}

fn check_readable(key: &Path) -> anyhow::Result<()> {
    std::fs::File::open(key)
        .map(drop)
        .map_err(|e| err(Code::Config, format!("cannot read key file {}: {e}", key.display())))
}

fn agent_auth(session: &Session, user: &str) -> Result<(), String> {
    let mut agent = session.agent().map_err(|e| e.message().to_owned())?;
    agent.connect().map_err(|e| e.message().to_owned())?;
    agent.list_identities().map_err(|e| e.message().to_owned())?;
    let identities = agent.identities().map_err(|e| e.message().to_owned())?;
    if identities.is_empty() {
        return Err("the agent holds no keys".to_owned());
    }
    let result = identities
        .iter()
        .find(|identity| agent.userauth(user, identity).is_ok())
        .map(drop)
        .ok_or_else(|| format!("none of its {} keys was accepted", identities.len()));
    agent.disconnect().ok();
    result
}
