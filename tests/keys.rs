//! `cairn key add | list | remove` end to end through the binary: a removed
//! password no longer opens the repository, and cairn refuses to remove the
//! slot of the password in use, which also keeps the last slot from going.

mod common;

use std::process::Output;

use common::*;
use serde_json::Value;

const SECOND: &str = "a second password";

fn as_password(env: &Env, password: &str, args: &[&str]) -> Output {
    env.command().env("CAIRN_PASSWORD", password).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Slot ids (full hex) and which one opened, by `key list --json`.
fn slots(env: &Env, password: &str) -> Vec<(String, bool)> {
    let out = as_password(env, password, &["key", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().iter().map(|s| (s["id"].as_str().unwrap().to_string(), s["current"] == true)).collect()
}

fn slot_file_exists(env: &Env, id: &str) -> bool {
    env.repo.join("keys").join(id).exists()
}

/// `key add` with the second password; returns the new slot's id.
fn add_second(env: &Env) -> String {
    let out = env.command().args(["key", "add"]).env("CAIRN_NEW_PASSWORD", SECOND).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "key add prints the new slot's id on stdout: {id:?}");
    id
}

#[test]
fn the_only_slot_cannot_be_removed() {
    let env = Env::new();
    let all = slots(&env, PASSWORD);
    assert_eq!(all.len(), 1);
    let (id, current) = &all[0];
    assert!(current);
    let out = env.cairn(&["key", "remove", &id[..8]]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "nothing on stdout when nothing was removed");
    let err = text(&out.stderr);
    assert!(err.contains(&id[..8]) && err.contains("your password opens"), "{err}");
    assert!(slot_file_exists(&env, id), "the last slot was removed");
    env.ok(&["check"]);
}

#[test]
fn removing_another_slot_prints_its_id_on_stdout_and_its_password_no_longer_opens() {
    let env = Env::new();
    let first = slots(&env, PASSWORD)[0].0.clone();
    let second = add_second(&env);
    let listed = slots(&env, SECOND);
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&(second.clone(), true)) && listed.contains(&(first.clone(), false)), "{listed:?}");

    // The slot of the password in use is refused, though another remains.
    let out = env.cairn(&["key", "remove", &first[..10]]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("your password opens"), "{}", text(&out.stderr));
    assert!(slot_file_exists(&env, &first));

    // Another slot goes: its full id on stdout, a note on stderr.
    let out = env.cairn(&["key", "remove", &second[..10]]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{second}\n"));
    assert_eq!(text(&out.stderr), format!("removed key slot {}\n", &second[..8]));
    assert!(!slot_file_exists(&env, &second));
    let refused = as_password(&env, SECOND, &["check"]);
    assert_eq!(refused.status.code(), Some(12), "the removed password still opens: {}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("wrong password"), "{}", text(&refused.stderr));
    env.ok(&["check"]);
}

#[test]
fn the_other_password_can_remove_the_first_slot_and_then_keeps_the_last() {
    let env = Env::new();
    let first = slots(&env, PASSWORD)[0].0.clone();
    let second = add_second(&env);
    let out = as_password(&env, SECOND, &["key", "remove", &first[..12], "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!({ "removed": first }));
    assert!(as_password(&env, PASSWORD, &["check"]).status.code() == Some(12), "the first password still opens");
    // One slot left, the one in use: it stays.
    let out = as_password(&env, SECOND, &["key", "remove", &second[..8]]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(slot_file_exists(&env, &second));
    assert_eq!(slots(&env, SECOND), [(second, true)]);
}

#[test]
fn a_prefix_that_matches_no_slot_removes_nothing() {
    let env = Env::new();
    let first = slots(&env, PASSWORD)[0].0.clone();
    add_second(&env);
    // Ids are hex: no slot id starts with `zz`.
    let out = env.cairn(&["key", "remove", "zz"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no key slot matches `zz`"), "{}", text(&out.stderr));
    assert_eq!(slots(&env, PASSWORD).len(), 2);
    assert!(slot_file_exists(&env, &first));
}
