//! Building the report: a pure function of the state rows, the policies,
//! the period and "now" ([`build`]). Nothing here reads a clock, a file or
//! the database.
//!
//! How each figure is computed (also in `docs/REPORTS.md`):
//! - **scheduled**: the policy's backup cron slots in `[since, end)` with
//!   `end = min(until, now)`, in the policy's time zone (DST included), from
//!   `Schedule::next_backups`. A slot is **covered** when a successful backup
//!   run was scheduled for it, or started between it and the next slot (the
//!   end of the period for the last one): retries and catch-up runs count,
//!   a success long after the next slot does not;
//! - **recovery point age** at instant `t`: `t` minus the start of the
//!   newest successful backup that had *finished* by `t` (a snapshot holds
//!   the data as of its start, and can be restored only once it is
//!   committed). The state's recorded recovery point counts too when no run
//!   produced it (a snapshot taken outside the daemon). The age is a
//!   sawtooth; breaches of the RPO are computed exactly from it, not
//!   sampled, and having no recovery point at all counts as a breach;
//! - a policy the state first records (its first backup or drill run)
//!   inside the period is judged from then (`tracked_since`): the slots
//!   before it were not its to miss, and having no recovery point yet is a
//!   breach only once the RPO has passed since then;
//! - **drills** started in the period, with their verdicts and measured RTO
//!   against the objective each drill recorded (the policy's when absent).

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};

use super::*;
use crate::policy::Policy;
use crate::state::{DrillRow, RecoveryPoint, RunRow};
use crate::state::{JobKind, Outcome};

/// Builds the report of `input`.
pub fn build(input: &Input) -> Report {
    let period = input.period;
    let end = input.now.min(period.until).max(period.since);
    let mut notices = Vec::new();
    if input.state.is_none() {
        notices.push(format!(
            "There is no state database in {}: no backup run, drill or recovery point was ever recorded there. \
             If that is unexpected, check --state or CAIRN_STATE_DIR.",
            input.state_dir
        ));
    }
    notices.extend(period_notices(period, input.now, end));
    for p in &input.policy_problems {
        notices.push(format!("Policy directory: {p}"));
    }
    let empty = StateRows::default();
    let rows = input.state.as_ref().unwrap_or(&empty);
    let mut names: BTreeSet<&str> = input.policies.iter().map(|p| p.name.as_str()).collect();
    names.extend(rows.runs.iter().map(|r| r.policy.as_str()));
    names.extend(rows.drills.iter().map(|d| d.policy.as_str()));
    names.extend(rows.recovery_points.keys().map(String::as_str));
    names.extend(rows.content_changed.keys().map(String::as_str));
    if names.is_empty() {
        notices.push(format!(
            "No policy to report on: the policy directory {} holds no valid policy, and the state records none.",
            input.policies_dir
        ));
    }
    let policies: Vec<PolicyReport> = names
        .into_iter()
        .map(|n| {
            // From the state: policy files were read, whether or not the
            // rows were checked against the evidence.
            let evidence = Some(input.evidence.as_ref().and_then(|e| e.get(n)));
            policy_report(n, input.policies.iter().find(|p| p.name == n), rows, period.since, end, evidence)
        })
        .collect();
    if input.evidence.is_none() && input.state.is_some() {
        notices.push(
            "The rows of the state database were not checked against the repositories' evidence (`--check-evidence` \
             does): whoever can write the state database can change them. `cairn report --repo … --keys FILE` \
             reports from verified evidence alone."
                .into(),
        );
    }
    assemble(input, end, notices, policies)
}

/// The period notices of a report generated at `now`, evaluated up to `end`.
pub(super) fn period_notices(period: Period, now: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
    let mut notices = Vec::new();
    if now <= period.since {
        notices.push("The period starts after the report was generated: there is nothing to evaluate yet.".into());
    } else if now < period.until {
        notices.push(format!("The period ends after the report was generated: figures cover up to {}.", when(end)));
    }
    notices
}

/// The report of `policies`: totals, overall status and controls.
pub(super) fn assemble(input: &Input, end: DateTime<Utc>, notices: Vec<String>, policies: Vec<PolicyReport>) -> Report {
    let period = input.period;
    let mut summary = Summary { policies: policies.len(), ..Default::default() };
    for p in &policies {
        match p.status {
            Status::Green => summary.green += 1,
            Status::Amber => summary.amber += 1,
            Status::Red => summary.red += 1,
        }
        summary.backups_scheduled += p.backups.scheduled.unwrap_or(0);
        summary.backups_succeeded += p.backups.succeeded;
        summary.backups_failed += p.backups.failed;
        summary.drills += p.drills.count;
        summary.drills_passed += p.drills.passed;
    }
    // With nothing to report on, nothing is shown to be compliant.
    let status = policies.iter().map(|p| p.status).max().unwrap_or(Status::Amber);
    Report {
        schema: SCHEMA,
        generated_at: input.now,
        cairn_version: crate::VERSION.to_string(),
        host: input.host.clone(),
        period: ReportPeriod { since: period.since, until: period.until, evaluated_until: end },
        state_dir: input.state_dir.clone(),
        policies_dir: input.policies_dir.clone(),
        status,
        notices,
        summary,
        controls: controls::map(&policies),
        policies,
        source: ReportSource::State,
        hosts: Vec::new(),
        evidence: None,
    }
}

/// One policy's figures. `evidence`: `None` for a report from evidence
/// alone (no policy files: a policy is judged on what its records carry,
/// and is never "removed"); else what its repository's evidence backs, if
/// it was checked.
pub(super) fn policy_report(
    name: &str,
    policy: Option<&Policy>,
    rows: &StateRows,
    since: DateTime<Utc>,
    end: DateTime<Utc>,
    evidence: Option<Option<&RowEvidence>>,
) -> PolicyReport {
    let policy_files = evidence.is_some();
    let runs: Vec<&RunRow> =
        rows.runs.iter().filter(|r| r.policy == name && r.kind == JobKind::Backup && r.started_at < end).collect();
    let all_drills: Vec<&DrillRow> = rows.drills.iter().filter(|d| d.policy == name && d.started_at < end).collect();
    let objectives = objectives(policy, &all_drills);
    let first_seen = rows
        .runs
        .iter()
        .filter(|r| r.policy == name)
        .map(|r| r.started_at)
        .chain(rows.drills.iter().filter(|d| d.policy == name).map(|d| d.started_at))
        .min();
    let tracked_since = first_seen.filter(|t| *t > since && *t < end);
    let since = tracked_since.unwrap_or(since);
    let backups = backups(policy, &runs, since, end);
    let rpo = rpo(&runs, rows.recovery_points.get(name), objectives.rpo_s, since, end, tracked_since);
    let mut drills = drills(policy, &all_drills, objectives.rto_s, since);
    let (rows_evidence, mut evidence_findings) =
        super::verified::mark(evidence.flatten(), &runs, since, &mut drills, rows.evidence_checks.get(name));
    let verification = Verification {
        never_drilled: all_drills.is_empty(),
        last_drill: all_drills.iter().map(|d| d.started_at).max(),
        last_passed: all_drills.iter().filter(|d| d.passed()).map(|d| d.started_at).max(),
        needs_verification: rows.content_changed.get(name).copied(),
    };
    let mut findings =
        super::findings::assess(policy, policy_files, &objectives, &backups, &rpo, &drills, &verification);
    findings.append(&mut evidence_findings);
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    PolicyReport {
        host: None,
        name: name.to_string(),
        description: policy.map(|p| p.description.clone()).unwrap_or_default(),
        in_policy_dir: policy.is_some(),
        tracked_since,
        status: findings.iter().map(|f| f.severity).max().unwrap_or(Status::Green),
        findings,
        objectives,
        backups,
        rpo,
        drills,
        verification,
        evidence: rows_evidence,
        flagged_snapshots: rows.evidence_checks.get(name).map(|e| e.flagged.clone()).unwrap_or_default(),
    }
}

/// The policy's objectives; for a policy no longer in the directory, the
/// newest ones its drills recorded.
fn objectives(policy: Option<&Policy>, drills: &[&DrillRow]) -> ObjectivesOut {
    match policy {
        Some(p) => ObjectivesOut {
            rpo_s: p.objectives.rpo.map(|d| d.as_secs() as f64),
            rto_s: p.objectives.rto.map(|d| d.as_secs() as f64),
        },
        None => ObjectivesOut {
            rpo_s: drills.iter().rev().find_map(|d| d.rpo_objective_s),
            rto_s: drills.iter().rev().find_map(|d| d.rto_objective_s),
        },
    }
}

/// The schedule's slots in `[since, end)`.
pub(crate) fn slots(policy: &Policy, since: DateTime<Utc>, end: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    const BATCH: usize = 1024;
    let mut out = Vec::new();
    // `next_backups` returns times strictly after its argument.
    let mut after = since - chrono::Duration::milliseconds(1);
    loop {
        let batch = policy.schedule.next_backups(after, BATCH);
        let Some(&last) = batch.last() else { return out };
        for t in batch {
            if t >= end {
                return out;
            }
            out.push(t);
        }
        after = last;
    }
}

fn backups(policy: Option<&Policy>, runs: &[&RunRow], since: DateTime<Utc>, end: DateTime<Utc>) -> Backups {
    let in_period: Vec<&RunRow> = runs.iter().copied().filter(|r| r.started_at >= since).collect();
    let failed = |r: &&&RunRow| matches!(r.outcome, Outcome::Failure | Outcome::Interrupted);
    let mut b = Backups {
        runs: in_period.len() as u64,
        succeeded: in_period.iter().filter(|r| r.outcome == Outcome::Success).count() as u64,
        failed: in_period.iter().filter(failed).count() as u64,
        running: in_period.iter().filter(|r| r.outcome == Outcome::Running).count() as u64,
        failures: in_period
            .iter()
            .filter(failed)
            .map(|r| FailedRun {
                started_at: r.started_at,
                ended_at: r.ended_at,
                outcome: r.outcome.as_str().into(),
                trigger: r.trigger.as_str().into(),
                attempt: r.attempt,
                scheduled_at: r.scheduled_at,
                error: r.error.clone(),
            })
            .collect(),
        ..Default::default()
    };
    let Some(p) = policy.filter(|p| p.schedule.backup.is_some()) else { return b };
    b.schedule = p.schedule.backup.as_ref().map(|c| c.to_string());
    b.timezone = Some(p.schedule.timezone.to_string());
    let slots = slots(p, since, end);
    let ok: Vec<&RunRow> = in_period.iter().copied().filter(|r| r.outcome == Outcome::Success).collect();
    let ok_slots: HashSet<DateTime<Utc>> = ok.iter().filter_map(|r| r.scheduled_at).collect();
    let mut ok_starts: Vec<DateTime<Utc>> = ok.iter().map(|r| r.started_at).collect();
    ok_starts.sort();
    let mut covered = 0u64;
    for (i, &slot) in slots.iter().enumerate() {
        let next = slots.get(i + 1).copied().unwrap_or(end);
        let first = ok_starts.partition_point(|t| *t < slot);
        if ok_slots.contains(&slot) || ok_starts.get(first).is_some_and(|t| *t < next) {
            covered += 1;
        } else if b.missed_slots.len() < 100 {
            b.missed_slots.push(slot);
        }
    }
    b.scheduled = Some(slots.len() as u64);
    b.slots_covered = Some(covered);
    b.coverage = (!slots.is_empty()).then(|| covered as f64 / slots.len() as f64);
    b
}

/// The recovery point's age over `[since, end)` and its breaches of the
/// objective (see the module doc).
pub(crate) fn rpo(
    runs: &[&RunRow],
    recorded: Option<&RecoveryPoint>,
    objective_s: Option<f64>,
    since: DateTime<Utc>,
    end: DateTime<Utc>,
    tracked_since: Option<DateTime<Utc>>,
) -> Rpo {
    // (available from, data as of)
    let mut events: Vec<(DateTime<Utc>, DateTime<Utc>)> = runs
        .iter()
        .filter(|r| r.outcome == Outcome::Success)
        .filter_map(|r| r.ended_at.map(|e| (e, r.started_at)))
        .collect();
    if let Some(rp) = recorded {
        if !runs.iter().any(|r| r.snapshot_id.as_deref() == Some(rp.snapshot_id.as_str())) {
            events.push((rp.time, rp.time));
        }
    }
    events.retain(|e| e.0 <= end);
    events.sort();
    let mut reference = events.iter().filter(|e| e.0 <= since).map(|e| e.1).max();
    let mut segments = Vec::new();
    let mut t = since;
    for &(available, as_of) in events.iter().filter(|e| e.0 > since && e.0 < end) {
        segments.push((t, available, reference));
        reference = reference.max(Some(as_of));
        t = available;
    }
    segments.push((t, end, reference));
    let at_end = events.iter().map(|e| e.1).max();

    let objective = objective_s.map(|s| chrono::Duration::milliseconds((s * 1000.0) as i64));
    let mut out = Rpo { objective_s, age_at_end_s: at_end.map(|r| secs(end - r)), ..Default::default() };
    for &(s, e, r) in &segments {
        if let Some(r) = r {
            for (at, age) in [(s, secs(s - r)), (e, secs(e - r))] {
                if out.samples.last() != Some(&AgeSample { at, age_s: age }) {
                    out.samples.push(AgeSample { at, age_s: age });
                }
                out.worst_age_s = Some(out.worst_age_s.map_or(age, |w: f64| w.max(age)));
            }
        }
        let Some(obj) = objective else { continue };
        let start = match (r, tracked_since) {
            // A policy first recorded in the period has had no backup for
            // as long as it has existed: a breach once that exceeds the RPO.
            (None, Some(t0)) => s.max(t0 + obj),
            (None, None) => s,
            (Some(r), _) => s.max(r + obj),
        };
        if start >= e {
            continue;
        }
        match out.breaches.last_mut() {
            Some(last) if last.end == start => last.end = e,
            _ => out.breaches.push(Breach { start, end: e, duration_s: 0.0, ongoing: false }),
        }
    }
    for b in &mut out.breaches {
        b.duration_s = secs(b.end - b.start);
        b.ongoing = b.end == end;
    }
    // A fold from +0.0: an empty float `sum()` is -0.0, which would print as "-0".
    out.breached_s = out.breaches.iter().map(|b| b.duration_s).fold(0.0, |a, b| a + b);
    let total = secs(end - since);
    if objective.is_some() && total > 0.0 {
        out.compliance = Some((1.0 - out.breached_s / total).clamp(0.0, 1.0));
    }
    out
}

fn drills(policy: Option<&Policy>, all: &[&DrillRow], rto_objective_s: Option<f64>, since: DateTime<Utc>) -> Drills {
    let list: Vec<&DrillRow> = all.iter().copied().filter(|d| d.started_at >= since).collect();
    let count = list.len() as u64;
    let passed = list.iter().filter(|d| d.passed()).count() as u64;
    let exceeded = |d: &&&DrillRow| match (d.rto_measured_s, d.rto_objective_s.or(rto_objective_s)) {
        (Some(m), Some(o)) => crate::text::exceeds(m, o),
        _ => false,
    };
    Drills {
        schedule: policy.and_then(|p| p.drill.as_ref()).map(|d| d.schedule.to_string()),
        count,
        passed,
        failed: count - passed,
        pass_rate: (count > 0).then(|| passed as f64 / count as f64),
        rto_objective_s,
        rto_worst_s: list.iter().filter_map(|d| d.rto_measured_s).reduce(f64::max),
        rto_last_s: list.iter().rev().find_map(|d| d.rto_measured_s),
        rto_exceeded: list.iter().filter(exceeded).count() as u64,
        files_checked: list.iter().map(|d| d.files_checked).sum(),
        mismatches: list.iter().map(|d| d.mismatches).sum(),
        list: list
            .iter()
            .map(|d| DrillOut {
                drill_id: d.drill_id.clone(),
                started_at: d.started_at,
                started_by: d.started_by.clone(),
                verdict: d.verdict.clone(),
                failure_kind: d.failure_kind.clone(),
                reasons: d.reasons.clone(),
                snapshot_id: d.snapshot_id.clone(),
                rto_measured_s: d.rto_measured_s,
                rto_objective_s: d.rto_objective_s.or(rto_objective_s),
                rpo_achieved_s: d.rpo_achieved_s,
                files_checked: d.files_checked,
                mismatches: d.mismatches,
                evidence_hash: d.evidence_hash.clone(),
                verified: None,
            })
            .collect(),
    }
}
