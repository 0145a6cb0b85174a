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
use crate::error::Result;
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
        let chain = crate::drill::RepositoryChain { policy: p.name.clone(), state_dir: ctx.state.dir().to_path_buf() };
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
                    record_evidence(repo, "backup", p, payload, ctx.state.dir());
                    // The same cross-check as `cairn check`, for status and /metrics.
                    check_evidence(repo, p, ctx.state);
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
                    let now = Utc::now();
                    let (held, unread) = crate::evidence::check::held_snapshots(&repo, &repo.list_snapshots()?, now);
                    if let Some(e) = unread {
                        tracing::warn!(policy = %p.name, error = %e, "the evidence could not be checked: only snapshots dated in the future are held");
                    }
                    let result = crate::prune::run_for_policy(&repo, p, now, &held);
                    let payload = crate::evidence::payload::policy_prune(result.as_ref(), started.elapsed());
                    record_evidence(&repo, "prune", p, payload, ctx.state.dir());
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

/// Appends an evidence record with this host's key (its state directory
/// `state_dir`); a failure to do so is logged, never the job's failure (the
/// backup or prune itself is done).
fn record_evidence(repo: &Repository, kind: &str, p: &Policy, payload: serde_json::Value, state_dir: &Path) {
    let r =
        crate::evidence::Appender::for_state_dir(state_dir).and_then(|a| a.append(repo, kind, Some(&p.name), payload));
    match r {
        Ok(r) => {
            tracing::debug!(policy = %p.name, signer = %r.signer, seq = r.seq, hash = %r.hash, "evidence record appended");
            for w in &r.warnings {
                tracing::warn!(policy = %p.name, "{w}");
            }
        }
        Err(e) => tracing::warn!(policy = %p.name, error = %e, "the evidence record was not appended"),
    }
}

/// The daemon's record of a policy's last evidence check, in the state.
pub const EVIDENCE_KEY_PREFIX: &str = "evidence:";

/// Runs the evidence cross-check of `cairn check` on `repo` and records
/// its outcome for `p` in the state (`cairn status`, `/metrics`).
fn check_evidence(repo: &Repository, p: &Policy, state: &State) {
    let now = Utc::now();
    let outcome = repo.list_snapshots().and_then(|snaps| {
        let infos: Vec<_> = snaps.iter().map(|(id, s)| crate::evidence::check::SnapshotInfo::of(*id, s)).collect();
        crate::evidence::check::check_repository(repo, &infos, None, now)
    });
    let value = match outcome {
        Ok(c) => {
            for x in &c.problems {
                tracing::warn!(policy = %p.name, object = %x.object, "evidence: {}", x.message);
            }
            serde_json::json!({
                "ok": c.ok(),
                "checked_at": crate::state::ts(now),
                "problems": c.problems.len(),
                "first": c.problems.iter().take(10).map(|x| format!("{}: {}", x.object, x.message)).collect::<Vec<_>>(),
                "flagged": c.flagged.iter().map(|(id, f)| serde_json::json!({"snapshot": id.to_hex(), "why": f.as_str()})).collect::<Vec<_>>(),
                "newest_head": c.newest_head,
            })
        }
        Err(e) => {
            tracing::warn!(policy = %p.name, error = %e, "the evidence could not be checked");
            serde_json::json!({ "ok": false, "checked_at": crate::state::ts(now), "problems": 1,
                "first": [format!("the evidence could not be checked: {e}")], "flagged": [] })
        }
    };
    let key = format!("{EVIDENCE_KEY_PREFIX}{}", p.name);
    if let Err(e) = state.set_daemon_value(&key, Some(&value.to_string())) {
        tracing::warn!(policy = %p.name, error = %e, "cannot record the evidence check");
    }
}

/// Makes sure this host has an evidence key and that it is enrolled in the
/// repository of every policy (at the daemon's start).
pub fn enroll_everywhere(policies: &[Arc<Policy>], open: &Opener, state_dir: &Path) {
    let mut done = std::collections::BTreeSet::new();
    for p in policies {
        if !done.insert(p.repository.url.clone()) {
            continue;
        }
        match (open)(p).and_then(|repo| crate::evidence::append::ensure_enrolled(&repo, state_dir)) {
            Ok(e) if e.newly => {
                tracing::info!(policy = %p.name, key = %e.key_id, host = %e.host, "evidence key enrolled")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(policy = %p.name, error = %e, "the evidence key could not be enrolled"),
        }
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
/// backed up by hand or before the state existed).
pub fn refresh_recovery_points(policies: &[Arc<Policy>], open: &Opener, state: &State) {
    for p in policies {
        let newest = (open)(p).and_then(|repo| {
            Ok(repo
                .list_snapshots()?
                .into_iter()
                .filter(|(_, s)| s.policy.as_deref() == Some(p.name.as_str()))
                .filter(|(_, s)| !crate::repo::is_future(s.time, Utc::now()))
                .max_by_key(|(_, s)| s.time))
        });
        match newest {
            Ok(Some((id, s))) => {
                let rp = RecoveryPoint { snapshot_id: id.to_hex(), time: s.time, tree: s.tree.to_hex() };
                if let Err(e) = state.set_recovery_point(&p.name, &rp) {
                    tracing::warn!(policy = %p.name, error = %e, "cannot record the recovery point");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(policy = %p.name, error = %e, "cannot read the newest snapshot"),
        }
    }
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
}
