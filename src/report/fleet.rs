//! The report from evidence alone (`cairn report --repo … --keys`): the
//! verified records of one or more repositories ([`crate::evidence::fleet`])
//! turned into the rows the one report builder reads, one host at a time,
//! then one report for every host and policy found in them. No state
//! database, no password: only the records that count under the auditor's
//! keys. A pure function of its input, like [`super::build`].
//!
//! How records become rows:
//! - a `backup` record is a backup run: started at its snapshot's time (the
//!   data is as of then), ended when it was recorded, a success when it
//!   saved a snapshot (`success` or `partial`), else a failure. The record
//!   does not say what triggered it;
//! - a `drill` record is a drill, with its verdict and the RTO and RPO it
//!   measured against the objectives it was run with. The objectives of
//!   a host's policy are the ones its newest drill record carries (policy
//!   files are not read: the fleet's hosts have their own); a policy never
//!   drilled has none, and says so. A drill record does not carry the
//!   number of files it checked, and no policy schedule is known, so
//!   scheduled slots are not counted;
//! - a host is **silent** when its newest record that counts is older than
//!   the threshold (`--silent-after`) at the end of the evaluated period:
//!   its row is red, and so is the report. An administrator's key (it
//!   signed revocations or acceptances alone) is no host: it is named in
//!   a notice and in the evidence section, never silent.
//!
//! Evidence that is damaged (records removed, reordered, altered,
//! replayed, the chain restarted) or a repository that could not be read
//! makes the report red; records that do not count (untrusted or revoked
//! keys, snapshots of another host's name or dated ahead) make it at least
//! amber. Each is listed in the evidence section.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::build::{assemble, period_notices, policy_report};
use super::*;
use crate::evidence::fleet::{silent, Fleet, HostFacts};
use crate::state::{DrillRow, JobKind, Outcome, RunRow, Trigger};

/// What a report from evidence is built from.
#[derive(Debug, Clone)]
pub struct FleetInput {
    pub period: Period,
    pub now: DateTime<Utc>,
    /// The host that generates the report.
    pub generated_on: String,
    pub fleet: Fleet,
    pub silent_after: chrono::Duration,
}

/// The rows the report builder reads, from one host's records.
pub fn rows_of(h: &HostFacts, until: DateTime<Utc>) -> StateRows {
    let mut rows = StateRows::default();
    for (name, p) in &h.policies {
        for b in p.backups.iter().filter(|b| b.started() < until) {
            let saved = b.saved();
            rows.runs.push(RunRow {
                id: b.seq as i64,
                policy: name.clone(),
                kind: JobKind::Backup,
                trigger: Trigger::Command,
                scheduled_at: None,
                started_at: b.started(),
                ended_at: Some(b.time),
                outcome: if saved { Outcome::Success } else { Outcome::Failure },
                snapshot_id: b.snapshot.clone().filter(|_| saved),
                bytes: None,
                error: b.error.clone(),
                duration_s: b.duration_ms.map(|ms| ms as f64 / 1000.0),
                attempt: 1,
                pid: None,
                progress: None,
            });
        }
        for d in p.drills.iter().filter(|d| d.started_at < until) {
            rows.drills.push(DrillRow {
                drill_id: d.drill_id.clone(),
                policy: name.clone(),
                run_id: None,
                started_by: h.host.clone(),
                started_at: d.started_at,
                ended_at: d.ended_at,
                snapshot_id: d.snapshot.clone(),
                snapshot_time: d.snapshot_time,
                tree: None,
                verdict: d.verdict.clone(),
                failure_kind: d.failure_kind.clone(),
                reasons: d.failure_kind.iter().map(|k| format!("failed on {k} (from its evidence record)")).collect(),
                rto_objective_s: d.rto_objective_s,
                rto_measured_s: d.rto_measured_s,
                rpo_objective_s: d.rpo_objective_s,
                rpo_achieved_s: d.rpo_achieved_s,
                files_checked: 0,
                bytes_checked: 0,
                mismatches: 0,
                report_dir: None,
                evidence_hash: Some(d.hash.clone()),
            });
        }
    }
    rows.runs.sort_by_key(|r| r.started_at);
    rows.drills.sort_by_key(|d| d.started_at);
    rows
}

/// Builds the report of every host and policy in `input.fleet`.
pub fn build_fleet(input: &FleetInput) -> Report {
    let period = input.period;
    let end = input.now.min(period.until).max(period.since);
    let mut notices = period_notices(period, input.now, end);
    let f = &input.fleet;
    let mut policies = Vec::new();
    let mut hosts = Vec::new();
    for (name, h) in &f.hosts {
        let rows = rows_of(h, period.until);
        let mut mine: Vec<PolicyReport> = h
            .policies
            .keys()
            .map(|p| {
                let mut r = policy_report(p, None, &rows, period.since, end, None);
                r.host = Some(name.clone());
                for failed in &mut r.backups.failures {
                    failed.trigger = "not recorded".into();
                }
                r
            })
            .collect();
        hosts.push(host_row(h, &mine, end, input.silent_after));
        policies.append(&mut mine);
    }
    let silent_hosts: Vec<String> = hosts.iter().filter(|h| h.silent).map(|h| h.host.clone()).collect();
    if !silent_hosts.is_empty() {
        notices.push(format!(
            "Silent: {} (no record that counts in the {} before {}).",
            silent_hosts.join(", "),
            human_duration(secs(input.silent_after)),
            when(end)
        ));
    }
    if !f.admins.is_empty() {
        notices.push(format!(
            "Administrators' keys (they signed revocations or acceptances and nothing else; no hosts of the \
             fleet): {}.",
            f.admins.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut worst = Status::Green;
    for r in &f.repositories {
        match (&r.error, r.intact) {
            (Some(e), _) => {
                worst = Status::Red;
                notices.push(format!(
                    "The evidence of {} could not be read ({e}): nothing of it is counted, and its hosts may be \
                     missing from this report.",
                    r.location
                ));
            }
            (None, false) => {
                let damaged = r.damaged;
                worst = worst.max(if damaged { Status::Red } else { Status::Amber });
                notices.push(format!(
                    "The evidence of {} has {} problem(s){}: only the records that verified under the trusted keys \
                     are counted (see Evidence).",
                    r.location,
                    r.problem_count,
                    if damaged { ", some of them damage" } else { "" }
                ));
            }
            (None, true) => {}
        }
    }
    if !f.not_counted.is_empty() {
        worst = worst.max(Status::Amber);
    }
    if f.hosts.is_empty() {
        notices.push("No host has a record that counts under the trusted keys: there is nothing to report on.".into());
    }
    let header = Input {
        period,
        now: input.now,
        host: input.generated_on.clone(),
        state_dir: String::new(),
        policies_dir: String::new(),
        policies: Vec::new(),
        policy_problems: Vec::new(),
        state: None,
        evidence: None,
    };
    let mut r = assemble(&header, end, notices, policies);
    r.status = r.status.max(worst).max(hosts.iter().map(|h| h.status).max().unwrap_or(Status::Amber));
    r.source = ReportSource::Evidence;
    r.hosts = hosts;
    r.evidence = Some(EvidenceSection {
        repositories: f.repositories.clone(),
        silent_after_s: secs(input.silent_after),
        silent_hosts,
        admin_keys: f.admins.keys().cloned().collect(),
        not_counted: f.not_counted.clone(),
        flagged_snapshots: f.flagged.clone(),
    });
    r
}

fn host_row(h: &HostFacts, policies: &[PolicyReport], end: DateTime<Utc>, after: chrono::Duration) -> HostRow {
    let count = |s: Status| policies.iter().filter(|p| p.status == s).count();
    let silent = silent(h.last_record_until(end), end, after);
    let worst = policies.iter().map(|p| p.status).max().unwrap_or(Status::Amber);
    let by_policy: BTreeMap<&str, _> = h.policies.iter().map(|(k, v)| (k.as_str(), v)).collect();
    HostRow {
        host: h.host.clone(),
        status: if silent { Status::Red } else { worst },
        policies: policies.len(),
        green: count(Status::Green),
        amber: count(Status::Amber),
        red: count(Status::Red),
        last_backup: by_policy
            .values()
            .flat_map(|p| p.backups.iter().filter(|b| b.saved() && b.time <= end).map(|b| b.started()))
            .max(),
        last_drill: by_policy.values().flat_map(|p| p.drills.iter().map(|d| d.started_at)).filter(|t| *t < end).max(),
        last_record: h.last_record_until(end),
        silent,
        records: h.records,
        keys: h.keys.iter().cloned().collect(),
    }
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
