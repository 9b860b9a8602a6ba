//! `origin-tokens`: license usage from FlexLM/FlexNet debug logs (OriginLab's `orglab`
//! vendor daemon and any other) — checkout events, sessions with reference counts, connection
//! time per user, host or feature, peaks, denials, who holds licenses now, with the client
//! address guessed from `ss` snapshots and the PC name from the DHCP server's tables.

pub mod cli;
mod commands;
pub mod dates;
pub mod engine;
mod fasthash;
pub mod input;
mod keys;
pub mod net;
pub mod ods;
mod open;
pub mod output;
pub mod parse;
pub mod prepare;
pub mod report;
pub mod snapshot;
pub mod zone;

pub use cli::{Cli, EXAMPLES};
pub use commands::run;

/// The tool's name.
pub const TOOL: &str = "origin-tokens";
