//! A drill's inputs are checked before anything is recorded: an input
//! `cairn drill` refuses (a snapshot id that is not one of the policy's,
//! an unknown policy, a target that is not empty or near live data, a
//! sample or seed out of range) is a usage error, exit 2, and leaves no
//! run, no drill row, no evidence record, no report, nothing failing in
//! `cairn status` and nothing red in `cairn report`.

mod common;
mod drill_support;

use common::PASSWORD;
use drill_support::*;
use serde_json::Value;

/// What a drill could leave behind, read through the real binary and the
/// state database.
#[derive(Debug, PartialEq)]
struct Traces {
    runs: usize,
    drills: usize,
    evidence_records: u64,
    reports: bool,
    status_failing: bool,
    report_status: Value,
}

fn traces(f: &Fixture) -> Traces {
    let state = f.state();
    let runs = state.runs(None, None, None).unwrap().len();
    let drills = state.drills(None, None, None).unwrap().len();
    let export = f.env.path(&format!("export-{}", rand_suffix()));
    let out = f.env.ok(&["evidence", "export", "--json", "--out", export.to_str().unwrap()]);
    let evidence_records = serde_json::from_str::<Value>(&out).unwrap()["records"].as_u64().unwrap();
    let dirs = ["--policies", f.policies.to_str().unwrap(), "--state", f.state.to_str().unwrap()];
    let status = f.env.ok(&[&["status"][..], &dirs].concat());
    let report: Value =
        serde_json::from_str(&f.env.ok(&[&["report", "--format", "json"][..], &dirs].concat())).unwrap();
    Traces {
        runs,
        drills,
        evidence_records,
        reports: f.state.join("reports").exists(),
        status_failing: status.contains("FAILING"),
        report_status: report["status"].clone(),
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Runs `cairn drill` with `args` (after `drill`), asserts a usage error
/// naming `why`, and that nothing was left behind.
fn refused(f: &Fixture, args: &[&str], why: &str, before: &Traces) {
    let mut all = vec!["drill", "--policies", f.policies.to_str().unwrap(), "--state", f.state.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = f.env.command().args(&all).env(PW_VAR, PASSWORD).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: a usage error: {err}");
    assert!(err.contains(why), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    assert_eq!(&traces(f), before, "{args:?} left something behind");
}

#[test]
fn bug_a_drill_of_a_snapshot_that_does_not_exist_was_recorded_as_a_failing_drill() {
    let f = Fixture::new("[objectives]\nrto = \"1h\"\n[drill]\nschedule = \"@weekly\"\n");
    f.backup(&[]);
    // A snapshot no policy took, in the same repository.
    let other = f.env.backup_json(&[&f.src], &[]);
    let other = other["snapshot"].as_str().unwrap().to_string();
    let before = traces(&f);
    assert_eq!((before.runs, before.drills, before.status_failing), (1, 0, false), "{before:?}");
    assert_ne!(before.report_status, "red", "{before:?}");

    refused(&f, &["--policy", "web", "--snapshot", "deadbeef"], "no snapshot matches `deadbeef`", &before);
    refused(&f, &["--policy", "web", "--snapshot", &other[..12]], "is not a snapshot of policy `web`", &before);
    refused(&f, &["--policy", "nope"], "no valid policy named `nope`", &before);
    let full = f.env.path("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("precious"), b"keep").unwrap();
    refused(&f, &["--policy", "web", "--target", full.to_str().unwrap()], "not empty", &before);
    refused(&f, &["--policy", "web", "--target", f.src.join("inside").to_str().unwrap()], "source path", &before);
    refused(&f, &["--policy", "web", "--sample", "0"], "percentage", &before);
    refused(&f, &["--policy", "web", "--seed", "9007199254740992"], "9007199254740992", &before);
    assert_eq!(std::fs::read(full.join("precious")).unwrap(), b"keep");
    assert!(!f.src.join("inside").exists());

    // The same snapshot by a prefix of its own id drills, and is recorded.
    let mine = f.snapshots().into_iter().find(|s| s["policy"] == "web").unwrap();
    let r = f.drill_report(&["--snapshot", &mine["id"].as_str().unwrap()[..10]], 0);
    assert_eq!(r["recovery_point"]["snapshot_id"], mine["id"]);
    let after = traces(&f);
    assert_eq!((after.runs, after.drills, after.evidence_records), (2, 1, before.evidence_records + 1));
}
