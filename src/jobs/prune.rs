//! The prune job: remove the data no snapshot uses any more (`cairn
//! prune`, [`prune`]), and a policy's scheduled forget-and-prune, which the
//! daemon runs ([`policy`]).
//!
//! Prune takes the exclusive lock before it plans (a dry run takes none
//! and changes nothing), so nothing changes between planning and
//! deleting; it tolerates [`crate::prune::gc::DEFAULT_MAX_UNUSED_PERCENT`]
//! unused space in kept packs unless told otherwise. Every prune that is
//! not a dry run appends one `prune` evidence record, failed ones too.

use chrono::{DateTime, Utc};

use crate::evidence::AppendedRecord;
use crate::policy::Policy;
use crate::prune::gc::{self, PrunePlan, PruneReport};
use crate::prune::PolicyPruneReport;
use crate::repo::object_lock::{self, ExtendReport};
use crate::repo::{duties, lock, Repository};

use super::forget::{self, Selection};
use super::open::RepoOptions;
use super::Failed;

/// The share of unused space prune leaves in kept packs rather than
/// repack, unless told otherwise (`--max-unused`).
pub fn default_max_unused() -> f64 {
    gc::DEFAULT_MAX_UNUSED_PERCENT / 100.0
}

/// What a prune did.
#[derive(Debug)]
pub struct Pruned {
    pub plan: PrunePlan,
    /// `None` for a dry run.
    pub report: Option<PruneReport>,
    /// `None` for a dry run, which changes nothing and leaves no evidence.
    pub evidence: Option<crate::Result<AppendedRecord>>,
    /// The Object Lock retention step after the deletions (a repository
    /// with Object Lock, not a dry run).
    pub retention: Option<ExtendReport>,
}

/// Plans under the exclusive lock, shows the plan to `planned`, and
/// (unless `dry_run`) executes it.
fn plan_and_execute(
    repo: &Repository,
    max_unused: f64,
    dry_run: bool,
    planned: &mut dyn FnMut(&PrunePlan),
) -> crate::Result<(PrunePlan, Option<PruneReport>)> {
    // The plan is made under the lock, so nothing changes between plan and deletion.
    let _lock = if dry_run { None } else { Some(lock::acquire(repo, true, "prune")?) };
    let plan = gc::plan(repo, max_unused)?;
    planned(&plan);
    if dry_run {
        return Ok((plan, None));
    }
    let report = gc::execute(repo, &plan)?;
    Ok((plan, Some(report)))
}

/// With Object Lock, keeps the immutable window over what remains.
fn extend_retention(repo: &Repository) -> crate::Result<Option<ExtendReport>> {
    if repo.config().storage.object_lock.is_none() {
        return Ok(None);
    }
    object_lock::extend(repo, Utc::now(), object_lock::ExtendOptions::default()).map(Some)
}

/// Removes unused data from the repository, leaving at most `max_unused`
/// (a share, 0 to 1) unused in kept packs.
pub fn prune(
    repo: &RepoOptions,
    max_unused: f64,
    dry_run: bool,
    planned: &mut dyn FnMut(&PrunePlan),
) -> Result<Pruned, Failed> {
    let repository = repo.open()?;
    if !dry_run {
        // A credential that may not delete fails here, before anything changes.
        duties::probe_repo(&repository, duties::Maintenance::Prune)?;
    }
    let started = std::time::Instant::now();
    let result = plan_and_execute(&repository, max_unused, dry_run, planned);
    if dry_run {
        let (plan, _) = result?;
        return Ok(Pruned { plan, report: None, evidence: None, retention: None });
    }
    let result = result.and_then(|(plan, report)| Ok((plan, report, extend_retention(&repository)?)));
    let done = result.as_ref().map(|(plan, report, _)| (plan, report.as_ref().expect("executed")));
    let payload = crate::evidence::payload::prune(done, started.elapsed());
    let evidence = repo.append_evidence(&repository, "prune", None, payload);
    match result {
        Ok((plan, report, retention)) => Ok(Pruned { plan, report, evidence: Some(evidence), retention }),
        Err(error) => Err(Failed { error, evidence: Some(Box::new(evidence)) }),
    }
}

/// What a policy's scheduled prune did.
#[derive(Debug)]
pub struct PolicyPruned {
    pub report: PolicyPruneReport,
    pub evidence: crate::Result<AppendedRecord>,
}

/// A policy's scheduled prune: forget its snapshots by its retention rules
/// (under a shared lock; skipped when it has no rule), then remove unused
/// data (under the exclusive lock), with the default unused share. One
/// `prune` evidence record covers both.
pub fn policy(repo: &RepoOptions, policy: &Policy, now: DateTime<Utc>) -> Result<PolicyPruned, Failed> {
    let repository = repo.open_maintenance(policy)?;
    // A credential that may not delete fails here, before anything changes.
    if !policy.retention.keep_rules().is_empty() {
        duties::probe_repo(&repository, duties::Maintenance::Forget)?;
    }
    duties::probe_repo(&repository, duties::Maintenance::Prune)?;
    let started = std::time::Instant::now();
    let result = forget_then_prune(&repository, policy, now);
    let payload = crate::evidence::payload::policy_prune(result.as_ref(), started.elapsed());
    let evidence = repo.append_evidence(&repository, "prune", Some(&policy.name), payload);
    match result {
        Ok(report) => Ok(PolicyPruned { report, evidence }),
        Err(error) => Err(Failed { error, evidence: Some(Box::new(evidence)) }),
    }
}

fn forget_then_prune(repo: &Repository, policy: &Policy, now: DateTime<Utc>) -> crate::Result<PolicyPruneReport> {
    let rules = policy.retention.keep_rules();
    let mut report =
        PolicyPruneReport { forgotten: None, removed: Vec::new(), kept: 0, packs_deleted: 0, bytes_freed: 0 };
    if !rules.is_empty() {
        rules.validate()?;
        let selection = Selection { policy: Some(policy.name.clone()), ..Default::default() };
        let (decided, removed, stopped) = forget::apply(repo, &rules, &selection, now, false, &mut |_| {})?;
        if let Some(e) = &decided.unchecked {
            repo.warn(format!(
                "policy `{}`: the evidence could not be checked ({e}): only snapshots dated in the future are held",
                policy.name
            ));
        }
        if let Some(e) = stopped {
            return Err(e);
        }
        report.kept = decided.kept();
        report.forgotten = Some(removed.len());
        report.removed = removed;
    }
    let (_, done) = plan_and_execute(repo, default_max_unused(), false, &mut |_| {})?;
    let done = done.expect("executed");
    extend_retention(repo)?;
    report.packs_deleted = done.packs_deleted as u64;
    report.bytes_freed = done.bytes_freed;
    Ok(report)
}
