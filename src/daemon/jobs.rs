//! Running one job: the [`Executor`] seam between the scheduler and the
//! work, and [`RepoExecutor`], which does the real backups, prunes and
//! drills.
//!
//! A job runs on its own thread. [`run_job`] records the run in the state,
//! runs the executor under `catch_unwind` (a panic becomes the job's error,
//! never the daemon's end), and records how it ended, with the newest
//! recovery point after a backup. Progress goes to the state at most once a
//! second, for `cairn status`.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::engine::JobSpec;
use crate::backup::Progress;
use crate::error::{Error, Result};
use crate::policy::{job, Policy};
use crate::repo::Repository;
use crate::state::{JobKind, NewRun, Outcome, RecoveryPoint, RunFinish, State};

/// What a job produced.
#[derive(Debug, Clone, Default)]
pub struct JobResult {
    pub ok: bool,
    pub snapshot_id: Option<String>,
    pub bytes: Option<u64>,
    pub error: Option<String>,
    /// After a backup: the snapshot it saved.
    pub recovery_point: Option<RecoveryPoint>,
}

impl JobResult {
    pub fn failed(error: impl Into<String>) -> JobResult {
        JobResult { ok: false, error: Some(error.into()), ..Default::default() }
    }
}

/// A running job's link to the state: its run id and progress.
pub struct JobContext<'a> {
    pub run_id: i64,
    pub state: &'a State,
    last: Mutex<Option<Instant>>,
    files_total: AtomicU64,
    bytes_total: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
}

impl<'a> JobContext<'a> {
    pub fn new(run_id: i64, state: &'a State) -> JobContext<'a> {
        JobContext {
            run_id,
            state,
            last: Mutex::new(None),
            files_total: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
        }
    }

    /// Records `progress` unless one was recorded less than a second ago.
    pub fn progress(&self, progress: serde_json::Value) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.state.set_progress(self.run_id, &progress) {
            tracing::debug!(error = %e, "progress not recorded");
        }
    }

    fn backup_progress(&self) -> serde_json::Value {
        serde_json::json!({
            "files_done": self.files_done.load(Ordering::Relaxed),
            "bytes_done": self.bytes_done.load(Ordering::Relaxed),
            "files_total": self.files_total.load(Ordering::Relaxed),
            "bytes_total": self.bytes_total.load(Ordering::Relaxed),
        })
    }
}

impl Progress for JobContext<'_> {
    fn scanned(&self, files: u64, bytes: u64) {
        self.files_total.store(files, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
        self.progress(self.backup_progress());
    }

    fn file_done(&self, _path: &Path, bytes: u64) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.progress(self.backup_progress());
    }
}

/// Does the work of a job.
pub trait Executor: Send + Sync {
    fn run(&self, job: &JobSpec, ctx: &JobContext<'_>) -> JobResult;
}

/// Opens a policy's repository (the CLI decides how: global options,
/// cache, password sources).
pub type Opener = Arc<dyn Fn(&Policy) -> Result<Repository> + Send + Sync>;

/// The real work: backups with hooks, forget + prune, drills.
pub struct RepoExecutor {
    pub open: Opener,
    /// Worker threads per backup and drill (0: one per core).
    pub threads: usize,
}

impl RepoExecutor {
    /// A scheduled drill: the policy's own settings, signed into the
    /// repository's evidence chain, recorded under the daemon's run.
    fn drill(&self, job: &JobSpec, ctx: &JobContext<'_>) -> JobResult {
        let p = &job.policy;
        let chain = crate::drill::RepositoryChain { policy: p.name.clone() };
        let threads = if self.threads == 0 { crate::backup::default_threads() } else { self.threads };
        let opts = crate::drill::DrillOptions {
            threads,
            started_by: match job.trigger {
                crate::state::Trigger::RunNow => crate::drill::StartedBy::User("run-now via the daemon".into()),
                _ => crate::drill::StartedBy::Schedule,
            },
            trigger: job.trigger,
            scheduled_at: job.slot,
            attempt: job.attempt,
            evidence: Some(&chain),
            run_id: Some(ctx.run_id),
            ..Default::default()
        };
        match crate::drill::run(p, || (self.open)(p), ctx.state, &opts) {
            Ok(out) => {
                let r = &out.report;
                tracing::info!(policy = %p.name, drill = %r.drill_id, verdict = %r.verdict.result,
                    report = %out.report_dir.display(), "drill finished");
                JobResult {
                    ok: out.passed(),
                    snapshot_id: r.recovery_point.as_ref().map(|rp| rp.snapshot_id.clone()),
                    bytes: Some(r.scope.bytes),
                    error: r.verdict.issues.first().map(|i| i.message.clone()),
                    recovery_point: None,
                }
            }
            Err(e) => JobResult::failed(e.to_string()),
        }
    }
}

impl Executor for RepoExecutor {
    fn run(&self, job: &JobSpec, ctx: &JobContext<'_>) -> JobResult {
        let p = &job.policy;
        match job.kind {
            JobKind::Backup => {
                let opts = job::JobOptions { threads: self.threads, ..Default::default() };
                let started = Instant::now();
                let out = job::run_backup(p, || (self.open)(p), &opts, ctx);
                if let (Some(repo), Some(payload)) = (&out.repo, out.evidence_payload(started.elapsed())) {
                    record_evidence(repo, "backup", p, payload);
                }
                for w in &out.warnings {
                    tracing::warn!(policy = %p.name, "{w}");
                }
                JobResult {
                    ok: out.error.is_none(),
                    error: out.error.as_ref().map(|e| e.to_string()),
                    snapshot_id: out.report.as_ref().map(|r| r.snapshot_id.to_hex()),
                    bytes: out.report.as_ref().map(|r| r.snapshot.summary.bytes_total),
                    recovery_point: out.recovery_point(),
                }
            }
            JobKind::Prune => {
                let started = Instant::now();
                let run = || -> Result<crate::prune::PolicyPruneReport> {
                    let repo = (self.open)(p)?;
                    let result = crate::prune::run_for_policy(&repo, p, Utc::now());
                    let payload = crate::evidence::payload::policy_prune(result.as_ref(), started.elapsed());
                    record_evidence(&repo, "prune", p, payload);
                    result
                };
                match run() {
                    Ok(rep) => {
                        tracing::info!(policy = %p.name, forgotten = ?rep.forgotten, kept = rep.kept,
                            packs_deleted = rep.packs_deleted, bytes_freed = rep.bytes_freed, "prune done");
                        JobResult { ok: true, bytes: Some(rep.bytes_freed), ..Default::default() }
                    }
                    Err(e) => JobResult::failed(e.to_string()),
                }
            }
            JobKind::Drill => self.drill(job, ctx),
        }
    }
}

/// Appends an evidence record; a failure to do so is logged, never the
/// job's failure (the backup or prune itself is done).
fn record_evidence(repo: &Repository, kind: &str, p: &Policy, payload: serde_json::Value) {
    match crate::evidence::append(repo, kind, Some(&p.name), payload) {
        Ok(r) => tracing::debug!(policy = %p.name, seq = r.seq, hash = %r.hash, "evidence record appended"),
        Err(e) => tracing::warn!(policy = %p.name, error = %e, "the evidence record was not appended"),
    }
}

/// How a job went, for the loop and the notifications.
#[derive(Debug, Clone)]
pub struct Finished {
    pub job: JobSpec,
    pub run_id: i64,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub result: JobResult,
}

/// Runs `job` to its end: records it, runs it, never panics.
pub fn run_job(job: JobSpec, state: &State, executor: &dyn Executor) -> Finished {
    let started_at = Utc::now();
    let t0 = Instant::now();
    let new = NewRun {
        policy: job.policy.name.clone(),
        kind: job.kind,
        trigger: job.trigger,
        scheduled_at: job.slot,
        started_at,
        attempt: job.attempt,
    };
    let run_id = match state.start_run(&new) {
        Ok(id) => id,
        Err(e) => {
            let result = JobResult::failed(format!("cannot record the run: {e}"));
            return Finished { job, run_id: 0, started_at, ended_at: Utc::now(), result };
        }
    };
    let ctx = JobContext::new(run_id, state);
    let result = match std::panic::catch_unwind(AssertUnwindSafe(|| executor.run(&job, &ctx))) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            JobResult::failed(format!("the job panicked: {msg}"))
        }
    };
    let ended_at = Utc::now();
    let finish = RunFinish {
        ended_at,
        outcome: if result.ok { Outcome::Success } else { Outcome::Failure },
        snapshot_id: result.snapshot_id.clone(),
        bytes: result.bytes,
        error: result.error.clone(),
        duration_s: Some(t0.elapsed().as_secs_f64()),
    };
    if let Err(e) = state.finish_run(run_id, &finish) {
        tracing::error!(policy = %job.policy.name, error = %e, "cannot record the end of a run");
    }
    if let Some(rp) = &result.recovery_point {
        if let Err(e) = state.set_recovery_point(&job.policy.name, rp) {
            tracing::error!(policy = %job.policy.name, error = %e, "cannot record the recovery point");
        }
    }
    Finished { job, run_id, started_at, ended_at, result }
}

/// Records each policy's newest snapshot as its recovery point, reading
/// the repositories (at start-up, so `status` knows the RPO of policies
/// backed up by hand or before the state existed). A repository with a
/// snapshot that cannot be read leaves the policy's recovery point as it
/// was, since that snapshot may be the newest. Returns, by policy name,
/// what could not be read or recorded.
pub fn refresh_recovery_points(policies: &[Arc<Policy>], open: &Opener, state: &State) -> Vec<(String, Error)> {
    let mut failed = Vec::new();
    for p in policies {
        let newest = (open)(p).and_then(|repo| {
            Ok(repo
                .list_snapshots()?
                .complete()?
                .iter()
                .filter(|(_, s)| s.policy.as_deref() == Some(p.name.as_str()))
                .max_by_key(|(_, s)| s.time)
                .cloned())
        });
        let recorded = newest.and_then(|newest| match newest {
            Some((id, s)) => state.set_recovery_point(
                &p.name,
                &RecoveryPoint { snapshot_id: id.to_hex(), time: s.time, tree: s.tree.to_hex() },
            ),
            None => Ok(()),
        });
        if let Err(e) = recorded {
            failed.push((p.name.clone(), e));
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Outcome, Trigger};

    struct Panics;
    impl Executor for Panics {
        fn run(&self, _: &JobSpec, _: &JobContext<'_>) -> JobResult {
            panic!("index out of bounds in a job");
        }
    }

    #[test]
    fn a_panicking_job_fails_alone_and_is_recorded_with_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let policy = Arc::new(crate::policy::for_tests("web", "/r", ""));
        let job = JobSpec { policy, kind: JobKind::Backup, trigger: Trigger::RunNow, slot: None, attempt: 1 };
        let f = run_job(job, &state, &Panics);
        assert!(!f.result.ok);
        assert_eq!(f.result.error.as_deref(), Some("the job panicked: index out of bounds in a job"));
        let runs = state.runs(Some("web"), None, None).unwrap();
        assert_eq!((runs.len(), runs[0].outcome), (1, Outcome::Failure));
        assert_eq!(runs[0].error, f.result.error);
    }

    fn snapshot_of(policy: &str, minutes_ago: i64) -> crate::repo::Snapshot {
        crate::repo::Snapshot {
            v: crate::repo::snapshot::SNAPSHOT_VERSION,
            time: Utc::now() - chrono::Duration::minutes(minutes_ago),
            hostname: "h".into(),
            username: "u".into(),
            paths: vec!["/srv".into()],
            tags: Vec::new(),
            policy: Some(policy.into()),
            parent: None,
            tree: crate::id::Id::random(),
            program_version: "test".into(),
            summary: Default::default(),
        }
    }

    #[test]
    fn a_damaged_snapshot_leaves_the_recovery_point_as_it_was_and_is_returned() {
        let (dir, repo) = crate::repo::walk::tests::repo();
        let state = State::open(&dir.path().join("state")).unwrap();
        let policy = Arc::new(crate::policy::for_tests("web", "/r", ""));
        let older = repo.save_snapshot(&snapshot_of("web", 60)).unwrap();
        let newest = repo.save_snapshot(&snapshot_of("web", 1)).unwrap();
        let open: Opener = {
            let repo = repo.clone();
            Arc::new(move |_: &Policy| Ok(repo.clone()))
        };
        assert!(refresh_recovery_points(std::slice::from_ref(&policy), &open, &state).is_empty());
        assert_eq!(state.recovery_point("web").unwrap().unwrap().snapshot_id, newest.to_hex());

        // The newest snapshot loses a byte, and the state says it was recorded.
        let path = dir.path().join("repo").join(format!("snapshots/{newest}"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let rp = |id: crate::id::Id| RecoveryPoint { snapshot_id: id.to_hex(), time: Utc::now(), tree: String::new() };
        state.set_recovery_point("web", &rp(newest)).unwrap();
        let failed = refresh_recovery_points(&[policy], &open, &state);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "web");
        assert!(matches!(&failed[0].1, Error::NewestUnknown { snapshot, .. } if *snapshot == newest.short()));
        // Not replaced by the older readable snapshot: left as it was.
        assert_eq!(state.recovery_point("web").unwrap().unwrap().snapshot_id, newest.to_hex());
        assert_ne!(older, newest);
    }
}
