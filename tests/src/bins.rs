//! Where the tools' binaries are.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The programs the workflows chain.
pub const TOOLS: &[&str] = &[
    "archive-dump",
    "archive-web",
    "convert-video",
    "log-tail",
    "notify",
    "origin-tokens",
    "ship-sftp",
    "watch-uploads",
];

/// Overrides where the binaries are looked for (the demo points it at the release build).
pub const BIN_DIR_ENV: &str = "OPSLINE_BIN_DIR";

/// The folder holding every tool: `$OPSLINE_BIN_DIR`, else the cargo target folder this
/// program was built into (`target/<profile>`, also from a test binary in `deps/`).
pub fn locate() -> anyhow::Result<PathBuf> {
    let dir = match env::var_os(BIN_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => target_dir_of(&env::current_exe().context("finding this program's path")?),
    };
    check(&dir)?;
    Ok(dir)
}

fn target_dir_of(exe: &Path) -> PathBuf {
    let parent = exe.parent().unwrap_or(Path::new("."));
    if parent.file_name().is_some_and(|name| name == "deps") {
        parent.parent().unwrap_or(parent).to_path_buf()
    } else {
        parent.to_path_buf()
    }
}

fn check(dir: &Path) -> anyhow::Result<()> {
    let missing: Vec<&str> =
        TOOLS.iter().copied().filter(|tool| !dir.join(tool).is_file()).collect();
    if !missing.is_empty() {
        bail!(
            "{} not found in {}: run cargo build --workspace (or set {BIN_DIR_ENV} to the folder holding the tools)",
            missing.join(", "),
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_binaries_in_deps_find_the_profile_folder() {
        assert_eq!(
            target_dir_of(Path::new("/w/target/debug/deps/workflows-0a1b")),
            Path::new("/w/target/debug")
        );
        assert_eq!(
            target_dir_of(Path::new("/w/target/release/opsline-demo")),
            Path::new("/w/target/release")
        );
    }

    #[test]
    fn a_folder_without_the_tools_names_them_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let message = check(dir.path()).unwrap_err().to_string();
        assert!(message.contains("archive-dump, archive-web"), "{message}");
        assert!(message.contains("cargo build --workspace"), "{message}");
    }
}
