//! Retention for the nightly backup: which files of the target folder are older than
//! `--keep-days`, judged by the date in their name or by mtime. A file that cannot be dated is
//! never a candidate.

use std::collections::HashSet;

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime};
use globset::{Glob, GlobMatcher};
use opsline::{Code, exit::err};
use regex::Regex;

/// How age is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PruneBy {
    /// the date in the file name (--date-format)
    #[default]
    Name,
    /// the file's modification time on the server
    Mtime,
}

/// Finds a date written with a strftime format inside a file name.
#[derive(Debug, Clone)]
pub struct DateFinder {
    format: String,
    pattern: Regex,
    has_time: bool,
}

impl DateFinder {
    /// Accepts formats made of %Y %y %m %d %j %H %M %S, %% and literal text.
    pub fn new(format: &str) -> anyhow::Result<Self> {
        let mut pattern = String::new();
        let mut has_date = false;
        let mut has_time = false;
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                pattern.push_str(&regex::escape(&c.to_string()));
                continue;
            }
            let (piece, is_time) = match chars.next() {
                Some('Y') => (r"\d{4}", false),
                Some('y' | 'm' | 'd') => (r"\d{2}", false),
                Some('j') => (r"\d{3}", false),
                Some('H' | 'M' | 'S') => (r"\d{2}", true),
                Some('%') => ("%", false),
                other => {
                    return Err(err(
                        Code::Usage,
                        format!(
                            "--date-format {format:?}: %{} is not supported (use %Y %y %m %d %j %H %M %S)",
                            other.map(String::from).unwrap_or_default()
                        ),
                    ));
                }
            };
            has_date |= piece != "%" && !is_time;
            has_time |= is_time;
            pattern.push_str(piece);
        }
        if !has_date {
            return Err(err(Code::Usage, format!("--date-format {format:?} has no date in it")));
        }
        // Digits may not touch the date, so 120250101 is not read as 2025-01-01.
        let pattern = Regex::new(&format!(r"(?:^|\D)({pattern})(?:\D|$)"))
            .map_err(|e| err(Code::Usage, format!("--date-format {format:?}: {e}")))?;
        Ok(DateFinder { format: format.to_owned(), pattern, has_time })
    }

    /// The first valid date in `name`.
    pub fn find(&self, name: &str) -> Option<NaiveDate> {
        let mut from = 0;
        while let Some(caps) = self.pattern.captures_at(name, from) {
            let found = caps.get(1)?;
            if let Some(date) = self.parse(found.as_str()) {
                return Some(date);
            }
            from = found.start() + 1;
        }
        None
    }

    fn parse(&self, text: &str) -> Option<NaiveDate> {
        if self.has_time {
            NaiveDateTime::parse_from_str(text, &self.format).ok().map(|t| t.date())
        } else {
            NaiveDate::parse_from_str(text, &self.format).ok()
        }
    }
}

/// The retention rules.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Keep this many days.
    pub keep_days: u32,
    /// Only names matching this glob; `None`: names that carry a date.
    pub glob: Option<GlobMatcher>,
    /// Dates in names.
    pub dates: DateFinder,
    /// How age is judged.
    pub by: PruneBy,
}

impl Rules {
    /// Builds the rules from the options.
    pub fn new(
        keep_days: u32,
        glob: Option<&str>,
        date_format: &str,
        by: PruneBy,
    ) -> anyhow::Result<Self> {
        let glob = glob
            .map(|g| {
                Glob::new(g)
                    .map(|g| g.compile_matcher())
                    .map_err(|e| err(Code::Usage, format!("--prune-glob {g:?}: {e}")))
            })
            .transpose()?;
        Ok(Rules { keep_days, glob, dates: DateFinder::new(date_format)?, by })
    }
}

/// A remote file as listed.
#[derive(Debug, Clone)]
pub struct Listed {
    /// File name.
    pub name: String,
    /// Size.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: Option<u64>,
}

/// Why a file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Age {
    /// Its name carries this date.
    Named(NaiveDate),
    /// Its mtime is this old.
    Modified(DateTime<Local>),
}

/// The files to delete, oldest rules first; `protect` are names this run just shipped.
pub fn select(
    files: &[Listed],
    rules: &Rules,
    now: DateTime<Local>,
    protect: &HashSet<String>,
) -> Vec<(Listed, Age)> {
    let cutoff_date = now.date_naive() - chrono::Days::new(u64::from(rules.keep_days));
    let cutoff_time = now - chrono::Duration::days(i64::from(rules.keep_days));
    let mut chosen = Vec::new();
    for file in files {
        // Hidden names are temporary uploads (ours or other clients') and never backups.
        if file.name.starts_with('.') || protect.contains(&file.name) {
            continue;
        }
        let date = rules.dates.find(&file.name);
        let eligible = match &rules.glob {
            Some(glob) => glob.is_match(&file.name),
            None => date.is_some(),
        };
        if !eligible {
            continue;
        }
        let age = match rules.by {
            PruneBy::Name => date.filter(|d| *d < cutoff_date).map(Age::Named),
            PruneBy::Mtime => file
                .mtime
                .and_then(|t| DateTime::from_timestamp(i64::try_from(t).ok()?, 0))
                .map(|t| t.with_timezone(&Local))
                .filter(|t| *t < cutoff_time)
                .map(Age::Modified),
        };
        if let Some(age) = age {
            chosen.push((file.clone(), age));
        }
    }
    chosen.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn listed(name: &str, mtime: u64) -> Listed {
        Listed { name: name.to_owned(), size: 1, mtime: Some(mtime) }
    }

    #[test]
    fn dates_are_found_inside_names() {
        let f = DateFinder::new("%Y%m%d").unwrap();
        assert_eq!(f.find("TSE-INFORX-20250131.zip"), NaiveDate::from_ymd_opt(2025, 1, 31));
        assert_eq!(f.find("x-99999999-20240229.tar"), NaiveDate::from_ymd_opt(2024, 2, 29));
        assert_eq!(f.find("build-120250131.zip"), None);
        assert_eq!(f.find("notes.txt"), None);
        let f = DateFinder::new("%Y-%m-%d_%H%M").unwrap();
        assert_eq!(f.find("db_2025-03-04_2359.sql"), NaiveDate::from_ymd_opt(2025, 3, 4));
        assert!(DateFinder::new("%B").is_err());
        assert!(DateFinder::new("%H%M").is_err());
    }

    #[test]
    fn old_dated_files_go_undatable_stay() {
        let now = Local.with_ymd_and_hms(2025, 6, 30, 12, 0, 0).unwrap();
        let rules = Rules::new(30, None, "%Y%m%d", PruneBy::Name).unwrap();
        let files = [
            listed("dump-20250501.zip", 0),
            listed("dump-20250531.zip", 0),
            listed("dump-20250530.zip", 0),
            listed("README", 0),
            listed(".dump-20250101.zip.ship-sftp.part", 0),
            listed("dump-20250401.zip", 0),
        ];
        let protect = HashSet::from(["dump-20250401.zip".to_owned()]);
        let names: Vec<String> =
            select(&files, &rules, now, &protect).into_iter().map(|(f, _)| f.name).collect();
        assert_eq!(names, ["dump-20250501.zip", "dump-20250530.zip"]);
    }

    #[test]
    fn mtime_rules_with_a_glob() {
        let now = Local.with_ymd_and_hms(2025, 6, 30, 12, 0, 0).unwrap();
        let old = u64::try_from((now - chrono::Duration::days(40)).timestamp()).unwrap();
        let new = u64::try_from((now - chrono::Duration::days(2)).timestamp()).unwrap();
        let rules = Rules::new(30, Some("*.zip"), "%Y%m%d", PruneBy::Mtime).unwrap();
        let files = [listed("a.zip", old), listed("b.zip", new), listed("c.txt", old)];
        let chosen = select(&files, &rules, now, &HashSet::new());
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].0.name, "a.zip");
        assert!(matches!(chosen[0].1, Age::Modified(_)));
    }
}
