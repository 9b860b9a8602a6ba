//! Progress bars on standard error, one per running conversion, fed by ffmpeg's `-progress`
//! output; only when standard error is a terminal.

use std::path::Path;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of one run.
#[derive(Debug, Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars on standard error when `enabled`, else nothing at all.
    pub fn new(enabled: bool) -> Self {
        let multi = enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { multi }
    }

    /// Runs `log` (which writes to standard error) with the bars out of its way.
    pub fn suspend<R>(&self, log: impl FnOnce() -> R) -> R {
        match &self.multi {
            Some(multi) => multi.suspend(log),
            None => log(),
        }
    }

    /// A bar for one conversion, removed when dropped.
    pub fn bar(&self) -> Bar {
        Bar { bar: self.multi.as_ref().map(|m| m.add(ProgressBar::hidden())) }
    }
}

/// One conversion's bar (or nothing).
#[derive(Debug)]
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar that shows nothing.
    pub fn hidden() -> Self {
        Bar { bar: None }
    }

    /// Shows the bar for `source`, measured in microseconds of its `duration`.
    pub fn start(&self, source: &Path, duration: Option<f64>) {
        let Some(bar) = &self.bar else { return };
        let name = source.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let style = ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {percent:>3}% {elapsed_precise} ETA {eta}",
        )
        .expect("the template is valid")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(name);
        bar.set_length(duration.map_or(0, |d| (d * 1e6) as u64));
        bar.enable_steady_tick(Duration::from_millis(250));
    }

    /// Moves the bar to `micros` microseconds into the video.
    pub fn advance(&self, micros: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(micros);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
