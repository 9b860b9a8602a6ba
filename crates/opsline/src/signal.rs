//! SIGINT and SIGTERM: a tool that watches for them finishes the record it is on, saves its
//! state and exits; a tool that does not is stopped at once, as without a handler.

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crossbeam_channel::{Receiver, Sender};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Shared view of "a stop was asked for".
#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    signal: AtomicI32,
    watched: AtomicBool,
    closed: Receiver<()>,
    closer: Mutex<Option<Sender<()>>>,
}

impl Shutdown {
    /// A handle that no signal reaches; for library use and tests.
    pub fn detached() -> Self {
        let (closer, closed) = crossbeam_channel::bounded(0);
        Shutdown {
            inner: Arc::new(Inner {
                signal: AtomicI32::new(0),
                watched: AtomicBool::new(true),
                closed,
                closer: Mutex::new(Some(closer)),
            }),
        }
    }

    /// Installs the handlers for SIGINT and SIGTERM. A second SIGINT always exits at once.
    pub fn install() -> io::Result<Self> {
        let shutdown = Shutdown::detached();
        shutdown.inner.watched.store(false, Ordering::SeqCst);
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = shutdown.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || signals.forever().for_each(|signal| handle.on_signal(signal)))?;
        Ok(shutdown)
    }

    fn on_signal(&self, signal: i32) {
        let first =
            self.inner.signal.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        let watched = self.inner.watched.load(Ordering::SeqCst);
        if !watched || (first.is_err() && signal == SIGINT) {
            std::process::exit(128 + signal);
        }
        self.request();
    }

    /// Asks for a stop as a signal would (used by tools that stop themselves, and by tests).
    pub fn request(&self) {
        let _ = self.inner.signal.compare_exchange(0, SIGTERM, Ordering::SeqCst, Ordering::SeqCst);
        self.inner.closer.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Declares that the tool checks [`Shutdown::requested`] and stops by itself; without this a
    /// signal ends the process at once.
    pub fn watch(&self) -> &Self {
        self.inner.watched.store(true, Ordering::SeqCst);
        self
    }

    /// True once SIGINT or SIGTERM arrived (or [`Shutdown::request`] was called).
    pub fn requested(&self) -> bool {
        self.inner.signal.load(Ordering::SeqCst) != 0
    }

    /// True when the stop came from SIGINT (the tool then exits 130).
    pub fn by_interrupt(&self) -> bool {
        self.inner.signal.load(Ordering::SeqCst) == SIGINT
    }

    /// A channel that disconnects when a stop is asked for: put it in a `crossbeam_channel::select!`.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.inner.closed
    }

    /// A socket that becomes readable when SIGINT or SIGTERM arrives, for loops that wait in
    /// `poll(2)` (inotify) and must not wake up on a timer.
    pub fn wake_socket(&self) -> io::Result<UnixStream> {
        self.watch();
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        let second = write.try_clone()?;
        signal_hook::low_level::pipe::register(SIGTERM, write)?;
        signal_hook::low_level::pipe::register(SIGINT, second)?;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_disconnects_the_receiver() {
        let shutdown = Shutdown::detached();
        assert!(!shutdown.requested());
        assert!(shutdown.receiver().try_recv().is_err());
        shutdown.request();
        assert!(shutdown.requested());
        assert!(!shutdown.by_interrupt());
        assert_eq!(shutdown.receiver().recv(), Err(crossbeam_channel::RecvError));
    }
}
