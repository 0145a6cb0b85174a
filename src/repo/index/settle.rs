//! Settling slots that share a key, for either kind of [`Slots`]: the same
//! blob stored twice keeps its first location (the lowest pack number),
//! different blobs each keep theirs, marked collided and found through
//! the exact map.
//!
//! After an interrupted prune (or one of a build before
//! `prune::index_rewrite`), every repacked blob is listed twice until its
//! old pack is deleted: millions of shared slots. So what is held per
//! shared slot is its position and the rest of its id, and the full ids
//! are asked for in batches, in the order of the index files and packs
//! they come from (each file is read once, or once per batch it spans).

use std::collections::HashMap;

use super::slots::Slots;
use super::{FullIds, IdRequest, PackInfo, PackMeta, PackSource, FROM_HEADER};
use crate::id::Id;

/// Where the slots' packs were listed: what a request for a full id names.
pub(super) struct Sources<'a> {
    pub packs: &'a [PackInfo],
    pub meta: &'a [PackMeta],
    pub files: &'a [(Id, bool)],
}

/// Settles `slots` (sorted) into `exact`; `known` holds full ids already
/// known by (pack, offset). Returns the most bytes it held besides the
/// slots (the caller's reading of full ids aside).
pub(super) fn settle<S: Slots, E>(
    slots: &mut S,
    exact: &mut HashMap<Id, u32>,
    sources: &Sources<'_>,
    known: HashMap<(u32, u32), Id>,
    full_ids: &mut FullIds<'_, E>,
    batch: usize,
) -> Result<usize, E> {
    exact.clear();
    // Slots whose key another slot has: position, and the id's suffix.
    // Counted first, so that the list is allocated once at its size
    // (grown by doubling, it would hold up to twice that).
    let runs_of_shared = |slots: &S, each: &mut dyn FnMut(usize, usize)| {
        let mut i = 0;
        while i < slots.len() {
            let mut j = i + 1;
            while j < slots.len() && slots.key(j) == slots.key(i) {
                j += 1;
            }
            if j - i > 1 {
                each(i, j);
            }
            i = j;
        }
    };
    let mut count = 0;
    runs_of_shared(slots, &mut |i, j| count += j - i);
    let mut shared: Vec<(u32, S::Suffix)> = Vec::with_capacity(count);
    runs_of_shared(slots, &mut |i, j| shared.extend((i..j).map(|p| (p as u32, S::Suffix::default()))));
    if shared.is_empty() {
        return Ok(0);
    }
    let batch_bytes = read_suffixes(slots, sources, &mut shared, &known, full_ids, batch.max(1))?;
    let held = shared.capacity() * std::mem::size_of::<(u32, S::Suffix)>() + batch_bytes;
    shared.sort_unstable_by_key(|e| e.0);
    // Compact in place: the write position never passes the read one, and
    // a run's slots kept are copied in order, each to a position at or
    // before its own, so none is overwritten before it is copied.
    let (mut w, mut i, n) = (0, 0, slots.len());
    let mut shared = shared.into_iter().peekable();
    while i < n {
        if shared.peek().map(|e| e.0 as usize) != Some(i) {
            slots.copy_slot(i, w);
            (w, i) = (w + 1, i + 1);
            continue;
        }
        let key = slots.key(i);
        let mut group: Vec<(S::Suffix, usize)> = Vec::new();
        while i < n && slots.key(i) == key {
            let (_, suffix) = shared.next().expect("every slot of a shared key is listed");
            if !group.iter().any(|g| g.0 == suffix) {
                group.push((suffix, i));
            }
            i += 1;
        }
        let collided = group.len() > 1;
        for (suffix, at) in group {
            slots.copy_slot(at, w);
            if collided {
                slots.set_collided(w);
                exact.insert(S::id_of(&key, &suffix), w as u32);
            }
            w += 1;
        }
    }
    slots.keep_first(w);
    Ok(held)
}

/// Fills in the id suffix of every shared slot: from `known`, or from
/// `full_ids`, asked in batches grouped by source. Returns the most bytes
/// a batch held (requests and answers).
fn read_suffixes<S: Slots, E>(
    slots: &S,
    sources: &Sources<'_>,
    shared: &mut [(u32, S::Suffix)],
    known: &HashMap<(u32, u32), Id>,
    full_ids: &mut FullIds<'_, E>,
    batch: usize,
) -> Result<usize, E> {
    let place = |p: u32| {
        let l = slots.location(p as usize);
        (sources.meta[l.pack as usize].source, l.pack, l.offset)
    };
    shared.sort_unstable_by_key(|e| place(e.0));
    let mut reqs: Vec<IdRequest> = Vec::with_capacity(batch.min(shared.len()));
    let mut asked: Vec<u32> = Vec::with_capacity(reqs.capacity());
    let mut peak = 0;
    let mut flush = |shared: &mut [(u32, S::Suffix)], reqs: &mut Vec<IdRequest>, asked: &mut Vec<u32>| {
        if reqs.is_empty() {
            return Ok(());
        }
        let ids = full_ids(reqs)?;
        assert_eq!(ids.len(), reqs.len(), "one full id per request");
        peak = peak.max(
            reqs.capacity() * std::mem::size_of::<IdRequest>()
                + asked.capacity() * 4
                + ids.capacity() * std::mem::size_of::<Id>(),
        );
        for (&k, id) in asked.iter().zip(&ids) {
            let e = &mut shared[k as usize];
            debug_assert!(S::key_of(id) == slots.key(e.0 as usize), "a full id re-read has the slot's prefix");
            e.1 = S::suffix_of(id);
        }
        reqs.clear();
        asked.clear();
        Ok(())
    };
    let mut run = 0;
    while run < shared.len() {
        let source = place(shared[run].0).0;
        let end = run + shared[run..].iter().take_while(|e| place(e.0).0 == source).count();
        // A source's requests go in one batch when they fit in one.
        if reqs.len() + (end - run) > batch {
            flush(shared, &mut reqs, &mut asked)?;
        }
        for k in run..end {
            let l = slots.location(shared[k].0 as usize);
            if let Some(id) = known.get(&(l.pack, l.offset)) {
                shared[k].1 = S::suffix_of(id);
                continue;
            }
            let info = &sources.packs[l.pack as usize];
            let source = match sources.meta[l.pack as usize].source {
                FROM_HEADER => PackSource::Header { size: info.size },
                f => PackSource::File(sources.files[f as usize].0),
            };
            reqs.push(IdRequest { source, pack: info.id, offset: l.offset });
            asked.push(k as u32);
            if reqs.len() == batch {
                flush(shared, &mut reqs, &mut asked)?;
            }
        }
        run = end;
    }
    flush(shared, &mut reqs, &mut asked)?;
    Ok(peak)
}
