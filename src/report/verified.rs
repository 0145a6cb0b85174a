//! In a report from the state database: which rows verified evidence
//! records back, and what the daemon's last evidence check found.
//!
//! With `--check-evidence --keys FILE`, each policy's repository's evidence
//! (and its `[copy]` repository's, where `drill --from-copy` signs) is read
//! and verified under the auditor's pinned keys (never the keys the
//! repository enrolled, which any password holder can add to). A successful backup run whose snapshot no backup record
//! that counts names, or a drill whose id no drill record names, is
//! **unverified**: the state says it happened, the evidence does not. When
//! the repository's evidence cannot be read, the policy's rows are
//! **unchecked**, and the report says why. Either is an amber finding
//! (area `verification`): the figures stay as the state has them, and the
//! reader is told which rows nothing but the state backs.
//!
//! Without `--check-evidence`, nothing is checked, and a notice says so.
//! Independently, the daemon's last evidence check of the policy's
//! repository (recorded in the state after each backup) is shown: its
//! problems are a red finding, and each snapshot it flagged is named.

use chrono::{DateTime, Utc};

use super::findings::plural;
use super::{Drills, Finding, RowEvidence, RowsEvidence, Status};
use crate::state::{Outcome, RunRow};
use crate::status::EvidenceState;

/// Marks `drills`, and returns which successful runs of `runs` since
/// `since` are unverified, with the findings.
pub(super) fn mark(
    evidence: Option<&RowEvidence>,
    runs: &[&RunRow],
    since: DateTime<Utc>,
    drills: &mut Drills,
    check: Option<&EvidenceState>,
) -> (Option<RowsEvidence>, Vec<Finding>) {
    let mut findings = Vec::new();
    if let Some(c) = check.filter(|c| !c.ok) {
        let first = c.first.first().map(|f| format!(": {f}")).unwrap_or_default();
        findings.push(Finding {
            severity: Status::Red,
            area: "integrity",
            message: format!(
                "the daemon's last evidence check ({}) found {}{first}",
                c.checked_at,
                plural(c.problems as u64, "problem", "problems")
            ),
        });
    }
    for f in check.iter().flat_map(|c| &c.flagged) {
        findings.push(Finding {
            severity: Status::Amber,
            area: "integrity",
            message: format!(
                "snapshot {} flagged by the evidence check ({}): left out of the recovery point and retention until \
                 accepted",
                crate::text::id_prefix(&f.snapshot, 8),
                f.why
            ),
        });
    }
    let out = match evidence {
        None => None,
        Some(RowEvidence::Unread(why)) => {
            findings.push(Finding {
                severity: Status::Amber,
                area: "verification",
                message: format!(
                    "the evidence of its repository could not be read ({why}): its backups and drills are unchecked"
                ),
            });
            Some(RowsEvidence {
                state: "unchecked",
                error: Some(why.clone()),
                unverified_backups: Vec::new(),
                unverified_drills: Vec::new(),
            })
        }
        Some(RowEvidence::Read { snapshots, drills: drill_ids }) => {
            let unverified_backups: Vec<DateTime<Utc>> = runs
                .iter()
                .filter(|r| r.outcome == Outcome::Success && r.started_at >= since)
                .filter(|r| r.snapshot_id.as_ref().is_none_or(|s| !snapshots.contains(s)))
                .map(|r| r.started_at)
                .collect();
            let mut unverified_drills = Vec::new();
            for d in &mut drills.list {
                let backed = drill_ids.contains(&d.drill_id);
                d.verified = Some(backed);
                if !backed {
                    unverified_drills.push(d.drill_id.clone());
                }
            }
            let (b, d) = (unverified_backups.len() as u64, unverified_drills.len() as u64);
            if b + d > 0 {
                findings.push(Finding {
                    severity: Status::Amber,
                    area: "verification",
                    message: format!(
                        "{} and {} recorded in the state have no verified evidence record: they are unverified \
                         (whoever can write the state database could have made them)",
                        plural(b, "successful backup", "successful backups"),
                        plural(d, "drill", "drills")
                    ),
                });
            }
            Some(RowsEvidence {
                state: if b + d > 0 { "unverified" } else { "verified" },
                error: None,
                unverified_backups,
                unverified_drills,
            })
        }
    };
    (out, findings)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::tests::*;
    use super::super::*;
    use crate::status::{EvidenceState, FlaggedSnapshot};

    const OBJ: &str = "[objectives]\nrpo = \"26h\"\nrto = \"1h\"";

    fn report(evidence: Option<RowEvidence>, check: Option<EvidenceState>) -> PolicyReport {
        let runs = vec![daily(1), daily(2), daily(3)];
        let drills = vec![drill("web", "2026-03-02T06:00:00Z", true, 1200.0, 3600.0)];
        let mut rows = rows(runs, drills);
        if let Some(c) = check {
            rows.evidence_checks.insert("web".into(), c);
        }
        let mut i = input(
            vec![pol("web", OBJ)],
            Some(rows),
            "2026-03-01T00:00:00Z",
            "2026-03-04T00:00:00Z",
            "2026-03-04T00:00:00Z",
        );
        i.evidence = evidence.map(|e| BTreeMap::from([("web".to_string(), e)]));
        let r = build(&i);
        let notice = r.notices.iter().any(|n| n.contains("were not checked against the repositories' evidence"));
        assert_eq!(notice, i.evidence.is_none(), "{:?}", r.notices);
        only(&r, "web")
    }

    #[test]
    fn rows_that_no_verified_record_backs_are_marked_unverified() {
        // The evidence names the first two backups and the drill, not the third backup.
        let snapshots = [daily(1), daily(2)].iter().map(|r| r.snapshot_id.clone().unwrap()).collect();
        let drills = ["web-2026-03-02T06:00:00Z".to_string()].into();
        let p = report(Some(RowEvidence::Read { snapshots, drills }), None);
        let e = p.evidence.as_ref().unwrap();
        assert_eq!((e.state, e.unverified_backups.clone()), ("unverified", vec![daily(3).started_at]));
        assert_eq!(p.drills.list[0].verified, Some(true));
        assert_eq!(p.status, Status::Amber);
        assert!(messages(&p).iter().any(|m| m.contains("1 successful backup and 0 drills recorded in the state")));
        let html = html::render(&build_one(&p));
        assert!(html.contains("<span class=\"tag\">unverified</span> 1 backup(s), 0 drill(s)"), "{html}");

        // Nothing backed: the drill is marked too.
        let p = report(Some(RowEvidence::Read { snapshots: Default::default(), drills: Default::default() }), None);
        assert_eq!(p.evidence.as_ref().unwrap().unverified_backups.len(), 3);
        assert_eq!(p.drills.list[0].verified, Some(false));
        // Everything backed: green, and said so.
        let all = [daily(1), daily(2), daily(3)].iter().map(|r| r.snapshot_id.clone().unwrap()).collect();
        let drills = ["web-2026-03-02T06:00:00Z".to_string()].into();
        let p = report(Some(RowEvidence::Read { snapshots: all, drills }), None);
        assert_eq!((p.evidence.as_ref().unwrap().state, p.status), ("verified", Status::Green), "{:?}", messages(&p));
        // Not checked: no mark, and the report says so in a notice.
        assert!(report(None, None).evidence.is_none());
    }

    #[test]
    fn an_unreadable_repository_leaves_rows_unchecked_and_says_why() {
        let p = report(Some(RowEvidence::Unread("bucket `b`: connection refused".into())), None);
        let e = p.evidence.as_ref().unwrap();
        assert_eq!((e.state, e.error.as_deref()), ("unchecked", Some("bucket `b`: connection refused")));
        assert_eq!(p.status, Status::Amber);
        assert!(messages(&p).iter().any(|m| m.contains("could not be read (bucket `b`: connection refused)")));
    }

    #[test]
    fn the_daemons_last_evidence_check_and_its_flagged_snapshots_are_named() {
        let check = EvidenceState {
            ok: false,
            checked_at: "2026-03-03T02:11:00Z".into(),
            problems: 1,
            first: vec!["snapshots/9f86d081: snapshot 9f86d081 claims host db2".into()],
            flagged: vec![FlaggedSnapshot { snapshot: "9f86d081884c7d65".into(), why: "claims another host".into() }],
            newest_head: None,
        };
        let p = report(None, Some(check));
        assert_eq!(p.status, Status::Red);
        assert_eq!(p.flagged_snapshots.len(), 1);
        let m = messages(&p);
        assert!(m
            .iter()
            .any(|m| m.contains("the daemon's last evidence check (2026-03-03T02:11:00Z) found 1 problem")));
        assert!(m.iter().any(|m| m.contains("snapshot 9f86d081 flagged by the evidence check (claims another host)")));
    }

    /// A report holding only `p`.
    fn build_one(p: &PolicyReport) -> Report {
        let mut r = build(&input(vec![], None, "2026-03-01T00:00:00Z", "2026-03-04T00:00:00Z", "2026-03-04T00:00:00Z"));
        r.policies = vec![p.clone()];
        r
    }
}
