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
mod index_rewrite;
pub mod marking;
pub mod retention;

use serde::Serialize;

use crate::error::Error;
use crate::id::Id;
use crate::repo::Repository;

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
        crate::failpoint::hit!("forget::snapshot_deleted");
        removed.push(*id);
    }
    Ok(removed)
}

/// What a policy's scheduled prune (forget by its rules, then prune) did.
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
