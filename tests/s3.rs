//! Every command works unchanged on S3 (a real Garage server), with few
//! requests, a self-repairing cache, and clear, secret-free errors.

mod common;
mod garage;

use std::path::Path;
use std::process::{Command, Output};

use common::{assert_same_tree, random_bytes, restored, PASSWORD};
use garage::Garage;

struct S3Env {
    garage: Garage,
    dir: tempfile::TempDir,
    url: String,
}

impl S3Env {
    fn new() -> S3Env {
        let garage = Garage::start();
        let env = S3Env { garage, dir: tempfile::tempdir().unwrap(), url: String::new() };
        S3Env { url: env.garage.url("repo"), ..env }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        self.garage.apply_env(&mut c);
        c.env("CAIRN_REPO", &self.url)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.dir.path().join("cache"))
            .stdin(std::process::Stdio::null());
        c
    }

    fn cairn(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        assert!(out.status.success(), "cairn {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with `--stats` and returns (stdout, total requests).
    fn counted(&self, args: &[&str]) -> (String, serde_json::Value) {
        let mut a = vec!["--stats"];
        a.extend_from_slice(args);
        let out = self.cairn(&a);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "cairn {args:?} failed: {stderr}");
        let stats =
            stderr.lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).expect("stats");
        (String::from_utf8(out.stdout).unwrap(), stats["requests"].clone())
    }

    fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }
}

fn make_tree(src: &Path) {
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("big.bin"), random_bytes(3_000_000, 11)).unwrap();
    std::fs::write(src.join("text"), "some text\n".repeat(10_000)).unwrap();
    std::fs::write(src.join("sub/deeper/small"), b"small").unwrap();
    std::os::unix::fs::symlink("text", src.join("link")).unwrap();
    for i in 0..50 {
        std::fs::write(src.join("sub").join(format!("f{i}")), format!("file {i}")).unwrap();
    }
}

#[test]
fn every_command_works_on_s3_against_garage() {
    let e = S3Env::new();
    let id = e.ok(&["init", "--kdf-memory-kib", "19456", "--chunk-sizes", "16384,65536,262144"]);
    assert_eq!(id.trim().len(), 64);
    let src = e.path("src");
    make_tree(&src);
    let s1 = e.ok(&["backup", src.to_str().unwrap(), "--tag", "s3"]).trim().to_string();
    std::fs::write(src.join("text"), "changed\n").unwrap();
    let s2 = e.ok(&["backup", src.to_str().unwrap()]).trim().to_string();
    let snaps: serde_json::Value = serde_json::from_str(&e.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    assert_eq!(snaps[1]["parent"], s1.as_str());
    let diff = e.ok(&["diff", &s1[..8], &s2[..8]]);
    assert!(diff.contains("M  ") && diff.contains("/text"), "{diff}");
    let ls = e.ok(&["ls", "latest"]);
    assert!(ls.contains("/sub/deeper/small"));
    let dumped = e.cairn(&["dump", "latest", &format!("{}/big.bin", src.display())]);
    assert!(dumped.stdout == random_bytes(3_000_000, 11));
    let t = e.path("t");
    e.ok(&["restore", "latest", "--target", t.to_str().unwrap(), "--verify"]);
    assert_same_tree(&src, &restored(&t, &src));
    e.ok(&["check", "--read-data"]);
    // A restore fetches each pack it needs once (these packs are smaller
    // than a range read in parts: `backend::parts`).
    let check: serde_json::Value = serde_json::from_str(&e.ok(&["check", "--json"])).unwrap();
    let packs = check["packs"].as_u64().unwrap();
    let t2 = e.path("t2");
    let (_, st) = e.counted(&["restore", "latest", "--target", t2.to_str().unwrap()]);
    let fetches = st["get_range"].as_u64().unwrap() + st["get"].as_u64().unwrap();
    assert!(fetches <= packs + 4, "{fetches} fetches for {packs} packs: {st}");
    assert!(st["get_range"].as_u64().unwrap() >= 1);
    // Key slots.
    let slot = e.command().args(["key", "add"]).env("CAIRN_NEW_PASSWORD", "second password").output().unwrap();
    assert!(slot.status.success());
    let list = e.ok(&["key", "list"]);
    assert_eq!(list.lines().count(), 2);
    let other = e.command().args(["snapshots"]).env("CAIRN_PASSWORD", "second password").output().unwrap();
    assert!(other.status.success(), "the new password opens the repository");
    // A stream.
    let mut child = e
        .command()
        .args(["backup", "--stdin", "--stdin-name", "dump.sql"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"CREATE TABLE t;\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(e.cairn(&["dump", "latest", "/dump.sql"]).stdout, b"CREATE TABLE t;\n");
    // The evidence chain: init and three backups, verified from the export alone.
    let ev = e.path("evidence");
    e.ok(&["evidence", "export", "--out", ev.to_str().unwrap()]);
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .env_clear()
        .args(["evidence", "verify", ev.to_str().unwrap(), "--pubkey", ev.join("pubkey.txt").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", String::from_utf8_lossy(&verify.stdout));
    assert!(String::from_utf8_lossy(&verify.stdout).starts_with("intact: 4 record(s)"));
}

#[test]
fn an_unchanged_incremental_backup_needs_a_handful_of_requests() {
    let e = S3Env::new();
    e.ok(&["init", "--kdf-memory-kib", "19456", "--chunk-sizes", "16384,65536,262144"]);
    let src = e.path("src");
    make_tree(&src);
    let (_, first) = e.counted(&["backup", src.to_str().unwrap()]);
    let (_, second) = e.counted(&["backup", src.to_str().unwrap()]);
    let total = second["total"].as_u64().unwrap();
    // marker, key list, key slot, config, lock put + list + delete, the
    // prune marks listed before and after the lock, index list, pack list
    // (adoption), snapshot list, snapshot upload: thirteen,
    // whatever the tree size. Then the evidence record: lock put + list +
    // delete, record list, signing key, last record, record upload: seven;
    // and its head: list of today's heads, newest head, head upload: three.
    // Directories above the source (the shared temporary directory) may
    // change between runs, which adds one small tree pack and its index file.
    assert!(total <= 25, "an unchanged backup made {total} requests: {second}");
    assert!(second["put"].as_u64().unwrap() <= 7, "only metadata is uploaded: {second}");
    assert!(second["bytes_out"].as_u64().unwrap() < 64 * 1024, "no data pack is uploaded: {second}");
    assert_eq!(second["get_range"], 0, "no pack is read: {second}");
    assert!(first["total"].as_u64().unwrap() > total);
}

#[test]
fn a_corrupt_or_stale_cache_is_detected_and_repaired() {
    let e = S3Env::new();
    e.ok(&["init", "--kdf-memory-kib", "19456"]);
    let src = e.path("src");
    make_tree(&src);
    e.ok(&["backup", src.to_str().unwrap()]);
    // Corrupt every cached object.
    let cache = e.path("cache");
    let mut corrupted = 0;
    for entry in walk(&cache) {
        std::fs::write(&entry, b"garbage").unwrap();
        corrupted += 1;
    }
    assert!(corrupted >= 3, "the cache holds index, snapshot and tree pack ({corrupted} files)");
    // A cached snapshot the repository does not have must not appear.
    let snapdir = walk(&cache).into_iter().find(|p| p.parent().unwrap().ends_with("snapshots")).unwrap();
    let ghost = snapdir.parent().unwrap().join("00".repeat(32));
    std::fs::write(&ghost, b"ghost").unwrap();
    let (_, stats) = e.counted(&["backup", src.to_str().unwrap()]);
    assert!(stats["get"].as_u64().unwrap() >= 3, "corrupt entries are fetched again: {stats}");
    let snaps: serde_json::Value = serde_json::from_str(&e.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    assert!(!ghost.exists(), "the stale entry was removed");
    for entry in walk(&cache) {
        let name = entry.file_name().unwrap().to_str().unwrap().to_string();
        if name == cairn::repo::keys::LAST_SLOT_FILE {
            // Not an object: the id of the key slot that opened last (garbage there is ignored).
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap();
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), name, "{} was repaired", entry.display());
    }
    let t = e.path("t");
    e.ok(&["restore", "latest", "--target", t.to_str().unwrap(), "--verify"]);
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn permanent_errors_name_the_bucket_and_key_and_never_the_secret() {
    let e = S3Env::new();
    let out = e.command().args(["snapshots"]).env("CAIRN_REPO", "s3://no-such-bucket/x").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("s3://no-such-bucket/x/cairn"), "names bucket and key: {stderr}");
    // Only an error taken as transient is retried, and then its message says
    // how many attempts it took (`backend::s3` unit tests pin the classes).
    assert!(!stderr.contains("gave up after"), "a missing bucket is not retried: {stderr}");
    assert!(!stderr.contains(&e.garage.secret));
    let bad = e.command().args(["init"]).env("AWS_SECRET_ACCESS_KEY", "0".repeat(64)).output().unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("403") || stderr.to_lowercase().contains("forbidden") || stderr.contains("Signature"),
        "{stderr}"
    );
    assert!(!stderr.contains(&"0".repeat(64)) && !stderr.contains(&e.garage.secret), "no secret in: {stderr}");
}

/// Which credential a command uses (`docs/STORAGE.md`, "Credentials"). A
/// profile named with `--s3-profile` or `CAIRN_S3_PROFILE` is the one used,
/// whatever credential the environment holds, and one that is refused or
/// missing is an error, never a fall-back to the environment's. Without
/// one, the standard chain: its environment variables before `AWS_PROFILE`.
#[test]
fn a_named_profile_wins_over_the_credential_in_the_environment_and_never_falls_back() {
    let e = S3Env::new();
    e.ok(&["init", "--kdf-memory-kib", "19456"]);
    let owner = (e.garage.key_id.clone(), e.garage.secret.clone());
    let stranger = e.garage.key_without_access("stranger");
    let aws = e.path("aws");
    std::fs::create_dir(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[owner]\naws_access_key_id = {}\naws_secret_access_key = {}\n\n\
             [stranger]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            owner.0, owner.1, stranger.0, stranger.1
        ),
    )
    .unwrap();
    std::fs::write(aws.join("config"), "").unwrap();
    // `in_env`: the key in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, if any;
    // `vars`: more variables (CAIRN_S3_PROFILE, AWS_PROFILE).
    let run = |in_env: Option<&(String, String)>, vars: &[(&str, &str)], args: &[&str]| {
        let mut c = e.command();
        c.env("AWS_SHARED_CREDENTIALS_FILE", aws.join("credentials"))
            .env("AWS_CONFIG_FILE", aws.join("config"))
            .env_remove("CAIRN_S3_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE");
        match in_env {
            Some((id, secret)) => c.env("AWS_ACCESS_KEY_ID", id).env("AWS_SECRET_ACCESS_KEY", secret),
            None => c.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY"),
        };
        c.envs(vars.iter().copied()).args(args).output().unwrap()
    };
    let lists = |out: &Output, what: &str| {
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
        let snaps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(snaps.as_array().is_some(), "{what}: {snaps}");
    };
    let refused = |out: &Output, what: &str, says: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: it ran with another credential than the one named");
        assert!(err.contains(says), "{what}: the error does not say `{says}`: {err}");
        for secret in [&owner.1, &stranger.1] {
            assert!(!err.contains(secret.as_str()), "{what}: a secret in the error: {err}");
        }
    };
    let snapshots = ["snapshots", "--json"];

    // The environment holds a key the bucket refuses: the profile named is used.
    let out = run(Some(&stranger), &[], &snapshots);
    refused(&out, "the stranger's key alone", "403");
    lists(
        &run(Some(&stranger), &[], &["--s3-profile", "owner", "snapshots", "--json"]),
        "--s3-profile owner over the stranger's key",
    );
    lists(&run(Some(&stranger), &[("CAIRN_S3_PROFILE", "owner")], &snapshots), "CAIRN_S3_PROFILE=owner");
    // The environment holds the owner's key: a profile the bucket refuses
    // is still the one used.
    let out = run(Some(&owner), &[], &["--s3-profile", "stranger", "snapshots", "--json"]);
    refused(&out, "--s3-profile stranger over the owner's key", "403");
    let out = run(Some(&owner), &[("CAIRN_S3_PROFILE", "stranger")], &snapshots);
    refused(&out, "CAIRN_S3_PROFILE=stranger over the owner's key", "403");
    // A profile that does not exist is an error that names it.
    let out = run(Some(&owner), &[], &["--s3-profile", "nowhere", "snapshots", "--json"]);
    refused(&out, "--s3-profile nowhere", "nowhere");
    // The flag wins over the variable.
    let out = run(None, &[("CAIRN_S3_PROFILE", "stranger")], &["--s3-profile", "owner", "snapshots", "--json"]);
    lists(&out, "--s3-profile owner over CAIRN_S3_PROFILE=stranger");
    // No profile named: the standard chain, environment variables first.
    lists(&run(Some(&owner), &[("AWS_PROFILE", "stranger")], &snapshots), "the owner's key before AWS_PROFILE");
    let out = run(Some(&stranger), &[("AWS_PROFILE", "owner")], &snapshots);
    refused(&out, "the stranger's key before AWS_PROFILE=owner", "403");
    lists(&run(None, &[("AWS_PROFILE", "owner")], &snapshots), "AWS_PROFILE=owner alone");
}
