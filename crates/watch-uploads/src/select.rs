//! Which files are uploads worth reporting: chosen extensions or globs, minus the temporary
//! names that upload clients write before renaming into place.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// The extensions reported when neither `--ext` nor `--glob` is given.
pub const DEFAULT_EXTENSIONS: &[&str] = &["avi", "mov", "mp4", "mpg", "wmv"];

/// Temporary names of common clients: WinSCP, rclone, browsers and wget, lftp and dot files.
pub const DEFAULT_IGNORES: &[&str] = &["*.filepart", "*.partial", "*.part", ".*"];

/// Decides by name whether a file is a reportable upload.
#[derive(Debug, Clone)]
pub struct Selector {
    extensions: Vec<Vec<u8>>,
    name_globs: GlobSet,
    path_globs: GlobSet,
    ignores: GlobSet,
    plain_ignores: Option<Vec<Plain>>,
}

/// An ignore glob that is a literal with at most one `*` at either end (all of the default
/// ones): on an ASCII name, a case-insensitive comparison gives globset's answer without
/// running its regex, whose code is cold on a watcher woken once per upload.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plain {
    /// `*LITERAL`
    Suffix(Vec<u8>),
    /// `LITERAL*`
    Prefix(Vec<u8>),
    /// `LITERAL`
    Exact(Vec<u8>),
}

impl Plain {
    /// The plain form of `pattern`, if it has one.
    fn of(pattern: &str) -> Option<Plain> {
        let (plain, literal): (fn(Vec<u8>) -> Plain, &str) =
            match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
                (Some(rest), _) => (Plain::Suffix, rest),
                (None, Some(rest)) => (Plain::Prefix, rest),
                (None, None) => (Plain::Exact, pattern),
            };
        let special = |c: char| "*?[]{}\\/".contains(c) || !c.is_ascii();
        (!literal.contains(special)).then(|| plain(literal.as_bytes().to_ascii_lowercase()))
    }

    /// Whether an ASCII `name` matches, ignoring case.
    fn matches(&self, name: &[u8]) -> bool {
        let lower = |a: &[u8], b: &[u8]| a.eq_ignore_ascii_case(b);
        match self {
            Plain::Suffix(end) => {
                name.len() >= end.len() && lower(&name[name.len() - end.len()..], end)
            }
            Plain::Prefix(start) => name.len() >= start.len() && lower(&name[..start.len()], start),
            Plain::Exact(whole) => lower(name, whole),
        }
    }
}

impl Selector {
    /// A selector for `extensions` (case-insensitive, without dots) or `globs`, skipping
    /// `ignores`. Globs without a `/` match the file name, others the path under the root.
    pub fn new(
        extensions: &[String],
        globs: &[String],
        ignores: &[String],
    ) -> Result<Self, String> {
        let extensions = extensions
            .iter()
            .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase().into_bytes())
            .filter(|e| !e.is_empty())
            .collect();
        let (path_patterns, name_patterns): (Vec<&String>, Vec<&String>) =
            globs.iter().partition(|g| g.contains('/'));
        Ok(Selector {
            extensions,
            name_globs: glob_set(name_patterns)?,
            path_globs: glob_set(path_patterns)?,
            ignores: glob_set(ignores.iter())?,
            plain_ignores: ignores.iter().map(|pattern| Plain::of(pattern)).collect(),
        })
    }

    /// True when the file at `rel` (its path under the watched root) is a reportable upload.
    pub fn wants(&self, rel: &Path) -> bool {
        let Some(name) = rel.file_name() else { return false };
        if self.is_ignored(name) {
            return false;
        }
        self.has_extension(name) || self.name_globs.is_match(name) || self.path_globs.is_match(rel)
    }

    /// True for names that clients use while a transfer is still running.
    pub fn is_ignored(&self, name: &OsStr) -> bool {
        let bytes = name.as_bytes();
        match &self.plain_ignores {
            // Only non-ASCII letters fold to ASCII ones (K, ſ): on ASCII names and literals,
            // an ASCII case-insensitive comparison is exact.
            Some(plain) if bytes.is_ascii() => plain.iter().any(|p| p.matches(bytes)),
            _ => self.ignores.is_match(name),
        }
    }

    fn has_extension(&self, name: &OsStr) -> bool {
        let Some(ext) = Path::new(name).extension() else { return false };
        let ext = ext.as_bytes();
        self.extensions.iter().any(|wanted| wanted.eq_ignore_ascii_case(ext))
    }
}

fn glob_set<'a>(patterns: impl IntoIterator<Item = &'a String>) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(glob(pattern)?);
    }
    builder.build().map_err(|e| e.to_string())
}

fn glob(pattern: &str) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .case_insensitive(true)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("bad glob \"{pattern}\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Selector {
        let ext: Vec<String> = DEFAULT_EXTENSIONS.iter().map(|s| (*s).to_owned()).collect();
        let ignores: Vec<String> = DEFAULT_IGNORES.iter().map(|s| (*s).to_owned()).collect();
        Selector::new(&ext, &[], &ignores).unwrap()
    }

    #[test]
    fn extensions_are_case_insensitive_and_temp_names_ignored() {
        let s = defaults();
        for yes in ["a.mp4", "x/B.MOV", "c d.Avi", "-rf.wmv", "q\".mpg"] {
            assert!(s.wants(Path::new(yes)), "{yes}");
        }
        for no in
            ["a.mp4.filepart", "a.mp4.abc123.partial", "a.mp4.part", ".in.a.mp4", "a.txt", "mp4"]
        {
            assert!(!s.wants(Path::new(no)), "{no}");
        }
        assert!(!s.wants(Path::new("notes.txt")));
    }

    #[test]
    fn plain_ignores_answer_as_globset_does() {
        let patterns = ["*.filepart", "*.PARTIAL", "*.part", ".*", "~*", "exact.MP4", "*"];
        for pattern in patterns {
            assert!(Plain::of(pattern).is_some(), "{pattern}");
            let plain = Selector::new(&["mp4".into()], &[], &[pattern.into()]).unwrap();
            let mut globs = plain.clone();
            globs.plain_ignores = None;
            for name in [
                "a.mp4",
                "a.mp4.filepart",
                "A.MP4.FilePart",
                "x.partial",
                "x.Partial.mp4",
                ".in.a.mp4",
                "~a.mp4",
                "a~.mp4",
                "exact.mp4",
                "EXACT.mp4",
                "exact.mp4x",
                "",
                ".",
                "part",
                "a.part",
            ] {
                assert_eq!(
                    plain.is_ignored(OsStr::new(name)),
                    globs.is_ignored(OsStr::new(name)),
                    "{pattern} on {name}"
                );
            }
        }
        for complex in ["*.mp[34]", "a*b", "*.part*", "x?", "**/tmp", "caf\u{e9}*", "{a,b}"] {
            assert_eq!(Plain::of(complex), None, "{complex}");
        }
        let mixed = Selector::new(&["mp4".into()], &[], &["*.part".into(), "a*b".into()]).unwrap();
        assert!(mixed.plain_ignores.is_none(), "one complex glob sends every name to globset");
        assert!(mixed.is_ignored(OsStr::new("aXb")) && mixed.is_ignored(OsStr::new("c.PART")));
    }

    #[test]
    fn globs_match_names_or_relative_paths() {
        let s =
            Selector::new(&[], &["*.mkv".into(), "incoming/*.iso".into()], &[".*".into()]).unwrap();
        assert!(s.wants(Path::new("deep/er/film.MKV")));
        assert!(s.wants(Path::new("incoming/disk.iso")));
        assert!(!s.wants(Path::new("other/disk.iso")));
        assert!(!s.wants(Path::new("film.mp4")));
        assert!(Selector::new(&[], &["a[".into()], &[]).is_err());
    }
}
