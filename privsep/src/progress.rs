//! The progress bar a helper draws on the caller's terminal while a dump or
//! a restore runs: bytes done, rate, time left.
//!
//! Owns: when a bar is drawn and how it looks. Only when the helper's
//! stderr (the caller's) is a terminal, and only once the work has lasted
//! more than [`SHOW_AFTER`]: a short dump, or one whose stderr is a file or
//! a pipe, prints nothing more than before. The bar is cleared (a
//! carriage return and an erase of the line) when [`Bar`] is dropped or
//! [`Bar::clear`]ed, before the helper prints its result or its one error
//! line; it never writes to stdout, so `--json` output is untouched.
//! Trusts: the byte counts the engine reports (a count past the expected
//! total only makes the total grow).
//!
//! No thread of its own: the bar is redrawn (at most 20 times a second) by
//! the thread that reports progress.
//!
//! The helpers clear their environment at start-up, so `TERM` is unset and
//! indicatif's own stderr target would stay hidden; the bar is drawn on
//! `console::Term::buffered_stderr()` instead, with the ANSI sequences
//! every terminal emulator in use understands (carriage return, erase
//! line, cursor up).

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Work shorter than this draws nothing.
pub const SHOW_AFTER: Duration = Duration::from_secs(1);

/// The bar's look: `dump [=====>    ] 512.00 MiB/1.00 GiB 420.17 MiB/s eta 1s`.
const TEMPLATE: &str =
    "{prefix} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}";

struct Shared {
    bar: ProgressBar,
    start: Instant,
    shown: AtomicBool,
}

impl Shared {
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
        if let Some(len) = self.bar.length() {
            let pos = self.bar.position();
            if pos > len {
                self.bar.set_length(pos);
            }
        }
        if !self.shown.load(Ordering::Relaxed)
            && self.start.elapsed() >= SHOW_AFTER
            && !self.shown.swap(true, Ordering::Relaxed)
        {
            self.bar
                .set_draw_target(ProgressDrawTarget::term_like_with_hz(
                    Box::new(console::Term::buffered_stderr()),
                    20,
                ));
        }
    }
}

/// A progress bar for one dump or restore; inert when stderr is not a
/// terminal.
pub struct Bar {
    shared: Option<Arc<Shared>>,
}

impl Bar {
    /// A bar named `label` expecting `total` bytes, started now. Drawn only
    /// if stderr is a terminal and once [`SHOW_AFTER`] has passed.
    pub fn new(label: &str, total: u64) -> Bar {
        Bar::with_terminal(label, total, std::io::stderr().is_terminal())
    }

    fn with_terminal(label: &str, total: u64, terminal: bool) -> Bar {
        if !terminal {
            return Bar { shared: None };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        Bar {
            shared: Some(Arc::new(Shared {
                bar,
                start: Instant::now(),
                shown: AtomicBool::new(false),
            })),
        }
    }

    /// Whether the bar can be drawn at all (stderr is a terminal).
    pub fn active(&self) -> bool {
        self.shared.is_some()
    }

    /// The expected total, once it is known better.
    pub fn set_total(&self, total: u64) {
        if let Some(s) = &self.shared {
            s.bar.set_length(total.max(s.bar.position()));
        }
    }

    /// The function the engine calls with the bytes it has done (the shape
    /// of `ckpt_core::progress::Observer`); `None` when nothing is drawn.
    pub fn observer(&self) -> Option<Arc<dyn Fn(u64) + Send + Sync>> {
        let s = Arc::clone(self.shared.as_ref()?);
        Some(Arc::new(move |n| s.advance(n)))
    }

    /// Erases the bar from the terminal (if it was drawn) and draws no more.
    pub fn clear(&self) {
        if let Some(s) = &self.shared {
            s.bar.finish_and_clear();
            s.bar.set_draw_target(ProgressDrawTarget::hidden());
            s.shown.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inert_without_a_terminal() {
        let bar = Bar::with_terminal("dump", 100, false);
        assert!(!bar.active());
        assert!(bar.observer().is_none());
        bar.set_total(5);
        bar.clear();
    }

    #[test]
    fn total_grows_with_the_work() {
        let bar = Bar::with_terminal("dump", 100, true);
        let observe = bar.observer().unwrap_or_else(|| unreachable!());
        observe(60);
        observe(60);
        let s = bar.shared.as_ref().unwrap_or_else(|| unreachable!());
        assert_eq!(s.bar.position(), 120);
        assert_eq!(s.bar.length(), Some(120));
        bar.set_total(50);
        assert_eq!(s.bar.length(), Some(120));
    }
}
