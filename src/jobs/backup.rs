//! The backup job: one backup of a policy, hooks included, as `cairn
//! backup --policy` and the daemon run it ([`policy`]), and a backup of
//! paths or standard input (`cairn backup`, [`paths`]).
//!
//! Order for a policy: the `before` hook (a failure stops the job); open
//! the repository (after the hook, which may be what makes it reachable);
//! the backup, tagged with the policy's name and recording it; then the
//! `after` hook on success, or `on_failure` on any failure (`before`,
//! opening, the backup, the source command, or `after` itself). Every hook
//! gets `CAIRN_POLICY`; `after` gets `CAIRN_SNAPSHOT` (the new snapshot's
//! id); `on_failure` gets `CAIRN_ERROR` (the error message, which never
//! holds a secret) and `CAIRN_SNAPSHOT` when a snapshot was saved before
//! the failure. Then one evidence record of the outcome (when the
//! repository was opened), and, for a command, the run in the state.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::backend::discard::Discarding;
use crate::backup::{self, BackupOptions, BackupReport, Committed, Progress, Source};
use crate::error::{Error, Result};
use crate::evidence::AppendedRecord;
use crate::policy::{self, Policy};
use crate::pool::drop_beside;
use crate::process::{run_hook, ChildEnv, CommandSource, Origin};
use crate::repo::lock::Lock;
use crate::repo::Repository;
use crate::state::{JobKind, RecoveryPoint};

use super::open::RepoOptions;
use super::record::{record_command_run, RunSummary};

/// What the caller may add to a policy's backup.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// Record this time instead of now.
    pub time: Option<DateTime<Utc>>,
    /// Record this host name instead of this machine's.
    pub host: Option<String>,
    /// Tags besides the policy's name.
    pub tags: Vec<String>,
    /// Read every file instead of comparing with a parent snapshot.
    pub force: bool,
    /// After the evidence record, run the evidence check of `cairn check`
    /// (the daemon does, for `status` and `/metrics`).
    pub check_evidence: bool,
}

/// How a policy's backup went.
#[derive(Debug, Default)]
pub struct PolicyBackup {
    /// The snapshot saved, if one was.
    pub report: Option<BackupReport>,
    /// Why the job failed; `None` when it succeeded.
    pub error: Option<Error>,
    /// Problems that did not change the outcome (`on_failure` failing).
    pub warnings: Vec<String>,
    /// The evidence record appended, or why it could not be; `None` when
    /// the repository was never opened.
    pub evidence: Option<Result<AppendedRecord>>,
    /// The evidence check after the backup, when asked for
    /// ([`JobOptions::check_evidence`]) and the repository was opened.
    pub evidence_check: Option<Result<crate::evidence::check::EvidenceCheck>>,
    /// Set when the run could not be recorded in the state (a command's).
    pub unrecorded: Option<Error>,
}

impl PolicyBackup {
    /// The snapshot saved, as the policy's newest recovery point.
    pub fn recovery_point(&self) -> Option<RecoveryPoint> {
        self.report.as_ref().map(|r| RecoveryPoint {
            snapshot_id: r.snapshot_id.to_hex(),
            time: r.snapshot.time,
            tree: r.snapshot.tree.to_hex(),
        })
    }

    /// The run as the state records it.
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            ok: self.error.is_none(),
            error: self.error.as_ref().map(|e| e.to_string()),
            snapshot_id: self.report.as_ref().map(|r| r.snapshot_id.to_hex()),
            bytes: self.report.as_ref().map(|r| r.snapshot.summary.bytes_total),
            recovery_point: self.recovery_point(),
        }
    }
}

/// Runs one backup of `policy`, appends its evidence record and, with
/// `record_in` (a state directory), records the run there as a command's
/// (the daemon records its runs itself).
pub fn policy(
    repo: &RepoOptions,
    policy: &Policy,
    opts: &JobOptions,
    progress: &dyn Progress,
    record_in: Option<&Path>,
) -> PolicyBackup {
    let started = Instant::now();
    let started_at = Utc::now();
    let name = policy.name.as_str();
    let env = ChildEnv::new(&policy.env).with("CAIRN_POLICY", name);
    let origin = Origin::new(Some(name), "backup", repo.child_output);
    let mut out = PolicyBackup::default();
    let mut opened = None;
    let result = backup_between_hooks(repo, policy, opts, progress, &mut opened);
    // The backup's lock, removed before a hook runs (it may run cairn on
    // the repository), else while the evidence record is begun.
    let mut lock: Option<Lock> = None;
    match result {
        Ok(committed) => {
            let report = committed.report;
            lock = Some(committed.lock);
            let id = report.snapshot_id.to_hex();
            if let Some(h) = &policy.hooks.after {
                lock = None;
                let env = env.clone().with("CAIRN_SNAPSHOT", &id);
                if let Err(e) = run_hook("after", &h.command, h.timeout, &env, &origin) {
                    out.error = Some(e);
                }
            }
            out.report = Some(report);
        }
        Err(e) => out.error = Some(e),
    }
    if let (Some(e), Some(h)) = (&out.error, &policy.hooks.on_failure) {
        let msg = e.to_string();
        let id = out.report.as_ref().map(|r| r.snapshot_id.to_hex());
        let mut env = env.clone().with("CAIRN_ERROR", &msg);
        if let Some(id) = &id {
            env = env.with("CAIRN_SNAPSHOT", id);
        }
        lock = None;
        if let Err(he) = run_hook("on_failure", &h.command, h.timeout, &env, &origin) {
            out.warnings.push(he.to_string());
        }
    }
    if let Some(repository) = &opened {
        let result = out.report.as_ref().map(Ok).or_else(|| out.error.as_ref().map(Err));
        if let Some(result) = result {
            let payload = crate::evidence::payload::backup(result, out.error.as_ref(), started.elapsed());
            let appended = drop_beside(lock.take(), || repo.append_evidence(repository, "backup", Some(name), payload));
            out.evidence = Some(appended);
        }
        if opts.check_evidence {
            out.evidence_check = Some(check_evidence(repository));
        }
    }
    drop(lock);
    if let Some(dir) = record_in {
        let summary = out.summary();
        out.unrecorded = record_command_run(dir, name, JobKind::Backup, started_at, started.elapsed(), &summary).err();
    }
    out
}

/// The evidence check of `cairn check`, on every snapshot of `repo`, now.
fn check_evidence(repo: &Repository) -> Result<crate::evidence::check::EvidenceCheck> {
    // The snapshots that do not open have no time or host to compare; the
    // structural check names them.
    let snapshots = repo.list_snapshots()?.snapshots;
    let infos: Vec<_> = snapshots.iter().map(|(id, s)| crate::evidence::check::SnapshotInfo::of(*id, s)).collect();
    crate::evidence::check::check_repository(repo, &infos, None, Utc::now())
}

fn backup_between_hooks(
    repo: &RepoOptions,
    policy: &Policy,
    opts: &JobOptions,
    progress: &dyn Progress,
    opened: &mut Option<Repository>,
) -> Result<Committed> {
    let env = ChildEnv::new(&policy.env).with("CAIRN_POLICY", &policy.name);
    let origin = Origin::new(Some(&policy.name), "backup", repo.child_output);
    if let Some(h) = &policy.hooks.before {
        run_hook("before", &h.command, h.timeout, &env, &origin)?;
    }
    let repository = opened.insert(repo.open_policy(policy)?);
    let mut tags = vec![policy.name.clone()];
    tags.extend(opts.tags.iter().filter(|t| **t != policy.name).cloned());
    let mut bo = BackupOptions {
        tags,
        host: opts.host.clone(),
        time: opts.time,
        policy: Some(policy.name.clone()),
        parent: if opts.force { Some(None) } else { None },
        threads: repo.threads(),
        ..Default::default()
    };
    match &policy.source {
        policy::Source::Paths { paths, exclude, exclude_if_present, one_file_system } => {
            bo.excludes = exclude.clone();
            bo.exclude_if_present = exclude_if_present.clone();
            bo.one_file_system = *one_file_system;
            backup::run_locked(repository, Source::Paths(paths.clone()), &bo, progress)
        }
        policy::Source::Command { command, stored_as } => {
            let (reader, status) = CommandSource::spawn(command, &env, &origin)?;
            let source = Source::Stdin { name: stored_as.clone(), reader: Box::new(reader) };
            // The command's failure is the real error, not the read error it caused.
            backup::run_locked(repository, source, &bo, progress).map_err(|e| status.failure().unwrap_or(e))
        }
    }
}

/// How a backup of paths or standard input went.
#[derive(Debug)]
pub struct PathsBackup {
    pub result: Result<BackupReport>,
    /// The evidence record appended, or why it could not be.
    pub evidence: Result<AppendedRecord>,
}

/// What `backup --dry-run` found: the report of the backup that would have
/// run (its snapshot id is the one it would have had; nothing was stored).
pub fn dry_run(
    repo: &RepoOptions,
    source: Source<'_>,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    // No cache: it would keep the snapshot and index files never stored.
    let mut repository = RepoOptions { no_cache: true, ..repo.clone() }.open()?;
    repository.wrap_backend(|b| Arc::new(Discarding::new(b)));
    // Through the discarding layer the shared lock is never written
    // either; a prune's exclusive lock is still seen (and waited for with
    // --retry-lock). No evidence record: nothing happened.
    backup::run(&repository, source, opts, progress)
}

/// Opens the repository, backs `source` up and appends the evidence
/// record of the outcome. Only a failure to open is an error.
pub fn paths(
    repo: &RepoOptions,
    source: Source<'_>,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<PathsBackup> {
    let repository = repo.open()?;
    Ok(paths_in(repo, &repository, source, opts, progress))
}

/// [`paths`] in `repository`, opened with `repo`: the backup, then its
/// evidence record while the backup's lock is removed.
fn paths_in(
    repo: &RepoOptions,
    repository: &Repository,
    source: Source<'_>,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> PathsBackup {
    let started = Instant::now();
    let (result, lock) = match backup::run_locked(repository, source, opts, progress) {
        Ok(c) => (Ok(c.report), Some(c.lock)),
        Err(e) => (Err(e), None),
    };
    let payload = crate::evidence::payload::backup(result.as_ref(), None, started.elapsed());
    let evidence = drop_beside(lock, || repo.append_evidence(repository, "backup", None, payload));
    PathsBackup { result, evidence }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::{Backend, LocalBackend};
    use crate::backup::NoProgress;
    use crate::crypto::KdfParams;
    use crate::repo::InitOptions;

    /// The backup's lock is removed while the evidence record's first
    /// reads are under way: on remote storage, a round trip less between
    /// the snapshot and the end of the job. The lock is gone after.
    #[test]
    fn the_lock_of_a_backup_goes_while_its_evidence_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("repo")));
        let kdf = KdfParams { memory_kib: KdfParams::MIN_MEMORY_KIB, ..Default::default() };
        let repo = Repository::init(backend, b"pw", InitOptions { kdf, ..Default::default() }).unwrap();
        let state = dir.path().join("state");
        let enrolled = crate::evidence::append::ensure_enrolled(&repo, &state).unwrap();
        let source = dir.path().join("source");
        std::fs::create_dir(&source).unwrap();
        std::fs::write(source.join("f"), b"data").unwrap();

        let chain = format!("evidence/records/{}/", enrolled.key_id);
        let meeting = crate::backend::meeting::Meeting::new(repo.backend().clone(), &[&["delete locks/", &chain]]);
        let mut watched = repo.clone();
        watched.wrap_backend(|_| meeting.clone());
        meeting.arm();
        let options = RepoOptions { evidence_state: Some(state), ..Default::default() };
        let done = paths_in(&options, &watched, Source::Paths(vec![source]), &BackupOptions::default(), &NoProgress);
        let report = done.result.unwrap();
        let record = done.evidence.unwrap();
        assert!(meeting.met(), "the lock was removed before the evidence record was begun");
        assert_eq!(record.record["payload"]["snapshot"], report.snapshot_id.to_hex());
        let locks = repo.backend().list("locks/").unwrap();
        assert!(locks.is_empty(), "a lock was left behind: {locks:?}");
    }
}
