//! Test support shared by every opsline crate's tests and the workspace's end-to-end tests.
//!
//! Servers here are real programs (OpenSSH `sshd`, Python's `aiosmtpd`, an HTTP(S) server)
//! bound to 127.0.0.1 under a temporary folder; each is stopped, by process id, when its handle
//! is dropped.

pub mod http;
pub mod man;
pub mod net;
pub mod smtp;
pub mod sshd;
pub mod tls;
