//! Compact sets of blob ids, by their first [`KEY_LEN`] bytes.
//!
//! Memory per blob is what limits how many files a backup host can back
//! up, so the in-memory structures keep a 16-byte prefix of each 32-byte
//! blob id (a [`Key`]) in sorted arrays rather than full ids in hash
//! tables. Blob ids are keyed BLAKE3 outputs: two distinct blobs share a
//! 128-bit prefix with probability about n²/2¹²⁹ (3·10⁻²¹ for a billion
//! blobs). Where two *indexed* blobs do share one, [`super::Index`] keeps
//! them apart by their full ids; every blob read is checked against its
//! full id anyway ([`super::blob::decode`]).

use std::collections::HashSet;

use crate::id::Id;

pub const KEY_LEN: usize = 16;

/// The first [`KEY_LEN`] bytes of a blob id.
pub type Key = [u8; KEY_LEN];

pub fn key_of(id: &Id) -> Key {
    id.0[..KEY_LEN].try_into().unwrap()
}

/// Merges the sorted `new` into the sorted `dst` in place, from the back:
/// `dst` grows by `new.len()` only (a large vector grows by remapping its
/// pages, not by copying them), and no third buffer is needed.
pub fn merge_sorted<T: Copy + Ord>(dst: &mut Vec<T>, new: &[T]) {
    if new.is_empty() {
        return;
    }
    let n = dst.len();
    dst.reserve_exact(new.len());
    dst.extend_from_slice(new);
    let (mut i, mut j, mut k) = (n, new.len(), n + new.len());
    while j > 0 {
        k -= 1;
        if i > 0 && dst[i - 1] > new[j - 1] {
            dst[k] = dst[i - 1];
            i -= 1;
        } else {
            dst[k] = new[j - 1];
            j -= 1;
        }
    }
}

/// Finds `k` in `sorted` (ascending by `key`): the position of an element
/// with that key, as `binary_search_by(..).ok()` gives. Keys are keyed
/// hashes, spread evenly, so the search starts where `k` would be in an
/// even spread and widens a window around that guess until it brackets
/// `k` (off by about √n places), then searches the window: a lookup in
/// an array of millions touches a few neighbouring cache lines instead of
/// some twenty far apart. Correct for any keys; keys bunched together
/// (a hostile index) only make it as slow as a plain binary search.
/// Any prefix of an id serves as the key (see [`super::index`]'s compact
/// slots); its first bytes make the guess.
pub fn find_key<T, K: Ord + AsRef<[u8]>>(sorted: &[T], k: &K, key: impl Fn(&T) -> &K) -> Option<usize> {
    let n = sorted.len();
    if n < 64 {
        return sorted.binary_search_by(|s| key(s).cmp(k)).ok();
    }
    let mut head = [0u8; 8];
    let len = k.as_ref().len().min(8);
    head[..len].copy_from_slice(&k.as_ref()[..len]);
    let top = u64::from_be_bytes(head);
    let guess = ((top as u128 * n as u128) >> 64) as usize; // below n
                                                            // Down until sorted[lo] <= k (or the start), up until sorted[hi-1] >= k
                                                            // (or the end): any element equal to k is then in lo..hi.
    let (mut lo, mut step) = (guess, 1);
    while lo > 0 && key(&sorted[lo]) > k {
        lo = lo.saturating_sub(step);
        step *= 2;
    }
    let (mut hi, mut step) = (guess + 1, 1);
    while hi < n && key(&sorted[hi - 1]) < k {
        hi = (hi + step).min(n);
        step *= 2;
    }
    sorted[lo..hi].binary_search_by(|s| key(s).cmp(k)).ok().map(|i| lo + i)
}

/// Where each bucket of keys starts in a sorted array, a bucket being the
/// keys whose top bits are the same: a lookup reads one entry here, then
/// the few keys of its bucket, where [`find_key`] probes ever wider around
/// its guess (about a dozen cache lines in an array of a million). An
/// unchanged backup looks up every chunk of every file; that took a tenth
/// of its time. 4 bytes per 4 to 8 keys. Keys bunched in one bucket (a
/// hostile index) only make its search a binary search of the bunch.
#[derive(Debug, Default)]
pub struct KeyDirectory {
    bits: u32,
    /// Per bucket, the first position whose key is in it or a later one;
    /// then the array's length.
    starts: Vec<u32>,
    /// The length of the array it was made for: another length means the
    /// array changed since, and lookups fall back to [`find_key`].
    len: usize,
}

/// Keys per bucket, at least.
const PER_BUCKET: usize = 4;

fn bucket(k: &Key, bits: u32) -> usize {
    (u64::from_be_bytes(k[..8].try_into().expect("8 bytes")) >> (64 - bits)) as usize
}

impl KeyDirectory {
    /// The directory of `sorted` (ascending by `key`). Small arrays, and
    /// arrays past 2³² entries, get none: lookups use [`find_key`].
    pub fn new<T>(sorted: &[T], key: impl Fn(&T) -> &Key) -> KeyDirectory {
        let len = sorted.len();
        if len < 64 || u32::try_from(len).is_err() {
            return KeyDirectory { bits: 0, starts: Vec::new(), len };
        }
        let bits = (len / PER_BUCKET).ilog2();
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        for (i, t) in sorted.iter().enumerate() {
            let b = bucket(key(t), bits);
            while starts.len() <= b {
                starts.push(i as u32);
            }
        }
        starts.resize((1 << bits) + 1, len as u32);
        KeyDirectory { bits, starts, len }
    }

    /// Finds `k` in `sorted`, as [`find_key`] does.
    pub fn find<T>(&self, sorted: &[T], k: &Key, key: impl Fn(&T) -> &Key) -> Option<usize> {
        if self.starts.is_empty() || self.len != sorted.len() {
            return find_key(sorted, k, key);
        }
        let b = bucket(k, self.bits);
        let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        sorted[lo..hi].binary_search_by(|s| key(s).cmp(k)).ok().map(|i| lo + i)
    }

    pub fn memory_bytes(&self) -> usize {
        self.starts.capacity() * std::mem::size_of::<u32>()
    }
}

/// A growing set of keys: recent insertions in a small hash set, the rest
/// in one sorted array, 16 bytes per key. The hash set is folded into the
/// array when it holds more than 1/16 of it (and at least 65,536 keys), so
/// it adds at most a few bytes per key.
#[derive(Default)]
pub struct KeySet {
    sorted: Vec<Key>,
    recent: HashSet<Key>,
}

const MIN_RECENT: usize = 1 << 16;

impl KeySet {
    pub fn new() -> KeySet {
        KeySet::default()
    }

    pub fn contains(&self, k: &Key) -> bool {
        self.recent.contains(k) || find_key(&self.sorted, k, |s| s).is_some()
    }

    /// Adds `k`; false when it was there already.
    pub fn insert(&mut self, k: Key) -> bool {
        if find_key(&self.sorted, &k, |s| s).is_some() || !self.recent.insert(k) {
            return false;
        }
        if self.recent.len() >= MIN_RECENT.max(self.sorted.len() / 16) {
            self.fold();
        }
        true
    }

    fn fold(&mut self) {
        let mut batch: Vec<Key> = self.recent.drain().collect();
        batch.sort_unstable();
        merge_sorted(&mut self.sorted, &batch);
    }

    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held, from the capacities (a deterministic figure).
    pub fn memory_bytes(&self) -> usize {
        // A hash set holds at most 7/8 of its buckets, each a key and a
        // control byte.
        self.sorted.capacity() * KEY_LEN + self.recent.capacity() * 8 / 7 * (KEY_LEN + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u64) -> Key {
        key_of(&Id::hash_of(&i.to_le_bytes()))
    }

    /// A key from its first byte and a counter (bunched keys: all in one
    /// corner of the key space, or sharing a prefix).
    fn bunched(first: u8, i: u64) -> Key {
        let mut key = [first; KEY_LEN];
        key[8..].copy_from_slice(&i.to_be_bytes());
        key
    }

    #[test]
    fn find_key_and_a_key_directory_find_what_a_binary_search_finds_however_the_keys_are_spread() {
        let even: Vec<Key> = (0..5000).map(k).collect();
        let low: Vec<Key> = (0..5000).map(|i| bunched(0, i * 2)).collect();
        let high: Vec<Key> = (0..5000).map(|i| bunched(0xff, i * 2)).collect();
        let dup: Vec<Key> = (0..5000).map(|i| bunched(0x80, i / 7 * 2)).collect();
        for (name, mut keys) in [("even", even), ("low", low), ("high", high), ("dup", dup)] {
            keys.sort_unstable();
            // Made for the whole array: used on a shorter one, it is stale.
            let stale = KeyDirectory::new(&keys, |s| s);
            for len in [0, 1, 63, 64, 65, 1000, keys.len()] {
                let sorted = &keys[..len];
                let dir = KeyDirectory::new(sorted, |s| s);
                assert!(dir.memory_bytes() <= len.max(64) / PER_BUCKET * 4 + 4, "{name}: {dir:?}");
                // Every key present, and keys around each (absent ones too).
                let probes = keys.iter().flat_map(|x| {
                    let mut below = *x;
                    below[KEY_LEN - 1] = below[KEY_LEN - 1].wrapping_sub(1);
                    let mut above = *x;
                    above[KEY_LEN - 1] = above[KEY_LEN - 1].wrapping_add(1);
                    [*x, below, above]
                });
                for p in probes.chain([[0; KEY_LEN], [0xff; KEY_LEN]]) {
                    let found = find_key(sorted, &p, |s| s);
                    let present = sorted.binary_search(&p).is_ok();
                    assert_eq!(found.is_some(), present, "{name}, {len} keys, {p:?}");
                    if let Some(i) = found {
                        assert_eq!(sorted[i], p, "{name}, {len} keys: the position holds the key");
                    }
                    for (which, d) in [("directory", &dir), ("stale directory", &stale)] {
                        let at = d.find(sorted, &p, |s| s);
                        assert_eq!(at.is_some(), present, "{which}: {name}, {len} keys, {p:?}");
                        assert!(at.is_none_or(|i| sorted[i] == p), "{which}: {name}, {len} keys");
                    }
                }
            }
        }
    }

    #[test]
    fn merge_keeps_order_and_every_element() {
        let mut a = vec![1, 4, 4, 9];
        merge_sorted(&mut a, &[0, 4, 5, 10]);
        assert_eq!(a, vec![0, 1, 4, 4, 4, 5, 9, 10]);
        let mut b: Vec<u32> = Vec::new();
        merge_sorted(&mut b, &[2, 3]);
        assert_eq!(b, vec![2, 3]);
    }

    #[test]
    fn a_key_set_finds_every_key_across_folds_and_stays_compact() {
        let mut s = KeySet::new();
        let n = 300_000u64;
        for i in 0..n {
            assert!(s.insert(k(i)), "{i} is new");
        }
        assert!(!s.insert(k(7)) && !s.insert(k(n - 1)), "present keys are not new");
        assert_eq!(s.len(), n as usize);
        assert!((0..n).step_by(997).all(|i| s.contains(&k(i))));
        assert!(!s.contains(&k(n + 1)));
        let per_key = s.memory_bytes() as f64 / n as f64;
        // 16 bytes in the array, plus the hash set of the newest keys.
        assert!(per_key <= 24.0, "{per_key} bytes per key");
    }
}
