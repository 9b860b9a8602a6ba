//! Checks that the committed man pages match what the code renders.

use std::fs;
use std::path::{Path, PathBuf};

/// The workspace's `man/` folder.
pub fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../man")
}

/// Fails (naming the command that fixes it) when a committed page differs from `pages`; with
/// `OPSLINE_BLESS_MAN=1` in the environment it writes them instead (`scripts/man.sh`).
pub fn assert_pages_current(pages: &[(String, String)]) {
    let dir = man_dir();
    let bless = std::env::var_os("OPSLINE_BLESS_MAN").is_some_and(|v| v == "1");
    for (name, text) in pages {
        let path = dir.join(name);
        if bless {
            fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            continue;
        }
        let committed = fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == *text,
            "man/{name} is stale or missing: run scripts/man.sh and commit the result"
        );
    }
}
