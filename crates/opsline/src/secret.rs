//! Secrets (passwords, tokens, webhook URLs): read from a file or the environment, never from
//! the command line, and never printed.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::exit::{Code, WithCode};

/// A secret value. Its `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that is already secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for handing to the library that needs it, and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads the secret for the option `--NAME-file`, or else the environment variable
    /// `TOOL_NAME` (e.g. `NOTIFY_SMTP_PASSWORD` for notify's `smtp-password`).
    ///
    /// The file's first line is the secret (a trailing newline is not part of it). A file that
    /// others may read is used but warned about, as ssh does for keys.
    pub fn resolve(tool: &str, name: &str, file: Option<&Path>) -> anyhow::Result<Option<Secret>> {
        if let Some(path) = file {
            return Secret::from_file(path).map(Some);
        }
        let var = env_name(tool, name);
        Ok(std::env::var(&var).ok().filter(|v| !v.is_empty()).map(Secret))
    }

    /// Reads a secret from a file.
    pub fn from_file(path: &Path) -> anyhow::Result<Secret> {
        let text = fs::read_to_string(path)
            .with_code(Code::Config, || format!("cannot read secret file {}", path.display()))?;
        if fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            tracing::warn!(file = %path.display(), "secret file is readable by other users; chmod 600 it");
        }
        let value = text.lines().next().unwrap_or("").trim_end_matches('\r').to_owned();
        if value.is_empty() {
            return Err(crate::exit::err(
                Code::Config,
                format!("secret file {} is empty", path.display()),
            ));
        }
        Ok(Secret(value))
    }
}

/// The environment variable that holds `name` for `tool`: `log-tail` + `api-key` → `LOG_TAIL_API_KEY`.
pub fn env_name(tool: &str, name: &str) -> String {
    format!("{}_{}", tool, name).to_uppercase().replace('-', "_")
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_wins_and_value_is_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, "s3cret\nignored\n").unwrap();
        let secret = Secret::resolve("notify", "pushover-token", Some(&path)).unwrap().unwrap();
        assert_eq!(secret.expose(), "s3cret");
        assert_eq!(format!("{secret} {secret:?}"), "*** Secret(***)");
    }

    #[test]
    fn empty_or_missing_files_are_configuration_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        fs::write(&path, "\n").unwrap();
        let e = Secret::from_file(&path).unwrap_err();
        assert_eq!(crate::exit::code_of(&e), Code::Config);
        let e = Secret::from_file(&dir.path().join("missing")).unwrap_err();
        assert_eq!(crate::exit::code_of(&e), Code::Config);
    }

    #[test]
    fn env_names_follow_the_tool() {
        assert_eq!(env_name("ship-sftp", "password"), "SHIP_SFTP_PASSWORD");
    }
}
