//! Crash safety (invariant 2): a real backup process killed with SIGKILL at
//! many points leaves a repository that `check` passes; the next backup
//! succeeds and reuses the packs that were already stored.

mod common;

use std::path::Path;
use std::time::Duration;

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

fn count_files(dir: &Path) -> usize {
    objects(dir).0
}

enum KillAt {
    /// After this much time.
    Delay(Duration),
    /// As soon as this many new packs are stored.
    NewPacks(usize),
    /// As soon as a new index file is stored.
    NewIndex,
}

/// Starts a backup and kills it with SIGKILL at `at`; returns whether it
/// was killed (false when it finished first).
fn backup_killed(env: &Env, src: &Path, at: &KillAt) -> bool {
    let packs0 = count_files(&env.repo.join("data"));
    let index0 = count_files(&env.repo.join("index"));
    run_and_kill(env, &["backup", src.to_str().unwrap()], |elapsed| match at {
        KillAt::Delay(d) => elapsed >= *d,
        KillAt::NewPacks(n) => count_files(&env.repo.join("data")) >= packs0 + n,
        KillAt::NewIndex => count_files(&env.repo.join("index")) > index0,
    })
}

#[test]
fn sigkill_at_many_points_leaves_a_checkable_repository_and_the_next_backup_reuses_packs() {
    let env = Env::with_init(&["--chunk-sizes", "16384,65536,262144", "--pack-size-mib", "1"]);
    let src = env.path("src");
    let mut total = 0u64;
    for d in 0..4 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..10 {
            let data = random_bytes(600_000, (d * 100 + f) as u64);
            total += data.len() as u64;
            std::fs::write(dir.join(format!("f{f}")), data).unwrap();
        }
    }
    let points = [
        KillAt::Delay(Duration::from_millis(1)),
        KillAt::NewPacks(1),
        KillAt::Delay(Duration::from_millis(30)),
        KillAt::NewPacks(2),
        KillAt::Delay(Duration::from_millis(80)),
        KillAt::NewPacks(3),
        KillAt::NewPacks(1),
        KillAt::Delay(Duration::from_millis(150)),
    ];
    let mut killed = 0;
    for at in &points {
        if backup_killed(&env, &src, at) {
            killed += 1;
        }
        let out = env.cairn(&["check"]);
        assert!(
            out.status.success(),
            "check failed after a kill: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(killed >= 4, "only {killed} of the backups were killed before finishing");
    let packs_before = count_files(&env.repo.join("data"));
    assert!(packs_before > 0, "the killed backups stored no pack at all");
    let done = env.backup_json(&[&src], &[]);
    let added = done["summary"]["data_added"].as_u64().unwrap();
    assert!(added < total, "the final backup stored everything again ({added} of {total} bytes)");
    // Nothing was stored twice across the attempts.
    let stored = count_files(&env.repo.join("data"));
    assert_eq!(stored, packs_before + done["summary"]["packs_added"].as_u64().unwrap() as usize);
    let size = objects(&env.repo.join("data")).1;
    assert!(size < total + total / 20, "{size} bytes of packs for {total} bytes of data: chunks stored twice");
    env.ok(&["check", "--read-data"]);
    let t = env.path("t");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&t, &src));
}

#[test]
fn sigkill_around_the_index_write_leaves_a_checkable_repository() {
    let env = Env::with_init(&["--chunk-sizes", "16384,65536,262144", "--pack-size-mib", "1"]);
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for f in 0..8 {
        std::fs::write(src.join(format!("f{f}")), random_bytes(500_000, f)).unwrap();
    }
    backup_killed(&env, &src, &KillAt::NewIndex);
    env.ok(&["check"]);
    env.backup_json(&[&src], &[]);
    env.ok(&["check", "--read-data"]);
    let t = env.path("t");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap(), "--verify"]);
    assert_same_tree(&src, &restored(&t, &src));
}
