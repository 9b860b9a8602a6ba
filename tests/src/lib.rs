//! The opsline workflows run end to end, as a site runs them: the tools' real binaries chained
//! in `bash -o pipefail` pipelines, against real servers on 127.0.0.1 (OpenSSH, SMTP, HTTP and
//! HTTPS from `opsline-testkit`), on generated sample data.
//!
//! Each workflow function runs its pipelines and returns what really arrived (mails, remote
//! files and their hashes, HTTP requests, report rows). The demo (`opsline-demo`) prints these
//! summaries; the end-to-end tests assert on them.

pub mod bins;
pub mod lab;
pub mod sample;
pub mod shell;
pub mod summary;
pub mod workflows;

pub use lab::Lab;
