//! The copy job: snapshots of one repository copied into another, which
//! has its own password, key and chunker seed (`cairn copy`, [`copy`]).
//!
//! Order: open the source, then the destination (each with its own
//! password source); choose the snapshots (the ones named, else all),
//! leaving out the ones the evidence check of the source flags (a
//! snapshot nobody recorded must not become a recorded one in the copy);
//! copy them ([`crate::copy::run`], which leaves out the ones the
//! destination holds already); then one `copy` evidence record in each
//! repository, a failed copy's too. The destination's record lists the
//! snapshots it wrote (`snapshots_written`), which is what its evidence
//! check takes as their record: the ones a copy stopped before its record
//! had written, and this one re-derived exactly, among them (also under
//! `resumed`).

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::copy::{CopyProgress, CopyReport};
use crate::error::{Error, Result};
use crate::evidence::AppendedRecord;
use crate::id::Id;
use crate::policy::Policy;
use crate::repo::{by_id_prefix, Repository, Snapshot};
use crate::state::{JobKind, State};

use super::open::RepoOptions;
use super::record::{record_command_run, RunSummary};

/// Where a policy's copy point is kept among the daemon's values in the
/// state (followed by the policy's name), as a [`CopyPoint`]: what
/// `cairn status` reads for the copy's lag.
pub const COPY_KEY_PREFIX: &str = "copy:";

/// What to copy.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Snapshots by id prefix or `latest`; empty: every snapshot.
    pub snapshots: Vec<String>,
    /// Only the snapshots of this policy (a policy's scheduled copy).
    pub policy: Option<String>,
}

/// How a copy went.
#[derive(Debug, Default)]
pub struct CopyJob {
    /// What was copied, also when the copy failed part way.
    pub report: CopyReport,
    /// Why the copy failed; `None` when it succeeded.
    pub error: Option<Error>,
    /// Snapshots of the source left out, with why (flagged by its evidence check).
    pub held: Vec<(Id, String)>,
    /// The source's `copy` record, or why it could not be appended;
    /// `None` when the source was not opened.
    pub evidence_from: Option<Result<AppendedRecord>>,
    /// The destination's `copy` record; `None` when it was not opened.
    pub evidence_to: Option<Result<AppendedRecord>>,
    /// The source and destination repository ids, once opened.
    pub from_id: Option<Id>,
    pub to_id: Option<Id>,
    /// The destination's location, once opened.
    pub to_url: Option<String>,
    /// Why a command's copy could not be recorded in the state.
    pub unrecorded: Option<Error>,
}

/// How far a policy's copy has come: the newest of its snapshots the
/// copy holds. Its age is the copy's lag, an RPO of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyPoint {
    /// The copy's repository.
    pub to: String,
    /// The snapshot in the copy.
    pub snapshot: String,
    /// Its time (the backup's).
    pub time: DateTime<Utc>,
    /// When the copy that found or made it ended.
    pub checked_at: DateTime<Utc>,
}

impl CopyJob {
    /// The newest snapshot this copy made or found in the destination.
    pub fn copy_point(&self) -> Option<CopyPoint> {
        let r = &self.report;
        let newest = r.copied.iter().chain(&r.resumed).chain(&r.present).max_by_key(|c| c.time)?;
        Some(CopyPoint {
            to: self.to_url.clone().unwrap_or_default(),
            snapshot: newest.snapshot.to_hex(),
            time: newest.time,
            checked_at: Utc::now(),
        })
    }
}

impl CopyJob {
    /// How the run row records this copy.
    pub fn summary(&self) -> RunSummary {
        let r = &self.report;
        match &self.error {
            None => RunSummary {
                ok: true,
                snapshot_id: r.copied.last().map(|c| c.snapshot.to_hex()),
                bytes: Some(r.stored.stored_bytes),
                ..Default::default()
            },
            Some(e) => RunSummary::failed(e.to_string()),
        }
    }

    /// Records in `state` how far the copy of `policy` has come (the
    /// newest snapshot it made or found), for its lag in `cairn status`;
    /// nothing when it found none.
    pub fn record_point(&self, policy: &str, state: &State) -> Result<()> {
        let Some(point) = self.copy_point() else { return Ok(()) };
        let text = serde_json::to_string(&point).expect("a copy point serialises");
        state.set_daemon_value(&format!("{COPY_KEY_PREFIX}{policy}"), Some(&text))
    }
}

/// A policy's copy into its `[copy]` repository: every snapshot of the
/// policy the copy lacks. The daemon records its run and point itself
/// (`record_in` is `None`); a command (`cairn copy --policy`) names the
/// state directory, where the run and the copy's point are recorded once
/// it is over.
pub fn policy(repo: &RepoOptions, policy: &Policy, progress: &dyn CopyProgress, record_in: Option<&Path>) -> CopyJob {
    let (started, started_at) = (Instant::now(), Utc::now());
    let mut out = match repo.for_copy(policy) {
        None => {
            let e = Error::NoCopySection { policy: policy.name.clone(), consequence: "it copies nowhere" };
            CopyJob { error: Some(e), ..Default::default() }
        }
        Some(to) => {
            let opts = CopyOptions { snapshots: Vec::new(), policy: Some(policy.name.clone()) };
            copy(&repo.for_policy(policy), &to, &opts, progress)
        }
    };
    if let Some(dir) = record_in {
        let summary = out.summary();
        let name = policy.name.as_str();
        out.unrecorded = record_command_run(dir, name, JobKind::Copy, started_at, started.elapsed(), &summary)
            .and_then(|()| State::open(dir))
            .and_then(|state| out.record_point(name, &state))
            .err();
    }
    out
}

/// Copies snapshots from the repository `from` opens into the one `to`
/// opens, and records the copy in both.
pub fn copy(from: &RepoOptions, to: &RepoOptions, opts: &CopyOptions, progress: &dyn CopyProgress) -> CopyJob {
    let started = Instant::now();
    let mut job = CopyJob::default();
    let policy = opts.policy.as_deref();
    let src = match from.open() {
        Ok(r) => r,
        Err(e) => {
            job.error = Some(e);
            return job;
        }
    };
    job.from_id = Some(src.id());
    let dst = match to.open() {
        Ok(r) => r,
        Err(e) => {
            let payload = payload_from(&job.report, None, Some(&e), started.elapsed());
            job.evidence_from = Some(from.append_evidence(&src, "copy", policy, payload));
            job.error = Some(e);
            return job;
        }
    };
    job.to_id = Some(dst.id());
    job.to_url = Some(dst.backend().location());
    let unrecorded = |snapshots: &[(Id, Snapshot)]| unrecorded_in(&dst, snapshots);
    let result = choose(&src, opts, &mut job.held).and_then(|chosen| {
        crate::copy::run(&src, &dst, &chosen, from.threads(), &unrecorded, progress, &mut job.report)
    });
    job.error = result.err();
    let elapsed = started.elapsed();
    let out = payload_from(&job.report, Some(dst.id()), job.error.as_ref(), elapsed);
    let inn = payload_to(&job.report, src.id(), job.error.as_ref(), elapsed);
    job.evidence_from = Some(from.append_evidence(&src, "copy", policy, out));
    job.evidence_to = Some(to.append_evidence(&dst, "copy", policy, inn));
    job
}

/// The snapshots to copy, oldest first: the ones named (each once), else
/// all (of the policy, if one is given); without the ones the source's
/// evidence check flags, which go to `held` (naming one is an error).
fn choose(src: &Repository, opts: &CopyOptions, held: &mut Vec<(Id, String)>) -> Result<Vec<(Id, Snapshot)>> {
    let list = src.list_snapshots()?;
    if opts.snapshots.iter().any(|s| s == "latest") {
        list.complete()?;
    }
    let all = list.snapshots;
    let (flagged, unchecked) = crate::evidence::check::held_snapshots(src, &all, Utc::now());
    if let Some(e) = unchecked {
        return Err(e);
    }
    let mut chosen: Vec<(Id, Snapshot)> = if opts.snapshots.is_empty() {
        all.into_iter().filter(|(_, s)| opts.policy.is_none() || s.policy == opts.policy).collect()
    } else {
        let mut ids = Vec::new();
        for spec in &opts.snapshots {
            let id = if spec == "latest" {
                all.iter()
                    .rev()
                    .find(|(id, _)| !flagged.contains_key(id))
                    .ok_or_else(|| Error::SnapshotNotFound(spec.clone()))?
                    .0
            } else {
                by_id_prefix(&all, |s| s.0, spec)?.0
            };
            if let Some(why) = flagged.get(&id) {
                return Err(Error::SnapshotHeld { snapshot: id.short(), why: why.to_string() });
            }
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        all.into_iter().filter(|(id, _)| ids.contains(id)).collect()
    };
    chosen.retain(|(id, _)| match flagged.get(id) {
        Some(why) => {
            held.push((*id, why.clone()));
            false
        }
        None => true,
    });
    chosen.sort_by_key(|(_, s)| s.time);
    Ok(chosen)
}

/// The snapshots of `snapshots` (the destination's) that its evidence
/// check finds no record of.
fn unrecorded_in(dst: &Repository, snapshots: &[(Id, Snapshot)]) -> Result<HashSet<Id>> {
    use crate::evidence::check::{check_repository, Flag, SnapshotInfo};
    let infos: Vec<SnapshotInfo> = snapshots.iter().map(|(id, s)| SnapshotInfo::of(*id, s)).collect();
    let checked = check_repository(dst, &infos, None, Utc::now())?;
    Ok(checked.flagged.into_iter().filter(|(_, f)| *f == Flag::Unrecorded).map(|(id, _)| id).collect())
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

fn outcome(e: Option<&Error>) -> &'static str {
    if e.is_some() {
        "failure"
    } else {
        "success"
    }
}

/// The source's record: which snapshots went where.
fn payload_from(r: &CopyReport, to: Option<Id>, e: Option<&Error>, elapsed: Duration) -> Value {
    json!({
        "outcome": outcome(e),
        "to": to.map(|id| id.to_hex()),
        "snapshots_copied": r.copied.iter().map(|c| c.source.to_hex()).collect::<Vec<_>>(),
        "snapshots_resumed": r.resumed.iter().map(|c| c.source.to_hex()).collect::<Vec<_>>(),
        "snapshots_present": r.present.iter().map(|c| c.source.to_hex()).collect::<Vec<_>>(),
        "duration_ms": millis(elapsed),
        "error": e.map(|e| e.to_string()),
    })
}

/// The destination's record: the snapshots it wrote (which its evidence
/// check takes as their record, a failed copy's finished ones too), each
/// with the one it copies; a stopped copy's that this one re-derived are
/// among them, and named again under `resumed`.
fn payload_to(r: &CopyReport, from: Id, e: Option<&Error>, elapsed: Duration) -> Value {
    let written: Vec<&crate::copy::Copied> = r.copied.iter().chain(&r.resumed).collect();
    json!({
        "outcome": outcome(e),
        "from": from.to_hex(),
        "snapshots_written": written.iter().map(|c| c.snapshot.to_hex()).collect::<Vec<_>>(),
        "sources": written.iter().map(|c| c.source.to_hex()).collect::<Vec<_>>(),
        "resumed": r.resumed.iter().map(|c| c.snapshot.to_hex()).collect::<Vec<_>>(),
        "newest_snapshot_time": written.iter().map(|c| c.time).max()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        "files": r.counts.files,
        "bytes": r.counts.bytes,
        "chunks_added": r.counts.chunks_added,
        "bytes_added": r.stored.stored_bytes,
        "packs_added": r.stored.packs,
        "packs_adopted": r.adopted_packs as u64,
        "rechunked": r.rechunked,
        "duration_ms": millis(elapsed),
        "error": e.map(|e| e.to_string()),
    })
}
