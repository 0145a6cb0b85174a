//! The report from evidence alone, on evidence signed by made-up hosts at
//! chosen times (`crate::evidence::synthetic`), verified for real.

use chrono::{Duration, TimeZone};

use super::*;
use crate::evidence::fleet::{digest, Source};
use crate::evidence::synthetic::Synthetic;
use crate::evidence::{Problem, ProblemKind};

fn day(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap()
}

const POLICIES: [&str; 3] = ["web", "db", "files"];
/// RPO 26 h, RTO 1 h, as the drill records carry them.
const OBJECTIVES: (i64, i64) = (26 * 3600, 3600);

fn input(sources: Vec<Source>) -> FleetInput {
    FleetInput {
        period: Period { since: day(1, 0), until: day(31, 0) },
        now: day(31, 0),
        generated_on: "auditor".into(),
        fleet: digest(&sources),
        silent_after: Duration::hours(26),
    }
}

/// `hosts` hosts, each backing up the three policies daily at 02:00 and
/// drilling them on Mondays, up to day `last[i]` (30: every day of March).
fn fleet(hosts: usize, last: impl Fn(usize) -> u32) -> Synthetic {
    let mut s = Synthetic::new(0x5e);
    for i in 0..hosts {
        let h = s.host(&format!("host-{i:02}"), true, day(1, 0));
        for d in 1..=last(i) {
            for p in POLICIES {
                s.backup(h, p, day(d, 2), 5);
                if d % 7 == 2 {
                    s.drill(h, p, day(d, 6), true, 900, OBJECTIVES);
                }
            }
        }
    }
    s
}

/// The HTML between `<section id="ID"` and its end.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!("<section id=\"{id}\"")).unwrap_or_else(|| panic!("no section #{id}"));
    let len = html[start..].find("</section>").unwrap();
    &html[start..start + len]
}

/// The page of 50 hosts × 3 policies is at most this big.
pub const FIFTY_HOSTS_MAX_BYTES: usize = 6 << 20;

#[test]
#[allow(clippy::print_stderr)] // prints the page size, the figure docs/REPORTS.md quotes (run with --nocapture)
fn fifty_hosts_with_three_policies_each_make_one_readable_page_naming_the_silent_host() {
    // host-49 stopped after March 20.
    let s = fleet(50, |i| if i == 49 { 20 } else { 30 });
    let report = s.verify(day(31, 0));
    assert!(report.is_intact(), "{:?}", report.problems);
    let r = build_fleet(&input(vec![Source { location: "s3://backups/fleet".into(), read: Ok(report) }]));
    assert_eq!(r.source, ReportSource::Evidence);
    assert_eq!((r.hosts.len(), r.policies.len()), (50, 150));
    let silent: Vec<&str> = r.hosts.iter().filter(|h| h.silent).map(|h| h.host.as_str()).collect();
    assert_eq!(silent, ["host-49"]);
    assert_eq!(r.hosts[49].status, Status::Red);
    for p in r.policies.iter().filter(|p| p.host.as_deref() != Some("host-49")) {
        assert_eq!(p.status, Status::Green, "{}: {:?}", p.label(), p.findings);
        assert_eq!((p.backups.succeeded, p.drills.count), (30, 5), "{}", p.label());
    }
    let h49 = r.policies.iter().find(|p| p.label() == "host-49/db").unwrap();
    assert!(h49.rpo.breaches.last().is_some_and(|b| b.ongoing), "its RPO is in breach: {:?}", h49.rpo);
    assert_eq!(r.status, Status::Red);
    assert!(r.notices.iter().any(|n| n.starts_with("Silent: host-49 ")), "{:?}", r.notices);

    let html = html::render(&r);
    let hosts = section(&html, "hosts");
    assert_eq!(hosts.matches("<tr class=").count(), 50, "one row per host");
    // The silent host's row comes first: the worst news first.
    let first = &hosts[hosts.find("<tbody>").unwrap()..];
    assert!(first.starts_with("<tbody><tr class=\"red\"><td>host-49</td><td><span class=\"badge red\">"), "{hosts}");
    assert_eq!(hosts.matches("<span class=\"tag\">silent</span>").count(), 1);
    for p in &r.policies {
        assert!(html.contains(&format!("id=\"{}\"", p.anchor())), "no section for {}", p.label());
    }
    // Charts are kept: one RPO chart per host and policy.
    assert_eq!(html.matches("<figure class=\"chart rpo-chart\"><svg").count(), 150);
    // Green policies fold away; the silent host's are open.
    assert_eq!(html.matches("<details class=\"policy red\"").count(), 3);
    assert_eq!(html.matches(" open><summary>").count(), 3);
    eprintln!("the page of 50 hosts × 3 policies: {} bytes", html.len());
    assert!(html.len() < FIFTY_HOSTS_MAX_BYTES, "the page is {} bytes", html.len());
    assert!(!html.contains("<script") && !html.contains(" src="), "self-contained");
    // The other forms carry every host and policy too.
    assert_eq!(csv::render(&r).split("\r\n").filter(|l| !l.is_empty()).count(), 151);
    let md = markdown::render(&r);
    assert!(md.contains("## Hosts") && md.contains("**silent**") && md.contains("## Policy `host-49/db`"));
    let json: serde_json::Value = serde_json::from_str(&json::render(&r)).unwrap();
    assert_eq!(json["source"], "evidence");
    assert_eq!(json["hosts"].as_array().unwrap().len(), 50);
    assert_eq!(json["evidence"]["silent_hosts"], serde_json::json!(["host-49"]));
}

#[test]
fn untrusted_keys_forged_snapshots_and_unreadable_repositories_are_named_and_never_counted() {
    let mut s = Synthetic::new(0x7a);
    let db = s.host("db1", true, day(1, 0));
    let web = s.host("web1", true, day(1, 0));
    let rogue = s.host("rogue", false, day(1, 0));
    for d in 1..=30 {
        s.backup(db, "pg", day(d, 2), 5);
    }
    s.drill(db, "pg", day(29, 6), true, 900, OBJECTIVES);
    s.backup(web, "site", day(30, 3), 5);
    // web1 signs a snapshot in db1's name; a key nobody pinned records backups.
    s.backup_claiming(web, "pg", day(30, 4), "db1");
    s.backup(rogue, "pg", day(30, 5), 5);
    let rogue_id = s.key_id(rogue);
    let report = s.verify(day(31, 0));
    let r = build_fleet(&input(vec![
        Source { location: "/srv/cairn/fleet".into(), read: Ok(report) },
        Source { location: "s3://gone/repo".into(), read: Err("connection refused".into()) },
    ]));
    assert_eq!(r.hosts.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), ["db1", "web1"]);
    let pg = r.policies.iter().find(|p| p.label() == "db1/pg").unwrap();
    assert_eq!(pg.backups.succeeded, 30, "neither the forged nor the untrusted backup counts for db1/pg");
    assert!(!r.policies.iter().any(|p| p.label() == "web1/pg"));
    assert_eq!(r.status, Status::Red, "a repository that could not be read leaves the fleet unproven");
    assert!(r.notices.iter().any(|n| n.contains("s3://gone/repo could not be read (connection refused)")));
    let e = r.evidence.as_ref().unwrap();
    let reasons: Vec<&str> = e.not_counted.iter().map(|u| u.reason).collect();
    assert_eq!(reasons, ["untrusted", "host"]);
    assert_eq!(e.flagged_snapshots.len(), 1);
    let html = html::render(&r);
    let ev = section(&html, "evidence");
    assert!(ev.contains(&rogue_id) && ev.contains("rogue") && ev.contains("not among the trusted keys"), "{ev}");
    assert!(ev.contains("id=\"flagged\"") && ev.contains("claims another host"), "{ev}");
    assert!(ev.contains("<strong>not read</strong>: connection refused"), "{ev}");
}

#[test]
fn bug_damage_past_the_first_listed_problems_turned_the_report_amber_not_red() {
    let s = fleet(2, |_| 30);
    let mut report = s.verify(day(31, 0));
    assert!(report.is_intact(), "{:?}", report.problems);
    let untrusted = Problem {
        kind: ProblemKind::Untrusted,
        signer: Some("0000".into()),
        seq: Some(1),
        file: None,
        detail: "not among the trusted keys".into(),
    };
    // More problems that are no damage than the summary lists, sorted
    // before the one that is.
    report.problems = vec![untrusted; crate::evidence::fleet::PROBLEMS_LISTED + 5];
    report.problems.push(Problem {
        kind: ProblemKind::Removed,
        signer: Some("ffff".into()),
        seq: Some(7),
        file: None,
        detail: "record 7 is missing".into(),
    });
    let r = build_fleet(&input(vec![Source { location: "/srv/cairn/fleet".into(), read: Ok(report) }]));
    let repo = &r.evidence.as_ref().unwrap().repositories[0];
    assert!(repo.damaged && repo.problems.iter().all(|p| !p.starts_with("removed")), "{repo:?}");
    assert_eq!(r.status, Status::Red, "{:?}", r.notices);
    assert!(r.notices.iter().any(|n| n.contains("some of them damage")), "{:?}", r.notices);
}

#[test]
fn bug_one_record_dated_ahead_kept_a_host_from_ever_being_silent() {
    // host-01 stopped on March 20, after one record its clock dated in 2099.
    let mut s = fleet(2, |i| if i == 1 { 20 } else { 30 });
    s.append(1, "enroll", None, Utc.with_ymd_and_hms(2099, 1, 1, 0, 0, 0).unwrap(), serde_json::json!({}));
    let r = build_fleet(&input(vec![Source { location: "/srv/cairn/fleet".into(), read: Ok(s.verify(day(31, 0))) }]));
    let h = r.hosts.iter().find(|h| h.host == "host-01").unwrap();
    assert!(h.silent, "{h:?}");
    assert!(h.last_record.is_some_and(|t| t < day(21, 0)), "{:?}", h.last_record);
    assert!(!r.hosts.iter().find(|h| h.host == "host-00").unwrap().silent);
}

#[test]
fn bug_a_signed_snapshot_name_of_multibyte_characters_made_every_view_of_the_evidence_panic() {
    let mut s = Synthetic::new(0x7b);
    let db = s.host("db1", true, day(1, 0));
    s.backup(db, "pg", day(2, 2), 5);
    // A trusted but compromised host signs a backup whose snapshot is no
    // hex id: byte 8 and byte 16 fall inside a character, and it holds a
    // terminal escape.
    let payload = serde_json::json!({
        "outcome": "success", "snapshot": "ééééééééé\u{1b}[2Jéééééééé", "snapshot_time": crate::evidence::synthetic::stamp(day(3, 2)),
        "hostname": "web1", "duration_ms": 60_000, "error": null,
    });
    s.append(db, "backup", Some("pg"), day(3, 3), payload);
    let report = s.verify(day(4, 0));
    assert!(
        report.problems.iter().any(|p| p.kind == ProblemKind::Host && p.detail.contains("éééééééé")),
        "{:?}",
        report.problems
    );
    let r = build_fleet(&input(vec![Source { location: "/srv/cairn/fleet".into(), read: Ok(report) }]));
    let e = r.evidence.as_ref().unwrap();
    assert_eq!(e.flagged_snapshots.len(), 1);
    let html = html::render(&r);
    assert!(section(&html, "evidence").contains("<code>ééééééééé?[2Jééé</code>"));
    let md = markdown::render(&r);
    assert!(md.contains("Flagged snapshot ééééééééé?[2Jééé of host db1"), "{md}");
    assert!(!md.contains('\u{1b}') && !html.contains('\u{1b}'));
}

#[test]
fn an_administrators_key_is_named_in_a_notice_and_the_evidence_never_as_a_silent_host() {
    let mut s = fleet(2, |_| 30);
    let admin = s.host("admin", true, day(1, 0));
    s.append(admin, "accept", None, day(3, 0), serde_json::json!({"snapshot": "3".repeat(64)}));
    let r = build_fleet(&input(vec![Source { location: "s3://backups/fleet".into(), read: Ok(s.verify(day(31, 0))) }]));
    assert_eq!(r.hosts.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), ["host-00", "host-01"]);
    let e = r.evidence.as_ref().unwrap();
    assert_eq!((e.silent_hosts.len(), e.admin_keys.clone()), (0, vec!["admin".to_string()]));
    assert!(r.notices.iter().any(|n| n.contains("Administrators' keys") && n.ends_with(": admin.")), "{:?}", r.notices);
    assert!(html::render(&r).contains("<h3>Administrators' keys</h3><p>admin (revocations and acceptances only)</p>"));
}
