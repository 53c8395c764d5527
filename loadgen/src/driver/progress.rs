//! The live progress bar: elapsed time over the run length, with the latest interval's
//! produce and consume rates and p99s (from [`Stats::live`]). Drawn on stderr, only when
//! it is a terminal and `--no-progress` was not given.

use crate::clock::RunClock;
use crate::stats::Stats;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A running progress bar (or nothing, when disabled).
#[derive(Debug)]
pub struct Progress {
    bar: Option<(ProgressBar, JoinHandle<()>)>,
}

impl Progress {
    /// A bar over `length` (0: a spinner) labelled `phase`, refreshed from `stats`.
    pub fn start(
        enabled: bool,
        phase: &str,
        length: Duration,
        clock: RunClock,
        stats: Arc<Stats>,
    ) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let ms = length.as_millis() as u64;
        let bar = if ms == 0 {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::new(ms)
        };
        bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let template = if ms == 0 {
            "{spinner} {prefix} {elapsed} {msg}"
        } else {
            "{prefix} [{bar:20}] {elapsed}/{duration} {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(phase.to_owned());
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let live = stats.live();
                if ms > 0 {
                    b.set_position((clock.now_ns() / 1_000_000).min(ms));
                } else {
                    b.tick();
                }
                b.set_message(format!(
                    "prod {:>6.0}k/s cons {:>6.0}k/s p99 ack {:.1} ms e2e {:.1} ms",
                    live.produce_msgs_per_s / 1e3,
                    live.consume_msgs_per_s / 1e3,
                    live.produce_p99_us as f64 / 1e3,
                    live.e2e_p99_us as f64 / 1e3,
                ));
            }
        });
        Progress {
            bar: Some((bar, task)),
        }
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some((bar, task)) = self.bar {
            task.abort();
            bar.finish_and_clear();
        }
    }
}
