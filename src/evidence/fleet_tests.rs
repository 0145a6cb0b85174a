//! The fleet digest, on evidence signed by made-up hosts.

use chrono::{TimeZone, Utc};

use super::super::synthetic::Synthetic;
use super::*;

fn t(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap()
}

#[test]
fn only_records_of_trusted_keys_count_and_forged_snapshots_are_named() {
    let mut s = Synthetic::new(0xab);
    let db1 = s.host("db1", true, t(1, 0));
    let web = s.host("web", true, t(1, 0));
    let rogue = s.host("rogue", false, t(1, 0));
    s.backup(db1, "pg", t(1, 2), 5);
    s.backup(db1, "pg", t(2, 2), 5);
    s.drill(db1, "pg", t(2, 6), true, 600, (93_600, 3600));
    s.backup(web, "site", t(1, 3), 5);
    // A trusted host that signs a snapshot in db1's name.
    s.backup_claiming(web, "pg", t(2, 4), "db1");
    // A key the auditor never pinned, claiming to be a backup of db1.
    s.backup(rogue, "pg", t(3, 2), 5);
    let report = s.verify(t(4, 0));
    let f = digest(&[
        Source { location: "s3://a/fleet".into(), read: Ok(report) },
        Source { location: "s3://b/gone".into(), read: Err("connection refused".into()) },
    ]);
    assert_eq!(f.hosts.keys().collect::<Vec<_>>(), ["db1", "web"], "the untrusted host is no host of the fleet");
    let pg = &f.hosts["db1"].policies["pg"];
    assert_eq!((pg.backups.len(), pg.drills.len()), (2, 1));
    assert!(pg.backups.iter().all(BackupFact::saved));
    assert_eq!(pg.drills[0].rto_objective_s, Some(3600.0));
    assert_eq!(f.hosts["db1"].last_record, Some(t(2, 6) + chrono::Duration::seconds(600)));
    assert!(!f.hosts["web"].policies.contains_key("pg"), "the forged backup counts for no one");
    let reasons: Vec<(&str, Option<&str>)> = f.not_counted.iter().map(|u| (u.reason, u.host.as_deref())).collect();
    assert_eq!(reasons, [("untrusted", Some("rogue")), ("host", Some("web"))], "{:?}", f.not_counted);
    assert!(f.not_counted[0].detail.contains("not among the trusted keys"), "{}", f.not_counted[0].detail);
    assert_eq!(f.flagged.len(), 1);
    assert!(f.flagged[0].why.contains("claims another host"), "{:?}", f.flagged[0]);
    assert_eq!(f.repositories[1].error.as_deref(), Some("connection refused"));
    assert!(!f.intact());
}

#[test]
fn silence_is_no_record_within_the_threshold_and_a_huge_threshold_silences_no_one() {
    let end = t(10, 12);
    let hour = chrono::Duration::hours(1);
    assert!(!silent(Some(end - hour), end, hour), "exactly at the threshold is not silent");
    assert!(silent(Some(end - hour - chrono::Duration::seconds(1)), end, hour));
    assert!(silent(None, end, hour), "a host with no record that counts is silent");
    assert!(!silent(Some(t(1, 0)), end, chrono::Duration::MAX), "no overflow, no one silenced");
}

#[test]
fn a_key_that_signed_administration_alone_is_an_administrators_and_no_silent_host() {
    let mut s = Synthetic::new(0xcd);
    let db1 = s.host("db1", true, t(1, 0));
    let admin = s.host("admin", true, t(1, 0));
    s.host("fresh", true, t(1, 0));
    s.backup(db1, "pg", t(2, 2), 5);
    s.append(admin, "accept", None, t(2, 3), serde_json::json!({"snapshot": "3".repeat(64)}));
    // A host that backs up and accepts a snapshot stays a host.
    s.append(db1, "accept", None, t(2, 4), serde_json::json!({"snapshot": "4".repeat(64)}));
    let report = s.verify(t(3, 0));
    assert!(report.is_intact(), "{:?}", report.problems);
    let f = digest(&[Source { location: "s3://a/fleet".into(), read: Ok(report) }]);
    assert_eq!(f.admins.keys().collect::<Vec<_>>(), ["admin"]);
    assert_eq!(f.admins["admin"].records, 2, "its enrolment and its acceptance");
    // A host that only enrolled has backed nothing up: still a host, silent.
    assert_eq!(f.hosts.keys().collect::<Vec<_>>(), ["db1", "fresh"]);
}
