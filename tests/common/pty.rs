//! A pseudo-terminal for tests of what cairn draws on a terminal: the
//! command gets the terminal's side as stdout and stderr (so it sees a
//! terminal of a known width), the test reads what it wrote from the other
//! side and replays it on a small [`Screen`].

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// A pseudo-terminal pair; [`Pty::spawn`] hands its terminal side to a command.
pub struct Pty {
    master: File,
    terminal: OwnedFd,
}

fn check(what: &str, r: libc::c_int) {
    assert!(r >= 0, "{what}: {}", std::io::Error::last_os_error());
}

impl Pty {
    /// A terminal `cols` columns wide and `rows` high.
    pub fn new(cols: u16, rows: u16) -> Pty {
        // SAFETY: plain calls on descriptors this function opens and owns;
        // `name` is large enough for any pts path and NUL-terminated by ptsname_r.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            check("posix_openpt", m);
            let master = File::from_raw_fd(m);
            check("grantpt", libc::grantpt(m));
            check("unlockpt", libc::unlockpt(m));
            let mut name = [0 as libc::c_char; 128];
            let r = libc::ptsname_r(m, name.as_mut_ptr(), name.len());
            assert_eq!(r, 0, "ptsname_r: {}", std::io::Error::from_raw_os_error(r));
            let t = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            check("open the terminal side", t);
            let terminal = OwnedFd::from_raw_fd(t);
            let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
            check("TIOCSWINSZ", libc::ioctl(m, libc::TIOCSWINSZ, &size));
            Pty { master, terminal }
        }
    }

    /// Starts `command` with the terminal as its stdout and stderr. What it
    /// writes arrives on the returned channel, in pieces as read; the
    /// channel closes once every process holding the terminal has ended.
    pub fn spawn(self, mut command: Command) -> (Child, mpsc::Receiver<Vec<u8>>) {
        let out = self.terminal.try_clone().unwrap();
        command.stdout(Stdio::from(out)).stderr(Stdio::from(self.terminal));
        let child = command.spawn().unwrap();
        // The command holds the last copies of the terminal side here: once
        // it is dropped, only the child has it, and reads end when it exits.
        drop(command);
        let (tx, rx) = mpsc::channel();
        let mut master = self.master;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            // Linux reports EIO once the other side is closed by all.
            while let Ok(n @ 1..) = master.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }
}

/// What a terminal shows after a stream of output: enough of a VT100 for
/// progress displays. Printable text overwrites at the cursor, `\r` and
/// `\n` move it (the terminal turns `\n` into `\r\n`), `ESC[nA` moves it
/// up, `ESC[2K` clears its line; other escape sequences (colours) are
/// ignored. Rows are never scrolled off.
#[derive(Default)]
pub struct Screen {
    rows: Vec<Vec<char>>,
    row: usize,
    col: usize,
    /// The start of a UTF-8 sequence cut between two reads.
    partial: Vec<u8>,
    /// An escape sequence not complete yet.
    escape: Option<String>,
}

impl Screen {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.partial) {
            Ok(t) => t.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(e) => panic!("the terminal received bytes that are not UTF-8: {e}"),
        };
        let text: String = std::str::from_utf8(&self.partial[..valid]).unwrap().to_string();
        self.partial.drain(..valid);
        for c in text.chars() {
            self.put(c);
        }
    }

    fn put(&mut self, c: char) {
        if let Some(seq) = &mut self.escape {
            seq.push(c);
            // `ESC [ params letter`
            if seq.len() > 2 && c.is_ascii_alphabetic() {
                let seq = self.escape.take().unwrap();
                self.apply_escape(&seq);
            }
            return;
        }
        match c {
            '\x1b' => self.escape = Some(String::from(c)),
            '\r' => self.col = 0,
            '\n' => {
                self.row += 1;
                self.col = 0;
            }
            c => {
                let col = self.col;
                let line = self.line();
                if line.len() <= col {
                    line.resize(col + 1, ' ');
                }
                line[col] = c;
                self.col += 1;
            }
        }
    }

    fn line(&mut self) -> &mut Vec<char> {
        if self.rows.len() <= self.row {
            self.rows.resize(self.row + 1, Vec::new());
        }
        &mut self.rows[self.row]
    }

    fn apply_escape(&mut self, seq: &str) {
        let params = &seq[2..seq.len() - 1];
        match seq.chars().last() {
            Some('A') => self.row = self.row.saturating_sub(params.parse().unwrap_or(1)),
            Some('K') if params == "2" => self.line().clear(),
            _ => {}
        }
    }

    /// The rows as text, trailing blanks cut, empty rows at the end dropped.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.rows.iter().map(|r| r.iter().collect::<String>().trim_end().to_string()).collect();
        while out.last().is_some_and(|l| l.is_empty()) {
            out.pop();
        }
        out
    }
}
