//! The rows of the state database as Rust types, and their mapping.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Row};
use serde::{Deserialize, Serialize};

use super::{parse_ts, ts};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Backup,
    Prune,
    Drill,
    /// A policy's copy into its second repository (`[copy]`).
    Copy,
}

impl JobKind {
    pub const ALL: [JobKind; 4] = [JobKind::Backup, JobKind::Prune, JobKind::Drill, JobKind::Copy];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Prune => "prune",
            JobKind::Drill => "drill",
            JobKind::Copy => "copy",
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobKind {
    type Err = String;
    fn from_str(s: &str) -> Result<JobKind, String> {
        JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown job kind `{s}` (expected backup, prune, drill or copy)"))
    }
}

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Its scheduled time came.
    Schedule,
    /// It was due while the daemon was down, and runs once at start-up.
    CatchUp,
    /// `cairn run-now`.
    RunNow,
    /// A retry of a failed run.
    Retry,
    /// A command run by hand (`cairn drill`).
    Command,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch-up",
            Trigger::RunNow => "run-now",
            Trigger::Retry => "retry",
            Trigger::Command => "command",
        }
    }

    fn parse(s: &str) -> Trigger {
        match s {
            "catch-up" => Trigger::CatchUp,
            "run-now" => Trigger::RunNow,
            "retry" => Trigger::Retry,
            "command" => Trigger::Command,
            _ => Trigger::Schedule,
        }
    }
}

/// How a run ended (or that it has not yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    #[default]
    Running,
    Success,
    Failure,
    /// The process running it stopped first.
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Interrupted => "interrupted",
        }
    }

    pub(super) fn parse(s: &str) -> Outcome {
        match s {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            "interrupted" => Outcome::Interrupted,
            _ => Outcome::Running,
        }
    }
}

/// A run about to start.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub policy: String,
    pub kind: JobKind,
    pub trigger: Trigger,
    /// The slot it was scheduled for, if any.
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    /// 1 for the first try, 2 for the first retry…
    pub attempt: u32,
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct RunFinish {
    pub ended_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub snapshot_id: Option<String>,
    pub bytes: Option<u64>,
    pub error: Option<String>,
    pub duration_s: Option<f64>,
}

/// One recorded run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub policy: String,
    pub kind: JobKind,
    pub trigger: Trigger,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Outcome,
    pub snapshot_id: Option<String>,
    pub bytes: Option<u64>,
    pub error: Option<String>,
    pub duration_s: Option<f64>,
    pub attempt: u32,
    pub pid: Option<u32>,
    /// The job's latest progress (JSON), while it runs.
    pub progress: Option<serde_json::Value>,
}

pub(super) const RUN_COLUMNS: &str = "id, policy, kind, trigger, scheduled_at, started_at, ended_at, outcome, \
     snapshot_id, bytes, error, duration_s, attempt, pid, progress";

fn opt_ts(s: Option<String>) -> rusqlite::Result<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_ts).transpose()
}

pub(super) fn run_row(r: &Row<'_>) -> rusqlite::Result<RunRow> {
    let kind: String = r.get(2)?;
    Ok(RunRow {
        id: r.get(0)?,
        policy: r.get(1)?,
        kind: kind
            .parse()
            .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into()))?,
        trigger: Trigger::parse(&r.get::<_, String>(3)?),
        scheduled_at: opt_ts(r.get(4)?)?,
        started_at: parse_ts(&r.get::<_, String>(5)?)?,
        ended_at: opt_ts(r.get(6)?)?,
        outcome: Outcome::parse(&r.get::<_, String>(7)?),
        snapshot_id: r.get(8)?,
        bytes: r.get::<_, Option<i64>>(9)?.map(|b| b as u64),
        error: r.get(10)?,
        duration_s: r.get(11)?,
        attempt: r.get(12)?,
        pid: r.get(13)?,
        progress: r.get::<_, Option<String>>(14)?.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

/// The newest snapshot of a policy, as far as the state knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryPoint {
    pub snapshot_id: String,
    pub time: DateTime<Utc>,
    /// The id of its root tree: equal trees mean equal content.
    pub tree: String,
}

/// One finished drill, as the status screen and the compliance report
/// need it (the full report is in `report_dir`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRow {
    pub drill_id: String,
    pub policy: String,
    /// The daemon's run, when the daemon ran it.
    pub run_id: Option<i64>,
    /// "schedule" or "user@host".
    pub started_by: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub snapshot_id: Option<String>,
    pub snapshot_time: Option<DateTime<Utc>>,
    /// The restored snapshot's root tree id (for drift).
    pub tree: Option<String>,
    /// "pass" or "fail".
    pub verdict: String,
    /// With a failure: "objectives", "integrity", "validation" or "error".
    pub failure_kind: Option<String>,
    pub reasons: Vec<String>,
    pub rto_objective_s: Option<f64>,
    pub rto_measured_s: Option<f64>,
    pub rpo_objective_s: Option<f64>,
    pub rpo_achieved_s: Option<f64>,
    pub files_checked: u64,
    pub bytes_checked: u64,
    pub mismatches: u64,
    pub report_dir: Option<String>,
    pub evidence_hash: Option<String>,
}

impl DrillRow {
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }
}

const DRILL_COLUMNS: &str = "drill_id, policy, run_id, started_by, started_at, ended_at, snapshot_id, snapshot_time, \
     tree, verdict, failure_kind, reasons, rto_objective_s, rto_measured_s, rpo_objective_s, rpo_achieved_s, \
     files_checked, bytes_checked, mismatches, report_dir, evidence_hash";

pub(super) fn insert_drill(c: &Connection, d: &DrillRow) -> rusqlite::Result<()> {
    let sql = format!(
        "INSERT OR REPLACE INTO drills ({DRILL_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
    );
    c.execute(
        &sql,
        params![
            d.drill_id,
            d.policy,
            d.run_id,
            d.started_by,
            ts(d.started_at),
            ts(d.ended_at),
            d.snapshot_id,
            d.snapshot_time.map(ts),
            d.tree,
            d.verdict,
            d.failure_kind,
            serde_json::to_string(&d.reasons).unwrap_or_else(|_| "[]".into()),
            d.rto_objective_s,
            d.rto_measured_s,
            d.rpo_objective_s,
            d.rpo_achieved_s,
            d.files_checked as i64,
            d.bytes_checked as i64,
            d.mismatches as i64,
            d.report_dir,
            d.evidence_hash,
        ],
    )?;
    Ok(())
}

fn drill_row(r: &Row<'_>) -> rusqlite::Result<DrillRow> {
    Ok(DrillRow {
        drill_id: r.get(0)?,
        policy: r.get(1)?,
        run_id: r.get(2)?,
        started_by: r.get(3)?,
        started_at: parse_ts(&r.get::<_, String>(4)?)?,
        ended_at: parse_ts(&r.get::<_, String>(5)?)?,
        snapshot_id: r.get(6)?,
        snapshot_time: opt_ts(r.get(7)?)?,
        tree: r.get(8)?,
        verdict: r.get(9)?,
        failure_kind: r.get(10)?,
        reasons: serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or_default(),
        rto_objective_s: r.get(12)?,
        rto_measured_s: r.get(13)?,
        rpo_objective_s: r.get(14)?,
        rpo_achieved_s: r.get(15)?,
        files_checked: r.get::<_, i64>(16)? as u64,
        bytes_checked: r.get::<_, i64>(17)? as u64,
        mismatches: r.get::<_, i64>(18)? as u64,
        report_dir: r.get(19)?,
        evidence_hash: r.get(20)?,
    })
}

pub(super) fn select_drills(
    c: &Connection,
    policy: Option<&str>,
    since: &str,
    until: &str,
) -> rusqlite::Result<Vec<DrillRow>> {
    let sql = format!(
        "SELECT {DRILL_COLUMNS} FROM drills WHERE (?1 IS NULL OR policy = ?1) AND started_at >= ?2 \
         AND started_at < ?3 ORDER BY started_at, drill_id"
    );
    let mut st = c.prepare(&sql)?;
    let rows = st.query_map(params![policy, since, until], drill_row)?;
    rows.collect()
}
