//! Large writes over an SFTP channel of our own, with the few messages they need (open, write,
//! close) spoken here.
//!
//! libssh2 cuts every SFTP write into requests of 30,000 bytes. OpenSSH's `sftp-server` takes
//! requests of up to 255 KiB and says so through its `limits@openssh.com` extension, which
//! OpenSSH's own `sftp` uses: with such requests a file needs an eighth of the requests,
//! replies, copies and wake-ups on both ends, which counts when client and server share the
//! same cores. Everything else (stat, rename, setstat, read-back) stays with libssh2's SFTP.

use std::io::{self, Read, Write};

use ssh2::{Channel, ErrorCode, Session};

use crate::transfer::{Failure, io_failure};

/// Request size when the server does not state its limits: every server must take packets of
/// 34,000 bytes (SFTP draft 02, section 3), which leaves room for 32 KiB of data.
const PORTABLE_WRITE: usize = 32 << 10;

/// Largest request we send even if the server allows more.
const MAX_WRITE: usize = 255 << 10;

/// Bytes of write requests sent ahead of their replies. The SSH channel window (2 MiB with
/// OpenSSH) bounds what is really in flight; this only bounds the replies left to collect.
const IN_FLIGHT_BYTES: usize = 8 << 20;

/// Every reply we expect is short, VERSION with its extensions included: a longer one means a
/// broken stream.
const MAX_REPLY: usize = 256 << 10;

const FXP_INIT: u8 = 1;
const FXP_VERSION: u8 = 2;
const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_WRITE: u8 = 6;
const FXP_STATUS: u8 = 101;
const FXP_HANDLE: u8 = 102;
const FXP_EXTENDED: u8 = 200;
const FXP_EXTENDED_REPLY: u8 = 201;

/// `SSH_FXF_*` open flags.
pub const OPEN_WRITE: u32 = 0x02;
/// Create the file if missing.
pub const OPEN_CREATE: u32 = 0x08;
/// Truncate an existing file.
pub const OPEN_TRUNCATE: u32 = 0x10;
const ATTR_PERMISSIONS: u32 = 0x04;

const LIMITS: &str = "limits@openssh.com";

/// `LIBSSH2_ERROR_CHANNEL_FAILURE`: the server answered the channel open with a refusal.
const CHANNEL_FAILURE: i32 = -21;

/// One remote file open for writing over its own SFTP channel.
#[allow(missing_debug_implementations)]
pub struct BulkWriter {
    channel: Channel,
    path: String,
    handle: Vec<u8>,
    /// Data bytes per request.
    max_data: usize,
    /// The request being built: `header` bytes, then up to `max_data` bytes of data. It keeps
    /// its full length, so no request pays for clearing it.
    request: Vec<u8>,
    /// Length of a write request's header: length, type, id, handle, offset, data length.
    header: usize,
    next_id: u32,
    in_flight: usize,
}

impl BulkWriter {
    /// Starts an SFTP channel on `session` and opens `path` with `flags` (`OPEN_*`), creating
    /// it with `mode`. None when the server refuses another channel on this connection
    /// (sshd's `MaxSessions 1`): libssh2's SFTP channel has to do.
    pub fn open(
        session: &Session,
        path: &str,
        flags: u32,
        mode: u32,
    ) -> Result<Option<Self>, Failure> {
        let broken = |what: &str, e: ssh2::Error| {
            Failure::Connection(format!("{what} for writing {path}: {e}"))
        };
        let mut channel = match session.channel_session() {
            Ok(channel) => channel,
            Err(e) if e.code() == ErrorCode::Session(CHANNEL_FAILURE) => {
                tracing::debug!(
                    "the server refuses a second channel ({e}); writing through libssh2"
                );
                return Ok(None);
            }
            Err(e) => return Err(broken("SFTP channel", e)),
        };
        channel.subsystem("sftp").map_err(|e| broken("SFTP subsystem", e))?;
        let mut conversation = Conversation { channel: &mut channel, path };
        let max_data = conversation.init()?;
        let handle = conversation.open(flags, mode)?;
        let header = 4 + 1 + 4 + 4 + handle.len() + 8 + 4;
        Ok(Some(BulkWriter {
            channel,
            path: path.to_owned(),
            handle,
            max_data,
            request: vec![0; header + max_data],
            header,
            next_id: 2,
            in_flight: 0,
        }))
    }

    /// The most data one request carries: callers fill and send slices of this size.
    pub fn max_data(&self) -> usize {
        self.max_data
    }

    /// Sends up to `max` bytes (at most [`max_data`](Self::max_data)) at `offset`: `fill`
    /// writes them straight into the request, so the data is copied once on its way to
    /// libssh2, and says how many it wrote. Returns that count; 0 sends nothing.
    pub fn write_at<F>(&mut self, offset: u64, max: usize, fill: F) -> Result<usize, Failure>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, Failure>,
    {
        let max = max.min(self.max_data);
        let header = self.header;
        let len = fill(&mut self.request[header..header + max])?.min(max);
        if len == 0 {
            return Ok(0);
        }
        let mut head = Vec::with_capacity(header);
        put_u32(&mut head, header - 4 + len);
        head.push(FXP_WRITE);
        head.extend_from_slice(&self.next_id.to_be_bytes());
        put_string(&mut head, &self.handle);
        head.extend_from_slice(&offset.to_be_bytes());
        put_u32(&mut head, len);
        self.request[..header].copy_from_slice(&head);
        send_all(&mut self.channel, &self.request[..header + len])
            .map_err(|e| io_failure(&format!("write {}", self.path), &e))?;
        self.next_id += 1;
        self.in_flight += 1;
        while self.in_flight * self.max_data > IN_FLIGHT_BYTES {
            self.collect_one()?;
        }
        Ok(len)
    }

    /// Waits for every write to be acknowledged, closes the file (the server reports errors of
    /// the last writes there) and the channel.
    pub fn close(mut self) -> Result<(), Failure> {
        while self.in_flight > 0 {
            self.collect_one()?;
        }
        let id = self.next_id;
        let mut message = Vec::with_capacity(16 + self.handle.len());
        message.push(FXP_CLOSE);
        message.extend_from_slice(&id.to_be_bytes());
        put_string(&mut message, &self.handle);
        let what = format!("close {}", self.path);
        let mut conversation = Conversation { channel: &mut self.channel, path: &self.path };
        conversation.send(&message, &what)?;
        let reply = conversation.receive(&what)?;
        expect_ok(&reply, id, &what)?;
        // The file is complete now; a channel that does not close cleanly changes nothing.
        self.channel.send_eof().ok();
        self.channel.close().ok();
        Ok(())
    }

    /// Reads one write reply and checks it.
    fn collect_one(&mut self) -> Result<(), Failure> {
        let what = format!("write {}", self.path);
        let reply = Conversation { channel: &mut self.channel, path: &self.path }.receive(&what)?;
        let mut fields = Fields(&reply);
        match (fields.u8(), fields.u32()) {
            (Some(FXP_STATUS), Some(id)) if id >= 2 && id < self.next_id => {}
            _ => return Err(malformed(&what)),
        }
        status_result(&mut fields, &what)?;
        self.in_flight -= 1;
        Ok(())
    }
}

/// The request-and-reply part: init, limits, open, close.
struct Conversation<'a> {
    channel: &'a mut Channel,
    path: &'a str,
}

impl Conversation<'_> {
    /// Version 3 handshake; returns the data size per write request.
    fn init(&mut self) -> Result<usize, Failure> {
        let what = format!("starting SFTP for {}", self.path);
        let mut init = vec![FXP_INIT];
        init.extend_from_slice(&3u32.to_be_bytes());
        self.send(&init, &what)?;
        let reply = self.receive(&what)?;
        let mut fields = Fields(&reply);
        if fields.u8() != Some(FXP_VERSION) || fields.u32() != Some(3) {
            return Err(malformed(&what));
        }
        let mut has_limits = false;
        while let (Some(name), Some(_)) = (fields.string(), fields.string()) {
            has_limits |= name == LIMITS.as_bytes();
        }
        if !has_limits {
            return Ok(PORTABLE_WRITE);
        }
        self.max_write(&what)
    }

    /// Asks `limits@openssh.com` for the largest write; 0 from the server means "no limit".
    fn max_write(&mut self, what: &str) -> Result<usize, Failure> {
        let id = 0u32;
        let mut request = vec![FXP_EXTENDED];
        request.extend_from_slice(&id.to_be_bytes());
        put_string(&mut request, LIMITS.as_bytes());
        self.send(&request, what)?;
        let reply = self.receive(what)?;
        let mut fields = Fields(&reply);
        if fields.u8() != Some(FXP_EXTENDED_REPLY) || fields.u32() != Some(id) {
            return Ok(PORTABLE_WRITE);
        }
        let (Some(packet), Some(_read), Some(write)) = (fields.u64(), fields.u64(), fields.u64())
        else {
            return Err(malformed(what));
        };
        // The whole request must fit the packet limit too; keep 1 KiB for its header.
        let by_packet = if packet == 0 { u64::MAX } else { packet.saturating_sub(1024) };
        let by_write = if write == 0 { u64::MAX } else { write };
        let allowed = by_packet.min(by_write).min(MAX_WRITE as u64);
        Ok(usize::try_from(allowed).unwrap_or(MAX_WRITE).max(1))
    }

    fn open(&mut self, flags: u32, mode: u32) -> Result<Vec<u8>, Failure> {
        let what = format!("open {}", self.path);
        let id = 1u32;
        let mut request = vec![FXP_OPEN];
        request.extend_from_slice(&id.to_be_bytes());
        put_string(&mut request, self.path.as_bytes());
        request.extend_from_slice(&flags.to_be_bytes());
        request.extend_from_slice(&ATTR_PERMISSIONS.to_be_bytes());
        request.extend_from_slice(&mode.to_be_bytes());
        self.send(&request, &what)?;
        let reply = self.receive(&what)?;
        let mut fields = Fields(&reply);
        match (fields.u8(), fields.u32()) {
            (Some(FXP_HANDLE), Some(got)) if got == id => {
                fields.string().map(<[u8]>::to_vec).ok_or_else(|| malformed(&what))
            }
            (Some(FXP_STATUS), Some(got)) if got == id => {
                status_result(&mut fields, &what)?;
                Err(malformed(&what))
            }
            _ => Err(malformed(&what)),
        }
    }

    /// Sends one message (type and fields), with its length in front.
    fn send(&mut self, message: &[u8], what: &str) -> Result<(), Failure> {
        let mut packet = Vec::with_capacity(4 + message.len());
        put_u32(&mut packet, message.len());
        packet.extend_from_slice(message);
        send_all(self.channel, &packet).map_err(|e| io_failure(what, &e))
    }

    /// Reads one message (type and fields).
    fn receive(&mut self, what: &str) -> Result<Vec<u8>, Failure> {
        let mut length = [0u8; 4];
        self.channel.read_exact(&mut length).map_err(|e| io_failure(what, &e))?;
        let length = u32::from_be_bytes(length) as usize;
        if length == 0 || length > MAX_REPLY {
            return Err(malformed(what));
        }
        let mut message = vec![0u8; length];
        self.channel.read_exact(&mut message).map_err(|e| io_failure(what, &e))?;
        Ok(message)
    }
}

/// Writes all of `bytes`. libssh2 sends one SSH packet per call and may return 0 while it
/// waits for the server to open the window.
fn send_all(channel: &mut Channel, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match channel.write(bytes) {
            Ok(0) if channel.eof() => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed SFTP"));
            }
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn expect_ok(reply: &[u8], id: u32, what: &str) -> Result<(), Failure> {
    let mut fields = Fields(reply);
    match (fields.u8(), fields.u32()) {
        (Some(FXP_STATUS), Some(got)) if got == id => status_result(&mut fields, what),
        _ => Err(malformed(what)),
    }
}

/// The rest of a STATUS reply: Ok for `SSH_FX_OK`; a lost connection is the connection's
/// failure, any other status the file's (as for libssh2's own errors).
fn status_result(fields: &mut Fields<'_>, what: &str) -> Result<(), Failure> {
    let code = fields.u32().ok_or_else(|| malformed(what))?;
    if code == 0 {
        return Ok(());
    }
    let text = fields.string().map(String::from_utf8_lossy).unwrap_or_default();
    let message = format!("{what}: {text} (SFTP status {code})");
    match code {
        // SSH_FX_NO_CONNECTION and SSH_FX_CONNECTION_LOST
        6 | 7 => Err(Failure::Connection(message)),
        _ => Err(Failure::File(message)),
    }
}

fn malformed(what: &str) -> Failure {
    Failure::Connection(format!("{what}: unexpected SFTP reply from the server"))
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    let value = u32::try_from(value).expect("SFTP messages are far below 4 GiB");
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Reads big-endian SFTP fields off the front of a message.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_big_endian_and_stop_at_the_end() {
        let mut message = vec![FXP_STATUS];
        message.extend_from_slice(&7u32.to_be_bytes());
        put_string(&mut message, b"ok");
        message.extend_from_slice(&(1u64 << 40).to_be_bytes());
        let mut fields = Fields(&message);
        assert_eq!(fields.u8(), Some(FXP_STATUS));
        assert_eq!(fields.u32(), Some(7));
        assert_eq!(fields.string(), Some(&b"ok"[..]));
        assert_eq!(fields.u64(), Some(1 << 40));
        assert_eq!(fields.u8(), None);
    }

    #[test]
    fn statuses_sort_into_file_and_connection_failures() {
        let status = |code: u32| {
            let mut message = code.to_be_bytes().to_vec();
            put_string(&mut message, b"why");
            message
        };
        assert!(status_result(&mut Fields(&status(0)), "w").is_ok());
        let denied = status_result(&mut Fields(&status(3)), "write x");
        assert!(matches!(denied, Err(Failure::File(m)) if m == "write x: why (SFTP status 3)"));
        assert!(matches!(status_result(&mut Fields(&status(7)), "w"), Err(Failure::Connection(_))));
    }
}
