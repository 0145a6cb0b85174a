//! Index files: the on-storage form of the index (see `docs/FORMAT.md`).
//!
//! An index file is a sealed object:
//! `"CIDX" version(u8) n_supersedes(u32) ids… n_packs(u32)` then for each pack
//! `id(32) kind(u8) size(u64) n_blobs(u32)` and `id(32) offset length
//! raw_length (u32 each)` per blob.
//!
//! [`IndexFile::visit`] walks a file's plaintext without building a list of
//! its entries, so loading a large index needs the memory of one file's
//! bytes, not of its decoded entries. The whole layout is checked before
//! the first pack is handed out: a damaged file adds nothing.

use crate::id::Id;

use super::pack::PackEntry;
use super::BlobKind;

pub const MAGIC: &[u8; 4] = b"CIDX";
pub const VERSION: u8 = 1;
/// Bytes per blob entry: id (32) + offset, length, raw length (3 × 4).
const ENTRY_LEN: usize = 44;
/// Bytes per pack record before its entries: id, kind, size, count.
const PACK_LEN: usize = 32 + 1 + 8 + 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    pub id: Id,
    pub kind: BlobKind,
    pub size: u64,
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

/// Receives the parts of an index file, in order.
pub trait IndexVisitor {
    fn supersedes(&mut self, id: Id);
    fn pack(&mut self, info: PackInfo, entries: PackEntries<'_>);
}

/// The entries of one pack record, decoded as they are read.
pub struct PackEntries<'a> {
    kind: BlobKind,
    raw: std::slice::ChunksExact<'a, u8>,
}

impl Iterator for PackEntries<'_> {
    type Item = PackEntry;
    fn next(&mut self) -> Option<PackEntry> {
        let e = self.raw.next()?;
        let u = |i: usize| u32::from_le_bytes(e[i..i + 4].try_into().unwrap());
        Some(PackEntry {
            kind: self.kind,
            id: Id::from_slice(&e[..32]).unwrap(),
            offset: u(32),
            length: u(36),
            raw_length: u(40),
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.raw.size_hint()
    }
}

impl ExactSizeIterator for PackEntries<'_> {}

impl IndexFile {
    pub fn encode(&self) -> Vec<u8> {
        let blobs: usize = self.packs.iter().map(|p| p.1.len()).sum();
        let mut out = Vec::with_capacity(16 + self.packs.len() * PACK_LEN + blobs * ENTRY_LEN);
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

    /// Decodes a whole file into memory (for small files and tests; loading
    /// the repository's index goes through [`IndexFile::visit`]).
    pub fn decode(b: &[u8]) -> Result<IndexFile, String> {
        struct Collect(IndexFile);
        impl IndexVisitor for Collect {
            fn supersedes(&mut self, id: Id) {
                self.0.supersedes.push(id);
            }
            fn pack(&mut self, info: PackInfo, entries: PackEntries<'_>) {
                self.0.packs.push((info, entries.collect()));
            }
        }
        let mut c = Collect(IndexFile::default());
        IndexFile::visit(b, &mut c)?;
        Ok(c.0)
    }

    /// Checks the layout of `b`, then hands its parts to `v`. Returns the
    /// number of blob entries. Nothing reaches `v` from a damaged file.
    pub fn visit(b: &[u8], v: &mut dyn IndexVisitor) -> Result<usize, String> {
        let layout = Layout::check(b)?;
        let mut r = Reader { b, pos: 9 };
        for _ in 0..layout.supersedes {
            v.supersedes(r.id()?);
        }
        r.pos += 4;
        for _ in 0..layout.packs {
            let id = r.id()?;
            let kind = BlobKind::from_u8(r.take(1)?[0]).expect("checked by Layout::check");
            let size = u64::from_le_bytes(r.take(8)?.try_into().unwrap());
            let nb = r.u32()? as usize;
            let raw = r.take(nb * ENTRY_LEN)?;
            v.pack(PackInfo { id, kind, size }, PackEntries { kind, raw: raw.chunks_exact(ENTRY_LEN) });
        }
        Ok(layout.blobs)
    }

    /// The number of blob entries in a well-formed file.
    pub fn count_blobs(b: &[u8]) -> Result<usize, String> {
        Layout::check(b).map(|l| l.blobs)
    }

    /// Checks every entry against the largest blob of its pack's kind:
    /// `max_data` for data packs, `max_tree` for tree packs. An entry that
    /// claims more is damage (or forgery), and no reader may trust it.
    pub fn check_sizes(&self, max_data: u64, max_tree: u64) -> Result<(), String> {
        self.packs.iter().try_for_each(|(p, entries)| check_pack_sizes(p, entries.iter(), max_data, max_tree))
    }

    /// [`IndexFile::check_sizes`] on a file's plaintext, without decoding
    /// it into memory.
    pub fn check_sizes_of(b: &[u8], max_data: u64, max_tree: u64) -> Result<(), String> {
        struct Sizes {
            max: (u64, u64),
            first: Result<(), String>,
        }
        impl IndexVisitor for Sizes {
            fn supersedes(&mut self, _: Id) {}
            fn pack(&mut self, info: PackInfo, entries: PackEntries<'_>) {
                if self.first.is_ok() {
                    let entries: Vec<PackEntry> = entries.collect();
                    self.first = check_pack_sizes(&info, entries.iter(), self.max.0, self.max.1);
                }
            }
        }
        let mut v = Sizes { max: (max_data, max_tree), first: Ok(()) };
        IndexFile::visit(b, &mut v)?;
        v.first
    }
}

fn check_pack_sizes<'a>(
    p: &PackInfo,
    mut entries: impl Iterator<Item = &'a PackEntry>,
    max_data: u64,
    max_tree: u64,
) -> Result<(), String> {
    let (max, kind) = match p.kind {
        BlobKind::Data => (max_data, "data"),
        BlobKind::Tree => (max_tree, "tree"),
    };
    match entries.find(|e| e.raw_length as u64 > max) {
        Some(e) => Err(format!(
            "blob {} of {kind} pack {} claims {} bytes, above the {max} bytes a {kind} blob may hold",
            e.id.short(),
            p.id.short(),
            e.raw_length
        )),
        None => Ok(()),
    }
}

/// The counts of a file whose layout was checked end to end.
struct Layout {
    supersedes: usize,
    packs: usize,
    blobs: usize,
}

impl Layout {
    fn check(b: &[u8]) -> Result<Layout, String> {
        let mut r = Reader { b, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err("not an index file (bad magic)".into());
        }
        let v = r.take(1)?[0];
        if v != VERSION {
            return Err(format!("unknown index version {v}"));
        }
        let supersedes = r.u32()? as usize;
        r.take(supersedes.checked_mul(32).ok_or("truncated")?)?;
        let packs = r.u32()? as usize;
        let mut blobs = 0usize;
        for _ in 0..packs {
            r.take(32)?;
            let kind_byte = r.take(1)?[0];
            BlobKind::from_u8(kind_byte).ok_or_else(|| format!("unknown blob kind {kind_byte}"))?;
            r.take(8)?;
            let nb = r.u32()? as usize;
            r.take(nb.checked_mul(ENTRY_LEN).ok_or("truncated")?)?;
            blobs += nb;
        }
        if r.pos != b.len() {
            return Err(format!("{} trailing bytes", b.len() - r.pos));
        }
        Ok(Layout { supersedes, packs, blobs })
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
        assert_eq!(IndexFile::count_blobs(&enc).unwrap(), 5);
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
        assert_eq!(IndexFile::check_sizes_of(&f.encode(), 19, 1000).unwrap_err(), e, "the plaintext check agrees");
        f.packs[0].0.kind = BlobKind::Tree;
        assert_eq!(f.check_sizes(19, 20), Ok(()), "a tree pack is judged by the tree limit");
        assert_eq!(IndexFile::check_sizes_of(&f.encode(), 19, 20), Ok(()));
        assert!(f.check_sizes(1000, 19).is_err());
        assert!(IndexFile::check_sizes_of(&f.encode(), 1000, 19).is_err());
    }

    #[test]
    fn a_damaged_file_hands_out_nothing() {
        struct Count(usize);
        impl IndexVisitor for Count {
            fn supersedes(&mut self, _: Id) {
                self.0 += 1;
            }
            fn pack(&mut self, _: PackInfo, e: PackEntries<'_>) {
                self.0 += 1 + e.len();
            }
        }
        let f = IndexFile {
            supersedes: vec![Id::hash_of(b"old")],
            packs: vec![(PackInfo { id: Id::hash_of(b"p"), kind: BlobKind::Tree, size: 9 }, vec![entry(1)])],
        };
        let mut enc = f.encode();
        enc.push(0); // one trailing byte: the whole file is refused
        let mut c = Count(0);
        assert_eq!(IndexFile::visit(&enc, &mut c).unwrap_err(), "1 trailing bytes");
        assert_eq!(c.0, 0);
        let mut bad_kind = f.encode();
        bad_kind[4 + 1 + 4 + 32 + 4 + 32] = 7;
        assert_eq!(IndexFile::visit(&bad_kind, &mut c).unwrap_err(), "unknown blob kind 7");
        assert_eq!(c.0, 0);
    }
}
