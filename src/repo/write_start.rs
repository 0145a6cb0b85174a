//! How a writer starts (a backup, and a copy into its destination): the
//! shared lock that names the prune marks seen before it, then, at once,
//! what it needs before it stores anything.
//!
//! On remote storage each of those reads is a round trip: the marks seen
//! after the lock, the index files, `data/` (packs to adopt) and whatever
//! the caller needs beside them (a backup's snapshots, a copy's source
//! index). Once the lock is held, `data/` and the caller's reads go out
//! beside the marks and the index, so a start costs two round trips
//! instead of four.
//!
//! The order that stays: the lock is written first, then the marks are
//! listed (and read), and only then the index files. The proof in
//! `crate::prune::marking` needs the index listed after the marks: a mark
//! this listing does not see was removed only after its packs were deleted
//! and the index files naming them superseded, so an index listed later
//! cannot name them. Listed at the same time, the index could be the old
//! one (read from the cache, nothing vanishes) while the mark was already
//! gone, and the backup would refer to deleted packs. `data/` may be listed
//! at any time: a pack adopted from it is read from storage, and a
//! deleted one is skipped.

use std::collections::HashSet;

use crate::error::Result;
use crate::id::Id;

use super::index::{Index, IndexMode};
use super::load_index::PackFilter;
use super::lock::{self, Lock};
use super::writer::{adopt_unindexed_packs, AdoptReport};
use super::{marks, Repository};

/// What a writer holds once it has started.
pub struct Started {
    /// The shared lock; dropping it releases it.
    pub lock: Lock,
    /// The index to deduplicate against: without the packs of the prune
    /// marks seen before and after the lock (the writer stores again what
    /// only they hold), with the packs adopted.
    pub index: Index,
    pub adopted: AdoptReport,
}

/// Takes the shared lock for `purpose` honouring the marks listed before
/// it; then reads the marks again and, after them, the index, while
/// `data/` is listed and `beside()` runs.
pub fn start<T: Send>(repo: &Repository, purpose: &str, beside: impl FnOnce() -> T + Send) -> Result<(Started, T)> {
    let before = marks::list(repo)?;
    let lock = lock::acquire_honouring(repo, purpose, before.ids())?;
    let marks_then_index = || -> Result<(Index, HashSet<Id>)> {
        let after = marks::list(repo)?;
        let marked: HashSet<Id> = before.packs().union(&after.packs()).copied().collect();
        let filter = PackFilter { exclude: marked.clone(), demote: HashSet::new() };
        Ok((repo.load_index_filtered(IndexMode::Membership, &filter)?, marked))
    };
    let (index, (packs, beside)) =
        crate::pool::beside(marks_then_index, || crate::pool::beside(|| repo.backend().list("data/"), beside));
    let (mut index, marked) = index?;
    let adopted = adopt_unindexed_packs(repo, &mut index, &marked, packs?)?;
    Ok((Started { lock, index, adopted }, beside))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::backend::{Backend, BackendResult, LocalBackend, ObjectInfo};
    use crate::crypto::KdfParams;
    use crate::repo::InitOptions;

    /// Logs the listings made once a lock is written, and holds the marks'
    /// listing until `data/` and `snapshots/` were asked for: the reads
    /// meant to go beside it then have. A regression that lists the index
    /// on a thread of its own is then most likely to have asked for it too
    /// (that thread starts with the others), though not certain to.
    struct Watch {
        inner: Arc<dyn Backend>,
        log: Mutex<(bool, Vec<String>)>,
        changed: Condvar,
    }

    impl Watch {
        fn note(&self, event: String) {
            self.log.lock().unwrap().1.push(event);
            self.changed.notify_all();
        }
    }

    impl Backend for Watch {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
            self.inner.get(key)
        }
        fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
            self.inner.get_range(key, offset, length)
        }
        fn put(&self, key: &str, data: &[u8]) -> BackendResult<()> {
            self.inner.put(key, data)
        }
        fn put_mutable(&self, key: &str, data: &[u8]) -> BackendResult<()> {
            self.log.lock().unwrap().0 |= key.starts_with("locks/");
            self.inner.put_mutable(key, data)
        }
        fn list(&self, prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
            if !self.log.lock().unwrap().0 || prefix.starts_with("locks/") {
                return self.inner.list(prefix);
            }
            self.note(format!("start {prefix}"));
            if prefix == "marks/" {
                let beside = |l: &(bool, Vec<String>)| {
                    ["start data/", "start snapshots/"].iter().all(|w| l.1.iter().any(|e| e == w))
                };
                let log = self.log.lock().unwrap();
                let (log, _) =
                    self.changed.wait_timeout_while(log, Duration::from_secs(60), |l| !beside(l)).expect("watch lock");
                drop(log);
            }
            let r = self.inner.list(prefix);
            self.note(format!("end {prefix}"));
            r
        }
        fn delete(&self, key: &str) -> BackendResult<()> {
            self.inner.delete(key)
        }
        fn stat(&self, key: &str) -> BackendResult<u64> {
            self.inner.stat(key)
        }
    }

    /// Once the lock is held, `data/` and the caller's reads go out beside
    /// the marks, and the index is listed only after the marks' listing
    /// returned (review finding: listed at once, a backup could load an
    /// index that still named packs whose mark it no longer saw, because a
    /// prune had deleted both meanwhile).
    #[test]
    fn a_writer_lists_the_index_after_the_marks_and_the_rest_beside_them() {
        let d = tempfile::tempdir().unwrap();
        let opts = InitOptions { kdf: KdfParams::CHEAPEST, ..Default::default() };
        let mut repo = Repository::init(Arc::new(LocalBackend::new(d.path().join("repo"))), b"pw", opts).unwrap();
        let watch = Arc::new(Watch { inner: repo.backend().clone(), log: Mutex::default(), changed: Condvar::new() });
        repo.wrap_backend(|_| watch.clone());
        let (started, snapshots) = start(&repo, "test", || repo.list_snapshots()).unwrap();
        assert!(snapshots.unwrap().snapshots.is_empty());
        assert_eq!(started.adopted.packs, 0);
        let log = watch.log.lock().unwrap().1.clone();
        let at = |e: &str| log.iter().position(|x| x == e).unwrap_or_else(|| panic!("no `{e}` in {log:?}"));
        assert!(at("start index/") > at("end marks/"), "the index was listed before the marks returned: {log:?}");
        for beside in ["start data/", "start snapshots/"] {
            assert!(at(beside) < at("end marks/"), "`{beside}` waited for the marks: {log:?}");
        }
    }
}
