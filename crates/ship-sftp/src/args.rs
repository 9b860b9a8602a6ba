//! Command-line options shared by the upload and the mirror commands.

use std::path::PathBuf;

/// Where to connect and how to prove who we are and who the server is.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectArgs {
    /// TOML file with any of: url, host, port, user, dir, identity, passphrase_file,
    /// password_file, known_hosts, accept_new, ciphers, connect_timeout, timeout, keepalive,
    /// transfers, bwlimit, retries, retry_delay, verify (options and TARGET win over it)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Server name or address (instead of TARGET)
    #[arg(long)]
    pub host: Option<String>,

    /// Server port [default: 22]
    #[arg(long)]
    pub port: Option<u16>,

    /// Account on the server [default: the local user name]
    #[arg(long)]
    pub user: Option<String>,

    /// Target folder on the server, absolute or relative to the account's login folder
    /// [default: the login folder]
    #[arg(long)]
    pub dir: Option<String>,

    /// Private key file for public-key authentication (OpenSSH or PEM format)
    #[arg(long, value_name = "KEY")]
    pub identity: Option<PathBuf>,

    /// File whose first line is the passphrase of --identity (or $SHIP_SFTP_PASSPHRASE)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// File whose first line is the account's password (or $SHIP_SFTP_PASSWORD)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// OpenSSH known_hosts file that must vouch for the server's host key
    /// [default: ~/.ssh/known_hosts]
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// Trust a host seen for the first time and append its key to --known-hosts (OpenSSH's
    /// StrictHostKeyChecking=accept-new); a changed key is refused all the same
    #[arg(long)]
    pub accept_new: bool,

    /// SSH ciphers to offer, comma-separated, most preferred first: the first that the server
    /// also accepts is used [default: AES-CTR, then AES-GCM, then chacha20-poly1305; see
    /// Encryption in ship-sftp(1)]
    #[arg(long, value_name = "LIST")]
    pub ciphers: Option<String>,

    /// Seconds to wait for the TCP connection [default: 10]
    #[arg(long, value_name = "SECS")]
    pub connect_timeout: Option<f64>,

    /// Seconds any single network operation may stall before the session is dropped and
    /// reconnected [default: 60]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,

    /// Seconds between SSH keepalive messages [default: 15]
    #[arg(long, value_name = "SECS")]
    pub keepalive: Option<u32>,
}

/// How files travel.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TransferArgs {
    /// Check each upload before it gets its final name: "size" compares the remote size with
    /// the bytes sent; "sha256" also compares the SHA-256 computed while sending with the
    /// server's (sha256sum over an exec channel, or by reading the file back when the account
    /// has no shell) [default: size]
    #[arg(long, value_enum, value_name = "HOW")]
    pub verify: Option<Verify>,

    /// Do not copy the local modification time to the uploaded file
    #[arg(long)]
    pub no_preserve: bool,

    /// Files sent in parallel, each over its own SSH connection; also the sessions a large
    /// file (64 MiB or more, --verify size) is split over [default: 4]
    #[arg(long, value_name = "N")]
    pub transfers: Option<usize>,

    /// Limit the total upload rate to this many bytes per second (suffixes k, M, G: 1024-based)
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub bwlimit: Option<u64>,

    /// Reconnect and restart a file this many times after a lost or stalled connection before
    /// giving up on it (exit 75) [default: 3]
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,

    /// Seconds before the first retry; each further retry waits twice as long, at most 60 s
    /// [default: 2]
    #[arg(long, value_name = "SECS")]
    pub retry_delay: Option<f64>,
}

/// How an upload is checked before it is renamed into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// the remote size equals the bytes sent
    Size,
    /// the size, and the SHA-256 of the remote file equals the one of the bytes sent
    Sha256,
}

/// `--bwlimit` values: bytes per second with an optional 1024-based suffix.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let factor: u64 = match unit.trim_end_matches(['B', 'b', '/', 's']) {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} (use k, M or G)")),
    };
    let value: f64 =
        digits.trim().parse().map_err(|_| format!("{text:?} is not a rate in bytes/s"))?;
    let rate = (value * factor as f64) as u64;
    if rate == 0 {
        return Err("the rate must be positive".to_owned());
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_binary_suffixes() {
        assert_eq!(parse_rate("1000"), Ok(1000));
        assert_eq!(parse_rate("512k"), Ok(512 * 1024));
        assert_eq!(parse_rate("1.5M"), Ok(3 << 19));
        assert_eq!(parse_rate("2G"), Ok(2 << 30));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("5x").is_err());
    }
}
