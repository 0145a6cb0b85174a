//! Fetching a batch's chunks and writing them where they go.
//!
//! The needed blobs are grouped by pack, and each pack's blobs, sorted by
//! offset, are read with as few range requests as possible: one for the
//! span when they fill at least half of it, otherwise one per run of blobs
//! less than [`COALESCE_GAP`] apart. Each range is fetched once (from
//! remote storage, a large one in parts at once:
//! [`crate::backend::parts`]). Its writes
//! are then split by the directory of the file they go to, and every
//! worker takes waiting writes before it fetches another range
//! ([`crate::pool::produce_consume`]): files are created in several
//! directories at once even when one pack holds all the batch's files,
//! which is what a tree of small files needs on a disk file system, and at
//! most one fetched range per worker is held. Each blob is opened and
//! checked against its id by the worker that writes it
//! ([`super::files::write_chunk`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::backend::parts::get_range_in_parts;
use crate::id::Id;
use crate::pool::produce_consume;
use crate::repo::blob::{self, DecodeBuffers};
use crate::repo::{pack_key, Index, Repository};

use super::ahead::ReadAhead;
use super::files::write_chunk;
use super::state::State;

/// Largest gap between two needed blobs that is read rather than skipped.
const COALESCE_GAP: u64 = 256 * 1024;

/// Most writes in one task: the files of a larger directory are shared out.
const WRITES_PER_TASK: usize = 64;

/// One place a chunk must be written.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dest {
    pub file: u32,
    pub offset: u64,
}

/// A blob to fetch, and every place it goes.
pub(super) struct BlobWork {
    pub id: Id,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
    pub dests: Vec<Dest>,
}

/// Blobs of one pack read with one range request, or taken from a span of
/// it an earlier batch read ([`super::carry`]).
pub(super) struct Range {
    pack: u32,
    start: u64,
    end: u64,
    blobs: Vec<BlobWork>,
    /// The bytes from `start` to `end`, read by an earlier batch.
    held: Option<Arc<Vec<u8>>>,
    /// References of later batches in this range: when above zero, the
    /// bytes read are kept (`kept`) for them.
    keep: u64,
    /// A dense pack's whole span, which [`ReadAhead`] may hold.
    whole: bool,
    kept: OnceLock<Arc<Vec<u8>>>,
}

impl Range {
    fn new(pack: u32, start: u64, end: u64, blobs: Vec<BlobWork>) -> Range {
        Range { pack, start, end, blobs, held: None, keep: 0, whole: false, kept: OnceLock::new() }
    }

    /// Blobs taken from `data`, the span of the pack at `start` an earlier batch read.
    pub(super) fn held(pack: u32, start: u64, data: Arc<Vec<u8>>, blobs: Vec<BlobWork>) -> Range {
        let end = start + data.len() as u64;
        Range { held: Some(data), ..Range::new(pack, start, end, blobs) }
    }

    /// A pack's span from `start` to `end` read in one go, its bytes kept
    /// when later batches have `keep` references in it.
    pub(super) fn whole(pack: u32, start: u64, end: u64, blobs: Vec<BlobWork>, keep: u64) -> Range {
        Range { keep, whole: true, ..Range::new(pack, start, end, blobs) }
    }

    pub(super) fn pack(&self) -> u32 {
        self.pack
    }

    pub(super) fn start(&self) -> u64 {
        self.start
    }

    #[cfg(test)]
    pub(super) fn end(&self) -> u64 {
        self.end
    }

    /// References of later batches in it (its bytes are kept when above zero).
    #[cfg(test)]
    pub(super) fn keeps(&self) -> u64 {
        self.keep
    }

    /// Whether it needs a request.
    pub(super) fn is_read(&self) -> bool {
        self.held.is_none()
    }

    /// The bytes read for later batches, and their references there.
    pub(super) fn take_kept(&mut self) -> Option<(Arc<Vec<u8>>, u64)> {
        self.kept.take().map(|d| (d, self.keep))
    }
}

/// Appends to `out` the range requests that read `work`, blobs of `pack`.
pub(super) fn coalesce(pack: u32, mut work: Vec<BlobWork>, out: &mut Vec<Range>) {
    work.sort_by_key(|w| w.offset);
    let needed: u64 = work.iter().map(|w| w.length as u64).sum();
    let end_of = |w: &BlobWork| w.offset as u64 + w.length as u64;
    let span = work.iter().map(end_of).max().unwrap_or(0) - work.first().map_or(0, |w| w.offset as u64);
    let gap = if needed * 2 >= span { u64::MAX } else { COALESCE_GAP };
    let first = out.len();
    for w in work {
        // Only this pack's ranges, appended here, take more blobs.
        let last = if out.len() > first { out.last_mut() } else { None };
        match last {
            Some(r) if (w.offset as u64) <= r.end.saturating_add(gap) => {
                r.end = r.end.max(end_of(&w));
                r.blobs.push(w);
            }
            _ => out.push(Range::new(pack, w.offset as u64, end_of(&w), vec![w])),
        }
    }
}

/// Writes from one fetched range into the files of one directory.
struct Task {
    range: usize,
    data: Arc<Vec<u8>>,
    /// (blob of the range, where it goes), by file.
    writes: Vec<(u32, Dest)>,
}

/// Fetches `ranges` with `fetchers` workers and writes every blob to each
/// of its places. A failure fails the files it concerns, and the rest goes
/// on.
/// A whole span of a dense pack is taken from `ahead` where it read it.
pub(super) fn transfer(
    repo: &Repository,
    index: &Index,
    ranges: &[Range],
    st: &State<'_>,
    fetchers: usize,
    ahead: Option<&ReadAhead>,
) {
    let fetching = AtomicUsize::new(0);
    produce_consume(
        fetchers,
        ranges.len(),
        |i| fetch(repo, index, ranges, i, st, &fetching, ahead),
        |t| write(repo, index, ranges, t, st),
    );
}

/// Fetches range `i`; `fetching` counts the ranges being fetched, which
/// share the storage's connections: a large range is read in parts only
/// while connections would otherwise idle.
fn fetch(
    repo: &Repository,
    index: &Index,
    ranges: &[Range],
    i: usize,
    st: &State<'_>,
    fetching: &AtomicUsize,
    ahead: Option<&ReadAhead>,
) -> Vec<Task> {
    let r = &ranges[i];
    let data = match &r.held {
        Some(d) => d.clone(),
        None => {
            let key = pack_key(&index.pack(r.pack).id);
            let read_ahead = ahead.filter(|_| r.whole).and_then(|a| a.take(r.pack, r.start, r.end));
            let read = match read_ahead {
                Some(d) => Ok(d),
                None => {
                    let backend = repo.backend().as_ref();
                    let under_way = fetching.fetch_add(1, Ordering::SeqCst) + 1;
                    let parts = backend.concurrency() / under_way;
                    let read = get_range_in_parts(backend, &key, r.start, r.end - r.start, parts);
                    fetching.fetch_sub(1, Ordering::SeqCst);
                    read.map(Arc::new)
                }
            };
            let data = match read {
                Ok(d) => d,
                Err(e) => {
                    for d in r.blobs.iter().flat_map(|w| &w.dests) {
                        st.fail(d.file as usize, format!("reading pack `{key}`: {e}"));
                    }
                    return Vec::new();
                }
            };
            st.bytes_fetched.fetch_add(data.len() as u64, Ordering::Relaxed);
            if r.keep > 0 {
                let _ = r.kept.set(data.clone());
            }
            data
        }
    };
    let mut writes: Vec<(u32, u32, Dest)> = r
        .blobs
        .iter()
        .enumerate()
        .flat_map(|(b, w)| w.dests.iter().map(move |d| (b as u32, *d)))
        .map(|(b, d)| (st.file_dir[d.file as usize], b, d))
        .collect();
    writes.sort_by_key(|(dir, _, d)| (*dir, d.file, d.offset));
    let mut tasks: Vec<Task> = Vec::new();
    let mut last_dir = None;
    for (dir, b, d) in writes {
        match tasks.last_mut() {
            Some(t) if last_dir == Some(dir) && t.writes.len() < WRITES_PER_TASK => t.writes.push((b, d)),
            _ => tasks.push(Task { range: i, data: data.clone(), writes: vec![(b, d)] }),
        }
        last_dir = Some(dir);
    }
    tasks
}

thread_local! {
    /// Each worker's buffers for opening blobs, reused from blob to blob.
    static BUFFERS: std::cell::Cell<DecodeBuffers> = std::cell::Cell::new(DecodeBuffers::default());
}

fn write(repo: &Repository, index: &Index, ranges: &[Range], task: Task, st: &State<'_>) {
    let r = &ranges[task.range];
    let mut bufs = BUFFERS.take();
    // The blob opened last (in `bufs.plain`), which the next write often
    // needs again, or why it could not be opened.
    let mut opened: Option<(u32, Result<(), String>)> = None;
    for (b, d) in task.writes {
        let fi = d.file as usize;
        if st.failed[fi].get().is_some() {
            continue;
        }
        if opened.as_ref().is_none_or(|(ob, _)| *ob != b) {
            let w = &r.blobs[b as usize];
            let at = (w.offset as u64 - r.start) as usize;
            let sealed = &task.data[at..at + w.length as usize];
            let plain = blob::decode_into(repo.key(), sealed, &w.id, w.raw_length as u64, &mut bufs).map_err(|e| {
                let key = pack_key(&index.pack(r.pack).id);
                format!("chunk {} in pack `{key}` is damaged: {e}", w.id.short())
            });
            opened = Some((b, plain));
        }
        match &opened.as_ref().expect("just opened").1 {
            Ok(()) => {
                if let Err(e) = write_chunk(st, fi, d.offset, &bufs.plain) {
                    st.fail(fi, format!("write at {}: {e}", d.offset));
                }
            }
            Err(why) => st.fail(fi, why.clone()),
        }
    }
    BUFFERS.set(bufs);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The range requests that fetch `by_pack` (the blobs needed from each
    /// pack), packs in order.
    fn ranges(by_pack: HashMap<u32, Vec<BlobWork>>) -> Vec<Range> {
        let mut packs: Vec<(u32, Vec<BlobWork>)> = by_pack.into_iter().collect();
        packs.sort_by_key(|(p, _)| *p);
        let mut out: Vec<Range> = Vec::new();
        for (pack, work) in packs {
            coalesce(pack, work, &mut out);
        }
        out
    }

    fn work(offset: u32, length: u32) -> BlobWork {
        BlobWork { id: Id::default(), offset, length, raw_length: length, dests: vec![] }
    }

    #[test]
    fn blobs_that_fill_half_their_span_are_one_read_and_sparse_ones_are_split_at_gaps() {
        let spans = |by_pack: HashMap<u32, Vec<BlobWork>>| -> Vec<(u32, u64, u64, usize)> {
            ranges(by_pack).iter().map(|r| (r.pack, r.start, r.end, r.blobs.len())).collect()
        };
        // Dense: one read for the whole span, whatever the gaps.
        let dense = HashMap::from([(3, vec![work(1_000_000, 900_000), work(0, 800_000)])]);
        assert_eq!(spans(dense), [(3, 0, 1_900_000, 2)]);
        // Sparse: neighbours closer than the gap are merged, the far one is not.
        let far = 10_000_000;
        let sparse = HashMap::from([(1, vec![work(far, 10), work(0, 10), work(100, 10)]), (0, vec![work(5, 5)])]);
        assert_eq!(spans(sparse), [(0, 5, 10, 1), (1, 0, 110, 2), (1, far as u64, far as u64 + 10, 1)]);
    }
}
