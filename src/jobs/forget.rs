//! The forget job: apply retention rules and delete the snapshots they
//! forget (`cairn forget`, with or without `--policy`). Only snapshot
//! objects are deleted; the data they referenced stays until a prune.
//!
//! The sequence, which the daemon's policy prune runs too ([`apply`]):
//! take a shared lock (none for a dry run: forget may run beside backups,
//! not during a prune), list the snapshots, keep those the selection names
//! (a policy's own, `--host`, `--tag`), apply the rules, delete what they
//! forget. The rules are checked before the repository is opened.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::evidence::AppendedRecord;
use crate::id::Id;
use crate::policy::Policy;
use crate::prune::retention::{self, Decision, KeepRules, SnapshotRef};
use crate::repo::{duties, lock, Repository};

use super::open::RepoOptions;
use super::Failed;

/// Which snapshots the rules apply to.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only the snapshots a policy took (its `policy` field).
    pub policy: Option<String>,
    /// Only these hosts' (all when empty).
    pub hosts: Vec<String>,
    /// Only those with one of these tags, or comma-separated tag lists
    /// (all when empty).
    pub tags: Vec<String>,
}

impl Selection {
    fn selects(&self, s: &SnapshotRef) -> bool {
        (self.policy.is_none() || s.policy == self.policy)
            && (self.hosts.is_empty() || self.hosts.contains(&s.host))
            && (self.tags.is_empty() || self.tags.iter().any(|t| s.has_tags(t)))
    }
}

/// What retention decided, before anything is deleted.
#[derive(Debug, Clone)]
pub struct Decided {
    pub rules: KeepRules,
    pub now: DateTime<Utc>,
    /// The selected snapshots.
    pub snapshots: Vec<SnapshotRef>,
    /// One per selected snapshot, grouped.
    pub decisions: Vec<Decision>,
    /// The snapshots that cannot be read, with why: the rules neither keep
    /// nor forget them (their time, host and policy are unknown).
    pub unreadable: Vec<(Id, String)>,
    /// Why the evidence could not be checked, when it could not: then only
    /// the snapshots dated in the future were held out of retention.
    pub unchecked: Option<String>,
}

impl Decided {
    /// The snapshots the rules forget.
    pub fn forgotten(&self) -> Vec<Id> {
        self.decisions.iter().filter(|d| !d.is_kept()).map(|d| d.id).collect()
    }

    pub fn kept(&self) -> usize {
        self.decisions.iter().filter(|d| d.is_kept()).count()
    }
}

/// How a forget went, once retention decided.
#[derive(Debug)]
pub struct Forgotten {
    pub decided: Decided,
    /// The snapshots deleted (none in a dry run).
    pub removed: Vec<Id>,
    /// Deleting stopped at this error, after `removed`.
    pub stopped: Option<Error>,
    /// The evidence record of the deletions; `None` for a dry run.
    pub evidence: Option<Result<AppendedRecord>>,
}

/// The rules of `policy`, refused when it has none (it keeps everything,
/// so there is nothing to forget) or they could keep nothing.
pub fn policy_rules(policy: &Policy) -> Result<KeepRules> {
    let rules = policy.retention.keep_rules();
    if rules.is_empty() {
        return Err(Error::NoRetentionRule { policy: policy.name.clone(), file: policy.file.clone() });
    }
    rules.validate()?;
    Ok(rules)
}

/// Lock, list, select, decide; `decided` sees the decisions before
/// anything is deleted; then delete (not in a dry run). Returns the
/// decisions, the snapshots removed, and the error deleting stopped at.
pub(crate) fn apply(
    repo: &Repository,
    rules: &KeepRules,
    selection: &Selection,
    now: DateTime<Utc>,
    dry_run: bool,
    decided: &mut dyn FnMut(&Decided),
) -> Result<(Decided, Vec<Id>, Option<Error>)> {
    // A shared lock: forget runs beside backups and prunes (a prune skips a
    // snapshot forgotten while it walks), and waits for an older build's prune.
    let _lock = if dry_run { None } else { Some(lock::acquire(repo, false, lock::FORGET_PURPOSE)?) };
    let list = repo.list_snapshots()?;
    let unreadable = list.damaged.iter().map(|(id, e)| (*id, e.to_string())).collect();
    // Snapshots the evidence does not vouch for (dated in the future, of a
    // host other than their signer's, recorded nowhere) stay out of
    // retention: forged snapshots cannot push real ones out.
    let (held, unchecked) = crate::evidence::check::held_snapshots(repo, &list.snapshots, now);
    let snapshots: Vec<SnapshotRef> =
        list.snapshots.iter().map(|(id, s)| SnapshotRef::new(*id, s)).filter(|s| selection.selects(s)).collect();
    let decisions = retention::apply_holding(&snapshots, rules, now, &held)?;
    let d = Decided {
        rules: rules.clone(),
        now,
        snapshots,
        decisions,
        unreadable,
        unchecked: unchecked.map(|e| e.to_string()),
    };
    decided(&d);
    if dry_run {
        return Ok((d, Vec::new(), None));
    }
    let (removed, stopped) = match crate::prune::delete_snapshots(repo, &d.forgotten()) {
        Ok(removed) => (removed, None),
        Err((n, e)) => (d.forgotten()[..n].to_vec(), Some(e)),
    };
    Ok((d, removed, stopped))
}

/// Applies `rules` to the snapshots `selection` names in the repository
/// (with `policy`: in its repository, and only its snapshots) and deletes
/// those they forget; appends one `forget` evidence record unless it is a
/// dry run.
pub fn forget(
    repo: &RepoOptions,
    policy: Option<&Policy>,
    rules: &KeepRules,
    selection: &Selection,
    dry_run: bool,
    decided: &mut dyn FnMut(&Decided),
) -> Result<Forgotten, Failed> {
    // Checked before the repository is opened: a forget without rules
    // fails fast and touches nothing.
    rules.validate()?;
    let repository = match policy {
        Some(p) => repo.open_maintenance(p)?,
        None => repo.open()?,
    };
    if !dry_run {
        // A credential that may not delete fails here, before anything changes.
        duties::probe_repo(&repository, duties::Maintenance::Forget)?;
    }
    let mut selection = selection.clone();
    if let Some(p) = policy {
        selection.policy = Some(p.name.clone());
    }
    let started = std::time::Instant::now();
    let (decided, removed, stopped) = apply(&repository, rules, &selection, Utc::now(), dry_run, decided)?;
    let evidence = (!dry_run).then(|| {
        let payload = crate::evidence::payload::forget(
            &decided.rules.to_string(),
            decided.kept(),
            &removed,
            stopped.as_ref(),
            started.elapsed(),
        );
        repo.append_evidence(&repository, "forget", policy.map(|p| p.name.as_str()), payload)
    });
    Ok(Forgotten { decided, removed, stopped, evidence })
}
