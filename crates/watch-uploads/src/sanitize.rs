//! `--sanitize-names`: uploads with spaces in their names get underscores instead, the way the
//! old upload script did, without ever replacing an existing file.

use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Attempts before giving up on finding a free name (`a_b.mp4`, `a_b-1.mp4`, …).
const TRIES: usize = 1000;

/// Renames `path` to its sanitised name and returns the new path; `None` when the name has no
/// spaces. The new name is claimed with `link(2)`, which fails rather than replace a file, so
/// a file that already has the name is never clobbered; a numbered name is tried instead.
pub fn rename(path: &Path) -> io::Result<Option<PathBuf>> {
    let Some(name) = path.file_name() else { return Ok(None) };
    if !name.as_bytes().contains(&b' ') {
        return Ok(None);
    }
    let clean: Vec<u8> =
        name.as_bytes().iter().map(|&b| if b == b' ' { b'_' } else { b }).collect();
    for n in 0..TRIES {
        let target = path.with_file_name(numbered(&clean, n));
        match fs::hard_link(path, &target) {
            Ok(()) => {
                fs::remove_file(path)?;
                return Ok(Some(target));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("no free name after {TRIES} tries")))
}

/// `name` with `-n` before its extension (`a_b-2.mp4`); `name` itself for 0.
fn numbered(name: &[u8], n: usize) -> std::ffi::OsString {
    if n == 0 {
        return std::ffi::OsString::from_vec(name.to_vec());
    }
    let dot = name.iter().rposition(|b| *b == b'.').filter(|i| *i > 0).unwrap_or(name.len());
    let mut out = name[..dot].to_vec();
    out.extend_from_slice(format!("-{n}").as_bytes());
    out.extend_from_slice(&name[dot..]);
    std::ffi::OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_become_underscores_without_clobbering() {
        let dir = tempfile::tempdir().unwrap();
        let taken = dir.path().join("my_film.mp4");
        fs::write(&taken, b"keep me").unwrap();
        let upload = dir.path().join("my film.mp4");
        fs::write(&upload, b"new").unwrap();
        let renamed = rename(&upload).unwrap().unwrap();
        assert_eq!(renamed, dir.path().join("my_film-1.mp4"));
        assert_eq!(fs::read(&taken).unwrap(), b"keep me");
        assert_eq!(fs::read(&renamed).unwrap(), b"new");
        assert!(!upload.exists());
        assert_eq!(rename(&renamed).unwrap(), None);
        assert_eq!(numbered(b".hidden", 2), ".hidden-2");
    }
}
