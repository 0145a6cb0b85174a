//! The report builder as a pure function: hand-made rows, a fixed "now".

use std::path::Path;

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::policy::Policy;
use crate::state::{DrillRow, JobKind, Outcome, RecoveryPoint, RunRow, Trigger};

pub(super) fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub(super) fn pol(name: &str, extra: &str) -> Policy {
    let src = format!("name = \"{name}\"\n[source]\npaths = [\"/srv\"]\n[repository]\nurl = \"/repo\"\n{extra}");
    crate::policy::load_str(&src, Path::new("t.toml")).unwrap()
}

pub(super) fn run(policy: &str, start: &str, minutes: i64, outcome: Outcome, slot: Option<&str>) -> RunRow {
    let started_at = t(start);
    RunRow {
        id: 0,
        policy: policy.into(),
        kind: JobKind::Backup,
        trigger: if slot.is_some() { Trigger::Schedule } else { Trigger::RunNow },
        scheduled_at: slot.map(t),
        started_at,
        ended_at: (outcome != Outcome::Running).then(|| started_at + Duration::minutes(minutes)),
        outcome,
        snapshot_id: (outcome == Outcome::Success).then(|| format!("snap-{start}")),
        bytes: None,
        error: (outcome == Outcome::Failure).then(|| "bucket `b`: connection refused | retried 8 times".into()),
        duration_s: None,
        attempt: 1,
        pid: None,
        progress: None,
    }
}

pub(super) fn drill(policy: &str, start: &str, pass: bool, rto_s: f64, objective_s: f64) -> DrillRow {
    DrillRow {
        drill_id: format!("{policy}-{start}"),
        policy: policy.into(),
        run_id: None,
        started_by: "schedule".into(),
        started_at: t(start),
        ended_at: t(start) + Duration::seconds(rto_s as i64),
        snapshot_id: Some("ab12".into()),
        snapshot_time: Some(t(start) - Duration::hours(3)),
        tree: Some("tree".into()),
        verdict: if pass { "pass" } else { "fail" }.into(),
        failure_kind: (!pass).then(|| "objectives".into()),
        reasons: if pass { vec![] } else { vec![format!("measured RTO {rto_s} s is above the objective")] },
        rto_objective_s: Some(objective_s),
        rto_measured_s: Some(rto_s),
        rpo_objective_s: Some(93600.0),
        rpo_achieved_s: Some(10800.0),
        files_checked: 100,
        bytes_checked: 1 << 20,
        mismatches: 0,
        report_dir: None,
        evidence_hash: None,
    }
}

pub(super) fn input(policies: Vec<Policy>, state: Option<StateRows>, since: &str, until: &str, now: &str) -> Input {
    Input {
        period: Period { since: t(since), until: t(until) },
        now: t(now),
        host: "backup1".into(),
        state_dir: "/var/lib/cairn".into(),
        policies_dir: "/etc/cairn/policies".into(),
        policies,
        policy_problems: vec![],
        state,
        evidence: None,
    }
}

pub(super) fn rows(runs: Vec<RunRow>, drills: Vec<DrillRow>) -> StateRows {
    StateRows { runs, drills, ..Default::default() }
}

pub(super) fn only(r: &Report, name: &str) -> PolicyReport {
    r.policies.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no policy {name}")).clone()
}

/// The findings that count (amber and red), as `severity: message`.
pub(super) fn messages(p: &PolicyReport) -> Vec<String> {
    p.findings
        .iter()
        .filter(|f| f.severity != Status::Green)
        .map(|f| format!("{}: {}", f.severity.as_str(), f.message))
        .collect()
}

#[test]
fn scheduled_slots_follow_the_time_zone_across_spring_forward() {
    // 02:30 in Berlin does not exist on 2026-03-29: that slot fires at 03:30
    // CEST (01:30 UTC), and the next day's at 00:30 UTC.
    let p = pol("web", "[schedule]\nbackup = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"");
    let runs = vec![
        run("web", "2026-03-28T01:31:00Z", 10, Outcome::Success, Some("2026-03-28T01:30:00Z")),
        run("web", "2026-03-29T01:30:00Z", 1, Outcome::Failure, Some("2026-03-29T01:30:00Z")),
        run("web", "2026-03-29T02:00:00Z", 10, Outcome::Success, Some("2026-03-29T01:30:00Z")),
        // Before the period: counts for the recovery point, not for the slots.
        run("web", "2026-03-27T01:30:00Z", 10, Outcome::Success, Some("2026-03-27T01:30:00Z")),
    ];
    let r = build(&input(
        vec![p],
        Some(rows(runs, vec![])),
        "2026-03-28T00:00:00Z",
        "2026-03-31T00:00:00Z",
        "2026-04-01T00:00:00Z",
    ));
    let b = only(&r, "web").backups;
    assert_eq!(b.scheduled, Some(3));
    assert_eq!(b.slots_covered, Some(2));
    assert_eq!(b.missed_slots, vec![t("2026-03-30T00:30:00Z")]);
    assert_eq!((b.runs, b.succeeded, b.failed), (3, 2, 1));
    assert_eq!(b.failures.len(), 1);
    assert_eq!(b.failures[0].started_at, t("2026-03-29T01:30:00Z"));
    assert!(b.failures[0].error.as_deref().unwrap().contains("connection refused"));
    assert_eq!(b.coverage, Some(2.0 / 3.0));
    assert_eq!(r.summary.backups_scheduled, 3);
    let web = only(&r, "web");
    assert!(messages(&web).iter().any(|m| m.starts_with("amber: 1 of 3 scheduled backups")), "{:?}", messages(&web));
}

#[test]
fn hourly_slots_count_real_hours_on_dst_days() {
    let p = pol("db", "[schedule]\nbackup = \"0 * * * *\"\ntimezone = \"Europe/Berlin\"");
    let slots = |since: &str, until: &str| build::slots(&p, t(since), t(until)).len();
    // The local day of 2026-03-29 has 23 hours, that of 2026-10-25 has 25.
    assert_eq!(slots("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"), 23);
    assert_eq!(slots("2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"), 25);
    assert_eq!(slots("2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z"), 24);
    // A slot exactly at `since` is in the period; one exactly at `until` is not.
    assert_eq!(slots("2026-06-01T00:00:00Z", "2026-06-01T01:00:00Z"), 1);
}

#[test]
fn slots_not_yet_due_are_not_counted() {
    let p = pol("web", "[schedule]\nbackup = \"0 3 * * *\"");
    let r = build(&input(
        vec![p],
        Some(StateRows::default()),
        "2026-03-01T00:00:00Z",
        "2026-03-31T00:00:00Z",
        "2026-03-10T12:00:00Z",
    ));
    assert_eq!(r.period.evaluated_until, t("2026-03-10T12:00:00Z"));
    assert_eq!(only(&r, "web").backups.scheduled, Some(10));
    assert!(r.notices.iter().any(|n| n.contains("ends after the report was generated")), "{:?}", r.notices);
}

#[test]
fn bug_a_policy_created_mid_period_was_charged_with_every_slot_before_it_existed() {
    // First recorded on the 21st: the daily slots of the 1st to the 20th
    // were not its to miss, and its recovery point age starts then.
    let p = pol("web", "[schedule]\nbackup = \"0 3 * * *\"\n[objectives]\nrpo = \"26h\"");
    let runs = (21..=30).map(|d| run("web", &format!("2026-03-{d:02}T03:00:00Z"), 5, Outcome::Success, None)).collect();
    let r = build(&input(
        vec![p],
        Some(rows(runs, vec![])),
        "2026-03-01T00:00:00Z",
        "2026-03-31T00:00:00Z",
        "2026-03-31T00:00:00Z",
    ));
    let web = only(&r, "web");
    assert_eq!(web.tracked_since, Some(t("2026-03-21T03:00:00Z")));
    assert_eq!((web.backups.scheduled, web.backups.slots_covered), (Some(10), Some(10)));
    // Its first backup took 5 minutes, far less than the RPO: no breach.
    assert!(web.rpo.breaches.is_empty(), "{:?}", web.rpo.breaches);
    assert!(!messages(&web).iter().any(|m| m.contains("RPO") || m.contains("backup")), "{:?}", messages(&web));
}

/// A successful backup of `web` from 02:00 to 02:10 on a day of March 2026.
pub(super) fn daily(day: u32) -> RunRow {
    run("web", &format!("2026-03-{day:02}T02:00:00Z"), 10, Outcome::Success, None)
}

#[test]
fn rpo_breaches_are_exact_intervals_of_the_age_sawtooth() {
    let p = pol("web", "[objectives]\nrpo = \"26h\"\nrto = \"2h\"");
    let mut runs = vec![run("web", "2026-02-28T02:00:00Z", 10, Outcome::Success, None)];
    runs.extend([1, 3, 4, 5, 6].map(daily));
    runs.push(run("web", "2026-03-02T02:00:00Z", 5, Outcome::Failure, None));
    let r = build(&input(
        vec![p],
        Some(rows(runs, vec![])),
        "2026-03-01T00:00:00Z",
        "2026-03-08T00:00:00Z",
        "2026-03-08T00:00:00Z",
    ));
    let rpo = only(&r, "web").rpo;
    let h = |x: f64| x * 3600.0;
    assert_eq!(
        rpo.breaches,
        vec![
            // Data as of Mar 1 02:00 is 26 h old at Mar 2 04:00, until Mar 3's backup finishes at 02:10.
            Breach {
                start: t("2026-03-02T04:00:00Z"),
                end: t("2026-03-03T02:10:00Z"),
                duration_s: h(22.0) + 600.0,
                ongoing: false
            },
            Breach {
                start: t("2026-03-07T04:00:00Z"),
                end: t("2026-03-08T00:00:00Z"),
                duration_s: h(20.0),
                ongoing: true
            },
        ]
    );
    assert_eq!(rpo.breached_s, h(42.0) + 600.0);
    assert_eq!(rpo.age_at_end_s, Some(h(46.0)));
    // The worst was just before Mar 3's backup finished, after Mar 2's failed.
    assert_eq!(rpo.worst_age_s, Some(h(48.0) + 600.0));
    assert_eq!(rpo.compliance, Some(1.0 - (h(42.0) + 600.0) / h(168.0)));
    // The period starts with the backup of Feb 28 (22 h old), which drops
    // to 10 min when Mar 1's finishes.
    assert_eq!(rpo.samples[0], AgeSample { at: t("2026-03-01T00:00:00Z"), age_s: h(22.0) });
    assert_eq!(rpo.samples[2], AgeSample { at: t("2026-03-01T02:10:00Z"), age_s: 600.0 });
    let web = only(&r, "web");
    assert_eq!(web.status, Status::Red);
    let m = messages(&web);
    assert!(m.iter().any(|m| m.starts_with("red: RPO in breach at the end of the period")), "{m:?}");
    assert!(m.iter().any(|m| m.starts_with("amber: RPO breached 1 time during the period")), "{m:?}");
}

#[test]
fn a_recorded_recovery_point_without_a_run_ends_a_breach() {
    let p = pol("web", "[objectives]\nrpo = \"1d\"");
    let mut s = rows(vec![daily(1)], vec![]);
    let rp = RecoveryPoint { snapshot_id: "manual".into(), time: t("2026-03-03T12:00:00Z"), tree: "x".into() };
    s.recovery_points.insert("web".into(), rp);
    let r = build(&input(vec![p], Some(s), "2026-03-01T00:00:00Z", "2026-03-04T00:00:00Z", "2026-03-05T00:00:00Z"));
    let rpo = only(&r, "web").rpo;
    // First recorded at Mar 1 02:00 and backed up by 02:10 (no breach);
    // then Mar 1 02:00 + 24 h until the manual snapshot.
    let starts: Vec<_> = rpo.breaches.iter().map(|b| (b.start, b.end)).collect();
    assert_eq!(starts, vec![(t("2026-03-02T02:00:00Z"), t("2026-03-03T12:00:00Z"))]);
    assert_eq!(rpo.age_at_end_s, Some(12.0 * 3600.0));
}

#[test]
fn no_recovery_point_is_red_and_a_breach_once_the_rpo_has_passed_since_the_first_run() {
    let p = pol("web", "[schedule]\nbackup = \"0 3 * * *\"\n[objectives]\nrpo = \"26h\"");
    let runs = vec![run("web", "2026-03-01T03:00:00Z", 1, Outcome::Failure, Some("2026-03-01T03:00:00Z"))];
    let r = build(&input(
        vec![p],
        Some(rows(runs, vec![])),
        "2026-03-01T00:00:00Z",
        "2026-03-03T00:00:00Z",
        "2026-03-03T00:00:00Z",
    ));
    let web = only(&r, "web");
    assert_eq!(web.rpo.age_at_end_s, None);
    // First recorded at Mar 1 03:00, never backed up: breached from 26 h later.
    assert_eq!(web.rpo.breached_s, 19.0 * 3600.0);
    assert_eq!(web.rpo.breaches[0].start, t("2026-03-02T05:00:00Z"));
    assert_eq!(web.status, Status::Red);
    let m = messages(&web);
    assert!(m.contains(&"red: none of the 2 scheduled backups succeeded".to_string()), "{m:?}");
    assert!(m.iter().any(|m| m.starts_with("red: no recovery point")), "{m:?}");
}

#[test]
fn drills_in_the_period_give_the_pass_rate_and_rto_figures() {
    let p = pol("web", "[objectives]\nrpo = \"26h\"\nrto = \"1h\"");
    let drills = vec![
        drill("web", "2026-02-20T06:00:00Z", false, 9000.0, 3600.0), // before the period
        drill("web", "2026-03-02T06:00:00Z", true, 1200.0, 3600.0),
        drill("web", "2026-03-09T06:00:00Z", false, 4000.0, 3600.0),
        drill("web", "2026-03-16T06:00:00Z", true, 1500.0, 3600.0),
        drill("web", "2026-03-23T06:00:00Z", true, 1300.0, 3600.0),
    ];
    let mut runs: Vec<RunRow> = (1..=30).map(daily).collect();
    runs.push(run("web", "2026-02-28T02:00:00Z", 10, Outcome::Success, None));
    let r = build(&input(
        vec![p],
        Some(rows(runs, drills)),
        "2026-03-01T00:00:00Z",
        "2026-03-31T00:00:00Z",
        "2026-03-31T00:00:00Z",
    ));
    let web = only(&r, "web");
    let d = &web.drills;
    assert_eq!((d.count, d.passed, d.failed), (4, 3, 1));
    assert_eq!(d.pass_rate, Some(0.75));
    assert_eq!(d.rto_exceeded, 1);
    assert_eq!(d.rto_worst_s, Some(4000.0));
    assert_eq!(d.rto_last_s, Some(1300.0));
    assert_eq!(d.files_checked, 400);
    assert_eq!(web.verification.last_passed, Some(t("2026-03-23T06:00:00Z")));
    assert!(!web.verification.never_drilled);
    assert_eq!(web.status, Status::Amber, "{:?}", messages(&web));
    assert_eq!(
        messages(&web),
        vec![
            "amber: 1 of 4 drills failed; the latest passed".to_string(),
            "amber: measured restore time above the RTO in 1 drill (worst 1 h 6 min)".to_string()
        ]
    );
    assert_eq!((r.summary.drills, r.summary.drills_passed), (4, 3));
}

#[test]
fn a_failed_latest_drill_or_a_mismatch_is_red() {
    let p = pol("web", "[objectives]\nrpo = \"26h\"\nrto = \"1h\"");
    let mut bad = drill("web", "2026-03-02T06:00:00Z", true, 100.0, 3600.0);
    bad.mismatches = 2;
    let drills = vec![bad, drill("web", "2026-03-03T06:00:00Z", false, 4000.0, 3600.0)];
    let r = build(&input(
        vec![p],
        Some(rows(vec![daily(3)], drills)),
        "2026-03-01T00:00:00Z",
        "2026-03-04T00:00:00Z",
        "2026-03-04T00:00:00Z",
    ));
    let m = messages(&only(&r, "web"));
    assert!(
        m.iter().any(|m| m.starts_with("red: the latest drill (2026-03-03 06:00 UTC) failed: measured RTO")),
        "{m:?}"
    );
    assert!(m.contains(&"red: 2 restored files did not match the snapshot in drills".to_string()), "{m:?}");
    assert!(m.iter().any(|m| m.starts_with("red: measured restore time above the RTO")), "{m:?}");
    let cp91 = r.controls.iter().find(|c| c.id == "CP-9(1)").unwrap();
    assert_eq!(cp91.status, Status::Red);
}

#[test]
fn never_drilled_and_needs_verification_are_flagged() {
    let obj = "[objectives]\nrpo = \"26h\"\nrto = \"1h\"";
    let policies = ["never", "before", "changed", "verified"].map(|n| pol(n, obj)).to_vec();
    let mut s = rows(
        ["never", "before", "changed", "verified"]
            .iter()
            .flat_map(|n| {
                ["2026-03-02T02:00:00Z", "2026-03-03T02:00:00Z"].map(|at| run(n, at, 10, Outcome::Success, None))
            })
            .collect(),
        vec![
            drill("before", "2026-01-05T06:00:00Z", true, 100.0, 3600.0),
            drill("changed", "2026-03-02T06:00:00Z", true, 100.0, 3600.0),
            drill("verified", "2026-03-02T06:00:00Z", true, 100.0, 3600.0),
        ],
    );
    s.content_changed.insert("changed".into(), true);
    s.content_changed.insert("verified".into(), false);
    let r = build(&input(policies, Some(s), "2026-03-02T03:00:00Z", "2026-03-04T00:00:00Z", "2026-03-04T00:00:00Z"));
    let never = only(&r, "never");
    assert!(never.verification.never_drilled);
    assert!(messages(&never).iter().any(|m| m.starts_with("amber: never drilled")), "{:?}", messages(&never));
    let before = only(&r, "before");
    assert!(!before.verification.never_drilled);
    assert_eq!(
        messages(&before),
        vec!["amber: not drilled during the period (last drill 2026-01-05 06:00 UTC)".to_string()]
    );
    let changed = only(&r, "changed");
    assert_eq!(changed.verification.needs_verification, Some(true));
    assert_eq!(
        messages(&changed),
        vec!["amber: needs verification: the content changed since the last passing drill".to_string()]
    );
    let verified = only(&r, "verified");
    assert_eq!(verified.status, Status::Green, "{:?}", messages(&verified));
    assert_eq!((r.summary.green, r.summary.amber, r.summary.red), (1, 3, 0));
    let md = markdown::render(&r);
    assert!(md.contains("- Never drilled: never\n"), "{md}");
    assert!(md.contains("- Needs verification (content changed since the last passing drill): changed\n"), "{md}");
}

#[test]
fn a_policy_only_in_the_state_is_reported_and_marked() {
    let runs = ["2026-02-28T02:00:00Z", "2026-03-01T02:00:00Z", "2026-03-02T02:00:00Z", "2026-03-03T02:00:00Z"]
        .map(|at| run("old", at, 10, Outcome::Success, None))
        .to_vec();
    let drills = vec![drill("old", "2026-03-02T06:00:00Z", true, 100.0, 1800.0)];
    let r = build(&input(
        vec![],
        Some(rows(runs, drills)),
        "2026-03-01T00:00:00Z",
        "2026-03-04T00:00:00Z",
        "2026-03-04T00:00:00Z",
    ));
    let old = only(&r, "old");
    assert!(!old.in_policy_dir);
    assert_eq!(old.backups.scheduled, None);
    assert_eq!((old.objectives.rpo_s, old.objectives.rto_s), (Some(93600.0), Some(1800.0)));
    assert_eq!(old.status, Status::Amber);
    assert!(messages(&old)[0].starts_with("amber: not in the policy directory any more"));
    assert!(markdown::render(&r).contains("## Policy `old` (not in the policy directory any more)"));
    assert!(csv::render(&r).contains("\r\nold,amber,false,"));
    // Days later its RPO is in breach: shown, but not red, as it is not in force.
    let drills = vec![drill("old", "2026-03-02T06:00:00Z", true, 100.0, 1800.0)];
    let runs = vec![run("old", "2026-03-01T02:00:00Z", 10, Outcome::Success, None)];
    let i =
        input(vec![], Some(rows(runs, drills)), "2026-03-01T00:00:00Z", "2026-03-08T00:00:00Z", "2026-03-08T00:00:00Z");
    let old = only(&build(&i), "old");
    assert!(old.rpo.breaches.last().unwrap().ongoing);
    assert_eq!(old.status, Status::Amber);
    assert!(messages(&old).iter().any(|m| m.starts_with("amber: RPO in breach at the end")), "{:?}", messages(&old));
}

#[test]
fn an_empty_state_gives_a_report_that_says_so() {
    let r = build(&input(vec![], None, "2026-03-01T00:00:00Z", "2026-03-31T00:00:00Z", "2026-03-31T00:00:00Z"));
    assert!(r.policies.is_empty());
    assert_eq!(r.status, Status::Amber);
    assert!(r.notices[0].starts_with("There is no state database in /var/lib/cairn"), "{:?}", r.notices);
    assert!(r.notices.iter().any(|n| n.starts_with("No policy to report on")));
    assert!(r.controls.iter().all(|c| c.status == Status::Red && c.evidence.contains("no evidence")));
    assert!(markdown::render(&r).contains("There is no state database"));
    assert!(html::render(&r).contains("There is no policy to report on."));
    assert_eq!(csv::render(&r), csv::COLUMNS.join(",") + "\r\n");
    let json: serde_json::Value = serde_json::from_str(&json::render(&r)).unwrap();
    assert_eq!(json["schema"], SCHEMA);
    assert_eq!(json["policies"], serde_json::json!([]));
}

#[test]
fn dates_parse_and_bad_ones_name_their_flag() {
    let now = t("2026-03-31T10:00:00Z");
    let p = Period::from_flags(Some("2026-03-01"), Some("2026-03-31"), now).unwrap();
    assert_eq!(p, Period { since: t("2026-03-01T00:00:00Z"), until: t("2026-04-01T00:00:00Z") });
    let p = Period::from_flags(Some("2026-03-01T12:00:00+02:00"), None, now).unwrap();
    assert_eq!(p, Period { since: t("2026-03-01T10:00:00Z"), until: now });
    let p = Period::from_flags(None, None, now).unwrap();
    assert_eq!(p.since, now - Duration::days(30));
    let e = Period::from_flags(Some("2026-02-30"), None, now).unwrap_err().to_string();
    assert!(e.starts_with("--since `2026-02-30`: expected a date YYYY-MM-DD or an RFC 3339 time"), "{e}");
    let e = Period::from_flags(None, Some("yesterday"), now).unwrap_err().to_string();
    assert!(e.starts_with("--until `yesterday`"), "{e}");
    let e = Period::from_flags(Some("2026-04-01"), Some("2026-03-01"), now).unwrap_err().to_string();
    assert!(e.contains("--since (2026-04-01T00:00:00Z) must be before --until (2026-03-02T00:00:00Z)"), "{e}");
}
