//! `--follow`: read, then wait for inotify to say a watched folder changed, and read again;
//! the position is saved every second while there is unsaved progress and on SIGTERM/SIGINT.
//!
//! The loop sleeps in poll(2) on the inotify descriptor and the shutdown socket; it wakes on a
//! timer only while a save is due.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use opsline::{Code, Context, WithCode};
use tracing::warn;

use crate::tail::{Session, Tailer};

/// Runs until SIGTERM or SIGINT.
pub fn run(tailers: &mut [Tailer], mut session: Session, ctx: &Context) -> anyhow::Result<Code> {
    let mut inotify = Inotify::init().code(Code::IoErr, "cannot start inotify")?;
    let watched = watch_folders(&mut inotify, tailers)?;
    let wake = ctx.shutdown.wake_socket().code(Code::IoErr, "cannot watch for signals")?;
    for tailer in tailers.iter_mut() {
        tailer.step(&mut session)?;
    }
    session.save()?;
    let mut buffer = vec![0u8; 64 * 1024];
    while !ctx.shutdown.requested() {
        let timeout = match session.save_due_in() {
            None => PollTimeout::NONE,
            Some(due) => PollTimeout::from(due.as_millis().min(1000) as u16 + 1),
        };
        let mut fds = [
            PollFd::new(inotify.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io::Error::from(e)).code(Code::IoErr, "waiting for changes"),
        }
        let signalled = fds[1].revents().is_some_and(|r| !r.is_empty());
        let changed = fds[0].revents().is_some_and(|r| !r.is_empty());
        if signalled || ctx.shutdown.requested() {
            break;
        }
        if changed {
            let due = pending(&mut inotify, &mut buffer, &watched, tailers)?;
            for (tailer, _) in tailers.iter_mut().zip(due).filter(|(_, due)| *due) {
                tailer.step(&mut session)?;
            }
        }
        session.maybe_save()?;
    }
    session.finish()
}

/// One watch per folder that holds a log or its rotated files.
fn watch_folders(
    inotify: &mut Inotify,
    tailers: &[Tailer],
) -> anyhow::Result<HashMap<WatchDescriptor, Vec<usize>>> {
    let mask = WatchMask::MODIFY
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB;
    let mut watched: HashMap<WatchDescriptor, Vec<usize>> = HashMap::new();
    let mut folders: HashMap<PathBuf, WatchDescriptor> = HashMap::new();
    for (index, tailer) in tailers.iter().enumerate() {
        for folder in tailer.folders() {
            let wd = match folders.get(&folder) {
                Some(wd) => wd.clone(),
                None => {
                    let wd = inotify.watches().add(&folder, mask).with_code(Code::IoErr, || {
                        format!("cannot watch {} with inotify", folder.display())
                    })?;
                    folders.insert(folder, wd.clone());
                    wd
                }
            };
            watched.entry(wd).or_default().push(index);
        }
    }
    Ok(watched)
}

/// Drains the inotify queue; which tailers have something to look at.
fn pending(
    inotify: &mut Inotify,
    buffer: &mut [u8],
    watched: &HashMap<WatchDescriptor, Vec<usize>>,
    tailers: &[Tailer],
) -> anyhow::Result<Vec<bool>> {
    let mut due = vec![false; tailers.len()];
    loop {
        let events = match inotify.read_events(buffer) {
            Ok(events) => events,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(due),
            Err(e) => return Err(e).code(Code::IoErr, "reading inotify events"),
        };
        for event in events {
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                warn!("inotify queue overflowed; looking at every log again");
                due.iter_mut().for_each(|d| *d = true);
                continue;
            }
            let Some(indexes) = watched.get(&event.wd) else { continue };
            for &index in indexes {
                if event.name.is_none_or(|name| tailers[index].concerns(name)) {
                    due[index] = true;
                }
            }
        }
    }
}
