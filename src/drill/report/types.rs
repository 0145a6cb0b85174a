//! The drill report's types: the data structure every form lays out and
//! whose canonical JSON is hashed for the evidence record
//! (`docs/DRILLS.md` documents every field).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::drill::scratch::Cleanup;
use crate::drill::spot::SpotCheck;
use crate::drill::validate::Validation;
use crate::drill::verdict::Verdict;
use crate::drill::verify::{Mismatch, Sample};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub schema: String,
    pub drill_id: String,
    pub policy: PolicyInfo,
    /// `schedule`, or `user@host` of whoever ran `cairn drill`.
    pub started_by: String,
    /// `schedule`, `catch-up`, `run-now`, `retry` or `command`.
    pub trigger: String,
    pub tool: ToolInfo,
    pub times: Times,
    /// The seed every random choice of the drill derives from.
    pub seed: u64,
    /// Absent when the drill stopped before a snapshot was chosen.
    pub recovery_point: Option<RecoveryPointInfo>,
    pub repository: RepositoryInfo,
    pub environment: Environment,
    pub scope: Scope,
    /// In the order they ran; phases that did not run are absent.
    pub phases: Vec<Phase>,
    /// From the start of the restore (plan) to the first byte written.
    pub first_byte_s: Option<f64>,
    pub rto: Rto,
    pub rpo: Rpo,
    pub integrity: Integrity,
    pub validation: Option<Validation>,
    pub cleanup: Cleanup,
    pub verdict: Verdict,
    pub warnings: Vec<String>,
    /// Left out of the hashed body; see [`body_blake3`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub name: String,
    pub file: String,
    /// `blake3:<hex>` of the effective policy's canonical JSON.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Times {
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub duration_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryPointInfo {
    /// `latest`, `random` or `id`.
    pub choice: String,
    /// With `random`: the window, in seconds before the drill's start.
    pub window_s: Option<u64>,
    /// Snapshots it was chosen from.
    pub candidates: usize,
    pub snapshot_id: String,
    pub time: DateTime<Utc>,
    pub host: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    /// The root tree id: equal trees hold equal content.
    pub tree: String,
    pub files: u64,
    pub bytes: u64,
    /// Whether it is the policy's newest snapshot.
    pub is_newest: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryInfo {
    /// Where it lives, without credentials.
    pub location: String,
    /// Absent when it could not be opened.
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub host: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: usize,
    pub user: String,
    /// The scratch directory restored into.
    pub target: String,
    pub filesystem: Option<String>,
}

/// What was restored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub others: u64,
    pub bytes: u64,
    pub packs_fetched: u64,
    pub bytes_fetched: u64,
    pub threads: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `open`, `select`, `plan`, `transfer`, `write`, `verify`,
    /// `spot_check`, `validate`, `cleanup`.
    pub name: String,
    /// Offset from the drill's start.
    pub start_s: f64,
    pub duration_s: f64,
    /// Counted in the measured RTO.
    pub in_rto: bool,
    /// Set when the phase failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rto {
    pub objective_s: Option<f64>,
    /// The sum of the phases with `in_rto`.
    pub measured_s: f64,
    /// Absent without an objective, or when an error stopped the drill.
    pub met: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rpo {
    pub objective_s: Option<f64>,
    /// The age judged against the objective: that of the recovery point
    /// when it is the policy's newest snapshot (the usual case), else that
    /// of the newest snapshot; see `judged_on`.
    pub achieved_s: Option<f64>,
    /// The drill's start minus the recovery point's time.
    pub recovery_point_age_s: Option<f64>,
    /// The drill's start minus the policy's newest snapshot's time.
    pub newest_snapshot_age_s: Option<f64>,
    /// `recovery_point`, or `newest_snapshot` when an older snapshot was
    /// drilled (a random or given one): the RPO bounds the data one would
    /// lose now, which the newest snapshot decides.
    pub judged_on: String,
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Integrity {
    /// `full` or `sample`.
    pub method: String,
    /// What was compared for each file: `content` (chunk ids), `size`,
    /// `mode`, `mtime`, and `owner` when the drill ran as root.
    pub compared: Vec<String>,
    pub sample: Option<Sample>,
    pub files_checked: u64,
    pub bytes_checked: u64,
    /// Hard links, symlinks, directories and FIFOs (full method only).
    pub entries_checked: u64,
    /// The number of entries in `mismatched`.
    pub mismatches: u64,
    /// Every entry not restored exactly, from the restore or verification.
    pub mismatched: Vec<Mismatch>,
    pub spot_check: Option<SpotCheck>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// `signed`, or `unsigned` when no evidence record was appended.
    pub status: String,
    /// `blake3:<hex>` of the report body (this report without `evidence`).
    pub report_blake3: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
