//! Host key checking against an OpenSSH known_hosts file, as `StrictHostKeyChecking=yes` (or
//! `accept-new`) does.
//!
//! libssh2 reads known_hosts only up to the first line it cannot parse, and its check reports a
//! stored key of another type as a mismatch. So each line is parsed on its own (a bad line is
//! warned about and skipped, the others still count), and a mismatch counts as a changed key
//! only when the stored key has the same type as the offered one.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use opsline::{Code, WithCode, exit::err};
use ssh2::{CheckResult, HashType, HostKeyType, KnownHostFileKind, Session};

/// Serialises check-and-append, so parallel sessions to a new host append its key once.
static FILE_LOCK: Mutex<()> = Mutex::new(());

/// One entry of the file.
#[derive(Debug, Clone)]
struct Entry {
    number: usize,
    text: String,
    key_type: String,
}

/// What the file says about a host.
#[derive(Default)]
#[allow(missing_debug_implementations)]
pub struct HostEntries {
    entries: Vec<(Entry, ssh2::KnownHosts)>,
}

/// The OpenSSH name of a host key type.
pub fn type_name(kind: HostKeyType) -> &'static str {
    match kind {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

/// `host` or `[host]:port`, as known_hosts names a server.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 { host.to_owned() } else { format!("[{host}]:{port}") }
}

/// Reads the entries of `path` that name `host:port`; a missing file has none.
pub fn entries_for(
    session: &Session,
    path: &Path,
    host: &str,
    port: u16,
) -> anyhow::Result<HostEntries> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(e)
                .with_code(Code::Config, || format!("cannot read known hosts {}", path.display()));
        }
    };
    let mut found = HostEntries::default();
    for (index, line) in text.lines().enumerate() {
        let Some(entry) = parse_line(index + 1, line) else { continue };
        let mut one = session.known_hosts().code(Code::Unavailable, "libssh2 known hosts")?;
        if one.read_str(line, KnownHostFileKind::OpenSSH).is_err() {
            tracing::warn!(
                file = %path.display(),
                line = entry.number,
                "known_hosts line cannot be read and is ignored (the other lines are still checked)"
            );
            continue;
        }
        // Any key that is not the stored one tells whether the line names this host at all.
        if !matches!(one.check_port(host, port, b"\0"), CheckResult::NotFound) {
            found.entries.push((entry, one));
        }
    }
    Ok(found)
}

fn parse_line(number: usize, line: &str) -> Option<Entry> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let mut fields = trimmed.split_whitespace();
    let first = fields.next()?;
    let key_type = if first.starts_with('@') { fields.nth(1) } else { fields.next() };
    Some(Entry { number, text: trimmed.to_owned(), key_type: key_type.unwrap_or("").to_owned() })
}

impl HostEntries {
    /// Host key algorithms to ask the server for: the types already stored, so that a server
    /// with several keys offers the one we know. Empty when the host is new.
    pub fn preferred_algorithms(&self, supported: &[&str]) -> String {
        let mut prefs: Vec<&str> = Vec::new();
        for (entry, _) in &self.entries {
            let names: &[&str] = match entry.key_type.as_str() {
                "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
                other => &[other][..],
            };
            for name in names.iter().copied() {
                if supported.contains(&name) && !prefs.contains(&name) {
                    prefs.push(name);
                }
            }
        }
        prefs.join(",")
    }
}

/// `SHA256:…` as `ssh-keygen -l` prints it.
pub fn fingerprint(session: &Session) -> String {
    let hash = session.host_key_hash(HashType::Sha256).unwrap_or_default();
    format!("SHA256:{}", STANDARD_NO_PAD.encode(hash))
}

/// Checks the server's host key after the handshake; with `accept_new`, appends an unknown
/// host's key. A changed or unknown (and not accepted) key is refused with exit 77.
pub fn verify(
    session: &Session,
    path: &Path,
    host: &str,
    port: u16,
    accept_new: bool,
) -> anyhow::Result<()> {
    let (key, kind) =
        session.host_key().ok_or_else(|| err(Code::Unavailable, "the server sent no host key"))?;
    let offered = type_name(kind);
    let name = host_pattern(host, port);
    let fp = fingerprint(session);
    let _guard = FILE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let known = entries_for(session, path, host, port)?;
    let mut changed = None;
    for (entry, hosts) in &known.entries {
        match hosts.check_port(host, port, key) {
            CheckResult::Match if entry.text.starts_with("@revoked") => {
                return Err(err(
                    Code::NoPerm,
                    format!(
                        "host key of {name} ({offered} {fp}) is marked @revoked in {}",
                        path.display()
                    ),
                ));
            }
            CheckResult::Match => return Ok(()),
            CheckResult::Mismatch if entry.key_type == offered => changed = Some(entry.number),
            _ => {}
        }
    }
    if let Some(line) = changed {
        return Err(err(
            Code::NoPerm,
            format!(
                "HOST KEY CHANGED for {name}: the server offers {offered} {fp}, but {} line {line} \
                 holds another key; someone may be intercepting the connection. If the server's \
                 key really changed, remove the old one with: ssh-keygen -R '{name}' -f {}",
                path.display(),
                path.display()
            ),
        ));
    }
    if !known.entries.is_empty() {
        return Err(err(
            Code::NoPerm,
            format!(
                "host key of {name} not verified: the server offered {offered} {fp}, which is not \
                 among the keys {} holds for it",
                path.display()
            ),
        ));
    }
    if !accept_new {
        return Err(err(
            Code::NoPerm,
            format!(
                "unknown host {name}: its {offered} key has fingerprint {fp}, not found in {}. \
                 If that is the server's key, run once with --accept-new to add it, or add it \
                 yourself: ssh-keyscan -p {port} {host} >> {}",
                path.display(),
                path.display()
            ),
        ));
    }
    append(path, &name, offered, key)
        .with_code(Code::IoErr, || format!("cannot add the host key to {}", path.display()))?;
    tracing::warn!(host = %name, key = %fp, file = %path.display(), "added new host key");
    Ok(())
}

/// Appends one line (never rewrites the file: comments, hashed and other entries stay as they
/// are).
fn append(path: &Path, name: &str, kind: &str, key: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let needs_newline = fs::read(path).is_ok_and(|b| !b.is_empty() && !b.ends_with(b"\n"));
    let mut file = OpenOptions::new().append(true).create(true).mode(0o600).open(path)?;
    let line = format!(
        "{}{name} {kind} {}\n",
        if needs_newline { "\n" } else { "" },
        STANDARD.encode(key)
    );
    file.write_all(line.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_their_key_type() {
        let e = parse_line(3, "[h]:2222 ssh-ed25519 AAAA comment").unwrap();
        assert_eq!((e.number, e.key_type.as_str()), (3, "ssh-ed25519"));
        let e = parse_line(1, "@revoked h ssh-rsa AAAA").unwrap();
        assert_eq!(e.key_type, "ssh-rsa");
        assert!(parse_line(1, "  # comment").is_none());
        assert!(parse_line(1, "").is_none());
    }

    #[test]
    fn patterns_bracket_other_ports() {
        assert_eq!(host_pattern("h", 22), "h");
        assert_eq!(host_pattern("127.0.0.1", 2222), "[127.0.0.1]:2222");
    }

    #[test]
    fn entries_survive_a_bad_line_and_rsa_maps_to_sha2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let key =
            STANDARD.encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        fs::write(
            &path,
            format!("garbage line here\n[h]:2222 ssh-ed25519 {key}\nother ssh-ed25519 {key}\n"),
        )
        .unwrap();
        let session = Session::new().unwrap();
        let found = entries_for(&session, &path, "h", 2222).unwrap();
        assert_eq!(found.entries.len(), 1);
        assert_eq!(found.entries[0].0.number, 2);
        assert_eq!(found.preferred_algorithms(&["ssh-ed25519", "ssh-rsa"]), "ssh-ed25519");
        let none = entries_for(&session, &path, "h", 22).unwrap();
        assert!(none.entries.is_empty());
    }
}
