//! What cairn writes for itself is private whatever the umask: every
//! command here runs under umask 022 (the default that made the
//! repository, the key slots, the state database and the reports
//! world-readable), and every file and directory it creates is 0600 / 0700.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// `cairn ARGS` under umask 022, with the password in the environment.
fn cairn_022(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.args(args)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_CACHE_DIR", dir.join("cache"))
        .env("CAIRN_STATE_DIR", dir.join("state"))
        .env_remove("CAIRN_PASSWORD_FILE")
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .env_remove("CAIRN_REPO")
        .stdin(std::process::Stdio::null());
    // SAFETY: umask is async-signal-safe; the closure touches nothing else.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    c.output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = cairn_022(dir, args);
    assert!(out.status.success(), "cairn {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every entry below `root` (itself included) with its mode bits.
fn modes(root: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        out.push((p.clone(), m.permissions().mode() & 0o7777, m.is_dir()));
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

/// Every entry below `root` is 0600 or 0700.
fn assert_private(root: &Path) {
    let all = modes(root);
    assert!(all.len() > 1, "{} holds nothing", root.display());
    for (p, mode, is_dir) in all {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}, not {want:o}", p.display());
    }
}

#[test]
fn the_repository_state_and_reports_are_private_under_umask_022() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (repo, state, src) = (d.join("repo"), d.join("state"), d.join("src"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "hello").unwrap();
    let policies = d.join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("web.toml"),
        format!(
            "name = \"web\"\n[source]\npaths = [\"{}\"]\n[repository]\nurl = \"{}\"\n[drill]\nschedule = \"@daily\"\n",
            src.display(),
            repo.display()
        ),
    )
    .unwrap();
    let (r, s, p) = (repo.to_str().unwrap(), state.to_str().unwrap(), policies.to_str().unwrap());
    ok(d, &["init", "--repo", r, "--kdf-memory-kib", "19456"]);
    let st = ["--policies", p, "--state", s];
    ok(d, &[&["backup", "--policy", "web"][..], &st[..]].concat());
    ok(d, &[&["drill", "--policy", "web"][..], &st[..]].concat());
    let html = d.join("out/compliance.html");
    std::fs::create_dir(d.join("out")).unwrap();
    ok(d, &[&["report", "--out", html.to_str().unwrap()][..], &st[..]].concat());

    assert_private(&repo);
    assert!(repo.join("keys").read_dir().unwrap().count() > 0, "the key slots were checked");
    // state.db, its reports directory, every drill report and the scratch directory.
    assert_private(&state);
    assert!(modes(&state).iter().any(|(p, ..)| p.ends_with("report.json")), "a drill report was checked");
    // A report the user writes with --out keeps the user's umask (issue 11.3).
    assert_eq!(std::fs::metadata(&html).unwrap().permissions().mode() & 0o777, 0o644);
}

#[test]
fn bug_a_report_path_that_is_a_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let victim = d.join("root-only");
    std::fs::write(&victim, "precious").unwrap();
    let link = d.join("report.html");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let state = d.join("state");
    let policies = d.join("policies");
    std::fs::create_dir(&policies).unwrap();
    let out = cairn_022(
        d,
        &["report", "--out", link.to_str().unwrap(), "--state", state.to_str().unwrap(), "--policies"]
            .into_iter()
            .chain([policies.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("symbolic link") && err.contains("report.html"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is left as it was");
}

#[test]
fn bug_enrolling_a_host_key_made_the_state_directory_world_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (repo, state) = (d.join("repo"), d.join("fresh/state"));
    let r = repo.to_str().unwrap();
    ok(d, &["init", "--repo", r, "--kdf-memory-kib", "19456"]);
    // The first thing to create the state directory is the host key.
    ok(d, &["--repo", r, "evidence", "enroll", "--state", state.to_str().unwrap()]);
    assert_private(&state);
    assert!(modes(&state).iter().any(|(_, _, is_dir)| !is_dir), "the key files were checked");
}
