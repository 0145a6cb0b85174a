//! The attacks of the evidence threat model, each against the real binary:
//! a host with the repository password and storage access tries to erase,
//! shrink, replay or re-sign the evidence, to date a snapshot in the
//! future, or to claim another host's name. Each must end in `cairn check`
//! or `cairn evidence verify` exiting 5 and naming what happened.
//!
//! Host keys live in each host's state directory (`CAIRN_STATE_DIR`), never
//! in the repository; the auditor pins them from `cairn evidence enroll`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{random_bytes, Env, PASSWORD};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A host: the test's repository, its own state directory (and key).
struct Host<'a> {
    env: &'a Env,
    state: PathBuf,
}

impl<'a> Host<'a> {
    /// A host whose key is made and enrolled now (in the state directory
    /// `state-<name>`); returns it and the line the auditor pins.
    fn enrolled(env: &'a Env, name: &str) -> (Host<'a>, String) {
        Host::enrolled_as(env, name, name)
    }

    /// A machine (`state-<machine>`) that enrolls a key as host `name`.
    fn enrolled_as(env: &'a Env, machine: &str, name: &str) -> (Host<'a>, String) {
        let h = Host { env, state: env.path(&format!("state-{machine}")) };
        let line = h.ok(&["evidence", "enroll", "--host", name]).trim().to_string();
        assert!(line.contains(name), "{line}");
        (h, line)
    }

    fn cairn(&self, args: &[&str]) -> Output {
        self.env.command().env("CAIRN_STATE_DIR", &self.state).args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        assert!(out.status.success(), "cairn {args:?} failed ({:?}): {}", out.status.code(), text(&out.stderr));
        text(&out.stdout)
    }

    /// Backs up a fresh file under `host`'s name; returns the snapshot id.
    fn backup(&self, host: &str, seed: u64) -> String {
        let src = self.env.path(&format!("src-{host}-{seed}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("f"), random_bytes(20_000, seed)).unwrap();
        self.ok(&["backup", "--host", host, src.to_str().unwrap()]).trim().to_string()
    }
}

/// `cairn check` must find damage (exit 5) and say each of `named`.
fn check_names(env: &Env, named: &[&str]) -> String {
    let out = env.cairn(&["check"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(5), "check did not find the damage: {all}");
    for n in named {
        assert!(all.contains(n), "check does not name `{n}`: {all}");
    }
    all
}

/// The newest record of the sub-chain of the only host key in `repo`.
fn newest_host_record(repo: &Path) -> PathBuf {
    let records = repo.join("evidence/records");
    let mut chains: Vec<PathBuf> =
        std::fs::read_dir(&records).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    assert_eq!(chains.len(), 1, "one host chain: {chains:?}");
    let mut seqs: Vec<PathBuf> = std::fs::read_dir(chains.pop().unwrap()).unwrap().map(|e| e.unwrap().path()).collect();
    seqs.sort();
    seqs.pop().unwrap()
}

fn host_records(repo: &Path) -> Vec<PathBuf> {
    let dir = newest_host_record(repo).parent().unwrap().to_path_buf();
    let mut seqs: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    seqs.sort();
    seqs
}

#[test]
fn bug_an_erased_chain_was_accepted_and_restarted_by_the_next_backup() {
    let env = Env::new();
    let (a, _) = Host::enrolled(&env, "alpha");
    a.backup("alpha", 1);
    assert!(env.cairn(&["check"]).status.success(), "an honest history checks clean");
    // Storage access, no password: delete every evidence object.
    std::fs::remove_dir_all(env.repo.join("evidence")).unwrap();
    check_names(&env, &["no evidence chain"]);
    // The next backup is saved, but never starts a new chain in its place.
    let out = a.cairn(&["backup", "--host", "alpha", env.path("src-alpha-1").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("could not append the evidence record"), "{}", text(&out.stderr));
    let records = env.repo.join("evidence/records");
    let left = std::fs::read_dir(&records).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "a new chain was started in {}", records.display());
    check_names(&env, &["no evidence chain"]);
}

#[test]
fn bug_deleting_the_newest_snapshot_with_its_record_went_unnoticed() {
    let env = Env::new();
    let (a, _) = Host::enrolled(&env, "alpha");
    a.backup("alpha", 1);
    let newest = a.backup("alpha", 2);
    assert!(env.cairn(&["check"]).status.success(), "an honest history checks clean");
    std::fs::remove_file(env.repo.join("snapshots").join(&newest)).unwrap();
    let record = newest_host_record(&env.repo);
    std::fs::remove_file(&record).unwrap();
    let seq = record.file_name().unwrap().to_str().unwrap().trim_start_matches('0').to_string();
    // The newest repository head commits to the removed record.
    check_names(&env, &[&format!("/{seq}")]);
}

#[test]
fn deleting_a_record_in_the_middle_or_replaying_an_old_one_is_named() {
    let env = Env::new();
    let (a, _) = Host::enrolled(&env, "alpha");
    for seed in 1..=3 {
        a.backup("alpha", seed);
    }
    let records = host_records(&env.repo);
    assert!(records.len() >= 4, "enroll and three backups: {records:?}");
    // A copy of an old record over a newer one: a replay.
    let saved = std::fs::read(&records[2]).unwrap();
    std::fs::copy(&records[1], &records[2]).unwrap();
    check_names(&env, &[records[2].file_name().unwrap().to_str().unwrap().trim_start_matches('0')]);
    // Put back, then remove it: a gap in the middle.
    std::fs::write(&records[2], saved).unwrap();
    assert!(env.cairn(&["check"]).status.success(), "restored, the chain checks clean");
    std::fs::remove_file(&records[2]).unwrap();
    check_names(&env, &["removed"]);
}

#[test]
fn bug_the_repository_password_was_enough_to_sign_history_the_auditor_trusts() {
    let env = Env::new();
    let (a, line) = Host::enrolled(&env, "alpha");
    a.backup("alpha", 1);
    // The auditor pins alpha's key, and the repository's own sealed key
    // (which every password holder can use) for record 0, `init`, alone.
    let legacy = env.ok(&["evidence", "pubkey"]).trim().to_string();
    let keys = env.path("auditor-keys");
    std::fs::write(&keys, format!("{line}\n@legacy {legacy} revoked-after=0\n")).unwrap();
    let reader = env.path("reader-key");
    std::fs::write(&reader, a.ok(&["evidence", "reader-key"])).unwrap();
    let verify = |what: &str| {
        let out = env.cairn(&[
            "evidence",
            "verify",
            "--keys",
            keys.to_str().unwrap(),
            "--reader-key",
            reader.to_str().unwrap(),
        ]);
        (out.status.code(), format!("{what}: {}{}", text(&out.stdout), text(&out.stderr)))
    };
    let (code, out) = verify("honest");
    assert_eq!(code, Some(0), "{out}");

    // Mallory has the password and the storage, but not alpha's key: she
    // makes a key of her own, enrolls it in alpha's name, and signs a backup.
    let (m, _) = Host::enrolled_as(&env, "mallory", "alpha");
    m.backup("alpha", 66);
    let (code, out) = verify("after the forgery");
    assert_eq!(code, Some(5), "{out}");
    assert!(out.contains("not in the keys file") || out.contains("untrusted"), "{out}");
}

#[test]
fn bug_a_snapshot_dated_2099_pinned_the_recovery_point() {
    let env = Env::new();
    let (a, _) = Host::enrolled(&env, "alpha");
    let real = a.backup("alpha", 1);
    // `backup` refuses a time ahead of the clock.
    let src = env.path("src-alpha-1");
    let out = a.cairn(&["backup", "--time", "2099-01-01T00:00:00Z", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("ahead"), "{}", text(&out.stderr));

    // A host with its key writes one anyway, through the library, and signs
    // its backup record: check flags it and `latest` is still the real one.
    let repo = common::forge::open(&env.repo, PASSWORD);
    let (_, mut snap) = repo.find_snapshot(&real).unwrap();
    snap.time = "2099-01-01T00:00:00Z".parse().unwrap();
    let forged = repo.save_snapshot(&snap).unwrap().to_hex();
    let appender = cairn::evidence::Appender::for_state_dir(&a.state).unwrap();
    let payload = serde_json::json!({"outcome": "success", "snapshot": forged, "hostname": "alpha"});
    appender.append(&repo, "backup", None, payload).unwrap();
    check_names(&env, &[&forged[..8], "ahead"]);
    let latest = common::forge::open(&env.repo, PASSWORD).find_snapshot("latest").unwrap().0.to_hex();
    assert_eq!(latest, real, "`latest` is never the snapshot dated 2099");
}

#[test]
fn bug_a_snapshot_could_claim_another_hosts_name_and_push_its_snapshots_out() {
    let env = Env::new();
    let (a, _) = Host::enrolled(&env, "alpha");
    let (b, _) = Host::enrolled(&env, "beta");
    let real = b.backup("beta", 1);
    // alpha writes three newer snapshots in beta's name.
    let forged: Vec<String> = (2..=4).map(|s| a.backup("beta", s)).collect();
    let all = check_names(&env, &[&forged[0][..8], "claims host beta"]);
    assert!(!all.contains(&format!("snapshot {} claims", &real[..8])), "{all}");
    // Retention by keep-last 1 for beta keeps beta's own snapshot.
    let out: serde_json::Value =
        serde_json::from_str(&env.ok(&["forget", "--keep-last", "1", "--host", "beta", "--json"])).unwrap();
    assert_eq!(out["removed"], serde_json::json!([]), "{out}");
    let left = env.ok(&["snapshots", "--json"]);
    assert!(left.contains(&real), "{left}");
}
