//! `backup --dry-run` through the real binary: it writes nothing (the
//! repository's files are the same, to the byte and the mtime, before and
//! after), and what it reports is what the real backup then does, against
//! the index (a second dry run after a backup finds only what changed).
//! Also the bandwidth flags' parsing; their pacing is tested as arithmetic
//! in `backend::limit`.

mod common;

use std::path::{Path, PathBuf};

use common::{random_bytes, Env};
use serde_json::Value;

/// Every file under `dir`: path, size, mtime, contents' hash.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime, [u8; 32])> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                let hash = *blake3::hash(&std::fs::read(e.path()).unwrap()).as_bytes();
                out.push((e.path().strip_prefix(dir).unwrap().to_path_buf(), m.len(), m.modified().unwrap(), hash));
            }
        }
    }
    out.sort();
    out
}

const COUNTS: [&str; 9] = [
    "files_new",
    "files_changed",
    "files_unchanged",
    "files_total",
    "bytes_total",
    "bytes_read",
    "data_added",
    "blobs_added",
    "packs_added",
];

fn dry_run(env: &Env, src: &Path) -> Value {
    let out = env.ok(&["backup", "--dry-run", "--json", src.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["dry_run"], true, "{v}");
    assert!(v.get("snapshot").is_none(), "a dry run names no snapshot: {v}");
    v
}

fn assert_same_counts(dry: &Value, real: &Value) {
    for k in COUNTS {
        assert_eq!(dry["summary"][k], real["summary"][k], "{k}: dry {} real {}", dry["summary"], real["summary"]);
    }
    // The same data, sealed with other nonces: the same stored size, but
    // for the trees. A snapshot's trees hold its paths' ancestors too
    // (`/tmp` here), whose times other processes change between the two
    // runs; a time's encoding and its compression move by a few bytes.
    let (d, r) = (dry["summary"]["bytes_added"].as_u64().unwrap(), real["summary"]["bytes_added"].as_u64().unwrap());
    assert!(d.abs_diff(r) <= 32, "stored size: dry {d} real {r}");
}

#[test]
fn a_dry_run_writes_nothing_and_counts_what_the_backup_then_stores() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..6u64 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(300_000 + 1000 * i as usize, i)).unwrap();
    }
    std::fs::write(src.join("sub/copy"), random_bytes(300_000, 0)).unwrap(); // dedups with f0
    std::fs::write(src.join("sub/small"), b"small\n").unwrap();

    let before = listing(&env.repo);
    let dry = dry_run(&env, &src);
    assert_eq!(listing(&env.repo), before, "the dry run changed the repository");
    assert_eq!(dry["summary"]["files_new"], 8);
    assert!(dry["summary"]["blobs_added"].as_u64().unwrap() > 0);
    assert_eq!(env.ok(&["snapshots", "--json"]).trim(), "[]");

    let real = env.backup_json(&[&src], &[]);
    assert_same_counts(&dry, &real);

    // Against the index and the parent: only the change is new.
    std::fs::write(src.join("f1"), random_bytes(310_000, 99)).unwrap();
    let before = listing(&env.repo);
    let dry = dry_run(&env, &src);
    assert_eq!(listing(&env.repo), before, "the second dry run changed the repository");
    assert_eq!(dry["parent"], real["snapshot"]);
    assert_eq!(
        (dry["summary"]["files_changed"].as_u64(), dry["summary"]["files_unchanged"].as_u64()),
        (Some(1), Some(7))
    );
    let real = env.backup_json(&[&src], &[]);
    assert_same_counts(&dry, &real);

    // Nothing changed: nothing would be added.
    let dry = dry_run(&env, &src);
    assert_eq!(dry["summary"]["data_added"], 0, "{dry}");
    assert_eq!(dry["summary"]["bytes_read"], 0, "{dry}");
}

#[test]
fn a_dry_run_appends_no_evidence_and_its_text_says_nothing_was_written() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), random_bytes(100_000, 1)).unwrap();
    let evidence = || listing(&env.repo.join("evidence"));
    let before = evidence();
    let out = env.cairn(&["backup", "-n", src.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(out.stdout.is_empty(), "no snapshot id on stdout");
    // Without a terminal, the progress lines come first (docs/CLI.md).
    let err: String = err.lines().filter(|l| !l.starts_with("progress: ")).map(|l| format!("{l}\n")).collect();
    assert!(
        err.starts_with("dry run, nothing written:\n  files: 1 new, 0 changed, 0 unchanged (1 in all, 97.7 KiB)"),
        "{err}"
    );
    assert_eq!(evidence(), before);
}

#[test]
fn the_bandwidth_limits_are_global_flags_in_kib_per_second() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), random_bytes(50_000, 2)).unwrap();
    // Within the one-second burst nothing waits: the backup just runs.
    env.ok(&["--limit-upload", "1024", "--limit-download", "1024", "backup", src.to_str().unwrap()]);
    env.ok(&["snapshots", "--limit-download", "1024"]);
    for bad in ["0", "-5", "fast"] {
        let out = env.cairn(&["backup", "--limit-upload", bad, src.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "--limit-upload {bad}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
