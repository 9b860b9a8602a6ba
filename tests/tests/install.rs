//! The installer and the man pages, as a sysadmin meets them: `scripts/install.sh --dry-run`
//! names every tool, page and example, and `man -l` renders every committed page.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn man_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(workspace().join("man"))
        .expect("man/ exists")
        .map(|e| e.expect("entry").path())
        .collect();
    pages.sort();
    pages
}

#[test]
fn every_man_page_renders() {
    let pages = man_pages();
    assert!(pages.len() >= 9, "{pages:?}");
    for page in pages {
        let output = Command::new("man")
            .args(["-l", "-Tutf8"])
            .arg(&page)
            .env("MANWIDTH", "80")
            .output()
            .expect("man runs (apt-get install man-db)");
        let text = without_overstrike(&String::from_utf8_lossy(&output.stdout));
        assert!(
            output.status.success(),
            "{}: {}",
            page.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(text.contains("NAME"), "{}: no NAME section", page.display());
    }
}

/// The text `man` shows, without the backspace overstrikes it uses for bold off a terminal
/// (what `col -b` does).
fn without_overstrike(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn install_dry_run_covers_every_tool_page_and_example() {
    let prefix = tempfile::tempdir().expect("tempdir");
    let output = Command::new("bash")
        .arg(workspace().join("scripts/install.sh"))
        .args(["--dry-run", "--prefix"])
        .arg(prefix.path())
        .output()
        .expect("install.sh runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    for tool in [
        "watch-uploads",
        "convert-video",
        "notify",
        "archive-dump",
        "ship-sftp",
        "log-tail",
        "origin-tokens",
        "archive-web",
    ] {
        assert!(stdout.contains(&format!("release/{tool} ")), "{tool} is installed: {stdout}");
        assert!(stdout.contains(&format!("man/{tool}.1 ")), "{tool}'s page is installed: {stdout}");
    }
    assert!(stdout.contains("man/opsline.7 "), "{stdout}");
    for folder in ["scripts/cron", "scripts/systemd", "scripts/examples"] {
        assert!(stdout.contains(folder), "{folder}: {stdout}");
    }
    assert_eq!(
        std::fs::read_dir(prefix.path()).expect("prefix").count(),
        0,
        "a dry run changes nothing"
    );
}
