//! The progress of a backup or a copy as it runs, on stderr: files and bytes done
//! and in all, the rate, the time left, the file being read (shortened)
//! and the errors so far.
//!
//! - On a terminal: two lines redrawn in place a few times a second; when
//!   the backup is done, one last line with its totals, which stays.
//! - Otherwise (a log, a pipe): one plain line every `--progress-interval`
//!   (10 s by default), and a last one when the backup ends, so the logs of
//!   long runs show how far they came.
//!
//! The file shown is one a reader is reading now (several are read at
//! once; the newest taken is shown), not the last one the scan found,
//! which can be a thousand files ahead.
//! - A stream (`--stdin`, a command source) has no size known in advance:
//!   its lines show the bytes read and the rate, never a total or a bar.
//!
//! The totals are the summary's: a file counts when the backup has stored
//! it (read, or unchanged since the parent), at the size it was stored
//! with, and a file that could not be read counts as an error and leaves
//! the total. A copy's total is what the summaries of the snapshots it
//! copies hold, and a file counts when its content is copied or its
//! directory is found copied already. What is drawn is a pure function of
//! the counters ([`Snap`]).
#![allow(clippy::print_stderr, reason = "the progress display draws on stderr, beside the printer")]

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backup::Progress;
use crate::text::human_bytes;

/// The default of `--progress-interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The counters of a running backup.
pub struct Meter {
    stream: bool,
    files_found: AtomicU64,
    bytes_found: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    errors: AtomicU64,
    /// Files the scan found (and counted) that could not be read, and their bytes.
    files_skipped: AtomicU64,
    bytes_skipped: AtomicU64,
    current: Mutex<String>,
    started: Instant,
}

/// How a backup ended, for the last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Everything found is stored or counted as an error.
    Done,
    /// The backup failed part of the way.
    Stopped,
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snap {
    pub files_done: u64,
    /// `None` for a stream.
    pub files_total: Option<u64>,
    pub bytes_done: u64,
    /// `None` for a stream.
    pub bytes_total: Option<u64>,
    pub errors: u64,
    pub elapsed: Duration,
    /// `None` while the backup runs.
    pub end: Option<End>,
}

impl Snap {
    /// Bytes per second so far (none in the first tenth of a second).
    pub fn rate(&self) -> Option<f64> {
        let s = self.elapsed.as_secs_f64();
        (s >= 0.1).then(|| self.bytes_done as f64 / s)
    }

    /// The time left at the rate so far; `None` without a total or a
    /// rate, or once the backup has ended.
    pub fn eta(&self) -> Option<Duration> {
        if self.end.is_some() {
            return None;
        }
        let total = self.bytes_total?;
        let rate = self.rate().filter(|r| *r > 0.0)?;
        Some(Duration::from_secs_f64(total.saturating_sub(self.bytes_done) as f64 / rate))
    }
}

impl Meter {
    /// `stream`: the source is one stream of unknown length.
    pub fn new(stream: bool) -> Meter {
        Meter {
            stream,
            files_found: AtomicU64::new(0),
            bytes_found: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            files_skipped: AtomicU64::new(0),
            bytes_skipped: AtomicU64::new(0),
            current: Mutex::new(String::new()),
            started: Instant::now(),
        }
    }

    pub fn snap(&self) -> Snap {
        let done = self.files_done.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed);
        let bytes_done = self.bytes_done.load(Ordering::Relaxed);
        let (files_total, bytes_total) = if self.stream {
            (None, None)
        } else {
            let files = self
                .files_found
                .load(Ordering::Relaxed)
                .saturating_sub(self.files_skipped.load(Ordering::Relaxed))
                .max(done);
            let bytes =
                self.bytes_found.load(Ordering::Relaxed).saturating_sub(self.bytes_skipped.load(Ordering::Relaxed));
            (Some(files), Some(bytes.max(bytes_done)))
        };
        Snap {
            files_done: done,
            files_total,
            bytes_done,
            bytes_total,
            errors,
            elapsed: self.started.elapsed(),
            end: None,
        }
    }

    /// The counters when the backup has ended. When it is done, everything
    /// the scan found is stored or counted as an error, so its totals are
    /// what was stored: the summary's (a file that grew or shrank while it
    /// was read counts at the size it was stored with).
    pub fn last(&self, end: End) -> Snap {
        let mut s = self.snap();
        s.end = Some(end);
        if end == End::Done && s.bytes_total.is_some() {
            s.files_total = Some(s.files_done);
            s.bytes_total = Some(s.bytes_done);
        }
        s
    }

    fn set_current(&self, path: &Path) {
        let mut c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        c.clear();
        c.push_str(&path.to_string_lossy());
    }

    pub fn current(&self) -> String {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Progress for Meter {
    fn scanned(&self, files: u64, bytes: u64) {
        self.files_found.store(files, Ordering::Relaxed);
        self.bytes_found.store(bytes, Ordering::Relaxed);
    }
    fn reading(&self, path: &Path) {
        self.set_current(path);
    }
    fn file_done(&self, _path: &Path, bytes: u64) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }
    fn skipped(&self, path: &Path, found: Option<u64>) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(bytes) = found {
            self.files_skipped.fetch_add(1, Ordering::Relaxed);
            self.bytes_skipped.fetch_add(bytes, Ordering::Relaxed);
        }
        self.set_current(path);
    }
    fn streamed(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl crate::copy::CopyProgress for Meter {
    fn planned(&self, files: u64, bytes: u64) {
        self.files_found.store(files, Ordering::Relaxed);
        self.bytes_found.store(bytes, Ordering::Relaxed);
    }
    fn queued(&self, path: &[u8]) {
        self.set_current(Path::new(std::ffi::OsStr::from_bytes(path)));
    }
    fn file_done(&self, _path: &[u8], bytes: u64) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }
    fn present(&self, _path: &[u8], files: u64, bytes: u64) {
        self.files_done.fetch_add(files, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The time left (`ETA 3s`, `ETA -` while unknown), or how the backup ended.
fn eta_text(s: &Snap) -> String {
    match s.end {
        Some(End::Done) => "done".into(),
        Some(End::Stopped) => "stopped".into(),
        None => format!("ETA {}", s.eta().map(duration).unwrap_or_else(|| "-".into())),
    }
}

fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `path` in at most `max` characters: its start and its end, with `…`
/// between. Control characters show as `?`: a file name is anyone's to
/// choose, and must neither move the terminal's cursor nor forge a line
/// of the log.
pub fn shorten(path: &str, max: usize) -> String {
    let shown: String = path.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    let path = shown.as_str();
    let n = path.chars().count();
    if n <= max {
        return path.to_string();
    }
    if max < 5 {
        return path.chars().skip(n - max).collect();
    }
    let head = (max - 1) / 3;
    let tail = max - 1 - head;
    let start: String = path.chars().take(head).collect();
    let end: String = path.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// The plain line of a log: exact byte counts, so a reader can parse it.
///
/// `progress: 12/40 files, 1.0 MiB/4.0 MiB (1048576/4194304 bytes), 1.0 MiB/s, ETA 3s, 0 errors, /src/a`
/// and for a stream `progress: 3.0 MiB (3145728 bytes) read, 1.0 MiB/s, 0 errors`.
/// The last line says `done` (or `stopped`) where the time left was.
pub fn plain_line(s: &Snap, current: &str) -> String {
    let rate = s.rate().map(|r| format!("{}/s", human_bytes(r as u64))).unwrap_or_else(|| "-".into());
    match (s.files_total, s.bytes_total) {
        (Some(files), Some(bytes)) => {
            let eta = eta_text(s);
            let mut line = format!(
                "progress: {}/{files} files, {}/{} ({}/{bytes} bytes), {rate}, {eta}, {} errors",
                s.files_done,
                human_bytes(s.bytes_done),
                human_bytes(bytes),
                s.bytes_done,
                s.errors
            );
            if !current.is_empty() {
                line.push_str(&format!(", {}", shorten(current, 60)));
            }
            line
        }
        _ => {
            let end = if s.end.is_some() { format!(", {}", eta_text(s)) } else { String::new() };
            format!(
                "progress: {} ({} bytes) read, {rate}{end}, {} errors",
                human_bytes(s.bytes_done),
                s.bytes_done,
                s.errors
            )
        }
    }
}

/// The two lines of a terminal `width` columns wide: a bar with the
/// counts, rate and time left, then the current path.
pub fn terminal_lines(s: &Snap, current: &str, width: usize) -> (String, String) {
    let rate = s.rate().map(|r| format!("{}/s", human_bytes(r as u64))).unwrap_or_default();
    let errors = if s.errors > 0 { format!("  {} errors", s.errors) } else { String::new() };
    let first = match (s.files_total, s.bytes_total) {
        (Some(files), Some(bytes)) => {
            let eta = match (s.end, s.eta()) {
                (None, None) => String::new(),
                _ => format!("  {}", eta_text(s)),
            };
            let share = if bytes == 0 { 1.0 } else { (s.bytes_done as f64 / bytes as f64).min(1.0) };
            let filled = (share * 20.0).round() as usize;
            format!(
                "[{}{}] {}/{files} files  {}/{}  {rate}{eta}{errors}",
                "=".repeat(filled),
                " ".repeat(20 - filled),
                s.files_done,
                human_bytes(s.bytes_done),
                human_bytes(bytes)
            )
        }
        _ => {
            let end = if s.end.is_some() { format!("  {}", eta_text(s)) } else { String::new() };
            format!("{} read  {rate}  {}{end}{errors}", human_bytes(s.bytes_done), duration(s.elapsed))
        }
    };
    let second = format!("  {}", shorten(current, width.saturating_sub(3).max(10)));
    (shorten(&first, width.max(10)), second)
}

/// Draws a [`Meter`] until finished: on a terminal, or as plain lines.
pub struct Display {
    meter: Arc<Meter>,
    stop: Option<crossbeam_channel::Sender<()>>,
    /// Says whether it drew the two lines of a terminal.
    thread: Option<std::thread::JoinHandle<bool>>,
    tty: bool,
    quiet: bool,
}

/// Moves up to the first of the two lines drawn and clears both.
const CLEAR_TWO: &str = "\x1b[2A\r\x1b[2K\n\x1b[2K\x1b[1A\r";

impl Display {
    /// Nothing is drawn when `quiet`. `interval`: between plain lines.
    pub fn start(meter: Arc<Meter>, tty: bool, quiet: bool, interval: Duration) -> Display {
        let mut d = Display { meter: meter.clone(), stop: None, thread: None, tty, quiet };
        if quiet {
            return d;
        }
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let tick = if tty { Duration::from_millis(250) } else { interval };
        d.thread = Some(std::thread::spawn(move || {
            let mut drawn = false;
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = rx.recv_timeout(tick) {
                let s = meter.snap();
                let mut err = std::io::stderr().lock();
                if tty {
                    let (a, b) = terminal_lines(&s, &meter.current(), terminal_width());
                    let up = if drawn { "\x1b[2A" } else { "" };
                    let _ = write!(err, "{up}\r\x1b[2K{a}\n\x1b[2K{b}\n");
                    drawn = true;
                } else {
                    let _ = writeln!(err, "{}", plain_line(&s, &meter.current()));
                }
            }
            drawn
        }));
        d.stop = Some(tx);
        d
    }

    /// Stops drawing and writes the last line, which says `done` when
    /// the backup `completed` (with the summary's totals, see
    /// [`Meter::last`]) and `stopped` when it failed. On a terminal the
    /// last line takes the place of the two redrawn ones and stays; a
    /// failed backup leaves nothing there (its error follows).
    pub fn finish(mut self, completed: bool) {
        let drawn = self.stop_thread();
        if self.quiet {
            return;
        }
        let end = if completed { End::Done } else { End::Stopped };
        let s = self.meter.last(end);
        let mut err = std::io::stderr().lock();
        if !self.tty {
            let _ = writeln!(err, "{}", plain_line(&s, ""));
            return;
        }
        if drawn {
            let _ = write!(err, "{CLEAR_TWO}");
        }
        if completed {
            let (line, _) = terminal_lines(&s, "", terminal_width());
            let _ = writeln!(err, "{line}");
        }
    }

    /// Stops the drawing thread; true when it left two lines on a terminal.
    fn stop_thread(&mut self) -> bool {
        drop(self.stop.take());
        self.thread.take().is_some_and(|t| t.join().unwrap_or(false))
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if self.stop_thread() {
            let _ = write!(std::io::stderr().lock(), "{CLEAR_TWO}");
        }
    }
}

fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct; nothing else is touched.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            return ws.ws_col as usize;
        }
    }
    80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(done: u64, total: Option<u64>, secs: u64) -> Snap {
        Snap {
            files_done: 3,
            files_total: total.map(|_| 10),
            bytes_done: done,
            bytes_total: total,
            errors: 1,
            elapsed: Duration::from_secs(secs),
            end: None,
        }
    }

    #[test]
    fn a_line_says_files_bytes_rate_time_left_errors_and_where() {
        let s = snap(4 << 20, Some(12 << 20), 4);
        assert_eq!(s.rate(), Some(1048576.0));
        assert_eq!(s.eta(), Some(Duration::from_secs(8)));
        assert_eq!(
            plain_line(&s, "/srv/data/file"),
            "progress: 3/10 files, 4.0 MiB/12.0 MiB (4194304/12582912 bytes), 1.0 MiB/s, ETA 8s, 1 errors, /srv/data/file"
        );
        let (a, b) = terminal_lines(&s, "/srv/data/file", 100);
        assert!(
            a.starts_with("[=======             ] 3/10 files  4.0 MiB/12.0 MiB  1.0 MiB/s  ETA 8s  1 errors"),
            "{a}"
        );
        assert_eq!(b, "  /srv/data/file");
    }

    #[test]
    fn a_stream_has_no_total_no_bar_and_no_time_left() {
        let s = snap(3 << 20, None, 3);
        assert_eq!(s.eta(), None);
        assert_eq!(plain_line(&s, ""), "progress: 3.0 MiB (3145728 bytes) read, 1.0 MiB/s, 1 errors");
        let (a, _) = terminal_lines(&s, "", 100);
        assert!(!a.contains('[') && !a.contains('/') || a.contains("MiB/s"), "{a}");
        assert!(a.starts_with("3.0 MiB read"), "{a}");
    }

    #[test]
    fn long_paths_keep_their_start_and_end() {
        let p = "/home/someone/projects/cairn/target/debug/deps/very-long-name-of-a-file.rlib";
        let s = shorten(p, 30);
        assert_eq!(s.chars().count(), 30);
        assert!(s.starts_with("/home/som") && s.ends_with("-file.rlib") && s.contains('…'), "{s}");
        assert_eq!(shorten("/short", 30), "/short");
    }

    #[test]
    fn bug_a_file_name_with_control_characters_reached_the_terminal_and_the_log_raw() {
        let name = "/a\u{1b}]0;owned\u{7}\nprogress: 40/40 files";
        assert_eq!(shorten(name, 60), "/a?]0;owned??progress: 40/40 files");
        assert!(!shorten(name, 12).chars().any(char::is_control));
    }

    #[test]
    fn totals_leave_out_what_could_not_be_read_and_never_fall_below_what_is_done() {
        let m = Meter::new(false);
        m.scanned(3, 300);
        m.file_done(Path::new("/a"), 100);
        m.skipped(Path::new("/b"), Some(100));
        m.skipped(Path::new("/unlistable"), None);
        // The third file grew while it was read: stored with 150 bytes.
        m.file_done(Path::new("/c"), 150);
        let s = m.snap();
        assert_eq!((s.files_done, s.files_total, s.errors), (2, Some(2), 2));
        assert_eq!((s.bytes_done, s.bytes_total), (250, Some(250)));
    }

    #[test]
    fn the_last_line_says_done_where_the_time_left_was_and_has_the_totals_of_what_was_stored() {
        let m = Meter::new(false);
        m.scanned(2, 300);
        m.file_done(Path::new("/a"), 100);
        // The second file shrank while it was read: stored with 150 bytes.
        m.file_done(Path::new("/b"), 150);
        let last = m.last(End::Done);
        assert_eq!((last.files_total, last.bytes_total, last.eta()), (Some(2), Some(250), None));
        let line = plain_line(&last, "");
        assert!(line.starts_with("progress: 2/2 files, 250 B/250 B (250/250 bytes), "), "{line}");
        assert!(line.ends_with(", done, 0 errors"), "{line}");
        assert!(!line.contains("ETA"), "{line}");
        let (bar, _) = terminal_lines(&last, "", 100);
        assert!(bar.starts_with("[====================] 2/2 files  250 B/250 B  "), "{bar}");
        assert!(bar.ends_with("  done"), "{bar}");
        // While it runs, the line says how long is left.
        let mut running = last;
        running.end = None;
        running.bytes_done = 125;
        running.elapsed = Duration::from_secs(1);
        assert!(plain_line(&running, "").contains(", ETA 1s, "), "{}", plain_line(&running, ""));
    }

    #[test]
    fn a_failed_backup_ends_with_stopped_and_the_totals_it_found_and_a_stream_with_done() {
        let m = Meter::new(false);
        m.scanned(3, 300);
        m.file_done(Path::new("/a"), 100);
        let last = m.last(End::Stopped);
        let line = plain_line(&last, "");
        assert!(line.starts_with("progress: 1/3 files, 100 B/300 B (100/300 bytes), "), "{line}");
        assert!(line.ends_with(", stopped, 0 errors"), "{line}");
        let stream = Meter::new(true);
        stream.streamed(3 << 20);
        let line = plain_line(&stream.last(End::Done), "");
        assert!(
            line.starts_with("progress: 3.0 MiB (3145728 bytes) read, ") && line.ends_with(", done, 0 errors"),
            "{line}"
        );
    }

    #[test]
    fn the_file_shown_is_one_being_read_not_the_last_one_the_scan_queued() {
        let m = Meter::new(false);
        m.reading(Path::new("/src/being-read"));
        m.queued(Path::new("/src/queued-far-ahead"));
        assert_eq!(m.current(), "/src/being-read");
        m.reading(Path::new("/src/next"));
        assert_eq!(m.current(), "/src/next");
    }
}
