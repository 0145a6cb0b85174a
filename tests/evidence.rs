//! The evidence chain through the real binary: backups, a prune and policy
//! jobs append signed records; `evidence export` writes them out, and
//! `evidence verify` checks them with the public key alone, naming every
//! removed, reordered or altered record.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `cairn evidence verify` with an empty environment: no repository, no
/// password, no password file or command.
fn verify(dir: &Path, pubkey: &Path, extra: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .env_clear()
        .args(["evidence", "verify", dir.to_str().unwrap(), "--pubkey", pubkey.to_str().unwrap()])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn record_file(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:012}.json"))
}

fn read_record(dir: &Path, seq: u64) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(record_file(dir, seq)).unwrap()).unwrap()
}

/// A repository with a history: init, two backups, a failed backup, a
/// prune and a dry run; exported to `export/`. Returns the export directory.
fn history(env: &Env) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), random_bytes(100_000, 1)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    std::fs::write(src.join("b"), random_bytes(100_000, 2)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let failed = env.cairn(&["backup", env.path("missing").to_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));
    env.ok(&["prune"]);
    env.ok(&["prune", "--dry-run"]);
    let out = env.path("export");
    env.ok(&["evidence", "export", "--out", out.to_str().unwrap()]);
    out
}

#[test]
fn backups_and_prunes_leave_a_chain_that_verifies_without_the_password() {
    let env = Env::new();
    let export = history(&env);
    let kinds: Vec<(String, String)> = (0..5)
        .map(|s| {
            let r = read_record(&export, s);
            assert_eq!(r["seq"], s);
            (r["kind"].as_str().unwrap().into(), r["payload"]["outcome"].as_str().unwrap_or("").into())
        })
        .collect();
    let expected =
        [("init", ""), ("backup", "success"), ("backup", "success"), ("backup", "failure"), ("prune", "success")];
    assert_eq!(kinds, expected.map(|(k, o)| (k.to_string(), o.to_string())), "the dry run leaves no record");
    assert!(!record_file(&export, 5).exists());
    let snapshots: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(read_record(&export, 2)["payload"]["snapshot"], snapshots[1]["id"]);
    assert!(read_record(&export, 3)["payload"]["error"].as_str().unwrap().contains("missing"));

    // The printed key is the exported one.
    let pubkey = export.join("pubkey.txt");
    assert_eq!(env.ok(&["evidence", "pubkey"]), std::fs::read_to_string(&pubkey).unwrap());

    let out = verify(&export, &pubkey, &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).starts_with("intact: 5 record(s), head 4:"), "{}", text(&out.stdout));
    let out = verify(&export, &pubkey, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["intact"].as_bool(), v["head"]["seq"].as_u64()), (Some(true), Some(4)), "{v}");

    // No secret in any exported file.
    for e in std::fs::read_dir(&export).unwrap() {
        let t = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(!t.contains(PASSWORD));
    }

    // The next audit anchors on this head: more records keep it valid, a
    // truncated chain does not.
    let head = format!("4:{}", v["head"]["hash"].as_str().unwrap());
    env.ok(&["prune"]);
    let later = env.path("later");
    env.ok(&["evidence", "export", "--out", later.to_str().unwrap()]);
    assert_eq!(verify(&later, &pubkey, &["--anchor", &head]).status.code(), Some(0));
    std::fs::remove_file(record_file(&later, 5)).unwrap();
    std::fs::remove_file(record_file(&later, 4)).unwrap();
    // The heads written with each record name the newest ones: the cut shows.
    let out = verify(&later, &pubkey, &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("removed: 000000000004.json (record 4): records 4 to 5"),
        "{}",
        text(&out.stdout)
    );
    for e in std::fs::read_dir(&later).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_str().unwrap().starts_with("head-") {
            std::fs::remove_file(p).unwrap();
        }
    }
    assert_eq!(verify(&later, &pubkey, &[]).status.code(), Some(0), "the records alone cannot see a cut end");
    let out = verify(&later, &pubkey, &["--anchor", &head]);
    assert_eq!(out.status.code(), Some(5));
    assert!(text(&out.stdout).contains("removed: 000000000004.json (record 4)"), "{}", text(&out.stdout));
}

#[test]
fn a_removed_record_is_detected() {
    let env = Env::new();
    let export = history(&env);
    std::fs::remove_file(record_file(&export, 2)).unwrap();
    let out = verify(&export, &export.join("pubkey.txt"), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("removed: 000000000002.json (record 2): record 2 is missing"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_slice(&verify(&export, &export.join("pubkey.txt"), &["--json"]).stdout).unwrap();
    assert_eq!(v["intact"], false);
    assert_eq!(v["problems"][0]["kind"], "removed");
    assert_eq!(v["problems"][0]["seq"], 2);
}

#[test]
fn swapped_records_are_detected_as_reordered() {
    let env = Env::new();
    let export = history(&env);
    let (a, b) = (std::fs::read(record_file(&export, 1)).unwrap(), std::fs::read(record_file(&export, 3)).unwrap());
    std::fs::write(record_file(&export, 1), b).unwrap();
    std::fs::write(record_file(&export, 3), a).unwrap();
    let out = verify(&export, &export.join("pubkey.txt"), &[]);
    assert_eq!(out.status.code(), Some(5));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("reordered: 000000000003.json (record 1): holds record 1"), "{stdout}");
    assert!(lines[1].starts_with("reordered: 000000000001.json (record 3): holds record 3"), "{stdout}");
}

#[test]
fn an_edited_field_is_detected_as_altered() {
    let env = Env::new();
    let export = history(&env);
    // Make the failed backup look like a success.
    let mut r = read_record(&export, 3);
    assert_eq!(r["payload"]["outcome"], "failure");
    r["payload"]["outcome"] = "success".into();
    std::fs::write(record_file(&export, 3), serde_json::to_vec(&r).unwrap()).unwrap();
    let out = verify(&export, &export.join("pubkey.txt"), &[]);
    assert_eq!(out.status.code(), Some(5));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("altered: 000000000003.json (record 3): the signature does not verify"), "{stdout}");
}

#[test]
fn another_repositorys_key_verifies_nothing_and_a_malformed_key_is_an_error() {
    let env = Env::new();
    let export = history(&env);
    let other = Env::new();
    let wrong = other.path("other.pub");
    std::fs::write(&wrong, other.ok(&["evidence", "pubkey"])).unwrap();
    let out = verify(&export, &wrong, &[]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(text(&out.stdout).lines().filter(|l| l.starts_with("altered: ")).count(), 5, "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("no record verifies with this public key"), "{}", text(&out.stderr));

    std::fs::write(&wrong, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI").unwrap();
    let out = verify(&export, &wrong, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not an evidence public key"), "{}", text(&out.stderr));
    let out = verify(&export, &env.path("no-such-key"), &[]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn policy_backups_record_their_policy_and_outcome() {
    let env = Env::new();
    let dir = env.path("policies");
    std::fs::create_dir_all(&dir).unwrap();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"a").unwrap();
    let repo = format!("[repository]\nurl = \"{}\"\npassword_env = \"CAIRN_TEST_PW\"\n", env.repo.display());
    std::fs::write(
        dir.join("files.toml"),
        format!("name = \"files\"\n[source]\npaths = [\"{}\"]\n{repo}", src.display()),
    )
    .unwrap();
    std::fs::write(
        dir.join("dump.toml"),
        format!("name = \"dump\"\n[source]\ncommand = \"echo partial; exit 7\"\nstored_as = \"db.dump\"\n{repo}"),
    )
    .unwrap();
    let run = |name: &str| {
        env.command()
            .args(["backup", "--policy", name, "--policies", dir.to_str().unwrap()])
            .env_remove("CAIRN_PASSWORD")
            .env("CAIRN_TEST_PW", PASSWORD)
            .output()
            .unwrap()
    };
    assert_eq!(run("files").status.code(), Some(0));
    assert_eq!(run("dump").status.code(), Some(1));
    let export = env.path("export");
    env.ok(&["evidence", "export", "--out", export.to_str().unwrap()]);
    let (ok, failed) = (read_record(&export, 1), read_record(&export, 2));
    assert_eq!((&ok["policy"], &ok["payload"]["outcome"]), (&"files".into(), &"success".into()));
    assert_eq!((&failed["policy"], &failed["payload"]["outcome"]), (&"dump".into(), &"failure".into()));
    assert_eq!(verify(&export, &export.join("pubkey.txt"), &[]).status.code(), Some(0));
}

#[test]
fn backups_from_concurrent_processes_make_one_chain() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"a").unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..3 {
                    env.ok(&["backup", "-q", src.to_str().unwrap()]);
                }
            });
        }
    });
    let export = env.path("export");
    env.ok(&["evidence", "export", "--out", export.to_str().unwrap()]);
    let out = verify(&export, &export.join("pubkey.txt"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).starts_with("intact: 7 record(s)"), "{}", text(&out.stdout));
}

#[test]
fn export_into_a_used_directory_is_refused() {
    let env = Env::new();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes"), "x").unwrap();
    let r = env.cairn(&["evidence", "export", "--out", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert!(text(&r.stderr).contains("is not empty"), "{}", text(&r.stderr));
}

#[test]
fn a_forget_records_the_snapshots_it_removed_and_a_dry_run_records_nothing() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"a").unwrap();
    for day in ["2026-01-01", "2026-01-02", "2026-01-03"] {
        env.ok(&["backup", src.to_str().unwrap(), "--time", &format!("{day}T00:00:00Z")]);
    }
    let snapshots: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    let older: Vec<serde_json::Value> = snapshots.as_array().unwrap()[..2].iter().map(|s| s["id"].clone()).collect();
    env.ok(&["forget", "--keep-last", "1", "--dry-run"]);
    env.ok(&["forget", "--keep-last", "1"]);
    let export = env.path("export");
    env.ok(&["evidence", "export", "--out", export.to_str().unwrap()]);
    assert!(!record_file(&export, 5).exists(), "init, three backups and one forget: the dry run left no record");
    let r = read_record(&export, 4);
    assert_eq!((&r["kind"], &r["policy"]), (&"forget".into(), &serde_json::Value::Null));
    let p = &r["payload"];
    assert_eq!(
        (&p["outcome"], &p["snapshots_kept"], &p["error"]),
        (&"success".into(), &1.into(), &serde_json::Value::Null)
    );
    let mut removed = p["snapshots_removed"].as_array().unwrap().clone();
    removed.sort_by_key(|v| v.as_str().unwrap().to_string());
    let mut want = older.clone();
    want.sort_by_key(|v| v.as_str().unwrap().to_string());
    assert_eq!(removed, want, "the record names the snapshots it deleted");
    assert_eq!(p["rules"], "keep-last 1", "{p}");
    assert_eq!(verify(&export, &export.join("pubkey.txt"), &[]).status.code(), Some(0));
}

/// A repository made before cairn kept evidence has snapshots and no
/// chain: `check` calls that damage, and `evidence adopt` (with the
/// state directory of the host's key, like every evidence command) starts
/// the chain with the snapshots it holds, after which `check` is clean.
#[test]
fn adopt_starts_the_chain_of_a_repository_made_without_evidence_and_check_is_clean_after() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), random_bytes(50_000, 7)).unwrap();
    let snap = env.ok(&["backup", src.to_str().unwrap()]).trim().to_string();
    std::fs::remove_dir_all(env.repo.join("evidence")).unwrap();
    let before = env.cairn(&["check"]);
    assert_eq!(
        before.status.code(),
        Some(5),
        "a repository with snapshots and no chain is damage: {}",
        text(&before.stderr)
    );
    let state = env.path("adopting-host-state");
    let out = env.cairn(&["evidence", "adopt", "--state", state.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("recording the 1 snapshot(s)"), "{}", text(&out.stderr));
    let again = env.cairn(&["evidence", "adopt", "--state", state.to_str().unwrap()]);
    assert!(!again.status.success(), "a chain is adopted once");
    assert!(text(&again.stderr).contains("already has an evidence chain"), "{}", text(&again.stderr));
    let check = env.cairn(&["check"]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert_eq!(snap.len(), 64);
}
