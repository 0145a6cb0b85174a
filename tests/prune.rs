//! Prune: removes what no snapshot uses, never what one does — not with a
//! backup running beside it, and not when killed at any point.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

fn objects(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(objects(&e.path()));
            } else if !e.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn small_packs() -> Env {
    Env::with_init(&["--chunk-sizes", "16384,65536,262144", "--pack-size-mib", "1"])
}

/// Two generations of a tree: the second drops half the files of the first.
fn two_generations(env: &Env) -> (PathBuf, String, String) {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..12 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(400_000, i)).unwrap();
    }
    let s1 = env.ok(&["backup", src.to_str().unwrap()]).trim().to_string();
    for i in 0..6 {
        std::fs::remove_file(src.join(format!("f{i}"))).unwrap();
        std::fs::write(src.join(format!("g{i}")), random_bytes(400_000, 100 + i)).unwrap();
    }
    let s2 = env.ok(&["backup", src.to_str().unwrap()]).trim().to_string();
    (src, s1, s2)
}

/// Replaces a few files, backs up, and forgets the oldest snapshot: data
/// only that snapshot used becomes garbage for the next prune.
fn new_garbage(env: &Env, src: &Path, round: u64) {
    for k in 0..3 {
        std::fs::write(src.join(format!("f{}", 6 + k)), random_bytes(300_000, 1000 + round * 10 + k)).unwrap();
    }
    env.ok(&["backup", src.to_str().unwrap()]);
    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    forget(env, snaps[0]["id"].as_str().unwrap());
}

fn forget(env: &Env, id: &str) {
    std::fs::remove_file(env.repo.join("snapshots").join(id)).unwrap();
}

fn restore_all_exactly(env: &Env, src: &Path, tag: &str) {
    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    for s in snaps.as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let t = env.path(&format!("restore-{tag}-{}", &id[..8]));
        env.ok(&["restore", id, "--target", t.to_str().unwrap(), "--verify"]);
        if s["paths"][0] == src.to_str().unwrap() && id == snaps.as_array().unwrap().last().unwrap()["id"] {
            assert_same_tree(src, &restored(&t, src));
        }
        std::fs::remove_dir_all(&t).unwrap();
    }
}

#[test]
fn prune_removes_unused_data_and_keeps_what_snapshots_need() {
    let env = small_packs();
    let (src, s1, _s2) = two_generations(&env);
    forget(&env, &s1);
    let before = objects(&env.repo);
    let size_before = dir_size(&env.repo.join("data"));
    let dry = env.ok(&["prune", "--dry-run", "--max-unused", "0%"]);
    assert!(dry.lines().any(|l| l.starts_with("delete data/") || l.starts_with("repack data/")), "{dry}");
    assert_eq!(objects(&env.repo), before, "a dry run changes nothing");

    let out: serde_json::Value = serde_json::from_str(&env.ok(&["prune", "--json", "--max-unused", "0%"])).unwrap();
    assert!(out["report"]["packs_deleted"].as_u64().unwrap() > 0, "{out}");
    let size_after = dir_size(&env.repo.join("data"));
    assert!(size_after < size_before * 3 / 4, "{size_before} -> {size_after} bytes of packs");
    let unused = out["plan"]["unused_after"].as_u64().unwrap();
    assert_eq!(unused, 0, "with --max-unused 0% every partly used pack is repacked");
    assert!(env.ok(&["check", "--read-data"]).is_empty());
    restore_all_exactly(&env, &src, "a");

    // Nothing left to do: a second prune deletes nothing.
    let again: serde_json::Value = serde_json::from_str(&env.ok(&["prune", "--json"])).unwrap();
    assert_eq!(again["report"]["packs_deleted"], 0, "{again}");
}

#[test]
fn a_backup_and_a_prune_at_the_same_time_lose_nothing() {
    let env = small_packs();
    let (src, s1, _) = two_generations(&env);
    forget(&env, &s1);
    let other = env.path("other");
    std::fs::create_dir_all(&other).unwrap();
    for i in 0..40 {
        std::fs::write(other.join(format!("o{i}")), random_bytes(500_000, 1000 + i)).unwrap();
    }
    let mut outcomes = Vec::new();
    for round in 0..3 {
        // The backup reuses blobs of the forgotten snapshot, that prune wants gone.
        std::fs::write(other.join("again"), random_bytes(400_000, round)).unwrap();
        let backup = env
            .command()
            .args(["backup", other.to_str().unwrap(), src.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Start the prune once the backup holds its lock.
        let start = Instant::now();
        while objects(&env.repo.join("locks")).is_empty() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let prune = env.cairn(&["prune", "--max-unused", "0%"]);
        let b = backup.wait_with_output().unwrap();
        let prune_err = String::from_utf8_lossy(&prune.stderr).into_owned();
        if !prune.status.success() {
            assert!(prune_err.contains("locked"), "prune failed for another reason: {prune_err}");
        }
        assert!(b.status.success(), "backup: {}", String::from_utf8_lossy(&b.stderr));
        outcomes.push(prune.status.success());
        assert!(env.ok(&["check", "--read-data"]).is_empty());
    }
    assert!(outcomes.iter().any(|ok| !ok), "prune never met the running backup's lock: {outcomes:?}");
    // Once the backups are done, prune runs.
    env.ok(&["prune"]);
    assert!(env.ok(&["check", "--read-data"]).is_empty());
    restore_all_exactly(&env, &src, "b");
}

#[test]
fn a_stale_lock_of_a_dead_process_does_not_block_prune() {
    use cairn::repo::lock::LockInfo;
    let env = small_packs();
    two_generations(&env);
    let repo = cairn::repo::Repository::open(
        std::sync::Arc::new(cairn::backend::LocalBackend::new(&env.repo)),
        PASSWORD.as_bytes(),
    )
    .unwrap();
    let now = chrono::Utc::now();
    let dead = LockInfo {
        exclusive: false,
        hostname: cairn::repo::keys::hostname(),
        username: "someone".into(),
        pid: 0x7fff_fff0,
        time: now,
        refreshed: now,
        purpose: "backup".into(),
    };
    let sealed = repo.key().seal(&serde_json::to_vec(&dead).unwrap());
    use cairn::backend::Backend;
    repo.backend().put(&format!("locks/{}", cairn::Id::random()), &sealed).unwrap();
    env.ok(&["prune"]);
}

/// Kills a prune at `delay`, or when `trigger` first holds.
fn prune_killed(env: &Env, delay: Duration, trigger: &dyn Fn() -> bool) -> bool {
    run_and_kill(env, &["prune", "--max-unused", "0%"], |elapsed| elapsed >= delay || trigger())
}

#[test]
fn sigkill_during_prune_leaves_every_remaining_snapshot_restorable() {
    let env = small_packs();
    let (src, s1, _) = two_generations(&env);
    // A third generation, so that there is plenty to repack and delete.
    for i in 6..12 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(300_000, 200 + i)).unwrap();
    }
    env.ok(&["backup", src.to_str().unwrap()]);
    forget(&env, &s1);
    let index_dir = env.repo.join("index");
    let data_dir = env.repo.join("data");
    let mut killed = 0;
    // Each point makes its trigger when its prune starts (counts of that
    // moment), and each round first makes fresh garbage, so that no prune
    // finds its work already done by the one before (which made this test
    // depend on how fast a prune runs).
    type Trigger = Box<dyn Fn() -> bool>;
    let points: Vec<(Duration, Box<dyn Fn() -> Trigger>)> = vec![
        (Duration::from_millis(2), Box::new(|| Box::new(|| false))),
        (Duration::from_secs(60), {
            let d = index_dir.clone();
            Box::new(move || {
                let (d, n) = (d.clone(), objects(&d).len());
                Box::new(move || objects(&d).len() > n)
            })
        }),
        (Duration::from_secs(60), {
            let d = data_dir.clone();
            Box::new(move || {
                let (d, n) = (d.clone(), objects(&d).len());
                Box::new(move || objects(&d).len() < n)
            })
        }),
        (Duration::from_millis(60), Box::new(|| Box::new(|| false))),
        (Duration::from_millis(150), Box::new(|| Box::new(|| false))),
    ];
    for (round, (delay, make_trigger)) in points.iter().enumerate() {
        new_garbage(&env, &src, round as u64);
        let trigger = make_trigger();
        if prune_killed(&env, *delay, trigger.as_ref()) {
            killed += 1;
        }
        let check = env.cairn(&["check"]);
        assert!(check.status.success(), "check after a killed prune: {}", String::from_utf8_lossy(&check.stdout));
        restore_all_exactly(&env, &src, &format!("k{round}"));
    }
    assert!(killed >= 3, "only {killed} prunes were killed before they finished");
    env.ok(&["prune", "--max-unused", "0%"]);
    assert!(env.ok(&["check", "--read-data"]).is_empty());
    let t = env.path("final");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap(), "--verify"]);
    assert_same_tree(&src, &restored(&t, &src));
}

#[test]
fn bug_prune_dropped_what_a_directory_holds_when_its_tree_was_also_a_file() {
    use cairn::backend::LocalBackend;
    use cairn::repo::{tree, Repository};
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("a/x"), random_bytes(1000, 1)).unwrap();
    let first = env.ok(&["backup", src.to_str().unwrap()]).trim().to_string();
    // A file whose content is the exact bytes of directory a's tree: its
    // chunk has the tree's id, and is marked used before the tree is walked.
    let repo = Repository::open(std::sync::Arc::new(LocalBackend::new(&env.repo)), PASSWORD.as_bytes()).unwrap();
    let index = repo.load_index().unwrap();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let a = tree::lookup(&repo, &index, &snap.tree, src.join("a").to_str().unwrap().as_bytes()).unwrap().unwrap();
    std::fs::write(src.join("b"), repo.read_blob(&index, &a.subtree.unwrap()).unwrap()).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    forget(&env, &first);
    env.ok(&["prune", "--max-unused", "0%"]);
    let check = env.cairn(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let t = env.path("t");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap(), "--verify"]);
    assert_same_tree(&src, &restored(&t, &src));
}
