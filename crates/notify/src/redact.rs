//! Keeps secrets out of every text the tool writes: error messages from libraries may quote a
//! URL or a header, so each one is scrubbed before it reaches a log line or a record.

use opsline::Secret;

/// The secret strings in use, each replaced by `***` in any text passed through.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// Secrets shorter than this are not scrubbed: replacing every "a" would garble all text, and
/// such a value protects nothing anyway.
const MIN_SECRET_LEN: usize = 4;

impl Redactor {
    /// Adds a secret (and, for a URL, its path and query, which carry the token).
    pub fn add(&mut self, secret: &Secret) {
        let value = secret.expose();
        self.push(value);
        if let Some((_, rest)) = value.split_once("://")
            && let Some(slash) = rest.find('/')
        {
            self.push(&rest[slash..]);
        }
    }

    fn push(&mut self, value: &str) {
        if value.len() >= MIN_SECRET_LEN && !self.secrets.iter().any(|s| s == value) {
            self.secrets.push(value.to_owned());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "***"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_url_paths_are_scrubbed() {
        let mut r = Redactor::default();
        r.add(&Secret::new("https://chat.example/hooks/abc123xyz"));
        r.add(&Secret::new("tok"));
        r.add(&Secret::new("pw-Secret"));
        let text = "POST https://chat.example/hooks/abc123xyz failed; GET /hooks/abc123xyz; pw-Secret; tok";
        assert_eq!(r.scrub(text), "POST *** failed; GET ***; ***; tok");
    }
}
