//! What killed processes leave behind: temporary files and dead locks.
//!
//! A write killed between creating its temporary and renaming it leaves a
//! `.tmp-*` file (local backend); a process killed while holding a lock
//! leaves its lock. Neither harms the repository — listings skip
//! temporaries, and stale locks are ignored — but they pile up. `check`
//! reports them ([`survey`]). The next backup, prune or `cairn unlock`
//! removes temporaries older than [`TEMP_MAX_AGE`] ([`sweep`]); younger
//! ones may belong to a write in progress. The locks of processes gone from
//! this host are removed by whoever next takes a lock in their directory
//! ([`lock::Claim::look`]); other hosts' locks are judged by `cairn unlock`.

use std::time::{Duration, SystemTime};

use chrono::Utc;
use serde::Serialize;

use crate::error::Result;

use super::lock::{self, FoundState};
use super::Repository;

/// Temporaries older than this are removed; a write takes seconds.
pub const TEMP_MAX_AGE: Duration = Duration::from_secs(60 * 60);

/// A temporary file, for `check`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Temporary {
    pub object: String,
    pub size: u64,
    /// Minutes since it was last written.
    pub age_minutes: u64,
}

/// A lock that no longer counts, for `check`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StaleLock {
    pub object: String,
    /// Its holder, when it can be read.
    pub holder: Option<String>,
    pub reason: String,
    /// Its time is in the future, or it does not open: forged or broken.
    pub suspicious: bool,
}

/// Litter found by [`survey`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Litter {
    pub temporaries: Vec<Temporary>,
    pub stale_locks: Vec<StaleLock>,
}

/// Lists temporaries and stale or unreadable locks; changes nothing.
pub fn survey(repo: &Repository) -> Result<Litter> {
    let now = SystemTime::now();
    let temporaries = repo
        .backend()
        .leftovers()?
        .into_iter()
        .map(|l| Temporary {
            object: l.key,
            size: l.size,
            age_minutes: now.duration_since(l.modified).unwrap_or_default().as_secs() / 60,
        })
        .collect();
    let host_name = crate::host::hostname();
    let host = lock::Host { name: &host_name, alive: &crate::host::process_alive };
    let mut stale_locks = Vec::new();
    for dir in lock::LOCK_DIRS {
        for f in lock::find_locks(repo, dir, None, Utc::now(), &host)? {
            match f.state {
                FoundState::Live(_) => {}
                FoundState::Stale(info, why) => stale_locks.push(StaleLock {
                    object: f.key,
                    holder: Some(info.describe()),
                    suspicious: why.is_suspicious(),
                    reason: why.to_string(),
                }),
                FoundState::Unreadable => stale_locks.push(StaleLock {
                    object: f.key,
                    holder: None,
                    suspicious: true,
                    reason: "suspicious: it does not open with this repository's key".into(),
                }),
            }
        }
    }
    Ok(Litter { temporaries, stale_locks })
}

/// What [`sweep`] removed, and what it could not.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Swept {
    pub temporaries: Vec<String>,
    /// Removals that failed, as messages; the sweep goes on past them.
    pub failed: Vec<String>,
}

/// Removes temporaries older than [`TEMP_MAX_AGE`]. Best effort: a
/// failure is recorded in [`Swept::failed`] and does not stop the caller's
/// work. A backend without temporaries (S3) makes no request.
pub fn sweep(repo: &Repository) -> Swept {
    sweep_older_than(repo, TEMP_MAX_AGE)
}

/// What `cairn unlock` did.
#[derive(Debug, Default, Serialize)]
pub struct UnlockOutcome {
    #[serde(flatten)]
    pub locks: lock::UnlockReport,
    /// Temporaries older than [`TEMP_MAX_AGE`] removed.
    pub temporaries: Vec<String>,
    pub failed: Vec<String>,
}

/// `cairn unlock`: removes stale locks (every lock but a running one of
/// this host with `remove_all`), and old temporaries.
pub fn unlock(repo: &Repository, remove_all: bool) -> Result<UnlockOutcome> {
    let locks = lock::remove_stale(repo, remove_all)?;
    let swept = sweep(repo);
    Ok(UnlockOutcome { locks, temporaries: swept.temporaries, failed: swept.failed })
}

fn sweep_older_than(repo: &Repository, max_age: Duration) -> Swept {
    let mut out = Swept::default();
    let now = SystemTime::now();
    match repo.backend().leftovers() {
        Ok(list) => {
            for l in list {
                if now.duration_since(l.modified).unwrap_or_default() <= max_age {
                    continue;
                }
                match repo.backend().delete_leftover(&l.key) {
                    Ok(()) => out.temporaries.push(l.key),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => out.failed.push(e.to_string()),
                }
            }
        }
        Err(e) => out.failed.push(e.to_string()),
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::LocalBackend;
    use crate::crypto::KdfParams;
    use crate::repo::InitOptions;

    #[test]
    fn old_temporaries_are_swept_and_young_ones_stay() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("repo");
        let opts = InitOptions { kdf: KdfParams::CHEAPEST, ..Default::default() };
        let repo = Repository::init(Arc::new(LocalBackend::new(&root)), b"pw", opts).unwrap();
        std::fs::create_dir_all(root.join("data/ab")).unwrap();
        let old = root.join("data/ab/.tmp-old");
        std::fs::write(&old, vec![0u8; 1000]).unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
        std::fs::File::options().write(true).open(&old).unwrap().set_modified(two_hours_ago).unwrap();
        std::fs::create_dir_all(root.join("index")).unwrap();
        std::fs::write(root.join("index/.tmp-young"), b"x").unwrap();

        let found = survey(&repo).unwrap();
        let objects: Vec<(&str, u64)> = found.temporaries.iter().map(|t| (t.object.as_str(), t.size)).collect();
        assert_eq!(objects, [("data/ab/.tmp-old", 1000), ("index/.tmp-young", 1)]);
        assert!(found.temporaries[0].age_minutes >= 119);
        assert!(found.stale_locks.is_empty());

        let swept = sweep(&repo);
        assert_eq!(swept.temporaries, ["data/ab/.tmp-old"]);
        assert!(swept.failed.is_empty(), "{:?}", swept.failed);
        assert!(!old.exists());
        assert!(root.join("index/.tmp-young").exists(), "a young temporary may be a write in progress");
    }
}
