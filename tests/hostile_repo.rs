//! Forged and damaged repository state that is not file data: key slots,
//! locks, litter of killed processes and evidence. Each case ends in a
//! diagnosis that names the real cause, and a way out.

mod common;

use std::process::Output;
use std::time::{Duration, SystemTime};

use cairn::backend::Backend;
use cairn::repo::keys::KeySlot;
use cairn::repo::lock::LockInfo;
use cairn::Id;
use common::forge::{self, run_measured};
use common::{Env, PASSWORD};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn out_err(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

fn open(env: &Env) -> cairn::repo::Repository {
    forge::open(&env.repo, PASSWORD)
}

fn slot_ids(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.repo.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Adds a key slot for `password`; returns its id.
fn add_key(env: &Env, password: &str) -> String {
    let o = env
        .command()
        .args(["key", "add", "--kdf-memory-kib", "19456"])
        .env("CAIRN_NEW_PASSWORD", password)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out_err(&o));
    text(&o.stdout).trim().to_string()
}

fn as_password(env: &Env, password: &str, args: &[&str]) -> Output {
    env.command().env("CAIRN_PASSWORD", password).args(args).output().unwrap()
}

// ------------------------------------------------------------ key slots

#[test]
fn a_damaged_key_slot_is_named_not_reported_as_a_wrong_password() {
    let env = Env::new();
    let second = add_key(&env, "second password");
    // Cut the second slot's JSON short.
    let path = env.repo.join("keys").join(&second);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let o = as_password(&env, "second password", &["snapshots"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", out_err(&o));
    assert!(err.contains(&format!("key slot `keys/{second}` is damaged")), "{err}");
    assert!(!err.contains("wrong password"), "{err}");
    assert!(err.contains("restore that file from a copy"), "no way out in the hint: {err}");
    // The other password still opens, and check names the damaged slot.
    let o = env.cairn(&["check"]);
    assert_eq!(o.status.code(), Some(5), "{}", out_err(&o));
    assert!(text(&o.stdout).contains(&format!("error: keys/{second}: key slot damaged: ")), "{}", out_err(&o));
    // It can be removed with a password that works.
    env.ok(&["key", "remove", &second[..12]]);
    assert_eq!(env.cairn(&["check"]).status.code(), Some(0));
}

#[test]
fn a_wrong_password_is_still_a_wrong_password_and_no_slots_at_all_is_said_so() {
    let env = Env::new();
    let o = as_password(&env, "not it", &["snapshots"]);
    assert!(text(&o.stderr).contains("wrong password: none of the 1 key slot(s)"), "{}", out_err(&o));
    for id in slot_ids(&env) {
        std::fs::remove_file(env.repo.join("keys").join(id)).unwrap();
    }
    let o = env.cairn(&["snapshots"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("has no key slots (`keys/` is empty)"), "{}", out_err(&o));
}

#[test]
fn a_key_slot_copied_from_another_repository_is_named_as_foreign() {
    let env = Env::new();
    let other = Env::new();
    let other_slot = add_key(&other, "other repository's password");
    std::fs::copy(other.repo.join("keys").join(&other_slot), env.repo.join("keys").join(&other_slot)).unwrap();

    let o = as_password(&env, "other repository's password", &["snapshots"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", out_err(&o));
    assert!(
        err.contains(&format!(
            "key slot `keys/{other_slot}` opens with this password, but its key does not open this repository"
        )) && err.contains("belongs to another repository"),
        "{err}"
    );
    assert!(!err.contains("failed authentication"), "{err}");
    // This repository's own password is not disturbed by the copy.
    env.ok(&["snapshots"]);
}

#[test]
fn a_damaged_config_opened_with_the_right_key_is_config_damage_not_a_foreign_slot() {
    let env = Env::new();
    let path = env.repo.join("config");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let o = env.cairn(&["snapshots"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("object `config` failed authentication"), "{err}");
    assert!(!err.contains("another repository"), "{err}");
}

#[test]
fn a_planted_costly_key_slot_is_refused_before_any_hashing() {
    let env = Env::new();
    // 256 MiB × 13 passes: above the cap of 12 passes. Hashing it would
    // take 256 MiB and seconds; refusing it takes neither.
    let mut slot: KeySlot =
        serde_json::from_slice(&std::fs::read(env.repo.join("keys").join(&slot_ids(&env)[0])).unwrap()).unwrap();
    slot.params = cairn::crypto::KdfParams { memory_kib: 256 * 1024, iterations: 13, parallelism: 1 };
    let planted = Id::random().to_hex();
    std::fs::write(env.repo.join("keys").join(&planted), serde_json::to_vec(&slot).unwrap()).unwrap();

    let (o, rss_kib) = run_measured(env.command().env("CAIRN_PASSWORD", "not the password").arg("snapshots"));
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", out_err(&o));
    assert!(
        err.contains(&format!("key slot `keys/{planted}` was not tried")) && err.contains("exceed the cap"),
        "{err}"
    );
    assert!(rss_kib < 128 * 1024, "the planted slot was hashed: {} MB", rss_kib / 1024);
    // The right password opens the real slot; `key list` shows the planted one as never tried.
    let list = env.ok(&["key", "list"]);
    assert!(list.contains(&format!("{}  never tried: its Argon2id parameters", &planted[..8])), "{list}");
}

#[test]
fn init_and_key_add_refuse_argon2_memory_below_the_owasp_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["--repo", repo.to_str().unwrap(), "init", "--kdf-memory-kib", "19455"])
        .env("CAIRN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", out_err(&o));
    assert!(text(&o.stderr).contains("19456"), "{}", out_err(&o));
    assert!(!repo.exists(), "nothing was written");
    let env = Env::new();
    let o = env
        .command()
        .args(["key", "add", "--kdf-memory-kib", "1024"])
        .env("CAIRN_NEW_PASSWORD", "x2")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", out_err(&o));
    assert_eq!(slot_ids(&env).len(), 1);
}

#[test]
fn cairn_key_id_names_the_slot_to_try_first() {
    let env = Env::new();
    // Two slots for the same password: which one opens depends on the order.
    let first = slot_ids(&env)[0].clone();
    let second = add_key(&env, PASSWORD);
    for wanted in [&first, &second, &first] {
        let o = env.command().env("CAIRN_KEY_ID", &wanted[..10]).args(["key", "list"]).output().unwrap();
        assert!(o.status.success(), "{}", out_err(&o));
        let listing = text(&o.stdout);
        let current: Vec<&str> = listing.lines().filter(|l| l.starts_with('*')).collect();
        assert_eq!(current.len(), 1, "{listing}");
        assert!(current[0].starts_with(&format!("* {}", &wanted[..8])), "CAIRN_KEY_ID={wanted}: {listing}");
    }
    // Without it, the slot that opened last comes first (recorded in the cache directory).
    let recorded = std::fs::read_dir(env.path("cache")).unwrap().next().unwrap().unwrap().path().join("key-slot");
    assert_eq!(std::fs::read_to_string(recorded).unwrap().trim(), first);
}

// ------------------------------------------------------------ locks

fn plant_lock(env: &Env, info: &LockInfo) -> String {
    let repo = open(env);
    let key = format!("locks/{}", Id::random());
    let sealed = repo.key().seal(&serde_json::to_vec(info).unwrap());
    repo.backend().put(&key, &sealed).unwrap();
    key
}

fn lock(host: &str, pid: u32, exclusive: bool, time: chrono::DateTime<chrono::Utc>) -> LockInfo {
    LockInfo {
        exclusive,
        hostname: host.into(),
        username: "someone".into(),
        pid,
        time,
        refreshed: time,
        purpose: if exclusive { "prune".into() } else { "backup".into() },
        marks: None,
    }
}

fn source(env: &Env) -> String {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    src.to_str().unwrap().to_string()
}

#[test]
fn an_exclusive_lock_from_2100_does_not_block_and_is_named_suspicious_and_removed_by_unlock() {
    let env = Env::new();
    let src = source(&env);
    let key = plant_lock(&env, &lock("elsewhere", 4242, true, "2100-01-01T00:00:00Z".parse().unwrap()));
    env.ok(&["backup", &src]);
    env.ok(&["forget", "--keep-last", "5"]);
    env.ok(&["prune"]);
    let o = env.cairn(&["check"]);
    assert_eq!(o.status.code(), Some(0), "a lock is not damage: {}", out_err(&o));
    assert!(text(&o.stdout).contains(&format!("stale lock: {key} of prune of someone@elsewhere")), "{}", out_err(&o));
    assert!(text(&o.stdout).contains("suspicious: its time is"), "{}", out_err(&o));
    let o = env.cairn(&["unlock"]);
    assert!(o.status.success(), "{}", out_err(&o));
    assert!(text(&o.stdout).contains(&format!("removed {key} of prune of someone@elsewhere")), "{}", out_err(&o));
    assert!(text(&o.stderr).contains("suspicious"), "{}", out_err(&o));
    assert!(!env.repo.join(&key).exists());
}

#[test]
fn a_live_lock_of_another_host_says_how_to_get_out_and_unlock_remove_all_removes_it() {
    let env = Env::new();
    let src = source(&env);
    let key = plant_lock(&env, &lock("elsewhere", 4242, true, chrono::Utc::now()));
    let o = env.cairn(&["backup", &src]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(11), "{}", out_err(&o));
    assert!(err.contains("locked by prune of someone@elsewhere"), "{err}");
    assert!(
        err.contains("hint: wait for the prune on elsewhere") && err.contains("`cairn unlock --remove-all`"),
        "{err}"
    );
    // Plain unlock keeps a live lock; --remove-all removes it.
    let o = env.cairn(&["unlock"]);
    assert!(o.status.success() && text(&o.stderr).contains(&format!("kept live lock {key}")), "{}", out_err(&o));
    assert!(env.repo.join(&key).exists());
    env.ok(&["unlock", "--remove-all"]);
    assert!(!env.repo.join(&key).exists());
    env.ok(&["backup", &src]);
}

#[test]
fn unlock_remove_all_refuses_a_live_lock_of_a_process_running_here_and_names_it() {
    let env = Env::new();
    let mut sleeper = std::process::Command::new("sleep").arg("600").spawn().unwrap();
    let key = plant_lock(&env, &lock(&cairn::host::hostname(), sleeper.id(), true, chrono::Utc::now()));
    let o = env.cairn(&["unlock", "--remove-all"]);
    let err = text(&o.stderr);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert_eq!(o.status.code(), Some(11), "the repository stays locked: {}", out_err(&o));
    assert!(
        err.contains(&format!("pid {}", sleeper.id())) && err.contains("its process is running on this host"),
        "{err}"
    );
    assert!(env.repo.join(&key).exists(), "a running process's lock was removed");
    // Now that it is gone, a plain unlock removes it.
    let o = env.cairn(&["unlock"]);
    assert!(text(&o.stdout).contains(&format!("process {} on this host is gone", sleeper.id())), "{}", out_err(&o));
    assert!(!env.repo.join(&key).exists());
}

// ------------------------------------------------------------ litter

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

fn plant_temporary(env: &Env, rel: &str, age: Duration) -> std::path::PathBuf {
    let p = env.repo.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, vec![7u8; 4096]).unwrap();
    std::fs::File::options().write(true).open(&p).unwrap().set_modified(SystemTime::now() - age).unwrap();
    p
}

#[test]
fn check_reports_litter_and_the_next_backup_removes_old_temporaries_and_dead_locks() {
    let env = Env::new();
    let src = source(&env);
    let old = plant_temporary(&env, "data/ab/.tmp-killed1", Duration::from_secs(3 * 3600));
    let young = plant_temporary(&env, "index/.tmp-inflight", Duration::from_secs(60));
    let dead = plant_lock(&env, &lock(&cairn::host::hostname(), dead_pid(), false, chrono::Utc::now()));

    let o = env.cairn(&["check"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "litter is not damage: {}", out_err(&o));
    assert!(out.contains("temporary: data/ab/.tmp-killed1 (4096 bytes, 180 min old)"), "{}", out_err(&o));
    assert!(out.contains("temporary: index/.tmp-inflight (4096 bytes, 1 min old)"), "{}", out_err(&o));
    assert!(
        out.contains(&format!("stale lock: {dead} of backup of someone@")) && out.contains("on this host is gone"),
        "{out}"
    );
    let o = env.cairn(&["--json", "check"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["temporaries"].as_array().unwrap().len(), 2);
    assert_eq!(v["stale_locks"][0]["object"], dead.as_str());

    env.ok(&["backup", &src]);
    assert!(!old.exists(), "an hour-old temporary survived a backup");
    assert!(young.exists(), "a young temporary (a write in progress?) was removed");
    assert!(!env.repo.join(&dead).exists(), "a dead process's lock survived a backup");
}

#[test]
fn prune_and_unlock_remove_old_temporaries_too() {
    let env = Env::new();
    let src = source(&env);
    env.ok(&["backup", &src]);
    let a = plant_temporary(&env, "snapshots/.tmp-a", Duration::from_secs(2 * 3600));
    env.ok(&["prune"]);
    assert!(!a.exists(), "prune left an old temporary");
    let b = plant_temporary(&env, ".tmp-b", Duration::from_secs(2 * 3600));
    let o = env.cairn(&["unlock"]);
    assert!(text(&o.stdout).contains("removed .tmp-b"), "{}", out_err(&o));
    assert!(!b.exists());
}

// ------------------------------------------------------------ evidence

#[test]
fn check_names_a_damaged_evidence_record_and_key_with_exit_5() {
    let env = Env::new();
    let src = source(&env);
    env.ok(&["backup", &src]);
    let record = env.repo.join("evidence/records/000000000001");
    assert!(record.exists(), "the backup wrote no evidence record");
    assert_eq!(env.cairn(&["check"]).status.code(), Some(0));
    let mut bytes = std::fs::read(&record).unwrap();
    bytes[30] ^= 1;
    std::fs::write(&record, bytes).unwrap();
    let o = env.cairn(&["check"]);
    assert_eq!(o.status.code(), Some(5), "{}", out_err(&o));
    assert!(
        text(&o.stdout)
            .contains("error: evidence/records/000000000001: evidence record `evidence/records/000000000001`"),
        "{}",
        out_err(&o)
    );
    let key = env.repo.join("evidence/key");
    let mut bytes = std::fs::read(&key).unwrap();
    bytes[30] ^= 1;
    std::fs::write(&key, bytes).unwrap();
    let o = env.cairn(&["check"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(text(&o.stdout).contains("error: evidence/key: evidence signing key `evidence/key`"), "{}", out_err(&o));
}
