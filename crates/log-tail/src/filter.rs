//! `--match` and `--exclude`, applied to the raw bytes of a line before any encoding.
//!
//! With `--match`, a block of lines is searched as a whole (as grep does) and only the lines
//! that hold a match, or the literal text every match needs, are looked at one by one, which
//! keeps selective patterns fast.

use opsline::Code;
use regex::bytes::{Regex, RegexBuilder};

use crate::literals::Literals;

/// The line filter.
#[derive(Debug, Clone)]
pub struct Filter {
    matching: Option<Matcher>,
    exclude: Option<Regex>,
}

#[derive(Debug, Clone)]
struct Matcher {
    /// For one line at a time.
    line: Regex,
    /// For a block of lines: `^` and `$` at line ends, so that a line matches here as it does
    /// on its own.
    block: Regex,
    /// Text every match contains, when the pattern has some: the lines that hold it are the
    /// only ones `line` needs to look at.
    literals: Option<Literals>,
}

impl Filter {
    /// A filter that keeps lines matching any of `matches` (all when empty) and none of
    /// `excludes`.
    pub fn new(matches: &[String], excludes: &[String]) -> anyhow::Result<Self> {
        let matching = match any_of(matches) {
            None => None,
            Some(pattern) => Some(Matcher {
                line: build(&pattern, false)?,
                block: build(&pattern, true)?,
                literals: Literals::required(&pattern),
            }),
        };
        let exclude = any_of(excludes).map(|p| build(&p, false)).transpose()?;
        Ok(Filter { matching, exclude })
    }

    /// True when every line passes.
    pub fn is_empty(&self) -> bool {
        self.matching.is_none() && self.exclude.is_none()
    }

    /// True when some `--match` narrows the lines (then [`Filter::each_match`] is the fast path).
    pub fn has_match(&self) -> bool {
        self.matching.is_some()
    }

    /// Whether one line (without its line ending) passes.
    pub fn keeps(&self, line: &[u8]) -> bool {
        self.matching.as_ref().is_none_or(|m| m.line.is_match(line)) && !self.excluded(line)
    }

    fn excluded(&self, line: &[u8]) -> bool {
        self.exclude.as_ref().is_some_and(|re| re.is_match(line))
    }

    /// Calls `each(start, end)` for every line of `block` (whole lines, `end` excluding the
    /// newline) that passes, in order. Needs a `--match`.
    pub fn each_match(&self, block: &[u8], mut each: impl FnMut(usize, usize)) {
        let Some(matcher) = &self.matching else { return };
        let mut pos = 0;
        while pos < block.len() {
            let Some(probe) = matcher.next_candidate(block, pos) else { break };
            let start = memchr::memrchr(b'\n', &block[pos..probe]).map_or(pos, |at| pos + at + 1);
            let end = memchr::memchr(b'\n', &block[probe..]).map_or(block.len(), |at| probe + at);
            let text = trim_cr(&block[start..end]);
            // The block search may have matched across lines, or found only the literal: check
            // the line.
            if matcher.line.is_match(text) && !self.excluded(text) {
                each(start, end);
            }
            pos = end + 1;
        }
    }
}

impl Matcher {
    /// A position at or after `pos` (a line start) inside the next line that may match.
    fn next_candidate(&self, block: &[u8], pos: usize) -> Option<usize> {
        if let Some(literals) = &self.literals {
            return literals.find_at(block, pos);
        }
        // The earliest match end lies in the first line that can match: the search stops
        // there instead of finding the whole leftmost match.
        let found = self.block.shortest_match_at(block, pos)?;
        Some(if found > pos { found - 1 } else { pos })
    }
}

/// The line without a trailing carriage return.
pub fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn any_of(patterns: &[String]) -> Option<String> {
    match patterns {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(many.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|")),
    }
}

fn build(pattern: &str, block: bool) -> anyhow::Result<Regex> {
    RegexBuilder::new(pattern)
        .multi_line(block)
        .crlf(block)
        .build()
        .map_err(|e| opsline::exit::err(Code::Usage, format!("bad regular expression: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(filter: &Filter, block: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        filter
            .each_match(block, |s, e| out.push(String::from_utf8_lossy(&block[s..e]).into_owned()));
        out
    }

    #[test]
    fn block_search_finds_the_same_lines_as_line_by_line() {
        let block =
            b"sshd Accepted a\nCRON x\nfoo\r\nsshd Failed CRON\nAccepted sshd\nsshd\nFailed\n";
        let filter =
            Filter::new(&["sshd.*(Accepted|Failed)".into(), "^foo$".into()], &["CRON".into()])
                .unwrap();
        let expected: Vec<String> = block
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty() && filter.keeps(trim_cr(l)))
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        assert_eq!(matches(&filter, block), expected);
        assert_eq!(expected, ["sshd Accepted a", "foo\r"]);
    }

    #[test]
    fn with_or_without_a_literal_the_same_lines_are_found() {
        let block: &[u8] = b"Nov  1 sshd[1]: Failed password\nFailed sshd\nsshd Accepted\r\n\
            x sshd FAILED\nsshd: Failed\nCRON[2]: sshd Failed\nsshd Accepted";
        for pattern in ["sshd.*(Accepted|Failed)", "(?i)sshd.*failed", r"sshd\S*:? (A|F)", "d: F"] {
            let filter = Filter::new(&[pattern.into()], &["CRON".into()]).unwrap();
            let expected: Vec<String> = block
                .split(|&b| b == b'\n')
                .filter(|l| filter.keeps(trim_cr(l)))
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            assert!(!expected.is_empty(), "{pattern}");
            assert_eq!(matches(&filter, block), expected, "{pattern}");
        }
    }

    #[test]
    fn a_match_across_lines_is_checked_line_by_line() {
        let filter = Filter::new(&[r"a\s+b".into()], &[]).unwrap();
        assert_eq!(matches(&filter, b"xa\nb\nc a  b\n"), ["c a  b"]);
    }

    #[test]
    fn bad_patterns_are_usage_errors() {
        let e = Filter::new(&["(".into()], &[]).unwrap_err();
        assert_eq!(opsline::exit::code_of(&e), Code::Usage);
    }
}
