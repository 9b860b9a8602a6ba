//! The server's SHA-256 of an uploaded file: `sha256sum` over an exec channel when the account
//! has a shell, else the file read back over SFTP.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::connect::Connection;
use crate::transfer::{Failure, SLICE, classify, hex};

/// The remote command. The path arrives on standard input, never inside the command line, so
/// no file name is ever parsed by the server's shell.
const HASH_COMMAND: &str = "IFS= read -r p && exec sha256sum -- \"$p\"";

/// SHA-256 of the remote file `path`, lower-case hex.
pub fn remote_sha256(conn: &mut Connection, path: &str) -> Result<String, Failure> {
    if conn.exec_hash != Some(false) && !path.contains('\n') {
        // A shell may start elsewhere than SFTP does (sftp-server -d): name the file absolutely.
        let absolute = match path.starts_with('/') {
            true => path.to_owned(),
            false => conn
                .sftp
                .realpath(Path::new(path))
                .map_err(|e| classify(&format!("realpath {path}"), &e))?
                .to_string_lossy()
                .into_owned(),
        };
        match exec_sha256(conn, &absolute) {
            Ok(hash) => {
                conn.exec_hash = Some(true);
                return Ok(hash);
            }
            Err(why) => {
                tracing::debug!(%why, "sha256sum over exec is not available; reading files back");
                conn.exec_hash = Some(false);
            }
        }
    }
    read_back_sha256(conn, path)
}

/// Runs `sha256sum` on the server. Any surprise (no shell, SFTP-only account, no sha256sum,
/// unexpected output) is an error that sends the caller to the read-back.
fn exec_sha256(conn: &Connection, path: &str) -> Result<String, String> {
    let mut channel = conn.session.channel_session().map_err(|e| e.to_string())?;
    channel.exec(HASH_COMMAND).map_err(|e| e.to_string())?;
    channel.write_all(format!("{path}\n").as_bytes()).map_err(|e| e.to_string())?;
    channel.send_eof().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    (&mut channel).take(4096).read_to_end(&mut out).map_err(|e| e.to_string())?;
    channel.wait_close().map_err(|e| e.to_string())?;
    let status = channel.exit_status().map_err(|e| e.to_string())?;
    if status != 0 {
        return Err(format!("exit status {status}"));
    }
    parse_sha256sum(&out).ok_or_else(|| "unexpected sha256sum output".to_owned())
}

/// The hash from one `sha256sum` line (GNU prefixes the line with `\` when it escaped the name).
fn parse_sha256sum(out: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(out).ok()?;
    let line = text.lines().next()?;
    let line = line.strip_prefix('\\').unwrap_or(line);
    let hash = line.get(..64)?;
    let valid = hash.bytes().all(|b| b.is_ascii_hexdigit()) && line[64..].starts_with(' ');
    valid.then(|| hash.to_ascii_lowercase())
}

fn read_back_sha256(conn: &Connection, path: &str) -> Result<String, Failure> {
    let io_err = |e: std::io::Error| Failure::Connection(format!("reading back {path}: {e}"));
    let mut file = conn
        .sftp
        .open(Path::new(path))
        .map_err(|e| Failure::Connection(format!("opening {path} to read it back: {e}")))?;
    let mut hasher = Sha256::new();
    // Large reads let libssh2 keep many read requests in flight.
    let mut buf = vec![0u8; SLICE];
    loop {
        let n = file.read(&mut buf).map_err(|e| {
            conn.abandon();
            io_err(e)
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        conn.session.keepalive_send().ok();
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sum_lines_are_parsed_strictly() {
        let hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(parse_sha256sum(format!("{hash}  a b\n").as_bytes()).as_deref(), Some(hash));
        assert_eq!(parse_sha256sum(format!("\\{hash}  a\\nb\n").as_bytes()).as_deref(), Some(hash));
        assert_eq!(parse_sha256sum(b"This service allows sftp connections only.\n"), None);
        assert_eq!(parse_sha256sum(b""), None);
    }
}
