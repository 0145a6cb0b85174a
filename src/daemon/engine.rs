//! The scheduler's core: which job is due, which may start, what to retry.
//!
//! The engine holds no clock and runs nothing. The daemon's loop asks it,
//! with the current time, which jobs to start ([`Engine::tick`]), tells it
//! when one ended ([`Engine::finished`]), and sleeps until
//! [`Engine::next_wakeup`]. Tests drive it with any "now" they like, so a
//! week of schedules, a daylight-saving change or a missed night is
//! checked in microseconds, without sleeping.
//!
//! Rules:
//! - each policy has up to three schedules (backup, prune, drill); a slot's
//!   due time is the slot plus the policy's deterministic jitter;
//! - when a due time passes, one job is queued and the schedule moves to
//!   the first slot after *now*: a daemon that was suspended or busy runs a
//!   late job once, never once per missed slot. A slot whose job is still
//!   queued or running is skipped;
//! - at start-up, a slot that came due while the daemon was down (the due
//!   time remembered in the state is past) is run once, as a `catch-up`,
//!   unless the policy says `catch_up = false`;
//! - a job starts when no other job of its policy runs (the policy lock),
//!   fewer than `max_jobs` run in all, and fewer than `max_per_repo` run on
//!   its repository; otherwise it waits in the queue, in order;
//! - a failed backup is queued again after `retry_delay`, doubling on each
//!   further failure (at most 6 hours), up to `retries` times;
//! - once stopping, nothing new starts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::policy::{next_slot, Policy};
use crate::state::{JobKind, State, Trigger};

/// The longest delay between retries.
const MAX_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Limits on jobs running at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_jobs: usize,
    pub max_per_repo: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_jobs: 2, max_per_repo: 1 }
    }
}

/// A job to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub policy: Arc<Policy>,
    pub kind: JobKind,
    pub trigger: Trigger,
    /// The slot it was scheduled for.
    pub slot: Option<DateTime<Utc>>,
    /// 1 for a first try.
    pub attempt: u32,
}

/// The first slot whose due time (slot + jitter) is after `now`: a slot
/// that has passed but whose jittered start is still ahead is kept, so a
/// restart or reload between the two does not drop that run.
pub fn first_due_after(p: &Policy, kind: JobKind, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let jitter = chrono::Duration::from_std(p.schedule.jitter.to_std()).unwrap_or_default();
    let mut after = now - jitter - chrono::Duration::milliseconds(1);
    // Slots in the jitter window whose own delay already passed are skipped;
    // a jitter far longer than the interval is bounded here.
    for _ in 0..10_000 {
        let (slot, due) = next_slot(p, kind, after)?;
        if due > now {
            return Some((slot, due));
        }
        after = slot;
    }
    next_slot(p, kind, now)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Due {
    slot: DateTime<Utc>,
    due: DateTime<Utc>,
}

#[derive(Debug)]
struct Queued {
    policy: String,
    kind: JobKind,
    trigger: Trigger,
    slot: Option<DateTime<Utc>>,
    attempt: u32,
    not_before: DateTime<Utc>,
}

/// What became of a request to run a job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    Queued,
    /// The same job was already waiting.
    AlreadyQueued,
}

#[derive(Debug)]
pub struct Engine {
    policies: BTreeMap<String, Arc<Policy>>,
    schedules: BTreeMap<(String, JobKind), Due>,
    queue: Vec<Queued>,
    /// Policy name → (kind, repository URL) of its running job.
    running: HashMap<String, (JobKind, String)>,
    limits: Limits,
    stopping: bool,
}

impl Engine {
    pub fn new(limits: Limits) -> Engine {
        Engine {
            policies: BTreeMap::new(),
            schedules: BTreeMap::new(),
            queue: Vec::new(),
            running: HashMap::new(),
            limits: Limits { max_jobs: limits.max_jobs.max(1), max_per_repo: limits.max_per_repo.max(1) },
            stopping: false,
        }
    }

    /// Takes a (new) set of policies: at start-up and on reload. Schedules
    /// are computed from `now`; slots missed while the daemon was down are
    /// queued once (see the module doc). Jobs of policies that are gone
    /// stay running but are not queued any more.
    pub fn load(&mut self, policies: Vec<Policy>, state: &State, now: DateTime<Utc>) {
        let first_load = self.policies.is_empty() && self.schedules.is_empty();
        let new: BTreeMap<String, Arc<Policy>> = policies.into_iter().map(|p| (p.name.clone(), Arc::new(p))).collect();
        // Policies removed since the last load show no next run any more.
        for gone in self.policies.keys().filter(|n| !new.contains_key(*n)) {
            for kind in JobKind::ALL {
                persist("a removed policy", state.clear_next_due(gone, kind));
            }
        }
        self.policies = new;
        self.queue.retain(|q| self.policies.contains_key(&q.policy));
        let mut schedules = BTreeMap::new();
        let policies: Vec<Arc<Policy>> = self.policies.values().cloned().collect();
        for p in &policies {
            let name = &p.name;
            for kind in JobKind::ALL {
                let Some((slot, due)) = first_due_after(p, kind, now) else {
                    // Loaded without this schedule: it shows no next run.
                    persist("a removed schedule", state.clear_next_due(name, kind));
                    continue;
                };
                let key = (name.clone(), kind);
                // On start-up the remembered due time tells what was missed;
                // on reload the engine's own schedule does (tick queues it).
                let remembered = if first_load {
                    state
                        .next_due(name, kind)
                        .unwrap_or_else(|e| {
                            tracing::error!(policy = %name, error = %e, "cannot read the remembered due time");
                            None
                        })
                        .map(|(slot, due)| Due { slot, due })
                } else {
                    self.schedules.get(&key).copied()
                };
                if let Some(missed) = remembered.filter(|r| r.due <= now) {
                    if !first_load || p.schedule.catch_up {
                        let trigger = if first_load { Trigger::CatchUp } else { Trigger::Schedule };
                        self.enqueue(name, kind, trigger, Some(missed.slot), 1, now);
                    }
                }
                persist("a next due time", state.set_next_due(name, kind, slot, due));
                schedules.insert(key, Due { slot, due });
            }
        }
        self.schedules = schedules;
    }

    /// Queues a run again at start-up: one the previous daemon started but
    /// never finished (it was killed, or its grace period ran out).
    pub fn rerun_interrupted(&mut self, policy: &str, kind: JobKind, slot: Option<DateTime<Utc>>, now: DateTime<Utc>) {
        let catch_up = self.policies.get(policy).is_some_and(|p| p.schedule.catch_up);
        if catch_up && !self.is_queued(policy, kind) {
            self.enqueue(policy, kind, Trigger::CatchUp, slot, 1, now);
        }
    }

    pub fn policies(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.policies.values()
    }

    pub fn policy(&self, name: &str) -> Option<&Arc<Policy>> {
        self.policies.get(name)
    }

    fn is_queued(&self, policy: &str, kind: JobKind) -> bool {
        self.queue.iter().any(|q| q.policy == policy && q.kind == kind)
    }

    fn enqueue(
        &mut self,
        policy: &str,
        kind: JobKind,
        trigger: Trigger,
        slot: Option<DateTime<Utc>>,
        attempt: u32,
        not_before: DateTime<Utc>,
    ) {
        self.queue.push(Queued { policy: policy.to_string(), kind, trigger, slot, attempt, not_before });
    }

    /// Queues a job asked for by `run-now`.
    pub fn request(&mut self, policy: &str, kind: JobKind, now: DateTime<Utc>) -> Requested {
        if self.is_queued(policy, kind) {
            return Requested::AlreadyQueued;
        }
        self.enqueue(policy, kind, Trigger::RunNow, None, 1, now);
        Requested::Queued
    }

    /// Queues what came due, and returns the jobs to start now (they count
    /// as running from here on).
    pub fn tick(&mut self, state: &State, now: DateTime<Utc>) -> Vec<JobSpec> {
        let due: Vec<(String, JobKind, Due)> = self
            .schedules
            .iter()
            .filter(|(_, d)| d.due <= now)
            .map(|((name, kind), d)| (name.clone(), *kind, *d))
            .collect();
        for (name, kind, d) in due {
            let busy = self.is_queued(&name, kind) || self.running.get(&name).is_some_and(|r| r.0 == kind);
            if busy {
                tracing::warn!(policy = %name, %kind, slot = %d.slot, "skipping a slot: the previous job has not finished");
            } else {
                self.enqueue(&name, kind, Trigger::Schedule, Some(d.slot), 1, now);
            }
            let p = &self.policies[&name];
            let next = first_due_after(p, kind, now).filter(|(slot, _)| *slot > d.slot);
            match next.or_else(|| next_slot(p, kind, now.max(d.slot))) {
                Some((slot, due)) => {
                    persist("a next due time", state.set_next_due(&name, kind, slot, due));
                    self.schedules.insert((name, kind), Due { slot, due });
                }
                None => {
                    persist("a finished schedule", state.clear_next_due(&name, kind));
                    self.schedules.remove(&(name, kind));
                }
            }
        }
        if self.stopping {
            return Vec::new();
        }
        let mut starts = Vec::new();
        let mut i = 0;
        while i < self.queue.len() {
            if self.running.len() >= self.limits.max_jobs {
                break;
            }
            let q = &self.queue[i];
            let Some(policy) = self.policies.get(&q.policy).cloned() else {
                self.queue.remove(i);
                continue;
            };
            let repo = &policy.repository.url;
            let on_repo = self.running.values().filter(|(_, r)| r == repo).count();
            if q.not_before > now || self.running.contains_key(&q.policy) || on_repo >= self.limits.max_per_repo {
                i += 1;
                continue;
            }
            let q = self.queue.remove(i);
            self.running.insert(q.policy.clone(), (q.kind, repo.clone()));
            starts.push(JobSpec { policy, kind: q.kind, trigger: q.trigger, slot: q.slot, attempt: q.attempt });
        }
        starts
    }

    /// Records the end of a job; queues a retry of a failed backup.
    pub fn finished(&mut self, job: &JobSpec, ok: bool, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.running.remove(&job.policy.name);
        let p = self.policies.get(&job.policy.name)?.clone();
        if ok || job.kind != JobKind::Backup || self.stopping || job.attempt > p.schedule.retries {
            return None;
        }
        let delay = retry_delay(p.schedule.retry_delay.to_std(), job.attempt);
        let at = now + chrono::Duration::from_std(delay).unwrap_or_default();
        if !self.is_queued(&p.name, job.kind) {
            self.enqueue(&p.name, job.kind, Trigger::Retry, job.slot, job.attempt + 1, at);
        }
        Some(at)
    }

    /// When the loop must look again: the earliest due time or delayed
    /// queued job (a retry). A job that waits only for a lock or a limit
    /// does not count: the end of the job it waits for wakes the loop, and
    /// counting it would spin the loop while it waits. `None` when nothing
    /// is scheduled or delayed.
    pub fn next_wakeup(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let dues = self.schedules.values().map(|d| d.due);
        let delayed = self.queue.iter().map(|q| q.not_before).filter(|t| *t > now);
        let delayed = if self.stopping { None } else { delayed.min() };
        dues.chain(delayed).min()
    }

    /// Stops starting jobs; returns how many still run.
    pub fn stop(&mut self) -> usize {
        self.stopping = true;
        self.running.len()
    }

    pub fn running_count(&self) -> usize {
        self.running.len()
    }

    #[cfg(test)]
    /// The (policy, kind) pairs waiting to start.
    pub fn queued(&self) -> Vec<(String, JobKind, Trigger)> {
        self.queue.iter().map(|q| (q.policy.clone(), q.kind, q.trigger)).collect()
    }
}

/// Runs a state write; a failure is logged, never the scheduler's end (a
/// full disk must not stop the jobs that run, and the write is redone at
/// the next change).
fn persist(what: &str, r: Result<()>) {
    if let Err(e) = r {
        tracing::error!(error = %e, "the state database could not record {what}");
    }
}

/// The delay before retry number `attempt` (1 = the first retry).
pub fn retry_delay(base: std::time::Duration, attempt: u32) -> std::time::Duration {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(MAX_RETRY_DELAY)
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
