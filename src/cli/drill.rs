//! `cairn drill --policy NAME`: one restore drill, now. The work is in
//! [`crate::drill`]; this file parses the options, prints the outcome and
//! maps the verdict to an exit code.

use std::path::PathBuf;

use crate::drill::{self, DrillError, DrillOptions, FailureKind, SnapshotChoice, StartedBy, VerifyChoice};
use crate::error::Result;
use crate::state::{self, State, Trigger};
use crate::{jobs, policy};

use super::output::Printer;
use super::policy::PoliciesDir;
use super::{repo_options, GlobalArgs, EXIT_ERROR, EXIT_INTEGRITY, EXIT_OBJECTIVES, EXIT_OK, EXIT_USAGE};

#[derive(clap::Args, Debug)]
pub struct DrillArgs {
    /// The policy to drill
    #[arg(long, value_name = "NAME")]
    pub policy: String,
    #[command(flatten)]
    pub policies: PoliciesDir,
    /// Snapshot to restore: an id prefix of one of the policy's snapshots, `latest`, or `random`
    /// (within the policy's random_window). Default: the policy's [drill] recovery_point
    #[arg(long, value_name = "ID|latest|random")]
    pub snapshot: Option<SnapshotChoice>,
    /// Restore into this empty directory instead of <state>/scratch/<drill id>
    #[arg(long, value_name = "DIR")]
    pub target: Option<PathBuf>,
    /// Verify a seeded sample of this share of the files (e.g. 10%) instead of the policy's setting
    #[arg(long, value_name = "P%", value_parser = drill::parse_percent)]
    pub sample: Option<f64>,
    /// Verify every file, whatever the policy's [drill] verify says
    #[arg(long, conflicts_with = "sample")]
    pub full: bool,
    /// Seed for the random choices (recovery point, sample, spot-check), 0 to 2^53-1; default: a
    /// random seed. Either way it is recorded in the report
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(..=drill::MAX_SEED))]
    pub seed: Option<u64>,
    /// Also compare N live source files with the recovery point (files changed since are not failures)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub spot_check: usize,
    /// State directory: database, reports and scratch space
    /// (default: CAIRN_STATE_DIR, else /var/lib/cairn as root, ~/.local/state/cairn otherwise)
    #[arg(long = "state", value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Restore from the policy's [copy] repository (the off-site copy) instead of its own
    #[arg(long)]
    pub from_copy: bool,
    /// Drill the repository as it was at TIME (see `restore --as-of`); the drill is then not
    /// signed, since the past cannot be written to
    #[command(flatten)]
    pub at: super::AsOfArg,
}

/// The exit code for a verdict.
pub fn exit_code(kind: Option<FailureKind>) -> i32 {
    match kind {
        None => EXIT_OK,
        Some(FailureKind::Objectives) => EXIT_OBJECTIVES,
        Some(FailureKind::Integrity | FailureKind::Validation) => EXIT_INTEGRITY,
        Some(FailureKind::Error) => EXIT_ERROR,
    }
}

/// Refuses an input of the drill: a usage error, and nothing recorded.
fn refused(e: &crate::Error, p: &Printer) -> i32 {
    p.error(e);
    EXIT_USAGE
}

pub fn run(g: &GlobalArgs, a: &DrillArgs, p: &Printer) -> Result<i32> {
    let pol = match policy::find(&a.policies.dir, &a.policy) {
        Ok(pol) => pol,
        Err(e) => return Ok(refused(&e, p)),
    };
    let state = State::open(&state::resolve_dir(a.state.as_deref()))?;
    // Signed with the key of the state directory the drill is recorded in.
    let repo =
        crate::jobs::RepoOptions { evidence_state: Some(state.dir().to_path_buf()), ..repo_options(&a.at.apply(g)) };
    let opts = DrillOptions {
        snapshot: a.snapshot.clone().unwrap_or_default(),
        target: a.target.clone(),
        verify: match (a.full, a.sample) {
            (true, _) => Some(VerifyChoice::Full),
            (_, Some(pct)) => Some(VerifyChoice::Sample(pct)),
            _ => None,
        },
        seed: a.seed,
        spot_check: a.spot_check,
        threads: repo.threads(),
        started_by: StartedBy::current_user(),
        trigger: Trigger::Command,
        scheduled_at: None,
        attempt: 1,
        evidence: None,
        run_id: None,
        child_output: crate::process::OutputTo::Terminal,
    };
    let run = if a.from_copy {
        p.info(format!("drilling policy `{}` from its copy", pol.name));
        jobs::drill::from_copy(&repo, &pol, &state, &opts)
    } else {
        p.info(format!("drilling policy `{}`", pol.name));
        jobs::drill::drill(&repo, &pol, &state, &opts)
    };
    let out = match run {
        Ok(out) => out,
        Err(DrillError::Refused(e)) => return Ok(refused(&e, p)),
        Err(DrillError::Failed(e)) => return Err(e),
    };
    let r = &out.report;
    if p.json {
        p.json(r);
    } else {
        p.data(out.report_dir.display().to_string());
    }
    print_summary(r, p);
    Ok(exit_code(out.failure_kind()))
}

fn print_summary(r: &drill::DrillReport, p: &Printer) {
    use crate::text::{human_bytes, human_duration, human_duration_against};
    let opt = |v: Option<f64>| v.map(human_duration).unwrap_or_else(|| "none".into());
    let met = |m: Option<bool>| match m {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not judged",
    };
    p.info(format!("drill {}: {}", r.drill_id, r.verdict.result.to_uppercase()));
    if let Some(rp) = &r.recovery_point {
        p.info(format!(
            "  recovery point {} ({}, {}), {} files, {}",
            &rp.snapshot_id[..8],
            rp.time.format("%Y-%m-%d %H:%M:%S UTC"),
            rp.choice,
            rp.files,
            human_bytes(rp.bytes)
        ));
    }
    p.info(format!(
        "  RTO {} (objective {}): {}; first byte after {}",
        human_duration_against(r.rto.measured_s, r.rto.objective_s),
        opt(r.rto.objective_s),
        met(r.rto.met),
        opt(r.first_byte_s)
    ));
    let achieved = r.rpo.achieved_s.map(|a| human_duration_against(a, r.rpo.objective_s));
    p.info(format!(
        "  RPO {} (objective {}): {}",
        achieved.unwrap_or_else(|| "none".into()),
        opt(r.rpo.objective_s),
        met(r.rpo.met)
    ));
    let i = &r.integrity;
    p.info(format!(
        "  integrity ({}): {} files ({}) checked, {} mismatch(es)",
        i.method,
        i.files_checked,
        human_bytes(i.bytes_checked),
        i.mismatches
    ));
    if let Some(sp) = &i.spot_check {
        p.info(format!(
            "  spot-check of live files: {} of {} looked at, {} match, {} changed since, {} gone, {} unreadable, {} \
             mismatched{}",
            sp.checked,
            sp.requested,
            sp.matched,
            sp.changed_since.len(),
            sp.gone.len(),
            sp.unreadable.len(),
            sp.mismatched.len(),
            sp.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
        ));
    }
    if let Some(v) = &r.validation {
        p.info(format!(
            "  validation `{}`: {} ({})",
            v.command,
            if v.passed { "passed" } else { v.error.as_deref().unwrap_or("failed") },
            human_duration(v.duration_s)
        ));
    }
    let c = &r.cleanup;
    p.info(format!(
        "  cleanup: {} {} ({} files, {}), {}",
        c.action,
        c.path,
        c.files_removed,
        human_bytes(c.bytes_removed),
        if c.verified { "checked gone" } else { "STILL THERE" }
    ));
    if let Some(e) = &r.evidence {
        p.info(format!("  evidence: {}", e.note.as_deref().unwrap_or(&e.status)));
    }
    for w in &r.warnings {
        p.warn(w);
    }
    for issue in &r.verdict.issues {
        p.warn(&issue.message);
    }
}
