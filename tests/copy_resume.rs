//! A copy stopped after committing a snapshot in the destination, before
//! its `copy` record: the next copy re-derives that snapshot from its
//! source, finds it exactly what it would write, and records it, so the
//! destination's `check` is clean again. A snapshot planted by someone
//! else with the destination's password, claiming to be a copy of a
//! source snapshot, is not recorded (its check still flags it), and the
//! real copy is made beside it. The kill needs `--features failpoints`.

mod common;

use common::copies::*;
use common::*;
use serde_json::Value;

/// Two snapshots of one directory, the second with one more file.
fn two_snapshots(env: &Env) -> (String, String) {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("big"), random_bytes(600_000, 11)).unwrap();
    std::fs::write(src.join("sub/small"), b"small").unwrap();
    let first = env.backup_json(&[&src], &[]);
    std::fs::write(src.join("sub/later"), random_bytes(300_000, 12)).unwrap();
    let second = env.backup_json(&[&src], &[]);
    let id = |v: &Value| v["snapshot"].as_str().unwrap().to_string();
    (id(&first), id(&second))
}

fn ids(v: &Value, field: &str) -> Vec<(String, String)> {
    let pair = |c: &Value| (c["source"].as_str().unwrap().to_string(), c["snapshot"].as_str().unwrap().to_string());
    v[field].as_array().unwrap_or_else(|| panic!("no `{field}`: {v}")).iter().map(pair).collect()
}

fn snapshot_ids(env: &Env, dest: &Dest) -> Vec<String> {
    let ls: Value = serde_json::from_str(&dest.ok(env, &["snapshots", "--json"])).unwrap();
    ls.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

/// `cairn check` of the destination: its exit code and its text.
fn check(env: &Env, dest: &Dest) -> (Option<i32>, String) {
    let out = dest.command(env).args(["check"]).output().unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn bug_a_copy_killed_after_committing_a_snapshot_leaves_it_recorded_by_the_next_copy() {
    let env = Env::new();
    let (first, second) = two_snapshots(&env);
    // Other chunk sizes: the copy cuts again, and re-deriving must too.
    let dest = Dest::new(&env, "offsite", &["--chunk-sizes", "8192,32768,131072"]);

    killed_at(copy_command(&env, &dest, &[]), "copy::snapshot_committed", 1);
    let left = snapshot_ids(&env, &dest);
    assert_eq!(left.len(), 1, "the first copied snapshot is committed: {left:?}");
    let (code, text) = check(&env, &dest);
    assert_eq!(code, Some(5), "nothing records the killed copy's snapshot yet: {text}");
    assert!(text.contains(&left[0][..8]) && text.contains("no backup record"), "{text}");

    let r = copy(&env, &dest, &[]);
    assert_eq!(ids(&r, "resumed"), vec![(first.clone(), left[0].clone())], "{r}");
    let copied = ids(&r, "copied");
    assert_eq!(copied.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), vec![second.as_str()], "{r}");
    assert!(ids(&r, "present").is_empty(), "{r}");
    let mut all = snapshot_ids(&env, &dest);
    all.sort();
    let mut expected = vec![left[0].clone(), copied[0].1.clone()];
    expected.sort();
    assert_eq!(all, expected, "no second copy of the first snapshot");

    let (code, text) = check(&env, &dest);
    assert_eq!(code, Some(0), "{text}");
    let there = records(&env, dest.command(&env), "copy");
    assert_eq!(there.len(), 1, "the killed copy left no record: {there:?}");
    let payload = &there[0]["payload"];
    assert_eq!(payload["resumed"], serde_json::json!([left[0]]), "{payload}");
    let written: Vec<&str> =
        payload["snapshots_written"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(written.contains(&left[0].as_str()) && written.contains(&copied[0].1.as_str()), "{payload}");

    // The destination's chain, the new record in it, verifies from an export alone.
    let ev = env.path("evidence");
    dest.ok(&env, &["evidence", "export", "--out", ev.to_str().unwrap()]);
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .env_clear()
        .args(["evidence", "verify", ev.to_str().unwrap(), "--pubkey", ev.join("pubkey.txt").to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(0), "{said}");
    assert!(said.starts_with("intact:"), "{said}");

    // And the next copy finds both held, as recorded.
    let again = copy(&env, &dest, &[]);
    assert_eq!((ids(&again, "copied").len(), ids(&again, "resumed").len(), ids(&again, "present").len()), (0, 0, 2));
}

#[test]
fn a_planted_snapshot_claiming_to_be_a_copy_is_not_recorded_and_the_real_copy_is_made() {
    let env = Env::new();
    let (first, second) = two_snapshots(&env);
    let dest = Dest::new(&env, "offsite", &[]);
    let r = copy(&env, &dest, &[&second]);
    let copy_of_second = ids(&r, "copied")[0].1.clone();

    // Someone with the destination's password writes a snapshot that says
    // it is the copy of the first snapshot, with every field of that copy
    // but its tree: the second snapshot's (one more file).
    let planted = {
        let src = forge::open(&env.repo, PASSWORD);
        let dst = forge::open(&dest.repo, OTHER_PASSWORD);
        let (first_id, s1) = src.list_snapshots().unwrap().snapshots.into_iter().next().unwrap();
        assert_eq!(first_id.to_hex(), first);
        let there = dst.list_snapshots().unwrap().snapshots;
        let tree = there.iter().find(|(id, _)| id.to_hex() == copy_of_second).unwrap().1.tree;
        dst.save_snapshot(&cairn::copy::copied_snapshot(first_id, &s1, tree, None)).unwrap().to_hex()
    };

    let r = copy(&env, &dest, &[]);
    assert!(ids(&r, "resumed").is_empty(), "the planted snapshot was recorded: {r}");
    let copied = ids(&r, "copied");
    assert_eq!(copied.len(), 1, "{r}");
    assert_eq!(copied[0].0, first, "{r}");
    assert_ne!(copied[0].1, planted);
    assert_eq!(ids(&r, "present"), vec![(second.clone(), copy_of_second.clone())], "{r}");

    // The planted one is still named by the check; the real copy is not.
    let (code, text) = check(&env, &dest);
    assert_eq!(code, Some(5), "{text}");
    assert!(text.contains(&planted[..8]), "{text}");
    assert!(!text.contains(&copied[0].1[..8]) && !text.contains(&copy_of_second[..8]), "{text}");
    let there = records(&env, dest.command(&env), "copy");
    assert!(there.iter().all(|r| !r["payload"].to_string().contains(&planted)), "{there:?}");

    // The real copy restores the first snapshot's files: no `sub/later`.
    let target = env.path("restored");
    dest.ok(&env, &["restore", &copied[0].1, "--target", target.to_str().unwrap(), "--verify"]);
    let src = env.path("src");
    let restored = restored(&target, &src);
    assert!(restored.join("sub/small").is_file() && !restored.join("sub/later").exists());
}
