//! Progress bars for the download and the compression, drawn on standard error only when it
//! is a terminal (never in cron mail or logs).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Makes progress bars, or hidden ones when nobody is watching.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    visible: bool,
}

impl Progress {
    /// Bars show when standard error is a terminal and the run is not `--quiet`.
    pub fn new(quiet: bool) -> Self {
        Progress { visible: !quiet && std::io::stderr().is_terminal() }
    }

    /// A bar counting bytes; `total` may be unknown (set later with `set_length`).
    pub fn bytes(&self, label: &'static str, total: Option<u64>) -> ProgressBar {
        if !self.visible {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label);
        bar
    }
}
