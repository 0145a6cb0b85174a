//! The index: where each blob lives.
//!
//! In memory the index is a sorted vector of 48-byte entries (id plus a
//! 16-byte location) searched by binary search, and a small hash map for
//! blobs added in the current session. That keeps it at 48 bytes per blob
//! (plus the pack table), under the 64-byte budget of the design, and it
//! loads without rehashing.
//!
//! On storage an index file is a sealed object (see `docs/FORMAT.md`):
//! `"CIDX" version(u8) n_supersedes(u32) ids… n_packs(u32)` then for each pack
//! `id(32) kind(u8) size(u64) n_blobs(u32)` and `id(32) offset length
//! raw_length (u32 each)` per blob.

use std::collections::HashMap;

use crate::id::Id;

use super::pack::PackEntry;
use super::BlobKind;

pub const MAGIC: &[u8; 4] = b"CIDX";
pub const VERSION: u8 = 1;

/// A blob's place: pack number (into [`Index::packs`]) and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    pub id: Id,
    pub kind: BlobKind,
    pub size: u64,
}

/// The in-memory index of a repository.
#[derive(Default)]
pub struct Index {
    packs: Vec<PackInfo>,
    pack_numbers: HashMap<Id, u32>,
    sorted: Vec<(Id, BlobLocation)>,
    recent: HashMap<Id, BlobLocation>,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
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

    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        if let Ok(i) = self.sorted.binary_search_by(|(k, _)| k.cmp(id)) {
            return Some(self.sorted[i].1);
        }
        self.recent.get(id).copied()
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.get(id).is_some()
    }

    /// The kind of the pack a blob lives in.
    pub fn kind_of(&self, id: &Id) -> Option<BlobKind> {
        self.get(id).map(|l| self.packs[l.pack as usize].kind)
    }

    /// Adds a stored pack and its blobs. A blob already indexed keeps its
    /// first location (duplicates can appear after an interrupted session).
    pub fn add_pack(&mut self, info: PackInfo, entries: &[PackEntry]) {
        if self.pack_numbers.contains_key(&info.id) {
            return;
        }
        let n = self.packs.len() as u32;
        self.pack_numbers.insert(info.id, n);
        self.packs.push(info);
        for e in entries {
            if !self.contains(&e.id) {
                self.recent.insert(
                    e.id,
                    BlobLocation { pack: n, offset: e.offset, length: e.length, raw_length: e.raw_length },
                );
            }
        }
        if self.recent.len() > 4096 && self.recent.len() * 8 > self.sorted.len() {
            self.compact();
        }
    }

    /// Moves recent entries into the sorted vector.
    pub fn compact(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        self.sorted.reserve_exact(self.recent.len());
        self.sorted.extend(self.recent.drain());
        self.sorted.sort_unstable_by_key(|a| a.0);
        self.recent.shrink_to_fit();
    }

    /// Every blob with its location.
    pub fn iter(&self) -> impl Iterator<Item = (&Id, &BlobLocation)> {
        self.sorted.iter().map(|(k, v)| (k, v)).chain(self.recent.iter())
    }

    /// The blobs of each pack, in pack order, as header-style entries.
    pub fn entries_by_pack(&self) -> Vec<Vec<PackEntry>> {
        let mut out: Vec<Vec<PackEntry>> = vec![Vec::new(); self.packs.len()];
        for (id, l) in self.iter() {
            out[l.pack as usize].push(PackEntry {
                kind: self.packs[l.pack as usize].kind,
                id: *id,
                offset: l.offset,
                length: l.length,
                raw_length: l.raw_length,
            });
        }
        for v in &mut out {
            v.sort_by_key(|e| e.offset);
        }
        out
    }

    /// Bytes of memory held per blob, for the budget check in tests and
    /// benchmarks.
    pub fn memory_bytes(&self) -> usize {
        self.sorted.capacity() * std::mem::size_of::<(Id, BlobLocation)>()
            + self.recent.capacity() * (std::mem::size_of::<(Id, BlobLocation)>() + 1)
            + self.packs.capacity() * std::mem::size_of::<PackInfo>()
            + self.pack_numbers.capacity() * (std::mem::size_of::<(Id, u32)>() + 1)
    }
}

/// The blobs an index file holds before the writer starts another (plus
/// those of the pack that crosses the line: a pack is never split).
pub const MAX_BLOBS_PER_FILE: usize = 200_000;

/// Groups `packs` into index files of at most [`MAX_BLOBS_PER_FILE`] blobs
/// plus one pack's, in order; no packs give no file.
pub fn split_into_files(packs: Vec<(PackInfo, Vec<PackEntry>)>) -> Vec<IndexFile> {
    let mut files = Vec::new();
    let mut batch = IndexFile::default();
    let mut blobs = 0;
    for pack in packs {
        blobs += pack.1.len();
        batch.packs.push(pack);
        if blobs >= MAX_BLOBS_PER_FILE {
            files.push(std::mem::take(&mut batch));
            blobs = 0;
        }
    }
    if !batch.packs.is_empty() {
        files.push(batch);
    }
    files
}

/// The contents of one index file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// Index files this one replaces (written by prune; readers ignore them).
    pub supersedes: Vec<Id>,
    pub packs: Vec<(PackInfo, Vec<PackEntry>)>,
}

impl IndexFile {
    pub fn encode(&self) -> Vec<u8> {
        let blobs: usize = self.packs.iter().map(|p| p.1.len()).sum();
        let mut out = Vec::with_capacity(16 + self.packs.len() * 45 + blobs * 44);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for s in &self.supersedes {
            out.extend_from_slice(&s.0);
        }
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for (p, entries) in &self.packs {
            out.extend_from_slice(&p.id.0);
            out.push(p.kind as u8);
            out.extend_from_slice(&p.size.to_le_bytes());
            out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            for e in entries {
                out.extend_from_slice(&e.id.0);
                out.extend_from_slice(&e.offset.to_le_bytes());
                out.extend_from_slice(&e.length.to_le_bytes());
                out.extend_from_slice(&e.raw_length.to_le_bytes());
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<IndexFile, String> {
        let mut r = Reader { b, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err("not an index file (bad magic)".into());
        }
        let v = r.take(1)?[0];
        if v != VERSION {
            return Err(format!("unknown index version {v}"));
        }
        let ns = r.u32()? as usize;
        let mut supersedes = Vec::with_capacity(ns.min(1 << 16));
        for _ in 0..ns {
            supersedes.push(r.id()?);
        }
        let np = r.u32()? as usize;
        let mut packs = Vec::with_capacity(np.min(1 << 16));
        for _ in 0..np {
            let id = r.id()?;
            let kind_byte = r.take(1)?[0];
            let kind = BlobKind::from_u8(kind_byte).ok_or_else(|| format!("unknown blob kind {kind_byte}"))?;
            let size = u64::from_le_bytes(r.take(8)?.try_into().unwrap());
            let nb = r.u32()? as usize;
            let mut entries = Vec::with_capacity(nb.min(1 << 20));
            for _ in 0..nb {
                let bid = r.id()?;
                entries.push(PackEntry { kind, id: bid, offset: r.u32()?, length: r.u32()?, raw_length: r.u32()? });
            }
            packs.push((PackInfo { id, kind, size }, entries));
        }
        if r.pos != b.len() {
            return Err(format!("{} trailing bytes", b.len() - r.pos));
        }
        Ok(IndexFile { supersedes, packs })
    }

    /// Checks every entry against the largest blob of its pack's kind:
    /// `max_data` for data packs, `max_tree` for tree packs. An entry that
    /// claims more is damage (or forgery), and no reader may trust it.
    pub fn check_sizes(&self, max_data: u64, max_tree: u64) -> Result<(), String> {
        for (p, entries) in &self.packs {
            let (max, kind) = match p.kind {
                BlobKind::Data => (max_data, "data"),
                BlobKind::Tree => (max_tree, "tree"),
            };
            if let Some(e) = entries.iter().find(|e| e.raw_length as u64 > max) {
                return Err(format!(
                    "blob {} of {kind} pack {} claims {} bytes, above the {max} bytes a {kind} blob may hold",
                    e.id.short(),
                    p.id.short(),
                    e.raw_length
                ));
            }
        }
        Ok(())
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() - self.pos < n {
            return Err("truncated".into());
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn id(&mut self) -> Result<Id, String> {
        Ok(Id::from_slice(self.take(32)?).unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u32) -> PackEntry {
        PackEntry {
            kind: BlobKind::Data,
            id: Id::hash_of(&i.to_le_bytes()),
            offset: i * 10,
            length: 10,
            raw_length: 20,
        }
    }

    #[test]
    fn index_file_round_trip() {
        let f = IndexFile {
            supersedes: vec![Id::hash_of(b"old")],
            packs: vec![(
                PackInfo { id: Id::hash_of(b"p"), kind: BlobKind::Data, size: 99 },
                (0..5).map(entry).collect(),
            )],
        };
        let enc = f.encode();
        assert_eq!(IndexFile::decode(&enc).unwrap(), f);
        assert!(IndexFile::decode(&enc[..enc.len() - 1]).is_err());
        assert!(IndexFile::decode(b"XXXX").is_err());
    }

    #[test]
    fn packs_are_split_into_files_of_bounded_size_without_splitting_a_pack() {
        let pack = |n: u32, blobs: u32| {
            (
                PackInfo { id: Id::hash_of(&n.to_le_bytes()), kind: BlobKind::Data, size: 1 },
                (0..blobs).map(entry).collect::<Vec<_>>(),
            )
        };
        let half = MAX_BLOBS_PER_FILE as u32 / 2;
        let files = split_into_files(vec![pack(1, half), pack(2, half + 1), pack(3, 5), pack(4, 7)]);
        let shape: Vec<Vec<usize>> = files.iter().map(|f| f.packs.iter().map(|p| p.1.len()).collect()).collect();
        assert_eq!(shape, vec![vec![half as usize, half as usize + 1], vec![5, 7]]);
        assert!(split_into_files(Vec::new()).is_empty());
    }

    #[test]
    fn entries_above_the_largest_blob_of_their_kind_are_refused() {
        let mut f = IndexFile {
            supersedes: Vec::new(),
            packs: vec![(PackInfo { id: Id::hash_of(b"p"), kind: BlobKind::Data, size: 99 }, vec![entry(1)])],
        };
        assert_eq!(f.check_sizes(20, 20), Ok(()));
        let e = f.check_sizes(19, 1000).unwrap_err();
        assert!(e.contains("claims 20 bytes, above the 19 bytes a data blob may hold"), "{e}");
        f.packs[0].0.kind = BlobKind::Tree;
        assert_eq!(f.check_sizes(19, 20), Ok(()), "a tree pack is judged by the tree limit");
        assert!(f.check_sizes(1000, 19).is_err());
    }

    #[test]
    fn lookups_work_before_and_after_compaction_and_stay_within_budget() {
        let mut idx = Index::new();
        for p in 0..100u32 {
            let entries: Vec<_> = (p * 1000..(p + 1) * 1000).map(entry).collect();
            idx.add_pack(PackInfo { id: Id::hash_of(&p.to_le_bytes()), kind: BlobKind::Data, size: 1 }, &entries);
        }
        assert!(idx.get(&entry(5).id).is_some());
        idx.compact();
        assert_eq!(idx.len(), 100_000);
        assert_eq!(idx.get(&entry(54_321).id).unwrap().pack, 54);
        assert!(idx.get(&Id::hash_of(b"nope")).is_none());
        let per_blob = idx.memory_bytes() as f64 / idx.len() as f64;
        assert!(per_blob <= 64.0, "{per_blob} bytes per blob");
    }
}
