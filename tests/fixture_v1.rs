//! The frozen version 1 repository in `tests/fixtures/repo-v1`: every
//! release must open it, list its two snapshots with the ids they had,
//! pass `check --read-data` with the same report, restore both snapshots
//! byte for byte (contents, modes, nanosecond mtimes, a symlink, a hard
//! link, an empty file, xattrs), and verify its evidence chain. A
//! dependency upgrade or a code change that alters how the format is read
//! fails here.
//!
//! The fixture was made by `regenerate_the_v1_fixture` below (ignored; it
//! needs root and `CAIRN_REGENERATE_FIXTURE=1`). Re-make it only when the
//! format changes on purpose, and then update the ids and the `check`
//! report pinned here.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a test prints what it found when it fails")]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PASSWORD: &str = "cairn fixture v1";
/// Where the generator put the source tree, as the snapshots record it.
const SOURCE: &str = "/tmp/cairn-fixture-v1/src";
/// The host name the generator's cairn saw (its own UTS namespace).
const HOST: &str = "cairn-fixture";

const SNAPSHOT_1: &str = "dcd437335c5aff165c86ac90882aaa9d8996342362a21a0446ae810c9d8b4ecb";
const SNAPSHOT_2: &str = "705112d6a7e6685de082d8dd7c1d752c5e19f7a76a4b72809774862c8cb887b7";
/// `check` also verifies the fixture's legacy evidence chain (init and its
/// two backups), which still verifies as it was written.
const CHECK_REPORT: &str =
    "checked 2 snapshots, 10 trees, 4 packs, 2 index files; read 4 packs (39 blobs)\nevidence: 3 \
                            record(s) in 1 chain(s) verified\nno errors found\n";

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repo-v1")
}

/// Deterministic incompressible bytes (xorshift64), defined here so that
/// the fixture does not depend on any other test helper.
fn fixture_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
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

fn text(lines: usize) -> Vec<u8> {
    (0..lines).map(|i| format!("cairn fixture line {i}: the quick brown fox\n")).collect::<String>().into_bytes()
}

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(&'static str),
    /// A hard link to the file at this earlier path.
    HardLink(&'static str),
}

/// One entry of the source tree, relative to [`SOURCE`].
#[derive(Debug, Clone)]
struct Entry {
    path: &'static str,
    kind: Kind,
    mode: u32,
    mtime: (i64, u32),
    xattrs: Vec<(&'static str, &'static [u8])>,
}

fn entry(path: &'static str, kind: Kind, mode: u32, mtime: i64) -> Entry {
    Entry { path, kind, mode, mtime: (mtime, 123_456_789), xattrs: Vec::new() }
}

/// The source tree of snapshot `version` (1 or 2), parents before
/// children. The second changes `text.txt`, drops `private` and adds
/// `dir/new.txt`.
fn tree(version: u8) -> Vec<Entry> {
    let t = 1_700_000_000;
    let mut v = vec![
        entry("", Kind::Dir, 0o755, t),
        entry("big.bin", Kind::File(fixture_bytes(6000, 1)), 0o644, t + 1),
        entry("big-link", Kind::HardLink("big.bin"), 0o644, t + 1),
        entry("empty", Kind::File(Vec::new()), 0o644, t + 2),
        entry("script.sh", Kind::File(b"#!/bin/sh\necho cairn\n".to_vec()), 0o755, t + 3),
        entry("symlink", Kind::Symlink("text.txt"), 0o777, t + 4),
        Entry { xattrs: vec![("user.cairn.dir", b"fixture dir")], ..entry("dir", Kind::Dir, 0o750, t + 5) },
        Entry {
            xattrs: vec![("user.cairn.a", b"first"), ("user.cairn.b", b"\x00\xffbinary")],
            ..entry("dir/nested.txt", Kind::File(text(3)), 0o640, t + 6)
        },
    ];
    if version == 1 {
        v.push(entry("private", Kind::File(fixture_bytes(300, 2)), 0o600, t + 7));
        v.push(entry("text.txt", Kind::File(text(40)), 0o644, t + 8));
    } else {
        v.push(entry("dir/new.txt", Kind::File(b"new in the second snapshot\n".to_vec()), 0o644, t + 9));
        v.push(entry("text.txt", Kind::File(text(45)), 0o644, t + 10));
    }
    v
}

/// Asserts that `root` holds exactly `want`, byte for byte.
fn assert_tree(root: &Path, want: &[Entry]) {
    use std::collections::BTreeSet;
    let mut seen = BTreeSet::new();
    for e in want {
        let p = if e.path.is_empty() { root.to_path_buf() } else { root.join(e.path) };
        let m = std::fs::symlink_metadata(&p).unwrap_or_else(|err| panic!("{}: {err}", e.path));
        let what = format!("`{}`", e.path);
        match &e.kind {
            Kind::Dir => assert!(m.is_dir(), "{what} is not a directory"),
            Kind::File(content) => {
                assert!(m.file_type().is_file(), "{what} is not a file");
                assert!(std::fs::read(&p).unwrap() == *content, "{what}: content differs");
            }
            Kind::Symlink(target) => {
                assert!(m.file_type().is_symlink(), "{what} is not a symlink");
                assert_eq!(std::fs::read_link(&p).unwrap(), Path::new(target), "{what}");
            }
            Kind::HardLink(other) => {
                let o = std::fs::metadata(root.join(other)).unwrap();
                assert_eq!((m.dev(), m.ino()), (o.dev(), o.ino()), "{what} is not a hard link to `{other}`");
                assert_eq!(m.nlink(), 2, "{what}");
            }
        }
        if !m.file_type().is_symlink() {
            assert_eq!(m.permissions().mode() & 0o7777, e.mode, "{what}: mode");
        }
        assert_eq!((m.mtime(), m.mtime_nsec() as u32), e.mtime, "{what}: mtime");
        if common::is_root() {
            assert_eq!((m.uid(), m.gid()), (0, 0), "{what}: owner");
        }
        for (name, value) in &e.xattrs {
            assert_eq!(xattr::get(&p, name).unwrap().as_deref(), Some(*value), "{what}: xattr {name}");
        }
        seen.insert(p);
    }
    // Nothing more than that.
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for c in std::fs::read_dir(&d).unwrap() {
            let c = c.unwrap().path();
            assert!(seen.contains(&c), "{} was not in the snapshot", c.display());
            if std::fs::symlink_metadata(&c).unwrap().is_dir() {
                stack.push(c);
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A copy of the fixture to work on (a command may write a lock).
struct Copy {
    dir: tempfile::TempDir,
}

impl Copy {
    fn new() -> Copy {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&fixture_dir(), &dir.path().join("repo"));
        Copy { dir }
    }

    fn cairn(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .env("CAIRN_REPO", self.dir.path().join("repo"))
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_STATE_DIR", self.dir.path().join("state"))
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.cairn(args);
        assert!(out.status.success(), "cairn {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }
}

#[test]
fn the_v1_fixture_lists_its_snapshots_with_their_ids() {
    let c = Copy::new();
    let v: serde_json::Value = serde_json::from_slice(&c.ok(&["snapshots", "--json"]).stdout).unwrap();
    let s = v.as_array().unwrap();
    assert_eq!(s.len(), 2, "{v}");
    assert_eq!((s[0]["id"].as_str(), s[1]["id"].as_str()), (Some(SNAPSHOT_1), Some(SNAPSHOT_2)));
    assert_eq!(
        (s[0]["time"].as_str(), s[1]["time"].as_str()),
        (Some("2025-01-01T00:00:00Z"), Some("2025-01-02T00:00:00Z"))
    );
    assert_eq!(s[1]["parent"], SNAPSHOT_1);
    assert_eq!(s[0]["tags"], serde_json::json!(["v1"]));
    for snap in s {
        assert_eq!(snap["paths"], serde_json::json!([SOURCE]));
        assert_eq!((snap["hostname"].as_str(), snap["username"].as_str()), (Some(HOST), Some("root")));
        assert_eq!(snap["program_version"], "0.1.0");
    }
}

#[test]
fn the_v1_fixture_passes_check_read_data_with_the_same_report() {
    let c = Copy::new();
    let out = c.ok(&["check", "--read-data"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "no problem listed");
    assert_eq!(String::from_utf8_lossy(&out.stderr), CHECK_REPORT);
}

#[test]
fn the_v1_fixture_restores_both_snapshots_byte_for_byte() {
    let c = Copy::new();
    for (id, version) in [(SNAPSHOT_1, 1), (SNAPSHOT_2, 2)] {
        let target = c.dir.path().join(format!("restore-{version}"));
        c.ok(&["restore", &id[..12], "--target", target.to_str().unwrap(), "--verify"]);
        assert_tree(&target.join(SOURCE.trim_start_matches('/')), &tree(version));
    }
}

#[test]
fn the_v1_fixture_evidence_chain_verifies() {
    let c = Copy::new();
    let out = c.dir.path().join("export");
    c.ok(&["evidence", "export", "--out", out.to_str().unwrap()]);
    let v = c.ok(&["evidence", "verify", out.to_str().unwrap(), "--pubkey", out.join("pubkey.txt").to_str().unwrap()]);
    // Init and two backups; the head's hash pins the canonical JSON and the chain.
    assert_eq!(
        String::from_utf8_lossy(&v.stdout),
        "intact: 3 record(s), head 2:eb41df7242663772327c504a9bd8aab0a358c0bb966f4d24602c64dd1aa9be47\n"
    );
}

// ---------------------------------------------------------------------
// The generator.

/// Creates `root` as `entries` describe (removing what was there).
fn materialize(root: &Path, entries: &[Entry]) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    if root.exists() {
        std::fs::remove_dir_all(root).unwrap();
    }
    for e in entries {
        let p = if e.path.is_empty() { root.to_path_buf() } else { root.join(e.path) };
        match &e.kind {
            Kind::Dir => std::fs::create_dir(&p).unwrap(),
            Kind::File(content) => std::fs::write(&p, content).unwrap(),
            Kind::Symlink(target) => std::os::unix::fs::symlink(target, &p).unwrap(),
            Kind::HardLink(other) => std::fs::hard_link(root.join(other), &p).unwrap(),
        }
        if !matches!(e.kind, Kind::Symlink(_)) {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(e.mode)).unwrap();
        }
        for (name, value) in &e.xattrs {
            xattr::set(&p, name, value).unwrap_or_else(|err| panic!("xattr on {}: {err}", p.display()));
        }
    }
    // Times last, children before their directories.
    for e in entries.iter().rev() {
        let p = if e.path.is_empty() { root.to_path_buf() } else { root.join(e.path) };
        let t = TimeSpec::new(e.mtime.0, e.mtime.1 as i64);
        utimensat(None, &p, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
    }
}

/// Runs the cairn under test as the generator does: in a UTS namespace of
/// its own named [`HOST`], so that no machine's name lands in the fixture.
fn generator_cairn(repo: &Path, args: &[&str]) {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.env_clear().env("CAIRN_REPO", repo).env("CAIRN_PASSWORD", PASSWORD).env("PATH", "/usr/bin:/bin").args(args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUTS) != 0 || libc::sethostname(HOST.as_ptr().cast(), HOST.len()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "cairn {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Re-makes `tests/fixtures/repo-v1`. Run deliberately, as root:
/// `CAIRN_REGENERATE_FIXTURE=1 cargo test --test fixture_v1 -- --ignored`,
/// then update the pinned ids and `check` report from what it prints.
#[test]
#[ignore = "re-makes the frozen fixture; run only when the format changes on purpose"]
fn regenerate_the_v1_fixture() {
    assert!(
        std::env::var_os("CAIRN_REGENERATE_FIXTURE").is_some_and(|v| v == "1"),
        "set CAIRN_REGENERATE_FIXTURE=1 to re-make tests/fixtures/repo-v1"
    );
    assert!(common::is_root(), "the generator needs root (a UTS namespace, files owned by root)");
    let base = Path::new(SOURCE).parent().unwrap();
    if base.exists() {
        std::fs::remove_dir_all(base).unwrap();
    }
    std::fs::create_dir_all(base).unwrap();
    let src = Path::new(SOURCE);
    let repo = base.join("repo");
    generator_cairn(
        &repo,
        &["init", "--kdf-memory-kib", "19456", "--chunk-sizes", "64,256,1024", "--pack-size-mib", "1"],
    );
    materialize(src, &tree(1));
    generator_cairn(&repo, &["backup", "--time", "2025-01-01T00:00:00Z", "--tag", "v1", SOURCE]);
    materialize(src, &tree(2));
    generator_cairn(&repo, &["backup", "--time", "2025-01-02T00:00:00Z", SOURCE]);
    // Locks are gone; their empty directories are not part of the fixture.
    for d in ["locks", "evidence/locks"] {
        let _ = std::fs::remove_dir(repo.join(d));
    }
    let fixture = fixture_dir();
    if fixture.exists() {
        std::fs::remove_dir_all(&fixture).unwrap();
    }
    copy_dir(&repo, &fixture);
    std::fs::remove_dir_all(base).unwrap();
    let c = Copy::new();
    eprintln!("{}", String::from_utf8_lossy(&c.ok(&["snapshots"]).stdout));
    eprintln!("check report:\n{:?}", String::from_utf8_lossy(&c.ok(&["check", "--read-data"]).stderr));
}
