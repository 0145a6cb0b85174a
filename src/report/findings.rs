//! Judging one policy's figures: each finding has a severity (green is
//! informational), and the policy's status is the worst of them.
//!
//! Red means the policy is not recoverable as promised *now* or the latest
//! evidence contradicts it: no recovery point, the RPO in breach at the end
//! of the period, no scheduled backup succeeded, the latest drill failed or
//! exceeded the RTO, restored files that did not match. Amber means the
//! evidence is incomplete or was contradicted earlier in the period: missed
//! slots, past RPO breaches, earlier failed drills, no drill in the period,
//! content changed since the last passing drill, objectives not defined, a
//! policy that left the policy directory. A policy no longer in the directory
//! is shown for the record and is at most amber: it is not in force.

use super::*;
use crate::policy::Policy;

fn f(severity: Status, area: &'static str, message: String) -> Finding {
    Finding { severity, area, message }
}

pub(super) fn assess(
    policy: Option<&Policy>,
    policy_files: bool,
    o: &ObjectivesOut,
    b: &Backups,
    r: &Rpo,
    d: &Drills,
    v: &Verification,
) -> Vec<Finding> {
    let mut out = Vec::new();
    // Without policy files (a report from evidence alone), a policy is
    // judged on its records, and is not "removed".
    let in_dir = policy.is_some() || !policy_files;
    if !in_dir {
        out.push(f(
            Status::Amber,
            "policy",
            "not in the policy directory any more (removed or renamed): its schedule is unknown, and its \
             objectives are the ones its drills recorded"
                .into(),
        ));
    }
    backups(&mut out, policy.is_some(), in_dir, b);
    rpo(&mut out, o, r);
    drills(&mut out, policy, o, d, v);
    if !in_dir {
        // Shown for the record: a policy no longer in force is not judged red.
        for f in &mut out {
            f.severity = f.severity.min(Status::Amber);
        }
    }
    out
}

fn backups(out: &mut Vec<Finding>, has_file: bool, in_dir: bool, b: &Backups) {
    let failures = plural(b.failed, "backup run", "backup runs");
    match (b.scheduled, b.slots_covered) {
        (Some(n), Some(0)) if n > 0 => {
            out.push(f(Status::Red, "backup", format!("none of the {n} scheduled backups succeeded")));
        }
        (Some(n), Some(c)) if c < n => {
            let mut m = format!("{} of {n} scheduled backups had no successful run before the next slot", n - c);
            if b.failed > 0 {
                m.push_str(&format!(" ({failures} failed)"));
            }
            out.push(f(Status::Amber, "backup", m));
        }
        (Some(_), _) if b.failed > 0 => out.push(f(
            Status::Green,
            "backup",
            format!("{failures} failed, but every scheduled slot still had a successful backup"),
        )),
        (None, _) if b.failed > 0 => {
            out.push(f(Status::Amber, "backup", format!("{failures} failed")));
        }
        (None, _) if has_file => out.push(f(
            Status::Green,
            "backup",
            "no backup schedule: backups run only on demand (`cairn backup --policy`)".into(),
        )),
        (None, _) if in_dir => out.push(f(
            Status::Green,
            "backup",
            "schedule unknown (no policy file was given): scheduled slots are not counted".into(),
        )),
        _ => {}
    }
}

fn rpo(out: &mut Vec<Finding>, o: &ObjectivesOut, r: &Rpo) {
    if o.rpo_s.is_none() {
        out.push(f(Status::Amber, "objectives", "no RPO objective: the recovery point's age is not judged".into()));
    }
    let Some(age) = r.age_at_end_s else {
        out.push(f(Status::Red, "rpo", "no recovery point: no backup of this policy ever succeeded".into()));
        return;
    };
    let Some(obj) = o.rpo_s else { return };
    let ongoing = r.breaches.last().is_some_and(|b| b.ongoing);
    if ongoing {
        out.push(f(
            Status::Red,
            "rpo",
            format!(
                "RPO in breach at the end of the period: the newest recovery point is {} old (objective {})",
                human_duration(age),
                human_duration(obj)
            ),
        ));
    }
    let past: Vec<&Breach> = r.breaches.iter().filter(|b| !b.ongoing).collect();
    if !past.is_empty() {
        let longest = past.iter().map(|b| b.duration_s).fold(0.0, f64::max);
        out.push(f(
            Status::Amber,
            "rpo",
            format!(
                "RPO breached {} during the period, {} in all (longest {})",
                plural(past.len() as u64, "time", "times"),
                human_duration(past.iter().map(|b| b.duration_s).sum()),
                human_duration(longest)
            ),
        ));
    }
}

fn drills(out: &mut Vec<Finding>, policy: Option<&Policy>, o: &ObjectivesOut, d: &Drills, v: &Verification) {
    if o.rto_s.is_none() {
        out.push(f(Status::Amber, "objectives", "no RTO objective: restore times are not judged".into()));
    }
    if v.never_drilled {
        let why = match policy {
            Some(p) if p.drill.is_none() => " (the policy has no [drill] section)",
            _ => "",
        };
        out.push(f(Status::Amber, "drill", format!("never drilled: no restore of this policy was ever tested{why}")));
    } else if d.count == 0 {
        let last = v.last_drill.map(when).unwrap_or_default();
        out.push(f(Status::Amber, "drill", format!("not drilled during the period (last drill {last})")));
    }
    if let Some(last) = d.list.last() {
        if last.verdict != "pass" {
            let why = last.reasons.first().map(|r| format!(": {r}")).unwrap_or_default();
            out.push(f(Status::Red, "drill", format!("the latest drill ({}) failed{why}", when(last.started_at))));
        } else if d.failed > 0 {
            out.push(f(
                Status::Amber,
                "drill",
                format!("{} of {} drills failed; the latest passed", d.failed, d.count),
            ));
        }
        let over = |x: &DrillOut| matches!((x.rto_measured_s, x.rto_objective_s), (Some(m), Some(o)) if crate::text::exceeds(m, o));
        if d.rto_exceeded > 0 {
            let sev = if over(last) { Status::Red } else { Status::Amber };
            out.push(f(
                sev,
                "rto",
                format!(
                    "measured restore time above the RTO in {} (worst {})",
                    plural(d.rto_exceeded, "drill", "drills"),
                    worst_against_its_objective(d)
                ),
            ));
        }
    }
    if d.mismatches > 0 {
        out.push(f(
            Status::Red,
            "integrity",
            format!("{} did not match the snapshot in drills", plural(d.mismatches, "restored file", "restored files")),
        ));
    }
    if v.needs_verification == Some(true) {
        out.push(f(
            Status::Amber,
            "verification",
            "needs verification: the content changed since the last passing drill".into(),
        ));
    }
}

/// The worst measured restore time, beside the objective its drill was
/// judged against, so a miss never reads as the objective itself.
fn worst_against_its_objective(d: &Drills) -> String {
    let worst = d
        .list
        .iter()
        .filter(|x| x.rto_measured_s.is_some())
        .max_by(|a, b| a.rto_measured_s.partial_cmp(&b.rto_measured_s).unwrap_or(std::cmp::Ordering::Equal));
    match worst {
        Some(x) => human_opt_against(x.rto_measured_s, x.rto_objective_s),
        None => human_opt(d.rto_worst_s),
    }
}

pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}
