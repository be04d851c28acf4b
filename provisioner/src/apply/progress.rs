//! Progress of an apply: one line per node on a TTY (indicatif), plain timestamped lines otherwise.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Something that happened during an apply.
#[derive(Debug, Clone, Copy)]
pub enum ProgressEvent<'a> {
    /// A step started on a node.
    StepStarted {
        /// Node name.
        node: &'a str,
        /// Step name.
        step: &'static str,
    },
    /// A node finished all its steps.
    NodeDone {
        /// Node name.
        node: &'a str,
        /// What was done (`created`, `destroyed`...).
        what: &'a str,
    },
    /// A node failed.
    NodeFailed {
        /// Node name.
        node: &'a str,
        /// The error, one line.
        error: &'a str,
    },
    /// A cluster-wide message.
    Message(&'a str),
}

/// Receives progress events from the executor's tasks.
pub trait Progress: Send + Sync {
    /// Reports one event.
    fn event(&self, e: ProgressEvent<'_>);
    /// Called once at the end, to tidy the terminal.
    fn finish(&self) {}
}

/// Discards everything (tests, `--json`).
#[derive(Debug, Default)]
pub struct QuietProgress;

impl Progress for QuietProgress {
    fn event(&self, _e: ProgressEvent<'_>) {}
}

/// Plain lines on stderr, for logs and CI: `[  1.2s] agents-1: install`.
#[derive(Debug)]
pub struct PlainProgress {
    start: Instant,
}

impl Default for PlainProgress {
    fn default() -> Self {
        PlainProgress {
            start: Instant::now(),
        }
    }
}

impl Progress for PlainProgress {
    fn event(&self, e: ProgressEvent<'_>) {
        let t = self.start.elapsed().as_secs_f64();
        match e {
            ProgressEvent::StepStarted { node, step } => eprintln!("[{t:6.1}s] {node}: {step}"),
            ProgressEvent::NodeDone { node, what } => eprintln!("[{t:6.1}s] {node}: done ({what})"),
            ProgressEvent::NodeFailed { node, error } => {
                eprintln!("[{t:6.1}s] {node}: FAILED: {error}")
            }
            ProgressEvent::Message(m) => eprintln!("[{t:6.1}s] {m}"),
        }
    }
}

/// One spinner line per node with its current step and elapsed time.
pub struct TtyProgress {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Default for TtyProgress {
    fn default() -> Self {
        TtyProgress {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl TtyProgress {
    fn bar(&self, node: &str) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(node.to_string())
            .or_insert_with(|| {
                let style =
                    ProgressStyle::with_template("{spinner} {prefix:<16} {msg} ({elapsed})")
                        .expect("invariant: the template is valid");
                let b = self.multi.add(
                    ProgressBar::new_spinner()
                        .with_style(style)
                        .with_prefix(node.to_string()),
                );
                b.enable_steady_tick(Duration::from_millis(120));
                b
            })
            .clone()
    }
}

impl Progress for TtyProgress {
    fn event(&self, e: ProgressEvent<'_>) {
        match e {
            ProgressEvent::StepStarted { node, step } => self.bar(node).set_message(step),
            ProgressEvent::NodeDone { node, what } => {
                self.bar(node).finish_with_message(format!("✓ {what}"))
            }
            ProgressEvent::NodeFailed { node, error } => {
                let first = error.lines().next().unwrap_or_default().to_string();
                self.bar(node).abandon_with_message(format!("✗ {first}"));
            }
            ProgressEvent::Message(m) => {
                let _ = self.multi.println(m);
            }
        }
    }

    fn finish(&self) {
        let bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        for b in bars.values() {
            if !b.is_finished() {
                b.abandon();
            }
        }
    }
}
