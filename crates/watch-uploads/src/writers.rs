//! Which files some process still holds open for writing, read from `/proc/PID/fdinfo` as
//! `fuser` does. Only processes this user may inspect are seen (all of them as root); a
//! writer on another machine (NFS) is never seen, so the settle time still matters.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A file's identity: device and inode.
pub type Inode = (u64, u64);

/// The inodes of regular files open for writing (`O_WRONLY` or `O_RDWR`) in any process we
/// may inspect, except this one.
pub fn open_for_writing() -> HashSet<Inode> {
    let own = std::process::id().to_string();
    let mut found = HashSet::new();
    let Ok(procs) = fs::read_dir("/proc") else { return found };
    for entry in procs.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|p| p.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        if pid != own {
            collect_writers(&entry.path(), &mut found);
        }
    }
    found
}

fn collect_writers(proc_dir: &Path, found: &mut HashSet<Inode>) {
    let Ok(fds) = fs::read_dir(proc_dir.join("fd")) else { return };
    for fd in fds.flatten() {
        // Sockets, pipes and anonymous inodes read as `type:[n]`; only real paths matter.
        let Ok(target) = fs::read_link(fd.path()) else { continue };
        if !target.is_absolute() {
            continue;
        }
        let info = proc_dir.join("fdinfo").join(fd.file_name());
        if !fs::read_to_string(info).is_ok_and(|text| opened_for_writing(&text)) {
            continue;
        }
        if let Ok(meta) = fs::metadata(fd.path())
            && meta.is_file()
        {
            found.insert((meta.dev(), meta.ino()));
        }
    }
}

/// True when an fdinfo text's `flags:` (octal) has the access mode `O_WRONLY` or `O_RDWR`.
fn opened_for_writing(fdinfo: &str) -> bool {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .and_then(|flags| u32::from_str_radix(flags.trim(), 8).ok())
        .is_some_and(|flags| flags & 0o3 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn fdinfo_access_modes() {
        assert!(opened_for_writing("pos:\t0\nflags:\t0100001\nmnt_id:\t1\n"));
        assert!(opened_for_writing("flags:\t02\n"));
        assert!(!opened_for_writing("pos:\t0\nflags:\t0100000\n"));
        assert!(!opened_for_writing("pos:\t0\n"));
    }

    #[test]
    fn a_writing_child_process_is_seen_and_then_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held.mp4");
        fs::write(&path, b"x").unwrap();
        let mut child = Command::new("sh")
            .args(["-c", "exec 3>>\"$1\"; read _", "sh"])
            .arg(&path)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let meta = fs::metadata(&path).unwrap();
        let inode = (meta.dev(), meta.ino());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !open_for_writing().contains(&inode) {
            assert!(std::time::Instant::now() < deadline, "the writer never showed up");
            std::thread::yield_now();
        }
        drop(child.stdin.take());
        child.wait().unwrap();
        assert!(!open_for_writing().contains(&inode));
    }
}
