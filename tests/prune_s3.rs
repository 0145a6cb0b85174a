//! Backups and prunes side by side on S3 (a real Garage server): the twenty
//! rounds of `tests/prune_rounds`, each making garbage and then running a
//! backup and a prune together. Every command exits 0, each round's prune
//! deletes the packs a forgotten snapshot alone held (and nothing but
//! garbage), and afterwards the data checks and every snapshot restores
//! byte-exact. Marks are dated by Garage's clock (its `Date` headers).

mod common;
mod garage;
mod prune_rounds;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{assert_same_tree, random_bytes, restored, Pause, PASSWORD};
use garage::Garage;

const LIMIT: Duration = Duration::from_secs(300);

struct S3Env {
    garage: Garage,
    dir: tempfile::TempDir,
    url: String,
}

impl S3Env {
    fn new() -> S3Env {
        let garage = Garage::start();
        let url = garage.url("repo");
        S3Env { garage, dir: tempfile::tempdir().unwrap(), url }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        self.garage.apply_env(&mut c);
        c.env("CAIRN_REPO", &self.url)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.dir.path().join("cache"))
            .env("CAIRN_STATE_DIR", self.dir.path().join("state"))
            // As in `tests/common`: delete in a second pass what no running
            // backup holds, so that each prune can free garbage.
            .env("CAIRN_PRUNE_SAFETY_MARGIN", "0s")
            .stdin(Stdio::null());
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().unwrap();
        assert!(out.status.success(), "cairn {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }
}

fn restore_all_exactly(e: &S3Env, src: &Path) {
    let snaps: serde_json::Value = serde_json::from_str(&e.ok(&["snapshots", "--json"])).unwrap();
    let snaps = snaps.as_array().unwrap();
    for (i, s) in snaps.iter().enumerate() {
        let t = e.path(&format!("restore-{i}"));
        e.ok(&["restore", s["id"].as_str().unwrap(), "--target", t.to_str().unwrap(), "--verify"]);
        if i + 1 == snaps.len() {
            assert_same_tree(src, &restored(&t, src));
        }
        std::fs::remove_dir_all(&t).unwrap();
    }
}

#[test]
fn twenty_overlapping_backups_and_prunes_on_garage_all_succeed_and_free_the_garbage() {
    let e = S3Env::new();
    e.ok(&["init", "--kdf-memory-kib", "19456", "--chunk-sizes", "16384,65536,262144", "--pack-size-mib", "1"]);
    let src = e.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..4 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(300_000, 10 + i)).unwrap();
    }
    e.ok(&["backup", src.to_str().unwrap()]);
    let mut pause = Pause::new(e.path("pause"));
    prune_rounds::run(&|| e.command(), &src, &mut pause, LIMIT);
    e.ok(&["prune"]);
    let check = e.command().args(["check", "--read-data"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    restore_all_exactly(&e, &src);
}
