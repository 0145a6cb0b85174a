//! Repository locks: shared for backups, exclusive for prune.
//!
//! A lock is a small sealed object `locks/<random id>` naming its holder
//! (host, pid, user), whether it is exclusive, and when it was last
//! refreshed. To take a lock, write yours, then list the others: a shared
//! lock fails if a live exclusive lock exists, an exclusive lock fails if
//! any other live lock exists, and a loser deletes its own lock. Since both
//! sides write before they look, two that race both see each other, so at
//! worst both back off; never do both proceed.
//!
//! A lock is stale — and ignored — when it was not refreshed for
//! [`STALE_AFTER`], or when it was taken on this host by a process that no
//! longer exists (a crashed backup). Holders refresh their lock every
//! [`REFRESH_EVERY`] from a background thread, and remove it when done.
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
use crate::id::Id;

use super::{keys, Repository};

pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// Where the repository's shared and exclusive locks live.
pub const REPOSITORY_LOCKS: &str = "locks";

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
}

impl LockInfo {
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        let age = (now - self.refreshed).to_std().unwrap_or_default();
        if age > STALE_AFTER {
            return true;
        }
        // Same host: the process must still exist.
        self.hostname == keys::hostname() && !process_alive(self.pid)
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
}

/// Whether a process exists on this host (one of another user counts).
pub(crate) fn process_alive(pid: u32) -> bool {
    // kill(pid, 0): ESRCH means gone; EPERM means it exists (another user).
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) => true,
        Err(e) => e != nix::errno::Errno::ESRCH,
    }
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

/// All live locks under `dir` other than `except`.
pub fn live_locks_in(repo: &Repository, dir: &str, except: Option<Id>) -> Result<Vec<(Id, LockInfo)>> {
    let now = Utc::now();
    let mut out = Vec::new();
    for id in repo.list_ids(dir)? {
        if Some(id) == except {
            continue;
        }
        let info = match repo.backend().get(&format!("{dir}/{id}")) {
            Ok(b) => match repo.key().open(&b).ok().and_then(|p| serde_json::from_slice::<LockInfo>(&p).ok()) {
                Some(i) => i,
                None => continue, // unreadable lock: not ours to honour
            },
            Err(e) if e.is_not_found() => continue, // removed meanwhile
            Err(e) => return Err(e.into()),
        };
        if !info.is_stale(now) {
            out.push((id, info));
        }
    }
    Ok(out)
}

fn write_lock(repo: &Repository, key: &str, info: &LockInfo) -> Result<()> {
    let sealed = repo.key().seal(&serde_json::to_vec(info).expect("lock serialises"));
    repo.backend().put_mutable(key, &sealed)?;
    Ok(())
}

/// Takes a repository lock for `purpose`; exclusive locks exclude every other lock.
pub fn acquire(repo: &Repository, exclusive: bool, purpose: &str) -> Result<Lock> {
    acquire_in(repo, REPOSITORY_LOCKS, exclusive, purpose)
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
    let id = Id::random();
    let object = format!("{dir}/{id}");
    let now = Utc::now();
    let info = LockInfo {
        exclusive,
        hostname: keys::hostname(),
        username: keys::username(),
        pid: std::process::id(),
        time: now,
        refreshed: now,
        purpose: purpose.to_string(),
    };
    write_lock(repo, &object, &info)?;
    let others = live_locks_in(repo, dir, Some(id));
    let conflict = match &others {
        Ok(o) => o.iter().find(|(_, l)| exclusive || l.exclusive).map(|(_, l)| l.describe()),
        Err(_) => None,
    };
    if conflict.is_some() || others.is_err() {
        let _ = repo.backend().delete(&object);
        others?;
        return Err(Error::Locked { holder: conflict.unwrap_or_default() });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let refresher = {
        let stop = stop.clone();
        let repo = repo.clone();
        let mut info = info.clone();
        let object = object.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::park_timeout(REFRESH_EVERY);
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                info.refreshed = Utc::now();
                if let Err(e) = write_lock(&repo, &object, &info) {
                    tracing::warn!("could not refresh lock {}: {e}", id.short());
                }
            }
        })
    };
    Ok(Lock { key: object, backend: repo.backend().clone(), stop, refresher: Some(refresher) })
}
