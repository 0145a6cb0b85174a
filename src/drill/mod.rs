//! Restore drills: prove, on a schedule or on demand, that a policy's data
//! comes back within its recovery objectives, and leave a report an
//! auditor can read.
//!
//! One drill ([`run`]) goes through these steps, in this order:
//!
//! 1. **Target.** The restore goes into an isolated scratch directory,
//!    `<state>/scratch/<drill id>` unless the caller names one. A target
//!    that is not empty, or that lies inside or contains one of the
//!    policy's source paths, is refused before anything is written
//!    ([`scratch`]): a drill never restores over live data.
//! 2. **Open** the repository (through a function the caller gives, as for
//!    backups), take a shared lock so that no prune runs underneath, and
//!    load the index.
//! 3. **Select** the recovery point: the policy's newest snapshot, one
//!    chosen at random within the policy's `random_window`, or a given id
//!    ([`select`]). Everything random in a drill derives from one 64-bit
//!    seed, recorded in the report, so a drill can be replayed.
//! 4. **Restore** it with the restore engine, timing `plan`, `transfer`
//!    (fetch, decrypt, write contents; writes overlap the fetches) with the
//!    time to first byte, and `write` (completing the tree: metadata, hard
//!    links, symlinks, directories).
//! 5. **Verify** every restored file, or a seeded sample ([`verify`]):
//!    re-read from the scratch copy (never from the repository), re-hash
//!    each chunk with the repository's keyed hash and compare it with the
//!    snapshot's chunk ids; compare size, mode, mtime (and owner as root).
//! 6. Optionally **spot-check** live source files against the recovery
//!    point ([`spot`]) and run the policy's **validation** command in the
//!    restored tree with a timeout ([`validate`]).
//! 7. **Clean up** the scratch directory, counting what was removed and
//!    checking that it is gone ([`scratch`]), also after a failure.
//! 8. **Verdict** ([`verdict`]): pass, or fail with every reason; the
//!    kind of failure decides the exit code.
//! 9. **Evidence**: the caller's [`EvidenceSink`] appends a signed record
//!    carrying the hash of the report body; without one the report says
//!    honestly that it is not signed.
//! 10. **Reports** (JSON, Markdown, self-contained HTML) go to
//!     `<state>/reports/<drill id>/` ([`report`]), and the drill is recorded
//!     in the state database with a run row of kind `drill`.
//!
//! Measured RTO is the wall time of open + select + plan + transfer +
//! write + verify + validation: from starting the recovery to data proven
//! usable. Spot-check, cleanup and reporting are not part of it.
//!
//! Inputs the drill refuses are refused before anything is written or
//! recorded ([`DrillError::Refused`]). `crate::jobs::drill` runs drills for
//! `cairn drill` and the daemon: it also checks a snapshot given by id
//! first, and signs the drill into the repository's evidence chain.
//! `docs/DRILLS.md` documents the report schema.

mod assemble;
mod env;
pub mod report;
mod runner;
pub mod scratch;
pub mod select;
mod session;
pub mod spot;
pub mod validate;
pub mod verdict;
pub mod verify;

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::state::Trigger;

pub use report::DrillReport;
pub use runner::run;
pub use verdict::FailureKind;

/// The largest seed: 2^53 - 1, so that the seed is exact in every JSON
/// parser (and in RFC 8785 canonical JSON, which the report hash uses).
pub const MAX_SEED: u64 = crate::evidence::canonical::MAX_SAFE_INTEGER;

/// Which snapshot a drill restores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SnapshotChoice {
    /// What the policy's `[drill] recovery_point` says (latest by default).
    #[default]
    Policy,
    /// The policy's newest snapshot.
    Latest,
    /// One of the policy's snapshots within its `random_window`, chosen
    /// with the drill's seed.
    Random,
    /// A snapshot id or unique prefix; it must be a snapshot of the policy.
    Id(String),
}

impl std::str::FromStr for SnapshotChoice {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match s {
            "latest" => SnapshotChoice::Latest,
            "random" => SnapshotChoice::Random,
            id => SnapshotChoice::Id(id.to_string()),
        })
    }
}

/// How much of the restored data is verified.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VerifyChoice {
    /// Every restored file, plus hard links, symlinks and directories.
    Full,
    /// A seeded sample of this percentage of the files (0 < p ≤ 100).
    Sample(f64),
}

/// Who started a drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartedBy {
    /// The daemon, on the policy's drill schedule.
    Schedule,
    /// A person, as `user@host`.
    User(String),
}

impl StartedBy {
    /// `user@host` of the current process.
    pub fn current_user() -> StartedBy {
        StartedBy::User(format!("{}@{}", crate::host::username(), crate::host::hostname()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            StartedBy::Schedule => "schedule",
            StartedBy::User(u) => u,
        }
    }
}

/// A signed, hash-chained evidence record appended to the repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvidenceRef {
    pub seq: u64,
    pub hash: String,
    pub signature: String,
}

/// Appends a drill's evidence record. The drill runner does not sign
/// anything itself: whoever owns the signing key (the evidence chain)
/// implements this and is passed in [`DrillOptions::evidence`].
pub trait EvidenceSink {
    /// Appends `payload` (kind `drill`) to the repository's evidence chain.
    fn append(&self, repo: &Repository, payload: serde_json::Value) -> Result<EvidenceRef>;
}

/// Why a drill did not run.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// An input the drill refuses (a snapshot id that is not one of the
    /// policy's, a target that is not empty or near live data, a sample
    /// or seed out of range): a usage error. Nothing was recorded.
    #[error(transparent)]
    Refused(Error),
    /// The drill could not start, or could not record its end (the state
    /// database, the scratch directory, the report files).
    #[error(transparent)]
    Failed(Error),
}

impl From<DrillError> for Error {
    fn from(e: DrillError) -> Error {
        match e {
            DrillError::Refused(e) | DrillError::Failed(e) => e,
        }
    }
}

/// What the caller decides about one drill; the policy supplies the rest.
#[derive(Clone)]
pub struct DrillOptions<'a> {
    pub snapshot: SnapshotChoice,
    /// Restore here instead of `<state>/scratch/<drill id>`; it must be
    /// empty or missing, and away from the policy's sources.
    pub target: Option<PathBuf>,
    /// `None`: the policy's `[drill] verify` (full by default).
    pub verify: Option<VerifyChoice>,
    /// Seed for the random choices, at most [`MAX_SEED`]; `None`: a
    /// random seed (recorded).
    pub seed: Option<u64>,
    /// Live source files to compare with the recovery point (0: none).
    pub spot_check: usize,
    /// Worker threads for restore and verification (at least 1).
    pub threads: usize,
    pub started_by: StartedBy,
    pub trigger: Trigger,
    /// The schedule slot the drill runs for, if any.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// 1 for the first try, 2 for the first retry…
    pub attempt: u32,
    /// Signs the drill; `None`: the report says it is not signed.
    pub evidence: Option<&'a dyn EvidenceSink>,
    /// The run already recorded for this drill (the daemon records its
    /// jobs itself); `None`: the drill records its own run.
    pub run_id: Option<i64>,
    /// Whether the validation command's output also becomes log records
    /// (the daemon's); it is kept for the report either way.
    pub child_output: crate::process::OutputTo,
}

impl Default for DrillOptions<'_> {
    fn default() -> Self {
        DrillOptions {
            snapshot: SnapshotChoice::Policy,
            target: None,
            verify: None,
            seed: None,
            spot_check: 0,
            threads: crate::backup::default_threads(),
            started_by: StartedBy::Schedule,
            trigger: Trigger::Schedule,
            scheduled_at: None,
            attempt: 1,
            evidence: None,
            run_id: None,
            child_output: crate::process::OutputTo::Terminal,
        }
    }
}

/// The result of one drill that ran (whatever its verdict).
#[derive(Debug)]
pub struct DrillOutcome {
    pub report: DrillReport,
    /// `<state>/reports/<drill id>`.
    pub report_dir: PathBuf,
    /// `report.json`, `report.md`, `report.html` in `report_dir`.
    pub files: Vec<PathBuf>,
}

impl DrillOutcome {
    pub fn passed(&self) -> bool {
        self.report.verdict.failure_kind.is_none()
    }

    /// The kind of failure that decides the exit code; `None` on a pass.
    pub fn failure_kind(&self) -> Option<FailureKind> {
        self.report.verdict.failure_kind
    }
}

/// Parses `10%`, `10` or `2.5%` into a percentage in (0, 100].
pub fn parse_percent(s: &str) -> std::result::Result<f64, String> {
    let t = s.trim().trim_end_matches('%');
    match t.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!("expected a percentage in (0, 100] like `10%`, found `{s}`")),
    }
}

/// A new drill id: time first (ids sort by start), then the policy and a
/// random suffix: `20261125T013000Z-web-3fa2c1`.
pub fn new_drill_id(policy: &str, started_at: DateTime<Utc>) -> String {
    let suffix: u32 = rand::random::<u32>() & 0xff_ffff;
    format!("{}-{policy}-{suffix:06x}", started_at.format("%Y%m%dT%H%M%SZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_parse_with_or_without_the_sign() {
        assert_eq!(parse_percent("10%"), Ok(10.0));
        assert_eq!(parse_percent("2.5"), Ok(2.5));
        assert_eq!(parse_percent("100%"), Ok(100.0));
        for bad in ["0", "0%", "-1%", "101%", "ten", ""] {
            assert!(parse_percent(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn drill_ids_sort_by_time_and_are_path_safe() {
        let t = DateTime::parse_from_rfc3339("2026-11-25T01:30:00Z").unwrap().with_timezone(&Utc);
        let id = new_drill_id("web", t);
        assert!(id.starts_with("20261125T013000Z-web-"), "{id}");
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{id}");
        let suffix = id.rsplit('-').next().unwrap();
        assert!(suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
}
