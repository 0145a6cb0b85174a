//! Tests of fetching many metadata objects at once.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::backend::{Backend, BackendResult, LocalBackend};
use crate::crypto::KdfParams;
use crate::repo::writer::RepoWriter;
use crate::repo::{BlobKind, InitOptions, Repository, Snapshot, Summary};

#[derive(Default)]
struct Flight {
    in_flight: usize,
    most: usize,
    first_held: bool,
}

/// A local backend that says it takes `CONCURRENCY` requests at once and
/// watches the GETs of index files and snapshots: the first one waits for
/// a second to start, so fetching one at a time shows as a peak of one
/// (after a 60 s fallback, which keeps such a failure from hanging; the
/// parallel case never waits for it).
struct Watched {
    inner: LocalBackend,
    flight: Mutex<Flight>,
    changed: Condvar,
}

const CONCURRENCY: usize = 4;

impl Watched {
    fn peak_since_reset(&self) -> usize {
        std::mem::take(&mut *self.flight.lock().unwrap()).most
    }
}

impl Backend for Watched {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
        if !(key.starts_with("index/") || key.starts_with("snapshots/")) {
            return self.inner.get(key);
        }
        {
            let mut f = self.flight.lock().unwrap();
            f.in_flight += 1;
            f.most = f.most.max(f.in_flight);
            self.changed.notify_all();
            if !f.first_held {
                f.first_held = true;
                // Until a second has *started*: one that has already
                // finished (a local read is quick) counts, or this waited
                // for the fallback on every run.
                let _ = self.changed.wait_timeout_while(f, Duration::from_secs(60), |f| f.most < 2).unwrap();
            }
        }
        let r = self.inner.get(key);
        self.flight.lock().unwrap().in_flight -= 1;
        r
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
        self.inner.get_range(key, offset, length)
    }
    crate::backend::forward_writes_and_listings_to_inner!();
    fn concurrency(&self) -> usize {
        CONCURRENCY
    }
}

#[test]
fn index_files_and_snapshots_are_fetched_several_at_once_and_read_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(Watched {
        inner: LocalBackend::new(dir.path().join("repo")),
        flight: Mutex::default(),
        changed: Condvar::new(),
    });
    let opts = InitOptions { kdf: KdfParams::CHEAPEST, ..Default::default() };
    let repo = Repository::init(backend.clone(), b"pw", opts).unwrap();
    // Ten sessions: ten index files, and ten snapshots an hour apart.
    let start = chrono::Utc::now();
    let mut blobs = Vec::new();
    for i in 0..10u32 {
        let writer = RepoWriter::new(&repo, 1, 64);
        let id = repo.key().blob_id(&i.to_le_bytes());
        writer.add_blob(BlobKind::Data, id, 4, &[0u8; 24]).unwrap();
        writer.finish().unwrap();
        blobs.push(id);
        repo.save_snapshot(&Snapshot {
            v: crate::repo::snapshot::SNAPSHOT_VERSION,
            time: start + chrono::Duration::hours(i64::from(i)),
            hostname: format!("h{i}"),
            username: "u".into(),
            paths: vec!["/f".into()],
            tags: Vec::new(),
            policy: None,
            parent: None,
            tree: id,
            program_version: String::new(),
            original: None,
            summary: Summary::default(),
        })
        .unwrap();
    }

    backend.peak_since_reset();
    let list = repo.list_snapshots().unwrap();
    let peak = backend.peak_since_reset();
    assert!((2..=CONCURRENCY).contains(&peak), "snapshots fetched {peak} at once");
    let hosts: Vec<&str> = list.snapshots.iter().map(|(_, s)| s.hostname.as_str()).collect();
    assert_eq!(hosts, (0..10).map(|i| format!("h{i}")).collect::<Vec<_>>(), "every snapshot, oldest first");
    assert!(list.damaged.is_empty());

    let index = repo.load_index().unwrap();
    let peak = backend.peak_since_reset();
    assert!((2..=CONCURRENCY).contains(&peak), "index files fetched {peak} at once");
    assert!(blobs.iter().all(|id| index.get(id).is_some()), "every index file's blob is in the index");
}
