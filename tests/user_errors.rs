//! Errors and warnings a person (or a script) can act on, through the real binary:
//! restic's exit codes where restic has one (10 no repository at that
//! location, 130 interrupted; 11 locked and 12 wrong password are asserted
//! in `retry_lock.rs`, `hostile_repo.rs`, `keys.rs` and `check_damage.rs`
//! where those situations are built), each cause said once, and an S3
//! endpoint that cannot be reached named in words, with a hint, without
//! Rust debug text. The library's warnings are the printer's `warning:`
//! lines, not log lines with a timestamp.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{wait_exit, wait_until, Env};

const LIMIT: Duration = Duration::from_secs(120);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn no_repository_at_the_location_exits_10_with_a_hint() {
    let env = Env::new();
    let nowhere = env.path("nowhere");
    let o = env.command().env("CAIRN_REPO", &nowhere).arg("snapshots").output().unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(10), "{err}");
    assert!(err.starts_with(&format!("error: there is no cairn repository at {}", nowhere.display())), "{err}");
    assert!(err.contains("hint: create one with `cairn init`"), "{err}");
}

#[test]
fn a_missing_file_is_named_once_without_repeating_its_cause() {
    let env = Env::new();
    let missing = env.path("missing-password-file");
    let o = env.command().arg("--password-file").arg(&missing).arg("snapshots").output().unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err, format!("error: {}: No such file or directory (os error 2)\n", missing.display()));
}

/// Repository locks: the objects directly under `locks/` named by an id
/// (not a temporary file a write in progress has not renamed yet).
fn lock_objects(repo: &Path) -> usize {
    let is_id = |n: &str| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit());
    std::fs::read_dir(repo.join("locks"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| e.file_name().to_str().is_some_and(is_id))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn an_interrupted_command_exits_130() {
    let env = Env::new();
    // A backup of standard input that the test keeps open: it runs (and
    // holds its lock) until the input ends or it is interrupted.
    let mut backup = env
        .command()
        .args(["backup", "--stdin", "--stdin-name", "held.bin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = backup.stdin.take().unwrap();
    wait_until("the backup takes its lock", LIMIT, || lock_objects(&env.repo) > 0);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(backup.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = wait_exit(&mut backup, LIMIT);
    drop(input);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut backup.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}: {err}");
    assert!(err.contains("error: interrupted"), "{err}");
    // The lock it left names a process of this host that is gone: it is
    // stale, so even an exclusive lock is taken, and the taker removes it.
    assert_eq!(lock_objects(&env.repo), 1, "the interrupted backup's lock is left");
    env.ok(&["prune"]);
    assert_eq!(lock_objects(&env.repo), 0, "the stale lock was removed");
}

#[test]
fn an_unreachable_s3_endpoint_is_named_with_a_hint_and_no_debug_text() {
    // A loopback port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = Env::new();
    let o = env
        .command()
        .env("CAIRN_REPO", "s3://nowhere-bucket/repo")
        .env("CAIRN_S3_ENDPOINT", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "GK000000000000000000000000")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-secret-0000000000000000000000000000000000")
        .env("AWS_REGION", "garage")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .arg("snapshots")
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: "), "{err}");
    assert!(first.contains(&format!("cannot reach the S3 endpoint {endpoint}")), "the endpoint is not named: {err}");
    assert!(first.contains("s3://nowhere-bucket/repo/"), "what was tried is not named: {err}");
    assert!(err.lines().any(|l| l.starts_with("hint: check the endpoint")), "no hint: {err}");
    for debug in ["{", "Some(", "DispatchFailure", "ConnectorError"] {
        assert!(!err.contains(debug), "Rust debug text `{debug}` reaches the user: {err}");
    }
}

#[test]
fn a_library_warning_is_a_warning_line_not_a_log_line() {
    let env = Env::new();
    let (a, b) = (env.path("a"), env.path("b"));
    for (dir, content) in [(&a, b"first".as_slice()), (&b, b"second".as_slice())] {
        std::fs::create_dir(dir).unwrap();
        std::fs::write(dir.join("f"), content).unwrap();
        env.ok(&["backup", dir.to_str().unwrap()]);
    }
    // Damage one index file: the next backup skips it, and says so.
    let index = std::fs::read_dir(env.repo.join("index")).unwrap().next().unwrap().unwrap().path();
    std::fs::write(&index, b"not an index file").unwrap();
    let o = env.cairn(&["backup", a.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let name = index.file_name().unwrap().to_str().unwrap();
    assert!(
        err.lines().any(|l| l.starts_with(&format!("warning: skipping index file index/{name}: "))),
        "no warning line: {err}"
    );
    assert!(!err.contains(" WARN "), "a log line reached the user: {err}");
}
