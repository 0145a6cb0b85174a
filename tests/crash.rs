//! Crash safety (invariant 2): a real backup process killed with SIGKILL at
//! each named step (a failpoint, see `src/failpoint.rs`) leaves a
//! repository that `check` passes; the next backup succeeds and reuses the
//! packs that were already stored. Every kill is certain: the process dies
//! at the named point or the test fails. So do `key add` and `forget`.
//! Run with `--features failpoints`.

mod common;

use std::path::Path;

use common::*;

/// Stored objects under `dir` (temporaries of interrupted writes are not
/// objects), and their total size.
fn objects(dir: &Path) -> (usize, u64) {
    let Ok(rd) = std::fs::read_dir(dir) else { return (0, 0) };
    let mut n = (0, 0);
    for e in rd.map(|e| e.unwrap()) {
        if e.file_type().unwrap().is_dir() {
            let (c, s) = objects(&e.path());
            n = (n.0 + c, n.1 + s);
        } else if !e.file_name().to_string_lossy().starts_with(".tmp-") {
            n = (n.0 + 1, n.1 + e.metadata().unwrap().len());
        }
    }
    n
}

fn names(dir: &Path) -> std::collections::BTreeSet<String> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Default::default() };
    rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

fn count(env: &Env, dir: &str) -> usize {
    objects(&env.repo.join(dir)).0
}

fn assert_check_passes(env: &Env, after: &str) {
    let out = env.cairn(&["check"]);
    assert!(
        out.status.success(),
        "check failed after a kill at {after}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `check` finds exactly one problem (exit 5), an `error:` line that
/// holds `names` and `what`.
fn assert_check_finds_only(env: &Env, names: &str, what: &str) {
    let out = env.cairn(&["check"]);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(5), "{all}");
    let errors: Vec<&str> = all.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{all}");
    assert!(errors[0].contains(names) && errors[0].contains(what), "{all}");
}

fn snapshots(env: &Env) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    v.as_array().unwrap().clone()
}

/// 4 directories of 10 incompressible files of 600 kB each: 24 MB, about
/// 24 data packs of 1 MiB.
const FILE_SIZE: usize = 600_000;

fn source(env: &Env) -> (std::path::PathBuf, u64) {
    let src = env.path("src");
    let mut total = 0u64;
    for d in 0..4 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..10 {
            let data = random_bytes(FILE_SIZE, (d * 100 + f) as u64);
            total += data.len() as u64;
            std::fs::write(dir.join(format!("f{f}")), data).unwrap();
        }
    }
    (src, total)
}

#[test]
fn sigkill_at_each_backup_step_leaves_a_checkable_repository_and_the_next_backup_reuses_packs() {
    let env = Env::with_init(&["--chunk-sizes", "16384,65536,262144", "--pack-size-mib", "1"]);
    let (src, total) = source(&env);
    let backup = ["backup", src.to_str().unwrap()];
    // In this order: the first pack; a later pack (beside the unindexed
    // ones, which the run adopts first); the index file that adopts the
    // packs left so far; one more pack; everything stored but the snapshot.
    for (point, nth) in [
        ("writer::pack_stored", 1),
        ("writer::pack_stored", 3),
        ("writer::index_stored", 1),
        ("writer::pack_stored", 2),
    ] {
        let (packs, index) = (count(&env, "data"), count(&env, "index"));
        run_killed_at(&env, &backup, point, nth);
        assert_check_passes(&env, point);
        if point == "writer::pack_stored" {
            assert!(count(&env, "data") >= packs + nth, "{point}:{nth}: {packs} -> {} packs", count(&env, "data"));
        } else {
            assert_eq!(count(&env, "index"), index + 1, "{point}: one index file was stored");
        }
        assert!(snapshots(&env).is_empty(), "a killed backup left a snapshot");
    }

    // Killed with everything stored but the snapshot: the next backup
    // stores no file's content again (each file is FILE_SIZE bytes).
    run_killed_at(&env, &backup, "backup::before_snapshot", 1);
    assert_check_passes(&env, "backup::before_snapshot");
    assert!(snapshots(&env).is_empty(), "killed before its snapshot, yet a snapshot is there");
    let locks_before = names(&env.repo.join("locks"));
    run_killed_at(&env, &backup, "backup::after_snapshot", 1);
    let snaps = snapshots(&env);
    assert_eq!(snaps.len(), 1, "the snapshot of the backup killed after writing it");
    // Killed before its evidence record: no record vouches for the
    // snapshot, which check names (as it would a forged one) until an
    // admin accepts it.
    let id = snaps[0]["id"].as_str().unwrap();
    assert_check_finds_only(&env, &format!("snapshot {} (host", &id[..8]), "has no backup record");
    env.ok(&["evidence", "accept", id, "--reason", "backup killed before its record"]);
    assert_check_passes(&env, "backup::after_snapshot, once accepted");
    let added = snaps[0]["summary"]["data_added"].as_u64().unwrap();
    assert!(added < FILE_SIZE as u64, "{added} bytes stored again after a kill with everything stored");
    let new_locks: Vec<String> = names(&env.repo.join("locks")).difference(&locks_before).cloned().collect();
    assert_eq!(new_locks.len(), 1, "the backup killed after its snapshot left its lock behind");

    // The dead process's lock does not stop the next backup; nothing was
    // stored twice across the attempts.
    let packs_before = count(&env, "data");
    let done = env.backup_json(&[&src], &[]);
    let stored = count(&env, "data");
    assert_eq!(stored, packs_before + done["summary"]["packs_added"].as_u64().unwrap() as usize);
    let size = objects(&env.repo.join("data")).1;
    assert!(size < total + total / 20, "{size} bytes of packs for {total} bytes of data: chunks stored twice");
    env.ok(&["check", "--read-data"]);
    let t = env.path("t");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&t, &src));
}

#[test]
fn sigkill_right_after_the_index_write_leaves_a_checkable_repository_whose_data_the_next_backup_reuses() {
    let env = Env::with_init(&["--chunk-sizes", "16384,65536,262144", "--pack-size-mib", "1"]);
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for f in 0..8 {
        std::fs::write(src.join(format!("f{f}")), random_bytes(500_000, f)).unwrap();
    }
    run_killed_at(&env, &["backup", src.to_str().unwrap()], "writer::index_stored", 1);
    env.ok(&["check"]);
    let again = env.backup_json(&[&src], &[]);
    let added = again["summary"]["data_added"].as_u64().unwrap();
    assert!(added < 500_000, "{added} bytes stored again: the indexed data was not reused");
    env.ok(&["check", "--read-data"]);
    let t = env.path("t");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap(), "--verify"]);
    assert_same_tree(&src, &restored(&t, &src));
}

#[test]
fn sigkill_right_after_key_add_stored_its_slot_leaves_both_passwords_opening_the_repository() {
    let env = Env::new();
    let mut add = env.command();
    add.args(["key", "add"]).env("CAIRN_NEW_PASSWORD", "second password");
    // `init` stored the first slot: the first pass in this process is `key add`'s.
    killed_at(add, "keys::slot_stored", 1);
    let slots: serde_json::Value = serde_json::from_str(&env.ok(&["key", "list", "--json"])).unwrap();
    assert_eq!(slots.as_array().unwrap().len(), 2, "{slots}");
    let out = env.command().args(["check"]).env("CAIRN_PASSWORD", "second password").output().unwrap();
    assert!(out.status.success(), "the new password does not open: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sigkill_during_forget_leaves_a_checkable_repository_and_forget_finishes_the_job() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for (i, time) in ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"].iter().enumerate() {
        std::fs::write(src.join("f"), random_bytes(50_000, i as u64)).unwrap();
        env.ok(&["backup", "--time", time, src.to_str().unwrap()]);
    }
    let before = snapshots(&env);
    run_killed_at(&env, &["forget", "--keep-last", "1"], "forget::snapshot_deleted", 1);
    let left = snapshots(&env);
    assert_eq!(left.len(), 2, "killed after deleting one snapshot of two");
    // Killed before its evidence record: the deletion is one no record
    // covers, which check names (as it would any deletion) until an admin
    // accepts it.
    let gone = ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
        .iter()
        .map(|t| before.iter().find(|s| s["time"] == *t).unwrap()["id"].as_str().unwrap().to_string())
        .find(|id| !left.iter().any(|s| s["id"] == id.as_str()))
        .expect("one of the two older snapshots is gone");
    assert_check_finds_only(&env, &gone, "no forget or prune record removed it");
    env.ok(&["evidence", "accept", &gone, "--reason", "forget killed before its record"]);
    assert_check_passes(&env, "forget::snapshot_deleted, once accepted");
    env.ok(&["forget", "--keep-last", "1"]);
    let left = snapshots(&env);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["time"], "2026-01-03T00:00:00Z", "the newest is kept");
    env.ok(&["prune"]);
    env.ok(&["check", "--read-data"]);
    let t = env.path("t");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap(), "--verify"]);
    assert_same_tree(&src, &restored(&t, &src));
}

#[test]
fn every_failpoint_in_the_code_is_listed_and_every_listed_one_is_in_the_code() {
    fn scan(dir: &Path, found: &mut std::collections::BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()) {
            if e.file_type().unwrap().is_dir() {
                scan(&e.path(), found);
            } else if e.path().extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(e.path()).unwrap();
                for part in text.split("failpoint::hit!(\"").skip(1) {
                    found.insert(part.split('"').next().unwrap().to_string());
                }
            }
        }
    }
    let mut in_code = std::collections::BTreeSet::new();
    scan(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut in_code);
    let listed: std::collections::BTreeSet<String> =
        cairn::failpoint::POINTS.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(in_code, listed);
}

#[test]
fn an_unknown_failpoint_name_is_refused_rather_than_never_reached() {
    if !cfg!(feature = "failpoints") {
        panic!("this test needs the `failpoints` feature: run `cargo test --features failpoints` (scripts/test.sh)");
    }
    let env = Env::new();
    let out = env.command().args(["snapshots"]).env("CAIRN_TEST_KILL_AT", "backup::no_such_point").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such failpoint"));
}

/// `CAIRN_TEST_HITS_FILE` records every pass of every point, so that a
/// harness (tests/torture.rs) can count the passes of a command that is not
/// killed and then choose a kill that is certain to come. The record of a
/// killed run ends with the pass it died at.
#[test]
fn the_record_of_passes_names_every_pass_and_a_killed_run_ends_with_its_kill() {
    if !cfg!(feature = "failpoints") {
        panic!("this test needs the `failpoints` feature: run `cargo test --features failpoints` (scripts/test.sh)");
    }
    let env = Env::new();
    let (src, _) = source(&env);
    let src = src.to_str().unwrap();
    let record = |path: &Path| -> Vec<String> {
        std::fs::read_to_string(path).unwrap_or_default().lines().map(String::from).collect()
    };
    let passes = |lines: &[String], point: &str| lines.iter().filter(|l| *l == point).count();

    let hits = env.path("hits-backup");
    let out = env.command().args(["backup", src]).env("CAIRN_TEST_HITS_FILE", &hits).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = record(&hits);
    for l in &lines {
        assert!(cairn::failpoint::POINTS.iter().any(|(p, _)| p == l), "`{l}` is no failpoint");
    }
    // 24 MB of new data in packs of 1 MiB, and one pack of trees, each
    // stored once; the index files list them all.
    assert_eq!(passes(&lines, "writer::pack_stored"), count(&env, "data"), "{lines:?}");
    assert_eq!(passes(&lines, "writer::index_stored"), count(&env, "index"), "{lines:?}");
    for once in ["backup::index_loaded", "backup::before_snapshot", "backup::after_snapshot"] {
        assert_eq!(passes(&lines, once), 1, "{once}: {lines:?}");
    }
    assert_eq!(passes(&lines, "prune::superseded"), 0, "a backup passed a point of prune: {lines:?}");

    // Killed at a pass the record names: the record stops there.
    let killed = env.path("hits-killed");
    let mut c = env.command();
    c.args(["backup", src]).env("CAIRN_TEST_HITS_FILE", &killed);
    killed_at(c, "backup::before_snapshot", 1);
    let lines = record(&killed);
    assert_eq!(lines.last().map(String::as_str), Some("backup::before_snapshot"), "{lines:?}");
    assert_eq!(passes(&lines, "backup::after_snapshot"), 0, "{lines:?}");
}
