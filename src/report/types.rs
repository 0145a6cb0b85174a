//! The compliance report's types: what a report is built from ([`Input`],
//! read by `collect`), the period it covers, and the report itself
//! ([`Report`], whose serde form is the JSON form; `docs/REPORTS.md`
//! documents every field).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::{controls, secs};
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::state::{DrillRow, RecoveryPoint, RunRow};

/// The half-open interval `[since, until)` a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Period {
    /// The period from the `--since` / `--until` flags: a `YYYY-MM-DD` date
    /// (UTC) or an RFC 3339 time. A date for `--until` includes that whole
    /// day. Defaults: the 30 days before `now`, up to `now`.
    pub fn from_flags(since: Option<&str>, until: Option<&str>, now: DateTime<Utc>) -> Result<Period> {
        let until = match until {
            Some(v) => parse_date("--until", v, true)?,
            None => now,
        };
        let since = match since {
            Some(v) => parse_date("--since", v, false)?,
            None => until - chrono::Duration::days(30),
        };
        if since >= until {
            return Err(Error::FlagConflict(format!(
                "--since ({}) must be before --until ({})",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )));
        }
        Ok(Period { since, until })
    }
}

/// Parses a date flag: `YYYY-MM-DD` (the start of that day in UTC, or its
/// end when `end_of_day`) or an RFC 3339 time.
pub fn parse_date(flag: &str, value: &str, end_of_day: bool) -> Result<DateTime<Utc>> {
    let v = value.trim();
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let d = if end_of_day { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    DateTime::parse_from_rfc3339(v).map(|t| t.with_timezone(&Utc)).map_err(|e| Error::BadFlag {
        flag: flag.to_string(),
        value: value.to_string(),
        expected: format!("expected a date YYYY-MM-DD or an RFC 3339 time like 2026-03-01T00:00:00Z ({e})"),
    })
}

/// Everything a report is built from, read once from the state database
/// and the policy directory.
#[derive(Debug, Clone)]
pub struct Input {
    pub period: Period,
    /// When the report is generated; the period is evaluated up to here.
    pub now: DateTime<Utc>,
    pub host: String,
    pub state_dir: String,
    pub policies_dir: String,
    /// The valid policies of the policy directory.
    pub policies: Vec<Policy>,
    /// Problems found while reading the policy directory, one line each.
    pub policy_problems: Vec<String>,
    /// `None`: there is no state database (nothing was ever recorded).
    pub state: Option<StateRows>,
    /// What the evidence of each policy's repository backs (`report
    /// --check-evidence`), by policy; `None`: the rows were not checked.
    pub evidence: Option<BTreeMap<String, RowEvidence>>,
}

/// What the verified evidence of a policy's repository backs.
#[derive(Debug, Clone)]
pub enum RowEvidence {
    /// The snapshots that backup records name, and the drill ids of drill
    /// records, that count.
    Read { snapshots: std::collections::BTreeSet<String>, drills: std::collections::BTreeSet<String> },
    /// The repository's evidence could not be read: why.
    Unread(String),
}

/// Which of a policy's rows in the state verified evidence records back.
#[derive(Debug, Clone, Serialize)]
pub struct RowsEvidence {
    /// `verified` (every successful backup and drill of the period has its
    /// record), `unverified` (some have none), `unchecked` (the repository's
    /// evidence could not be read).
    pub state: &'static str,
    pub error: Option<String>,
    /// The start of each successful backup run of the period that no
    /// verified record names.
    pub unverified_backups: Vec<DateTime<Utc>>,
    /// The drills of the period that no verified record names.
    pub unverified_drills: Vec<String>,
}

/// The rows of the state database a report needs.
#[derive(Debug, Clone, Default)]
pub struct StateRows {
    /// Every run that started before the period's end (earlier ones say
    /// how old the recovery point was when the period began).
    pub runs: Vec<RunRow>,
    /// Every drill that started before the period's end.
    pub drills: Vec<DrillRow>,
    /// The newest recovery point of each policy.
    pub recovery_points: BTreeMap<String, RecoveryPoint>,
    /// Whether each policy's content changed since its last passing drill
    /// (`State::content_changed_since_drill`), where known.
    pub content_changed: BTreeMap<String, bool>,
    /// The daemon's last evidence check of each policy's repository.
    pub evidence_checks: BTreeMap<String, crate::status::EvidenceState>,
}

impl PolicyReport {
    /// `host/name` in a report of several hosts, else the name.
    pub fn label(&self) -> String {
        match &self.host {
            Some(h) => format!("{h}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The HTML id of its section.
    pub fn anchor(&self) -> String {
        format!("policy-{}", self.label())
    }
}

/// Green, amber or red; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Green,
    Amber,
    Red,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Green => "green",
            Status::Amber => "amber",
            Status::Red => "red",
        }
    }

    /// What the status means, for people.
    pub fn label(self) -> &'static str {
        match self {
            Status::Green => "compliant",
            Status::Amber => "attention",
            Status::Red => "non-compliant",
        }
    }
}

/// The compliance report: the JSON form is this, serialised.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub generated_at: DateTime<Utc>,
    pub cairn_version: String,
    pub host: String,
    pub period: ReportPeriod,
    pub state_dir: String,
    pub policies_dir: String,
    /// The worst status of any policy (green with no policy at all).
    pub status: Status,
    /// Things the reader must know about the data itself (no state
    /// database, unreadable policy files, a period in the future).
    pub notices: Vec<String>,
    pub summary: Summary,
    pub policies: Vec<PolicyReport>,
    pub controls: Vec<controls::Control>,
    /// What the figures come from.
    pub source: ReportSource,
    /// One row per host (a report from evidence).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostRow>,
    /// The evidence read (a report from evidence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceSection>,
}

/// What a report's figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportSource {
    /// One host's state database (which whoever can write it can change).
    State,
    /// The verified evidence of repositories, with the auditor's keys.
    Evidence,
}

/// One host of a report from evidence.
#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub host: String,
    /// The worst of its policies; red when it has gone silent.
    pub status: Status,
    pub policies: usize,
    pub green: usize,
    pub amber: usize,
    pub red: usize,
    /// The data time of its newest verified backup.
    pub last_backup: Option<DateTime<Utc>>,
    pub last_drill: Option<DateTime<Utc>>,
    /// Its newest record that counts.
    pub last_record: Option<DateTime<Utc>>,
    /// No record that counts within the silence threshold before the
    /// report's end.
    pub silent: bool,
    /// Records that count.
    pub records: usize,
    /// The key ids that signed them.
    pub keys: Vec<String>,
}

/// What a report from evidence read, and what it did not count.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceSection {
    pub repositories: Vec<crate::evidence::fleet::RepositorySummary>,
    /// A host with no record for this long is silent.
    pub silent_after_s: f64,
    pub silent_hosts: Vec<String>,
    /// The hosts of keys that signed administration alone (revocations,
    /// acceptances): no hosts of the fleet, never silent.
    pub admin_keys: Vec<String>,
    pub not_counted: Vec<crate::evidence::fleet::Uncounted>,
    /// Snapshots whose backup record does not count (another host's name,
    /// dated ahead): named, never counted.
    pub flagged_snapshots: Vec<crate::evidence::fleet::FlaggedSnapshot>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReportPeriod {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// `min(until, generated_at)`: figures cover `[since, evaluated_until)`.
    pub evaluated_until: DateTime<Utc>,
}

impl ReportPeriod {
    pub fn seconds(&self) -> f64 {
        secs(self.evaluated_until - self.since)
    }
}

/// Totals across policies.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub policies: usize,
    pub green: usize,
    pub amber: usize,
    pub red: usize,
    pub backups_scheduled: u64,
    pub backups_succeeded: u64,
    pub backups_failed: u64,
    pub drills: u64,
    pub drills_passed: u64,
}

/// One policy's figures for the period.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// The host whose policy it is (a report from evidence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub name: String,
    pub description: String,
    /// False when the policy is known only from the state database (it was
    /// removed from, or renamed in, the policy directory).
    pub in_policy_dir: bool,
    /// When the state first records the policy (its first backup or drill),
    /// if that is inside the period: slots and recovery point age are
    /// judged from then, not from before the policy existed.
    pub tracked_since: Option<DateTime<Utc>>,
    pub status: Status,
    /// Why the status is what it is, worst first.
    pub findings: Vec<Finding>,
    pub objectives: ObjectivesOut,
    pub backups: Backups,
    pub rpo: Rpo,
    pub drills: Drills,
    pub verification: Verification,
    /// Which rows verified evidence records back (`--check-evidence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<RowsEvidence>,
    /// The snapshots the daemon's last evidence check flagged (another
    /// host's name, dated ahead, no record): left out of the recovery point
    /// and retention until accepted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flagged_snapshots: Vec<crate::status::FlaggedSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Status,
    /// What it is about: `policy`, `backup`, `rpo`, `drill`, `rto`,
    /// `integrity`, `verification` or `objectives` (controls use it).
    pub area: &'static str,
    pub message: String,
}

/// The objectives the figures are judged against. For a policy no longer
/// in the directory, they come from its newest drill, if any.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ObjectivesOut {
    pub rpo_s: Option<f64>,
    pub rto_s: Option<f64>,
}

/// Scheduled backups against successful ones.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Backups {
    /// The cron expression, `None` for a policy without a schedule (or not
    /// in the directory any more).
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    /// Schedule slots in the period (`None` without a schedule).
    pub scheduled: Option<u64>,
    /// Slots followed by a successful backup before the next slot.
    pub slots_covered: Option<u64>,
    /// The first 100 slots that no successful backup followed.
    pub missed_slots: Vec<DateTime<Utc>>,
    /// Backup runs in the period, by outcome.
    pub runs: u64,
    pub succeeded: u64,
    /// Failed and interrupted runs.
    pub failed: u64,
    pub running: u64,
    /// `slots_covered / scheduled`.
    pub coverage: Option<f64>,
    pub failures: Vec<FailedRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedRun {
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub trigger: String,
    pub attempt: u32,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// The age of the newest recovery point over the period.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rpo {
    pub objective_s: Option<f64>,
    /// The age at the end of the evaluated period; `None`: no recovery point.
    pub age_at_end_s: Option<f64>,
    pub worst_age_s: Option<f64>,
    /// Times in the period when the age was above the objective (or there
    /// was no recovery point at all).
    pub breaches: Vec<Breach>,
    pub breached_s: f64,
    /// Share of the evaluated period within the objective.
    pub compliance: Option<f64>,
    /// The age at each change of slope (a sawtooth: it grows with time and
    /// drops when a backup completes); enough to redraw the chart exactly.
    pub samples: Vec<AgeSample>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Breach {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub duration_s: f64,
    /// Still in breach at the end of the evaluated period.
    pub ongoing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AgeSample {
    pub at: DateTime<Utc>,
    pub age_s: f64,
}

/// Restore drills in the period.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Drills {
    pub schedule: Option<String>,
    pub count: u64,
    pub passed: u64,
    pub failed: u64,
    pub pass_rate: Option<f64>,
    pub rto_objective_s: Option<f64>,
    pub rto_worst_s: Option<f64>,
    pub rto_last_s: Option<f64>,
    /// Drills whose measured RTO was above their objective.
    pub rto_exceeded: u64,
    pub files_checked: u64,
    pub mismatches: u64,
    pub list: Vec<DrillOut>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillOut {
    pub drill_id: String,
    pub started_at: DateTime<Utc>,
    pub started_by: String,
    pub verdict: String,
    pub failure_kind: Option<String>,
    pub reasons: Vec<String>,
    pub snapshot_id: Option<String>,
    pub rto_measured_s: Option<f64>,
    pub rto_objective_s: Option<f64>,
    pub rpo_achieved_s: Option<f64>,
    pub files_checked: u64,
    pub mismatches: u64,
    pub evidence_hash: Option<String>,
    /// Whether a verified drill record backs it (`--check-evidence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

/// Whether the policy's restores are proven for its current content.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// No drill ever (before the period's end).
    pub never_drilled: bool,
    pub last_drill: Option<DateTime<Utc>>,
    pub last_passed: Option<DateTime<Utc>>,
    /// The newest recovery point's content differs from what the last
    /// passing drill restored (as of when the report is generated).
    pub needs_verification: Option<bool>,
}
