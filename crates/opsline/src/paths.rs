//! Paths that come from outside (records, archives, remote listings) and must stay inside a
//! folder.

use std::path::{Component, Path, PathBuf};

use crate::exit::{Code, err};

/// `base` joined with the relative path `rel`, refusing anything that could leave `base`:
/// absolute paths, `..`, and prefixes. (Symbolic links inside `base` are the caller's concern:
/// check them where the file system is read.)
pub fn join_inside(base: &Path, rel: &Path) -> anyhow::Result<PathBuf> {
    let mut joined = base.to_path_buf();
    for component in rel.components() {
        match component {
            Component::Normal(part) => joined.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(err(
                    Code::DataErr,
                    format!("refusing path {} : it leaves {}", rel.display(), base.display()),
                ));
            }
        }
    }
    if joined == base {
        return Err(err(Code::DataErr, format!("refusing empty path under {}", base.display())));
    }
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_refused() {
        let base = Path::new("/srv/archive");
        assert_eq!(
            join_inside(base, Path::new("a/./b.log")).unwrap(),
            Path::new("/srv/archive/a/b.log")
        );
        for bad in ["../x", "a/../../x", "/etc/passwd", "", "."] {
            assert!(join_inside(base, Path::new(bad)).is_err(), "{bad}");
        }
    }
}
