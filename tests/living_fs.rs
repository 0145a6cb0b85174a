//! Living file systems: files that vanish, change or cannot be read during
//! a backup are warned about and recorded; the backup goes on.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn::backend::LocalBackend;
use cairn::backup::{self, BackupOptions, Progress, Source};
use cairn::crypto::KdfParams;
use cairn::repo::{InitOptions, Repository};
use common::*;

/// A temporary directory holding an empty source directory `src` and a
/// repository with the cheapest key derivation.
fn source_and_repository() -> (tempfile::TempDir, std::path::PathBuf, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let opts =
        InitOptions { kdf: KdfParams { memory_kib: 19456, iterations: 1, parallelism: 1 }, ..Default::default() };
    let repo = Repository::init(Arc::new(LocalBackend::new(dir.path().join("repo"))), b"pw", opts).unwrap();
    (dir, src, repo)
}

/// Deletes one file and rewrites another between the scan's `lstat` and
/// the read.
struct Meddler<'a> {
    vanish: &'a Path,
    rewrite: &'a Path,
}

impl Progress for Meddler<'_> {
    fn queued(&self, path: &Path) {
        if path == self.vanish {
            std::fs::remove_file(self.vanish).unwrap();
        } else if path == self.rewrite {
            std::fs::write(self.rewrite, b"new and longer content than before").unwrap();
        }
    }
}

#[test]
fn a_file_that_vanishes_is_recorded_and_the_backup_goes_on() {
    let (_dir, src, repo) = source_and_repository();
    for i in 0..20 {
        std::fs::write(src.join(format!("f{i}")), format!("content {i}")).unwrap();
    }
    let meddler = Meddler { vanish: &src.join("f3"), rewrite: &src.join("f4") };
    let report = backup::run(&repo, Source::Paths(vec![src.clone()]), &BackupOptions::default(), &meddler).unwrap();
    let s = &report.snapshot.summary;
    assert!(report.incomplete(), "a vanished file makes the backup incomplete (exit 3)");
    assert_eq!(s.skipped.len(), 1);
    assert!(s.skipped[0].path.ends_with("/f3") && s.skipped[0].reason.contains("vanished"), "{:?}", s.skipped);
    assert_eq!(s.files_total, 19);
    // The rewritten file is stored as it was read, with matching size.
    let index = repo.load_index().unwrap();
    let node =
        cairn::repo::tree::lookup(&repo, &index, &report.snapshot.tree, format!("{}/f4", src.display()).as_bytes())
            .unwrap()
            .unwrap();
    assert_eq!(node.size, 34);
    let data: Vec<u8> = node.content.iter().flat_map(|c| repo.read_blob(&index, c).unwrap()).collect();
    assert_eq!(data, b"new and longer content than before");
}

#[test]
fn unreadable_files_are_listed_and_the_exit_code_is_3() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("readable"), b"fine").unwrap();
    std::fs::write(src.join("secret"), b"no").unwrap();
    std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = env.command();
    let cairn = common::cairn_for_other_users();
    if is_root() {
        // Root reads anything: run cairn as an unprivileged user instead.
        for p in [env.dir.path(), &env.repo] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        chmod_recursive(&env.repo);
        cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&cairn.path)
            .env("CAIRN_REPO", &env.repo)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("HOME", env.dir.path());
    }
    let out = cmd.args(["backup", src.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(
        stderr.contains("secret") && stderr.contains("ermission denied"),
        "the file and reason are named: {stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim().len(), 64, "a snapshot was still written");
}

fn chmod_recursive(p: &Path) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chmod_recursive(&e.unwrap().path());
        }
    }
}

#[test]
fn a_file_growing_while_read_gets_a_warning_and_is_recorded() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    let log = src.join("growing.log");
    std::fs::write(&log, random_bytes(32 << 20, 3)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(b"more log\n").unwrap();
            }
        })
    };
    let out = env.cairn(&["backup", "--json", src.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "a changed file is a warning, not a failure: {stderr}");
    assert!(stderr.contains("growing.log") && stderr.contains("changed while it was read"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changed = v["summary"]["changed_during_backup"].as_array().unwrap();
    assert!(changed[0].as_str().unwrap().ends_with("growing.log"));
    // The next backup reads it again rather than trusting the old chunks.
    let next = env.backup_json(&[&src], &[]);
    assert!(next["summary"]["bytes_read"].as_u64().unwrap() > 0);
}

/// Swaps the source directory for another once the scan queues `a`: the
/// scan holds the old one's handle and goes on in it.
struct Swapper<'a> {
    at: &'a Path,
    src: &'a Path,
    moved: &'a Path,
}

impl Progress for Swapper<'_> {
    fn queued(&self, path: &Path) {
        if path == self.at {
            std::fs::rename(self.src, self.moved).unwrap();
            std::fs::create_dir_all(self.src.join("z")).unwrap();
            std::fs::write(self.src.join("z/f"), b"planted").unwrap();
            xattr::set(self.src.join("z/f"), "user.who", b"planted").unwrap();
        }
    }
}

#[test]
fn bug_the_scan_read_a_file_and_its_xattrs_by_a_path_a_local_user_could_swap_under_it() {
    let (dir, src, repo) = source_and_repository();
    std::fs::create_dir(src.join("z")).unwrap();
    std::fs::write(src.join("a"), b"first").unwrap();
    std::fs::write(src.join("z/f"), b"scanned").unwrap();
    xattr::set(src.join("z/f"), "user.who", b"scanned").unwrap();
    let moved = dir.path().join("moved");
    let swapper = Swapper { at: &src.join("a"), src: &src, moved: &moved };
    let report = backup::run(&repo, Source::Paths(vec![src.clone()]), &BackupOptions::default(), &swapper).unwrap();
    assert!(moved.join("z/f").exists(), "the swap happened during the scan");
    let index = repo.load_index().unwrap();
    let node =
        cairn::repo::tree::lookup(&repo, &index, &report.snapshot.tree, format!("{}/z/f", src.display()).as_bytes())
            .unwrap()
            .unwrap();
    let who: Vec<&[u8]> = node.xattrs.iter().filter(|x| x.name == b"user.who").map(|x| x.value.as_slice()).collect();
    assert_eq!(who, [&b"scanned"[..]], "the xattrs of the file whose content was stored");
    let data: Vec<u8> = node.content.iter().flat_map(|c| repo.read_blob(&index, c).unwrap()).collect();
    assert_eq!(data, b"scanned");
}

/// Puts a FIFO in the place of `fifo` once the scan queues it.
struct Fifo<'a> {
    fifo: &'a Path,
}

impl Progress for Fifo<'_> {
    fn queued(&self, path: &Path) {
        if path == self.fifo {
            std::fs::remove_file(self.fifo).unwrap();
            nix::unistd::mkfifo(self.fifo, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).unwrap();
        }
    }
}

#[test]
fn bug_a_file_swapped_for_a_fifo_before_it_was_read_held_the_backup_for_ever() {
    let (_dir, src, repo) = source_and_repository();
    std::fs::write(src.join("a"), b"kept").unwrap();
    std::fs::write(src.join("p"), b"a file when scanned").unwrap();
    // The old code blocked in `open` for ever: a minute is the guard.
    let (tx, rx) = std::sync::mpsc::channel();
    let p = src.join("p");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let fifo = Fifo { fifo: &p };
            let _ = tx.send(backup::run(&repo, Source::Paths(vec![src.clone()]), &BackupOptions::default(), &fifo));
        });
        let report = rx.recv_timeout(std::time::Duration::from_secs(60));
        if report.is_err() {
            // Unblock the reader so that the scope can end, then fail.
            let _ = std::fs::OpenOptions::new().write(true).open(&p);
        }
        let report = report.expect("the backup ended").unwrap();
        let s = &report.snapshot.summary;
        assert_eq!(s.skipped.len(), 1, "{:?}", s.skipped);
        assert!(s.skipped[0].path.ends_with("/p") && s.skipped[0].reason.contains("regular file"), "{:?}", s.skipped);
        assert_eq!(s.files_total, 1);
    });
}

/// Renames `other` over `target` once the scan queues `target`: another
/// inode under the name the scan statted.
struct Replacer<'a> {
    target: &'a Path,
    other: &'a Path,
}

impl Progress for Replacer<'_> {
    fn queued(&self, path: &Path) {
        if path == self.target {
            std::fs::rename(self.other, self.target).unwrap();
        }
    }
}

#[test]
fn bug_a_file_replaced_by_another_between_the_scan_and_the_read_was_stored_as_the_scanned_one() {
    let (_dir, src, repo) = source_and_repository();
    std::fs::write(src.join("f"), b"scanned").unwrap();
    std::fs::write(src.join("z"), b"put in its place").unwrap();
    let replacer = Replacer { target: &src.join("f"), other: &src.join("z") };
    let report = backup::run(&repo, Source::Paths(vec![src.clone()]), &BackupOptions::default(), &replacer).unwrap();
    let s = &report.snapshot.summary;
    assert!(s.skipped.iter().any(|k| k.path.ends_with("/f") && k.reason.contains("replaced")), "{:?}", s.skipped);
    let index = repo.load_index().unwrap();
    let f = format!("{}/f", src.display());
    let node = cairn::repo::tree::lookup(&repo, &index, &report.snapshot.tree, f.as_bytes()).unwrap();
    assert!(node.is_none_or(|n| n.content.is_empty()), "no content of another inode under its name");
}
