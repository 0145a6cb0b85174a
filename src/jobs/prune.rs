//! The prune job: remove the data no snapshot uses any more (`cairn
//! prune`, [`prune`]), and a policy's scheduled forget-and-prune, which the
//! daemon runs ([`policy`]).
//!
//! Prune takes the prune lock before it plans (a dry run takes none and
//! changes nothing): it excludes other prunes, never backups, which the
//! two phases of deletion keep safe ([`crate::prune::marking`]). It
//! tolerates [`crate::prune::gc::DEFAULT_MAX_UNUSED_PERCENT`] unused space
//! in kept packs and waits [`crate::prune::marking::DEFAULT_SAFETY_MARGIN`]
//! before deleting what it marked, unless told otherwise. With no margin,
//! a prune that marked packs runs a second pass, which deletes them at once
//! if no running backup holds them. Every prune that is not a dry run
//! appends one `prune` evidence record, failed ones too.

use chrono::{DateTime, Utc};

use crate::evidence::AppendedRecord;
use crate::policy::Policy;
use crate::prune::gc::{self, Marking, PrunePlan, PruneReport};
use crate::prune::marking::DEFAULT_SAFETY_MARGIN;
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

/// How a prune decides.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// The unused share (0 to 1) to leave in kept packs rather than repack.
    pub max_unused: f64,
    /// How old a mark must be before its packs are deleted.
    pub margin: std::time::Duration,
}

impl Default for PruneOptions {
    /// What `cairn prune` does without flags, and every scheduled prune of
    /// a policy that sets no `prune_safety_margin`.
    fn default() -> PruneOptions {
        PruneOptions { max_unused: default_max_unused(), margin: DEFAULT_SAFETY_MARGIN }
    }
}

/// What a prune did.
#[derive(Debug)]
pub struct Pruned {
    /// The plan of the last pass.
    pub plan: PrunePlan,
    /// `None` for a dry run; the sum of both passes when there were two.
    pub report: Option<PruneReport>,
    /// `None` for a dry run, which changes nothing and leaves no evidence.
    pub evidence: Option<crate::Result<AppendedRecord>>,
    /// The Object Lock retention step after the deletions (a repository
    /// with Object Lock, not a dry run).
    pub retention: Option<ExtendReport>,
}

/// Plans under the prune lock, shows the plan to `planned`, and (unless
/// `dry_run`) executes it; with no margin, a pass that marked packs is
/// followed by a second one, which deletes them if no backup holds them.
fn plan_and_execute(
    repo: &Repository,
    opts: &PruneOptions,
    dry_run: bool,
    planned: &mut dyn FnMut(&PrunePlan),
) -> crate::Result<(PrunePlan, Option<PruneReport>)> {
    // Prunes exclude each other: two at once would each mark and delete
    // on what the other changes.
    let _lock = if dry_run { None } else { Some(lock::acquire_prune(repo)?) };
    let mut total: Option<PruneReport> = None;
    loop {
        // The locks are listed (with the marks) before the walk.
        let marking = Marking::read(repo, opts.margin)?;
        let plan = gc::plan(repo, opts.max_unused, &marking)?;
        planned(&plan);
        if dry_run {
            return Ok((plan, None));
        }
        let report = gc::execute(repo, &plan)?;
        let again = total.is_none() && opts.margin.is_zero() && report.packs_marked > 0;
        total = Some(match total {
            None => report,
            Some(first) => add_reports(first, report),
        });
        if !again {
            return Ok((plan, total));
        }
    }
}

/// The report of two passes.
fn add_reports(a: PruneReport, b: PruneReport) -> PruneReport {
    let mut litter = a.litter;
    litter.temporaries.extend(b.litter.temporaries);
    litter.failed.extend(b.litter.failed);
    PruneReport {
        packs_deleted: a.packs_deleted + b.packs_deleted,
        packs_marked: a.packs_marked + b.packs_marked,
        marks_removed: a.marks_removed + b.marks_removed,
        suspicious_marks_removed: a.suspicious_marks_removed + b.suspicious_marks_removed,
        packs_written: a.packs_written + b.packs_written,
        bytes_freed: a.bytes_freed + b.bytes_freed,
        index_files_written: a.index_files_written + b.index_files_written,
        index_files_deleted: a.index_files_deleted + b.index_files_deleted,
        litter,
    }
}

/// With Object Lock, keeps the immutable window over what remains.
fn extend_retention(repo: &Repository) -> crate::Result<Option<ExtendReport>> {
    if repo.config().storage.object_lock.is_none() {
        return Ok(None);
    }
    object_lock::extend(repo, Utc::now(), object_lock::ExtendOptions::default()).map(Some)
}

/// Removes unused data from the repository as `opts` say.
pub fn prune(
    repo: &RepoOptions,
    opts: &PruneOptions,
    dry_run: bool,
    planned: &mut dyn FnMut(&PrunePlan),
) -> Result<Pruned, Failed> {
    let repository = repo.open()?;
    if !dry_run {
        // A credential that may not delete fails here, before anything changes.
        duties::probe_repo(&repository, duties::Maintenance::Prune)?;
    }
    let started = std::time::Instant::now();
    let result = plan_and_execute(&repository, opts, dry_run, planned);
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
/// data (under the prune lock), with the default unused share and the
/// policy's safety margin (`[retention] prune_safety_margin`, else the
/// default). One `prune` evidence record covers both.
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
    let opts = PruneOptions { margin: policy.retention.prune_safety_margin(), ..PruneOptions::default() };
    let (_, done) = plan_and_execute(repo, &opts, false, &mut |_| {})?;
    let done = done.expect("executed");
    extend_retention(repo)?;
    report.packs_deleted = done.packs_deleted as u64;
    report.bytes_freed = done.bytes_freed;
    Ok(report)
}
