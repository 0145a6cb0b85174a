//! `cairn forget` end to end: backups at chosen times, the decisions of a
//! dry run, then the real thing, after which exactly the kept snapshots are
//! listed and every one of them still restores.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// A tiny tree whose `version.txt` says which backup it belongs to.
fn write_tree(src: &Path, version: usize) {
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("version.txt"), format!("version {version}\n").repeat(50)).unwrap();
    std::fs::write(src.join("sub/constant.bin"), random_bytes(40_000, 3)).unwrap();
}

/// Backs `src` up once per time, changing it before each; returns the
/// snapshot ids in the same order.
fn backups(env: &Env, src: &Path, times: &[&str], extra: &[&str]) -> Vec<String> {
    times
        .iter()
        .enumerate()
        .map(|(i, time)| {
            write_tree(src, i);
            let mut args = vec!["--time", time];
            args.extend_from_slice(extra);
            let v = env.backup_json(&[src], &args);
            v["snapshot"].as_str().unwrap_or_else(|| panic!("no snapshot id in {v}")).to_string()
        })
        .collect()
}

fn json(env: &Env, args: &[&str]) -> Value {
    let out = env.ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("cairn {args:?}: {e}: {out}"))
}

fn listed(env: &Env) -> Vec<String> {
    let v = json(env, &["snapshots", "--json"]);
    let mut ids: Vec<String> = v.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

/// id -> (action, reasons) over every group of a `forget --json` report.
fn decisions(report: &Value) -> BTreeMap<String, (String, Vec<String>)> {
    let mut out = BTreeMap::new();
    for g in report["groups"].as_array().unwrap() {
        for s in g["snapshots"].as_array().unwrap() {
            let reasons = s["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
            let id = s["id"].as_str().unwrap().to_string();
            assert!(out.insert(id, (s["action"].as_str().unwrap().to_string(), reasons)).is_none());
        }
    }
    out
}

fn keep(reason: &str) -> (String, Vec<String>) {
    ("keep".into(), vec![reason.into()])
}

fn forget() -> (String, Vec<String>) {
    ("forget".into(), vec!["matched no rule".into()])
}

fn restore_and_compare(env: &Env, id: &str, src: &Path, version: usize) {
    let target: PathBuf = env.path(&format!("restore-{id}"));
    env.ok(&["restore", id, "--target", target.to_str().unwrap(), "--verify"]);
    let root = restored(&target, src);
    let want = format!("version {version}\n").repeat(50);
    assert_eq!(std::fs::read_to_string(root.join("version.txt")).unwrap(), want, "snapshot {id}");
    assert_eq!(std::fs::read(root.join("sub/constant.bin")).unwrap(), random_bytes(40_000, 3), "snapshot {id}");
}

#[test]
fn keep_daily_dry_run_then_forget_keeps_exactly_the_decided_snapshots() {
    let env = Env::new();
    let src = env.path("src");
    let times = [
        "2026-11-18T10:00:00Z",
        "2026-11-19T09:00:00Z",
        "2026-11-19T18:00:00Z",
        "2026-11-20T08:00:00Z",
        "2026-11-20T20:00:00Z",
    ];
    let ids = backups(&env, &src, &times, &[]);
    let all = listed(&env);
    assert_eq!(all.len(), 5);

    let want: BTreeMap<String, (String, Vec<String>)> = [
        (ids[4].clone(), keep("daily (2026-11-20)")),
        (ids[3].clone(), forget()),
        (ids[2].clone(), keep("daily (2026-11-19)")),
        (ids[1].clone(), forget()),
        (ids[0].clone(), forget()),
    ]
    .into_iter()
    .collect();

    let dry = json(&env, &["forget", "--keep-daily", "2", "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["rules"], "keep-daily 2");
    assert_eq!((dry["kept"].as_u64(), dry["forgotten"].as_u64()), (Some(2), Some(3)));
    assert_eq!(dry["removed"], serde_json::json!([]));
    assert_eq!(dry["groups"].as_array().unwrap().len(), 1, "one host and path set: one group");
    assert_eq!(decisions(&dry), want);
    // Newest first within the group.
    let order: Vec<&str> =
        dry["groups"][0]["snapshots"].as_array().unwrap().iter().map(|s| s["time"].as_str().unwrap()).collect();
    assert_eq!(order, times.iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(listed(&env), all, "a dry run deletes nothing");

    let real = json(&env, &["forget", "--keep-daily", "2", "--json"]);
    assert_eq!(real["dry_run"], false);
    assert_eq!(decisions(&real), want, "the same decisions as the dry run");
    let mut removed: Vec<String> =
        real["removed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    removed.sort();
    let mut forgotten = vec![ids[0].clone(), ids[1].clone(), ids[3].clone()];
    forgotten.sort();
    assert_eq!(removed, forgotten);

    let mut kept = vec![ids[2].clone(), ids[4].clone()];
    kept.sort();
    assert_eq!(listed(&env), kept, "exactly the kept snapshots remain");
    // Forget removes snapshot objects only; the data stays for prune.
    env.ok(&["check"]);
    restore_and_compare(&env, &ids[2], &src, 2);
    restore_and_compare(&env, &ids[4], &src, 4);

    // Applying the same rules again forgets nothing more.
    let again = json(&env, &["forget", "--keep-daily", "2", "--json"]);
    assert_eq!(again["forgotten"], 0);
    assert_eq!(listed(&env), kept);
}

#[test]
fn forget_without_a_rule_is_refused_and_deletes_nothing() {
    let env = Env::new();
    let src = env.path("src");
    backups(&env, &src, &["2026-11-19T10:00:00Z", "2026-11-20T10:00:00Z"], &[]);
    for args in
        [&["forget"][..], &["forget", "--keep-last", "0"], &["forget", "--keep-within", "0s", "--keep-daily", "0"]]
    {
        let out = env.cairn(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("will not forget every snapshot"), "{args:?}: {err}");
    }
    let out = env.cairn(&["forget", "--keep-within", "1y"]);
    assert_eq!(out.status.code(), Some(2), "a bad duration is a usage error");
    assert_eq!(listed(&env).len(), 2);
}

#[test]
fn rules_apply_per_host_and_filters_leave_other_snapshots_alone() {
    let env = Env::new();
    let src = env.path("src");
    let a = backups(&env, &src, &["2026-11-18T10:00:00Z", "2026-11-19T10:00:00Z"], &["--host", "alpha"]);
    let b = backups(&env, &src, &["2026-11-18T11:00:00Z", "2026-11-20T10:00:00Z"], &["--host", "beta", "--tag", "db"]);

    // Only beta's snapshots are considered.
    let r = json(&env, &["forget", "--keep-last", "1", "--host", "beta", "--json"]);
    assert_eq!(r["groups"].as_array().unwrap().len(), 1);
    assert_eq!(r["groups"][0]["host"], "beta");
    let mut want = vec![a[0].clone(), a[1].clone(), b[1].clone()];
    want.sort();
    assert_eq!(listed(&env), want);

    // Without a filter, each host keeps its newest.
    let r = json(&env, &["forget", "--keep-last", "1", "--json"]);
    assert_eq!(r["groups"].as_array().unwrap().len(), 2);
    let mut want = vec![a[1].clone(), b[1].clone()];
    want.sort();
    assert_eq!(listed(&env), want);

    // --keep-tag keeps across hosts; --tag selects the snapshots considered.
    let r = json(&env, &["forget", "--keep-tag", "db", "--tag", "db", "--dry-run", "--json"]);
    assert_eq!(decisions(&r), [(b[1].clone(), keep("tag db"))].into_iter().collect());
    restore_and_compare(&env, &a[1], &src, 1);
    restore_and_compare(&env, &b[1], &src, 1);
}

#[test]
fn policy_rules_apply_to_the_policys_snapshots_only() {
    let env = Env::new();
    let src = env.path("src");
    let dir = env.path("policies");
    std::fs::create_dir_all(&dir).unwrap();
    let policy = format!(
        "name = \"docs\"\n[source]\npaths = [{:?}]\n[repository]\nurl = {:?}\n[retention]\nkeep_last = 1\n",
        src.display().to_string(),
        env.repo.display().to_string()
    );
    std::fs::write(dir.join("docs.toml"), policy).unwrap();
    let dir_s = dir.to_str().unwrap();
    let mut by_policy = Vec::new();
    for (i, time) in ["2026-11-18T10:00:00Z", "2026-11-19T10:00:00Z", "2026-11-20T10:00:00Z"].iter().enumerate() {
        write_tree(&src, i);
        let v = json(&env, &["backup", "--policy", "docs", "--policies", dir_s, "--time", time, "--json"]);
        by_policy.push(v["snapshot"].as_str().unwrap().to_string());
    }
    let plain = backups(&env, &src, &["2026-11-17T10:00:00Z"], &[]);

    let r = json(&env, &["forget", "--policy", "docs", "--policies", dir_s, "--json"]);
    assert_eq!(r["rules"], "keep-last 1");
    assert_eq!(r["groups"].as_array().unwrap().len(), 1);
    assert_eq!(r["groups"][0]["policy"], "docs");
    let want =
        [(by_policy[2].clone(), keep("last 1")), (by_policy[1].clone(), forget()), (by_policy[0].clone(), forget())];
    assert_eq!(decisions(&r), want.into_iter().collect());
    let mut remaining = vec![by_policy[2].clone(), plain[0].clone()];
    remaining.sort();
    assert_eq!(listed(&env), remaining, "snapshots outside the policy are not touched");

    // --policy and --keep-* flags do not mix.
    let out = env.cairn(&["forget", "--policy", "docs", "--policies", dir_s, "--keep-last", "3"]);
    assert_eq!(out.status.code(), Some(2));
}
