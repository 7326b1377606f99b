//! A one-line progress display on stderr (`\r`-rewritten), only when stderr is a terminal, so
//! scripts and logs get the final report alone.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::report::fmt_count;

/// How often the line is redrawn.
const EVERY: Duration = Duration::from_millis(200);

pub struct Progress {
    on: bool,
    what: &'static str,
    total_bytes: u64,
    started: Instant,
    last: Option<Instant>,
}

impl Progress {
    /// Shown when stderr is a terminal.
    pub fn for_stderr() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            what: "",
            total_bytes: 0,
            started: Instant::now(),
            last: None,
        }
    }

    pub fn start(&mut self, what: &'static str, total_bytes: u64) {
        self.what = what;
        self.total_bytes = total_bytes;
        self.started = Instant::now();
        self.last = None;
    }

    /// Redraws the line if it is time to.
    pub fn update(&mut self, rows: u64, bytes: u64) {
        if !self.on || self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        self.draw(rows, bytes, "");
    }

    pub fn finish(&mut self, rows: u64) {
        if self.on {
            self.draw(rows, self.total_bytes, "\n");
        }
    }

    fn draw(&self, rows: u64, bytes: u64, end: &str) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let pct = if self.total_bytes == 0 {
            100.0
        } else {
            (bytes as f64 * 100.0 / self.total_bytes as f64).min(100.0)
        };
        let mut err = std::io::stderr().lock();
        // A failed write to the terminal is no reason to stop an import.
        let _ = write!(
            err,
            "\r{}: {} rows  {:5.1} %  {} rows/s   {end}",
            self.what,
            fmt_count(rows),
            pct,
            fmt_count((rows as f64 / secs).round() as u64)
        );
        let _ = err.flush();
    }
}
