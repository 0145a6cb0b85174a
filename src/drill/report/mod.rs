//! The drill report: one data structure, written in three forms.
//!
//! - [`json`]: the machine-readable form, schema [`SCHEMA`]
//!   (`docs/DRILLS.md` documents every field). Adding a field is a
//!   compatible change; renaming, removing or changing the meaning of one
//!   bumps the version.
//! - [`markdown`]: for people and tickets.
//! - [`html`]: one self-contained page (inline CSS and an inline SVG chart
//!   of the phases; no scripts, fonts or other external assets) that an
//!   auditor can open anywhere.
//!
//! The report body is hashed for the evidence record: the BLAKE3 of the
//! canonical JSON (keys sorted, no whitespace) of the report *without* its
//! `evidence` member ([`body_blake3`]). An auditor removes `evidence`
//! from `report.json`, canonicalises, hashes, and compares with the
//! signed evidence record.
//!
//! Nothing secret goes into a report: the repository is named by its
//! location (credentials in a URL are masked), the policy by name, file
//! and hash, and the validation command's environment has no passwords.

pub mod chart;
pub mod html;
pub mod json;
pub mod markdown;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::scratch::Cleanup;
use super::spot::SpotCheck;
use super::validate::Validation;
use super::verdict::Verdict;
use super::verify::{Mismatch, Sample};

/// The version tag of the JSON report.
pub const SCHEMA: &str = "cairn.drill-report/1";

/// File names inside `<state>/reports/<drill id>/`.
pub const JSON_FILE: &str = "report.json";
pub const MARKDOWN_FILE: &str = "report.md";
pub const HTML_FILE: &str = "report.html";

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

pub use crate::text::human_bytes;

/// Canonical JSON in the manner of RFC 8785 (JCS), so that any JCS
/// library reproduces it: the evidence chain's form
/// ([`crate::evidence::canonical`]) with numbers in their shortest
/// round-trip form (report numbers are rounded to microseconds, see
/// [`round_floats`], so exponents never occur).
pub fn canonical_json(v: &serde_json::Value) -> Vec<u8> {
    use crate::evidence::canonical::{to_canonical_with, Numbers};
    to_canonical_with(v, Numbers::Shortest).expect("every number has a shortest form")
}

/// Rounds every non-integer number to microseconds (6 decimals), so that
/// what the report says survives any JSON parser exactly and hashes the
/// same after a round trip.
pub fn round_floats(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if !(n.is_u64() || n.is_i64()) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(r) = serde_json::Number::from_f64((x * 1e6).round() / 1e6) {
                *n = r;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(round_floats),
        serde_json::Value::Object(m) => m.values_mut().for_each(round_floats),
        _ => {}
    }
}

/// The report with every float rounded (see [`round_floats`]).
pub fn rounded(r: DrillReport) -> DrillReport {
    let mut v = serde_json::to_value(&r).expect("drill reports serialise");
    round_floats(&mut v);
    serde_json::from_value(v).unwrap_or(r)
}

/// `blake3:<hex>` of the canonical JSON of `v`.
pub fn blake3_of(v: &serde_json::Value) -> String {
    format!("blake3:{}", blake3::hash(&canonical_json(v)).to_hex())
}

/// The hash of a report's body: the report without its `evidence` member.
pub fn body_blake3(report: &serde_json::Value) -> String {
    let mut body = report.clone();
    if let Some(m) = body.as_object_mut() {
        m.remove("evidence");
    }
    blake3_of(&body)
}

/// Masks credentials written into a URL (`https://user:pw@host` →
/// `https://***@host`).
pub fn mask_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c == '/' || c.is_whitespace()).unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Writes `report.json`, `report.md` and `report.html` into `dir`
/// (created); returns their paths.
pub fn write_all(report: &DrillReport, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let forms = [
        (JSON_FILE, json::render(report)),
        (MARKDOWN_FILE, markdown::render(report)),
        (HTML_FILE, html::render(report)),
    ];
    let mut out = Vec::new();
    for (name, text) in forms {
        let path = dir.join(name);
        crate::report::write_file(&path, text.as_bytes())?;
        out.push(path);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
