use chrono::{Duration, TimeZone, Utc};

use super::*;

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, h, m, 0).unwrap()
}

fn new_run(policy: &str, kind: JobKind, at: DateTime<Utc>) -> NewRun {
    NewRun {
        policy: policy.into(),
        kind,
        trigger: Trigger::Schedule,
        scheduled_at: Some(at),
        started_at: at,
        attempt: 1,
    }
}

fn drill(id: &str, at: DateTime<Utc>, verdict: &str, tree: &str) -> DrillRow {
    DrillRow {
        drill_id: id.into(),
        policy: "web".into(),
        run_id: None,
        started_by: "schedule".into(),
        started_at: at,
        ended_at: at + Duration::seconds(30),
        snapshot_id: Some("ab".into()),
        snapshot_time: Some(at - Duration::hours(1)),
        tree: Some(tree.into()),
        verdict: verdict.into(),
        failure_kind: (verdict == "fail").then(|| "objectives".into()),
        reasons: if verdict == "fail" { vec!["measured RTO 40 s is above the objective 30 s".into()] } else { vec![] },
        rto_objective_s: Some(30.0),
        rto_measured_s: Some(12.5),
        rpo_objective_s: Some(86400.0),
        rpo_achieved_s: Some(3600.0),
        files_checked: 10,
        bytes_checked: 1000,
        mismatches: 0,
        report_dir: None,
        evidence_hash: None,
    }
}

#[test]
fn runs_survive_reopening_and_read_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let s = State::open(dir.path()).unwrap();
        let id = s.start_run(&new_run("web", JobKind::Backup, t(3, 0))).unwrap();
        s.set_progress(id, &serde_json::json!({"files": 5})).unwrap();
        assert_eq!(s.running().unwrap()[0].progress, Some(serde_json::json!({"files": 5})));
        s.finish_run(
            id,
            &RunFinish {
                ended_at: t(3, 5),
                outcome: Outcome::Success,
                snapshot_id: Some("abcd".into()),
                bytes: Some(42),
                error: None,
                duration_s: Some(300.0),
            },
        )
        .unwrap();
        s.set_next_due("web", JobKind::Backup, t(4, 0), t(4, 1)).unwrap();
        id
    };
    let s = State::open_existing(dir.path()).unwrap().expect("state exists");
    let runs = s.runs(Some("web"), None, None).unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!((r.id, r.outcome, r.bytes, r.snapshot_id.as_deref()), (id, Outcome::Success, Some(42), Some("abcd")));
    assert_eq!((r.started_at, r.ended_at, r.progress.clone()), (t(3, 0), Some(t(3, 5)), None));
    assert!(s.running().unwrap().is_empty());
    assert_eq!(s.next_due("web", JobKind::Backup).unwrap(), Some((t(4, 0), t(4, 1))));
    assert_eq!(s.next_due("web", JobKind::Prune).unwrap(), None);
    assert_eq!(s.runs(Some("web"), Some(t(3, 1)), None).unwrap().len(), 0, "since is inclusive of start time only");
    assert_eq!(s.runs(None, Some(t(3, 0)), Some(t(3, 1))).unwrap().len(), 1);
}

#[test]
fn a_reader_never_creates_the_state() {
    let dir = tempfile::tempdir().unwrap();
    assert!(State::open_existing(dir.path()).unwrap().is_none());
    assert!(!dir.path().join(DB_FILE).exists());
}

#[test]
fn last_run_picks_the_newest_with_the_outcome_asked() {
    let dir = tempfile::tempdir().unwrap();
    let s = State::open(dir.path()).unwrap();
    for (h, outcome) in [(1, Outcome::Success), (2, Outcome::Failure), (3, Outcome::Success), (4, Outcome::Failure)] {
        let id = s.start_run(&new_run("web", JobKind::Backup, t(h, 0))).unwrap();
        let error = (outcome == Outcome::Failure).then(|| format!("boom {h}"));
        s.finish_run(id, &RunFinish { ended_at: t(h, 1), outcome, error, ..Default::default() }).unwrap();
    }
    let ok = s.last_run("web", JobKind::Backup, &[Outcome::Success]).unwrap().unwrap();
    assert_eq!(ok.started_at, t(3, 0));
    let bad = s.last_run("web", JobKind::Backup, &[Outcome::Failure, Outcome::Interrupted]).unwrap().unwrap();
    assert_eq!((bad.started_at, bad.error.as_deref()), (t(4, 0), Some("boom 4")));
    assert!(s.last_run("web", JobKind::Prune, &[Outcome::Success]).unwrap().is_none());
}

#[test]
fn runs_left_running_by_a_dead_process_become_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let s = State::open(dir.path()).unwrap();
    let id = s.start_run(&new_run("web", JobKind::Backup, t(1, 0))).unwrap();
    // A pid that cannot exist (above pid_max).
    s.with(|c| c.execute("UPDATE runs SET pid = 4194305 WHERE id = ?1", [id])).unwrap();
    let ours = s.start_run(&new_run("db", JobKind::Backup, t(1, 0))).unwrap();
    assert_eq!(s.close_orphaned_runs(t(2, 0)).unwrap().len(), 2, "ours too: a restarted daemon reuses no run");
    let runs = s.runs(None, None, None).unwrap();
    assert!(runs.iter().all(|r| r.outcome == Outcome::Interrupted && r.ended_at == Some(t(2, 0))), "{runs:?}");
    assert_eq!(runs.iter().find(|r| r.id == ours).map(|r| r.outcome), Some(Outcome::Interrupted));
}

#[test]
fn drift_is_a_new_tree_since_the_last_passing_drill() {
    let dir = tempfile::tempdir().unwrap();
    let s = State::open(dir.path()).unwrap();
    assert_eq!(s.content_changed_since_drill("web").unwrap(), None, "never drilled");
    let rp = |tree: &str| RecoveryPoint { snapshot_id: "s".into(), time: t(1, 0), tree: tree.into() };
    s.set_recovery_point("web", &rp("tree-a")).unwrap();
    s.record_drill(&drill("d1", t(2, 0), "pass", "tree-a")).unwrap();
    assert_eq!(s.content_changed_since_drill("web").unwrap(), Some(false));
    // A failed drill of newer content does not count as verification.
    s.set_recovery_point("web", &rp("tree-b")).unwrap();
    s.record_drill(&drill("d2", t(3, 0), "fail", "tree-b")).unwrap();
    assert_eq!(s.content_changed_since_drill("web").unwrap(), Some(true));
    let (last, passed) = s.last_drills("web").unwrap();
    assert_eq!((last.unwrap().drill_id, passed.clone().unwrap().drill_id), ("d2".to_string(), "d1".to_string()));
    let back = s.drills(Some("web"), None, None).unwrap();
    assert_eq!(back[1], drill("d2", t(3, 0), "fail", "tree-b"), "a drill row reads back as written");
    assert_eq!(s.known_policies().unwrap(), vec!["web".to_string()]);
}

#[test]
fn a_database_from_a_newer_cairn_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    drop(State::open(dir.path()).unwrap());
    let c = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let e = State::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("state.db") && e.contains("schema version 99"), "{e}");
}

#[test]
fn the_running_daemon_sweeps_dead_runs_but_never_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let s = State::open(dir.path()).unwrap();
    let dead = s.start_run(&new_run("web", JobKind::Drill, t(1, 0))).unwrap();
    s.with(|c| c.execute("UPDATE runs SET pid = 4194305 WHERE id = ?1", [dead])).unwrap();
    let ours = s.start_run(&new_run("db", JobKind::Backup, t(1, 0))).unwrap();
    let closed: Vec<i64> = s.close_dead_runs(t(2, 0)).unwrap().iter().map(|r| r.id).collect();
    assert_eq!(closed, [dead]);
    assert_eq!(s.running().unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [ours]);
}

#[test]
fn a_recovery_point_never_moves_back_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = State::open(dir.path()).unwrap();
    let rp = |id: &str, at| RecoveryPoint { snapshot_id: id.into(), time: at, tree: "t".into() };
    s.set_recovery_point("web", &rp("new", t(5, 0))).unwrap();
    // A slow backup that started earlier finishes later.
    s.set_recovery_point("web", &rp("old", t(4, 0))).unwrap();
    assert_eq!(s.recovery_point("web").unwrap().unwrap().snapshot_id, "new");
    s.set_recovery_point("web", &rp("newer", t(6, 0))).unwrap();
    assert_eq!(s.recovery_point("web").unwrap().unwrap().snapshot_id, "newer");
}

#[test]
fn the_state_directory_database_and_its_wal_are_private_under_umask_022() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("state");
    let s = crate::private::with_umask(0o022, || {
        let s = State::open(&dir).unwrap();
        s.start_run(&new_run("web", JobKind::Backup, t(1, 0))).unwrap();
        s
    });
    let mode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(""), 0o700);
    // The WAL and shared-memory files exist while the database is open.
    for f in [DB_FILE, &format!("{DB_FILE}-wal"), &format!("{DB_FILE}-shm")] {
        assert_eq!(mode(f), 0o600, "{f}");
    }
    drop(s);
}
