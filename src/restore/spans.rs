//! What a snapshot needs of each pack, noted by the measure before the
//! restore's plan ([`crate::repo::walk::measure_keeping`]) for
//! [`super::carry`]: the span of the pack its files use and how many chunk
//! references fall in it. Apart from the carry, so that the plan can fill
//! it without depending on the transfer.

use std::collections::HashMap;

use crate::repo::{Index, NodeKind, Tree};

/// What a snapshot needs of one pack.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub lo: u64,
    pub hi: u64,
    pub needed: u64,
    pub refs: u64,
}

/// A span of one pack to read whole ([`super::ahead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wanted {
    pub pack: u32,
    pub lo: u64,
    pub hi: u64,
}

/// Per pack, the span of it a snapshot's files need, from the snapshot's
/// distinct trees (a tree found at two paths counts once, so `refs` may
/// fall short, and then a held span is dropped early).
#[derive(Debug, Default)]
pub struct PackSpans {
    spans: HashMap<u32, Span>,
    /// The packs in the order the walk first met them.
    order: Vec<u32>,
}

impl PackSpans {
    /// Adds the chunks of the files of `tree`.
    pub fn add_tree(&mut self, index: &Index, tree: &Tree) {
        for n in tree.nodes.iter().filter(|n| n.kind == NodeKind::File) {
            for l in n.content.iter().filter_map(|id| index.get(id)) {
                let (start, end) = (l.offset as u64, l.offset as u64 + l.length as u64);
                let s = self.spans.entry(l.pack).or_insert_with(|| {
                    self.order.push(l.pack);
                    Span { lo: start, hi: end, needed: 0, refs: 0 }
                });
                s.lo = s.lo.min(start);
                s.hi = s.hi.max(end);
                s.needed += l.length as u64;
                s.refs += 1;
            }
        }
    }

    /// Forgets `pack`, and returns the span to read of it in one go, with
    /// its references, when the snapshot's blobs fill at least half of it.
    pub(super) fn take_dense(&mut self, pack: u32) -> Option<Span> {
        let s = self.spans.remove(&pack)?;
        s.is_dense().then_some(s)
    }

    /// The spans [`PackSpans::take_dense`] hands out, in the order the walk
    /// first met their packs (what [`super::ahead`] reads ahead).
    pub(super) fn dense_in_order(&self) -> Vec<Wanted> {
        let dense =
            |p: &u32| self.spans.get(p).filter(|s| s.is_dense()).map(|s| Wanted { pack: *p, lo: s.lo, hi: s.hi });
        self.order.iter().filter_map(dense).collect()
    }

    /// Sets what the snapshot needs of `pack` (tests).
    #[cfg(test)]
    pub(super) fn insert(&mut self, pack: u32, span: Span) {
        if self.spans.insert(pack, span).is_none() {
            self.order.push(pack);
        }
    }
}

impl Span {
    /// The snapshot's blobs fill at least half of it.
    fn is_dense(&self) -> bool {
        self.needed.saturating_mul(2) >= self.hi - self.lo
    }
}
