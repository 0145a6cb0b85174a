//! Repository locks: shared for backups, exclusive among prunes.
//!
//! A lock is a small sealed object `locks/<random id>` naming its holder
//! (host, pid, user), whether it is exclusive, and when it was last
//! refreshed. To take a lock, write yours, then list the others: a shared
//! lock fails if a live exclusive lock exists, an exclusive lock fails if
//! any other live lock exists, and a loser deletes its own lock. Since both
//! sides write before they look, two that race both see each other, so at
//! worst both back off; never do both proceed ([`Claim`] exposes the steps,
//! and the tests drive every interleaving of two takers).
//!
//! Backups, forgets and drills take shared locks under [`REPOSITORY_LOCKS`];
//! no one takes an exclusive lock there any more (builds before two-phase
//! prune did, for prune, and their exclusive locks are still honoured).
//! Prunes exclude each other only, with an exclusive lock under
//! [`PRUNE_LOCKS`] ([`acquire_prune`]): a prune never waits for a backup,
//! nor a backup for a prune. What keeps a backup's data safe from a prune
//! running beside it is the two-phase deletion of `crate::prune::gc`: a
//! backup's lock names the marks it honours ([`LockInfo::marks`]), and a
//! prune deletes the packs of a mark only when every live lock under
//! [`REPOSITORY_LOCKS`] names it (a forget's and a prune's excepted).
//!
//! A lock is stale — and ignored — when it was not refreshed for
//! [`STALE_AFTER`], when it was taken on this host by a process that no
//! longer exists (a crashed backup), or when its time is more than
//! [`MAX_CLOCK_SKEW`] in the future: no honest holder writes that, so it is
//! also named suspicious. A lock that does not open with the repository key
//! is ignored too. A prune deciding what it may delete judges otherwise, by
//! the storage's clock alone ([`judge_by_storage`]): there no host's clock,
//! the prune's or the holder's, may make a running backup's lock not count. Holders refresh their lock every [`REFRESH_EVERY`] from
//! a background thread, and remove it when done. Whoever takes a lock
//! removes the locks of dead processes of this host that it sees (a killed
//! backup's), so they do not pile up. [`remove_stale`] (`cairn unlock`)
//! removes stale locks, or every lock but a live one of this host.
//!
//! Locks live in a directory: the repository's own under [`REPOSITORY_LOCKS`]
//! ([`acquire`]), and other families elsewhere ([`acquire_in`]), such as the
//! evidence chain's append lock, which must neither wait for nor block
//! backups and prune.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::host::{hostname, process_alive, username};
use crate::id::Id;

use super::Repository;

pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// How far in the future a lock's time may be, for clocks that disagree a
/// little, before the lock counts as stale and suspicious.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// A live lock on another host that was not refreshed for this long looks
/// stale: its holder missed a refresh.
pub const LOOKS_STALE_AFTER: Duration = Duration::from_secs(2 * REFRESH_EVERY.as_secs());
/// Where the repository's shared locks (backups, forgets, drills, prunes)
/// live, and the exclusive locks of prunes made before two-phase prune.
pub const REPOSITORY_LOCKS: &str = "locks";
/// Where prunes take their exclusive lock, which excludes other prunes only.
pub const PRUNE_LOCKS: &str = "locks/prune";
/// What a prune's locks say they are for.
pub const PRUNE_PURPOSE: &str = "prune";
/// What a forget's lock says it is for.
pub const FORGET_PURPOSE: &str = "forget";
/// Where the evidence append lock lives (`crate::evidence::LOCKS_DIR`):
/// under `locks/`, the one prefix whose objects may be replaced and deleted.
pub const EVIDENCE_LOCKS: &str = "locks/evidence";
/// Where builds before the no-overwrite rule kept the evidence append lock;
/// still looked at, so that their leftovers are judged and removed.
pub const LEGACY_EVIDENCE_LOCKS: &str = "evidence/locks";
/// Every directory of locks in a repository (the evidence append lock's included).
pub const LOCK_DIRS: [&str; 4] = [REPOSITORY_LOCKS, PRUNE_LOCKS, EVIDENCE_LOCKS, LEGACY_EVIDENCE_LOCKS];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub exclusive: bool,
    pub hostname: String,
    pub username: String,
    pub pid: u32,
    pub time: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
    /// What holds it: "backup", "prune"…
    pub purpose: String,
    /// The prune marks its holder honours (`crate::repo::marks`): a
    /// backup leaves their packs out of its index. `None` in the locks of
    /// forgets, drills, prunes and of builds before two-phase prune.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marks: Option<Vec<Id>>,
}

/// Why a lock no longer counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Staleness {
    /// Not refreshed for longer than [`STALE_AFTER`].
    Old { minutes: i64 },
    /// Taken on this host by a process that is gone.
    DeadProcess { pid: u32 },
    /// Its time or refresh time is more than [`MAX_CLOCK_SKEW`] ahead of
    /// this host's clock: suspicious.
    Future { minutes: i64 },
}

impl Staleness {
    /// Whether the lock looks forged or written by a badly wrong clock.
    pub fn is_suspicious(&self) -> bool {
        matches!(self, Staleness::Future { .. })
    }
}

impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Staleness::Old { minutes } => write!(f, "not refreshed for {minutes} min"),
            Staleness::DeadProcess { pid } => write!(f, "its process {pid} on this host is gone"),
            Staleness::Future { minutes } => {
                write!(f, "suspicious: its time is {minutes} min in the future (a forged lock, or a wrong clock)")
            }
        }
    }
}

/// The host a lock judgement is made on: its name, and whether a process
/// exists there.
pub struct Host<'a> {
    pub name: &'a str,
    pub alive: &'a dyn Fn(u32) -> bool,
}

impl LockInfo {
    /// Why the lock is stale at `now` on `host`, or `None` when it is live.
    pub fn staleness(&self, now: DateTime<Utc>, host: &Host<'_>) -> Option<Staleness> {
        let ahead = (self.refreshed.max(self.time) - now).to_std().unwrap_or_default();
        if ahead > MAX_CLOCK_SKEW {
            return Some(Staleness::Future { minutes: (ahead.as_secs() / 60) as i64 });
        }
        let age = (now - self.refreshed).to_std().unwrap_or_default();
        if age > STALE_AFTER {
            return Some(Staleness::Old { minutes: (age.as_secs() / 60) as i64 });
        }
        // Same host: the process must still exist.
        if self.hostname == host.name && !(host.alive)(self.pid) {
            return Some(Staleness::DeadProcess { pid: self.pid });
        }
        None
    }

    /// Why the lock is stale by the storage's clock: `stored` is when the
    /// storage last wrote it and `now` the storage's time, both by its own
    /// clock ([`judge_by_storage`]). The lock's own times are not looked at
    /// (a holder's wrong clock neither ages nor forges a lock here), unless
    /// the storage does not say when it stored the lock.
    pub fn staleness_by_storage(
        &self,
        stored: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        host: &Host<'_>,
    ) -> Option<Staleness> {
        let Some(stored) = stored else { return self.staleness(now, host) };
        let age = (now - stored).to_std().unwrap_or_default();
        if age > STALE_AFTER {
            return Some(Staleness::Old { minutes: (age.as_secs() / 60) as i64 });
        }
        if self.hostname == host.name && !(host.alive)(self.pid) {
            return Some(Staleness::DeadProcess { pid: self.pid });
        }
        None
    }

    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        self.staleness(now, &this_host_ref(&hostname())).is_some()
    }

    pub fn describe(&self) -> String {
        format!(
            "{} of {}@{} (pid {}, since {})",
            self.purpose,
            self.username,
            self.hostname,
            self.pid,
            self.time.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }

    /// How to get past this live lock, for the hint of [`Error::Locked`].
    pub fn remedy(&self, now: DateTime<Utc>, host: &Host<'_>) -> String {
        if self.hostname == host.name {
            return format!(
                "wait for process {} on this host ({}) to finish, or stop it; `cairn unlock` never removes the lock \
                 of a running process",
                self.pid, self.purpose
            );
        }
        let silent = (now - self.refreshed).to_std().unwrap_or_default();
        let stale_at = self.refreshed + chrono::Duration::from_std(STALE_AFTER).expect("small duration");
        if silent > LOOKS_STALE_AFTER {
            format!(
                "it looks stale: {} has not refreshed it for {} min. If that {} is no longer running, \
                 `cairn unlock --remove-all` removes the lock now; otherwise it counts as stale from {}",
                self.hostname,
                silent.as_secs() / 60,
                self.purpose,
                stale_at.format("%H:%M UTC")
            )
        } else {
            format!(
                "wait for the {} on {} to finish. If that host is down, its lock counts as stale from {}, or \
                 `cairn unlock --remove-all` removes it now (make sure nothing runs there)",
                self.purpose,
                self.hostname,
                stale_at.format("%H:%M UTC")
            )
        }
    }
}

pub(super) fn this_host_ref(name: &str) -> Host<'_> {
    Host { name, alive: &process_alive }
}

/// One lock object as found in storage.
#[derive(Debug, Clone)]
pub struct Found {
    pub id: Id,
    /// Its object key, `<dir>/<id>`.
    pub key: String,
    pub state: FoundState,
}

#[derive(Debug, Clone)]
pub enum FoundState {
    Live(LockInfo),
    Stale(LockInfo, Staleness),
    /// It does not open with the repository key, or does not parse.
    Unreadable,
}

/// Every lock under `dir` (other than `except`), judged at `now` on `host`
/// by the times the locks say.
pub fn find_locks(
    repo: &Repository,
    dir: &str,
    except: Option<Id>,
    now: DateTime<Utc>,
    host: &Host<'_>,
) -> Result<Vec<Found>> {
    let listed = list_locks(repo, dir, except)?;
    Ok(listed.into_iter().map(|l| l.judged(|i, _| i.staleness(now, host))).collect())
}

/// A lock object read from storage, not judged yet.
pub(super) struct Listed {
    id: Id,
    key: String,
    /// When the storage last wrote it, by the storage's clock.
    stored: Option<DateTime<Utc>>,
    info: Option<LockInfo>,
}

impl Listed {
    pub(super) fn judged(self, staleness: impl Fn(&LockInfo, Option<DateTime<Utc>>) -> Option<Staleness>) -> Found {
        let state = match self.info {
            Some(i) => match staleness(&i, self.stored) {
                None => FoundState::Live(i),
                Some(s) => FoundState::Stale(i, s),
            },
            None => FoundState::Unreadable,
        };
        Found { id: self.id, key: self.key, state }
    }
}

/// Lists and reads the locks directly under `dir` (other than `except`).
pub(super) fn list_locks(repo: &Repository, dir: &str, except: Option<Id>) -> Result<Vec<Listed>> {
    let prefix = format!("{dir}/");
    let mut out = Vec::new();
    for o in repo.backend().list(&prefix)? {
        let Some(id) = o.key.strip_prefix(&prefix).and_then(|n| n.parse::<Id>().ok()) else { continue };
        if Some(id) == except {
            continue;
        }
        let info = match repo.backend().get(&o.key) {
            Ok(b) => repo.key().open(&b).ok().and_then(|p| serde_json::from_slice::<LockInfo>(&p).ok()),
            Err(e) if e.is_not_found() => continue, // removed meanwhile
            Err(e) => return Err(e.into()),
        };
        out.push(Listed { id, key: o.key, stored: o.modified, info });
    }
    Ok(out)
}

/// All live locks under `dir` other than `except`.
pub fn live_locks_in(repo: &Repository, dir: &str, except: Option<Id>) -> Result<Vec<(Id, LockInfo)>> {
    let host = hostname();
    Ok(find_locks(repo, dir, except, crate::host::now(), &this_host_ref(&host))?
        .into_iter()
        .filter_map(|f| match f.state {
            FoundState::Live(i) => Some((f.id, i)),
            _ => None,
        })
        .collect())
}

/// A held lock; dropping it stops the refresher and removes the lock.
pub struct Lock {
    /// The lock's object key, `<dir>/<id>`.
    key: String,
    backend: Arc<dyn crate::backend::Backend>,
    stop: Arc<AtomicBool>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.key.is_empty() {
            return; // taken on a read-only view: nothing was written
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.refresher.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        let _ = self.backend.delete(&self.key);
    }
}

fn write_lock(repo: &Repository, key: &str, info: &LockInfo) -> Result<()> {
    let sealed = repo.key().seal(&serde_json::to_vec(info).expect("lock serialises"));
    repo.backend().put_mutable(key, &sealed)?;
    Ok(())
}

/// Takes a repository lock for `purpose`; exclusive locks exclude every other lock.
/// Takes a repository lock. When the repository handle has a
/// [`LockWait`] (`--retry-lock`, the daemon's jobs), a live lock in the way
/// is waited for ([`wait::acquire_waiting`]); otherwise it fails at once.
pub fn acquire(repo: &Repository, exclusive: bool, purpose: &str) -> Result<Lock> {
    match repo.lock_wait() {
        Some(w) => {
            wait::acquire_waiting(w, &mut wait::SystemClock, || acquire_in(repo, REPOSITORY_LOCKS, exclusive, purpose))
        }
        None => acquire_in(repo, REPOSITORY_LOCKS, exclusive, purpose),
    }
}

/// Takes a lock among those under `dir` only; locks elsewhere are not
/// looked at, and do not see this one.
pub fn acquire_in(repo: &Repository, dir: &str, exclusive: bool, purpose: &str) -> Result<Lock> {
    if repo.backend().is_read_only() {
        // A view of the past (`--as-of`) cannot be written, and no prune
        // changes the past: there is nothing to lock.
        let stop = Arc::new(AtomicBool::new(true));
        return Ok(Lock { key: String::new(), backend: repo.backend().clone(), stop, refresher: None });
    }
    let claim = Claim::write(repo, dir, exclusive, purpose)?;
    let verdict = claim.look();
    claim.settle(verdict)
}

/// Takes a shared repository lock for a backup that honours `marks`,
/// named in the lock ([`LockInfo::marks`]); waits like [`acquire`].
pub fn acquire_honouring(repo: &Repository, purpose: &str, marks: Vec<Id>) -> Result<Lock> {
    let attempt = || {
        if repo.backend().is_read_only() {
            return acquire_in(repo, REPOSITORY_LOCKS, false, purpose);
        }
        let claim = Claim::write_with(repo, REPOSITORY_LOCKS, false, purpose, Some(marks.clone()))?;
        let verdict = claim.look();
        claim.settle(verdict)
    };
    match repo.lock_wait() {
        Some(w) => wait::acquire_waiting(w, &mut wait::SystemClock, attempt),
        None => attempt(),
    }
}

/// Takes a prune's locks: an exclusive one among prunes ([`PRUNE_LOCKS`]),
/// and a shared one under [`REPOSITORY_LOCKS`], which keeps out the prunes
/// of builds before two-phase prune (they take an exclusive lock there)
/// and waits for one that holds it. Waits like [`acquire`].
pub fn acquire_prune(repo: &Repository) -> Result<PruneLock> {
    let attempt = || {
        let among_prunes = acquire_in(repo, PRUNE_LOCKS, true, PRUNE_PURPOSE)?;
        let shared = acquire_in(repo, REPOSITORY_LOCKS, false, PRUNE_PURPOSE)?;
        Ok(PruneLock { _among_prunes: among_prunes, _shared: shared })
    };
    match repo.lock_wait() {
        Some(w) => wait::acquire_waiting(w, &mut wait::SystemClock, attempt),
        None => attempt(),
    }
}

/// The two locks a prune holds ([`acquire_prune`]); dropping it releases both.
pub struct PruneLock {
    _among_prunes: Lock,
    _shared: Lock,
}

/// A lock being taken, one step at a time: [`Claim::write`] stores it,
/// [`Claim::look`] lists the others, [`Claim::settle`] keeps it or backs
/// off. [`acquire_in`] runs the three in a row; tests interleave them.
pub struct Claim<'r> {
    repo: &'r Repository,
    dir: String,
    id: Id,
    object: String,
    info: LockInfo,
}

/// What a claim saw when it looked.
pub struct Verdict(Result<Option<(LockInfo, String)>>);

impl<'r> Claim<'r> {
    /// Step 1: writes the lock object.
    pub fn write(repo: &'r Repository, dir: &str, exclusive: bool, purpose: &str) -> Result<Claim<'r>> {
        Claim::write_with(repo, dir, exclusive, purpose, None)
    }

    /// Step 1, for a holder that honours `marks` ([`LockInfo::marks`]).
    pub fn write_with(
        repo: &'r Repository,
        dir: &str,
        exclusive: bool,
        purpose: &str,
        marks: Option<Vec<Id>>,
    ) -> Result<Claim<'r>> {
        let id = Id::random();
        let object = format!("{dir}/{id}");
        let now = crate::host::now();
        let info = LockInfo {
            exclusive,
            hostname: hostname(),
            username: username(),
            pid: std::process::id(),
            time: now,
            refreshed: now,
            purpose: purpose.to_string(),
            marks,
        };
        write_lock(repo, &object, &info)?;
        Ok(Claim { repo, dir: dir.to_string(), id, object, info })
    }

    /// Step 2: lists the other locks and finds the first live one in the
    /// way. Locks of dead processes of this host are removed on the way
    /// (best effort: they are ignored anyway).
    pub fn look(&self) -> Verdict {
        let host_name = hostname();
        let host = this_host_ref(&host_name);
        let now = crate::host::now();
        Verdict(find_locks(self.repo, &self.dir, Some(self.id), now, &host).map(|found| {
            let mut conflict = None;
            for f in found {
                match f.state {
                    FoundState::Live(l) if conflict.is_none() && (self.info.exclusive || l.exclusive) => {
                        let remedy = l.remedy(now, &host);
                        conflict = Some((l, remedy));
                    }
                    FoundState::Stale(_, Staleness::DeadProcess { .. }) => {
                        let _ = self.repo.backend().delete(&f.key);
                    }
                    _ => {}
                }
            }
            conflict
        }))
    }

    /// Step 3: backs off (deletes the lock) if the look found a conflict or
    /// failed; otherwise starts refreshing it and hands it over.
    pub fn settle(self, verdict: Verdict) -> Result<Lock> {
        match verdict.0 {
            Ok(None) => {}
            Ok(Some((holder, remedy))) => {
                let _ = self.repo.backend().delete(&self.object);
                return Err(Error::Locked { holder: holder.describe(), remedy });
            }
            Err(e) => {
                let _ = self.repo.backend().delete(&self.object);
                return Err(e);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let refresher = {
            let stop = stop.clone();
            let repo = self.repo.clone();
            let mut info = self.info.clone();
            let object = self.object.clone();
            let id = self.id;
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::park_timeout(REFRESH_EVERY);
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    info.refreshed = crate::host::now();
                    if let Err(e) = write_lock(&repo, &object, &info) {
                        repo.warn(format!("could not refresh lock {}: {e}", id.short()));
                    }
                }
            })
        };
        Ok(Lock { key: self.object, backend: self.repo.backend().clone(), stop, refresher: Some(refresher) })
    }
}

/// What [`remove_stale`] did.
#[derive(Debug, Default, Serialize)]
pub struct UnlockReport {
    /// Locks removed, with why they did not count (or `live` with `--remove-all`).
    pub removed: Vec<RemovedLock>,
    /// Live locks left in place.
    pub kept: Vec<KeptLock>,
}

#[derive(Debug, Serialize)]
pub struct RemovedLock {
    pub object: String,
    /// The holder, when the lock could be read.
    pub holder: Option<String>,
    pub reason: String,
    pub suspicious: bool,
}

#[derive(Debug, Serialize)]
pub struct KeptLock {
    pub object: String,
    pub holder: String,
    /// True for a live lock of a running process on this host, which even
    /// `--remove-all` keeps.
    pub running_here: bool,
}

/// Removes the stale and unreadable locks of every lock directory; with
/// `remove_all`, also the live locks of other hosts. A live lock of a
/// process running on this host is always kept, and listed.
pub fn remove_stale(repo: &Repository, remove_all: bool) -> Result<UnlockReport> {
    let host_name = hostname();
    remove_stale_at(repo, remove_all, crate::host::now(), &this_host_ref(&host_name))
}

fn remove_stale_at(repo: &Repository, remove_all: bool, now: DateTime<Utc>, host: &Host<'_>) -> Result<UnlockReport> {
    let mut report = UnlockReport::default();
    for dir in LOCK_DIRS {
        for f in find_locks(repo, dir, None, now, host)? {
            let removed = match f.state {
                FoundState::Stale(info, why) => RemovedLock {
                    object: f.key.clone(),
                    holder: Some(info.describe()),
                    suspicious: why.is_suspicious(),
                    reason: why.to_string(),
                },
                FoundState::Unreadable => RemovedLock {
                    object: f.key.clone(),
                    holder: None,
                    suspicious: true,
                    reason: "suspicious: it does not open with this repository's key".into(),
                },
                FoundState::Live(info) => {
                    let running_here = info.hostname == host.name;
                    if !remove_all || running_here {
                        report.kept.push(KeptLock { object: f.key.clone(), holder: info.describe(), running_here });
                        continue;
                    }
                    RemovedLock {
                        object: f.key.clone(),
                        holder: Some(info.describe()),
                        suspicious: false,
                        reason: "live, removed with --remove-all".into(),
                    }
                }
            };
            match repo.backend().delete(&f.key) {
                Ok(()) => report.removed.push(removed),
                Err(e) if e.is_not_found() => {} // its holder released it meanwhile
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests;

mod storage_clock;
mod wait;
pub use storage_clock::{judge_by_storage, storage_clock, StorageJudgement, CLOCK_PROBES};
pub use wait::{LockWait, Waiting, DAEMON_LOCK_WAIT};
