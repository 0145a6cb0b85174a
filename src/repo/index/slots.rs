//! The two ways an index keeps its slots (the blobs it has a location
//! for), each sorted by a prefix of the blob id:
//!
//! - [`Slot`]: 32 bytes, a 16-byte [`Key`] and the location's four
//!   numbers (check, prune, and a backup's tree blobs, which need a
//!   slot's key, or must never take one blob for another);
//! - [`Tight`]: 16 bytes, a 6-byte key and the location packed into 10
//!   bytes, for the commands that only look blobs up to read them
//!   (restore, drills, find, a copy's source: [`super::IndexMode::Compact`]). A
//!   location too large to pack (a blob of 64 KiB or more, an offset past
//!   64 MiB, a pack number past 2²⁰) is kept whole in an overflow table:
//!   32 bytes for such a blob, as many as a [`Slot`].
//!
//! [`Slots`] is what building, settling shared keys and lookups need of
//! either, so both go through the same code.

use super::BlobLocation;
use crate::id::Id;
use crate::repo::keyset::{find_key, Key, KEY_LEN};

/// What the index's building, settling and lookups need of a slot table.
/// Slots are numbered `0..len()`; a slot's location never includes the
/// collided flag.
pub(super) trait Slots {
    /// The prefix of a blob id the slots are sorted and found by.
    type Key: Copy + Ord + AsRef<[u8]>;
    /// The rest of the id.
    type Suffix: Copy + Eq + Default;

    fn key_of(id: &Id) -> Self::Key;
    fn suffix_of(id: &Id) -> Self::Suffix;
    fn id_of(key: &Self::Key, suffix: &Self::Suffix) -> Id;

    fn len(&self) -> usize;
    fn key(&self, i: usize) -> Self::Key;
    fn location(&self, i: usize) -> BlobLocation;
    /// Whether another indexed blob shares the slot's key (the exact map
    /// then says which slot is whose).
    fn collided(&self, i: usize) -> bool;
    fn set_collided(&mut self, i: usize);
    fn clear_collided(&mut self);
    fn reserve(&mut self, n: usize);
    fn add(&mut self, id: &Id, at: BlobLocation);
    /// Slot `to` becomes a copy of slot `from`.
    fn copy_slot(&mut self, from: usize, to: usize);
    /// Keeps the first `n` slots and gives back the spare capacity.
    fn keep_first(&mut self, n: usize);
    /// Sorts by key, then pack number, then offset.
    fn sort(&mut self);
    fn find(&self, k: &Self::Key) -> Option<usize>;
    /// Gives each slot of pack `n` the number `to[n]`, and drops the slots
    /// whose pack maps to `u32::MAX`.
    fn renumber(&mut self, to: &[u32]);
    fn memory_bytes(&self) -> usize;
}

/// A slot of 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Slot {
    pub key: Key,
    /// The pack number; [`COLLIDED`] is set when another indexed blob
    /// shares the key.
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

const COLLIDED: u32 = 1 << 31;

impl Slots for Vec<Slot> {
    type Key = Key;
    type Suffix = [u8; 32 - KEY_LEN];

    fn key_of(id: &Id) -> Key {
        crate::repo::keyset::key_of(id)
    }
    fn suffix_of(id: &Id) -> Self::Suffix {
        id.0[KEY_LEN..].try_into().expect("the rest of the id")
    }
    fn id_of(key: &Key, suffix: &Self::Suffix) -> Id {
        join(key, suffix)
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn key(&self, i: usize) -> Key {
        self[i].key
    }
    fn location(&self, i: usize) -> BlobLocation {
        let s = &self[i];
        BlobLocation { pack: s.pack & !COLLIDED, offset: s.offset, length: s.length, raw_length: s.raw_length }
    }
    fn collided(&self, i: usize) -> bool {
        self[i].pack & COLLIDED != 0
    }
    fn set_collided(&mut self, i: usize) {
        self[i].pack |= COLLIDED;
    }
    fn clear_collided(&mut self) {
        self.iter_mut().for_each(|s| s.pack &= !COLLIDED);
    }
    fn reserve(&mut self, n: usize) {
        Vec::reserve(self, n)
    }
    fn add(&mut self, id: &Id, at: BlobLocation) {
        Vec::push(
            self,
            Slot {
                key: Self::key_of(id),
                pack: at.pack,
                offset: at.offset,
                length: at.length,
                raw_length: at.raw_length,
            },
        );
    }
    fn copy_slot(&mut self, from: usize, to: usize) {
        self[to] = self[from];
    }
    fn keep_first(&mut self, n: usize) {
        Vec::truncate(self, n);
        self.shrink_to_fit();
    }
    fn sort(&mut self) {
        self.sort_unstable();
    }
    fn find(&self, k: &Key) -> Option<usize> {
        find_key(self, k, |s| &s.key)
    }
    fn renumber(&mut self, to: &[u32]) {
        self.retain(|s| to[(s.pack & !COLLIDED) as usize] != u32::MAX);
        for s in self.iter_mut() {
            s.pack = to[(s.pack & !COLLIDED) as usize] | (s.pack & COLLIDED);
        }
    }
    fn memory_bytes(&self) -> usize {
        self.capacity() * std::mem::size_of::<Slot>()
    }
}

fn join(key: &[u8], suffix: &[u8]) -> Id {
    let mut b = [0u8; 32];
    b[..key.len()].copy_from_slice(key);
    b[key.len()..].copy_from_slice(suffix);
    Id(b)
}

/// The bytes of an id a [`Tight`] slot keeps.
pub(super) const TIGHT_KEY_LEN: usize = 6;
pub(super) type TightKey = [u8; TIGHT_KEY_LEN];

/// A slot of 16 bytes: the key, then the location as an 80-bit number
/// (little-endian): the pack number in bits 0–19, the offset in 20–45,
/// the length in 46–61 and the raw length in 62–77; or, with
/// [`OVERFLOW`] set, the position of the whole location in
/// [`TightSlots::overflow`]. [`TIGHT_COLLIDED`] is bit 79.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tight {
    key: TightKey,
    loc: [u8; 10],
}

const PACK_BITS: u32 = 20;
const OFFSET_BITS: u32 = 26;
const LENGTH_BITS: u32 = 16;
const OVERFLOW: u128 = 1 << 78;
const TIGHT_COLLIDED: u128 = 1 << 79;

fn bits(loc: &[u8; 10]) -> u128 {
    let mut b = [0u8; 16];
    b[..10].copy_from_slice(loc);
    u128::from_le_bytes(b)
}

fn from_bits(v: u128) -> [u8; 10] {
    v.to_le_bytes()[..10].try_into().expect("10 bytes")
}

fn field(v: u128, at: u32, width: u32) -> u32 {
    ((v >> at) & ((1 << width) - 1)) as u32
}

/// The location packed into 78 bits, when each number fits its field.
fn pack_location(at: BlobLocation) -> Option<u128> {
    let fits = |n: u32, width: u32| n < 1 << width;
    let fit = fits(at.pack, PACK_BITS)
        && fits(at.offset, OFFSET_BITS)
        && fits(at.length, LENGTH_BITS)
        && fits(at.raw_length, LENGTH_BITS);
    fit.then_some(
        at.pack as u128
            | (at.offset as u128) << PACK_BITS
            | (at.length as u128) << (PACK_BITS + OFFSET_BITS)
            | (at.raw_length as u128) << (PACK_BITS + OFFSET_BITS + LENGTH_BITS),
    )
}

/// The [`Tight`] slots, and the locations too large for them.
#[derive(Debug, Default)]
pub(super) struct TightSlots {
    slots: Vec<Tight>,
    overflow: Vec<BlobLocation>,
}

impl TightSlots {
    fn unpack(&self, loc: &[u8; 10]) -> BlobLocation {
        let v = bits(loc);
        if v & OVERFLOW != 0 {
            return self.overflow[field(v, 0, 32) as usize];
        }
        BlobLocation {
            pack: field(v, 0, PACK_BITS),
            offset: field(v, PACK_BITS, OFFSET_BITS),
            length: field(v, PACK_BITS + OFFSET_BITS, LENGTH_BITS),
            raw_length: field(v, PACK_BITS + OFFSET_BITS + LENGTH_BITS, LENGTH_BITS),
        }
    }

    /// `at` packed, or put in the overflow table (reusing the overflow
    /// entry `reuse`, when the slot had one).
    fn pack(&mut self, at: BlobLocation, reuse: Option<usize>) -> u128 {
        if let Some(v) = pack_location(at) {
            return v;
        }
        let n = match reuse {
            Some(n) => {
                self.overflow[n] = at;
                n
            }
            None => {
                self.overflow.push(at);
                self.overflow.len() - 1
            }
        };
        n as u128 | OVERFLOW
    }

    /// Slots whose location is in the overflow table (for the tests).
    #[cfg(test)]
    pub fn overflowing(&self) -> usize {
        self.slots.iter().filter(|t| bits(&t.loc) & OVERFLOW != 0).count()
    }

    /// Entries of the overflow table (for the tests).
    #[cfg(test)]
    pub fn overflow_entries(&self) -> usize {
        self.overflow.len()
    }
}

impl Slots for TightSlots {
    type Key = TightKey;
    type Suffix = [u8; 32 - TIGHT_KEY_LEN];

    fn key_of(id: &Id) -> TightKey {
        id.0[..TIGHT_KEY_LEN].try_into().expect("the key")
    }
    fn suffix_of(id: &Id) -> Self::Suffix {
        id.0[TIGHT_KEY_LEN..].try_into().expect("the rest of the id")
    }
    fn id_of(key: &TightKey, suffix: &Self::Suffix) -> Id {
        join(key, suffix)
    }
    fn len(&self) -> usize {
        self.slots.len()
    }
    fn key(&self, i: usize) -> TightKey {
        self.slots[i].key
    }
    fn location(&self, i: usize) -> BlobLocation {
        self.unpack(&self.slots[i].loc)
    }
    fn collided(&self, i: usize) -> bool {
        bits(&self.slots[i].loc) & TIGHT_COLLIDED != 0
    }
    fn set_collided(&mut self, i: usize) {
        let t = &mut self.slots[i];
        t.loc = from_bits(bits(&t.loc) | TIGHT_COLLIDED);
    }
    fn clear_collided(&mut self) {
        for t in &mut self.slots {
            t.loc = from_bits(bits(&t.loc) & !TIGHT_COLLIDED);
        }
    }
    fn reserve(&mut self, n: usize) {
        self.slots.reserve(n)
    }
    fn add(&mut self, id: &Id, at: BlobLocation) {
        let loc = from_bits(self.pack(at, None));
        self.slots.push(Tight { key: Self::key_of(id), loc });
    }
    fn copy_slot(&mut self, from: usize, to: usize) {
        self.slots[to] = self.slots[from];
    }
    fn keep_first(&mut self, n: usize) {
        self.slots.truncate(n);
        self.slots.shrink_to_fit();
        // Slots dropped (a blob's second copy, a pack superseded) or packed
        // again leave their overflow entries behind: keep only those of the
        // slots kept, in slot order.
        let mut kept = Vec::with_capacity(self.slots.iter().filter(|t| bits(&t.loc) & OVERFLOW != 0).count());
        for t in &mut self.slots {
            let v = bits(&t.loc);
            if v & OVERFLOW != 0 {
                kept.push(self.overflow[field(v, 0, 32) as usize]);
                t.loc = from_bits((v & !0xffff_ffff) | (kept.len() - 1) as u128);
            }
        }
        self.overflow = kept;
    }
    fn sort(&mut self) {
        // By key alone (keys are nearly all distinct), then each run of an
        // equal key by its place: the same order as sorting by both, with a
        // location unpacked only where a key repeats.
        self.slots.sort_unstable_by_key(|t| t.key);
        let mut slots = std::mem::take(&mut self.slots);
        let mut i = 0;
        while i < slots.len() {
            let j = i + slots[i..].iter().take_while(|t| t.key == slots[i].key).count();
            if j - i > 1 {
                slots[i..j].sort_unstable_by_key(|t| {
                    let l = self.unpack(&t.loc);
                    (l.pack, l.offset)
                });
            }
            i = j;
        }
        self.slots = slots;
    }
    fn find(&self, k: &TightKey) -> Option<usize> {
        find_key(&self.slots, k, |t| &t.key)
    }
    fn renumber(&mut self, to: &[u32]) {
        let mut slots = std::mem::take(&mut self.slots);
        slots.retain(|t| to[self.unpack(&t.loc).pack as usize] != u32::MAX);
        for t in &mut slots {
            let v = bits(&t.loc);
            let mut at = self.unpack(&t.loc);
            at.pack = to[at.pack as usize];
            let reuse = (v & OVERFLOW != 0).then(|| field(v, 0, 32) as usize);
            t.loc = from_bits(self.pack(at, reuse) | (v & TIGHT_COLLIDED));
        }
        self.slots = slots;
    }
    fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Tight>()
            + self.overflow.capacity() * std::mem::size_of::<BlobLocation>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tight_slot_is_16_bytes_and_gives_back_every_location_it_was_given() {
        assert_eq!(std::mem::size_of::<Tight>(), 16);
        let mut t = TightSlots::default();
        let max = |w: u32| (1u32 << w) - 1;
        let locations = [
            BlobLocation { pack: 0, offset: 0, length: 0, raw_length: 0 },
            BlobLocation { pack: max(20), offset: max(26), length: max(16), raw_length: max(16) },
            // One past each field: kept whole.
            BlobLocation { pack: 1 << 20, offset: 5, length: 6, raw_length: 7 },
            BlobLocation { pack: 3, offset: 1 << 26, length: 6, raw_length: 7 },
            BlobLocation { pack: 3, offset: 5, length: 1 << 16, raw_length: 7 },
            BlobLocation { pack: 3, offset: 5, length: 6, raw_length: 1 << 16 },
            BlobLocation { pack: u32::MAX >> 1, offset: u32::MAX, length: u32::MAX, raw_length: u32::MAX },
        ];
        for (i, &at) in locations.iter().enumerate() {
            t.add(&Id::hash_of(&[i as u8]), at);
        }
        assert_eq!(t.overflowing(), 5);
        for (i, &at) in locations.iter().enumerate() {
            assert_eq!(t.location(i), at, "slot {i}");
            assert!(!t.collided(i));
        }
        t.set_collided(1);
        t.set_collided(6);
        assert!(t.collided(1) && t.collided(6) && !t.collided(2));
        assert_eq!((t.location(1), t.location(6)), (locations[1], locations[6]), "the flag is no part of it");
        // Renumbering keeps the flag, drops what maps nowhere, and moves a
        // location in or out of the overflow table as its pack number
        // says, or keeps its entry there.
        let mut to: Vec<u32> = vec![u32::MAX; (1 << 20) + 1];
        to[0] = 1 << 20;
        to[max(20) as usize] = 9;
        to[1 << 20] = 2;
        to[3] = 7;
        t.slots.truncate(6); // the last pack number is past `to`
        t.slots.remove(4);
        t.renumber(&to);
        assert_eq!(t.len(), 5);
        assert_eq!(t.location(0), BlobLocation { pack: 1 << 20, ..locations[0] });
        assert_eq!(t.location(1), BlobLocation { pack: 9, ..locations[1] });
        assert!(t.collided(1) && !t.collided(0));
        assert_eq!(t.location(2), BlobLocation { pack: 2, ..locations[2] }, "packed again");
        assert_eq!(t.location(3), BlobLocation { pack: 7, ..locations[3] }, "its entry kept");
        assert_eq!(t.location(4), BlobLocation { pack: 7, ..locations[5] });
        assert_eq!(t.overflowing(), 3);
        assert_eq!(t.overflow.len(), 6, "one entry more, and slot 2's left behind");
        // Keeping the first slots keeps only their entries.
        t.keep_first(4);
        assert_eq!(t.overflow.len(), 2);
        for (i, want) in [(0, 1 << 20), (1, 9), (2, 2), (3, 7)] {
            assert_eq!(t.location(i).pack, want);
        }
        assert_eq!(t.location(3), BlobLocation { pack: 7, ..locations[3] });
        assert!(t.collided(1));
        // Sorting puts equal keys in pack and offset order.
        let mut t = TightSlots::default();
        let id = Id::hash_of(b"one");
        for (pack, offset) in [(5, 1 << 27), (2, 9), (5, 3), (2, 1)] {
            t.add(&id, BlobLocation { pack, offset, length: 1, raw_length: 1 });
        }
        t.add(&Id([0; 32]), BlobLocation { pack: 9, offset: 0, length: 1, raw_length: 1 });
        t.sort();
        let order: Vec<(u32, u32)> = (0..5).map(|i| (t.location(i).pack, t.location(i).offset)).collect();
        assert_eq!(order, [(9, 0), (2, 1), (2, 9), (5, 3), (5, 1 << 27)]);
    }
}
