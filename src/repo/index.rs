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
//! - ids whose prefixes collide keep their full id in a small exact map,
//!   so each still finds its own location (and an id that is not there
//!   is not found through its prefix twin).
//!
//! That is 32 bytes per blob with locations and 16 without, plus the pack
//! table (under 100 bytes per pack). [`Index::memory_bytes`] adds it up
//! from the capacities.
//!
//! An index is built by [`IndexBuilder`] from the plaintext of index files,
//! one file at a time. Slots keep no full id, so when two slots share a
//! prefix the builder asks its caller for their full ids (which it
//! re-reads from the index file or pack header they came from): the same
//! blob stored twice keeps its first location, two different blobs both
//! go to the exact map. A blob may be listed twice by the millions (after
//! an interrupted prune, or a prune of a build that listed a repacked blob
//! in its marked old pack too), so the full ids are asked for in bounded
//! batches, grouped by source, and only their last 16 bytes are held
//! meanwhile ([`Index::settle_peak_bytes`]).

use std::collections::HashMap;

pub use super::index_file::{
    split_into_files, IndexFile, IndexVisitor, PackEntries, PackInfo, MAGIC, MAX_BLOBS_PER_FILE, VERSION,
};
use super::keyset::{key_of, Key, KeyDirectory};
use super::pack::PackEntry;
use super::BlobKind;
use crate::id::Id;

mod builder;
pub use builder::IndexBuilder;

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
    /// Every blob with its location (restore, check, prune).
    Locations,
    /// Blobs of data packs as keys only; blobs of tree packs with their
    /// location (backup).
    Membership,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    key: Key,
    /// The pack number; [`COLLIDED`] is set when another indexed blob
    /// shares the key, and the exact map then says which slot is whose.
    pack: u32,
    offset: u32,
    length: u32,
    raw_length: u32,
}

const COLLIDED: u32 = 1 << 31;
/// Full ids asked for at once when settling shared keys: bounds the
/// requests and answers held (about 8 MB).
pub const ID_BATCH: usize = 1 << 16;

/// The bytes of an id after its [`Key`].
const SUFFIX_LEN: usize = 32 - super::keyset::KEY_LEN;
type Suffix = [u8; SUFFIX_LEN];

fn suffix_of(id: &Id) -> Suffix {
    id.0[super::keyset::KEY_LEN..].try_into().unwrap()
}

fn id_of(key: &Key, suffix: &Suffix) -> Id {
    let mut b = [0u8; 32];
    b[..key.len()].copy_from_slice(key);
    b[key.len()..].copy_from_slice(suffix);
    Id(b)
}
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
    /// Sorted keys of blobs kept without location.
    members: Vec<Key>,
    /// Where each bucket of `members` starts (made again whenever they
    /// change; a stale one only falls back to a slower search).
    members_dir: KeyDirectory,
    /// Full id → slot, for slots marked [`COLLIDED`].
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
        self.slots.len() + self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slot of `id`, when it has a location.
    pub fn position(&self, id: &Id) -> Option<usize> {
        let k = key_of(id);
        let p = super::keyset::find_key(&self.slots, &k, |s| &s.key)?;
        if self.slots[p].pack & COLLIDED != 0 {
            return self.exact.get(id).map(|&p| p as usize);
        }
        Some(p)
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
        self.slots.len()
    }

    pub fn location(&self, pos: usize) -> BlobLocation {
        let s = &self.slots[pos];
        BlobLocation { pack: s.pack & !COLLIDED, offset: s.offset, length: s.length, raw_length: s.raw_length }
    }

    /// The id prefix of a slot.
    pub fn key(&self, pos: usize) -> &Key {
        &self.slots[pos].key
    }

    /// The slots of each pack, in offset order: 4 bytes per blob.
    pub fn slots_by_pack(&self) -> SlotsByPack {
        let mut starts = vec![0u32; self.packs.len() + 1];
        for s in &self.slots {
            starts[(s.pack & !COLLIDED) as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut fill = starts.clone();
        let mut pos = vec![0u32; self.slots.len()];
        for (i, s) in self.slots.iter().enumerate() {
            let p = (s.pack & !COLLIDED) as usize;
            pos[fill[p] as usize] = i as u32;
            fill[p] += 1;
        }
        let mut by = SlotsByPack { starts, pos };
        for p in 0..self.packs.len() {
            let (a, b) = (by.starts[p] as usize, by.starts[p + 1] as usize);
            by.pos[a..b].sort_unstable_by_key(|&i| self.slots[i as usize].offset);
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
                    self.slots.push(Slot {
                        key: key_of(&e.id),
                        pack: n,
                        offset: e.offset,
                        length: e.length,
                        raw_length: e.raw_length,
                    });
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
                let s = &self.slots[p as usize];
                ((s.pack & !COLLIDED, s.offset), *id)
            })
            .collect();
        for s in &mut self.slots {
            s.pack &= !COLLIDED;
        }
        self.slots.sort_unstable();
        self.settle(known, full_ids, ID_BATCH)
    }

    /// Resolves slots that share a key: the same blob stored twice keeps
    /// its first location (the lowest pack number), different blobs each
    /// keep theirs, marked [`COLLIDED`] and found through the exact map.
    ///
    /// After an interrupted prune (or one of a build before
    /// `prune::index_rewrite`), every repacked blob is listed twice until
    /// its old pack is deleted: millions of shared slots. So what is
    /// held per shared slot is its position and the rest of its id (20
    /// bytes), and the full ids are asked for in batches of at most `batch`,
    /// in the order of the index files and packs they come from (each file
    /// is read once, or once per batch it spans).
    fn settle<E>(
        &mut self,
        known: HashMap<(u32, u32), Id>,
        full_ids: &mut FullIds<'_, E>,
        batch: usize,
    ) -> Result<(), E> {
        self.exact.clear();
        self.settle_bytes = 0;
        // Slots whose key another slot has: position, and the id's suffix.
        // Counted first, so that the list is allocated once at its size
        // (grown by doubling, it would hold up to twice that).
        let runs_of_shared = |slots: &[Slot], each: &mut dyn FnMut(usize, usize)| {
            let mut i = 0;
            while i < slots.len() {
                let mut j = i + 1;
                while j < slots.len() && slots[j].key == slots[i].key {
                    j += 1;
                }
                if j - i > 1 {
                    each(i, j);
                }
                i = j;
            }
        };
        let mut count = 0;
        runs_of_shared(&self.slots, &mut |i, j| count += j - i);
        let mut shared: Vec<(u32, Suffix)> = Vec::with_capacity(count);
        runs_of_shared(&self.slots, &mut |i, j| shared.extend((i..j).map(|p| (p as u32, [0u8; SUFFIX_LEN]))));
        if shared.is_empty() {
            return Ok(());
        }
        let batch_bytes = self.read_suffixes(&mut shared, &known, full_ids, batch.max(1))?;
        self.settle_bytes = shared.capacity() * std::mem::size_of::<(u32, Suffix)>() + batch_bytes;
        shared.sort_unstable_by_key(|e| e.0);
        // Compact in place: the write position never passes the read one.
        let (mut w, mut i, n) = (0, 0, self.slots.len());
        let mut shared = shared.into_iter().peekable();
        while i < n {
            if shared.peek().map(|e| e.0 as usize) != Some(i) {
                self.slots[w] = self.slots[i];
                (w, i) = (w + 1, i + 1);
                continue;
            }
            let key = self.slots[i].key;
            let mut group: Vec<(Suffix, Slot)> = Vec::new();
            while i < n && self.slots[i].key == key {
                let (_, suffix) = shared.next().expect("every slot of a shared key is listed");
                if !group.iter().any(|g| g.0 == suffix) {
                    group.push((suffix, self.slots[i]));
                }
                i += 1;
            }
            if group.len() == 1 {
                self.slots[w] = group[0].1;
                w += 1;
                continue;
            }
            for (suffix, mut s) in group {
                s.pack |= COLLIDED;
                self.exact.insert(id_of(&key, &suffix), w as u32);
                self.slots[w] = s;
                w += 1;
            }
        }
        self.slots.truncate(w);
        self.slots.shrink_to_fit();
        Ok(())
    }

    /// Fills in the id suffix of every shared slot: from `known`, or from
    /// `full_ids`, asked in batches grouped by source. Returns the most
    /// bytes a batch held (requests and answers).
    fn read_suffixes<E>(
        &self,
        shared: &mut [(u32, Suffix)],
        known: &HashMap<(u32, u32), Id>,
        full_ids: &mut FullIds<'_, E>,
        batch: usize,
    ) -> Result<usize, E> {
        let (slots, meta) = (&self.slots, &self.meta);
        let place = |p: u32| {
            let s = &slots[p as usize];
            (meta[s.pack as usize].source, s.pack, s.offset)
        };
        shared.sort_unstable_by_key(|e| place(e.0));
        let mut reqs: Vec<IdRequest> = Vec::with_capacity(batch.min(shared.len()));
        let mut asked: Vec<u32> = Vec::with_capacity(reqs.capacity());
        let mut peak = 0;
        let mut flush =
            |slots: &[Slot], shared: &mut [(u32, Suffix)], reqs: &mut Vec<IdRequest>, asked: &mut Vec<u32>| {
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
                    debug_assert_eq!(key_of(id), slots[e.0 as usize].key, "a full id re-read has the slot's prefix");
                    e.1 = suffix_of(id);
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
                flush(slots, shared, &mut reqs, &mut asked)?;
            }
            for k in run..end {
                let s = self.slots[shared[k].0 as usize];
                if let Some(id) = known.get(&(s.pack, s.offset)) {
                    shared[k].1 = suffix_of(id);
                    continue;
                }
                let info = &self.packs[s.pack as usize];
                let source = match self.meta[s.pack as usize].source {
                    FROM_HEADER => PackSource::Header { size: info.size },
                    f => PackSource::File(self.files[f as usize].0),
                };
                reqs.push(IdRequest { source, pack: info.id, offset: s.offset });
                asked.push(k as u32);
                if reqs.len() == batch {
                    flush(slots, shared, &mut reqs, &mut asked)?;
                }
            }
            run = end;
        }
        flush(slots, shared, &mut reqs, &mut asked)?;
        Ok(peak)
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
        self.slots.capacity() * std::mem::size_of::<Slot>()
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
