//! The one printer all commands use.
//!
//! Stdout carries data only (ids, listings, JSON with `--json`); messages,
//! summaries, warnings and progress (`progress.rs`) go to stderr. Errors are rendered as `error:` followed by
//! `Caused by:` lines (each cause once: one the message already says is left
//! out) and a `hint:`.
//!
//! This module, the progress display (`progress.rs`) and `main.rs` are the
//! only places allowed to print or to exit the process (`clippy::print_stdout`, `print_stderr` and `exit` are
//! denied everywhere else, in `Cargo.toml`).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI's printer is the one place that writes to the terminal"
)]

use std::io::{IsTerminal, Write};

use serde::Serialize;

#[derive(Debug, Clone)]
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
        eprintln!("{}", render_warning(msg.as_ref(), self.tty));
    }

    /// An indented line under a warning (one skipped file of a list), shown
    /// even with `--quiet`, as the warning is.
    pub fn warn_item(&self, line: impl AsRef<str>) {
        eprintln!("  {}", line.as_ref());
    }

    /// A line on stderr that is neither a message nor a warning: the JSON of
    /// `--stats`, shown even with `--quiet`.
    pub fn diagnostic(&self, line: impl AsRef<str>) {
        eprintln!("{}", line.as_ref());
    }

    /// Renders `e` on stderr (`error:`, causes, `hint:`).
    pub fn error(&self, e: &crate::Error) {
        eprint!("{}", render_error(e, self.tty));
    }
}

/// The library's warnings, shown as the printer's own `warning:` lines
/// (never as log records with a timestamp).
impl crate::error::Warnings for Printer {
    fn warn(&self, message: String) {
        Printer::warn(self, message);
    }
}

/// `warning: MESSAGE`, the word in yellow on a terminal.
pub fn render_warning(msg: &str, tty: bool) -> String {
    if tty {
        format!("\x1b[33mwarning\x1b[0m: {msg}")
    } else {
        format!("warning: {msg}")
    }
}

/// Ends the process with `EXIT_INTERRUPTED` (130) at SIGINT, as restic does,
/// saying so on stderr. The handler only writes and calls `_exit`, both
/// async-signal-safe. A lock the command held is left behind; it names this
/// host and a process that is gone, so the next command counts it as stale.
pub fn exit_on_interrupt() {
    extern "C" fn on_sigint(_: libc::c_int) {
        const MSG: &[u8] = b"\nerror: interrupted\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is static.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(super::EXIT_INTERRUPTED);
        }
    }
    // SAFETY: installs a handler that only calls async-signal-safe functions.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t);
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

/// Renders an error chain: `error: …`, `Caused by: …`, `hint: …`, in
/// colour on a terminal (`tty`). A cause whose text the message (or an
/// earlier cause) already holds is not repeated: `Error::Io` says
/// `/x: No such file or directory` and its source says the second half
/// again.
pub fn render_error(e: &crate::Error, tty: bool) -> String {
    let (red, bold, reset) = if tty { ("\x1b[31m", "\x1b[1m", "\x1b[0m") } else { ("", "", "") };
    let top = e.to_string();
    let mut s = format!("{red}{bold}error{reset}: {top}\n");
    let mut said = top;
    let mut causes = Vec::new();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let text = c.to_string();
        if !text.is_empty() && !said.contains(&text) {
            said.push('\n');
            said.push_str(&text);
            causes.push(text);
        }
        src = c.source();
    }
    if !causes.is_empty() {
        s.push_str("Caused by:\n");
        for c in causes {
            s.push_str(&format!("    {c}\n"));
        }
    }
    if let Some(h) = e.hint() {
        s.push_str(&format!("{bold}hint{reset}: {h}\n"));
    }
    s
}

pub use crate::text::human_bytes;

/// Snapshots of the error renderer: exact text for representative errors.
#[cfg(test)]
mod tests {
    use super::{render_error, render_warning};
    use crate::error::{BackendError, BackendErrorKind, Error, CODE_ACCESS_DENIED, CODE_UNREACHABLE};

    #[test]
    fn an_io_error_says_its_cause_once() {
        let e = Error::io("/x", std::io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(render_error(&e, false), "error: /x: No such file or directory (os error 2)\n");
    }

    #[test]
    fn a_wrong_password_has_its_hint() {
        let e = Error::WrongPassword { location: "/srv/repo".into(), slots: 2 };
        assert_eq!(
            render_error(&e, false),
            "error: wrong password: none of the 2 key slot(s) of the repository at /srv/repo opens with it\n\
             hint: check CAIRN_PASSWORD, --password-file or CAIRN_PASSWORD_COMMAND; `cairn key list` shows the \
             slots once you are in\n"
        );
    }

    #[test]
    fn a_cause_the_message_does_not_say_is_shown_under_caused_by() {
        let mut e =
            BackendError::new(BackendErrorKind::Permanent, "download", "s3://b/r/config", "HTTP 403 (AccessDenied)")
                .with_code(CODE_ACCESS_DENIED);
        e.source = Some(Box::new(std::io::Error::other("the bucket policy denies s3:GetObject")));
        assert_eq!(
            render_error(&Error::Backend(e), false),
            "error: download `s3://b/r/config` failed: HTTP 403 (AccessDenied)\n\
             Caused by:\n    the bucket policy denies s3:GetObject\n\
             hint: the credential in use may not do this: check its policy (docs/STORAGE.md lists the permissions \
             of each role), the AWS profile (--s3-profile) and the file permissions\n"
        );
    }

    #[test]
    fn an_unreachable_endpoint_names_it_and_says_what_to_check() {
        let e = BackendError::new(
            BackendErrorKind::Transient,
            "download",
            "s3://b/r/config",
            "cannot reach the S3 endpoint http://127.0.0.1:9: connection failed: io error: connection refused \
             (gave up after 8 attempts)",
        )
        .with_code(CODE_UNREACHABLE);
        assert_eq!(
            render_error(&Error::Backend(e), false),
            "error: download `s3://b/r/config` failed: cannot reach the S3 endpoint http://127.0.0.1:9: connection \
             failed: io error: connection refused (gave up after 8 attempts)\n\
             hint: check the endpoint (--s3-endpoint, CAIRN_S3_ENDPOINT or AWS_ENDPOINT_URL; without one, AWS in \
             the region of AWS_REGION or the profile), that the storage server runs, and that this host reaches \
             it (firewall, proxy, DNS)\n"
        );
    }

    #[test]
    fn a_lock_that_outlived_the_retry_says_how_long_was_waited() {
        let e = Error::Locked {
            holder: "backup of root@db1 (pid 4242, since 2026-11-24 23:00:59 UTC)".into(),
            remedy: "still locked after waiting 30 min (--retry-lock); wait for process 4242 on db1 to finish".into(),
        };
        assert_eq!(
            render_error(&e, false),
            "error: the repository is locked by backup of root@db1 (pid 4242, since 2026-11-24 23:00:59 UTC)\n\
             hint: still locked after waiting 30 min (--retry-lock); wait for process 4242 on db1 to finish\n"
        );
    }

    #[test]
    fn a_flag_value_names_the_flag_and_what_it_takes() {
        let e = Error::BadFlag {
            flag: "--max-unused".into(),
            value: "7 percent".into(),
            expected: "expected a percentage such as 5%".into(),
        };
        assert_eq!(
            render_error(&e, false),
            "error: --max-unused `7 percent`: expected a percentage such as 5%\n\
             hint: `cairn help COMMAND` describes --max-unused and the values it takes; docs/CLI.md too\n"
        );
    }

    #[test]
    fn on_a_terminal_the_words_are_coloured() {
        let e = Error::NoRepository("/srv/repo".into());
        assert_eq!(
            render_error(&e, true),
            "\x1b[31m\x1b[1merror\x1b[0m: there is no cairn repository at /srv/repo\n\
             \x1b[1mhint\x1b[0m: create one with `cairn init`\n"
        );
        assert_eq!(render_warning("w", true), "\x1b[33mwarning\x1b[0m: w");
        assert_eq!(render_warning("w", false), "warning: w");
    }
}
