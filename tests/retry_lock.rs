//! `--retry-lock DURATION` through the real binary: a command that meets a
//! live lock waits, says once for whom, and takes the lock when it is
//! released; a lock never released fails the command after the duration,
//! naming the holder. The holders are real: a `backup --stdin` whose
//! standard input the test keeps open (it holds its shared lock until the
//! input ends), and a prune's locks held through the library by the
//! test's own process. A prune waits for another prune only, never for a
//! backup. Nothing here sleeps to wait for something: the tests wait for
//! the lock object, and for the waiter's line on stderr.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{wait_exit, wait_until, Env, PASSWORD};

const LIMIT: Duration = Duration::from_secs(120);

/// Repository locks: the files directly under `locks/` (`locks/evidence/`
/// is the evidence appenders' directory, there from `init` on).
fn lock_objects(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("locks"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_type().is_ok_and(|t| t.is_file())).count())
        .unwrap_or(0)
}

/// A `backup --stdin` that holds its shared lock until its input is closed.
fn holding_backup(env: &Env) -> (Child, ChildStdin) {
    let mut child = env
        .command()
        .args(["backup", "--stdin", "--stdin-name", "held.bin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    wait_until("the backup takes its lock", LIMIT, || lock_objects(&env.repo) > 0);
    (child, stdin)
}

/// Starts `args`, with a thread that sends each line of its stderr.
fn spawn_reading_stderr(env: &Env, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = env.command().args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for the line that holds `needle`; returns it.
fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        match rx.recv_timeout(LIMIT) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with `{needle}` on stderr: {e}"),
        }
    }
}

fn rest(rx: mpsc::Receiver<String>) -> String {
    rx.into_iter().collect::<Vec<_>>().join("\n")
}

fn open(env: &Env) -> cairn::repo::Repository {
    cairn::repo::Repository::open(
        std::sync::Arc::new(cairn::backend::LocalBackend::new(&env.repo)),
        PASSWORD.as_bytes(),
    )
    .unwrap()
}

#[test]
fn prune_waits_for_a_running_prune_and_runs_once_it_ends() {
    let env = Env::new();
    let repo = open(&env);
    let held = cairn::repo::lock::acquire_prune(&repo).unwrap();
    let (mut prune, rx) = spawn_reading_stderr(&env, &["prune", "--retry-lock", "1h"]);
    let line = wait_for_line(&rx, "waiting for the lock");
    let user = cairn::host::username();
    let host = cairn::host::hostname();
    assert!(
        line.starts_with(&format!(
            "waiting for the lock: the repository is locked by prune of {user}@{host} (pid {}",
            std::process::id()
        )),
        "{line}"
    );
    assert!(line.ends_with("; trying again for up to 1 h"), "{line}");
    // Release: the first prune ends, and the second takes the lock.
    drop(held);
    let status = wait_exit(&mut prune, LIMIT);
    let err = rest(rx);
    assert!(status.success(), "prune: {err}");
    assert!(!err.contains("waiting for the lock"), "said once: {err}");
}

#[test]
fn a_lock_never_released_fails_after_the_duration_naming_its_holder() {
    let env = Env::new();
    let held = cairn::repo::lock::acquire_prune(&open(&env)).unwrap();
    let (mut prune, rx) = spawn_reading_stderr(&env, &["prune", "--retry-lock", "2s"]);
    wait_for_line(&rx, "waiting for the lock");
    let status = wait_exit(&mut prune, LIMIT);
    let err = rest(rx);
    assert_eq!(status.code(), Some(11), "still locked when --retry-lock gives up: {err}");
    assert!(
        err.contains(&format!("error: the repository is locked by prune of {}@", cairn::host::username())),
        "{err}"
    );
    assert!(err.contains(&format!("(pid {}", std::process::id())), "{err}");
    assert!(err.contains("hint: still locked after waiting 2.0 s (--retry-lock); wait for process"), "{err}");
    drop(held);
}

#[test]
fn without_retry_lock_a_prune_in_the_way_fails_at_once() {
    let env = Env::new();
    let held = cairn::repo::lock::acquire_prune(&open(&env)).unwrap();
    let out = env.cairn(&["prune"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(11), "restic's code for a locked repository: {err}");
    assert!(err.contains("locked by prune of") && !err.contains("waiting for the lock"), "{err}");
    drop(held);
}

#[test]
fn bug_a_prune_during_a_backup_failed_with_locked_by_backup() {
    let env = Env::new();
    let (mut backup, mut input) = holding_backup(&env);
    // The backup holds its lock (and waits for its input): prune runs now.
    let out = env.cairn(&["prune"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "prune met the backup's lock: {err}");
    assert!(!err.contains("locked"), "{err}");
    input.write_all(b"the data the backup was waiting for\n").unwrap();
    drop(input);
    assert!(wait_exit(&mut backup, LIMIT).success());
    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "the backup that ran beside the prune committed");
    assert!(env.ok(&["check", "--read-data"]).is_empty());
}

/// A prune of a build before two-phase prune takes an exclusive lock under
/// `locks/`: backups and forgets still wait for it, and so does a prune.
#[test]
fn backup_forget_and_prune_wait_for_an_older_builds_prune_lock() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"a file\n").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    // An exclusive lock held by this (live) test process, as an older prune's.
    let held = cairn::repo::lock::acquire(&open(&env), true, "prune").unwrap();
    let (mut backup, brx) = spawn_reading_stderr(&env, &["backup", "--retry-lock", "1h", src.to_str().unwrap()]);
    let (mut forget, frx) = spawn_reading_stderr(&env, &["forget", "--keep-last", "1", "--retry-lock", "1h"]);
    let (mut prune, prx) = spawn_reading_stderr(&env, &["prune", "--retry-lock", "1h"]);
    for rx in [&brx, &frx, &prx] {
        let line = wait_for_line(rx, "waiting for the lock");
        assert!(line.contains(&format!("locked by prune of {}@", cairn::host::username())), "{line}");
        assert!(line.contains(&format!("(pid {}", std::process::id())), "{line}");
    }
    drop(held);
    let b = wait_exit(&mut backup, LIMIT);
    assert!(b.success(), "backup: {}", rest(brx));
    let f = wait_exit(&mut forget, LIMIT);
    assert!(f.success(), "forget: {}", rest(frx));
    let p = wait_exit(&mut prune, LIMIT);
    assert!(p.success(), "prune: {}", rest(prx));
}
