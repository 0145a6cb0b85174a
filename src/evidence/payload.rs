//! Payloads of the records cairn itself appends for backups, forgets and
//! prunes.
//!
//! Only facts that are safe to show an auditor: ids, counts, sizes,
//! durations in milliseconds, the outcome and the error message (which
//! never holds a secret; see `crate::error`). Numbers are integers, as
//! canonical JSON requires.

use std::time::Duration;

use serde_json::{json, Value};

use crate::backup::BackupReport;
use crate::error::Error;
use crate::id::Id;
use crate::prune::gc::{PrunePlan, PruneReport};

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// A backup's outcome: `success`, `partial` (some files skipped, exit 3)
/// or `failure` (no snapshot, or the job failed after saving one).
pub fn backup(result: Result<&BackupReport, &Error>, job_error: Option<&Error>, elapsed: Duration) -> Value {
    match result {
        Ok(r) => {
            let s = &r.snapshot.summary;
            let outcome = match (job_error, r.incomplete()) {
                (Some(_), _) => "failure",
                (None, true) => "partial",
                (None, false) => "success",
            };
            json!({
                "outcome": outcome,
                "snapshot": r.snapshot_id.to_hex(),
                "snapshot_time": r.snapshot.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "hostname": r.snapshot.hostname,
                "paths": r.snapshot.paths,
                "files": s.files_total,
                "bytes": s.bytes_total,
                "bytes_added": s.bytes_added,
                "files_skipped": s.skipped.len(),
                "duration_ms": millis(elapsed),
                "error": job_error.map(|e| e.to_string()),
            })
        }
        Err(e) => json!({
            "outcome": "failure",
            "snapshot": null,
            "duration_ms": millis(elapsed),
            "error": e.to_string(),
        }),
    }
}

/// A prune's outcome (dry runs change nothing and get no record).
pub fn prune(result: Result<(&PrunePlan, &PruneReport), &Error>, elapsed: Duration) -> Value {
    match result {
        Ok((plan, r)) => json!({
            "outcome": "success",
            "snapshots": plan.snapshots,
            "packs_deleted": r.packs_deleted,
            "packs_marked": r.packs_marked,
            "packs_written": r.packs_written,
            "bytes_freed": r.bytes_freed,
            "index_files_written": r.index_files_written,
            "index_files_deleted": r.index_files_deleted,
            "duration_ms": millis(elapsed),
            "error": null,
        }),
        Err(e) => json!({
            "outcome": "failure",
            "duration_ms": millis(elapsed),
            "error": e.to_string(),
        }),
    }
}

/// A forget's deletions (dry runs change nothing and get no record):
/// the rules, how many snapshots were kept, and the ids of those deleted;
/// `failure` when deleting stopped at an error.
pub fn forget(rules: &str, kept: usize, removed: &[Id], stopped: Option<&Error>, elapsed: Duration) -> Value {
    json!({
        "outcome": if stopped.is_some() { "failure" } else { "success" },
        "rules": rules,
        "snapshots_kept": kept,
        "snapshots_removed": removed.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
        "duration_ms": millis(elapsed),
        "error": stopped.map(|e| e.to_string()),
    })
}

/// A policy's scheduled forget-and-prune, run by the daemon.
pub fn policy_prune(result: Result<&crate::prune::PolicyPruneReport, &Error>, elapsed: Duration) -> Value {
    match result {
        Ok(r) => json!({
            "outcome": "success",
            "trigger": "daemon",
            "snapshots_forgotten": r.forgotten,
            "snapshots_removed": r.removed.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "snapshots_kept": r.kept,
            "packs_deleted": r.packs_deleted,
            "bytes_freed": r.bytes_freed,
            "duration_ms": millis(elapsed),
        }),
        Err(e) => json!({
            "outcome": "failure",
            "trigger": "daemon",
            "error": e.to_string(),
            "duration_ms": millis(elapsed),
        }),
    }
}
