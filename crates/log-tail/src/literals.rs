//! The literal text every match of a `--match` pattern must contain, to find candidate lines
//! in a whole block before the full pattern looks at them (as grep does with its "must"
//! strings).
//!
//! The regex crate's own prefilter looks only at how a match can start (`sshd` in
//! `sshd.*(Accepted|Failed)`), which may be the most common text of the log; a literal from
//! anywhere in the pattern (`Accepted` or `Failed`) can be far rarer.

use memchr::memmem;
use regex::bytes::Regex;
use regex_syntax::ParserBuilder;
use regex_syntax::hir::literal::{Extractor, Seq};
use regex_syntax::hir::{Hir, HirKind};

/// More literals than this make a set slower to search than the pattern's own prefilter.
const MAX_LITERALS: usize = 64;

/// Literals shorter than this occur too often to be worth a separate search.
const MIN_LEN: usize = 3;

/// Finds the places where some literal of a set occurs.
#[derive(Debug, Clone)]
pub enum Literals {
    /// One literal.
    One(Box<memmem::Finder<'static>>),
    /// Any of several (the regex crate searches a set of plain literals with SIMD).
    Any(Regex),
}

impl Literals {
    /// The set of literals that every match of `pattern` (a regex::bytes pattern with default
    /// flags) contains, when there is a useful one.
    pub fn required(pattern: &str) -> Option<Literals> {
        let hir = ParserBuilder::new().utf8(false).build().parse(pattern).ok()?;
        let seq = best(&hir)?;
        let literals = seq.literals()?;
        match literals {
            [one] => {
                Some(Literals::One(Box::new(memmem::Finder::new(one.as_bytes()).into_owned())))
            }
            many => {
                let alternatives: Vec<String> = many.iter().map(|l| escape(l.as_bytes())).collect();
                Regex::new(&format!("(?-u){}", alternatives.join("|"))).ok().map(Literals::Any)
            }
        }
    }

    /// Where the first literal at or after `from` starts.
    pub fn find_at(&self, haystack: &[u8], from: usize) -> Option<usize> {
        match self {
            Literals::One(finder) => finder.find(&haystack[from..]).map(|at| from + at),
            Literals::Any(regex) => regex.find_at(haystack, from).map(|m| m.start()),
        }
    }
}

/// The best literal set that every match of `hir` contains: the one of its own prefixes and
/// those of the parts it cannot match without.
fn best(hir: &Hir) -> Option<Seq> {
    let mut candidates: Vec<Seq> = usable(Extractor::new().extract(hir)).into_iter().collect();
    match hir.kind() {
        HirKind::Concat(parts) => candidates.extend(parts.iter().filter_map(best)),
        HirKind::Capture(capture) => candidates.extend(best(&capture.sub)),
        HirKind::Repetition(repetition) if repetition.min > 0 => {
            candidates.extend(best(&repetition.sub));
        }
        HirKind::Alternation(branches) => candidates.extend(union_of(branches)),
        _ => {}
    }
    candidates.into_iter().max_by_key(score)
}

/// Every branch of an alternation contributes its own best set.
fn union_of(branches: &[Hir]) -> Option<Seq> {
    let mut all = Seq::empty();
    for branch in branches {
        all.union(&mut best(branch)?);
    }
    usable(all)
}

/// A set worth searching: finite, small, and without short literals or literals that hold a
/// line end (a match within one line cannot contain those).
fn usable(mut seq: Seq) -> Option<Seq> {
    seq.dedup();
    let literals = seq.literals()?;
    let fits = !literals.is_empty()
        && literals.len() <= MAX_LITERALS
        && literals.iter().all(|l| l.len() >= MIN_LEN && !l.as_bytes().contains(&b'\n'));
    fits.then_some(seq)
}

/// Longer literals are rarer; with equal lengths, fewer literals are found faster.
fn score(seq: &Seq) -> (usize, std::cmp::Reverse<usize>) {
    (seq.min_literal_len().unwrap_or(0), std::cmp::Reverse(seq.len().unwrap_or(usize::MAX)))
}

/// A literal as a pattern that matches exactly its bytes.
fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(pattern: &str, haystack: &[u8]) -> Vec<usize> {
        let Some(literals) = Literals::required(pattern) else { return Vec::new() };
        let mut at = 0;
        let mut out = Vec::new();
        while let Some(start) = literals.find_at(haystack, at) {
            out.push(start);
            at = start + 1;
        }
        out
    }

    #[test]
    fn an_inner_alternation_beats_a_shorter_prefix() {
        let Some(Literals::Any(regex)) = Literals::required("sshd.*(Accepted|Failed)") else {
            panic!("no literal set");
        };
        assert!(regex.is_match(b"Failed") && regex.is_match(b"Accepted"));
        assert!(!regex.is_match(b"sshd"));
        assert_eq!(found("sshd.*(Accepted|Failed)", b"sshd x Failed, Accepted"), [7, 15]);
    }

    #[test]
    fn a_plain_literal_is_searched_as_such() {
        assert!(matches!(Literals::required("CRON"), Some(Literals::One(_))));
        assert_eq!(found("Connection closed", b"a Connection closed"), [2]);
    }

    #[test]
    fn each_branch_of_an_alternation_contributes() {
        assert_eq!(found("(?:a+Accepted)|(?:Failed\\d)", b"xxFailed Accepted"), [2, 9]);
    }

    #[test]
    fn case_insensitive_literals_cover_every_case() {
        assert_eq!(found("(?i)failed", b"FAILED failed FaIlEd"), [0, 7, 14]);
    }

    #[test]
    fn patterns_without_a_useful_literal_get_none() {
        for pattern in [r"\d+", "a|bc", ".*", "(?:abc)?x", "ab\ncd", "[a-z]{3}", "("] {
            assert!(Literals::required(pattern).is_none(), "{pattern}");
        }
    }

    #[test]
    fn non_utf8_literals_are_searched_as_bytes() {
        assert_eq!(found(r"(?-u)\xffabc", b"x\xffabc"), [1]);
    }
}
