//! The shared core of the opsline tools.
//!
//! Every tool reads and writes the same JSON-lines records ([`record`], [`input`], [`output`]),
//! starts through the same wrapper ([`cli::main`]) and so has the same options, logging, signal
//! handling and exit statuses ([`exit`]), and keeps its position in the same kind of atomic,
//! locked state file ([`state`]). The rules are written down in `man/opsline.7`.

pub mod cli;
pub mod exit;
pub mod input;
pub mod man;
pub mod output;
pub mod paths;
pub mod record;
pub mod secret;
pub mod signal;
pub mod state;
pub mod time;
pub mod units;

pub use cli::{CommonArgs, Context, Tool};
pub use exit::{Code, WithCode};
pub use input::{InputArgs, RecordReader};
pub use output::{Flush, RecordWriter};
pub use record::{FieldPath, Record};
pub use secret::Secret;
pub use signal::Shutdown;
pub use state::StateFile;
