//! Tests of the parent's trees fetched ahead of the scan.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::*;
use crate::backend::{Backend, BackendResult, LocalBackend};
use crate::backup::{BackupOptions, NoProgress, Source};
use crate::crypto::KdfParams;
use crate::repo::{pack_key, InitOptions, Node};

#[derive(Default)]
struct Flight {
    in_flight: usize,
    most: usize,
    /// The ranged read held until a second one is in flight: (key, offset).
    hold: Option<(String, u64)>,
    /// That read came and waits.
    holding: bool,
    /// Another read started while it waited.
    overlapped: bool,
}

/// A local backend that says it takes `concurrency` requests at once and
/// watches the ranged reads of packs (without the cache, the only reads of
/// an unchanged backup besides index files and snapshots). The read of
/// one chosen tree waits for a second read to start, so reading one tree
/// at a time shows as a peak of one (after a 60 s fallback, which keeps
/// such a failure from hanging; reading ahead never waits for it).
struct Watched {
    inner: LocalBackend,
    concurrency: AtomicUsize,
    flight: Mutex<Flight>,
    changed: Condvar,
}

impl Backend for Watched {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
        {
            let mut f = self.flight.lock().unwrap();
            f.in_flight += 1;
            f.most = f.most.max(f.in_flight);
            f.overlapped |= f.holding;
            self.changed.notify_all();
            if f.hold.as_ref().is_some_and(|(k, o)| k == key && *o == offset) {
                f.hold = None;
                f.holding = true;
                let (mut f, _) =
                    self.changed.wait_timeout_while(f, Duration::from_secs(60), |f| !f.overlapped).unwrap();
                f.holding = false;
            }
        }
        let r = self.inner.get_range(key, offset, length);
        self.flight.lock().unwrap().in_flight -= 1;
        r
    }
    crate::backend::forward_writes_and_listings_to_inner!();
    fn concurrency(&self) -> usize {
        self.concurrency.load(Ordering::Relaxed)
    }
}

const CONCURRENCY: usize = 4;

/// Eight directories of two levels, and a file in each.
fn source(at: &Path) {
    for i in 0..8 {
        let d = at.join(format!("d{i}"));
        std::fs::create_dir_all(d.join("e")).unwrap();
        std::fs::write(d.join("f"), format!("file {i}")).unwrap();
        std::fs::write(d.join("e/g"), format!("deeper {i}")).unwrap();
    }
}

#[test]
fn an_unchanged_backup_reads_the_parents_trees_several_at_once_and_stores_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source(&src);
    let backend = Arc::new(Watched {
        inner: LocalBackend::new(dir.path().join("repo")),
        concurrency: AtomicUsize::new(CONCURRENCY),
        flight: Mutex::default(),
        changed: Condvar::new(),
    });
    let opts = InitOptions { kdf: KdfParams::CHEAPEST, ..Default::default() };
    let repo = Repository::init(backend.clone(), b"pw", opts).unwrap();
    assert!(repo.cache().is_none(), "no metadata cache: each tree is a ranged read");
    let backup = || crate::backup::run(&repo, Source::Paths(vec![src.clone()]), &BackupOptions::default(), &NoProgress);
    let first = backup().unwrap();

    // Hold the read of `d0`'s tree, the first the scan enters below the
    // source: only a read of another tree at the same time releases it.
    let index = repo.load_index().unwrap();
    let path = format!("{}/d0", src.display());
    let d0 = crate::repo::tree::lookup(&repo, &index, &first.snapshot.tree, path.as_bytes()).unwrap().unwrap();
    let loc = index.get(&d0.subtree.unwrap()).unwrap();
    *backend.flight.lock().unwrap() =
        Flight { hold: Some((pack_key(&index.pack(loc.pack).id), loc.offset as u64)), ..Default::default() };

    let ahead = backup().unwrap();
    let f = std::mem::take(&mut *backend.flight.lock().unwrap());
    assert!(f.hold.is_none(), "the backup read d0's tree from the parent");
    assert!(f.overlapped, "the parent's trees were read one at a time");
    assert!(f.most <= CONCURRENCY, "{} reads at once, above the backend's {CONCURRENCY}", f.most);
    assert_eq!(ahead.snapshot.summary.files_unchanged, 16, "every file was found unchanged in the parent");

    // The same backup reading one tree at a time stores the same tree.
    backend.concurrency.store(1, Ordering::Relaxed);
    let serial = backup().unwrap();
    assert_eq!(std::mem::take(&mut *backend.flight.lock().unwrap()).most, 1, "one read at a time");
    assert_eq!(serial.snapshot.summary.files_unchanged, 16);
    // The source's tree, not the root's: the directories above it are
    // shared with other programs, which change their times.
    let tree_of_src = |b: &crate::backup::BackupReport| {
        let index = repo.load_index().unwrap();
        crate::repo::tree::lookup(&repo, &index, &b.snapshot.tree, src.display().to_string().as_bytes())
            .unwrap()
            .unwrap()
            .subtree
    };
    assert_eq!(tree_of_src(&ahead), tree_of_src(&serial), "reading ahead changes nothing stored");
    assert_eq!(tree_of_src(&first), tree_of_src(&serial), "nothing changed since the first backup");
}

fn tree_of_dirs(ids: &[Id]) -> Tree {
    Tree::new(
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                let mut n = Node::new(format!("d{i}").into_bytes(), NodeKind::Dir);
                n.subtree = Some(*id);
                n
            })
            .collect(),
    )
}

#[test]
fn what_the_scan_passed_by_is_dropped_and_never_queued_again() {
    let ids: Vec<Id> = (0..3u8).map(|i| Id::hash_of(&[i])).collect();
    let mut st = State::default();
    st.add_children(&vec![5], &tree_of_dirs(&ids));
    assert_eq!(st.todo.keys().cloned().collect::<Vec<_>>(), [vec![5, 0], vec![5, 1], vec![5, 2]]);
    for (pos, n) in [(vec![5, 0], 0u8), (vec![5, 0, 3], 1)] {
        st.ready.insert(pos, Fetched { id: Id::hash_of(&[n]), bytes: 10, tree: Ok(Tree::new(Vec::new())) });
        st.held += 10;
    }
    // The scan went on to `d1`: `d0` and all below it are behind it.
    st.pass_to(&vec![5, 1]);
    assert!(st.ready.is_empty(), "trees fetched for what the scan passed by are dropped");
    assert_eq!(st.held, 0, "and no longer count against the bound");
    assert_eq!(st.todo.keys().cloned().collect::<Vec<_>>(), [vec![5, 1], vec![5, 2]]);
    // A tree loaded late for a passed directory queues nothing.
    st.add_children(&vec![5, 0], &tree_of_dirs(&ids));
    assert_eq!(st.todo.len(), 2);
    st.add_children(&vec![5, 1], &tree_of_dirs(&ids[..1]));
    assert_eq!(st.todo.keys().next(), Some(&vec![5, 1]), "positions sort in the scan's order");
    assert_eq!(
        st.todo.keys().nth(1),
        Some(&vec![5, 1, 0]),
        "a directory's subdirectories come before its next sibling"
    );
}
