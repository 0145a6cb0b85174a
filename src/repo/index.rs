//! The in-memory index: where each blob lives.
//!
//! The index is the one structure of a backup, restore, check or prune
//! that grows with the number of blobs, so it is kept compact:
//!
//! - a sorted array of 32-byte slots: the blob id's 16-byte prefix (a
//!   [`Key`], see [`super::keyset`]), the pack number (packs are interned
//!   in a table) and the blob's offset, length and raw length;
//! - in [`IndexMode::Membership`] (backup), data blobs are kept as bare
//!   16-byte keys: a backup asks only whether a chunk is stored, and reads
//!   only trees, so only blobs of tree packs keep their location;
//! - in [`IndexMode::Compact`] (restore and the other readers), slots of
//!   16 bytes: a 6-byte prefix and the location packed, with locations
//!   too large to pack kept whole beside them (see [`slots`]);
//! - ids whose prefixes collide keep their full id in a small exact map,
//!   so each still finds its own location (and an id that is not there
//!   is not found through its prefix twin, unless, in a compact index,
//!   it shares the 6 bytes of a blob whose prefix no other blob has).
//!
//! That is 32 bytes per blob with locations, 16 without, and 16 in a
//! compact index for a blob under 64 KiB (32 for a larger one), plus the
//! pack table (under 100 bytes per pack). [`Index::memory_bytes`] adds it
//! up from the capacities.
//!
//! An index is built by [`IndexBuilder`] from the plaintext of index files,
//! one file at a time. Slots keep no full id, so when two slots share a
//! prefix the builder asks its caller for their full ids (which it
//! re-reads from the index file or pack header they came from): the same
//! blob stored twice keeps its first location, two different blobs both
//! go to the exact map. A blob may be listed twice by the millions (after
//! an interrupted prune, or a prune of a build that listed a repacked blob
//! in its marked old pack too), so the full ids are asked for in bounded
//! batches, grouped by source, and only the rest of each id (16 bytes, or
//! 26 in a compact index) is held meanwhile ([`Index::settle_peak_bytes`],
//! [`settle`]).

use std::collections::HashMap;

pub use super::index_file::{
    split_into_files, IndexFile, IndexVisitor, PackEntries, PackInfo, MAGIC, MAX_BLOBS_PER_FILE, VERSION,
};
use super::keyset::{key_of, Key, KeyDirectory};
use super::pack::PackEntry;
use super::BlobKind;
use crate::id::Id;
use slots::{Slot, Slots, TightSlots};

mod builder;
mod settle;
mod slots;
pub use builder::IndexBuilder;

/// `$body` with `$s` bound to the slot table the index's mode keeps
/// (`mut` borrows it mutably).
macro_rules! with_slots {
    (mut $ix:expr, |$s:ident| $body:expr) => {
        match $ix.mode {
            IndexMode::Compact => {
                let $s = &mut $ix.tight;
                $body
            }
            IndexMode::Locations | IndexMode::Membership => {
                let $s = &mut $ix.slots;
                $body
            }
        }
    };
    ($ix:expr, |$s:ident| $body:expr) => {
        match $ix.mode {
            IndexMode::Compact => {
                let $s = &$ix.tight;
                $body
            }
            IndexMode::Locations | IndexMode::Membership => {
                let $s = &$ix.slots;
                $body
            }
        }
    };
}
use with_slots;

/// A blob's place: pack number (into [`Index::packs`]) and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

/// What an index keeps of each blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexMode {
    /// Every blob with its location, and its slot's 16-byte key (check,
    /// prune).
    Locations,
    /// Every blob with its location, in 16 bytes for a blob under 64 KiB
    /// (see [`slots`]): for the commands that look blobs up only to read
    /// them, checked against their ids (restore, drills, find, a copy's
    /// source). Keys are 6 bytes, so an id
    /// that is not indexed but shares the first 6 bytes of one that is
    /// (about n/2⁴⁸ for n blobs) is taken for it, and its read fails the
    /// full-id check; indexed ids are always told apart.
    Compact,
    /// Blobs of data packs as keys only; blobs of tree packs with their
    /// location (backup).
    Membership,
}

/// Full ids asked for at once when settling shared keys: bounds the
/// requests and answers held (about 8 MB).
pub const ID_BATCH: usize = 1 << 16;

/// The source of a pack whose entries came from its own header.
const FROM_HEADER: u32 = u32::MAX;

/// Per pack: where its entries came from, and what it holds.
#[derive(Debug, Clone, Copy)]
struct PackMeta {
    /// Position in [`Index::files`] of the index file that listed it
    /// first, or [`FROM_HEADER`].
    source: u32,
    /// Blobs and stored bytes the pack holds, duplicates included.
    blobs: u32,
    bytes: u64,
}

/// Where to find the full id of a slot whose prefix another slot shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRequest {
    pub source: PackSource,
    pub pack: Id,
    pub offset: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PackSource {
    /// The index file that listed the pack.
    File(Id),
    /// The pack's own header (a pack adopted from storage).
    Header { size: u64 },
}

/// The full ids asked for, in the order asked.
pub type FullIds<'a, E> = dyn FnMut(&[IdRequest]) -> Result<Vec<Id>, E> + 'a;

/// The in-memory index of a repository.
pub struct Index {
    mode: IndexMode,
    packs: Vec<PackInfo>,
    pack_numbers: HashMap<Id, u32>,
    meta: Vec<PackMeta>,
    /// Sorted by key (then pack and offset).
    slots: Vec<Slot>,
    /// The slots in [`IndexMode::Compact`] (then `slots` is empty).
    tight: TightSlots,
    /// Sorted keys of blobs kept without location.
    members: Vec<Key>,
    /// Where each bucket of `members` starts (made again whenever they
    /// change; a stale one only falls back to a slower search).
    members_dir: KeyDirectory,
    /// Full id → slot, for slots marked collided.
    exact: HashMap<Id, u32>,
    /// Every index file read, and whether it is live (not superseded).
    files: Vec<(Id, bool)>,
    /// See [`Index::settle_peak_bytes`].
    settle_bytes: usize,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("mode", &self.mode)
            .field("packs", &self.packs.len())
            .field("blobs", &self.len())
            .finish()
    }
}

impl Default for Index {
    fn default() -> Index {
        Index::empty(IndexMode::Locations)
    }
}

impl Index {
    /// An empty index (with locations).
    pub fn new() -> Index {
        Index::default()
    }

    fn empty(mode: IndexMode) -> Index {
        Index {
            mode,
            packs: Vec::new(),
            pack_numbers: HashMap::new(),
            meta: Vec::new(),
            slots: Vec::new(),
            tight: TightSlots::default(),
            members: Vec::new(),
            members_dir: KeyDirectory::default(),
            exact: HashMap::new(),
            files: Vec::new(),
            settle_bytes: 0,
        }
    }

    pub fn mode(&self) -> IndexMode {
        self.mode
    }

    pub fn packs(&self) -> &[PackInfo] {
        &self.packs
    }

    pub fn pack(&self, n: u32) -> &PackInfo {
        &self.packs[n as usize]
    }

    pub fn has_pack(&self, id: &Id) -> bool {
        self.pack_numbers.contains_key(id)
    }

    pub fn pack_number(&self, id: &Id) -> Option<u32> {
        self.pack_numbers.get(id).copied()
    }

    /// The blobs a pack holds and their stored bytes, as its index entries
    /// list them (a blob also stored elsewhere counts in both packs).
    pub fn pack_contents(&self, n: u32) -> (u32, u64) {
        let m = self.meta[n as usize];
        (m.blobs, m.bytes)
    }

    /// The live index files the index was read from, in reading order.
    pub fn files(&self) -> impl Iterator<Item = &Id> {
        self.files.iter().filter(|f| f.1).map(|f| &f.0)
    }

    /// The index files, superseded ones included, that the entries of
    /// the packs `wanted` were taken from (a pack listed by several files
    /// has its entries from the first one read), in reading order. Packs
    /// adopted from their own headers have none.
    pub fn sources_of(&self, wanted: impl Fn(u32) -> bool) -> Vec<Id> {
        let mut used = vec![false; self.files.len()];
        for (n, m) in self.meta.iter().enumerate() {
            if m.source != FROM_HEADER && wanted(n as u32) {
                used[m.source as usize] = true;
            }
        }
        self.files.iter().zip(used).filter(|(_, u)| *u).map(|(f, _)| f.0).collect()
    }

    /// Whether the entries of pack `n` were taken from the index file `file`.
    pub fn listed_from(&self, n: u32, file: &Id) -> bool {
        let source = self.meta[n as usize].source;
        source != FROM_HEADER && self.files[source as usize].0 == *file
    }

    /// Index files read, superseded ones included.
    pub fn files_read(&self) -> usize {
        self.files.len()
    }

    pub fn len(&self) -> usize {
        self.slot_count() + self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slot of `id`, when it has a location.
    pub fn position(&self, id: &Id) -> Option<usize> {
        fn find<S: Slots>(s: &S, id: &Id, exact: &HashMap<Id, u32>) -> Option<usize> {
            let p = s.find(&S::key_of(id))?;
            if s.collided(p) {
                return exact.get(id).map(|&p| p as usize);
            }
            Some(p)
        }
        with_slots!(self, |s| find(s, id, &self.exact))
    }

    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        self.position(id).map(|p| self.location(p))
    }

    pub fn contains(&self, id: &Id) -> bool {
        // Data blobs first: most of what a backup asks about (each chunk of
        // an unchanged file), and all in `members` when it has any.
        self.members_dir.find(&self.members, &key_of(id), |m| m).is_some() || self.position(id).is_some()
    }

    /// Slots (blobs with a location) are numbered `0..slot_count()`.
    pub fn slot_count(&self) -> usize {
        with_slots!(self, |s| s.len())
    }

    pub fn location(&self, pos: usize) -> BlobLocation {
        with_slots!(self, |s| s.location(pos))
    }

    /// The 16-byte id prefix of a slot. Not kept in [`IndexMode::Compact`]:
    /// there it panics.
    pub fn key(&self, pos: usize) -> &Key {
        assert!(self.mode != IndexMode::Compact, "a compact index keeps 6 bytes of each id");
        &self.slots[pos].key
    }

    /// The slots of each pack, in offset order: 4 bytes per blob.
    pub fn slots_by_pack(&self) -> SlotsByPack {
        let n = self.slot_count();
        let mut starts = vec![0u32; self.packs.len() + 1];
        for i in 0..n {
            starts[self.location(i).pack as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut fill = starts.clone();
        let mut pos = vec![0u32; n];
        for i in 0..n {
            let p = self.location(i).pack as usize;
            pos[fill[p] as usize] = i as u32;
            fill[p] += 1;
        }
        let mut by = SlotsByPack { starts, pos };
        for p in 0..self.packs.len() {
            let (a, b) = (by.starts[p] as usize, by.starts[p + 1] as usize);
            by.pos[a..b].sort_unstable_by_key(|&i| self.location(i as usize).offset);
        }
        by
    }

    /// Adds packs read from their headers (adopted after an interrupted
    /// backup). A pack already indexed is left as it is; a blob already
    /// indexed keeps its first location.
    pub fn add_packs<E>(
        &mut self,
        packs: &[(PackInfo, Vec<PackEntry>)],
        full_ids: &mut FullIds<'_, E>,
    ) -> Result<(), E> {
        let mut members = Vec::new();
        for (info, entries) in packs {
            if self.has_pack(&info.id) {
                continue;
            }
            let n = self.packs.len() as u32;
            let bytes = entries.iter().map(|e| e.length as u64).sum();
            self.meta.push(PackMeta { source: FROM_HEADER, blobs: entries.len() as u32, bytes });
            self.pack_numbers.insert(info.id, n);
            self.packs.push(info.clone());
            for e in entries {
                if self.mode == IndexMode::Membership && info.kind == BlobKind::Data {
                    members.push(key_of(&e.id));
                } else {
                    let at = BlobLocation { pack: n, offset: e.offset, length: e.length, raw_length: e.raw_length };
                    with_slots!(mut self, |s| s.add(&e.id, at));
                }
            }
        }
        members.sort_unstable();
        super::keyset::merge_sorted(&mut self.members, &members);
        self.members.dedup();
        self.members_dir = KeyDirectory::new(&self.members, |m| m);
        // The full ids of slots that collided already are known.
        let known: HashMap<(u32, u32), Id> = self
            .exact
            .iter()
            .map(|(id, &p)| {
                let l = self.location(p as usize);
                ((l.pack, l.offset), *id)
            })
            .collect();
        with_slots!(mut self, |s| {
            s.clear_collided();
            s.sort();
        });
        self.settle(known, full_ids, ID_BATCH)
    }

    /// Settles the slots that share a key (see [`settle`]).
    fn settle<E>(
        &mut self,
        known: HashMap<(u32, u32), Id>,
        full_ids: &mut FullIds<'_, E>,
        batch: usize,
    ) -> Result<(), E> {
        let sources = settle::Sources { packs: &self.packs, meta: &self.meta, files: &self.files };
        let exact = &mut self.exact;
        self.settle_bytes = with_slots!(mut self, |s| settle::settle(s, exact, &sources, known, full_ids, batch))?;
        Ok(())
    }

    /// The most memory the last settling of shared keys held besides the
    /// slots, from the capacities (the caller's reading of full ids aside):
    /// a deterministic figure for the budget checks.
    pub fn settle_peak_bytes(&self) -> usize {
        self.settle_bytes
    }

    /// Bytes of memory held, from the capacities: a deterministic figure
    /// for the budget checks in tests and benchmarks.
    pub fn memory_bytes(&self) -> usize {
        // A hash table holds at most 7/8 of its buckets, each an entry and
        // a control byte.
        fn table<K, V>(m: &HashMap<K, V>) -> usize {
            m.capacity() * 8 / 7 * (std::mem::size_of::<(K, V)>() + 1)
        }
        self.slots.memory_bytes()
            + self.tight.memory_bytes()
            + self.members.capacity() * std::mem::size_of::<Key>()
            + self.members_dir.memory_bytes()
            + self.packs.capacity() * std::mem::size_of::<PackInfo>()
            + self.meta.capacity() * std::mem::size_of::<PackMeta>()
            + self.files.capacity() * std::mem::size_of::<(Id, bool)>()
            + table(&self.pack_numbers)
            + table(&self.exact)
    }
}

/// The slots of each pack, from [`Index::slots_by_pack`].
pub struct SlotsByPack {
    starts: Vec<u32>,
    pos: Vec<u32>,
}

impl SlotsByPack {
    /// Slot positions of pack `n`, in offset order.
    pub fn of(&self, n: u32) -> &[u32] {
        &self.pos[self.starts[n as usize] as usize..self.starts[n as usize + 1] as usize]
    }
}

#[cfg(test)]
mod tests;
