//! One drill in progress: what it was asked ([`Settings`]) and everything
//! it has learned so far ([`Drill`]). The runner fills it phase by phase;
//! the assembly turns it into the verdict, the report and the records.

use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::policy::Policy;
use crate::state::State;

use super::report::{Phase, Scope};
use super::scratch::{self, Scratch};
use super::select::{Choice, Chosen};
use super::spot::SpotCheck;
use super::validate::Validation;
use super::verify::{Mismatch, Sample, Verified};
use super::{DrillOptions, VerifyChoice};

/// What the policy and the options decide together.
pub(super) struct Settings {
    pub choice: Choice,
    pub verify: VerifyChoice,
    pub validate: Option<crate::policy::HookCommand>,
}

/// Everything a drill learns while it runs.
pub(super) struct Drill<'a> {
    pub policy: &'a Policy,
    pub opts: &'a DrillOptions<'a>,
    pub state: &'a State,
    pub settings: Settings,
    pub run_id: i64,
    pub drill_id: String,
    pub seed: u64,
    pub clock: Instant,
    pub started_at: DateTime<Utc>,
    pub scratch: Scratch,
    /// Taken before the restore, while the target exists.
    pub environment: super::report::Environment,
    pub phases: Vec<Phase>,
    pub warnings: Vec<String>,
    pub location: String,
    pub repo_id: Option<String>,
    pub chosen: Option<Chosen>,
    pub scope: Scope,
    pub first_byte_s: Option<f64>,
    /// Entries the restore could not reproduce, as snapshot paths.
    pub restore_failures: Vec<Mismatch>,
    pub verified: Option<Verified>,
    pub sample: Option<Sample>,
    pub spot: Option<SpotCheck>,
    pub validation: Option<Validation>,
    pub cleanup: scratch::Cleanup,
}

/// What a phase was doing, as its errors in the verdict say.
pub(super) fn what(phase: &str) -> &'static str {
    match phase {
        "open" => "opening the repository",
        "select" => "choosing the recovery point",
        "plan" => "planning the restore",
        "transfer" => "restoring",
        "verify" => "verifying",
        "spot_check" => "spot-checking the source",
        "validate" => "running the validation command",
        _ => "cleaning up",
    }
}
