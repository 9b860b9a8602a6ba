//! Client addresses and PC names: the site's snapshot side file (`date`, `ss -n -t` lines, the
//! log line that triggered it), the set difference that guesses which peer a checkout came
//! from, and the DHCP server's host and lease tables.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use chrono::{DateTime, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::parse::{Parsed, parse_line};
use crate::zone::Zone;

/// How far after a checkout the snapshot that shows its connection may come.
const SNAPSHOT_WINDOW_SECS: i64 = 60;

/// The guessed client address of a checkout. Never certain: the connection that appeared
/// between two snapshots may belong to another program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpMatch {
    /// The address, when exactly one new peer appeared.
    pub ip: Option<IpAddr>,
    /// Every new peer, when more than one appeared.
    pub candidates: Vec<IpAddr>,
    /// `unique` or `ambiguous`.
    pub confidence: String,
    /// The PC the DHCP tables give for `ip`.
    pub pc: Option<Pc>,
}

/// A PC from the DHCP tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pc {
    /// The host name (`host NAME` or the lease's `client-hostname`).
    pub name: Option<String>,
    /// The MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
}

/// One snapshot block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// When it was taken.
    pub time: i64,
    /// Established connections: (local port, peer address).
    pub peers: Vec<(u16, IpAddr)>,
    /// The log line that triggered it, trimmed.
    pub trigger: Option<Vec<u8>>,
}

/// Snapshots and PC tables, for enriching checkouts.
#[derive(Debug, Clone, Default)]
pub struct Enricher {
    snapshots: Vec<Snapshot>,
    pcs: PcTable,
    port: Option<u16>,
}

impl Enricher {
    /// Snapshots (sorted here by time), PC tables and the `--port` override.
    pub fn new(mut snapshots: Vec<Snapshot>, pcs: PcTable, port: Option<u16>) -> Self {
        snapshots.sort_by_key(|s| s.time);
        Enricher { snapshots, pcs, port }
    }

    /// The client address of the checkout on `raw` at `t`: the peers of the vendor port in the
    /// first snapshot after it that were not in the one before.
    pub fn match_out(&self, t: i64, raw: &[u8], log_port: Option<u16>) -> Option<IpMatch> {
        let port = self.port.or(log_port);
        let after = self.snapshot_after(t, raw)?;
        let before = after.checked_sub(1).map(|i| self.peers(i, port)).unwrap_or_default();
        let new: Vec<IpAddr> = self.peers(after, port).difference(&before).copied().collect();
        let (ip, candidates, confidence) = match new.as_slice() {
            [] => return None,
            [one] => (Some(*one), Vec::new(), "unique"),
            _ => (None, new, "ambiguous"),
        };
        let pc = ip.and_then(|ip| self.pcs.lookup(ip)).cloned();
        Some(IpMatch { ip, candidates, confidence: confidence.to_owned(), pc })
    }

    /// The snapshot taken for this line: the one whose trigger is the line, else the first
    /// taken at or after it, within the window.
    fn snapshot_after(&self, t: i64, raw: &[u8]) -> Option<usize> {
        let first = self.snapshots.partition_point(|s| s.time < t);
        let within = self.snapshots[first..]
            .iter()
            .take_while(|s| s.time <= t + SNAPSHOT_WINDOW_SECS)
            .count();
        if within == 0 {
            return None;
        }
        let line = trim(raw);
        let triggered =
            (first..first + within).find(|&i| self.snapshots[i].trigger.as_deref() == Some(line));
        Some(triggered.unwrap_or(first))
    }

    fn peers(&self, index: usize, port: Option<u16>) -> BTreeSet<IpAddr> {
        self.snapshots[index]
            .peers
            .iter()
            .filter(|(local, _)| port.is_none_or(|p| p == *local))
            .map(|(_, ip)| *ip)
            .collect()
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let s = s.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(s);
    let start = s.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// Reads a snapshot side file: blocks of a `date` line, `ss -n -t` lines and the log line
/// that triggered the snapshot. Lines that are none of these are skipped.
pub fn parse_snapshots(text: &str, zone: Zone) -> Vec<Snapshot> {
    let mut out: Vec<Snapshot> = Vec::new();
    for line in text.lines() {
        if let Some(time) = parse_date_line(line.trim(), zone) {
            out.push(Snapshot { time, peers: Vec::new(), trigger: None });
            continue;
        }
        let Some(current) = out.last_mut() else { continue };
        if let Some(peer) = parse_ss_line(line) {
            current.peers.push(peer);
        } else if matches!(parse_line(line.as_bytes()), Parsed::Line(_)) {
            current.trigger = Some(trim(line.as_bytes()).to_vec());
        }
    }
    out
}

/// `date` output (`Mon Nov 23 09:04:01 CET 2026`), `date -R`, or RFC 3339. Zone
/// abbreviations are ambiguous, so wall-clock times are taken in `zone`.
pub fn parse_date_line(line: &str, zone: Zone) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(line) {
        return Some(t.timestamp());
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(line) {
        return Some(t.timestamp());
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    if !(5..=6).contains(&words.len()) {
        return None;
    }
    let year = words.last()?;
    let text = format!("{} {} {} {}", words[1], words[2], words[3], year);
    let naive = NaiveDateTime::parse_from_str(&text, "%b %d %H:%M:%S %Y").ok()?;
    Some(zone.to_epoch(naive))
}

/// One `ss -n -t` line: `ESTAB 0 0 LOCAL:PORT PEER:PORT`, or without the State column as
/// `ss -H … state established` prints it. Other states are not connections.
pub fn parse_ss_line(line: &str) -> Option<(u16, IpAddr)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let first = *words.first()?;
    let rest = if first.parse::<u64>().is_ok() {
        &words[..]
    } else if first == "ESTAB" {
        &words[1..]
    } else {
        return None;
    };
    if rest.len() < 4 || rest[1].parse::<u64>().is_err() {
        return None;
    }
    let (_, local_port) = split_endpoint(rest[2])?;
    let (peer, _) = split_endpoint(rest[3])?;
    Some((local_port, peer))
}

/// `a.b.c.d:port`, `[v6]:port`, `[::ffff:a.b.c.d]:port` (unwrapped to IPv4), `*:port`.
fn split_endpoint(endpoint: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = endpoint.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let addr = addr.split('%').next()?;
    let ip: IpAddr = addr.parse().ok()?;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    Some((ip, port))
}

/// PCs by address, from `dhcpd.conf` hosts (which win) and `dhcpd.leases` (last one wins).
#[derive(Debug, Clone, Default)]
pub struct PcTable {
    fixed: HashMap<IpAddr, Pc>,
    leased: HashMap<IpAddr, Pc>,
}

impl PcTable {
    /// The PC at `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Pc> {
        self.fixed.get(&ip).or_else(|| self.leased.get(&ip))
    }

    /// Number of addresses known.
    pub fn len(&self) -> usize {
        self.fixed.len() + self.leased.len()
    }

    /// Whether no address is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the `host` and `lease` blocks of one ISC dhcpd file (either kind).
    pub fn add_dhcpd(&mut self, text: &str) {
        let mut blocks: Vec<Block> = Vec::new();
        let mut words: Vec<String> = Vec::new();
        for token in tokens(text) {
            match token {
                Token::Open => {
                    blocks.push(Block::from_header(&words));
                    words.clear();
                }
                Token::Semi => {
                    if let Some(block) = blocks.last_mut() {
                        block.statement(&words);
                    }
                    words.clear();
                }
                Token::Close => {
                    words.clear();
                    if let Some(block) = blocks.pop() {
                        self.finish(block);
                    }
                }
                Token::Word(w) => words.push(w),
            }
        }
    }

    fn finish(&mut self, block: Block) {
        match block.kind {
            BlockKind::Host(name) => {
                let pc = Pc { name: Some(name), mac: block.mac };
                for ip in block.addresses {
                    self.fixed.insert(ip, pc.clone());
                }
            }
            BlockKind::Lease(ip) => {
                self.leased.insert(ip, Pc { name: block.client_hostname, mac: block.mac });
            }
            BlockKind::Other => {}
        }
    }
}

#[derive(Debug)]
enum BlockKind {
    Host(String),
    Lease(IpAddr),
    Other,
}

#[derive(Debug)]
struct Block {
    kind: BlockKind,
    mac: Option<String>,
    addresses: Vec<IpAddr>,
    client_hostname: Option<String>,
}

impl Block {
    fn from_header(words: &[String]) -> Block {
        let kind = match words {
            [host, name, ..] if host == "host" => BlockKind::Host(name.clone()),
            [lease, ip, ..] if lease == "lease" => {
                ip.parse().map_or(BlockKind::Other, BlockKind::Lease)
            }
            _ => BlockKind::Other,
        };
        Block { kind, mac: None, addresses: Vec::new(), client_hostname: None }
    }

    fn statement(&mut self, words: &[String]) {
        match words {
            [hardware, _, mac, ..] if hardware == "hardware" => self.mac = normalize_mac(mac),
            [fixed, rest @ ..] if fixed == "fixed-address" => {
                self.addresses.extend(rest.iter().filter_map(|w| w.parse::<IpAddr>().ok()));
            }
            [client, name, ..] if client == "client-hostname" => {
                self.client_hostname = Some(name.clone());
            }
            _ => {}
        }
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
    Semi,
}

/// dhcpd.conf tokens: `#` comments to the end of the line, quoted strings, braces and
/// semicolons; commas separate words.
fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Token>| {
        if !word.is_empty() {
            out.push(Token::Word(std::mem::take(word)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                flush(&mut word, &mut out);
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                flush(&mut word, &mut out);
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => s.extend(chars.next()),
                        c => s.push(c),
                    }
                }
                out.push(Token::Word(s));
            }
            '{' | '}' | ';' => {
                flush(&mut word, &mut out);
                out.push(match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    _ => Token::Semi,
                });
            }
            ',' => flush(&mut word, &mut out),
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

/// `aa:bb:cc:dd:ee:ff` from `0:1a:2b:3:4:5`, `00-1A-…`, `001a2b030405` or Cisco `001a.2b03.0405`.
pub fn normalize_mac(text: &str) -> Option<String> {
    let text = text.trim();
    let groups: Vec<&str> = if text.contains('.') && !text.contains(':') {
        let hex: String = text.split('.').collect();
        return (hex.len() == 12).then(|| hex_pairs(&hex)).flatten();
    } else if text.contains(':') || text.contains('-') {
        text.split([':', '-']).collect()
    } else {
        return (text.len() == 12).then(|| hex_pairs(text)).flatten();
    };
    if groups.len() != 6 || groups.iter().any(|g| g.is_empty() || g.len() > 2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = groups.iter().map(|g| u8::from_str_radix(g, 16).ok()).collect();
    Some(format_mac(&bytes?))
}

fn hex_pairs(hex: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..6)
        .map(|i| hex.get(i * 2..i * 2 + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect();
    Some(format_mac(&bytes?))
}

fn format_mac(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        for text in ["0:1a:2b:3:4:5", "00-1A-2B-03-04-05", "001a.2b03.0405", "001A2B030405"] {
            assert_eq!(normalize_mac(text).as_deref(), Some("00:1a:2b:03:04:05"), "{text}");
        }
        assert_eq!(normalize_mac("zz:1a:2b:3:4:5"), None);
        assert_eq!(normalize_mac("1a.2b"), None);
    }

    #[test]
    fn dhcpd_conf_nested_groups_comments_several_addresses_and_leases() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        let mut pcs = PcTable::default();
        pcs.add_dhcpd(&std::fs::read_to_string(format!("{dir}dhcpd.conf")).unwrap());
        pcs.add_dhcpd(&std::fs::read_to_string(format!("{dir}dhcpd.leases")).unwrap());
        let pc = |ip: &str| pcs.lookup(ip.parse().unwrap()).cloned();
        let named =
            |name: &str, mac: &str| Some(Pc { name: Some(name.into()), mac: Some(mac.into()) });
        assert_eq!(pc("10.0.0.11"), named("pc-alice", "00:1a:2b:03:04:05"));
        assert_eq!(pc("10.0.0.21"), named("pc-alice", "00:1a:2b:03:04:05"));
        assert_eq!(pc("10.0.0.99"), named("pc-dave", "00:1a:2b:03:04:06"));
        assert_eq!(
            pc("10.0.0.14"),
            named("dave-laptop", "aa:bb:cc:00:00:02"),
            "the last lease wins"
        );
        assert_eq!(pc("10.0.0.100"), None, "a range is not a host");
        assert_eq!(pcs.len(), 4);
    }

    #[test]
    fn ss_lines() {
        let v4: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(parse_ss_line("ESTAB 0 0 10.0.0.1:27001 10.0.0.5:50123"), Some((27001, v4)));
        assert_eq!(
            parse_ss_line("0 0 [::ffff:10.0.0.1]:27001 [::ffff:10.0.0.5]:50123"),
            Some((27001, v4))
        );
        assert_eq!(parse_ss_line("TIME-WAIT 0 0 10.0.0.1:27001 10.0.0.5:50123"), None);
        assert_eq!(parse_ss_line("State Recv-Q Send-Q Local Address:Port Peer Address:Port"), None);
    }
}
