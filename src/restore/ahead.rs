//! Reading the dense packs ahead of the batches, on remote storage.
//!
//! A batch fetches the packs it needs, then writes; the next batch is
//! planned only once this one is written. On remote storage each batch
//! then waits a round trip and a pack's transfer with the network idle: on
//! the Linux tree at a 100 ms round trip, most batches need one or two
//! packs, and the restore spent about a third of its time waiting so (see
//! docs/BENCHMARKS.md).
//!
//! So the packs the snapshot uses densely ([`PackSpans`], whose spans the
//! first batch that needs them reads whole, [`super::carry`]) are read
//! ahead, in the order the measure before the plan met them (a depth-first
//! walk, close to the batches' order), by [`WORKERS`] threads, while the
//! batches write. A batch takes a span from here instead of reading it
//! ([`ReadAhead::take`]): it waits for a span being read, and reads itself
//! one not begun (which is then never read here). Spans read and not yet
//! taken, and those being read, stay within [`AHEAD_BYTES`] (a larger span
//! is left to its batch); a span whose read fails here (or panics) is read
//! again by the batch, which reports the failure.
//!
//! A span read here that no batch takes (every file that needed it failed
//! before its chunks were fetched) is held until the restore ends; the
//! read-ahead may then stop early, and the batches read for themselves.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::Scope;

use crate::backend::parts::get_range_in_parts;
use crate::repo::{pack_key, Index, Repository};

use super::spans::{PackSpans, Wanted};

/// Bytes of spans read ahead and not yet taken, or being read, at most:
/// four packs of the default 16 MiB (beside what [`super::carry`] holds).
/// A larger span is not read ahead.
pub const AHEAD_BYTES: u64 = 64 << 20;

/// Spans read at once. Each is read in parts over half the backend's
/// connections, leaving the rest to the batch's own reads.
pub const WORKERS: usize = 2;

enum Slot {
    Reading,
    Read(Arc<Vec<u8>>),
    Failed,
}

#[derive(Default)]
struct State {
    /// The next of `order` to read.
    next: usize,
    /// Spans being read, or read and not taken.
    slots: HashMap<u32, (Wanted, Slot)>,
    /// Bytes of `slots`.
    held: u64,
    /// Packs a batch took or read itself: not read here (again).
    taken: std::collections::HashSet<u32>,
    stop: bool,
}

/// Stops the read-ahead's workers when dropped.
#[must_use = "the workers stop when this is dropped"]
pub(super) struct Stopping(Arc<ReadAhead>);

impl Drop for Stopping {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The read-ahead of one restore; its workers run until [`ReadAhead::stop`].
pub(super) struct ReadAhead {
    order: Vec<Wanted>,
    state: Mutex<State>,
    changed: Condvar,
}

impl ReadAhead {
    /// The spans of `spans` to read ahead, in order.
    pub fn new(spans: &PackSpans) -> Arc<ReadAhead> {
        let mut order = spans.dense_in_order();
        order.retain(|w| w.hi - w.lo <= AHEAD_BYTES);
        Arc::new(ReadAhead { order, state: Mutex::default(), changed: Condvar::new() })
    }

    /// Starts the workers in `scope`; they stop when the guard returned is
    /// dropped (before the scope joins them, also when a batch panics).
    pub fn start<'s, 'e: 's>(
        self: &Arc<Self>,
        scope: &'s Scope<'s, 'e>,
        repo: &'e Repository,
        index: &'e Index,
    ) -> Stopping {
        let parts = (repo.backend().concurrency() / WORKERS).max(1);
        for _ in 0..WORKERS {
            let me = self.clone();
            scope.spawn(move || me.work(repo, index, parts));
        }
        Stopping(self.clone())
    }

    /// Ends the workers once their reads in flight are done.
    pub fn stop(&self) {
        self.state.lock().unwrap().stop = true;
        self.changed.notify_all();
    }

    fn work(&self, repo: &Repository, index: &Index, parts: usize) {
        loop {
            let w = {
                let mut s = self.state.lock().unwrap();
                loop {
                    if s.stop || s.next == self.order.len() {
                        return;
                    }
                    let w = self.order[s.next];
                    if s.taken.contains(&w.pack) {
                        s.next += 1;
                        self.changed.notify_all();
                        continue;
                    }
                    if s.held + (w.hi - w.lo) > AHEAD_BYTES {
                        s = self.changed.wait(s).unwrap();
                        continue;
                    }
                    s.next += 1;
                    s.held += w.hi - w.lo;
                    s.slots.insert(w.pack, (w, Slot::Reading));
                    self.changed.notify_all();
                    break w;
                }
            };
            let key = pack_key(&index.pack(w.pack).id);
            // A read that panics is a failed one: the batch that needs the
            // span reads it, and reports what goes wrong then.
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                get_range_in_parts(repo.backend().as_ref(), &key, w.lo, w.hi - w.lo, parts)
            }));
            let mut s = self.state.lock().unwrap();
            let slot = match read {
                Ok(Ok(d)) if d.len() as u64 == w.hi - w.lo => Slot::Read(Arc::new(d)),
                _ => Slot::Failed,
            };
            s.slots.insert(w.pack, (w, slot));
            self.changed.notify_all();
        }
    }

    /// The span from `lo` to `hi` of `pack`, when it is read here: waits
    /// while it is being read. `None`: not read here (not begun, another
    /// span, or failed); the caller reads it, and it is never read here.
    pub fn take(&self, pack: u32, lo: u64, hi: u64) -> Option<Arc<Vec<u8>>> {
        match self.claim(pack)? {
            (w, Slot::Read(d)) if (w.lo, w.hi) == (lo, hi) => Some(d),
            _ => None,
        }
    }

    /// Leaves `pack` to the batches, which read it in their own ranges: it
    /// is never read here, and what was read of it is dropped.
    pub fn pass(&self, pack: u32) {
        self.claim(pack);
    }

    /// Marks `pack` as the batches', and removes its slot once it is no
    /// longer being read.
    fn claim(&self, pack: u32) -> Option<(Wanted, Slot)> {
        let mut s = self.state.lock().unwrap();
        s.taken.insert(pack);
        while matches!(s.slots.get(&pack), Some((_, Slot::Reading))) {
            s = self.changed.wait(s).unwrap();
        }
        let (w, slot) = s.slots.remove(&pack)?;
        s.held -= w.hi - w.lo;
        self.changed.notify_all();
        Some((w, slot))
    }

    /// Whether `pack`'s span is being read here, or was read and not taken.
    pub fn has(&self, pack: u32) -> bool {
        self.state.lock().unwrap().slots.contains_key(&pack)
    }

    /// Bytes read ahead and not taken, or being read (tests).
    #[cfg(test)]
    pub fn held(&self) -> u64 {
        self.state.lock().unwrap().held
    }

    /// Waits until `n` spans of the order were begun or passed (tests).
    #[cfg(test)]
    pub fn wait_begun(&self, n: usize) {
        let s = self.state.lock().unwrap();
        drop(self.changed.wait_while(s, |s| s.next < n).unwrap());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::meeting::Meeting;
    use crate::backend::{Backend, LocalBackend};
    use crate::crypto::KdfParams;
    use crate::repo::{BlobKind, InitOptions};
    use crate::restore::spans::Span;

    /// A local directory that says it is remote, and panics reading the
    /// pack `panics_on`.
    struct Remote {
        inner: Arc<dyn Backend>,
        panics_on: Option<String>,
    }

    impl Remote {
        fn over(inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
            Arc::new(Remote { inner, panics_on: None })
        }
    }

    impl Backend for Remote {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn get(&self, key: &str) -> crate::backend::BackendResult<Vec<u8>> {
            self.inner.get(key)
        }
        fn get_range(&self, key: &str, offset: u64, length: u64) -> crate::backend::BackendResult<Vec<u8>> {
            assert!(self.panics_on.as_deref() != Some(key), "a read that panics");
            self.inner.get_range(key, offset, length)
        }
        crate::backend::forward_writes_and_listings_to_inner!();
        fn concurrency(&self) -> usize {
            8
        }
        fn is_remote(&self) -> bool {
            true
        }
    }

    /// Three packs of one blob each, written through `repo`; their spans.
    fn three_packs(repo: &Repository) -> (Index, Vec<Wanted>) {
        let mut enc = crate::repo::blob::Encoder::new(0);
        for i in 0..3u8 {
            // One writer per pack: each finishes its own.
            let w = crate::repo::writer::RepoWriter::new(repo, 1, 1);
            let data: Vec<u8> = (0..300_000u32).map(|j| (j as u8).wrapping_mul(i + 7) ^ (j >> 9) as u8).collect();
            w.store_blob(&Index::default(), BlobKind::Data, &data, &mut enc).unwrap();
            w.finish().unwrap();
        }
        let index = repo.load_index().unwrap();
        let order = spans_of(&index).dense_in_order();
        (index, order)
    }

    /// Every data pack of `index`, needed whole.
    fn spans_of(index: &Index) -> PackSpans {
        let mut spans = PackSpans::default();
        for (p, info) in index.packs().iter().enumerate().filter(|(_, i)| i.kind == BlobKind::Data) {
            spans.insert(p as u32, Span { lo: 0, hi: info.size, needed: info.size, refs: 1 });
        }
        spans
    }

    fn repo() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("repo")));
        let kdf = KdfParams { memory_kib: KdfParams::MIN_MEMORY_KIB, ..Default::default() };
        let repo = Repository::init(backend, b"pw", InitOptions { kdf, ..Default::default() }).unwrap();
        (dir, repo)
    }

    /// The second pack is being read before the first is taken: the read
    /// of the first waits (up to the meeting's give-up) until the second's
    /// has begun. Taken in turn, every span is the pack's bytes, and
    /// nothing is held after.
    #[test]
    fn the_next_packs_are_read_while_the_first_is_waited_for() {
        let (_dir, repo) = repo();
        let (index, order) = three_packs(&repo);
        assert_eq!(order.len(), 3);
        let key = |w: &Wanted| pack_key(&index.pack(w.pack).id);
        let (first, second) = (format!("range {}", key(&order[0])), format!("range {}", key(&order[1])));
        let meeting = Meeting::new(Remote::over(repo.backend().clone()), &[&[&first, &second]]);
        let mut watched = repo.clone();
        watched.wrap_backend(|_| meeting.clone());
        meeting.arm();
        let ahead = ReadAhead::new(&spans_of(&index));
        std::thread::scope(|s| {
            let _stop = ahead.start(s, &watched, &index);
            ahead.wait_begun(2);
            for w in &order {
                let got = ahead.take(w.pack, w.lo, w.hi).expect("read ahead");
                assert!(*got == repo.backend().get(&key(w)).unwrap()[w.lo as usize..w.hi as usize]);
            }
        });
        assert!(meeting.met(), "the second pack was read only once the first was taken");
        assert_eq!(ahead.held(), 0);
    }

    /// A span a batch asks for before it is begun here is the batch's to
    /// read, and is then never read here; another span of a pack read
    /// here is not handed out.
    #[test]
    fn a_span_not_begun_is_left_to_the_batch() {
        let (_dir, repo) = repo();
        let (index, order) = three_packs(&repo);
        let ahead = ReadAhead::new(&spans_of(&index));
        let last = order[2];
        assert!(ahead.take(last.pack, last.lo, last.hi).is_none(), "nothing was begun");
        let mut remote = repo.clone();
        remote.wrap_backend(Remote::over);
        std::thread::scope(|s| {
            let _stop = ahead.start(s, &remote, &index);
            ahead.wait_begun(2);
            let w = order[0];
            assert!(ahead.take(w.pack, w.lo, w.hi + 1).is_none(), "another span was handed out");
            let w = order[1];
            assert!(ahead.take(w.pack, w.lo, w.hi).is_some());
            // The workers come to the last span, and pass it by.
            ahead.wait_begun(3);
        });
        let s = ahead.state.lock().unwrap();
        assert!(!s.slots.contains_key(&last.pack), "the span the batch read was read here too");
        assert_eq!(s.held, 0);
    }

    /// A read that panics here fails that span, which its batch then reads
    /// itself: the batch does not wait for it for ever, and the other spans
    /// are still read ahead.
    #[test]
    fn bug_a_read_that_panicked_left_its_batch_waiting() {
        let (_dir, repo) = repo();
        let (index, order) = three_packs(&repo);
        let key = pack_key(&index.pack(order[0].pack).id);
        let mut broken = repo.clone();
        broken.wrap_backend(|inner| Arc::new(Remote { inner, panics_on: Some(key) }));
        let ahead = ReadAhead::new(&spans_of(&index));
        std::thread::scope(|s| {
            let _stop = ahead.start(s, &broken, &index);
            ahead.wait_begun(2);
            let w = order[0];
            assert!(ahead.take(w.pack, w.lo, w.hi).is_none(), "a failed span was handed out");
            let w = order[1];
            assert!(ahead.take(w.pack, w.lo, w.hi).is_some());
        });
    }
}
