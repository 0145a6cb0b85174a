//! Invariant 4: restore never writes outside its target, whatever the
//! repository says.
//!
//! The malicious repositories here are built by hand with the library
//! (trees with names a backup would never produce), then restored with the
//! real binary. Each test checks that the bad entry is refused and named,
//! that the directory next to the target stays untouched, and that the safe
//! entries of the same snapshot are restored byte for byte.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use cairn::backend::LocalBackend;
use cairn::crypto::KdfParams;
use cairn::repo::{InitOptions, Node, Repository};
use cairn::Id;

mod common;
use common::forge::Builder;

const PASSWORD: &str = "restore-safety-password";
const SAFE_CONTENT: &[u8] = b"this file is safe and must be restored exactly\n";
const INNER_CONTENT: &[u8] = b"a safe file in a safe directory\n";
const EVIL_CONTENT: &[u8] = b"if you can read this outside the target, restore escaped\n";

// ---------------------------------------------------------------- helpers

/// A scratch area: `base/target` (restore target), `base/outside` (its
/// sibling, which must stay empty) and a repository elsewhere.
struct Scene {
    _repo_dir: tempfile::TempDir,
    _base_dir: tempfile::TempDir,
    repo_path: PathBuf,
    base: PathBuf,
    target: PathBuf,
    outside: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let repo_dir = tempfile::tempdir().unwrap();
        let base_dir = tempfile::tempdir().unwrap();
        let base = base_dir.path().canonicalize().unwrap();
        let target = base.join("target");
        let outside = base.join("outside");
        std::fs::create_dir(&outside).unwrap();
        Scene {
            repo_path: repo_dir.path().join("repo"),
            _repo_dir: repo_dir,
            _base_dir: base_dir,
            base,
            target,
            outside,
        }
    }

    fn init_repo(&self) -> Repository {
        let opts =
            InitOptions { kdf: KdfParams { memory_kib: 19456, iterations: 1, parallelism: 1 }, ..Default::default() };
        Repository::init(Arc::new(LocalBackend::new(&self.repo_path)), PASSWORD.as_bytes(), opts).unwrap()
    }

    fn restore(&self) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("--repo")
            .arg(&self.repo_path)
            .args(["restore", "latest", "--target"])
            .arg(&self.target)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .env_remove("CAIRN_REPO")
            .output()
            .unwrap()
    }

    /// Names directly in `base`: only `target` and `outside` may be there.
    fn base_entries(&self) -> BTreeSet<String> {
        std::fs::read_dir(&self.base).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    /// Asserts that nothing was written next to the target or into the
    /// outside directory.
    fn assert_nothing_outside(&self) {
        let expected: BTreeSet<String> = ["outside".to_string(), "target".to_string()].into();
        assert_eq!(self.base_entries(), expected, "restore created entries next to its target");
        let inside: Vec<_> = std::fs::read_dir(&self.outside).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(inside.is_empty(), "restore wrote into the outside directory: {inside:?}");
    }

    /// Asserts the safe entries every malicious snapshot carries.
    fn assert_safe_entries_restored(&self) {
        assert_eq!(std::fs::read(self.target.join("safe.txt")).unwrap(), SAFE_CONTENT);
        assert!(std::fs::symlink_metadata(self.target.join("keep")).unwrap().is_dir());
        assert_eq!(std::fs::read(self.target.join("keep/inner.txt")).unwrap(), INNER_CONTENT);
    }
}

/// Every malicious snapshot here carries the safe entries (`safe.txt`,
/// `keep/inner.txt`) beside its bad ones.
trait CommitWithSafeEntries {
    fn commit(self, nodes: Vec<Node>) -> Id;
}

impl CommitWithSafeEntries for Builder<'_> {
    fn commit(mut self, mut nodes: Vec<Node>) -> Id {
        let safe = self.file(b"safe.txt", SAFE_CONTENT);
        let inner = self.file(b"inner.txt", INNER_CONTENT);
        let keep = self.dir(b"keep", vec![inner]);
        nodes.push(safe);
        nodes.push(keep);
        self.snapshot(nodes)
    }
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The restore finished with exit code 3 and named `path` as refused.
fn assert_refused(o: &Output, path: &str, reason: &str) {
    let err = stderr_of(o);
    assert_eq!(o.status.code(), Some(3), "restore should exit 3; stderr:\n{err}");
    let line = format!("  {path}: refused: {reason}");
    assert!(err.contains(&line), "stderr does not name the refused entry ({line:?}):\n{err}");
}

// ------------------------------------------------------------------ tests

#[test]
fn file_named_dotdot_slash_escape_is_refused_and_not_written_outside() {
    let s = Scene::new();
    let repo = s.init_repo();
    let mut b = Builder::new(&repo);
    let evil = b.file(b"../escape", EVIL_CONTENT);
    let evil2 = b.file(b"../outside/escape", EVIL_CONTENT);
    b.commit(vec![evil, evil2]);

    let o = s.restore();
    assert_refused(&o, "/../escape", "name contains `/`");
    assert_refused(&o, "/../outside/escape", "name contains `/`");
    assert!(!s.base.join("escape").exists());
    s.assert_nothing_outside();
    s.assert_safe_entries_restored();
}

#[test]
fn directory_named_dotdot_is_refused_and_its_contents_not_written_above_target() {
    let s = Scene::new();
    let repo = s.init_repo();
    let mut b = Builder::new(&repo);
    let pwned = b.file(b"pwned", EVIL_CONTENT);
    let inner_outside = b.file(b"pwned", EVIL_CONTENT);
    let outside_dir = b.dir(b"outside", vec![inner_outside]);
    let dotdot = b.dir(b"..", vec![pwned, outside_dir]);
    let dotdot_file = b.file(b"..", EVIL_CONTENT);
    b.commit(vec![dotdot, dotdot_file]);

    let o = s.restore();
    assert_refused(&o, "/..", "name is `.` or `..`");
    assert!(!s.base.join("pwned").exists());
    s.assert_nothing_outside();
    s.assert_safe_entries_restored();
}

#[test]
fn directory_named_dot_is_refused() {
    let s = Scene::new();
    let repo = s.init_repo();
    let mut b = Builder::new(&repo);
    let f = b.file(b"dot-file", EVIL_CONTENT);
    let dot = b.dir(b".", vec![f]);
    b.commit(vec![dot]);

    let o = s.restore();
    assert_refused(&o, "/.", "name is `.` or `..`");
    assert!(!s.target.join("dot-file").exists(), "the contents of `.` were merged into the target");
    s.assert_nothing_outside();
    s.assert_safe_entries_restored();
}

#[test]
fn name_with_slash_is_refused_and_no_intermediate_directory_is_created() {
    let s = Scene::new();
    let repo = s.init_repo();
    let mut b = Builder::new(&repo);
    let f = b.file(b"a/b", EVIL_CONTENT);
    let inner = b.file(b"x", EVIL_CONTENT);
    let d = b.dir(b"c/d", vec![inner]);
    b.commit(vec![f, d]);

    let o = s.restore();
    assert_refused(&o, "/a/b", "name contains `/`");
    assert_refused(&o, "/c/d", "name contains `/`");
    assert!(std::fs::symlink_metadata(s.target.join("a")).is_err(), "`a` was created for the name `a/b`");
    assert!(std::fs::symlink_metadata(s.target.join("c")).is_err(), "`c` was created for the name `c/d`");
    s.assert_nothing_outside();
    s.assert_safe_entries_restored();
}

#[test]
fn name_with_nul_byte_is_refused() {
    let s = Scene::new();
    let repo = s.init_repo();
    let mut b = Builder::new(&repo);
    let f = b.file(b"nul\0name", EVIL_CONTENT);
    // A NUL would cut the C string at "nul", so that must not appear either.
    b.commit(vec![f]);

    let o = s.restore();
    assert_refused(&o, "/nul\0name", "name contains a NUL byte");
    assert!(std::fs::symlink_metadata(s.target.join("nul")).is_err(), "the name was cut at the NUL and created");
    s.assert_nothing_outside();
    s.assert_safe_entries_restored();
}

#[test]
fn absolute_name_is_refused_and_not_joined_as_an_absolute_path() {
    let s = Scene::new();
    let repo = s.init_repo();
    let mut b = Builder::new(&repo);
    // `target.join("/abs/path")` would replace the target: use a path into
    // the outside directory so that an escape would be seen.
    let abs = format!("{}/abs-escape", s.outside.display());
    let f = b.file(abs.as_bytes(), EVIL_CONTENT);
    let etc = b.file(b"/etc/x", EVIL_CONTENT);
    b.commit(vec![f, etc]);

    let o = s.restore();
    assert_refused(&o, &format!("/{abs}"), "name contains `/`");
    assert_refused(&o, "//etc/x", "name contains `/`");
    assert!(!s.outside.join("abs-escape").exists());
    s.assert_nothing_outside();
    s.assert_safe_entries_restored();
}

#[test]
fn empty_name_is_refused() {
    let s = Scene::new();
    let repo = s.init_repo();
    let mut b = Builder::new(&repo);
    let f = b.file(b"", EVIL_CONTENT);
    let inner = b.file(b"under-empty", EVIL_CONTENT);
    let d = b.dir(b"", vec![inner]);
    b.commit(vec![f, d]);

    let o = s.restore();
    assert_refused(&o, "/", "empty name");
    assert!(!s.target.join("under-empty").exists(), "the contents of an empty-named directory landed in the target");
    s.assert_nothing_outside();
    s.assert_safe_entries_restored();
}

#[test]
fn duplicate_name_symlink_then_directory_does_not_write_through_the_symlink() {
    let s = Scene::new();
    let repo = s.init_repo();
    let mut b = Builder::new(&repo);
    // First `x` -> the outside directory, then a directory `x` with a file:
    // writing `x/pwned` would land in `outside/pwned`.
    let link = b.symlink(b"x", s.outside.as_os_str().as_encoded_bytes());
    let rel_link = b.symlink(b"y", b"../outside");
    let pwned = b.file(b"pwned", EVIL_CONTENT);
    let dir = b.dir(b"x", vec![pwned]);
    let pwned2 = b.file(b"pwned2", EVIL_CONTENT);
    let dir2 = b.dir(b"y", vec![pwned2]);
    b.commit(vec![link, dir, rel_link, dir2]);

    let o = s.restore();
    assert_refused(&o, "/x", "duplicate name in its directory");
    assert_refused(&o, "/y", "duplicate name in its directory");
    s.assert_nothing_outside();
    s.assert_safe_entries_restored();
    // The first entry of each name (the symlink) is what was restored.
    assert_eq!(std::fs::read_link(s.target.join("x")).unwrap(), s.outside);
    assert_eq!(std::fs::read_link(s.target.join("y")).unwrap(), Path::new("../outside"));
}

#[test]
fn duplicate_name_directory_then_symlink_restores_only_the_directory() {
    let s = Scene::new();
    let repo = s.init_repo();
    let mut b = Builder::new(&repo);
    let f = b.file(b"file", INNER_CONTENT);
    let dir = b.dir(b"x", vec![f]);
    let link = b.symlink(b"x", s.outside.as_os_str().as_encoded_bytes());
    b.commit(vec![dir, link]);

    let o = s.restore();
    assert_refused(&o, "/x", "duplicate name in its directory");
    s.assert_nothing_outside();
    s.assert_safe_entries_restored();
    let md = std::fs::symlink_metadata(s.target.join("x")).unwrap();
    assert!(md.is_dir(), "the later symlink replaced the directory");
    assert_eq!(std::fs::read(s.target.join("x/file")).unwrap(), INNER_CONTENT);
}

#[test]
fn preexisting_symlink_in_target_is_replaced_by_the_snapshot_directory_not_followed() {
    let s = Scene::new();
    let repo = s.init_repo();
    let mut b = Builder::new(&repo);
    let f = b.file(b"f", INNER_CONTENT);
    let d = b.dir(b"d", vec![f]);
    b.commit(vec![d]);

    std::fs::create_dir(&s.target).unwrap();
    std::os::unix::fs::symlink(&s.outside, s.target.join("d")).unwrap();

    let o = s.restore();
    // Nothing in the snapshot is refused: the stray symlink is removed and
    // a real directory takes its place.
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr_of(&o));
    s.assert_nothing_outside();
    s.assert_safe_entries_restored();
    let md = std::fs::symlink_metadata(s.target.join("d")).unwrap();
    assert!(md.is_dir() && !md.file_type().is_symlink(), "`d` is still a symlink");
    assert_eq!(std::fs::read(s.target.join("d/f")).unwrap(), INNER_CONTENT);
}

#[test]
fn preexisting_symlink_in_target_where_snapshot_has_a_file_does_not_overwrite_its_referent() {
    let s = Scene::new();
    let repo = s.init_repo();
    let mut b = Builder::new(&repo);
    let f = b.file(b"victim", EVIL_CONTENT);
    b.commit(vec![f]);

    let victim = s.base.join("victim-outside");
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::create_dir(&s.target).unwrap();
    std::os::unix::fs::symlink(&victim, s.target.join("victim")).unwrap();

    let o = s.restore();
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr_of(&o));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "restore wrote through a symlink in the target");
    let md = std::fs::symlink_metadata(s.target.join("victim")).unwrap();
    assert!(md.is_file(), "`victim` in the target is not a regular file");
    assert_eq!(std::fs::read(s.target.join("victim")).unwrap(), EVIL_CONTENT);
    std::fs::remove_file(&victim).unwrap();
    s.assert_nothing_outside();
    s.assert_safe_entries_restored();
}

#[test]
fn bug_preexisting_hard_link_in_target_let_restore_modify_the_file_outside() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scene::new();
    let repo = s.init_repo();
    let mut b = Builder::new(&repo);
    // Same size as the victim's content, so only the bytes differ.
    let mut f = b.file(b"victim", b"SNAPSHOT-CONTENT");
    f.mode = 0o666;
    b.commit(vec![f]);

    let victim = s.base.join("victim-outside");
    std::fs::write(&victim, b"precious-secret!").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(&s.target).unwrap();
    std::fs::hard_link(&victim, s.target.join("victim")).unwrap();

    let o = s.restore();
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr_of(&o));
    assert_eq!(std::fs::read(s.target.join("victim")).unwrap(), b"SNAPSHOT-CONTENT");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious-secret!",
        "restore wrote into a file outside the target through a hard link"
    );
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "restore changed the mode of a file outside the target");
    std::fs::remove_file(&victim).unwrap();
    s.assert_nothing_outside();
    s.assert_safe_entries_restored();
}

/// Makes a directory unwritable for the test's lifetime: `chattr +i` as
/// root (permissions do not stop root), mode 0555 otherwise. Undone on drop.
struct Unwritable(PathBuf, bool);

impl Unwritable {
    fn new(dir: &Path) -> Option<Unwritable> {
        use std::os::unix::fs::PermissionsExt;
        if nix::unistd::geteuid().is_root() {
            let ok = Command::new("chattr").arg("+i").arg(dir).output().is_ok_and(|o| o.status.success());
            ok.then(|| Unwritable(dir.to_path_buf(), true))
        } else {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            Some(Unwritable(dir.to_path_buf(), false))
        }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).output();
        } else {
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn bug_symlink_that_cannot_be_replaced_by_a_directory_was_written_through() {
    let s = Scene::new();
    let repo = s.init_repo();
    let mut b = Builder::new(&repo);
    let f = b.file(b"f", EVIL_CONTENT);
    let d = b.dir(b"d", vec![f]);
    b.commit(vec![d]);

    std::fs::create_dir(&s.target).unwrap();
    std::os::unix::fs::symlink(&s.outside, s.target.join("d")).unwrap();
    // Never skipped in silence: a test that cannot set up its scene fails.
    let guard = Unwritable::new(&s.target).expect(
        "cannot make a directory unwritable: `chattr +i` failed (as root, the file system must support \
         immutable files; run the tests as a non-root user otherwise)",
    );
    let o = s.restore();
    drop(guard);
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(3), "stderr:\n{err}");
    assert!(err.contains("  d: "), "the directory that could not be created is not named:\n{err}");
    assert!(!s.outside.join("f").exists(), "restore wrote through the symlink `d` into the outside directory");
    s.assert_nothing_outside();
}

// ------------------------------------------- restore over an existing tree

fn cli(repo: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env_remove("CAIRN_PASSWORD_FILE")
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .env_remove("CAIRN_REPO")
        .output()
        .unwrap()
}

fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

#[test]
fn restore_over_existing_copy_rewrites_only_the_modified_file() {
    let work = tempfile::tempdir().unwrap();
    let work_path = work.path().canonicalize().unwrap();
    let repo = work_path.join("repo");
    let src = work_path.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a.bin", pseudo_random(20_000, 1)),
        ("b.bin", pseudo_random(33_333, 2)),
        ("sub/c.bin", pseudo_random(7_000, 3)),
        ("sub/d.txt", b"hello, small file\n".to_vec()),
    ];
    for (name, data) in &files {
        std::fs::write(src.join(name), data).unwrap();
    }

    let o = cli(&repo, &["init", "--kdf-memory-kib", "19456"]);
    assert!(o.status.success(), "init: {}", stderr_of(&o));
    let o = cli(&repo, &["backup", src.to_str().unwrap()]);
    assert!(o.status.success(), "backup: {}", stderr_of(&o));

    let target = work_path.join("restored");
    let o = cli(&repo, &["--json", "restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(o.status.success(), "first restore: {}", stderr_of(&o));
    let first: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let total: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(first["report"]["bytes_written"], total, "a fresh restore writes every byte");

    // Backups keep the absolute path: the copy is under target/<src>.
    let copy = target.join(src.strip_prefix("/").unwrap());
    for (name, data) in &files {
        assert_eq!(&std::fs::read(copy.join(name)).unwrap(), data, "{name} differs after the first restore");
    }

    // Damage one file in the copy, keeping its size.
    let victim = copy.join("b.bin");
    let mut changed = files[1].1.clone();
    for b in &mut changed[10_000..10_100] {
        *b ^= 0xff;
    }
    std::fs::write(&victim, &changed).unwrap();

    let o = cli(&repo, &["--json", "restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(o.status.success(), "second restore: {}", stderr_of(&o));
    let second: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let report = &second["report"];
    // Files this small are one chunk each: only b.bin is written again.
    assert_eq!(report["bytes_written"], files[1].1.len() as u64, "report: {report}");
    assert_eq!(report["files"], files.len() as u64);
    assert_eq!(report["files_unchanged"], files.len() as u64 - 1);
    for (name, data) in &files {
        assert_eq!(&std::fs::read(copy.join(name)).unwrap(), data, "{name} differs after the second restore");
    }
}
