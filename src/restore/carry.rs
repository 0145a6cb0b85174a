//! Reading each pack about once, although the restore runs in batches.
//!
//! The walk meets a pack's blobs over several batches: a batch holds about
//! a pack's worth of small files, and the backup's parallel readers mix the
//! blobs of neighbouring files within a pack. Fetched batch by batch, a
//! pack was read once per batch that needed it, in ranges that each
//! batch's share made sparse (on the Linux tree: 68 range reads of 17
//! packs instead of 17, see docs/BENCHMARKS.md).
//!
//! So the measure before the plan ([`crate::repo::walk::measure_keeping`])
//! also notes, per pack, the span the snapshot needs of it and how many
//! chunk references fall in it ([`PackSpans`]). The first batch that needs
//! a pack the snapshot uses densely (its blobs fill at least half their
//! span) reads that whole span with one request, and the bytes are held
//! for the batches after it ([`Carry`]) until as many references as the
//! snapshot has in the pack were written, or a batch needs nothing of it,
//! within [`HELD_BYTES`] (the oldest held span is dropped first). A batch
//! that needs a dropped span again reads only its own ranges of it, as it
//! does of a pack the snapshot uses sparsely.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::ahead::ReadAhead;
use super::spans::PackSpans;
#[cfg(test)]
use super::spans::Span;
use super::transfer::{coalesce, BlobWork, Range};

/// Most bytes of packs held from one batch for the next (on top of the
/// ranges the workers are writing): a few packs of the default 16 MiB,
/// enough for the packs whose blobs straddle a batch's end.
pub const HELD_BYTES: u64 = 64 << 20;

/// A span of a pack read by an earlier batch.
struct Held {
    pack: u32,
    start: u64,
    data: Arc<Vec<u8>>,
    /// References of the snapshot in it not written yet.
    refs_left: u64,
}

/// The pack spans held from one batch to the next.
#[derive(Default)]
pub struct Carry {
    spans: Option<PackSpans>,
    held: VecDeque<Held>,
    /// Where the whole spans are read ahead of the batches (remote storage).
    ahead: Option<Arc<ReadAhead>>,
}

impl Carry {
    /// Holds nothing: each batch reads its own ranges.
    pub fn none() -> Carry {
        Carry::default()
    }

    /// Reads each dense pack of `spans` once, for every batch.
    pub fn new(spans: PackSpans) -> Carry {
        Carry { spans: Some(spans), ..Carry::default() }
    }

    /// Takes the whole spans from `ahead`, which reads them ahead of the
    /// batches, where it has them.
    pub fn reading_ahead(self, ahead: Option<Arc<ReadAhead>>) -> Carry {
        Carry { ahead, ..self }
    }

    /// The read-ahead the whole spans come from, if any.
    pub(super) fn ahead(&self) -> Option<&ReadAhead> {
        self.ahead.as_deref()
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> u64 {
        self.held.iter().map(|h| h.data.len() as u64).sum()
    }

    /// The range requests of one batch for `by_pack` (the blobs needed from
    /// each pack), packs in order; a range of a held span needs no request.
    pub(super) fn ranges(&mut self, by_pack: HashMap<u32, Vec<BlobWork>>) -> Vec<Range> {
        let mut packs: Vec<(u32, Vec<BlobWork>)> = by_pack.into_iter().collect();
        packs.sort_by_key(|(p, _)| *p);
        // A span this batch does not need is dropped: the walk has moved
        // past the pack, and a later straggler is read on its own.
        self.held.retain(|h| packs.binary_search_by_key(&h.pack, |(p, _)| *p).is_ok());
        // Spans kept for later batches are held until this batch is written:
        // together with what is held already, they stay within HELD_BYTES.
        let mut room = HELD_BYTES.saturating_sub(self.held_bytes());
        let mut out = Vec::new();
        for (pack, work) in packs {
            let refs: u64 = work.iter().map(|w| w.dests.len() as u64).sum();
            let end_of = |w: &BlobWork| w.offset as u64 + w.length as u64;
            if let Some(at) = self.held.iter().position(|h| h.pack == pack) {
                let h = &mut self.held[at];
                let (start, end) = (h.start, h.start + h.data.len() as u64);
                let (inside, rest): (Vec<BlobWork>, Vec<BlobWork>) =
                    work.into_iter().partition(|w| w.offset as u64 >= start && end_of(w) <= end);
                if !inside.is_empty() {
                    out.push(Range::held(pack, start, h.data.clone(), inside));
                }
                h.refs_left = h.refs_left.saturating_sub(refs);
                if h.refs_left == 0 {
                    self.held.remove(at);
                }
                coalesce(pack, rest, &mut out);
                continue;
            }
            // A pack is read whole at most once: the first time a batch needs it.
            // Read ahead already, it is taken whole however little room is
            // left, and kept for later batches only within the room.
            let Some(s) = self.spans.as_mut().and_then(|s| s.take_dense(pack)) else {
                coalesce(pack, work, &mut out);
                continue;
            };
            let fits = s.hi - s.lo <= room;
            let whole = fits || s.refs <= refs || self.ahead.as_ref().is_some_and(|a| a.has(pack));
            let (inside, rest): (Vec<BlobWork>, Vec<BlobWork>) =
                work.into_iter().partition(|w| whole && w.offset as u64 >= s.lo && end_of(w) <= s.hi);
            if inside.is_empty() {
                // Read in this batch's ranges: never read whole ahead either.
                if let Some(a) = &self.ahead {
                    a.pass(pack);
                }
            } else {
                let keep = if fits { s.refs.saturating_sub(refs) } else { 0 };
                if keep > 0 {
                    room -= s.hi - s.lo;
                }
                out.push(Range::whole(pack, s.lo, s.hi, inside, keep));
            }
            coalesce(pack, rest, &mut out);
        }
        out
    }

    /// Holds the spans `ranges` read whole that later batches still need,
    /// dropping the oldest held first to stay within [`HELD_BYTES`].
    pub(super) fn keep(&mut self, ranges: &mut [Range]) {
        for r in ranges {
            let Some((data, refs_left)) = r.take_kept() else { continue };
            if refs_left == 0 || data.len() as u64 > HELD_BYTES {
                continue;
            }
            while self.held_bytes() + data.len() as u64 > HELD_BYTES {
                self.held.pop_front();
            }
            self.held.push_back(Held { pack: r.pack(), start: r.start(), data, refs_left });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(offset: u32, length: u32) -> BlobWork {
        BlobWork { id: crate::Id::hash_of(&offset.to_le_bytes()), offset, length, raw_length: length, dests: vec![] }
    }

    /// Review finding: every dense pack a batch read whole and later batches
    /// still used was kept until the batch was written, however many: a
    /// batch of 512 such packs held 8 GiB. Now what one batch keeps, with
    /// what is held already, stays within HELD_BYTES; the other packs are
    /// read in the batch's own ranges.
    #[test]
    fn bug_the_spans_one_batch_keeps_for_later_batches_stay_within_the_bound() {
        const MIB: u32 = 1 << 20;
        let mut spans = PackSpans::default();
        // 20 packs of 16 MiB, each used densely (two 8 MiB blobs), one blob
        // needed by this batch and the other by a later one.
        for p in 0..20 {
            spans.insert(p, Span { lo: 0, hi: 16 * MIB as u64, needed: 16 * MIB as u64, refs: 2 });
        }
        let mut carry = Carry::new(spans);
        let by_pack: HashMap<u32, Vec<BlobWork>> = (0..20).map(|p| (p, vec![work(0, 8 * MIB)])).collect();
        let ranges = carry.ranges(by_pack);
        let kept: u64 = ranges.iter().filter(|r| r.keeps() > 0).map(|r| r.end() - r.start()).sum();
        assert!(kept <= HELD_BYTES, "one batch keeps {kept} bytes, above {HELD_BYTES}");
        assert_eq!(kept, HELD_BYTES, "the room is used: four 16 MiB packs are kept");
        // The packs not kept are read in the batch's own range: 8 MiB each.
        let own: Vec<u64> = ranges.iter().filter(|r| r.keeps() == 0).map(|r| r.end() - r.start()).collect();
        assert_eq!(own.len(), 16);
        assert!(own.iter().all(|&len| len == 8 * MIB as u64), "{own:?}");
    }

    /// A pack that no later batch needs is still read in one request when
    /// nothing more may be held: nothing of it is kept.
    #[test]
    fn a_dense_pack_no_later_batch_needs_is_read_whole_without_room() {
        let mut spans = PackSpans::default();
        spans.insert(7, Span { lo: 0, hi: 1000, needed: 1000, refs: 0 });
        let mut carry = Carry::new(spans);
        let full = Arc::new(vec![0u8; HELD_BYTES as usize]);
        carry.held.push_back(Held { pack: 3, start: 0, data: full, refs_left: 5 });
        let by_pack = HashMap::from([(3, vec![work(0, 10)]), (7, vec![work(0, 500), work(500, 500)])]);
        let ranges = carry.ranges(by_pack);
        let of_7: Vec<(u64, u64, u64)> =
            ranges.iter().filter(|r| r.pack() == 7).map(|r| (r.start(), r.end(), r.keeps())).collect();
        assert_eq!(of_7, [(0, 1000, 0)]);
    }
}
