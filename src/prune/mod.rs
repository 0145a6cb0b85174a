//! Removing what is no longer wanted, in two separate steps.
//!
//! - [`retention`] decides which snapshots to keep: a pure function of the
//!   snapshots and "now", with a reason for every decision. `cairn forget`
//!   applies it and deletes only the snapshot objects it forgets; data stays.
//! - Garbage collection (`cairn prune`) later removes the data that no
//!   remaining snapshot references.
//!
//! See `docs/RETENTION.md` for the retention rules and how they differ
//! from restic's.

pub mod gc;
pub mod retention;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::{lock, Repository};

/// Deletes snapshot objects; one already gone (a concurrent forget) counts
/// as removed. On an error, says how many were removed before it.
pub fn delete_snapshots(repo: &Repository, ids: &[Id]) -> std::result::Result<Vec<Id>, (usize, Error)> {
    let mut removed = Vec::with_capacity(ids.len());
    for id in ids {
        match repo.backend().delete(&format!("snapshots/{id}")) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err((removed.len(), e.into())),
        }
        removed.push(*id);
    }
    Ok(removed)
}

/// What a policy's scheduled prune did.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyPruneReport {
    /// `None` when the policy has no retention rule (every snapshot is kept).
    pub forgotten: Option<usize>,
    /// The snapshots forgotten (removed), for the evidence record.
    pub removed: Vec<Id>,
    pub kept: usize,
    pub packs_deleted: u64,
    pub bytes_freed: u64,
}

/// The share of unused data a scheduled prune leaves in place rather than
/// repack (as `cairn prune`'s default `--max-unused 5%`).
pub const POLICY_MAX_UNUSED: f64 = 0.05;

/// A policy's scheduled prune: forget its snapshots by its retention rules
/// (under a shared lock), then remove unused data (under an exclusive one).
/// The snapshots of `held` stay out of retention (the evidence check
/// flagged them; see [`retention::apply_holding`]).
pub fn run_for_policy(
    repo: &Repository,
    policy: &crate::policy::Policy,
    now: DateTime<Utc>,
    held: &std::collections::BTreeMap<Id, String>,
) -> Result<PolicyPruneReport> {
    let rules = retention::KeepRules::from_policy(&policy.retention);
    let mut report =
        PolicyPruneReport { forgotten: None, removed: Vec::new(), kept: 0, packs_deleted: 0, bytes_freed: 0 };
    if !rules.is_empty() {
        rules.validate()?;
        let _lock = lock::acquire(repo, false, "forget")?;
        let snapshots: Vec<retention::SnapshotRef> = repo
            .list_snapshots()?
            .iter()
            .map(|(id, s)| retention::SnapshotRef::new(*id, s))
            .filter(|s| s.policy.as_deref() == Some(policy.name.as_str()))
            .collect();
        let decisions = retention::apply_holding(&snapshots, &rules, now, held)?;
        let forget: Vec<Id> = decisions.iter().filter(|d| !d.is_kept()).map(|d| d.id).collect();
        report.kept = decisions.len() - forget.len();
        report.removed = delete_snapshots(repo, &forget).map_err(|(_, e)| e)?;
        report.forgotten = Some(report.removed.len());
    }
    let _lock = lock::acquire(repo, true, "prune")?;
    let plan = gc::plan(repo, POLICY_MAX_UNUSED)?;
    let done = gc::execute(repo, &plan)?;
    report.packs_deleted = done.packs_deleted as u64;
    report.bytes_freed = done.bytes_freed;
    Ok(report)
}
