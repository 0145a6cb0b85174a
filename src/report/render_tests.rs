//! The forms and charts laid out from a built report: escaping, CSV
//! records, chart legends, and the control table's statuses.

use super::tests::*;
use super::*;
use crate::state::Outcome;

#[test]
fn renderers_escape_what_comes_from_the_state() {
    let p = pol("web", "[schedule]\nbackup = \"0 3 * * *\"\n[objectives]\nrpo = \"26h\"\nrto = \"1h\"");
    let mut bad = run("web", "2026-03-01T03:00:00Z", 1, Outcome::Failure, Some("2026-03-01T03:00:00Z"));
    bad.error = Some("<script>alert(1)</script> | \"quoted\", comma".into());
    let r = build(&input(
        vec![p],
        Some(rows(vec![bad, daily(2)], vec![])),
        "2026-03-01T00:00:00Z",
        "2026-03-03T00:00:00Z",
        "2026-03-03T00:00:00Z",
    ));
    let html = html::render(&r);
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; | &quot;quoted&quot;, comma"));
    assert!(!html.contains("src=") && !html.contains("href=\"http"), "the page must not load anything");
    let md = markdown::render(&r);
    assert!(md.contains("<script>alert(1)</script> \\| \"quoted\", comma |"), "{md}");
    let csv = csv::render(&r);
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines.len(), 3, "header, one row, and the empty rest: {csv:?}");
    assert!(lines[1].starts_with("web,amber,true,2026-03-01T00:00:00Z,2026-03-03T00:00:00Z,0 3 * * *,UTC,2,1,1,0.5,"));
}

#[test]
fn bug_one_policy_was_called_1_policies_in_the_summaries() {
    let p = pol("web", "[objectives]\nrpo = \"26h\"");
    let r = build(&input(vec![p], None, "2026-03-01T00:00:00Z", "2026-03-03T00:00:00Z", "2026-03-03T00:00:00Z"));
    let md = markdown::render(&r);
    assert!(md.contains("1 policy: ") && !md.contains("1 policies"), "{md}");
    let html = html::render(&r);
    assert!(html.contains("<span class=\"n\">1</span><span>policy</span>"), "{html}");
}

#[test]
fn percentages_and_durations_read_well() {
    assert_eq!(percent(Some(0.99996)), "99.9%");
    assert_eq!(percent(Some(1.0)), "100%");
    assert_eq!(percent(None), "—");
    // The one formatter of both report stacks (tested in `text`).
    assert_eq!(human_duration(9000.0), "2 h 30 min");
    assert_eq!(human_opt(None), "—");
}

#[test]
fn charts_draw_svg_with_the_objective_and_say_when_there_is_nothing_to_draw() {
    let p = pol("web", "[objectives]\nrpo = \"26h\"\nrto = \"1h\"");
    let drills = vec![
        drill("web", "2026-03-02T06:00:00Z", true, 1200.0, 3600.0),
        drill("web", "2026-03-03T06:00:00Z", false, 4000.0, 3600.0),
    ];
    let runs = vec![daily(1), daily(3)];
    let r = build(&input(
        vec![p.clone()],
        Some(rows(runs, drills)),
        "2026-03-01T00:00:00Z",
        "2026-03-04T00:00:00Z",
        "2026-03-04T00:00:00Z",
    ));
    let web = only(&r, "web");
    let rpo = charts::rpo_chart(&web, &r.period).unwrap().expect("an RPO chart");
    assert!(rpo.svg.starts_with("<svg") && rpo.svg.contains("</svg>"));
    assert!(rpo.svg.contains("age of the newest recovery point (hours)"));
    let labels: Vec<&str> = rpo.legend.iter().map(|l| l.1.as_str()).collect();
    // No backup on Mar 2: from Mar 2 04:00 (26 h after Mar 1 02:00) to Mar 3 02:10, a breach.
    assert_eq!(labels, ["age of the newest recovery point", "RPO objective (1 d 2 h)", "RPO breached"]);
    let rto = charts::rto_chart(&web, &r.period).unwrap().expect("an RTO chart");
    assert!(rto.svg.contains("measured restore time (minutes)"));
    let labels: Vec<&str> = rto.legend.iter().map(|l| l.1.as_str()).collect();
    assert_eq!(labels, ["drill passed", "drill failed", "RTO objective (1 h)"]);
    assert_eq!(rto.legend[1].0, charts::Swatch::Dot("#dc2626".into()));

    let r = build(&input(
        vec![pol("bare", "")],
        Some(StateRows::default()),
        "2026-03-01T00:00:00Z",
        "2026-03-04T00:00:00Z",
        "2026-03-04T00:00:00Z",
    ));
    let bare = only(&r, "bare");
    assert!(charts::rpo_chart(&bare, &r.period).unwrap().is_none());
    assert!(charts::rto_chart(&bare, &r.period).unwrap().is_none());
    let html = html::render(&r);
    assert!(html.contains("No recovery point and no RPO objective: nothing to chart."));
    assert!(html.contains("No drill measured a restore time in the period."));
    assert_eq!(charts::unit_for(90.0).name, "seconds");
    assert_eq!(charts::unit_for(3.0 * 86400.0).name, "hours");
    assert_eq!(charts::unit_for(5.0 * 86400.0).name, "days");
}

#[test]
fn controls_take_the_worst_finding_of_their_areas() {
    let obj = "[objectives]\nrpo = \"26h\"\nrto = \"1h\"";
    let runs = vec![run("web", "2026-02-28T02:00:00Z", 10, Outcome::Success, None), daily(1), daily(2), daily(3)];
    let drills = vec![drill("web", "2026-03-02T06:00:00Z", true, 1200.0, 3600.0)];
    let r = build(&input(
        vec![pol("web", obj)],
        Some(rows(runs.clone(), drills.clone())),
        "2026-03-01T00:00:00Z",
        "2026-03-04T00:00:00Z",
        "2026-03-04T00:00:00Z",
    ));
    assert_eq!(only(&r, "web").status, Status::Green, "{:?}", messages(&only(&r, "web")));
    assert!(r.controls.iter().all(|c| c.status == Status::Green), "{:?}", r.controls);
    let soc2 = &r.controls[0];
    assert_eq!((soc2.framework, soc2.id), ("SOC 2", "A1.3"));
    assert!(soc2.evidence.starts_with("Restore drills in the period: 1, covering 1 of 1 policy; passed: 1 (100%)"));

    // A second policy, never drilled: the controls about drills turn amber;
    // the backup control A.8.13 does too, since restores test backups.
    let mut runs2 = runs;
    runs2.extend(runs2.clone().into_iter().map(|mut r| {
        r.policy = "db".into();
        r
    }));
    let r = build(&input(
        vec![pol("web", obj), pol("db", obj)],
        Some(rows(runs2, drills)),
        "2026-03-01T00:00:00Z",
        "2026-03-04T00:00:00Z",
        "2026-03-04T00:00:00Z",
    ));
    let status = |id: &str| r.controls.iter().find(|c| c.id == id).unwrap().status;
    assert_eq!(status("A1.3"), Status::Amber);
    assert_eq!(status("CP-4"), Status::Amber);
    assert_eq!(status("CP-9(1)"), Status::Amber);
    assert_eq!(status("A.8.13"), Status::Amber);
    assert!(r.controls.iter().find(|c| c.id == "CP-4").unwrap().evidence.ends_with("never drilled: 1 policy."));
}

#[test]
fn failed_runs_whose_slots_were_covered_are_information_only() {
    let p = pol("web", "[schedule]\nbackup = \"0 2 * * *\"\n[objectives]\nrpo = \"26h\"\nrto = \"1h\"");
    let mut runs = vec![run("web", "2026-02-28T02:00:00Z", 10, Outcome::Success, None), daily(1), daily(3)];
    runs.push(run("web", "2026-03-02T02:00:00Z", 1, Outcome::Failure, Some("2026-03-02T02:00:00Z")));
    let mut retry = run("web", "2026-03-02T02:30:00Z", 10, Outcome::Success, Some("2026-03-02T02:00:00Z"));
    retry.attempt = 2;
    runs.push(retry);
    let drills = vec![drill("web", "2026-03-02T06:00:00Z", true, 1200.0, 3600.0)];
    let r = build(&input(
        vec![p],
        Some(rows(runs, drills)),
        "2026-03-01T00:00:00Z",
        "2026-03-04T00:00:00Z",
        "2026-03-04T00:00:00Z",
    ));
    let web = only(&r, "web");
    assert_eq!((web.backups.scheduled, web.backups.slots_covered, web.backups.failed), (Some(3), Some(3), 1));
    assert_eq!(web.status, Status::Green);
    assert_eq!(web.findings[0].message, "1 backup run failed, but every scheduled slot still had a successful backup");
    assert!(web.rpo.breaches.is_empty());
    assert!(csv::render(&r).contains(",93600,79200,88800,0,0,1,"), "no breach is 0 s, never -0: {}", csv::render(&r));
}

#[test]
fn bug_a_week_old_policy_was_a_sliver_at_the_right_edge_of_its_charts() {
    // First recorded on the 24th of a 30-day report: its charts start then.
    let p = pol("web", "[objectives]\nrpo = \"26h\"\nrto = \"1h\"");
    let runs = (24..=30).map(daily).collect();
    let drills = vec![drill("web", "2026-03-25T06:00:00Z", true, 1200.0, 3600.0)];
    let r = build(&input(
        vec![p],
        Some(rows(runs, drills)),
        "2026-03-01T00:00:00Z",
        "2026-03-31T00:00:00Z",
        "2026-03-31T00:00:00Z",
    ));
    let web = only(&r, "web");
    let (since, span) = charts::x_window(&web, &r.period);
    assert_eq!(since, t("2026-03-24T02:00:00Z"));
    assert_eq!(span, 7.0 * 86400.0 - 2.0 * 3600.0);
    for svg in [
        charts::rpo_chart(&web, &r.period).unwrap().expect("an RPO chart").svg,
        charts::rto_chart(&web, &r.period).unwrap().expect("an RTO chart").svg,
    ] {
        assert!(svg.contains("03-24") || svg.contains("Mar 24"), "the axis starts on the 24th");
        assert!(!svg.contains("Mar 01") && !svg.contains("03-01"), "no days before the policy existed");
    }
    // A policy recorded before the period spans the whole period.
    let old = pol("web", "[objectives]\nrpo = \"26h\"");
    let r = build(&input(
        vec![old],
        Some(rows(vec![run("web", "2026-02-27T02:00:00Z", 10, Outcome::Success, None), daily(1)], vec![])),
        "2026-03-01T00:00:00Z",
        "2026-03-31T00:00:00Z",
        "2026-03-31T00:00:00Z",
    ));
    let (since, span) = charts::x_window(&only(&r, "web"), &r.period);
    assert_eq!((since, span), (t("2026-03-01T00:00:00Z"), 30.0 * 86400.0));
}

#[test]
fn bug_a_missed_rto_read_equal_to_its_objective_in_the_report() {
    // RTO 1 min, measured 60.4 s: above the objective, and it must read so.
    let p = pol("web", "[objectives]\nrpo = \"26h\"\nrto = \"1m\"");
    let drills = vec![drill("web", "2026-03-02T06:00:00Z", false, 60.4, 60.0)];
    let r = build(&input(
        vec![p],
        Some(rows((1..=3).map(daily).collect(), drills)),
        "2026-03-01T00:00:00Z",
        "2026-03-04T00:00:00Z",
        "2026-03-04T00:00:00Z",
    ));
    let web = only(&r, "web");
    assert_eq!(web.drills.rto_exceeded, 1);
    assert!(
        messages(&web).iter().any(|m| m.ends_with("above the RTO in 1 drill (worst 1 min 0.4 s)")),
        "{:?}",
        messages(&web)
    );
    let md = markdown::render(&r);
    assert!(md.contains("1 min 0.4 s / 1 min"), "{md}");
    assert!(!md.contains("1 min / 1 min"), "{md}");
    let html = html::render(&r);
    assert!(html.contains("1 min 0.4 s / 1 min") && !html.contains("1 min / 1 min"));

    // Under a minute, judged in tenths: 1.04 s reads 1.0 s and meets 1 s; 1.1 s does not.
    let p = pol("web", "[objectives]\nrpo = \"26h\"\nrto = \"1s\"");
    let drills = vec![
        drill("web", "2026-03-02T06:00:00Z", true, 1.04, 1.0),
        drill("web", "2026-03-03T06:00:00Z", true, 1.1, 1.0),
    ];
    let r = build(&input(
        vec![p],
        Some(rows((1..=3).map(daily).collect(), drills)),
        "2026-03-01T00:00:00Z",
        "2026-03-04T00:00:00Z",
        "2026-03-04T00:00:00Z",
    ));
    let web = only(&r, "web");
    assert_eq!(web.drills.rto_exceeded, 1);
    assert!(messages(&web).iter().any(|m| m.ends_with("(worst 1.1 s)")), "{:?}", messages(&web));
}
