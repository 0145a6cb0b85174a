//! The one printer all commands use.
//!
//! Stdout carries data only (ids, listings, JSON with `--json`); messages,
//! summaries, warnings and progress (`progress.rs`) go to stderr. Errors
//! are rendered as `error:` followed by `Caused by:` lines and a `hint:`.

use std::io::{IsTerminal, Write};

use serde::Serialize;

pub struct Printer {
    pub json: bool,
    pub quiet: bool,
    pub tty: bool,
}

impl Printer {
    pub fn new(json: bool, quiet: bool) -> Printer {
        Printer { json, quiet, tty: std::io::stderr().is_terminal() }
    }

    /// A line of data on stdout.
    pub fn data(&self, line: impl AsRef<str>) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line.as_ref());
    }

    /// Raw bytes on stdout (file names that are not UTF-8, file contents).
    pub fn data_bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)
    }

    /// A JSON document on stdout.
    pub fn json<T: Serialize>(&self, v: &T) {
        let s = serde_json::to_string_pretty(v).expect("output serialises");
        self.data(s);
    }

    /// A message on stderr (suppressed by `--quiet`).
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    pub fn warn(&self, msg: impl AsRef<str>) {
        if self.tty {
            eprintln!("\x1b[33mwarning\x1b[0m: {}", msg.as_ref());
        } else {
            eprintln!("warning: {}", msg.as_ref());
        }
    }
}

/// The line `--retry-lock` prints once when it starts to wait.
pub fn waiting_for_lock(w: &crate::repo::lock::Waiting<'_>) -> String {
    format!(
        "waiting for the lock: the repository is locked by {}; trying again for up to {}",
        w.holder,
        crate::text::human_duration(w.patience.as_secs_f64())
    )
}

/// Renders an error chain: `error: …`, `Caused by: …`, `hint: …`.
pub fn render_error(e: &crate::Error) -> String {
    let tty = std::io::stderr().is_terminal();
    let (red, bold, reset) = if tty { ("\x1b[31m", "\x1b[1m", "\x1b[0m") } else { ("", "", "") };
    let mut s = format!("{red}{bold}error{reset}: {e}\n");
    let mut src = std::error::Error::source(e);
    let mut first = true;
    while let Some(c) = src {
        if first {
            s.push_str("Caused by:\n");
            first = false;
        }
        s.push_str(&format!("    {c}\n"));
        src = c.source();
    }
    if let Some(h) = e.hint() {
        s.push_str(&format!("{bold}hint{reset}: {h}\n"));
    }
    s
}

pub use crate::text::human_bytes;
