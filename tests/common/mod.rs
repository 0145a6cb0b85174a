//! Helpers shared by the CLI-level integration tests: a repository in a
//! temporary directory, the real `cairn` binary, and tree comparison.
#![allow(dead_code)]

pub mod chromium;
pub mod copies;
pub mod forge;
pub mod pty;
pub mod rng;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
}

impl Env {
    /// A fresh repository with test-sized chunks (16/64/256 KiB) and a
    /// cheap key derivation.
    pub fn new() -> Env {
        Env::with_init(&["--chunk-sizes", "16384,65536,262144"])
    }

    pub fn with_init(extra: &[&str]) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let env = Env { dir, repo };
        let mut args = vec!["init", "--kdf-memory-kib", "19456"];
        args.extend_from_slice(extra);
        let out = env.cairn(&args);
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        env
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env("CAIRN_REPO", &self.repo)
            .env("CAIRN_PASSWORD", PASSWORD)
            // Runs recorded by `backup --policy` or `drill` stay in the test's directory,
            // and so does the cache (the record of the key slot used last, say).
            .env("CAIRN_STATE_DIR", self.dir.path().join("state"))
            .env("CAIRN_CACHE_DIR", self.dir.path().join("cache"))
            // Prunes delete what they mark at once when no running backup
            // holds it (a second pass), instead of a day later: the hardest
            // case for the two phases, and what lets a test see deletions.
            // Tests of the margin itself remove this.
            .env("CAIRN_PRUNE_SAFETY_MARGIN", "0s")
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .stdin(std::process::Stdio::null());
        c
    }

    pub fn cairn(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs cairn and asserts it succeeded; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        assert!(
            out.status.success(),
            "cairn {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `cairn backup --json` of `paths`; returns the parsed JSON.
    pub fn backup_json(&self, paths: &[&Path], extra: &[&str]) -> serde_json::Value {
        let mut args: Vec<&str> = vec!["backup", "--json"];
        args.extend_from_slice(extra);
        let ps: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        args.extend(ps.iter().map(String::as_str));
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    pub fn repo_size(&self) -> u64 {
        dir_size(&self.repo)
    }
}

pub fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() { dir_size(&e.path()) } else { m.len() };
    }
    total
}

/// Deterministic pseudo-random bytes (incompressible).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Where a backed-up absolute path lands inside a restore target.
pub fn restored(target: &Path, original: &Path) -> PathBuf {
    target.join(original.strip_prefix("/").unwrap())
}

/// Asserts that two trees are identical: names, types, contents, modes,
/// nanosecond mtimes, symlink targets, user xattrs, hard-link structure,
/// ownership, and that sparse files are not more allocated than the source.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let mut links_a: HashMap<u64, PathBuf> = HashMap::new();
    let mut links_b: HashMap<u64, PathBuf> = HashMap::new();
    compare(a, b, Path::new(""), &mut links_a, &mut links_b);
}

fn compare(a: &Path, b: &Path, rel: &Path, la: &mut HashMap<u64, PathBuf>, lb: &mut HashMap<u64, PathBuf>) {
    let ma = std::fs::symlink_metadata(a).unwrap();
    let mb = std::fs::symlink_metadata(b).unwrap_or_else(|e| panic!("{}: missing in restore: {e}", rel.display()));
    let ctx = rel.display();
    assert_eq!(ma.file_type(), mb.file_type(), "{ctx}: type");
    assert_eq!(ma.mode(), mb.mode(), "{ctx}: mode");
    assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "{ctx}: owner");
    assert_eq!((ma.mtime(), ma.mtime_nsec()), (mb.mtime(), mb.mtime_nsec()), "{ctx}: mtime");
    let xa = user_xattrs(a);
    assert_eq!(xa, user_xattrs(b), "{ctx}: xattrs");
    let ft = ma.file_type();
    if ft.is_symlink() {
        assert_eq!(std::fs::read_link(a).unwrap(), std::fs::read_link(b).unwrap(), "{ctx}: link target");
    } else if ft.is_file() {
        assert_eq!(ma.len(), mb.len(), "{ctx}: size");
        assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "{ctx}: content differs");
        assert!(mb.blocks() <= ma.blocks() + 8, "{ctx}: holes not kept ({} vs {} blocks)", mb.blocks(), ma.blocks());
        if ma.nlink() > 1 {
            // Files linked together in the source are linked in the restore.
            match (la.get(&ma.ino()), lb.get(&mb.ino())) {
                (Some(pa), Some(pb)) => assert_eq!(pa, pb, "{ctx}: hard link structure"),
                (None, None) => {
                    la.insert(ma.ino(), rel.to_path_buf());
                    lb.insert(mb.ino(), rel.to_path_buf());
                }
                _ => panic!("{ctx}: hard link structure differs"),
            }
        }
    } else if ft.is_dir() {
        let mut na: Vec<_> = std::fs::read_dir(a).unwrap().map(|e| e.unwrap().file_name()).collect();
        let mut nb: Vec<_> = std::fs::read_dir(b).unwrap().map(|e| e.unwrap().file_name()).collect();
        na.sort();
        nb.sort();
        assert_eq!(na, nb, "{ctx}: directory entries");
        for n in na {
            compare(&a.join(&n), &b.join(&n), &rel.join(&n), la, lb);
        }
    } else {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_char_device() || ft.is_block_device() {
            assert_eq!(ma.rdev(), mb.rdev(), "{ctx}: device number");
        }
    }
}

fn user_xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = xattr::list(p)
        .map(|it| {
            it.filter(|n| n.to_string_lossy().starts_with("user."))
                .map(|n| (n.to_string_lossy().into_owned(), xattr::get(p, &n).unwrap().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The `cairn` binary at a path another user (`nobody`) may execute.
///
/// The build's target directory can sit under a home only root may enter
/// (CI builds under `$HOME/.cache` with `$HOME` at mode 0700), so tests
/// that drop to another uid run a copy in a fresh directory of mode 0755.
/// The copy goes when the returned value is dropped.
pub struct BinaryForOthers {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn cairn_for_other_users() -> BinaryForOthers {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("cairn-bin-").tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("cairn");
    // A child process writes the copy: a descriptor open for writing in
    // this multi-threaded test process could leak into a sibling test's
    // fork and make the exec fail with ETXTBSY.
    let status = Command::new("install").args(["-m", "0755"]).arg(env!("CARGO_BIN_EXE_cairn")).arg(&path).status();
    assert!(status.as_ref().is_ok_and(|s| s.success()), "install (coreutils) could not copy the binary: {status:?}");
    BinaryForOthers { _dir: dir, path }
}

/// Runs `cairn ARGS` so that it kills itself with SIGKILL the `nth` time
/// it passes the failpoint `point` (see `src/failpoint.rs`), and asserts
/// that it died there: a crash test's kill is certain, not hoped for.
/// Needs a build with `--features failpoints`; without it this fails
/// loudly instead of letting the test pass without killing anything.
pub fn run_killed_at(env: &Env, args: &[&str], point: &str, nth: usize) {
    let mut c = env.command();
    c.args(args);
    killed_at(c, point, nth);
}

/// [`run_killed_at`] for a command the caller built (extra environment).
pub fn killed_at(mut command: Command, point: &str, nth: usize) {
    use std::os::unix::process::ExitStatusExt;
    if !cfg!(feature = "failpoints") {
        panic!(
            "this test kills cairn at the failpoint `{point}`, which exists only in a build with the \
             `failpoints` feature: run `cargo test --features failpoints` (as scripts/test.sh does)"
        );
    }
    let out = command.env("CAIRN_TEST_KILL_AT", format!("{point}:{nth}")).output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "{command:?} was not killed at failpoint {point} (pass {nth}): {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pause at a failpoint (see `src/failpoint.rs`): a command armed with
/// [`Pause::arm`] stops at the point until [`Pause::release`], so a test
/// runs something else exactly there. Needs `--features failpoints`.
pub struct Pause {
    fifo: PathBuf,
    writer: Option<std::fs::File>,
}

impl Pause {
    /// A named pipe at `fifo` (in the test's directory).
    pub fn new(fifo: PathBuf) -> Pause {
        if !cfg!(feature = "failpoints") {
            panic!("pauses at failpoints need `cargo test --features failpoints` (as scripts/test.sh does)");
        }
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).unwrap();
        Pause { fifo, writer: None }
    }

    /// Makes `command` pause the first time it passes `point`.
    pub fn arm(&self, command: &mut Command, point: &str) {
        command.env("CAIRN_TEST_PAUSE_AT", point).env("CAIRN_TEST_PAUSE_FIFO", &self.fifo);
    }

    /// Waits until the command is paused at its point: it has the pipe
    /// open for reading, so a non-blocking open for writing succeeds.
    pub fn wait_paused(&mut self, limit: std::time::Duration) {
        use std::os::unix::fs::OpenOptionsExt;
        let fifo = self.fifo.clone();
        let mut opened = None;
        wait_until("the command to reach its pause", limit, || {
            opened = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo).ok();
            opened.is_some()
        });
        self.writer = opened;
    }

    /// Lets the paused command go on.
    pub fn release(&mut self) {
        assert!(self.writer.take().is_some(), "released a pause that was never reached");
    }
}

/// Polls `cond` until it holds; fails the test once `limit` has passed.
pub fn wait_until(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits for `child` to exit; past `limit`, kills it and fails the test.
pub fn wait_exit(child: &mut std::process::Child, limit: std::time::Duration) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
