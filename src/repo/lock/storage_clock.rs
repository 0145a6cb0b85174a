//! Judging locks by the storage's own clock, for prune: which locks are
//! live must not depend on any host's clock (see [`judge_by_storage`]).

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::host::hostname;
use crate::id::Id;
use crate::repo::Repository;

use super::{list_locks, this_host_ref, FoundState, LockInfo, Staleness, MAX_CLOCK_SKEW};

/// The live locks under `dir` as a prune must judge them, by no host's
/// clock: a lock is live unless the storage last wrote it more than
/// [`STALE_AFTER`](super::STALE_AFTER) ago by the storage's own clock ([`storage_clock`]), or
/// its process is gone from this host. A refresh is seen as a refresh
/// whatever the holder's clock says, and a prune's wrong clock ages no
/// lock. The time a lock says is not trusted either way: one dated in the
/// future still counts, and is named [`Staleness::Future`] in the second
/// list (with the other locks that do not count). Returns the storage's
/// time of the judgement too, for the marks.
pub fn judge_by_storage(repo: &Repository, dir: &str) -> Result<StorageJudgement> {
    let listed = list_locks(repo, dir, None)?;
    let now = storage_clock(repo);
    let host_name = hostname();
    let host = this_host_ref(&host_name);
    let mut out = StorageJudgement { now, live: Vec::new(), suspicious: Vec::new() };
    for f in listed.into_iter().map(|l| l.judged(|i, stored| i.staleness_by_storage(stored, now, &host))) {
        if let FoundState::Live(i) = f.state {
            let ahead = (i.refreshed.max(i.time) - now).to_std().unwrap_or_default();
            if ahead > MAX_CLOCK_SKEW {
                out.suspicious.push((f.key, i.clone(), Staleness::Future { minutes: (ahead.as_secs() / 60) as i64 }));
            }
            out.live.push(i);
        }
    }
    Ok(out)
}

/// What [`judge_by_storage`] found.
#[derive(Debug)]
pub struct StorageJudgement {
    /// The storage's time when the locks were judged.
    pub now: DateTime<Utc>,
    /// The locks that count.
    pub live: Vec<LockInfo>,
    /// Live locks whose own time is wrong: they count all the same.
    pub suspicious: Vec<(String, LockInfo, Staleness)>,
}

/// Where [`storage_clock`] writes its probe, outside the lock directories'
/// own listings (no lock id parses from `clock/<id>`).
pub const CLOCK_PROBES: &str = "locks/clock";

/// The storage's own clock, which stamps every object it stores: the S3
/// server's (the `Date` of its latest response), or, for storage without a
/// clock of its own (a local or NFS directory), the modification time the
/// file system gives a probe file written now, which is the clock that
/// stamps lock files as they are refreshed. The probe is removed at once
/// (and a killed prune's leftovers by the next). Falls back to this host's
/// clock, with a warning, only where neither can be read (a read-only
/// credential's dry run).
pub fn storage_clock(repo: &Repository) -> DateTime<Utc> {
    if let Some(t) = repo.backend().server_time() {
        return t;
    }
    match probe_file_system_clock(repo) {
        Ok(Some(t)) => t,
        Ok(None) => crate::host::now(),
        Err(e) => {
            repo.warn(format!("could not read the storage's clock ({e}); this host's clock judges locks and marks"));
            crate::host::now()
        }
    }
}

fn probe_file_system_clock(repo: &Repository) -> Result<Option<DateTime<Utc>>> {
    let b = repo.backend();
    let key = format!("{CLOCK_PROBES}/{}", Id::random());
    b.put_mutable(&key, b"")?;
    let listed = b.list(&format!("{CLOCK_PROBES}/"));
    let _ = b.delete(&key);
    let listed = listed?;
    let Some(now) = listed.iter().find(|o| o.key == key).and_then(|o| o.modified) else { return Ok(None) };
    for o in &listed {
        if o.key != key && o.modified.is_some_and(|m| now - m > chrono::Duration::hours(1)) {
            let _ = b.delete(&o.key); // a killed prune's probe
        }
    }
    Ok(Some(now))
}
