//! `check` finds damage, names it, and restore says which files it hits.
//!
//! A tree of random (incompressible) files of 1-3 MB is backed up with the
//! real binary into a repository with 1 MiB packs, so the data spans
//! several packs. Then one stored object is damaged on disk (a byte flipped
//! inside a blob of a data pack, a byte flipped in an index file, a pack
//! deleted) and `check`, `check --read-data`, `check --read-data-subset`
//! and `restore` are run against it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use cairn::backend::LocalBackend;
use cairn::repo::tree::walk;
use cairn::repo::{pack_key, BlobKind, NodeKind, Repository};
use cairn::Id;

const PASSWORD: &str = "correct horse battery staple 0x5eed";
const WRONG_PASSWORD: &str = "definitely-not-the-passphrase-91c2";

// ---------------------------------------------------------------- helpers

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn cairn(repo: &Path, password: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("CAIRN_PASSWORD", password)
        .env_remove("CAIRN_PASSWORD_FILE")
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .env_remove("CAIRN_REPO")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn flip_byte(path: &Path, at: u64) {
    let mut data = std::fs::read(path).unwrap();
    assert!((at as usize) < data.len(), "offset {at} beyond {}", path.display());
    data[at as usize] ^= 0x5a;
    std::fs::write(path, data).unwrap();
}

/// A data pack: its storage key and its blobs as (id, offset, length).
type DataPack = (String, Vec<(Id, u32, u32)>);

/// A backed-up source tree and its repository.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    /// Files as (absolute path in the snapshot, content).
    files: Vec<(String, Vec<u8>)>,
}

impl Fixture {
    /// Backs up several incompressible files of 1-3 MB (plus a small one)
    /// into a repository with 1 MiB packs.
    fn new() -> Fixture {
        Self::with_files(&[
            ("alpha.bin", 1_200_000),
            ("beta.bin", 2_600_000),
            ("sub/gamma.bin", 3_000_000),
            ("sub/delta.bin", 1_700_000),
            ("sub/deeper/epsilon.bin", 1_100_000),
            ("small.txt", 300),
        ])
    }

    fn with_files(spec: &[(&str, usize)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let repo = root.join("repo");
        let src = root.join("src");
        let mut files = Vec::new();
        for (i, (name, len)) in spec.iter().enumerate() {
            let p = src.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let data = random_bytes(*len, i as u64 + 1);
            std::fs::write(&p, &data).unwrap();
            files.push((p.display().to_string(), data));
        }
        let o = cairn(&repo, PASSWORD, &["init", "--kdf-memory-kib", "19456", "--pack-size-mib", "1"]);
        assert!(o.status.success(), "init failed: {}", text(&o.stderr));
        let o = cairn(&repo, PASSWORD, &["backup", src.to_str().unwrap()]);
        assert!(o.status.success(), "backup failed: {}", text(&o.stderr));
        Fixture { _dir: dir, root, repo, files }
    }

    fn run(&self, args: &[&str]) -> Output {
        cairn(&self.repo, PASSWORD, args)
    }

    fn open(&self) -> Repository {
        Repository::open(Arc::new(LocalBackend::new(&self.repo)), PASSWORD.as_bytes()).unwrap()
    }

    /// The only snapshot's id.
    fn snapshot(&self) -> Id {
        let snaps = self.open().list_snapshots().unwrap().snapshots;
        assert_eq!(snaps.len(), 1);
        snaps[0].0
    }

    /// Files (snapshot paths) whose content uses any of `blobs`.
    fn files_using(&self, blobs: &BTreeSet<Id>) -> BTreeSet<String> {
        let repo = self.open();
        let index = repo.load_index().unwrap();
        let (_, snap) = repo.find_snapshot("latest").unwrap();
        let mut out = BTreeSet::new();
        walk(&repo, &index, &snap.tree, b"", &mut |path, n| {
            if n.kind == NodeKind::File && n.content.iter().any(|c| blobs.contains(c)) {
                out.insert(String::from_utf8(path.to_vec()).unwrap());
            }
            Ok(true)
        })
        .unwrap();
        out
    }

    /// Data packs as (storage key, blobs in it as (id, offset, length)).
    fn data_packs(&self) -> Vec<DataPack> {
        let repo = self.open();
        let index = repo.load_index().unwrap();
        // Full ids from the pack headers (the index keeps id prefixes).
        let by_pack: Vec<_> = index.packs().iter().map(|p| repo.read_pack_header(&p.id, p.size).unwrap()).collect();
        let mut out: Vec<_> = index
            .packs()
            .iter()
            .enumerate()
            .filter(|(_, p)| p.kind == BlobKind::Data)
            .map(|(n, p)| (pack_key(&p.id), by_pack[n].iter().map(|e| (e.id, e.offset, e.length)).collect()))
            .collect();
        out.sort();
        out
    }

    /// Flips one byte in the middle of the first blob of a data pack.
    /// Returns the pack's key and the snapshot files that use that blob.
    fn damage_one_data_pack(&self) -> (String, BTreeSet<String>) {
        let packs = self.data_packs();
        assert!(packs.len() >= 2, "the data should span 2+ packs, got {}", packs.len());
        // The first large blob: small files' blobs are too short to aim at.
        let (key, (id, offset, length)) = packs
            .iter()
            .find_map(|(key, blobs)| blobs.iter().find(|b| b.2 > 1000).map(|b| (key, *b)))
            .expect("a blob of more than 1000 bytes");
        flip_byte(&self.repo.join(key), offset as u64 + length as u64 / 2);
        let affected = self.files_using(&[id].into());
        assert!(!affected.is_empty(), "no file uses the damaged blob");
        assert!(affected.len() < self.files.len(), "every file is affected: nothing to compare against");
        (key.clone(), affected)
    }

    fn index_ids(&self) -> Vec<String> {
        std::fs::read_dir(self.repo.join("index"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Where a snapshot path lands under a restore target.
    fn restored(&self, target: &Path, snapshot_path: &str) -> PathBuf {
        target.join(snapshot_path.trim_start_matches('/'))
    }
}

/// The `affected:` lines of `check` output, as (snapshot, path).
fn affected_lines(stdout: &str) -> BTreeSet<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("affected: snapshot "))
        .map(|rest| {
            let (s, p) = rest.split_once(' ').unwrap();
            (s.to_string(), p.to_string())
        })
        .collect()
}

fn assert_reports_damaged_pack(o: &Output, key: &str, snapshot: &Id, affected: &BTreeSet<String>) {
    let out = text(&o.stdout);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "check should exit 5 (integrity)\nstdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(&format!("damaged pack: {key}")), "the damaged pack {key} is not named:\n{out}");
    assert!(out.contains(&format!("error: {key}: blob ")), "no blob error for {key}:\n{out}");
    let expected: BTreeSet<(String, String)> = affected.iter().map(|p| (snapshot.short(), p.clone())).collect();
    assert_eq!(affected_lines(&out), expected, "affected files differ:\n{out}");
}

// ------------------------------------------------------------------ tests

#[test]
fn flipped_byte_in_data_pack_is_found_by_read_data_with_pack_snapshot_and_files() {
    let f = Fixture::new();
    let o = f.run(&["check", "--read-data"]);
    assert_eq!(o.status.code(), Some(0), "the fresh repository should check clean: {}", text(&o.stdout));

    let (key, affected) = f.damage_one_data_pack();
    let snapshot = f.snapshot();

    // Structure alone does not read pack contents: the pack is there with
    // the right size, so a structure check still passes.
    let o = f.run(&["check"]);
    assert_eq!(o.status.code(), Some(0), "structure check: {}\n{}", text(&o.stdout), text(&o.stderr));

    let o = f.run(&["check", "--read-data"]);
    assert_reports_damaged_pack(&o, &key, &snapshot, &affected);
    // Exactly one pack is damaged.
    let out = text(&o.stdout);
    assert_eq!(out.lines().filter(|l| l.starts_with("damaged pack: ")).count(), 1, "{out}");
}

#[test]
fn read_data_json_report_lists_damaged_pack_and_affected_files() {
    let f = Fixture::new();
    let (key, affected) = f.damage_one_data_pack();
    let snapshot = f.snapshot();
    let o = f.run(&["--json", "check", "--read-data"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["damaged_packs"], serde_json::json!([key]));
    let got: BTreeSet<(String, String)> = v["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["snapshot"].as_str().unwrap().to_string(), a["path"].as_str().unwrap().to_string()))
        .collect();
    let expected: BTreeSet<(String, String)> = affected.iter().map(|p| (snapshot.short(), p.clone())).collect();
    assert_eq!(got, expected);
    assert!(v["errors"].as_array().unwrap().iter().any(|e| e["object"] == key.as_str()));
}

#[test]
fn read_data_subset_100_percent_finds_the_same_damage() {
    let f = Fixture::new();
    let (key, affected) = f.damage_one_data_pack();
    let snapshot = f.snapshot();
    let full = f.run(&["check", "--read-data"]);
    let subset = f.run(&["check", "--read-data-subset", "100%"]);
    assert_reports_damaged_pack(&subset, &key, &snapshot, &affected);
    // Same problems, whatever order the packs were read in.
    let lines = |o: &Output| -> BTreeSet<String> {
        text(&o.stdout).lines().filter(|l| !l.starts_with("checked ")).map(str::to_string).collect()
    };
    assert_eq!(lines(&subset), lines(&full));
    // 100% means every pack, data and tree.
    let all_packs = f.open().load_index().unwrap().packs().len();
    let err = text(&subset.stderr);
    assert!(err.contains(&format!("; read {all_packs} packs")), "not every pack was read:\n{err}");
}

#[test]
fn restore_with_damaged_pack_exits_3_names_affected_files_and_restores_the_rest_exactly() {
    let f = Fixture::new();
    let (_key, affected) = f.damage_one_data_pack();
    let target = f.root.join("restored");
    let o = f.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "restore should exit 3\nstderr:\n{err}");

    // Failure lines are `  <relative path>: <reason>`.
    let failed: BTreeSet<String> = err
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_once(": ").map(|(p, _)| format!("/{p}")))
        .collect();
    assert_eq!(failed, affected, "restore named the wrong files:\n{err}");
    assert!(err.contains("is damaged"), "the reason does not say the chunk is damaged:\n{err}");

    for (path, data) in &f.files {
        if affected.contains(path) {
            continue;
        }
        let got = std::fs::read(f.restored(&target, path)).unwrap();
        assert!(got == *data, "{path} was not restored byte for byte");
    }
}

#[test]
fn wrong_password_fails_with_exit_12_and_never_echoes_a_password() {
    let f = Fixture::with_files(&[("tiny.txt", 100)]);
    let o = cairn(&f.repo, WRONG_PASSWORD, &["snapshots"]);
    let err = text(&o.stderr);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(12), "restic's code for a wrong password; stderr:\n{err}");
    assert!(err.contains("wrong password"), "stderr does not say `wrong password`:\n{err}");
    for secret in [PASSWORD, WRONG_PASSWORD] {
        assert!(!err.contains(secret), "a password appears on stderr:\n{err}");
        assert!(!out.contains(secret), "a password appears on stdout:\n{out}");
    }
    assert!(out.is_empty(), "no data should be printed: {out}");
    // The right password still works.
    let o = f.run(&["snapshots"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

#[test]
fn damaged_index_file_is_reported_by_its_object_name() {
    let f = Fixture::new();
    let ids = f.index_ids();
    assert!(!ids.is_empty());
    let victim = &ids[0];
    let path = f.repo.join("index").join(victim);
    let len = std::fs::metadata(&path).unwrap().len();
    flip_byte(&path, len / 2);

    let o = f.run(&["check"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(5), "stdout:\n{out}\nstderr:\n{}", text(&o.stderr));
    assert!(out.contains(&format!("error: index/{victim}: ")), "the damaged index file is not named:\n{out}");

    let o = f.run(&["--json", "check"]);
    assert_eq!(o.status.code(), Some(5));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let objects: Vec<&str> = v["errors"].as_array().unwrap().iter().map(|e| e["object"].as_str().unwrap()).collect();
    assert!(objects.contains(&format!("index/{victim}").as_str()), "{objects:?}");
}

#[test]
fn deleted_pack_is_reported_missing_with_its_key_and_affected_files() {
    let f = Fixture::new();
    let packs = f.data_packs();
    assert!(packs.len() >= 2);
    let (key, blobs) = &packs[packs.len() - 1];
    let ids: BTreeSet<Id> = blobs.iter().map(|b| b.0).collect();
    let affected = f.files_using(&ids);
    assert!(!affected.is_empty());
    let snapshot = f.snapshot();
    std::fs::remove_file(f.repo.join(key)).unwrap();

    let o = f.run(&["check"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(5), "stdout:\n{out}\nstderr:\n{}", text(&o.stderr));
    assert!(
        out.contains(&format!("error: {key}: indexed but missing from storage")),
        "the missing pack is not reported:\n{out}"
    );
    let expected: BTreeSet<(String, String)> = affected.iter().map(|p| (snapshot.short(), p.clone())).collect();
    assert_eq!(affected_lines(&out), expected);

    // Restore names those files too, and restores the others exactly.
    let target = f.root.join("restored");
    let o = f.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "stderr:\n{err}");
    for p in &affected {
        assert!(err.contains(&format!("  {}: ", p.trim_start_matches('/'))), "{p} not named:\n{err}");
    }
    for (path, data) in &f.files {
        if !affected.contains(path) {
            assert!(std::fs::read(f.restored(&target, path)).unwrap() == *data, "{path} differs");
        }
    }
}
