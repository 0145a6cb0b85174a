//! Nothing already written is ever replaced, and nothing outside `locks/`
//! is removed except by maintenance (forget, prune, key remove): the
//! local backend's half of invariant 7. (`tests/s3_conditional.rs` shows
//! the same on Garage, `tests/immutable.rs` against AWS's rules on moto.)

mod common;
mod drill_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn::backend::{Backend, BackendResult, LocalBackend, ObjectInfo};
use cairn::repo::Repository;
use common::*;
use drill_support::Fixture;

/// Every object of the repository outside `locks/`, with its bytes' hash.
fn objects(repo: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![repo.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(repo).unwrap().to_string_lossy().into_owned();
                if !rel.starts_with("locks/") {
                    out.insert(rel, blake3::hash(&std::fs::read(e.path()).unwrap()).to_hex().to_string());
                }
            }
        }
    }
    out
}

#[test]
fn backups_checks_restores_drills_and_evidence_never_remove_or_replace_an_object() {
    let f = Fixture::new("");
    f.backup(&[]);
    let before = objects(&f.env.repo);
    assert!(before.keys().any(|k| k.starts_with("snapshots/")) && before.contains_key("config"));
    // Everything a backup host does, twice over, with changed data in between.
    std::fs::write(f.src.join("data4.bin"), random_bytes(300_000, 99)).unwrap();
    f.backup(&[]);
    f.backup(&[]);
    f.env.ok(&["check", "--read-data"]);
    let t = f.env.path("t");
    f.env.ok(&["restore", "latest", "--target", t.to_str().unwrap(), "--verify"]);
    f.drill_report(&["--full"], 0);
    f.env.ok(&["evidence", "export", "--out", f.env.path("ev").to_str().unwrap()]);
    let after = objects(&f.env.repo);
    for (k, h) in &before {
        assert_eq!(after.get(k), Some(h), "{k} was removed or replaced");
    }
    assert!(after.len() > before.len(), "the later backups and the drill added objects");
    // Locks are released: the one directory where objects come and go is empty again.
    let locks = f.env.repo.join("locks");
    assert!(!locks.exists() || objects_in(&locks) == 0, "a lock was left behind");
}

fn objects_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                objects_in(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// A repository whose first evidence record write meets a racing
/// appender: just before it, another process stores the same seq.
struct RacingAppender {
    inner: LocalBackend,
    raced: AtomicBool,
}

impl Backend for RacingAppender {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
        self.inner.get_range(key, offset, length)
    }
    fn put(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        if key.starts_with("evidence/records/") && !self.raced.swap(true, Ordering::SeqCst) {
            self.inner.put(key, b"the other appender's record").unwrap();
        }
        self.inner.put(key, data)
    }
    fn put_mutable(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.inner.put_mutable(key, data)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> BackendResult<()> {
        self.inner.delete(key)
    }
    fn stat(&self, key: &str) -> BackendResult<u64> {
        self.inner.stat(key)
    }
}

#[test]
fn an_evidence_record_stored_meanwhile_by_another_appender_is_not_overwritten_and_the_error_names_it() {
    let env = Env::new();
    let racing = Arc::new(RacingAppender { inner: LocalBackend::new(&env.repo), raced: AtomicBool::new(false) });
    let repo = Repository::open(racing, PASSWORD.as_bytes()).unwrap();
    // Record 0 is `init`; this append writes record 1, which the other
    // appender stored a moment before.
    let e = cairn::evidence::append(&repo, "backup", None, serde_json::json!({})).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("evidence/records/000000000001") && msg.contains("never replaces"), "{msg}");
    let stored = std::fs::read(env.repo.join("evidence/records/000000000001")).unwrap();
    assert_eq!(stored, b"the other appender's record", "the chain was not forked by an overwrite");
}

/// The local backend's puts are create-only by construction, so `init`
/// records it as honouring create-only writes and warns of nothing. It
/// used to fall back to the trait's "unknown storage" answer and greet
/// every new local repository with the If-None-Match warning.
#[test]
fn bug_a_new_local_repository_is_recorded_as_create_only_and_init_warns_of_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["--repo", repo.to_str().unwrap(), "init", "--kdf-memory-kib", "19456"])
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_CACHE_DIR", dir.path().join("cache"))
        .env_remove("CAIRN_PASSWORD_FILE")
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "a local init warns of nothing: {stderr}");
    let opened = Repository::open(Arc::new(LocalBackend::new(&repo)), PASSWORD.as_bytes()).unwrap();
    assert_eq!(opened.config().storage.conditional_put, Some(true));
}
