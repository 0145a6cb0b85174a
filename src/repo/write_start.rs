//! How a writer starts (a backup, and a copy into its destination): the
//! shared lock that names the prune marks seen before it, then, at once,
//! what it needs before it stores anything.
//!
//! On remote storage each of those reads is a round trip: the marks seen
//! after the lock, the index files, `data/` (packs to adopt) and whatever
//! the caller needs beside them (a backup's snapshots, a copy's source
//! index). They are read side by side once the lock is held, so a
//! start costs the round trip of the longest instead of their sum. The lock
//! is written first, as before: what is read after it is what a prune
//! that comes later must honour (see `crate::prune::marking`).

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
/// it, then reads the marks again, the index files, `data/` and `beside()`
/// at once.
pub fn start<T: Send>(repo: &Repository, purpose: &str, beside: impl FnOnce() -> T + Send) -> Result<(Started, T)> {
    let before = marks::list(repo)?;
    let lock = lock::acquire_honouring(repo, purpose, before.ids())?;
    let (after, index_files, packs, beside) = std::thread::scope(|s| {
        let index_files = s.spawn(|| repo.list_ids("index"));
        let packs = s.spawn(|| repo.backend().list("data/"));
        let beside = s.spawn(beside);
        let after = marks::list(repo);
        (after, crate::pool::joined(index_files), crate::pool::joined(packs), crate::pool::joined(beside))
    });
    let marked: HashSet<Id> = before.packs().union(&after?.packs()).copied().collect();
    let filter = PackFilter { exclude: marked.clone(), demote: HashSet::new() };
    let mut index = repo.load_index_listed(IndexMode::Membership, &filter, index_files?)?;
    let adopted = adopt_unindexed_packs(repo, &mut index, &marked, packs?)?;
    Ok((Started { lock, index, adopted }, beside))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::meeting::Meeting;
    use crate::backend::LocalBackend;
    use crate::crypto::KdfParams;
    use crate::repo::InitOptions;

    /// Once the lock is held, the index files, `data/` and what the caller
    /// reads beside them are read at once, not one round trip after another.
    #[test]
    fn a_writer_reads_what_it_starts_from_side_by_side() {
        let d = tempfile::tempdir().unwrap();
        let opts = InitOptions { kdf: KdfParams::CHEAPEST, ..Default::default() };
        let mut repo = Repository::init(Arc::new(LocalBackend::new(d.path().join("repo"))), b"pw", opts).unwrap();
        let mut meeting = None;
        repo.wrap_backend(|b| {
            let m = Meeting::new(b, &[&["index/", "data/", "snapshots/"]]);
            meeting = Some(m.clone());
            m
        });
        let meeting = meeting.unwrap();
        meeting.arm();
        let (started, snapshots) = start(&repo, "test", || repo.list_snapshots()).unwrap();
        assert!(meeting.met(), "the index files, the packs and the snapshots were listed one after another");
        assert!(snapshots.unwrap().snapshots.is_empty());
        assert_eq!(started.adopted.packs, 0);
    }
}
