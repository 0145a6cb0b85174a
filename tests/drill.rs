//! `cairn drill` through the real binary: a passing drill and its three
//! reports, integrity, objective and validation failures with their exit
//! codes, the refusal of targets near live data, cleanup after passes and
//! failures, and the records in the state database. Seeded choices
//! (samples, random recovery points) are in `tests/drill_choices.rs`.

mod common;
mod drill_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cairn::state::{JobKind, Outcome, Trigger};
use common::PASSWORD;
use drill_support::*;
use serde_json::Value;

#[test]
fn a_full_drill_passes_restores_verifies_cleans_up_and_writes_three_reports() {
    let f = Fixture::new("[objectives]\nrto = \"1h\"\nrpo = \"1d\"");
    f.backup(&[]);
    let snap = f.snapshots().pop().unwrap();
    let r = f.drill_report(&[], 0);

    assert_eq!(r["schema"], "cairn.drill-report/1");
    let id = r["drill_id"].as_str().unwrap();
    assert_eq!(r["policy"]["name"], "web");
    assert!(r["policy"]["hash"].as_str().unwrap().starts_with("blake3:"));
    assert!(r["started_by"].as_str().unwrap().contains('@'), "user@host");
    assert_eq!(r["trigger"], "command");
    assert_eq!(r["tool"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(r["seed"].is_u64());
    let rp = &r["recovery_point"];
    assert_eq!(rp["snapshot_id"], snap["id"]);
    assert_eq!(rp["tree"], snap["tree"]);
    assert_eq!(rp["choice"], "latest");
    assert_eq!(rp["paths"], serde_json::json!([f.src.display().to_string()]));
    assert_eq!(r["repository"]["location"], f.env.repo.display().to_string());
    assert!(r["environment"]["cpus"].as_u64().unwrap() >= 1);
    assert!(!r["environment"]["kernel"].as_str().unwrap().is_empty());
    assert!(r["environment"]["filesystem"].is_string(), "{}", r["environment"]);

    // Every phase ran, in order, and took time.
    let names: Vec<&str> = r["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["open", "select", "plan", "transfer", "write", "verify", "cleanup"]);
    for p in ["open", "plan", "transfer", "verify", "cleanup"] {
        assert!(phase(&r, p)["duration_s"].as_f64().unwrap() > 0.0, "{p} took no time");
    }
    let first_byte = r["first_byte_s"].as_f64().unwrap();
    let in_rto: f64 = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in_rto"] == true)
        .map(|p| p["duration_s"].as_f64().unwrap())
        .sum();
    let measured = r["rto"]["measured_s"].as_f64().unwrap();
    assert!((measured - in_rto).abs() < 1e-5 && measured > first_byte && first_byte > 0.0, "{}", r["rto"]);
    assert_eq!(phase(&r, "cleanup")["in_rto"], false);
    assert_eq!(r["rto"]["objective_s"], 3600.0);
    assert_eq!(r["rto"]["met"], true);
    assert_eq!(r["rpo"]["met"], true);
    assert!(r["rpo"]["achieved_s"].as_f64().unwrap() >= 0.0);

    // Verified: every file and every other entry.
    let i = &r["integrity"];
    assert_eq!(i["method"], "full");
    assert_eq!(i["files_checked"], 7, "5 data files, readme, empty; the hard-linked file once");
    assert_eq!(i["bytes_checked"], 700_000 + 1_300_000 + 900_000 + 40_000 + 5 + 29);
    assert!(i["entries_checked"].as_u64().unwrap() >= 5, "dirs, symlink, hard link");
    assert_eq!(i["mismatches"], 0);
    assert_eq!(r["scope"]["files"], 7);
    assert_eq!(r["scope"]["links"], 1);
    assert_eq!(r["verdict"]["result"], "pass");
    assert_eq!(r["verdict"]["issues"], serde_json::json!([]));
    assert_scratch_removed(&f, &r);
    assert_eq!(
        r["cleanup"]["bytes_removed"],
        i["bytes_checked"].as_u64().unwrap() + 40_000,
        "the hard link's bytes too"
    );

    // Signed into the repository's evidence chain: the record names this
    // drill and the hash of this report's body, and the chain verifies.
    let ev = &r["evidence"];
    assert_eq!(ev["status"], "signed", "{ev}");
    assert_eq!(ev["report_blake3"], cairn::drill::report::body_blake3(&r).as_str());
    let exported = f.env.path("evidence");
    f.env.ok(&["evidence", "export", "--out", exported.to_str().unwrap()]);
    let seq = ev["seq"].as_u64().unwrap();
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(exported.join(format!("{seq:012}.json"))).unwrap()).unwrap();
    assert_eq!((record["kind"].as_str(), record["policy"].as_str()), (Some("drill"), Some("web")));
    assert_eq!(record["payload"]["drill_id"], id);
    assert_eq!(record["payload"]["report_blake3"], ev["report_blake3"]);
    assert_eq!(record["payload"]["verdict"], "pass");
    assert!(record["payload"]["rto_measured_ms"].is_u64(), "{record}");
    let pubkey = exported.join("pubkey.txt");
    let verified = f.env.ok(&["evidence", "verify", exported.to_str().unwrap(), "--pubkey", pubkey.to_str().unwrap()]);
    assert!(verified.contains(&format!("head {seq}:{}", ev["hash"].as_str().unwrap())), "{verified}");

    // The three forms, on disk.
    let dir = f.state.join("reports").join(id);
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(on_disk, r);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.starts_with(&format!("# Restore drill `{id}` — PASS")), "{md}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("PASS") && !html.contains("<script"));

    // Recorded: a drill row (with the tree, for drift) and a finished run.
    let st = f.state();
    let rows = st.drills(Some("web"), None, None).unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.drill_id, id);
    assert!(row.passed());
    assert_eq!(row.tree.as_deref(), snap["tree"].as_str());
    assert_eq!(row.snapshot_id.as_deref(), snap["id"].as_str());
    assert_eq!(row.files_checked, 7);
    assert_eq!(row.report_dir.as_deref(), Some(dir.to_str().unwrap()));
    assert_eq!(row.rto_objective_s, Some(3600.0));
    // The policy's backup is recorded too (backup --policy); one drill run.
    let runs: Vec<_> =
        st.runs(Some("web"), None, None).unwrap().into_iter().filter(|r| r.kind == JobKind::Drill).collect();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].kind, runs[0].trigger, runs[0].outcome), (JobKind::Drill, Trigger::Command, Outcome::Success));
    assert_eq!(row.run_id, Some(runs[0].id));
}

#[test]
fn a_damaged_pack_fails_integrity_with_exit_5_naming_the_files_and_still_cleans_up() {
    let f = Fixture::new("");
    f.backup(&[]);
    let affected = f.damage_a_data_pack();
    let out = f.drill(&[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["verdict"]["failure_kind"], "integrity");
    let named: BTreeSet<String> =
        r["integrity"]["mismatched"].as_array().unwrap().iter().map(|m| m["path"].as_str().unwrap().into()).collect();
    assert_eq!(named, affected, "exactly the files that use the damaged blob");
    assert_eq!(r["integrity"]["mismatches"], affected.len());
    for p in &affected {
        assert!(text(&out.stderr).contains(p.as_str()), "{p} not named on stderr");
    }
    assert_scratch_removed(&f, &r);
    let row = &f.state().drills(Some("web"), None, None).unwrap()[0];
    assert_eq!((row.verdict.as_str(), row.failure_kind.as_deref()), ("fail", Some("integrity")));
    assert_eq!(row.mismatches, affected.len() as u64);
    assert!(row.reasons[0].contains(affected.iter().next().unwrap().as_str()), "{:?}", row.reasons);
    let runs = f.state().runs(Some("web"), None, None).unwrap();
    let drill_runs: Vec<_> = runs.iter().filter(|r| r.kind == JobKind::Drill).collect();
    assert_eq!(drill_runs.len(), 1);
    assert_eq!(drill_runs[0].outcome, Outcome::Failure);
}

#[test]
fn a_recovery_point_older_than_the_rpo_misses_the_objective_with_exit_4() {
    let f = Fixture::new("[objectives]\nrpo = \"1d\"\nrto = \"1h\"");
    let three_days_ago = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339();
    f.backup(&["--time", &three_days_ago]);
    let r = f.drill_report(&[], 4);
    assert_eq!(r["verdict"]["failure_kind"], "objectives");
    let reasons = r["verdict"]["issues"].to_string();
    assert!(reasons.contains("RPO missed: the recovery point is 3 d old, objective 1 d"), "{reasons}");
    assert_eq!(r["rpo"]["met"], false);
    assert_eq!(r["rto"]["met"], true, "only the RPO is missed");
    let age = r["rpo"]["achieved_s"].as_f64().unwrap();
    assert_eq!(age, age_at_start(&r, &r["recovery_point"]["time"]), "the age is the drill's start minus the point's");
    assert!(age >= 3.0 * 86400.0, "{age}");
    assert_eq!(r["integrity"]["mismatches"], 0, "the data itself is fine");
}

#[test]
fn a_restore_slower_than_the_rto_misses_the_objective_with_exit_4() {
    // The smallest RTO a policy can state is 1s; a passing validation
    // command of 1.2 s makes the measured RTO exceed it.
    let f = Fixture::new(
        "[objectives]\nrto = \"1s\"\n[drill]\nschedule = \"@daily\"\nvalidate = { command = \"sleep 1.2\", timeout = \"30s\" }",
    );
    f.backup(&[]);
    let r = f.drill_report(&[], 4);
    assert_eq!(r["verdict"]["failure_kind"], "objectives");
    // How long the drill took depends on the machine: the message names
    // the miss and the objective, whatever was measured.
    let message = r["verdict"]["issues"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("RTO missed: measured ") && message.contains(", objective "), "{}", r["verdict"]);
    assert_eq!(r["validation"]["passed"], true);
    assert!(r["rto"]["measured_s"].as_f64().unwrap() > 1.2);
    assert_eq!(r["rto"]["met"], false);
    assert!(phase(&r, "validate")["in_rto"] == true);
}

#[test]
fn a_failing_validation_command_fails_with_exit_5_its_status_and_output() {
    let f = Fixture::new(
        "[drill]\nschedule = \"@daily\"\n\
         validate = { command = \"cat ./$SRC/docs/readme.txt; echo \\\"[$CAIRN_POLICY] broken\\\" >&2; exit 3\" }",
    );
    let policy = std::fs::read_to_string(f.policies.join("web.toml")).unwrap();
    std::fs::write(f.policies.join("web.toml"), policy.replace("$SRC", f.src.to_str().unwrap())).unwrap();
    f.backup(&[]);
    let r = f.drill_report(&[], 5);
    assert_eq!(r["verdict"]["failure_kind"], "validation");
    let v = &r["validation"];
    assert_eq!(
        (v["passed"].clone(), v["exit_code"].clone(), v["timed_out"].clone()),
        (false.into(), 3.into(), false.into())
    );
    // It ran in the restored tree, with the drill's environment.
    assert_eq!(v["output_tail"], "restore drills prove backups\n[web] broken\n");
    assert!(r["verdict"]["issues"][0]["message"].as_str().unwrap().ends_with("exited with status 3"));
    assert_scratch_removed(&f, &r);
    let md = std::fs::read_to_string(f.state.join("reports").join(r["drill_id"].as_str().unwrap()).join("report.md"))
        .unwrap();
    assert!(md.contains("[web] broken") && md.contains("Exit code 3"), "{md}");
}

#[test]
fn a_validation_command_that_times_out_is_killed_and_fails_with_exit_5() {
    let f = Fixture::new(
        "[drill]\nschedule = \"@daily\"\nvalidate = { command = \"echo started; sleep 60\", timeout = \"1s\" }",
    );
    f.backup(&[]);
    let r = f.drill_report(&[], 5);
    // Killed at its timeout (SIGKILL, output cut after "started"), not run
    // for its 60 s: that is what the report says, not a stopwatch.
    let v = &r["validation"];
    assert_eq!(v["timed_out"], true);
    assert_eq!(v["signal"], 9);
    assert_eq!(v["output_tail"], "started\n");
    let d = v["duration_s"].as_f64().unwrap();
    assert!(d >= 1.0, "it ran for its whole timeout: {d}");
    assert!(r["verdict"]["issues"][0]["message"].as_str().unwrap().contains("timed out after 1s"));
    assert_scratch_removed(&f, &r);
}

#[test]
fn targets_near_live_data_or_not_empty_are_refused_and_nothing_is_touched() {
    let f = Fixture::new("");
    f.backup(&[]);
    let before = listing(&f.src);
    let outside = f.env.path("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("precious"), b"keep me").unwrap();
    let cases: [(PathBuf, &str); 4] = [
        (f.src.join("docs/restore-here"), "inside the policy's source path"),
        (f.src.clone(), "inside the policy's source path"),
        (f.src.parent().unwrap().to_path_buf(), "contains the policy's source path"),
        (outside.clone(), "not empty"),
    ];
    for (target, why) in &cases {
        let out = f.drill(&["--target", target.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "a usage error: {}: {}", target.display(), text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains("refusing drill target") && err.contains(why), "{err}");
        assert!(out.stdout.is_empty());
    }
    assert_eq!(listing(&f.src), before, "the live source was not touched");
    assert!(!f.src.join("docs/restore-here").exists());
    assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep me");
    assert!(f.state().drills(None, None, None).unwrap().is_empty(), "a refused drill never started");
    assert!(!f.state.join("reports").exists());

    // An empty directory elsewhere is fine, and is left empty.
    let empty = f.env.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let r = f.drill_report(&["--target", empty.to_str().unwrap()], 0);
    assert_eq!(r["environment"]["target"], empty.display().to_string());
    assert_eq!((r["cleanup"]["action"].clone(), r["cleanup"]["verified"].clone()), ("emptied".into(), true.into()));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

/// Every entry below `dir` with its size and mtime.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), m.len(), m.mtime()));
        }
    }
    out.sort();
    out
}

#[test]
fn an_error_still_leaves_a_report_a_record_and_no_scratch() {
    let f = Fixture::new("");
    // No backup yet: there is no recovery point.
    let r = f.drill_report(&[], 1);
    assert_eq!(r["verdict"]["failure_kind"], "error");
    assert!(
        r["verdict"]["issues"][0]["message"].as_str().unwrap().contains("no snapshot of this policy"),
        "{}",
        r["verdict"]
    );
    assert_eq!(phase(&r, "select")["error"].as_str().map(|e| e.contains("no recovery point")), Some(true));
    assert!(r["recovery_point"].is_null());
    assert_eq!(r["rto"]["met"], Value::Null, "objectives are not judged after an error");
    assert_scratch_removed(&f, &r);
    assert!(f.state.join("reports").join(r["drill_id"].as_str().unwrap()).join("report.html").exists());
    let row = &f.state().drills(Some("web"), None, None).unwrap()[0];
    assert_eq!(row.failure_kind.as_deref(), Some("error"));
    assert_eq!(row.rto_measured_s, None, "a drill that never restored measured no RTO");
    // The failure is evidence too: signed into the chain.
    assert_eq!(r["evidence"]["status"], "signed", "{}", r["evidence"]);
    assert_eq!(row.evidence_hash.as_deref(), r["evidence"]["hash"].as_str());
}

#[test]
fn the_source_spot_check_tolerates_changes_but_not_silent_differences() {
    let f = Fixture::new("");
    f.backup(&[]);
    // Changed since (new mtime), and gone: neither is a failure.
    std::fs::write(f.src.join("docs/readme.txt"), b"edited after the backup\n").unwrap();
    std::fs::remove_file(f.src.join("data4.bin")).unwrap();
    let r = f.drill_report(&["--spot-check", "100"], 0);
    let s = &r["integrity"]["spot_check"];
    assert_eq!(s["checked"], 7);
    assert_eq!(strings(&s["changed_since"]), [f.src.join("docs/readme.txt").display().to_string()]);
    assert_eq!(strings(&s["gone"]), [f.src.join("data4.bin").display().to_string()]);
    assert_eq!(s["matched"], 5);
    assert!(phase(&r, "spot_check")["in_rto"] == false);

    // Same size and mtime, different content: a silent difference.
    let p = f.src.join("data2.bin");
    let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
    let mut data = std::fs::read(&p).unwrap();
    data[1000] ^= 1;
    std::fs::write(&p, &data).unwrap();
    std::fs::File::options().write(true).open(&p).unwrap().set_modified(mtime).unwrap();
    let r = f.drill_report(&["--spot-check", "100"], 5);
    let s = &r["integrity"]["spot_check"];
    assert_eq!(s["mismatched"][0]["path"], p.display().to_string());
    assert_eq!(r["integrity"]["mismatches"], 0, "the restore itself is exact");
    assert_eq!(r["verdict"]["failure_kind"], "integrity");
}

#[test]
fn the_terminal_summary_shows_the_spot_check_and_the_validation() {
    let f = Fixture::new(
        "[objectives]\nrto = \"1h\"\n[drill]\nschedule = \"@daily\"\nvalidate = { command = \"true\", timeout = \"30s\" }",
    );
    f.backup(&[]);
    std::fs::remove_file(f.src.join("data4.bin")).unwrap();
    let out = f.drill(&["--spot-check", "100"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("  spot-check of live files: 7 of 100 looked at, 6 match, 0 changed since, 1 gone, 0 unreadable, 0 mismatched"),
        "{err}"
    );
    assert!(err.contains("  validation `true`: passed ("), "{err}");
    assert!(err.contains("(objective 1 h): met"), "{err}");
}

#[test]
fn bug_a_missed_rto_under_a_minute_read_as_its_objective_in_the_summary() {
    // RTO 1 s against a validation of 1.2 s: measured and objective in
    // tenths, so the miss reads as a miss ("1.2 s", never "1 s / 1 s").
    let f = Fixture::new(
        "[objectives]\nrto = \"1s\"\n[drill]\nschedule = \"@daily\"\nvalidate = { command = \"sleep 1.2\", timeout = \"30s\" }",
    );
    f.backup(&[]);
    let out = f.drill(&[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let line = err.lines().find(|l| l.trim_start().starts_with("RTO ")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("(objective 1.0 s): MISSED"), "{line}");
    let measured = line.trim_start().strip_prefix("RTO ").unwrap().split(" (").next().unwrap();
    assert_ne!(measured, "1.0 s", "{line}");
    assert!(measured.ends_with(" s") && measured.contains('.'), "tenths under a minute: {line}");
}

#[test]
fn no_report_ever_holds_the_repository_password() {
    // The validation command prints its whole environment; the policy's
    // password variable and cairn's own are not in it.
    let f = Fixture::new(
        "password_env = \"CAIRN_TEST_PW\"\n[drill]\nschedule = \"@daily\"\n\
         validate = { command = \"env; echo pw=$CAIRN_TEST_PW; echo cp=$CAIRN_PASSWORD\" }",
    );
    f.backup(&[]);
    let out = f.drill(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dir = f.state.join("reports").join(r["drill_id"].as_str().unwrap());
    let tail = r["validation"]["output_tail"].as_str().unwrap();
    assert!(tail.contains("CAIRN_DRILL_ID=") && tail.ends_with("pw=\ncp=\n"), "the command ran and printed: {tail}");
    for name in ["report.json", "report.md", "report.html"] {
        let body = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(!body.contains(PASSWORD), "{name} holds the password");
    }
    assert!(!text(&out.stderr).contains(PASSWORD) && !text(&out.stdout).contains(PASSWORD));
}

#[test]
fn bug_another_policys_password_and_cloud_keys_never_reach_the_validation_command() {
    // The daemon's environment holds every policy's password variable and
    // the S3 keys; the validation command prints its whole environment.
    let f = Fixture::new("password_env = \"CAIRN_TEST_PW\"");
    f.backup(&[]);
    let body = std::fs::read_to_string(f.policies.join("web.toml")).unwrap();
    let body = format!(
        "env = [\"PGHOST\"]\n{body}[drill]\nschedule = \"@daily\"\nvalidate = {{ command = \"env; echo pw=$CAIRN_TEST_PW\" }}\n"
    );
    std::fs::write(f.policies.join("web.toml"), body).unwrap();
    let args = ["drill", "--policy", "web", "--policies", f.policies.to_str().unwrap(), "--json", "--state"];
    let out = f
        .env
        .command()
        .args(args)
        .arg(&f.state)
        .env(PW_VAR, PASSWORD)
        .env("CAIRN_REPO", "/nonexistent")
        .env("DB_POLICY_PW", "db-policy-secret")
        .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret-key")
        .env("PGHOST", "db1.example")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tail = r["validation"]["output_tail"].as_str().unwrap();
    assert!(tail.contains("PGHOST=db1.example") && tail.ends_with("pw=\n"), "named variables pass: {tail}");
    let names = strings(&r["validation"]["env"]);
    assert!(names.contains(&"PGHOST".to_string()) && names.contains(&"CAIRN_DRILL_ID".to_string()), "{names:?}");
    let dir = f.state.join("reports").join(r["drill_id"].as_str().unwrap());
    for name in ["report.json", "report.md", "report.html"] {
        let body = std::fs::read_to_string(dir.join(name)).unwrap();
        for secret in [PASSWORD, "db-policy-secret", "AKIAEXAMPLEKEYID", "aws-secret-key"] {
            assert!(!body.contains(secret), "{name} holds {secret}");
        }
        assert!(!body.contains("DB_POLICY_PW") && !body.contains("AWS_"), "{name} names a variable not passed");
    }
}

#[test]
fn a_policy_that_backs_up_its_own_state_directory_drills_into_its_scratch_setting() {
    // The source holds the state directory (think of a policy for `/var`):
    // the default scratch `<state>/scratch` is inside it and refused.
    let f = Fixture::new("");
    let state_in_src = f.src.join("var-lib-cairn");
    std::fs::create_dir_all(&state_in_src).unwrap();
    f.backup(&[]);
    let drill = || {
        let policies = f.policies.to_str().unwrap();
        let args =
            ["drill", "--policy", "web", "--policies", policies, "--json", "--state", state_in_src.to_str().unwrap()];
        f.env.command().args(args).env(PW_VAR, PASSWORD).output().unwrap()
    };
    let refused = drill();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("inside the policy's source path"), "{}", text(&refused.stderr));

    let scratch = f.env.path("drill-scratch");
    f.write_policy(&format!("[drill]\nschedule = \"@weekly\"\nscratch = \"{}\"\n", scratch.display()));
    let out = drill();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let target = r["environment"]["target"].as_str().unwrap();
    assert!(target.starts_with(scratch.to_str().unwrap()), "{target}");
    assert!(!std::path::Path::new(target).exists(), "cleaned up");
}
