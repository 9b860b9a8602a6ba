//! Exit statuses shared by every tool (sysexits-style, so cron and systemd can tell a retry
//! from a configuration mistake), and the error type that carries one.

use std::fmt;
use std::io;

/// A process exit status with a meaning common to all opsline tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Code {
    /// Every record was handled.
    Ok,
    /// Some records failed; they went on with an `error` field and the stream continued.
    SomeFailed,
    /// A usage mistake or a fatal error.
    Usage,
    /// Input data was malformed (a corrupt state file, an unparseable input).
    DataErr,
    /// An input file or folder is missing or unreadable.
    NoInput,
    /// A required service or program is unavailable.
    Unavailable,
    /// An I/O error.
    IoErr,
    /// A temporary failure: worth a retry from cron (includes "another run holds the lock").
    TempFail,
    /// Permission refused, e.g. an SSH host key that changed.
    NoPerm,
    /// Bad configuration.
    Config,
}

impl Code {
    /// The numeric status passed to `exit(3)`.
    pub fn as_i32(self) -> i32 {
        match self {
            Code::Ok => 0,
            Code::SomeFailed => 1,
            Code::Usage => 2,
            Code::DataErr => 65,
            Code::NoInput => 66,
            Code::Unavailable => 69,
            Code::IoErr => 74,
            Code::TempFail => 75,
            Code::NoPerm => 77,
            Code::Config => 78,
        }
    }

    /// Every code with a one-line meaning, for man pages and `--help`.
    pub const TABLE: [(Code, &'static str); 10] = [
        (Code::Ok, "every record was handled"),
        (Code::SomeFailed, "some records failed; they were passed on with an \"error\" field"),
        (Code::Usage, "usage error or fatal error"),
        (Code::DataErr, "bad input data (for example a corrupt state file)"),
        (Code::NoInput, "an input file or folder is missing or unreadable"),
        (Code::Unavailable, "a required service or program is unavailable"),
        (Code::IoErr, "I/O error"),
        (Code::TempFail, "temporary failure, worth a retry (also: another run holds the lock)"),
        (Code::NoPerm, "permission refused (for example a changed SSH host key)"),
        (Code::Config, "bad configuration"),
    ];

    /// The worse of two outcomes: a fatal code beats a partial failure, which beats success.
    pub fn worst(self, other: Code) -> Code {
        fn rank(c: Code) -> u8 {
            match c {
                Code::Ok => 0,
                Code::SomeFailed => 1,
                _ => 2,
            }
        }
        if rank(other) > rank(self) { other } else { self }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_i32())
    }
}

/// An error that decides the exit status. Put it anywhere in an `anyhow` chain; the outermost
/// one wins.
///
/// It owns its cause rather than being anyhow context, so that [`code_of`] can find it by type
/// anywhere in the chain.
#[derive(Debug)]
pub struct Coded {
    code: Code,
    message: String,
    source: Option<anyhow::Error>,
}

impl Coded {
    /// An error message with the exit status it asks for.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Coded { code, message: message.into(), source: None }
    }

    /// Like [`Coded::new`], explaining `cause`.
    pub fn caused_by(
        code: Code,
        message: impl Into<String>,
        cause: impl Into<anyhow::Error>,
    ) -> Self {
        Coded { code, message: message.into(), source: Some(cause.into()) }
    }

    /// The exit status this error asks for.
    pub fn code(&self) -> Code {
        self.code
    }
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|cause| cause.as_ref() as &(dyn std::error::Error + 'static))
    }
}

/// A new error with an exit status.
pub fn err(code: Code, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded::new(code, message))
}

/// Attaches an exit status (and a message) to an error or to a `Result`.
pub trait WithCode<T> {
    /// Wraps the error with `message` and makes it exit with `code`.
    fn code(self, code: Code, message: impl Into<String>) -> anyhow::Result<T>;
    /// Like [`WithCode::code`], with the message built only on failure.
    fn with_code<M: Into<String>>(
        self,
        code: Code,
        message: impl FnOnce() -> M,
    ) -> anyhow::Result<T>;
}

impl<T, E> WithCode<T> for Result<T, E>
where
    E: Into<anyhow::Error>,
{
    fn code(self, code: Code, message: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::Error::new(Coded::caused_by(code, message, e)))
    }

    fn with_code<M: Into<String>>(
        self,
        code: Code,
        message: impl FnOnce() -> M,
    ) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::Error::new(Coded::caused_by(code, message(), e)))
    }
}

/// The exit status an error asks for: the outermost [`Coded`] in its chain, else one derived
/// from an I/O error in it, else [`Code::Usage`] (a fatal error).
pub fn code_of(error: &anyhow::Error) -> Code {
    if let Some(code) = error.chain().find_map(|e| e.downcast_ref::<Coded>().map(Coded::code)) {
        return code;
    }
    match error.chain().find_map(|e| e.downcast_ref::<io::Error>()) {
        Some(io) => code_of_io(io),
        None => Code::Usage,
    }
}

/// The exit status for an I/O error that nobody classified.
pub fn code_of_io(error: &io::Error) -> Code {
    match error.kind() {
        io::ErrorKind::NotFound => Code::NoInput,
        io::ErrorKind::TimedOut
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::Interrupted => Code::TempFail,
        _ => Code::IoErr,
    }
}

/// True when the error comes from writing to a closed pipe (`tool | head -1`), which is a
/// normal way for a pipeline to end, not a failure.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outermost_code_wins() {
        let inner: anyhow::Result<()> = Err(err(Code::NoInput, "missing"));
        let outer = inner.code(Code::TempFail, "retry later").unwrap_err();
        assert_eq!(code_of(&outer), Code::TempFail);
        assert_eq!(format!("{outer:#}"), "retry later: missing");
    }

    #[test]
    fn io_errors_map_to_sysexits() {
        let e = anyhow::Error::new(io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(code_of(&e), Code::NoInput);
        let e = anyhow::Error::new(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(code_of(&e), Code::IoErr);
        assert_eq!(code_of(&anyhow::anyhow!("plain")), Code::Usage);
    }

    #[test]
    fn broken_pipe_is_found_under_context() {
        let e = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing");
        assert!(is_broken_pipe(&e));
    }

    #[test]
    fn worst_prefers_fatal_over_partial() {
        assert_eq!(Code::Ok.worst(Code::SomeFailed), Code::SomeFailed);
        assert_eq!(Code::SomeFailed.worst(Code::TempFail), Code::TempFail);
        assert_eq!(Code::TempFail.worst(Code::SomeFailed), Code::TempFail);
    }
}
