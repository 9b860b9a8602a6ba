//! inotify watches on every folder of the watched trees (inotify is not recursive): one watch
//! per folder, added as folders appear, dropped as they go.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

/// What each folder watch asks for. Never `WatchMask::all()`: it includes `ONESHOT`.
const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::ONLYDIR)
    .union(WatchMask::DONT_FOLLOW)
    .union(WatchMask::EXCL_UNLINK);

/// One event, copied out of the read buffer.
#[derive(Debug, Clone)]
pub struct Event {
    /// The watch it came from (−1 for a queue overflow).
    pub wd: i32,
    /// What happened.
    pub mask: EventMask,
    /// The name inside the watched folder.
    pub name: Option<OsString>,
}

/// The inotify instance and the folder each watch stands for.
#[derive(Debug)]
pub struct Tree {
    inotify: Inotify,
    dirs: HashMap<i32, (WatchDescriptor, PathBuf, usize)>,
    paths: HashMap<PathBuf, i32>,
    buffer: Vec<u8>,
}

impl Tree {
    /// A new inotify instance (non-blocking); the kernel reads `max_queued_events` now.
    pub fn new() -> io::Result<Tree> {
        Ok(Tree {
            inotify: Inotify::init()?,
            dirs: HashMap::new(),
            paths: HashMap::new(),
            buffer: vec![0u8; 64 * 1024],
        })
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Watches the folder `path` of root `root`. A folder that is already watched (perhaps
    /// under an old name) keeps its watch and takes the new name.
    pub fn watch(&mut self, path: &Path, root: usize) -> io::Result<()> {
        let wd = self.inotify.watches().add(path, MASK)?;
        let id = wd.get_watch_descriptor_id();
        if let Some((_, old, _)) = self.dirs.get(&id)
            && old != path
        {
            self.paths.remove(old);
        }
        self.paths.insert(path.to_owned(), id);
        self.dirs.insert(id, (wd, path.to_owned(), root));
        Ok(())
    }

    /// True when `path` has a watch.
    pub fn is_watched(&self, path: &Path) -> bool {
        self.paths.contains_key(path)
    }

    /// The folder and root index of a watch.
    pub fn dir(&self, wd: i32) -> Option<(&Path, usize)> {
        self.dirs.get(&wd).map(|(_, path, root)| (path.as_path(), *root))
    }

    /// Forgets a watch the kernel removed (`IN_IGNORED`: the folder is gone).
    pub fn forget(&mut self, wd: i32) {
        if let Some((_, path, _)) = self.dirs.remove(&wd)
            && self.paths.get(&path) == Some(&wd)
        {
            self.paths.remove(&path);
        }
    }

    /// Removes the watches of `dir` and every folder under it (moved out or deleted).
    pub fn unwatch_under(&mut self, dir: &Path) {
        let gone: Vec<i32> = self
            .paths
            .iter()
            .filter(|(path, _)| path.starts_with(dir))
            .map(|(_, wd)| *wd)
            .collect();
        for id in gone {
            if let Some((wd, path, _)) = self.dirs.remove(&id) {
                self.paths.remove(&path);
                // The folder may be gone already, and its watch with it.
                let _ = self.inotify.watches().remove(wd);
            }
        }
    }

    /// Number of watched folders.
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    /// True when nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// The events of one read (one buffer's worth); `None` once the kernel has no more
    /// (`WouldBlock`). Call until `None`: a read returns at most one buffer.
    pub fn read(&mut self) -> io::Result<Option<Vec<Event>>> {
        loop {
            match self.inotify.read_events(&mut self.buffer) {
                Ok(batch) => {
                    return Ok(Some(
                        batch
                            .map(|e| Event {
                                wd: e.wd.get_watch_descriptor_id(),
                                mask: e.mask,
                                name: e.name.map(ToOwned::to_owned),
                            })
                            .collect(),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
