//! Forged and damaged repository state that is not file data: key slots. Each case ends in a
//! diagnosis that names the real cause, and a way out.

mod common;

use std::process::Output;

use cairn::repo::keys::KeySlot;
use cairn::Id;
use common::forge::run_measured;
use common::{Env, PASSWORD};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn out_err(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), text(&o.stdout), text(&o.stderr))
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
    let second = add_key(&env, "second password");
    let o = env
        .command()
        .env("CAIRN_PASSWORD", "second password")
        .env("CAIRN_KEY_ID", &second[..10])
        .args(["key", "list"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out_err(&o));
    let listing = text(&o.stdout);
    let current: Vec<&str> = listing.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(current.len(), 1);
    assert!(current[0].starts_with(&format!("* {}", &second[..8])), "{current:?}");
}
