//! The controls auditors ask about, and which evidence of the report
//! answers each. A control's status is the worst severity among the
//! policies' findings in the areas it covers (see `findings.rs`), so the
//! control table can never disagree with the per-policy sections. With no
//! policy at all, there is no evidence, and every control is red.

use serde::Serialize;

use super::{percent, PolicyReport, Status};

/// One control and the evidence for it.
#[derive(Debug, Clone, Serialize)]
pub struct Control {
    pub framework: &'static str,
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    /// What in this report answers the control, with the period's figures.
    pub evidence: String,
    /// The per-policy sections holding the evidence.
    pub sections: Vec<&'static str>,
}

struct Def {
    framework: &'static str,
    id: &'static str,
    title: &'static str,
    areas: &'static [&'static str],
    sections: &'static [&'static str],
    evidence: fn(&Facts) -> String,
}

/// Figures across policies, for the evidence sentences.
struct Facts {
    policies: usize,
    scheduled: u64,
    covered: u64,
    failed: u64,
    rpo_defined: usize,
    rto_defined: usize,
    rpo_breached: usize,
    drilled: usize,
    drills: u64,
    passed: u64,
    rto_measured: u64,
    rto_exceeded: u64,
    files_checked: u64,
    mismatches: u64,
    never_drilled: usize,
    needs_verification: usize,
}

const DEFS: &[Def] = &[
    Def {
        framework: "SOC 2",
        id: "A1.3",
        title: "Recovery plan procedures supporting system recovery are tested",
        areas: &["drill", "rto"],
        sections: &["Restore drills", "Restore time (RTO)"],
        evidence: |f| {
            format!(
                "Restore drills in the period: {}, covering {} of {}; passed: {} ({}); restore times measured: {}, \
                 above the RTO: {}.",
                f.drills,
                f.drilled,
                policies(f.policies),
                f.passed,
                percent(rate(f.passed, f.drills)),
                f.rto_measured,
                f.rto_exceeded
            )
        },
    },
    Def {
        framework: "ISO/IEC 27001:2022",
        id: "A.8.13",
        title: "Information backup: backup copies maintained and regularly tested",
        areas: &["backup", "rpo", "drill", "integrity"],
        sections: &["Backups", "Recovery point age (RPO)", "Restore drills"],
        evidence: |f| {
            format!(
                "Scheduled backups covered by a successful run: {} of {} ({}); failed runs: {}; RPO breached in {} \
                 of {} with an RPO; restore drills: {}, passed: {}.",
                f.covered,
                f.scheduled,
                percent(rate(f.covered, f.scheduled)),
                f.failed,
                f.rpo_breached,
                policies(f.rpo_defined),
                f.drills,
                f.passed
            )
        },
    },
    Def {
        framework: "ISO/IEC 27001:2022",
        id: "A.5.30",
        title: "ICT readiness for business continuity: planned, tested against recovery objectives",
        areas: &["objectives", "rpo", "rto", "drill"],
        sections: &["Objectives", "Recovery point age (RPO)", "Restore time (RTO)"],
        evidence: |f| {
            format!(
                "Objectives defined: RPO for {} and RTO for {} of {}; RPO breached in {}; restore times measured: \
                 {}, above the RTO: {}.",
                f.rpo_defined,
                f.rto_defined,
                policies(f.policies),
                policies(f.rpo_breached),
                f.rto_measured,
                f.rto_exceeded
            )
        },
    },
    Def {
        framework: "NIST SP 800-53 Rev. 5",
        id: "CP-4",
        title: "Contingency plan testing",
        areas: &["drill", "rto"],
        sections: &["Restore drills", "Restore time (RTO)", "Drill coverage"],
        evidence: |f| {
            format!(
                "Timed restore drills with verdicts and reasons: {}; passed: {} ({}); never drilled: {}.",
                f.drills,
                f.passed,
                percent(rate(f.passed, f.drills)),
                policies(f.never_drilled)
            )
        },
    },
    Def {
        framework: "NIST SP 800-53 Rev. 5",
        id: "CP-9(1)",
        title: "System backup: testing for reliability and integrity",
        areas: &["integrity", "verification", "drill"],
        sections: &["Restore drills", "Drill coverage"],
        evidence: |f| {
            format!(
                "Restored files checked against their snapshots: {}; mismatched: {}; needing verification (content \
                 changed since the last passing drill): {}.",
                f.files_checked,
                f.mismatches,
                policies(f.needs_verification)
            )
        },
    },
    Def {
        framework: "NIST SP 800-53 Rev. 5",
        id: "CP-9(2)",
        title: "System backup: test restoration using sampling",
        areas: &["drill", "integrity"],
        sections: &["Restore drills"],
        evidence: |f| {
            format!(
                "Drills that restored a recovery point (the latest, or one chosen at random) into a scratch target \
                 and verified every file or a seeded sample: {}; drilled in the period: {} of {}.",
                f.drills,
                f.drilled,
                policies(f.policies)
            )
        },
    },
];

fn policies(n: usize) -> String {
    super::findings::plural(n as u64, "policy", "policies")
}

fn rate(n: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

fn facts(ps: &[PolicyReport]) -> Facts {
    let count = |p: &dyn Fn(&PolicyReport) -> bool| ps.iter().filter(|x| p(x)).count();
    let sum = |p: &dyn Fn(&PolicyReport) -> u64| ps.iter().map(p).sum::<u64>();
    Facts {
        policies: ps.len(),
        scheduled: sum(&|p| p.backups.scheduled.unwrap_or(0)),
        covered: sum(&|p| p.backups.slots_covered.unwrap_or(0)),
        failed: sum(&|p| p.backups.failed),
        rpo_defined: count(&|p| p.objectives.rpo_s.is_some()),
        rto_defined: count(&|p| p.objectives.rto_s.is_some()),
        rpo_breached: count(&|p| !p.rpo.breaches.is_empty()),
        drilled: count(&|p| p.drills.count > 0),
        drills: sum(&|p| p.drills.count),
        passed: sum(&|p| p.drills.passed),
        rto_measured: sum(&|p| p.drills.list.iter().filter(|d| d.rto_measured_s.is_some()).count() as u64),
        rto_exceeded: sum(&|p| p.drills.rto_exceeded),
        files_checked: sum(&|p| p.drills.files_checked),
        mismatches: sum(&|p| p.drills.mismatches),
        never_drilled: count(&|p| p.verification.never_drilled),
        needs_verification: count(&|p| p.verification.needs_verification == Some(true)),
    }
}

/// The controls, judged from the policies' findings.
pub fn map(policies: &[PolicyReport]) -> Vec<Control> {
    let f = facts(policies);
    DEFS.iter()
        .map(|d| {
            let status = if policies.is_empty() {
                Status::Red
            } else {
                policies
                    .iter()
                    .flat_map(|p| &p.findings)
                    .filter(|x| d.areas.contains(&x.area))
                    .map(|x| x.severity)
                    .max()
                    .unwrap_or(Status::Green)
            };
            Control {
                framework: d.framework,
                id: d.id,
                title: d.title,
                status,
                evidence: if policies.is_empty() { "no policy, so no evidence".into() } else { (d.evidence)(&f) },
                sections: d.sections.to_vec(),
            }
        })
        .collect()
}
