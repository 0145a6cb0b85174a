//! Running one job: the [`Executor`] seam between the scheduler and the
//! work, and [`RepoExecutor`], which hands each job to its function in
//! [`crate::jobs`].
//!
//! A job runs on its own thread. [`run_job`] starts its run row in the
//! state, runs the executor under `catch_unwind` (a panic becomes the
//! job's error, never the daemon's end), and records how it ended, with
//! the newest recovery point after a backup ([`crate::jobs::record`]).
//! Progress goes to the state at most once a second, for `cairn status`.

use std::panic::AssertUnwindSafe;

use chrono::{DateTime, Utc};

use super::engine::JobSpec;
use crate::drill::{DrillOptions, StartedBy};
use crate::jobs::record::{RunRecord, RunSummary};
use crate::jobs::{self, RepoOptions};
use crate::repo::lock::{LockWait, DAEMON_LOCK_WAIT};
use crate::state::{JobKind, NewRun, State, Trigger};

/// Does the work of a job.
pub trait Executor: Send + Sync {
    fn run(&self, job: &JobSpec, run: &RunRecord<'_>) -> RunSummary;
}

/// The real work: each job kind's function in [`crate::jobs`].
pub struct RepoExecutor {
    /// How to open repositories (the daemon's flags; each policy's
    /// settings take their place).
    pub repo: RepoOptions,
}

impl Executor for RepoExecutor {
    fn run(&self, job: &JobSpec, run: &RunRecord<'_>) -> RunSummary {
        let p = &job.policy;
        match job.kind {
            JobKind::Backup => {
                let opts = jobs::backup::JobOptions { check_evidence: true, ..Default::default() };
                let out = jobs::backup::policy(&self.repo, p, &opts, run, None);
                log_evidence(p, out.evidence.as_ref());
                // The same cross-check as `cairn check`, for status and /metrics.
                if let Some(check) = &out.evidence_check {
                    record_evidence_check(p, check, run.state);
                }
                for w in &out.warnings {
                    tracing::warn!(policy = %p.name, "{w}");
                }
                out.summary()
            }
            JobKind::Prune => self.prune(job),
            JobKind::Drill => self.drill(job, run),
            JobKind::Copy => self.copy(job, run),
        }
    }
}

impl RepoExecutor {
    /// An executor whose jobs wait up to [`DAEMON_LOCK_WAIT`] for a lock
    /// in the way (a backup that meets a prune, and the other way round)
    /// before they fail, unless `repo` says otherwise. Drills never wait:
    /// the wait would count in their measured restore time.
    pub fn new(mut repo: RepoOptions) -> RepoExecutor {
        if repo.lock_wait.is_none() {
            repo.lock_wait = Some(LockWait::new(DAEMON_LOCK_WAIT).on_wait(|w| {
                tracing::info!(holder = w.holder, patience_s = w.patience.as_secs(), "waiting for the repository lock");
            }));
        }
        RepoExecutor { repo }
    }

    /// A scheduled forget-and-prune of the policy.
    fn prune(&self, job: &JobSpec) -> RunSummary {
        let p = &job.policy;
        match jobs::prune::policy(&self.repo, p, Utc::now()) {
            Ok(done) => {
                log_evidence(p, Some(&done.evidence));
                let rep = &done.report;
                tracing::info!(policy = %p.name, forgotten = rep.forgotten, kept = rep.kept,
                    packs_deleted = rep.packs_deleted, bytes_freed = rep.bytes_freed, "prune done");
                RunSummary { ok: true, bytes: Some(rep.bytes_freed), ..Default::default() }
            }
            Err(failed) => {
                log_evidence(p, failed.evidence.as_deref());
                RunSummary::failed(failed.error.to_string())
            }
        }
    }

    /// A scheduled copy of the policy's snapshots into its `[copy]`
    /// repository, with evidence in both, its progress in its run row and
    /// the copy's lag for `status`.
    fn copy(&self, job: &JobSpec, run: &RunRecord<'_>) -> RunSummary {
        let (p, state) = (&job.policy, run.state);
        let out = jobs::copy::policy(&self.repo, p, run, None);
        log_evidence(p, out.evidence_from.as_ref());
        log_evidence(p, out.evidence_to.as_ref());
        for w in &out.report.warnings {
            tracing::warn!(policy = %p.name, "{w}");
        }
        for (id, why) in &out.held {
            tracing::warn!(policy = %p.name, snapshot = %id.short(), reason = %why, "held by the evidence check: not copied");
        }
        if let Err(e) = out.record_point(&p.name, state) {
            tracing::warn!(policy = %p.name, error = %e, "cannot record the copy's recovery point");
        }
        if out.error.is_none() {
            let r = &out.report;
            tracing::info!(policy = %p.name, copied = r.copied.len(), present = r.present.len(),
                bytes_added = r.stored.stored_bytes, "copy done");
        }
        out.summary()
    }

    /// A scheduled drill: the policy's own settings, signed into the
    /// repository's evidence chain, recorded under the daemon's run.
    fn drill(&self, job: &JobSpec, run: &RunRecord<'_>) -> RunSummary {
        let p = &job.policy;
        let opts = DrillOptions {
            threads: self.repo.threads(),
            started_by: match job.trigger {
                Trigger::RunNow => StartedBy::User("run-now via the daemon".into()),
                _ => StartedBy::Schedule,
            },
            trigger: job.trigger,
            scheduled_at: job.slot,
            attempt: job.attempt,
            run_id: Some(run.id),
            ..Default::default()
        };
        match jobs::drill::drill(&self.repo, p, run.state, &opts) {
            Ok(out) => {
                let r = &out.report;
                tracing::info!(policy = %p.name, drill = %r.drill_id, verdict = %r.verdict.result,
                    report = %out.report_dir.display(), "drill finished");
                RunSummary {
                    ok: out.passed(),
                    snapshot_id: r.recovery_point.as_ref().map(|rp| rp.snapshot_id.clone()),
                    bytes: Some(r.scope.bytes),
                    error: r.verdict.issues.first().map(|i| i.message.clone()),
                    recovery_point: None,
                }
            }
            Err(e) => RunSummary::failed(e.to_string()),
        }
    }
}

/// Logs whether a job's evidence record was appended; a failure to append
/// is never the job's failure (the backup or prune itself is done).
fn log_evidence(p: &crate::policy::Policy, appended: Option<&crate::Result<crate::evidence::AppendedRecord>>) {
    match appended {
        Some(Ok(r)) => {
            tracing::debug!(policy = %p.name, signer = %r.signer, seq = r.seq, hash = %r.hash, "evidence record appended");
            for w in &r.warnings {
                tracing::warn!(policy = %p.name, "{w}");
            }
        }
        Some(Err(e)) => tracing::warn!(policy = %p.name, error = %e, "the evidence record was not appended"),
        None => {}
    }
}

/// Records the outcome of the evidence check after a backup of `p` in
/// the state, where `cairn status` and `/metrics` read it
/// ([`crate::status::EVIDENCE_KEY_PREFIX`]).
fn record_evidence_check(
    p: &crate::policy::Policy,
    check: &crate::Result<crate::evidence::check::EvidenceCheck>,
    state: &State,
) {
    let now = Utc::now();
    let value = match check {
        Ok(c) => {
            for x in &c.problems {
                tracing::warn!(policy = %p.name, object = %x.object, "evidence: {}", x.message);
            }
            crate::status::EvidenceState {
                ok: c.ok(),
                checked_at: crate::state::ts(now),
                problems: c.problems.len(),
                first: c.problems.iter().take(10).map(|x| format!("{}: {}", x.object, x.message)).collect(),
                flagged: c
                    .flagged
                    .iter()
                    .map(|(id, f)| crate::status::FlaggedSnapshot { snapshot: id.to_hex(), why: f.as_str().into() })
                    .collect(),
                newest_head: c.newest_head.clone(),
            }
        }
        Err(e) => {
            tracing::warn!(policy = %p.name, error = %e, "the evidence could not be checked");
            crate::status::EvidenceState {
                ok: false,
                checked_at: crate::state::ts(now),
                problems: 1,
                first: vec![format!("the evidence could not be checked: {e}")],
                flagged: Vec::new(),
                newest_head: None,
            }
        }
    };
    let key = format!("{}{}", crate::status::EVIDENCE_KEY_PREFIX, p.name);
    let text = serde_json::to_string(&value).expect("the check serialises");
    if let Err(e) = state.set_daemon_value(&key, Some(&text)) {
        tracing::warn!(policy = %p.name, error = %e, "cannot record the evidence check");
    }
}

/// Makes sure this host has an evidence key (in the state directory of
/// `repo`'s [`RepoOptions::evidence_state`]) and that it is enrolled in
/// the repository of every policy (at the daemon's start).
pub fn enroll_everywhere(policies: &[std::sync::Arc<crate::policy::Policy>], repo: &RepoOptions) {
    let state_dir = crate::state::resolve_dir(repo.evidence_state.as_deref());
    let mut done = std::collections::BTreeSet::new();
    // Each policy's repository, and its copy's, once.
    let targets = policies.iter().flat_map(|p| {
        let copy = repo.for_copy(p).map(|o| (p, o, p.copy.as_ref().map(|c| c.to.url.clone()).unwrap_or_default()));
        [Some((p, repo.for_policy(p), p.repository.url.clone())), copy].into_iter().flatten()
    });
    for (p, options, url) in targets {
        if !done.insert(url) {
            continue;
        }
        match options.open().and_then(|r| crate::evidence::append::ensure_enrolled(&r, &state_dir)) {
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
    pub result: RunSummary,
}

/// Runs `job` to its end: records it, runs it, never panics.
pub fn run_job(job: JobSpec, state: &State, executor: &dyn Executor) -> Finished {
    let started_at = Utc::now();
    let new = NewRun {
        policy: job.policy.name.clone(),
        kind: job.kind,
        trigger: job.trigger,
        scheduled_at: job.slot,
        started_at,
        attempt: job.attempt,
    };
    let run = match RunRecord::start(state, &new) {
        Ok(run) => run,
        Err(e) => {
            let result = RunSummary::failed(format!("cannot record the run: {e}"));
            return Finished { job, run_id: 0, started_at, ended_at: Utc::now(), result };
        }
    };
    let result = match std::panic::catch_unwind(AssertUnwindSafe(|| executor.run(&job, &run))) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            RunSummary::failed(format!("the job panicked: {msg}"))
        }
    };
    let ended_at = Utc::now();
    if let Err(e) = run.finish(&job.policy.name, &result, ended_at) {
        tracing::error!(policy = %job.policy.name, error = %e, "cannot record the end of a run");
    }
    Finished { job, run_id: run.id, started_at, ended_at, result }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::Outcome;

    struct Panics;
    impl Executor for Panics {
        fn run(&self, _: &JobSpec, _: &RunRecord<'_>) -> RunSummary {
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

#[cfg(test)]
mod lock_wait_tests {
    use super::*;

    #[test]
    fn the_daemons_jobs_wait_ten_minutes_for_a_lock_unless_told_otherwise() {
        let e = RepoExecutor::new(RepoOptions::default());
        assert_eq!(e.repo.lock_wait.as_ref().map(|w| w.patience), Some(std::time::Duration::from_secs(600)));
        assert!(e.repo.lock_wait.as_ref().unwrap().on_wait.is_some(), "it logs whom it waits for");
        let told =
            RepoOptions { lock_wait: Some(LockWait::new(std::time::Duration::from_secs(5))), ..Default::default() };
        assert_eq!(RepoExecutor::new(told).repo.lock_wait.map(|w| w.patience), Some(std::time::Duration::from_secs(5)));
    }
}
