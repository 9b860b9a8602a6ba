//! Ports on 127.0.0.1 for the test servers, and the readiness check they share.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// How long a freshly started server gets to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Gap between two connection attempts while waiting for a port.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick).
///
/// Another process may take it before the caller binds it: servers that bind it themselves
/// retry with a new port when the bind fails.
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Blocks until `addr` accepts a TCP connection, failing once `timeout` has passed.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    wait_until(timeout, || TcpStream::connect_timeout(&addr, POLL_INTERVAL).is_ok()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{addr} did not accept connections within {timeout:?}"),
        )
    })
}

/// Polls `ready` until it returns true, failing with `TimedOut` once `timeout` has passed.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("condition not met within {timeout:?}"),
            ));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Fails with a message naming the Debian package when `program` is not installed.
pub fn require_program(program: &Path, debian_package: &str) -> io::Result<()> {
    if program.exists() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "{} is missing: install the Debian package `{debian_package}` (apt-get install -y {debian_package})",
            program.display()
        ),
    ))
}
