//! A job's run in the state database: the `runs` row written when it
//! starts, its progress while it runs (at most once a second, for `cairn
//! status`), and how it ended, with the policy's newest recovery point
//! after a backup.
//!
//! The daemon starts the row before a job runs ([`RunRecord::start`]) so
//! that `status` shows it running, and finishes it when the job returns
//! ([`RunRecord::finish`]). A command (`cairn backup --policy`) records
//! its run once it is over ([`record_command_run`]), so a killed command
//! leaves no row that would later read as interrupted.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::backup::Progress;
use crate::copy::CopyProgress;
use crate::error::Result;
use crate::jobs::open::RepoOptions;
use crate::policy::Policy;
use crate::repo::Repository;
use crate::state::{JobKind, NewRun, Outcome, RecoveryPoint, RunFinish, State, Trigger};

/// How a job ended, as its run row records it.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub ok: bool,
    pub snapshot_id: Option<String>,
    pub bytes: Option<u64>,
    pub error: Option<String>,
    /// After a backup: the snapshot it saved.
    pub recovery_point: Option<RecoveryPoint>,
}

impl RunSummary {
    pub fn failed(error: impl Into<String>) -> RunSummary {
        RunSummary { ok: false, error: Some(error.into()), ..Default::default() }
    }
}

/// A run row of the state, started and not yet finished; it takes the
/// job's progress.
pub struct RunRecord<'a> {
    pub id: i64,
    pub state: &'a State,
    started: Instant,
    last: Mutex<Option<Instant>>,
    files_total: AtomicU64,
    bytes_total: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
}

impl<'a> RunRecord<'a> {
    /// Writes the row of a run that starts now (outcome `running`).
    pub fn start(state: &'a State, new: &NewRun) -> Result<RunRecord<'a>> {
        Ok(RunRecord::attach(state, state.start_run(new)?))
    }

    /// A run whose row exists already.
    pub fn attach(state: &'a State, id: i64) -> RunRecord<'a> {
        RunRecord {
            id,
            state,
            started: Instant::now(),
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
        if let Err(e) = self.state.set_progress(self.id, &progress) {
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

    /// Records how the run ended (its duration counted from
    /// [`RunRecord::start`]) and, after a backup, the policy's newest
    /// recovery point. Both are tried; the first failure is returned.
    pub fn finish(&self, policy: &str, summary: &RunSummary, ended_at: DateTime<Utc>) -> Result<()> {
        let finish = RunFinish {
            ended_at,
            outcome: if summary.ok { Outcome::Success } else { Outcome::Failure },
            snapshot_id: summary.snapshot_id.clone(),
            bytes: summary.bytes,
            error: summary.error.clone(),
            duration_s: Some(self.started.elapsed().as_secs_f64()),
        };
        let finished = self.state.finish_run(self.id, &finish);
        let point = match &summary.recovery_point {
            Some(rp) => self.state.set_recovery_point(policy, rp),
            None => Ok(()),
        };
        finished.and(point)
    }
}

impl Progress for RunRecord<'_> {
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

    fn streamed(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.progress(self.backup_progress());
    }
}

/// A copy's progress reads as a backup's in `cairn status`: the files and
/// bytes of the snapshots to copy are the totals, and a directory an
/// earlier copy holds counts as done.
impl CopyProgress for RunRecord<'_> {
    fn planned(&self, files: u64, bytes: u64) {
        self.files_total.store(files, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
        self.progress(self.backup_progress());
    }

    fn file_done(&self, _path: &[u8], bytes: u64) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.progress(self.backup_progress());
    }

    fn present(&self, _path: &[u8], files: u64, bytes: u64) {
        self.files_done.fetch_add(files, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.progress(self.backup_progress());
    }
}

/// Records, in the state in `dir`, a run of `kind` a command started at
/// `started_at` and that took `took`, as the daemon records its own, so
/// that `cairn status` and `cairn report` count it.
pub fn record_command_run(
    dir: &Path,
    policy: &str,
    kind: JobKind,
    started_at: DateTime<Utc>,
    took: Duration,
    summary: &RunSummary,
) -> Result<()> {
    let state = State::open(dir)?;
    let new = NewRun {
        policy: policy.to_string(),
        kind,
        trigger: Trigger::Command,
        scheduled_at: None,
        started_at,
        attempt: 1,
    };
    let id = state.start_run(&new)?;
    state.finish_run(
        id,
        &RunFinish {
            ended_at: Utc::now(),
            outcome: if summary.ok { Outcome::Success } else { Outcome::Failure },
            snapshot_id: summary.snapshot_id.clone(),
            bytes: summary.bytes,
            error: summary.error.clone(),
            duration_s: Some(took.as_secs_f64()),
        },
    )?;
    if let Some(rp) = &summary.recovery_point {
        state.set_recovery_point(policy, rp)?;
    }
    Ok(())
}

/// Records each policy's newest snapshot as its recovery point, reading
/// the repositories (at the daemon's start, so `status` knows the RPO of
/// policies backed up by hand or before the state existed). Returns, by
/// policy name, what could not be read or recorded.
pub fn refresh_recovery_points(
    policies: &[Arc<Policy>],
    repo: &RepoOptions,
    state: &State,
) -> Vec<(String, crate::error::Error)> {
    policies
        .iter()
        .filter_map(|p| {
            let done = repo.open_policy(p).and_then(|repo| refresh_recovery_point(&repo, p, state));
            done.err().map(|e| (p.name.clone(), e))
        })
        .collect()
}

/// Records `policy`'s newest snapshot in `repo` as its recovery point. A
/// snapshot that cannot be read may be the newest: then the recovery
/// point is left as it was, and the error says which snapshot it is.
pub fn refresh_recovery_point(repo: &Repository, policy: &Policy, state: &State) -> Result<()> {
    let list = repo.list_snapshots()?;
    let newest = list
        .complete()?
        .iter()
        .filter(|(_, s)| s.policy.as_deref() == Some(policy.name.as_str()))
        // A snapshot dated in the future is never the recovery point.
        .filter(|(_, s)| !crate::repo::is_future(s.time, Utc::now()))
        .max_by_key(|(_, s)| s.time);
    match newest {
        Some((id, s)) => state.set_recovery_point(
            &policy.name,
            &RecoveryPoint { snapshot_id: id.to_hex(), time: s.time, tree: s.tree.to_hex() },
        ),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            original: None,
            summary: Default::default(),
        }
    }

    #[test]
    fn a_copys_progress_is_recorded_with_its_totals_as_a_backups_is() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let new = NewRun {
            policy: "web".into(),
            kind: JobKind::Copy,
            trigger: Trigger::Schedule,
            scheduled_at: None,
            started_at: Utc::now(),
            attempt: 1,
        };
        let run = RunRecord::start(&state, &new).unwrap();
        let recorded = || state.running().unwrap()[0].progress.clone().unwrap();
        let progress: &dyn CopyProgress = &run;
        progress.planned(4, 4000);
        let expect = |fd: u64, bd: u64| serde_json::json!({ "files_done": fd, "bytes_done": bd, "files_total": 4, "bytes_total": 4000 });
        assert_eq!(recorded(), expect(0, 0));
        progress.present(b"/a", 2, 1000);
        progress.file_done(b"/b/f", 500);
        // Past the once-a-second limit.
        *run.last.lock().unwrap() = None;
        progress.file_done(b"/b/g", 700);
        assert_eq!(recorded(), expect(4, 2200));
    }

    #[test]
    fn a_damaged_snapshot_leaves_the_recovery_point_as_it_was_and_is_returned() {
        let (dir, repo) = crate::repo::walk::tests::repo();
        let state = State::open(&dir.path().join("state")).unwrap();
        let policy = crate::policy::for_tests("web", "/r", "");
        let older = repo.save_snapshot(&snapshot_of("web", 60)).unwrap();
        let newest = repo.save_snapshot(&snapshot_of("web", 1)).unwrap();
        refresh_recovery_point(&repo, &policy, &state).unwrap();
        assert_eq!(state.recovery_point("web").unwrap().unwrap().snapshot_id, newest.to_hex());

        // The newest snapshot loses a byte, and the state says it was recorded.
        let path = dir.path().join("repo").join(format!("snapshots/{newest}"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let rp = |id: crate::id::Id| RecoveryPoint { snapshot_id: id.to_hex(), time: Utc::now(), tree: String::new() };
        state.set_recovery_point("web", &rp(newest)).unwrap();
        let e = refresh_recovery_point(&repo, &policy, &state).unwrap_err();
        assert!(
            matches!(&e, crate::error::Error::NewestUnknown { snapshot, .. } if *snapshot == newest.short()),
            "{e}"
        );
        // Not replaced by the older readable snapshot: left as it was.
        assert_eq!(state.recovery_point("web").unwrap().unwrap().snapshot_id, newest.to_hex());
        assert_ne!(older, newest);
    }
}
