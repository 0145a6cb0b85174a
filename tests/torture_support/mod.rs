//! The torture harness's shared parts (`tests/torture.rs` against a local
//! repository, `tests/torture_garage.rs` against Garage): the seeded
//! generator, raw access to a repository's objects (to copy it for a dry
//! run, and to damage it), and the cairn commands of one repository.
//!
//! - `kills`: rounds of backup, forget + prune and key add, each killed
//!   with SIGKILL at a pass of a failpoint that a dry run of the same
//!   command on a copy of the repository showed will come.
//! - `corruptions`: flip, truncate, zero, delete, swap and resurrect on
//!   every kind of file.
#![allow(dead_code)]

pub mod corruptions;
pub mod kills;
mod store;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[allow(unused_imports, reason = "tests/torture.rs has no use for the S3 store")]
pub use store::{copy_into, LocalStore, S3Store, Store};

use crate::common::PASSWORD;

pub use crate::common::rng::Rng;

/// A number from the environment (the full run's size), or `default` (the
/// short slice the test suite runs).
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A repository under torture: its objects (`store`), and a directory of
/// its own for the source, the restores, cairn's state and cache, and the
/// records of failpoint passes.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub store: Box<dyn Store>,
    /// What cairn needs besides (S3 credentials and endpoint).
    env: Vec<(String, String)>,
}

impl Repo {
    /// A repository in `store`, initialised with test-sized chunks and packs
    /// and a cheap key derivation, as `tests/common` makes them.
    pub fn init(dir: tempfile::TempDir, store: Box<dyn Store>, env: Vec<(String, String)>) -> Repo {
        let repo = Repo { dir, store, env };
        repo.ok(&["init", "--kdf-memory-kib", "19456", "--chunk-sizes", "16384,65536,262144", "--pack-size-mib", "1"]);
        repo
    }

    /// A local repository in a temporary directory.
    pub fn local() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("repo"));
        Repo::init(dir, Box::new(store), Vec::new())
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// cairn on the repository in `store` (this one or a scratch copy), with
    /// its state and cache under `home` in this run's directory.
    pub fn command_on(&self, store: &dyn Store, home: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env("CAIRN_REPO", store.url())
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_STATE_DIR", self.path(home).join("state"))
            .env("CAIRN_CACHE_DIR", self.path(home).join("cache"))
            // As in `tests/common`: prunes delete what they marked at once
            // when no running backup holds it, so a kill can land there.
            .env("CAIRN_PRUNE_SAFETY_MARGIN", "0s")
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .env_remove("CAIRN_TEST_KILL_AT")
            .env_remove("CAIRN_TEST_HITS_FILE")
            .stdin(std::process::Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn command(&self) -> Command {
        self.command_on(&*self.store, "home")
    }

    pub fn cairn(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs cairn and asserts it succeeded; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        assert!(out.status.success(), "cairn {args:?} failed ({:?}): {}", out.status, text(&out.stderr));
        text(&out.stdout)
    }

    /// The cache, which a corruption trial empties so that nothing read
    /// before the damage hides it.
    pub fn cache_dir(&self) -> PathBuf {
        self.path("home").join("cache")
    }

    /// The ids and times of the listed snapshots.
    pub fn snapshots(&self) -> Vec<(String, String)> {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["snapshots", "--json"])).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].as_str().unwrap().to_string(), s["time"].as_str().unwrap().to_string()))
            .collect()
    }
}

/// The files of a source directory, by name.
pub type Content = std::collections::BTreeMap<String, Vec<u8>>;

pub fn read_content(dir: &Path) -> Content {
    let mut c = Content::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        c.insert(e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap());
    }
    c
}

/// Restores snapshot `id` with `--verify` into a fresh directory; returns
/// the output and what was restored of the source.
pub fn restore(repo: &Repo, id: &str, src: &Path, n: usize) -> (Output, Option<Content>) {
    let target = repo.path(&format!("restore-{n}"));
    let out = repo.cairn(&["restore", id, "--verify", "--target", target.to_str().unwrap()]);
    let got = crate::common::restored(&target, src);
    let content = got.is_dir().then(|| read_content(&got));
    let _ = std::fs::remove_dir_all(&target);
    (out, content)
}
