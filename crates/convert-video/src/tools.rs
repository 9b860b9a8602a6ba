//! Finding ffmpeg and ffprobe and checking that they are new enough.

use std::path::Path;
use std::process::{Command, Stdio};

use opsline::Code;

/// The oldest release with everything the tool uses (`-abort_on empty_output_stream`,
/// `-progress` with `out_time_us`, `-count_packets`).
pub const MINIMUM: (u32, u32) = (4, 4);

const INSTALL: &str = "install ffmpeg 4.4 or newer (Debian/Ubuntu: apt-get install ffmpeg), \
or name the programs with --ffmpeg and --ffprobe";

/// Checks both programs at once: each start of Debian's ffmpeg loads a hundred libraries.
pub fn check_both(ffmpeg: &Path, ffprobe: &Path) -> anyhow::Result<()> {
    std::thread::scope(|scope| {
        let probe = scope.spawn(|| check(ffprobe));
        check(ffmpeg)?;
        probe.join().expect("the version check does not panic")
    })
}

/// Checks that `program` runs and reports at least [`MINIMUM`]; exit 69 otherwise.
pub fn check(program: &Path) -> anyhow::Result<()> {
    let name = program.display();
    let output = Command::new(program)
        .args(["-hide_banner", "-version"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| {
            opsline::exit::err(Code::Unavailable, format!("cannot run {name}: {e}; {INSTALL}"))
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    match version(&text) {
        Some(found) if found < MINIMUM => Err(opsline::exit::err(
            Code::Unavailable,
            format!("{name} is version {}.{}, too old; {INSTALL}", found.0, found.1),
        )),
        Some(_) => Ok(()),
        None if output.status.success() && is_git_build(&text) => Ok(()),
        None => Err(opsline::exit::err(
            Code::Unavailable,
            format!(
                "{name} does not look like ffmpeg (no version in its -version output); {INSTALL}"
            ),
        )),
    }
}

/// `(major, minor)` from the first line of `-version`, e.g. `ffmpeg version 5.1.9-0+deb12u1`.
fn version(text: &str) -> Option<(u32, u32)> {
    let first = text.lines().next()?;
    let rest = first.split_once(" version ")?.1;
    let rest = rest.strip_prefix('n').unwrap_or(rest);
    let mut numbers = rest.split(|c: char| !c.is_ascii_digit());
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// Builds from git say `version N-112345-gabcdef`: newer than any release they branched from.
fn is_git_build(text: &str) -> bool {
    text.lines().next().is_some_and(|l| l.contains(" version N-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_first_line() {
        assert_eq!(version("ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026"), Some((5, 1)));
        assert_eq!(version("ffprobe version n6.0 Copyright"), Some((6, 0)));
        assert_eq!(version("ffmpeg version 3.4.8-0ubuntu0.2"), Some((3, 4)));
        assert_eq!(version("ffmpeg version 7 Copyright"), Some((7, 0)));
        assert_eq!(version("ffmpeg version N-112345-gabcdef"), None);
        assert!(is_git_build("ffmpeg version N-112345-gabcdef Copyright"));
    }
}
